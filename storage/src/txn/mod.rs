//! Transactions in one partition (Kafka's KIP-98, as a partition leader keeps them): the
//! markers that end them, the last stable offset, and the aborted transactions readers skip.
//!
//! - A transactional batch (attribute bit 4) from producer `p` starts `p`'s transaction in this
//!   partition if none is open; the producer table (`producer`) remembers its first offset. A
//!   control batch (bit 5, one record: key `version i16 = 0 | type i16`, value `version i16 = 0
//!   | coordinator_epoch i32`; type 0 abort, 1 commit) written by the broker ends it.
//! - The **last stable offset** (LSO) is the first offset of the earliest open transaction, or
//!   the log end when none is open. A `read_committed` reader reads only below it.
//! - An aborted transaction is remembered as [`AbortedTxn`] (producer, first offset, the
//!   marker's offset, and the LSO right after the marker) in `index` (memory and the
//!   `aborted.txnindex` file), so a reader can skip its records.
//!
//! Invariants:
//! - A partition that never saw a transaction pays nothing: the LSO is one atomic load besides
//!   the log end, and "any aborted transaction?" one more ([`index::TxnState`]).
//! - Every aborted transaction whose marker lies below the recovery point has its entry in
//!   `aborted.txnindex` on stable storage (the file is fsynced before a checkpoint is written);
//!   entries at or past it are dropped at open and found again by replaying the batches
//!   after the recovery point, so the index always agrees with the log that survived.
//! - Control batches never come from producers (`validate_for_append` refuses bit 5); only
//!   [`crate::Log::append_marker`] writes them.

pub(crate) mod index;
pub(crate) mod replay;

use bytes::Bytes;

use crate::batch::header::{ATTR_COMPRESSION_MASK, ATTR_CONTROL, ATTR_TRANSACTIONAL};
use crate::batch::{
    BatchHeader, BatchView, HEADER_LEN, HeaderFields, Record, ValidBatch, Validated, put_record,
    stamp_position, write_header,
};

/// What a control batch says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

impl ControlType {
    fn code(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }
}

/// One aborted transaction of one partition (an entry of Kafka's `.txnindex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first batch in this partition.
    pub first_offset: u64,
    /// Offset of its ABORT marker.
    pub last_offset: u64,
    /// The partition's last stable offset right after the marker: no transaction completed
    /// later can have started below it (what lets a lookup stop early).
    pub last_stable_offset: u64,
}

/// The transaction marker a coordinator writes to end `producer_id`'s transaction at `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub kind: ControlType,
    pub coordinator_epoch: i32,
    pub timestamp: i64,
}

impl Marker {
    /// The control batch for this marker, as Kafka lays it out.
    pub fn batch(&self) -> ValidBatch {
        let key = [0, 0, 0, self.kind.code() as u8];
        let mut value = [0u8; 6];
        value[2..].copy_from_slice(&self.coordinator_epoch.to_be_bytes());
        let mut buf = vec![0u8; HEADER_LEN];
        let record = Record {
            timestamp: self.timestamp,
            key: Some(&key),
            value: Some(&value),
            headers: &[],
        };
        put_record(&mut buf, &record, 0, 0);
        let fields = HeaderFields {
            attributes: ATTR_TRANSACTIONAL | ATTR_CONTROL,
            last_offset_delta: 0,
            first_timestamp: self.timestamp,
            max_timestamp: self.timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: -1,
            record_count: 1,
        };
        write_header(&mut buf, &fields);
        let header = header_of_built(&buf, &fields);
        ValidBatch::marker(Bytes::from(buf), Validated { header, has_null_key: false })
    }
}

/// The header of a batch this module just laid out (the same values `BatchHeader::parse`
/// reads back, without a fallible parse).
fn header_of_built(buf: &[u8], f: &HeaderFields) -> BatchHeader {
    BatchHeader {
        base_offset: 0,
        batch_len: buf.len() as u32,
        leader_epoch: -1,
        crc: crate::batch::header::u32_at(buf, crate::batch::header::CRC),
        attributes: f.attributes,
        last_offset_delta: f.last_offset_delta,
        first_timestamp: f.first_timestamp,
        max_timestamp: f.max_timestamp,
        producer_id: f.producer_id,
        producer_epoch: f.producer_epoch,
        base_sequence: f.base_sequence,
        record_count: f.record_count,
    }
}

/// What a control batch says (`None` if it is not one, or its record is not a marker).
pub fn control_type(batch: &BatchView<'_>) -> Option<ControlType> {
    if !batch.header().is_control() {
        return None;
    }
    let records = batch.records().ok()?;
    let first = records.iter().next()?.ok()?;
    match first.key? {
        [_, _, 0, 0, ..] => Some(ControlType::Abort),
        [_, _, 0, 1, ..] => Some(ControlType::Commit),
        _ => None,
    }
}

/// Whether the batch with `header` belongs to one of the `aborted` transactions.
pub fn is_aborted(header: &BatchHeader, aborted: &[AbortedTxn]) -> bool {
    header.is_transactional()
        && !header.is_control()
        && aborted.iter().any(|a| {
            a.producer_id == header.producer_id
                && a.first_offset <= header.base_offset
                && header.base_offset <= a.last_offset
        })
}

/// Whether a committed reader skips the batch with `header`: a marker, or aborted data.
pub fn is_hidden(header: &BatchHeader, aborted: &[AbortedTxn]) -> bool {
    header.is_control() || is_aborted(header, aborted)
}

/// `bytes` (whole batches, as a read returns them) as a committed reader sees them: every
/// control batch and every batch of an `aborted` transaction replaced by an empty batch with
/// the same offsets (as compaction leaves them), so a reader's position still moves past them.
/// Returns `bytes` itself, without a copy, when nothing is hidden.
pub fn committed_view(bytes: &Bytes, aborted: &[AbortedTxn]) -> Bytes {
    let mut at = 0;
    let mut any = false;
    while let Ok(h) = BatchHeader::parse(&bytes[at..]) {
        if is_hidden(&h, aborted) {
            any = true;
            break;
        }
        at += h.batch_len as usize;
        if at >= bytes.len() {
            break;
        }
    }
    if !any {
        return bytes.clone();
    }
    let batches = headers(bytes);
    let mut out = Vec::with_capacity(bytes.len());
    let mut end = 0;
    for (at, h) in &batches {
        let len = h.batch_len as usize;
        if is_hidden(h, aborted) {
            out.extend_from_slice(&empty_batch(h));
        } else {
            out.extend_from_slice(&bytes[*at..at + len]);
        }
        end = at + len;
    }
    // Whatever did not parse is left for the reader to report.
    out.extend_from_slice(&bytes[end..]);
    Bytes::from(out)
}

/// The headers of the whole batches at the front of `bytes`, with their positions.
fn headers(bytes: &[u8]) -> Vec<(usize, BatchHeader)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(h) = BatchHeader::parse(&bytes[at..]) {
        let len = h.batch_len as usize;
        if at + len > bytes.len() {
            break;
        }
        out.push((at, h));
        at += len;
    }
    out
}

/// A batch with `h`'s offsets and producer but no records (not control, not transactional).
fn empty_batch(h: &BatchHeader) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER_LEN];
    let fields = HeaderFields {
        attributes: h.attributes & !(ATTR_COMPRESSION_MASK | ATTR_CONTROL | ATTR_TRANSACTIONAL),
        last_offset_delta: h.last_offset_delta,
        first_timestamp: h.first_timestamp,
        max_timestamp: h.first_timestamp,
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        base_sequence: h.base_sequence,
        record_count: 0,
    };
    write_header(&mut buf, &fields);
    stamp_position(&mut buf, h.base_offset);
    buf
}

/// A batch with no records covering offsets `base..=last`: what a committed reader is given
/// for offsets it skips (markers, aborted data), so its position moves past them. `None` when
/// `last < base` or the range is wider than a batch can say (`u32` offset deltas).
pub fn skipped_batch(base: u64, last: u64) -> Option<Vec<u8>> {
    let last_offset_delta = u32::try_from(last.checked_sub(base)?).ok()?;
    let mut buf = vec![0u8; HEADER_LEN];
    let fields = HeaderFields {
        attributes: 0,
        last_offset_delta,
        first_timestamp: 0,
        max_timestamp: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: 0,
    };
    write_header(&mut buf, &fields);
    stamp_position(&mut buf, base);
    Some(buf)
}

/// The whole batches of `bytes` that start below `end` (a read cut at the last stable offset,
/// which is always a batch boundary).
pub fn cut_at(bytes: Bytes, end: u64) -> Bytes {
    let mut at = 0;
    while let Ok(h) = BatchHeader::parse(&bytes[at..]) {
        if h.base_offset >= end {
            break;
        }
        at += h.batch_len as usize;
        if at >= bytes.len() {
            return bytes;
        }
    }
    bytes.slice(..at.min(bytes.len()))
}

#[cfg(test)]
mod tests;
