//! What one partition's log must hold after a crash: the model the checker keeps while it runs
//! a workload, and the check of a reopened log against it.
//!
//! Invariants checked (each violation is a [`Violation`] naming it):
//! - every batch acknowledged as durable is present byte for byte (records, on a compacted
//!   log, unless compaction may have removed them: superseded, tombstones, aborted);
//! - no batch appears that was never written: each one read equals a batch whose append
//!   succeeded or was attempted at that offset;
//! - offsets are contiguous from the log start to its end (increasing, on a compacted log);
//! - the log start is no later than retention moved it;
//! - the aborted transactions the log reports, and its last stable offset, are those its
//!   surviving batches say.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::batch::{BatchView, Batches, POSITION_LEN};
use crate::log::Log;
use crate::txn::{AbortedTxn, ControlType, control_type};

/// One record as written, for comparisons that survive compaction's re-encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// A batch handed to the log.
#[derive(Debug, Clone)]
pub struct Written {
    pub base: u64,
    /// As produced (the log stamps the first 16 bytes).
    pub bytes: Bytes,
    /// With their offsets (a compacted batch has gaps).
    pub records: Vec<(u64, Rec)>,
    pub producer_id: i64,
    pub transactional: bool,
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

macro_rules! violation {
    ($($arg:tt)*) => { Err(Violation(format!($($arg)*))) };
}

/// The model of one partition.
#[derive(Debug, Default)]
pub struct Model {
    pub compacted: bool,
    /// Appends that succeeded, by base offset.
    pub acked: BTreeMap<u64, Written>,
    /// Appends that failed: they may or may not be in the log.
    pub attempts: Vec<Written>,
    /// Every acknowledged offset below this was acknowledged durable.
    pub durable: u64,
    /// Retention moved the start here at most.
    pub start_floor: u64,
    /// The durable offset when an fsync the log depends on failed.
    pub poisoned_at: Option<u64>,
    /// Whether retention ran (the last stable offset is then not checked: a transaction's
    /// start may be gone).
    pub retention_ran: bool,
}

/// A batch read back from a reopened log.
#[derive(Debug, Clone)]
pub struct Present {
    pub base: u64,
    pub last: u64,
    pub bytes: Bytes,
}

impl Model {
    /// Notes that offsets below `offset` were acknowledged durable.
    pub fn ack_durable(&mut self, offset: u64) -> Result<(), Violation> {
        if let Some(at) = self.poisoned_at
            && offset > at
        {
            return violation!(
                "durability of offsets up to {offset} acknowledged after a failed fsync (durable was {at})"
            );
        }
        self.durable = self.durable.max(offset);
        Ok(())
    }

    fn candidates(&self, base: u64) -> impl Iterator<Item = &Written> {
        self.acked
            .get(&base)
            .into_iter()
            .chain(self.attempts.iter().filter(move |w| w.base == base))
    }

    /// Checks a reopened log against the model and returns its batches.
    pub fn verify(&self, log: &Log) -> Result<Vec<Present>, Violation> {
        let (start, end) = (log.start_offset(), log.next_offset());
        if end < self.durable {
            return violation!(
                "log ends at {end}, below the durable acknowledgement {}",
                self.durable
            );
        }
        if start > self.start_floor {
            return violation!(
                "log starts at {start}, past what retention deleted ({})",
                self.start_floor
            );
        }
        let present = read_all(log, (start, end), self.compacted)?;
        let mut expect = start;
        for p in &present {
            let contiguous = if self.compacted { p.base >= expect } else { p.base == expect };
            if !contiguous {
                return violation!(
                    "batch at {} follows offset {}: offsets not contiguous",
                    p.base,
                    expect
                );
            }
            self.check_batch(p)?;
            expect = p.last + 1;
        }
        if !self.compacted && expect != end {
            return violation!("batches end at {expect}, the log says {end}");
        }
        if self.compacted {
            self.check_compacted_retains(&present, (start, end))?;
        }
        check_txns(log, &present, (start, end), !self.compacted, !self.retention_ran)?;
        Ok(present)
    }

    /// The batch `p` equals one written at its offset (byte for byte, or record for record on
    /// a compacted log); below the durable acknowledgement, the acknowledged one.
    fn check_batch(&self, p: &Present) -> Result<(), Violation> {
        let durable = p.base < self.durable;
        let mut found = false;
        for w in self.candidates(p.base) {
            if durable && !self.acked.get(&p.base).is_some_and(|a| std::ptr::eq(a, w)) {
                continue;
            }
            if p.bytes.len() == w.bytes.len() && p.bytes[POSITION_LEN..] == w.bytes[POSITION_LEN..]
            {
                return Ok(());
            }
            if self.compacted && records_subset(&p.bytes, w)? {
                found = true;
                break;
            }
        }
        if found {
            return Ok(());
        }
        if durable {
            return violation!(
                "batch at {} differs from the one acknowledged durable there",
                p.base
            );
        }
        violation!("batch at {} ({} bytes) was never written", p.base, p.bytes.len())
    }

    /// On a compacted log, every durable acknowledged record is there unless compaction could
    /// remove it: a later record of its key is there, it is a tombstone, or it was aborted.
    fn check_compacted_retains(
        &self,
        present: &[Present],
        (start, end): (u64, u64),
    ) -> Result<(), Violation> {
        let mut newest: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut have = std::collections::HashSet::new();
        for p in present {
            for (offset, rec) in records_of(&p.bytes)? {
                if let Some(k) = &rec.key {
                    let e = newest.entry(k.clone()).or_insert(offset);
                    *e = (*e).max(offset);
                }
                have.insert(offset);
            }
        }
        for w in self.acked.values().filter(|w| w.base >= start) {
            for &(offset, ref rec) in &w.records {
                if offset >= self.durable || have.contains(&offset) || rec.value.is_none() {
                    continue;
                }
                let superseded = rec.key.as_ref().is_some_and(|k| {
                    newest.get(k).is_some_and(|&n| n > offset) || self.written_later(k, offset, end)
                });
                if !superseded && !w.transactional {
                    return violation!(
                        "durable record at {offset} is gone though nothing supersedes it"
                    );
                }
            }
        }
        Ok(())
    }
}

impl Model {
    /// Whether a record of `key` was acknowledged after `offset`, below `end` (it may be a
    /// tombstone compaction has removed since, with what it superseded).
    fn written_later(&self, key: &[u8], offset: u64, end: u64) -> bool {
        self.acked.range(..end).any(|(_, w)| {
            w.records.iter().any(|(o, r)| *o > offset && *o < end && r.key.as_deref() == Some(key))
        })
    }
}

/// Whether every record of the batch `bytes` equals the record `w` has at its offset.
fn records_subset(bytes: &[u8], w: &Written) -> Result<bool, Violation> {
    for (offset, rec) in records_of(bytes)? {
        if !w.records.iter().any(|(o, r)| *o == offset && *r == rec) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The records of one batch, with their offsets.
pub fn records_of(bytes: &[u8]) -> Result<Vec<(u64, Rec)>, Violation> {
    let view = BatchView::parse(bytes).map_err(|e| Violation(format!("unparsable batch: {e}")))?;
    let records = view.records().map_err(|e| Violation(format!("undecodable batch: {e}")))?;
    let mut out = Vec::new();
    for r in records.iter() {
        let r = r.map_err(|e| Violation(format!("undecodable record: {e}")))?;
        let rec = Rec {
            timestamp: r.timestamp,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r.headers().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect(),
        };
        out.push((r.offset, rec));
    }
    Ok(out)
}

/// Every batch from `start` to `end`.
fn read_all(
    log: &Log,
    (start, end): (u64, u64),
    compacted: bool,
) -> Result<Vec<Present>, Violation> {
    let mut out = Vec::new();
    let mut next = start;
    while next < end {
        let bytes =
            log.read(next, 64 * 1024).map_err(|e| Violation(format!("read at {next}: {e}")))?;
        if bytes.is_empty() {
            if compacted {
                // Compaction removed the last batches of a segment and the active one is
                // empty: the offsets up to the end are a gap.
                break;
            }
            return violation!("empty read at {next}, below the end {end}");
        }
        for batch in Batches::new(&bytes) {
            let batch = batch.map_err(|e| Violation(format!("bad batch read near {next}: {e}")))?;
            let (base, last) = (batch.base_offset(), batch.last_offset());
            if last < next {
                return violation!("read at {next} returned a batch ending at {last}");
            }
            let at = batch.as_bytes().as_ptr() as usize - bytes.as_ptr() as usize;
            out.push(Present { base, last, bytes: bytes.slice(at..at + batch.as_bytes().len()) });
            next = last + 1;
        }
    }
    Ok(out)
}

/// The aborted transactions and the last stable offset agree with the batches present.
/// (Compaction removes aborted records, and with them where the walk sees a transaction start:
/// the aborted list is checked on logs that are not compacted.)
fn check_txns(
    log: &Log,
    present: &[Present],
    (start, end): (u64, u64),
    check_aborted: bool,
    check_lso: bool,
) -> Result<(), Violation> {
    let mut open: BTreeMap<i64, u64> = BTreeMap::new();
    // Every ABORT marker: (producer, its offset, where the walk saw its transaction start).
    let mut markers = Vec::new();
    for p in present {
        let view = BatchView::parse(&p.bytes).map_err(|e| Violation(format!("{e}")))?;
        let h = view.header();
        if !h.is_transactional() {
            continue;
        }
        if h.is_control() {
            let first = open.remove(&h.producer_id);
            if control_type(&view) == Some(ControlType::Abort) {
                markers.push((h.producer_id, p.base, first));
            }
        } else {
            open.entry(h.producer_id).or_insert(p.base);
        }
    }
    if check_aborted {
        let reported: BTreeMap<u64, AbortedTxn> = log
            .aborted_txns(start, end)
            .into_iter()
            .filter(|a| a.last_offset >= start)
            .map(|a| (a.last_offset, a))
            .collect();
        check_aborted_list(&reported, &markers, start)?;
    }
    let lso = open.values().min().copied().unwrap_or(end);
    if check_lso && log.last_stable_offset() != lso {
        return violation!(
            "last stable offset {}, the batches say {lso}",
            log.last_stable_offset()
        );
    }
    Ok(())
}

/// Each ABORT marker present ended the transaction the index names (one that began before
/// the log start is known only to the index), and the index names no other.
fn check_aborted_list(
    reported: &BTreeMap<u64, AbortedTxn>,
    markers: &[(i64, u64, Option<u64>)],
    start: u64,
) -> Result<(), Violation> {
    for &(producer, at, first) in markers {
        let entry = reported.get(&at);
        let holds = match (entry, first) {
            (Some(e), Some(first)) => {
                e.producer_id == producer && (e.first_offset == first || e.first_offset < start)
            }
            (Some(e), None) => e.producer_id == producer && e.first_offset < start,
            (None, first) => first.is_none(),
        };
        if !holds {
            return violation!(
                "ABORT marker of producer {producer} at {at} (transaction from {first:?}): the index says {entry:?}"
            );
        }
    }
    for at in reported.keys() {
        if !markers.iter().any(|m| m.1 == *at) {
            return violation!(
                "the index names an aborted transaction ending at {at}, where no ABORT marker is"
            );
        }
    }
    Ok(())
}
