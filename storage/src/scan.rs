//! Checking one segment batch by batch, from a position on: what recovery does with every byte
//! after the recovery point.
//!
//! Each batch's header checksum, length (bounded by the file), body checksum and offset
//! continuity are checked; a good batch is added to the segment's index and the producer state.
//! The scan stops at the first batch that fails — a torn tail from a crash mid-write — and
//! reports where and why; the caller cuts there. A batch whose header checksum holds but whose
//! version, compression or attributes this build does not know was written whole by another
//! build: the scan refuses (`UnreadableBatch`) rather than report it as torn.

use std::path::Path;

use crate::active_index::ActiveIndex;
use crate::batch::{BatchError, BatchHeader, HEADER_LEN, header};
use crate::error::{Error, Result};
use crate::producer::ProducerTable;
use crate::txn::{AbortedTxn, ControlType, control_type};
use crate::vfs::FileHandle;

/// Largest control batch whose record is read to tell an abort from a commit (a marker is
/// about 80 bytes; a larger one was not written by eddy and is taken as a commit).
const MAX_MARKER_BYTES: u64 = 64 * 1024;

/// Bytes read at a time while checking a segment.
const SCAN_CHUNK_BYTES: u64 = 4 << 20;

/// Why a scan stopped before the end of the file.
#[derive(Debug, thiserror::Error)]
pub enum TailFault {
    #[error("{0}")]
    Batch(BatchError),
    #[error("batch has base offset {found}, expected {expected}")]
    OffsetGap { expected: u64, found: u64 },
    #[error("the next segment starts at offset {found}, expected {expected}")]
    SegmentGap { expected: u64, found: u64 },
}

/// What a scan found.
#[derive(Debug)]
pub struct SegmentScan {
    /// End of the last good batch.
    pub valid_len: u64,
    pub file_len: u64,
    pub fault: Option<TailFault>,
}

/// The state a scan carries along: the segment's index, the producers, the segment's first
/// batch timestamp.
#[derive(Debug)]
pub struct Carried<'a> {
    pub index: &'a mut ActiveIndex,
    pub producers: &'a mut ProducerTable,
    pub first_timestamp: &'a mut Option<i64>,
    /// Aborted transactions found (ABORT markers that ended an open transaction).
    pub aborted: &'a mut Vec<AbortedTxn>,
}

/// Checks the segment in `file` from byte `from` (the end of a good batch, whose successor
/// `carried.index` expects) to its end.
pub fn scan_segment(
    file: &dyn FileHandle,
    path: &Path,
    from: u64,
    interval: u32,
    carried: Carried<'_>,
) -> Result<SegmentScan> {
    let len = file.size().map_err(Error::io("stat", path))?;
    let mut window = Window { file, path, start: 0, buf: Vec::new() };
    let mut position = from;
    let mut fault = None;
    while position < len {
        if len - position < HEADER_LEN as u64 {
            let available = len - position;
            fault = Some(TailFault::Batch(BatchError::Truncated {
                needed: HEADER_LEN as u64,
                available,
            }));
            break;
        }
        let header = match parse_header(&mut window, position, len)? {
            Ok(h) => h,
            Err(e) => {
                fault = Some(TailFault::Batch(e));
                break;
            }
        };
        let expected = carried.index.next_offset();
        if header.base_offset != expected {
            fault = Some(TailFault::OffsetGap { expected, found: header.base_offset });
            break;
        }
        let batch_len = u64::from(header.batch_len);
        if position + batch_len > len {
            fault = Some(TailFault::Batch(BatchError::Truncated {
                needed: batch_len,
                available: len - position,
            }));
            break;
        }
        if !window.crc_holds(position, batch_len, header.crc, len)? {
            // Recomputed for the message only; a torn tail is the common case here.
            fault = Some(TailFault::Batch(BatchError::Checksum {
                stored: header.crc,
                computed: window.crc(position, batch_len, len)?,
            }));
            break;
        }
        carried.index.on_batch(&header, position, interval);
        carried.first_timestamp.get_or_insert(header.max_timestamp);
        let kind = if header.is_control() {
            marker_kind(&mut window, position, batch_len, len)?
        } else {
            None
        };
        let ended = carried.producers.record(&header);
        if let (Some(first), Some(ControlType::Abort)) = (ended, kind) {
            carried.aborted.push(AbortedTxn {
                producer_id: header.producer_id,
                first_offset: first,
                last_offset: header.base_offset,
                last_stable_offset: carried
                    .producers
                    .first_unstable()
                    .unwrap_or(header.next_offset()),
            });
        }
        position += batch_len;
    }
    Ok(SegmentScan { valid_len: position, file_len: len, fault })
}

/// What the control batch at `position` (checked whole) says.
fn marker_kind(
    window: &mut Window<'_>,
    position: u64,
    batch_len: u64,
    file_len: u64,
) -> Result<Option<ControlType>> {
    if batch_len > MAX_MARKER_BYTES {
        return Ok(None);
    }
    let bytes = window.get(position, batch_len, file_len)?;
    Ok(crate::batch::BatchView::parse(bytes).ok().and_then(|v| control_type(&v)))
}

/// The header at `position`, or why it is no batch (the caller has checked a header's length
/// is there). An unreadable batch that is whole refuses the open instead.
fn parse_header(
    window: &mut Window<'_>,
    position: u64,
    len: u64,
) -> Result<Result<BatchHeader, BatchError>> {
    let head = window.get(position, HEADER_LEN as u64, len)?;
    match BatchHeader::parse(head) {
        Ok(h) => Ok(Ok(h)),
        // If the checksum holds over the length the header claims, the batch was written
        // whole: not a torn tail but a format this build cannot read. Cutting it would lose
        // acknowledged data.
        Err(
            e @ (BatchError::UnsupportedVersion { .. }
            | BatchError::UnsupportedCompression { .. }
            | BatchError::UnknownAttributes { .. }),
        ) => {
            let (claimed_len, stored_crc) = raw_len_and_crc(head);
            if claimed_len >= HEADER_LEN as u64
                && claimed_len <= len - position
                && window.crc_holds(position, claimed_len, stored_crc, len)?
            {
                let path = window.path.to_path_buf();
                return Err(Error::UnreadableBatch { path, position, fault: e });
            }
            Ok(Err(e))
        }
        Err(e) => Ok(Err(e)),
    }
}

/// A read-ahead window over a segment, so small batches cost no syscall each.
struct Window<'a> {
    file: &'a dyn FileHandle,
    path: &'a Path,
    start: u64,
    buf: Vec<u8>,
}

impl Window<'_> {
    /// `len` bytes at `position`; the caller has checked they lie within the file's `file_len`.
    fn get(&mut self, position: u64, len: u64, file_len: u64) -> Result<&[u8]> {
        let have = position >= self.start && position + len <= self.start + self.buf.len() as u64;
        if !have {
            let want = len.max(SCAN_CHUNK_BYTES).min(file_len - position);
            self.buf.resize(want as usize, 0);
            self.file
                .read_exact_at(&mut self.buf, position)
                .map_err(Error::io("read", self.path))?;
            self.start = position;
        }
        let at = (position - self.start) as usize;
        Ok(&self.buf[at..at + len as usize])
    }
}

impl Window<'_> {
    /// The CRC-32C of a batch's checksummed bytes (attributes to end) at `position`, read in
    /// chunks, so a length read from a damaged header never sizes an allocation.
    fn crc(&mut self, position: u64, batch_len: u64, file_len: u64) -> Result<u32> {
        let mut crc = 0u32;
        let mut at = position + header::ATTRIBUTES as u64;
        let end = position + batch_len;
        while at < end {
            let take = (end - at).min(SCAN_CHUNK_BYTES);
            crc = crc32c::crc32c_append(crc, self.get(at, take, file_len)?);
            at += take;
        }
        Ok(crc)
    }

    fn crc_holds(
        &mut self,
        position: u64,
        batch_len: u64,
        stored: u32,
        file_len: u64,
    ) -> Result<bool> {
        Ok(self.crc(position, batch_len, file_len)? == stored)
    }
}

/// The whole-batch length and stored checksum a header claims, read without any other check.
fn raw_len_and_crc(head: &[u8]) -> (u64, u32) {
    let field = header::u32_at(head, header::BATCH_LENGTH) as i32;
    let len = u64::try_from(i64::from(field) + header::LENGTH_FIELD_END as i64).unwrap_or(0);
    (len, header::u32_at(head, header::CRC))
}
