//! Checks over a whole log: every batch readable and checksummed, offsets contiguous from the
//! log start, and acknowledged batches present byte for byte.

use std::fmt;

use eddy_storage::{Batches, Log};

use crate::child::Ack;
use crate::generate::{batch_for_seed, same_batch};

/// Bytes asked for per read while walking a log.
const READ_BYTES: usize = 1 << 20;

/// Why a log failed a check.
#[derive(Debug)]
pub enum CheckError {
    /// The log itself returned an error.
    Storage(eddy_storage::Error),
    /// The log's contents are not what they should be.
    Mismatch(String),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Storage(e) => write!(f, "storage error: {e}"),
            CheckError::Mismatch(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for CheckError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckError::Storage(e) => Some(e),
            CheckError::Mismatch(_) => None,
        }
    }
}

impl From<eddy_storage::Error> for CheckError {
    fn from(e: eddy_storage::Error) -> Self {
        CheckError::Storage(e)
    }
}

fn mismatch(what: String) -> CheckError {
    CheckError::Mismatch(what)
}

/// One batch as read back from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: u64,
    pub last_offset: u64,
    /// The whole batch, base offset included.
    pub bytes: Vec<u8>,
}

/// Reads every batch of `log` from offset 0 to its end, checking that each passes its
/// checksums, that the first starts at 0, that each starts right after the one before it (no
/// gap, no overlap), that each holds one record per offset, and that the last ends at
/// `next_offset`.
pub fn read_whole_log(log: &Log) -> Result<Vec<StoredBatch>, CheckError> {
    let (start, end) = (log.start_offset(), log.next_offset());
    if start != 0 {
        return Err(mismatch(format!("log starts at {start}, not 0")));
    }
    let mut batches = Vec::new();
    let mut next = 0u64;
    while next < end {
        let bytes = log.read(next, READ_BYTES)?;
        if bytes.is_empty() {
            return Err(mismatch(format!(
                "read at offset {next} returned nothing, but the log ends at {end}"
            )));
        }
        for batch in Batches::new(&bytes) {
            let batch = batch.map_err(|e| {
                mismatch(format!("batch read at offset {next} fails its checks: {e}"))
            })?;
            let (base, last) = (batch.base_offset(), batch.last_offset());
            if base != next {
                return Err(mismatch(format!(
                    "batch [{base}, {last}] found where offset {next} was expected"
                )));
            }
            let count = u64::from(batch.header().record_count);
            if last - base + 1 != count {
                return Err(mismatch(format!("batch [{base}, {last}] holds {count} records")));
            }
            batches.push(StoredBatch {
                base_offset: base,
                last_offset: last,
                bytes: batch.as_bytes().to_vec(),
            });
            next = last + 1;
        }
    }
    if next != end {
        return Err(mismatch(format!("batches end at offset {next}, the log says {end}")));
    }
    Ok(batches)
}

/// Checks that `batches` (a whole log, as [`read_whole_log`] returns it) holds exactly the
/// acknowledged batches, in order, at their acknowledged offsets, byte for byte.
pub fn check_exactly(batches: &[StoredBatch], acks: &[Ack]) -> Result<(), CheckError> {
    if batches.len() != acks.len() {
        return Err(mismatch(format!(
            "log holds {} batches, {} were acknowledged",
            batches.len(),
            acks.len()
        )));
    }
    check_acked(batches, acks)
}

/// Checks that every acknowledged batch is in `batches` at its acknowledged offsets, byte for
/// byte (other batches may be there too).
pub fn check_acked(batches: &[StoredBatch], acks: &[Ack]) -> Result<(), CheckError> {
    for ack in acks {
        let at = batches.partition_point(|b| b.base_offset < ack.base_offset);
        let Some(stored) = batches.get(at).filter(|b| b.base_offset == ack.base_offset) else {
            return Err(mismatch(format!("acknowledged batch {ack} is missing")));
        };
        if stored.last_offset != ack.last_offset {
            return Err(mismatch(format!(
                "acknowledged batch {ack} is stored as [{}, {}]",
                stored.base_offset, stored.last_offset
            )));
        }
        if !same_batch(&stored.bytes, &batch_for_seed(ack.seed)) {
            return Err(mismatch(format!(
                "acknowledged batch {ack} is stored with different bytes"
            )));
        }
    }
    Ok(())
}
