//! What a restarting task learns from the logs it writes: the highest output position already in
//! each output partition, and the steps its journal recorded.
//!
//! Only the tail after the snapshot's recorded end of each partition is read, since everything
//! before it was accounted for when the snapshot was taken.

use eddy_storage::Batches;

use crate::error::{Error, Result};
use crate::log_access::LogAccess;
use crate::position::{POSITION_HEADER, Position};

const SCAN_BYTES: usize = 1 << 20;

/// The largest position of `writer` in `topic`/`partition` from offset `from` on.
pub(crate) fn max_position(
    logs: &dyn LogAccess,
    topic: &str,
    partition: u32,
    from: u64,
    writer: u64,
) -> Result<Option<Position>> {
    let mut best: Option<Position> = None;
    scan(logs, topic, partition, from, |_, headers_pos, _| {
        if let Some(p) = headers_pos
            && p.writer == writer
            && best.is_none_or(|b| p.order() > b.order())
        {
            best = Some(p);
        }
    })?;
    Ok(best)
}

/// One journal entry: process input `input` up to (not including) offset `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub input: u32,
    pub end: u64,
}

impl Step {
    pub fn encode(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..4].copy_from_slice(&self.input.to_le_bytes());
        out[4..].copy_from_slice(&self.end.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Step> {
        let (input, end) = bytes.split_first_chunk::<4>()?;
        let end: [u8; 8] = end.try_into().ok()?;
        Some(Step { input: u32::from_le_bytes(*input), end: u64::from_le_bytes(end) })
    }
}

/// The journal entries from `from` on, with their offsets.
pub(crate) fn read_journal(
    logs: &dyn LogAccess,
    topic: &str,
    partition: u32,
    from: u64,
) -> Result<Vec<(u64, Step)>> {
    let mut steps = Vec::new();
    let mut bad = None;
    scan(logs, topic, partition, from, |offset, _, value| match value.and_then(Step::decode) {
        Some(step) => steps.push((offset, step)),
        None => {
            bad.get_or_insert(offset);
        }
    })?;
    if let Some(offset) = bad {
        return Err(Error::CorruptJournal { topic: topic.to_owned(), partition, offset });
    }
    Ok(steps)
}

/// Calls `f(offset, position header, value)` for every record from `from` to the end.
fn scan(
    logs: &dyn LogAccess,
    topic: &str,
    partition: u32,
    from: u64,
    mut f: impl FnMut(u64, Option<Position>, Option<&[u8]>),
) -> Result<()> {
    let end = logs.end_offset(topic, partition)?;
    let mut next = from.max(logs.start_offset(topic, partition)?);
    while next < end {
        let bytes = logs.read(topic, partition, next, SCAN_BYTES)?;
        if bytes.is_empty() {
            break;
        }
        let bad =
            |offset, fault| Error::BadBatch { topic: topic.to_owned(), partition, offset, fault };
        let before = next;
        for batch in Batches::new(&bytes) {
            let batch = batch.map_err(|fault| bad(next, fault))?;
            let records = batch.records().map_err(|fault| bad(batch.base_offset(), fault))?;
            for rec in records.iter() {
                let rec = rec.map_err(|fault| bad(batch.base_offset(), fault))?;
                if rec.offset < next {
                    continue;
                }
                let pos = rec
                    .headers()
                    .find(|h| h.key == POSITION_HEADER)
                    .and_then(|h| h.value)
                    .and_then(Position::decode);
                f(rec.offset, pos, rec.value);
            }
            next = next.max(batch.last_offset() + 1);
        }
        if next == before {
            break;
        }
    }
    Ok(())
}
