//! Consumer side: zero-copy decoding of the records inside a batch.
//!
//! Every length is checked against the bytes that remain before it is used, so a malformed
//! record yields a [`RecordFault`] naming what was wrong, never a panic or an allocation.

use super::varint::{VarintError, get_uvarint, get_varint};
use super::{BatchError, Header};

/// What was wrong with a record that could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordFault {
    #[error("record runs past the end of the batch")]
    Truncated,
    #[error("varint longer than its type allows")]
    OverlongVarint,
    #[error("negative length {0} (only -1, meaning null, is allowed)")]
    NegativeLength(i64),
    #[error("record length says {declared} bytes but its fields take {used}")]
    LengthMismatch { declared: u64, used: u64 },
    #[error("unknown record attributes {0:#04x}")]
    UnknownAttributes(u8),
    #[error("offset delta {found} does not follow {previous}")]
    OffsetDeltaOrder { previous: i64, found: u64 },
    #[error("offset delta {found} is past the batch's last offset delta {last}")]
    OffsetDeltaPastEnd { found: u64, last: u32 },
}

impl From<VarintError> for RecordFault {
    fn from(e: VarintError) -> Self {
        match e {
            VarintError::Truncated => RecordFault::Truncated,
            VarintError::Overlong => RecordFault::OverlongVarint,
        }
    }
}

/// One decoded record, borrowing its key, value and headers from the batch bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    headers_raw: &'a [u8],
    header_count: u32,
    /// Offset of this record relative to its batch's base offset.
    pub offset_delta: u32,
    /// Timestamp relative to its batch's first timestamp.
    pub timestamp_delta: i64,
}

impl<'a> RecordView<'a> {
    /// The record's headers, in order.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            raw: self.headers_raw,
            remaining: self.header_count,
        }
    }

    /// Number of headers.
    pub fn header_count(&self) -> u32 {
        self.header_count
    }
}

/// Iterates the headers of a record that was already validated by [`RecordIter`].
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    raw: &'a [u8],
    remaining: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let mut cur = Cursor {
            bytes: self.raw,
            pos: 0,
        };
        // The record decoder walked these bytes already; a failure here cannot happen, and if it
        // did, ending the iteration is safer than panicking.
        let key = cur.bytes_nonnull().ok()?;
        let value = cur.bytes().ok()?;
        self.raw = &self.raw[cur.pos..];
        self.remaining -= 1;
        Some(Header { key, value })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

/// How strictly offset deltas are checked while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeltaRule {
    /// Freshly produced: the i-th record has delta i.
    Dense,
    /// Read back (compaction may have removed records): strictly increasing, within the batch.
    Increasing,
}

/// Decodes the records of one batch in order.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    data: &'a [u8],
    pos: usize,
    base_offset: u64,
    first_timestamp: i64,
    last_offset_delta: u32,
    index: u32,
    remaining: u32,
    previous_delta: i64,
    rule: DeltaRule,
    failed: bool,
}

impl<'a> RecordIter<'a> {
    pub(crate) fn new(
        data: &'a [u8],
        base_offset: u64,
        first_timestamp: i64,
        last_offset_delta: u32,
        record_count: u32,
        rule: DeltaRule,
    ) -> Self {
        Self {
            data,
            pos: 0,
            base_offset,
            first_timestamp,
            last_offset_delta,
            index: 0,
            remaining: record_count,
            previous_delta: -1,
            rule,
            failed: false,
        }
    }

    /// Bytes of the records area not yet decoded.
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    fn decode(&mut self) -> Result<RecordView<'a>, RecordFault> {
        let mut cur = Cursor {
            bytes: self.data,
            pos: self.pos,
        };
        let declared = cur.uvarint()?;
        let start = cur.pos;
        let available = (cur.bytes.len() - start) as u64;
        if declared > available {
            return Err(RecordFault::Truncated);
        }
        // Decode inside the record's own bytes so a field cannot borrow past its end.
        let end = start + declared as usize;
        let mut rec = Cursor {
            bytes: &self.data[..end],
            pos: start,
        };
        let attributes = rec.u8()?;
        if attributes != 0 {
            return Err(RecordFault::UnknownAttributes(attributes));
        }
        let timestamp_delta = rec.varint()?;
        let offset_delta = rec.uvarint()?;
        match self.rule {
            DeltaRule::Dense if offset_delta != u64::from(self.index) => {
                return Err(RecordFault::OffsetDeltaOrder {
                    previous: self.previous_delta,
                    found: offset_delta,
                });
            }
            DeltaRule::Increasing
                if (offset_delta as i64) <= self.previous_delta
                    || offset_delta > i64::MAX as u64 =>
            {
                return Err(RecordFault::OffsetDeltaOrder {
                    previous: self.previous_delta,
                    found: offset_delta,
                });
            }
            _ => {}
        }
        if offset_delta > u64::from(self.last_offset_delta) {
            return Err(RecordFault::OffsetDeltaPastEnd {
                found: offset_delta,
                last: self.last_offset_delta,
            });
        }
        let key = rec.bytes()?;
        let value = rec.bytes()?;
        let header_count = rec.uvarint()?;
        let headers_start = rec.pos;
        for _ in 0..header_count {
            rec.bytes_nonnull()?;
            rec.bytes()?;
        }
        if rec.pos != end {
            return Err(RecordFault::LengthMismatch {
                declared,
                used: (rec.pos - start) as u64,
            });
        }
        self.pos = end;
        self.previous_delta = offset_delta as i64;
        Ok(RecordView {
            offset: self.base_offset + offset_delta,
            timestamp: self.first_timestamp.wrapping_add(timestamp_delta),
            key,
            value,
            headers_raw: &self.data[headers_start..end],
            // header_count <= bytes walked, which fit in the batch, so it fits in u32.
            header_count: header_count as u32,
            offset_delta: offset_delta as u32,
            timestamp_delta,
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.remaining == 0 {
            return None;
        }
        match self.decode() {
            Ok(record) => {
                self.remaining -= 1;
                self.index += 1;
                Some(Ok(record))
            }
            Err(fault) => {
                self.failed = true;
                Some(Err(BatchError::Record {
                    index: self.index,
                    fault,
                }))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

/// A bounds-checked reader over a byte slice.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Result<u8, RecordFault> {
        let b = *self.bytes.get(self.pos).ok_or(RecordFault::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn uvarint(&mut self) -> Result<u64, RecordFault> {
        let (v, n) = get_uvarint(&self.bytes[self.pos..])?;
        self.pos += n;
        Ok(v)
    }

    fn varint(&mut self) -> Result<i64, RecordFault> {
        let (v, n) = get_varint(&self.bytes[self.pos..])?;
        self.pos += n;
        Ok(v)
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], RecordFault> {
        let remaining = (self.bytes.len() - self.pos) as u64;
        if len > remaining {
            return Err(RecordFault::Truncated);
        }
        let out = &self.bytes[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(out)
    }

    /// A zigzag length then that many bytes; length -1 is null.
    fn bytes(&mut self) -> Result<Option<&'a [u8]>, RecordFault> {
        match self.varint()? {
            -1 => Ok(None),
            len if len < 0 => Err(RecordFault::NegativeLength(len)),
            len => self.take(len as u64).map(Some),
        }
    }

    /// An unsigned length then that many bytes (header keys cannot be null).
    fn bytes_nonnull(&mut self) -> Result<&'a [u8], RecordFault> {
        let len = self.uvarint()?;
        self.take(len)
    }
}
