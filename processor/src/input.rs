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
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use eddy_storage::batch::{BatchHeader, RecordIter};
use eddy_storage::{Batches, RecordView};

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

    /// The origin of every record, for an outside topic's partition (`None` for a
    /// repartition topic, whose records carry theirs).
    pub fn own_origin(&self) -> Option<u64> {
        match self.origins {
            Origins::Own(origin) => Some(origin),
            Origins::Headers(_) => None,
        }
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

    /// For a chunk root: reads the next chunk's bytes (about `max_bytes`, from the read
    /// position), for [`take_chunk`](Self::take_chunk).
    pub fn read(&self, logs: &dyn LogAccess, max_bytes: usize) -> Result<Bytes> {
        Ok(logs.read(&self.topic, self.partition, self.next, max_bytes)?)
    }

    /// The bytes of the chunk after the one [`take_chunk`](Self::take_chunk) took (read
    /// before [`finish_chunk`](Self::finish_chunk) moves the read position there).
    pub fn read_after_chunk(&self, logs: &dyn LogAccess, max_bytes: usize) -> Result<Bytes> {
        let from = self.next.max(self.chunk_end);
        Ok(logs.read(&self.topic, self.partition, from, max_bytes)?)
    }

    /// For a chunk root: with nothing buffered, collects the records areas of the batches of
    /// `bytes` (read from the read position; decompressed where needed) into `areas`, leaving
    /// the records to the caller, who decodes them ([`Chunk::records`]) and then calls
    /// [`finish_chunk`](Self::finish_chunk). Returns false when there is nothing new.
    pub fn take_chunk(
        &mut self,
        bytes: &Bytes,
        areas: &mut Vec<(BatchHeader, Bytes)>,
    ) -> Result<bool> {
        areas.clear();
        if !self.buf.is_empty() {
            return Ok(false);
        }
        for batch in Batches::new(bytes) {
            let batch = batch.map_err(|fault| self.bad(self.chunk_end.max(self.next), fault))?;
            let area = batch.records().map_err(|fault| self.bad(batch.base_offset(), fault))?;
            areas.push((*batch.header(), area.into_bytes(bytes)));
            self.chunk_end = self.chunk_end.max(batch.last_offset() + 1);
        }
        Ok(self.chunk_end > self.next)
    }

    /// Moves the read position past the chunk [`read_chunk`](Self::read_chunk) returned.
    pub fn finish_chunk(&mut self) {
        self.next = self.next.max(self.chunk_end);
    }

    pub fn bad(&self, offset: u64, fault: eddy_storage::BatchError) -> Error {
        Error::BadBatch { topic: self.topic.to_string(), partition: self.partition, offset, fault }
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

/// A chunk [`Input::read_chunk`] read: the records areas of its batches, and the offset from
/// which its records are new.
pub(crate) struct Chunk<'a> {
    pub input: &'a Input,
    pub areas: &'a [(BatchHeader, Bytes)],
    pub from: u64,
}

impl Chunk<'_> {
    /// Decodes the new records of `areas[range]` in offset order, handing each to `f`;
    /// returns how many there were.
    pub fn records(
        &self,
        range: std::ops::Range<usize>,
        mut f: impl FnMut(RecordView<'_>),
    ) -> Result<u64> {
        let mut count = 0;
        for (header, area) in self.areas.get(range).unwrap_or_default() {
            for rec in RecordIter::over(area, header) {
                let rec = rec.map_err(|fault| self.input.bad(header.base_offset, fault))?;
                if rec.offset >= self.from {
                    f(rec);
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// The areas cut into at most `pieces` runs of about the same size ([`cut`]).
    pub fn pieces(&self, pieces: usize) -> Vec<Range<usize>> {
        let sizes: Vec<usize> = self.areas.iter().map(|(_, a)| a.len()).collect();
        cut(&sizes, pieces)
    }
}

/// Indexes of `sizes` cut into at most `pieces` runs of about the same total, in order: every
/// index in exactly one run, no run empty (but the one run of no sizes at all).
fn cut(sizes: &[usize], pieces: usize) -> Vec<Range<usize>> {
    let pieces = pieces.max(1);
    let total: usize = sizes.iter().sum();
    let per = total.div_ceil(pieces).max(1);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(pieces);
    let (mut start, mut seen) = (0, 0);
    for (i, size) in sizes.iter().enumerate() {
        seen += size;
        if seen >= per * (out.len() + 1) && out.len() + 1 < pieces {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < sizes.len() || out.is_empty() {
        out.push(start..sizes.len());
    }
    out
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::cut;

    proptest! {
        /// Pieces cover every area once, in order, none empty, at most as many as asked, and
        /// (areas permitting) none holds much more than its share.
        #[test]
        fn pieces_cover_the_areas_in_order(
            sizes in prop::collection::vec(0usize..5000, 0..200),
            pieces in 0usize..20,
        ) {
            let runs = cut(&sizes, pieces);
            prop_assert!(runs.len() <= pieces.max(1));
            let mut next = 0;
            for run in &runs {
                prop_assert_eq!(run.start, next);
                prop_assert!(run.end > run.start || sizes.is_empty());
                next = run.end;
            }
            prop_assert_eq!(next, sizes.len());
            let total: usize = sizes.iter().sum();
            let per = total.div_ceil(pieces.max(1)).max(1);
            let largest = sizes.iter().copied().max().unwrap_or(0);
            // All but the last run close at their first area past a boundary.
            for run in runs.iter().take(runs.len().saturating_sub(1)) {
                let held: usize = sizes[run.clone()].iter().sum();
                prop_assert!(held <= per + largest, "{held} > {per} + {largest}");
            }
        }
    }
}
