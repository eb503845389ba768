//! Consumer side: zero-copy decoding of the records inside a batch.
//!
//! Every length is checked against the bytes that remain before it is used, so a malformed
//! record yields a [`RecordFault`] naming what was wrong, never a panic or an allocation.

use super::varint::{VarintError, get_uvarint, get_varint};
use super::{BatchError, BatchHeader, Header};

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
        HeaderIter { raw: self.headers_raw, remaining: self.header_count }
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
        let mut cur = Cursor { bytes: self.raw, pos: 0 };
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
    failed: bool,
    /// The batch's `max_timestamp` when its records carry the broker's append time.
    log_append_time: Option<i64>,
}

impl<'a> RecordIter<'a> {
    /// Decodes the (uncompressed) records area `data` of the batch whose header is `header`
    /// (see [`Records::into_bytes`](super::Records::into_bytes)).
    pub fn over(data: &'a [u8], header: &BatchHeader) -> Self {
        Self {
            data,
            pos: 0,
            base_offset: header.base_offset,
            first_timestamp: header.first_timestamp,
            last_offset_delta: header.last_offset_delta,
            index: 0,
            remaining: header.record_count,
            previous_delta: -1,
            failed: false,
            log_append_time: header.is_log_append_time().then_some(header.max_timestamp),
        }
    }

    #[inline(always)]
    fn decode(&mut self) -> Result<RecordView<'a>, RecordFault> {
        let mut cur = Cursor { bytes: self.data, pos: self.pos };
        let declared = cur.length()?;
        let start = cur.pos;
        let available = (cur.bytes.len() - start) as u64;
        if declared > available {
            return Err(RecordFault::Truncated);
        }
        // Decode inside the record's own bytes so a field cannot borrow past its end.
        let end = start + declared as usize;
        let mut rec = Cursor { bytes: &self.data[..end], pos: start };
        let attributes = rec.u8()?;
        if attributes != 0 {
            return Err(RecordFault::UnknownAttributes(attributes));
        }
        let timestamp_delta = rec.varint()?;
        let offset_delta = rec.length()?;
        if offset_delta > u64::from(self.last_offset_delta) {
            return Err(RecordFault::OffsetDeltaPastEnd {
                found: offset_delta,
                last: self.last_offset_delta,
            });
        }
        // Within the batch (so it fits in u32 and i64), and strictly after the previous record.
        if offset_delta as i64 <= self.previous_delta {
            return Err(RecordFault::OffsetDeltaOrder {
                previous: self.previous_delta,
                found: offset_delta,
            });
        }
        let key = rec.bytes()?;
        let value = rec.bytes()?;
        let header_count = rec.length()?;
        let headers_start = rec.pos;
        for _ in 0..header_count {
            rec.bytes_nonnull()?;
            rec.bytes()?;
        }
        if rec.pos != end {
            return Err(RecordFault::LengthMismatch { declared, used: (rec.pos - start) as u64 });
        }
        self.pos = end;
        self.previous_delta = offset_delta as i64;
        Ok(RecordView {
            offset: self.base_offset + offset_delta,
            timestamp: match self.log_append_time {
                Some(t) => t,
                None => self.first_timestamp.wrapping_add(timestamp_delta),
            },
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
                Some(Err(BatchError::Record { index: self.index, fault }))
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
    #[inline(always)]
    fn u8(&mut self) -> Result<u8, RecordFault> {
        let b = *self.bytes.get(self.pos).ok_or(RecordFault::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// A zigzag varint that must not be negative (a length, count or delta).
    #[inline(always)]
    fn length(&mut self) -> Result<u64, RecordFault> {
        match self.varint()? {
            len if len < 0 => Err(RecordFault::NegativeLength(len)),
            len => Ok(len as u64),
        }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<i64, RecordFault> {
        let (v, n) = get_varint(&self.bytes[self.pos..])?;
        self.pos += n;
        Ok(v)
    }

    #[inline(always)]
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
    #[inline(always)]
    fn bytes(&mut self) -> Result<Option<&'a [u8]>, RecordFault> {
        match self.varint()? {
            -1 => Ok(None),
            len if len < 0 => Err(RecordFault::NegativeLength(len)),
            len => self.take(len as u64).map(Some),
        }
    }

    /// A length then that many bytes (header keys cannot be null).
    #[inline(always)]
    fn bytes_nonnull(&mut self) -> Result<&'a [u8], RecordFault> {
        let len = self.length()?;
        self.take(len)
    }
}

/// What [`scan_dense`] learned while checking a batch's records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DenseScan {
    /// Bytes of the records area the records used.
    pub used: usize,
    pub max_timestamp: i64,
    pub has_null_key: bool,
}

/// Checks `count` freshly produced records (offset deltas 0..count) without building views: the
/// append path's validation, kept to one tight loop because it runs over every produced byte.
/// Applies the rules of [`RecordIter`], with offset deltas required to be exactly 0..count.
pub(crate) fn scan_dense(
    data: &[u8],
    count: u32,
    first_timestamp: i64,
) -> Result<DenseScan, BatchError> {
    let mut next = 0usize;
    let mut max_timestamp = i64::MIN;
    let mut has_null_key = false;
    for index in 0..count {
        let fault = |fault| BatchError::Record { index, fault };
        let mut pos = next;
        let declared = length_at(data, &mut pos).map_err(fault)?;
        if declared > (data.len() - pos) as u64 {
            return Err(fault(RecordFault::Truncated));
        }
        let start = pos;
        // The next record's position depends only on this length, not on parsing this record's
        // fields, so the CPU can start on the next record while this one is checked.
        let end = pos + declared as usize;
        next = end;
        let rec = &data[..end];
        let (timestamp_delta, null_key) = check_record(rec, &mut pos, index).map_err(fault)?;
        if pos != end {
            return Err(fault(RecordFault::LengthMismatch {
                declared,
                used: (pos - start) as u64,
            }));
        }
        has_null_key |= null_key;
        max_timestamp = max_timestamp.max(first_timestamp.wrapping_add(timestamp_delta));
    }
    Ok(DenseScan { used: next, max_timestamp, has_null_key })
}

/// The fields of one record inside `rec` from `pos`: returns its timestamp delta and whether
/// its key is null.
#[inline(always)]
fn check_record(rec: &[u8], pos: &mut usize, index: u32) -> Result<(i64, bool), RecordFault> {
    let attributes = *rec.get(*pos).ok_or(RecordFault::Truncated)?;
    *pos += 1;
    if attributes != 0 {
        return Err(RecordFault::UnknownAttributes(attributes));
    }
    let timestamp_delta = varint_at(rec, pos)?;
    let offset_delta = length_at(rec, pos)?;
    if offset_delta != u64::from(index) {
        return Err(RecordFault::OffsetDeltaOrder {
            previous: i64::from(index) - 1,
            found: offset_delta,
        });
    }
    let null_key = skip_nullable(rec, pos)?;
    skip_nullable(rec, pos)?;
    let headers = length_at(rec, pos)?;
    for _ in 0..headers {
        let key_len = length_at(rec, pos)?;
        skip(rec, pos, key_len)?;
        skip_nullable(rec, pos)?;
    }
    Ok((timestamp_delta, null_key))
}

#[inline(always)]
fn uvarint_at(buf: &[u8], pos: &mut usize) -> Result<u64, RecordFault> {
    // One- and two-byte varints (values below 16384) cover nearly every length, delta and
    // timestamp offset in a batch; decode them without the general loop.
    match buf.get(*pos..).unwrap_or_default() {
        [b0, ..] if *b0 < 0x80 => {
            *pos += 1;
            Ok(u64::from(*b0))
        }
        [b0, b1, ..] if *b1 < 0x80 => {
            *pos += 2;
            Ok(u64::from(b0 & 0x7f) | (u64::from(*b1) << 7))
        }
        rest => {
            let (v, n) = get_uvarint(rest)?;
            *pos += n;
            Ok(v)
        }
    }
}

#[inline(always)]
fn varint_at(buf: &[u8], pos: &mut usize) -> Result<i64, RecordFault> {
    let v = uvarint_at(buf, pos)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

/// A zigzag varint that must not be negative (a length, count or delta).
#[inline(always)]
fn length_at(buf: &[u8], pos: &mut usize) -> Result<u64, RecordFault> {
    match varint_at(buf, pos)? {
        len if len < 0 => Err(RecordFault::NegativeLength(len)),
        len => Ok(len as u64),
    }
}

#[inline(always)]
fn skip(buf: &[u8], pos: &mut usize, len: u64) -> Result<(), RecordFault> {
    if len > (buf.len() - *pos) as u64 {
        return Err(RecordFault::Truncated);
    }
    *pos += len as usize;
    Ok(())
}

/// Skips a zigzag length and its bytes; `true` if the length was -1 (null).
#[inline(always)]
fn skip_nullable(buf: &[u8], pos: &mut usize) -> Result<bool, RecordFault> {
    match varint_at(buf, pos)? {
        -1 => Ok(true),
        len if len < 0 => Err(RecordFault::NegativeLength(len)),
        len => skip(buf, pos, len as u64).map(|()| false),
    }
}
