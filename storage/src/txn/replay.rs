//! Rebuilding a partition's aborted transactions from its batches, for when
//! `aborted.txnindex` is damaged (bit rot): entries below the recovery point are never found
//! again by recovery's check, which starts there, so they are found by reading every batch
//! header from the log start instead (and the record of each transactional control batch).
//!
//! Invariant: the result is every ABORT marker below `below` that ended a transaction which
//! began at or after the log start, as the check after the recovery point would have found
//! it. (A transaction begun before the log start — retention cut it in half — is known only
//! to the index; the caller keeps the entries the damaged file still holds whole.) It costs a
//! header read per batch of the log, and runs only when the index is damaged.

use std::path::Path;

use super::{AbortedTxn, ControlType, control_type};
use crate::batch::{BatchHeader, BatchView, HEADER_LEN};
use crate::error::{Error, Result};
use crate::files::{self, LOG_EXT};
use crate::producer::ProducerTable;
use crate::vfs::{FileHandle, Fs, OpenMode};

/// A control batch larger than this was not written by eddy (a marker is about 80 bytes).
const MAX_MARKER_BYTES: u64 = 64 * 1024;

/// The aborted transactions whose marker lies below `below`, from the segments `bases` (in
/// order), the last read up to `last_len` bytes.
pub(crate) fn aborted_below(
    fs: &Fs,
    dir: &Path,
    bases: &[u64],
    last_len: u64,
    below: u64,
) -> Result<Vec<AbortedTxn>> {
    let mut producers = ProducerTable::default();
    let mut out = Vec::new();
    for (i, &base) in bases.iter().enumerate() {
        let path = files::segment_file(dir, base, LOG_EXT);
        let file = fs.open(&path, OpenMode::READ).map_err(Error::io("open", &path))?;
        let len = if i + 1 == bases.len() {
            last_len
        } else {
            file.size().map_err(Error::io("stat", &path))?
        };
        let mut walk = Walk { file: &*file, path: &path, producers: &mut producers, out: &mut out };
        walk.segment(len, below)?;
    }
    Ok(out)
}

struct Walk<'a> {
    file: &'a dyn FileHandle,
    path: &'a Path,
    producers: &'a mut ProducerTable,
    out: &'a mut Vec<AbortedTxn>,
}

impl Walk<'_> {
    /// Every batch of the segment's first `len` bytes; stops at one that does not parse (a
    /// read that reaches it reports it).
    fn segment(&mut self, len: u64, below: u64) -> Result<()> {
        let mut position = 0u64;
        while position + HEADER_LEN as u64 <= len {
            let mut head = [0u8; HEADER_LEN];
            self.read(&mut head, position)?;
            let Ok(h) = BatchHeader::parse(&head) else { break };
            let batch_len = u64::from(h.batch_len);
            if position + batch_len > len || h.base_offset >= below {
                break;
            }
            let kind = self.marker_kind(&h, position)?;
            let ended = self.producers.record(&h);
            if let (Some(first), Some(ControlType::Abort)) = (ended, kind) {
                self.out.push(AbortedTxn {
                    producer_id: h.producer_id,
                    first_offset: first,
                    last_offset: h.base_offset,
                    last_stable_offset: self.producers.first_unstable().unwrap_or(h.next_offset()),
                });
            }
            position += batch_len;
        }
        Ok(())
    }

    /// What a transactional control batch says (read whole, checked); `None` otherwise.
    fn marker_kind(&self, h: &BatchHeader, position: u64) -> Result<Option<ControlType>> {
        let batch_len = u64::from(h.batch_len);
        if !(h.is_control() && h.is_transactional()) || batch_len > MAX_MARKER_BYTES {
            return Ok(None);
        }
        // Bounded above: at most 64 KiB.
        let mut bytes = vec![0u8; batch_len as usize];
        self.read(&mut bytes, position)?;
        if h.verify_body(&bytes).is_err() {
            return Ok(None);
        }
        Ok(BatchView::parse(&bytes).ok().and_then(|v| control_type(&v)))
    }

    fn read(&self, buf: &mut [u8], position: u64) -> Result<()> {
        self.file.read_exact_at(buf, position).map_err(Error::io("read", self.path))
    }
}
