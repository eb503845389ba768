//! One source partition as a task reads it: a read position and a buffer of decoded records.
//!
//! Records are kept as slices of the bytes the log returned (no copy). The read position
//! `next` only moves past a record once it was handed out, or past a whole chunk once its
//! records are all handed out (a compacted log can have gaps, which are skipped then).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use eddy_storage::Batches;

use crate::error::{Error, Result};
use crate::log_access::LogAccess;

/// A record waiting to be processed.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub offset: u64,
    pub ts: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

#[derive(Debug)]
pub(crate) struct Input {
    pub topic: Arc<str>,
    pub partition: u32,
    /// Next offset to hand out.
    pub next: u64,
    buf: VecDeque<Pending>,
    /// Offset after the last batch of the buffered chunk.
    chunk_end: u64,
}

impl Input {
    pub fn new(topic: Arc<str>, partition: u32, next: u64) -> Self {
        Self { topic, partition, next, buf: VecDeque::new(), chunk_end: next }
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
            for rec in batch.records() {
                let rec = rec.map_err(|fault| bad(batch.base_offset(), fault))?;
                if rec.offset < self.next {
                    continue;
                }
                self.buf.push_back(Pending {
                    offset: rec.offset,
                    ts: rec.timestamp,
                    key: rec.key.map(|k| bytes.slice_ref(k)),
                    value: rec.value.map(|v| bytes.slice_ref(v)),
                });
            }
            self.chunk_end = self.chunk_end.max(batch.last_offset() + 1);
        }
        Ok(())
    }
}
