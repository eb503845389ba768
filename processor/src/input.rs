//! One source partition as a task reads it: a read position and a buffer of decoded records.
//!
//! Records are kept as slices of the bytes the log returned (no copy). The read position
//! `next` only moves past a record once it was handed out, or past a whole chunk once its
//! records are all handed out (a compacted log can have gaps, which are skipped then).
//!
//! Each record gets its *origin* (the source partition event time tracks): an outside topic's
//! records are of their own partition; a repartition topic's carry it in the `eddy-origin`
//! header, and its frontier hints (`eddy-frontier`) come out as `Pending::hint`. A header that
//! is missing or malformed makes the record its repartition partition's own origin, never an
//! error.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use eddy_storage::Batches;
use eddy_storage::batch::RecordIter;

use crate::context::{HINT_HEADER, ORIGIN_HEADER};
use crate::error::{Error, Result};
use crate::log_access::LogAccess;

/// Where the records of an input get their origin.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origins {
    /// Every record is of this origin (an outside topic's partition).
    Own(u64),
    /// From each record's `eddy-origin` header (a repartition topic); this one without it.
    Headers(u64),
}

/// A record waiting to be processed.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub offset: u64,
    pub ts: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub origin: u64,
    /// A frontier hint (origin, frontier) rather than a record to process.
    pub hint: Option<(u64, i64)>,
}

#[derive(Debug)]
pub(crate) struct Input {
    pub topic: Arc<str>,
    pub partition: u32,
    origins: Origins,
    /// Next offset to hand out.
    pub next: u64,
    buf: VecDeque<Pending>,
    /// Offset after the last batch of the buffered chunk.
    chunk_end: u64,
}

impl Input {
    pub fn new(topic: Arc<str>, partition: u32, next: u64, origins: Origins) -> Self {
        Self { topic, partition, origins, next, buf: VecDeque::new(), chunk_end: next }
    }

    /// The same input, empty, reading from `next`.
    pub fn at(&self, next: u64) -> Self {
        Self::new(self.topic.clone(), self.partition, next, self.origins)
    }

    pub fn head(&self) -> Option<&Pending> {
        self.buf.front()
    }

    pub fn pop(&mut self) -> Option<Pending> {
        let rec = self.buf.pop_front()?;
        self.next = rec.offset + 1;
        if self.buf.is_empty() {
            self.next = self.next.max(self.chunk_end);
        }
        Some(rec)
    }

    /// Reads the next chunk if nothing is buffered. Returns whether records are buffered.
    pub fn fill(&mut self, logs: &dyn LogAccess, max_bytes: usize) -> Result<bool> {
        while self.buf.is_empty() {
            let bytes = logs.read(&self.topic, self.partition, self.next, max_bytes)?;
            if bytes.is_empty() {
                return Ok(false);
            }
            self.decode(&bytes)?;
            if self.buf.is_empty() {
                // Every record of the chunk was below `next` (or compacted away).
                if self.chunk_end <= self.next {
                    return Ok(false);
                }
                self.next = self.chunk_end;
            }
        }
        Ok(true)
    }

    fn decode(&mut self, bytes: &Bytes) -> Result<()> {
        let bad = |offset, fault| Error::BadBatch {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset,
            fault,
        };
        for batch in Batches::new(bytes) {
            let batch = batch.map_err(|fault| bad(self.chunk_end.max(self.next), fault))?;
            let area = batch.records().map_err(|fault| bad(batch.base_offset(), fault))?;
            let area = area.into_bytes(bytes);
            for rec in RecordIter::over(&area, batch.header()) {
                let rec = rec.map_err(|fault| bad(batch.base_offset(), fault))?;
                if rec.offset < self.next {
                    continue;
                }
                let (origin, hint) = match self.origins {
                    Origins::Own(origin) => (origin, None),
                    Origins::Headers(own) => carried(&rec, own),
                };
                self.buf.push_back(Pending {
                    offset: rec.offset,
                    ts: rec.timestamp,
                    key: rec.key.map(|k| area.slice_ref(k)),
                    value: rec.value.map(|v| area.slice_ref(v)),
                    origin,
                    hint,
                });
            }
            self.chunk_end = self.chunk_end.max(batch.last_offset() + 1);
        }
        Ok(())
    }
}

/// The origin a repartitioned record carries (`own` without the header), and its frontier
/// hint if it is one.
fn carried(rec: &eddy_storage::RecordView<'_>, own: u64) -> (u64, Option<(u64, i64)>) {
    let mut origin = own;
    for h in rec.headers() {
        let Some(v) = h.value else { continue };
        if h.key == ORIGIN_HEADER.as_bytes()
            && let Ok(bytes) = <[u8; 8]>::try_from(v)
        {
            origin = u64::from_be_bytes(bytes);
        } else if h.key == HINT_HEADER.as_bytes()
            && let (Some(o), Some(f)) = (v.get(..8), v.get(8..16))
            && let (Ok(o), Ok(f)) = (<[u8; 8]>::try_from(o), <[u8; 8]>::try_from(f))
        {
            return (own, Some((u64::from_be_bytes(o), i64::from_be_bytes(f))));
        }
    }
    (origin, None)
}
