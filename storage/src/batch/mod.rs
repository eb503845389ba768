//! The record batch: the unit that is produced, stored, fetched and checksummed.
//!
//! - [`BatchBuilder`] encodes records (producer side).
//! - [`BatchView`] checks one batch and decodes its records without copying (consumer side);
//!   [`Batches`] walks the concatenated batches a log read returns.
//! - [`validate_for_append`] is what the log runs on bytes it did not write itself.
//!
//! The byte layout is in [`header`] and, drawn out, in `docs/format.md`.

mod builder;
pub mod header;
mod records;
pub mod varint;

pub use builder::BatchBuilder;
pub(crate) use builder::{HeaderFields, put_record, write_header};
use bytes::Bytes;
pub use header::{BatchHeader, FORMAT_VERSION, HEADER_LEN};
pub use records::{HeaderIter, RecordFault, RecordIter, RecordView};

/// One record to encode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record<'a> {
    /// Milliseconds since the Unix epoch (event time, chosen by the producer).
    pub timestamp: i64,
    /// `None` is a null key (not allowed on compacted logs).
    pub key: Option<&'a [u8]>,
    /// `None` is a null value: a tombstone on compacted logs.
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header<'a>],
}

/// A record header: a non-null key and an optional value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// Why bytes are not a valid batch. Used for bytes from producers and from disk alike; the log
/// wraps it with the file and position when the bytes came from a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("truncated batch: need {needed} bytes, have {available}")]
    Truncated { needed: u64, available: u64 },
    #[error("batch header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderChecksum { stored: u32, computed: u32 },
    #[error("batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("unsupported batch format version {found} (this build reads version {supported})")]
    UnsupportedVersion { found: u8, supported: u8 },
    #[error("unsupported compression codec {codec}")]
    UnsupportedCompression { codec: u16 },
    #[error("unknown batch attributes {attributes:#06x}")]
    UnknownAttributes { attributes: u16 },
    #[error("batch length {batch_len} is shorter than the {HEADER_LEN}-byte header")]
    BadLength { batch_len: u32 },
    #[error("batch length {batch_len} does not match the {buffer_len} bytes given")]
    LengthMismatch { batch_len: u32, buffer_len: u64 },
    #[error("batch has no records")]
    Empty,
    #[error("{count} bytes after the last record")]
    TrailingBytes { count: u64 },
    #[error("header last_offset_delta {header} but the records end at delta {computed}")]
    LastOffsetDelta { header: u32, computed: u32 },
    #[error("header max_timestamp {header} but the records' largest is {computed}")]
    MaxTimestamp { header: i64, computed: i64 },
    #[error("record {index}: {fault}")]
    Record { index: u32, fault: RecordFault },
}

/// One checked batch over borrowed bytes.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Checks the batch at the front of `bytes` (both checksums) and returns a view of exactly
    /// that batch.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let header = BatchHeader::parse(bytes)?;
        let len = header.batch_len as usize;
        let Some(bytes) = bytes.get(..len) else {
            return Err(BatchError::Truncated {
                needed: len as u64,
                available: bytes.len() as u64,
            });
        };
        header.verify_body(bytes)?;
        Ok(Self { header, bytes })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    pub fn last_offset(&self) -> u64 {
        self.header.last_offset()
    }

    /// Decodes the records in order; each item fails independently on malformed bytes.
    pub fn records(&self) -> RecordIter<'a> {
        RecordIter::new(
            &self.bytes[HEADER_LEN..],
            self.header.base_offset,
            self.header.first_timestamp,
            self.header.last_offset_delta,
            self.header.record_count,
        )
    }
}

/// Walks concatenated batches (what [`Log::read`](crate::Log::read) returns), checking each.
/// Stops after the first error.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Batches<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes, failed: false }
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<BatchView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match BatchView::parse(self.rest) {
            Ok(view) => {
                self.rest = &self.rest[view.as_bytes().len()..];
                Some(Ok(view))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// A batch known to pass [`validate_for_append`]: either checked, or built by
/// [`BatchBuilder::build_valid`], which produces valid batches by construction. The log appends
/// it without checking again, which keeps checksum work out of a partition's serialised write
/// path (a server checks untrusted bytes on its connection threads first).
#[derive(Debug, Clone)]
pub struct ValidBatch {
    bytes: Bytes,
    validated: Validated,
}

impl ValidBatch {
    /// Checks `bytes` as [`validate_for_append`] does.
    pub fn check(bytes: Bytes) -> Result<Self, BatchError> {
        let validated = validate_for_append(&bytes)?;
        Ok(Self { bytes, validated })
    }

    pub(crate) fn trusted(bytes: Bytes, validated: Validated) -> Self {
        debug_assert_eq!(validate_for_append(&bytes), Ok(validated));
        Self { bytes, validated }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    pub fn header(&self) -> &BatchHeader {
        &self.validated.header
    }

    pub fn validated(&self) -> &Validated {
        &self.validated
    }
}

/// What [`validate_for_append`] learned about a batch while checking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validated {
    pub header: BatchHeader,
    /// Whether any record has a null key (refused by compacted logs).
    pub has_null_key: bool,
}

/// Checks a batch that arrived from outside before it is appended: `bytes` is exactly one batch,
/// both checksums match, it has records, every record decodes, offset deltas are 0..n, and the
/// header's `last_offset_delta` and `max_timestamp` agree with the records.
pub fn validate_for_append(bytes: &[u8]) -> Result<Validated, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    if header.batch_len as usize != bytes.len() {
        return Err(BatchError::LengthMismatch {
            batch_len: header.batch_len,
            buffer_len: bytes.len() as u64,
        });
    }
    header.verify_body(bytes)?;
    if header.record_count == 0 {
        return Err(BatchError::Empty);
    }
    let records = &bytes[HEADER_LEN..];
    let scan = records::scan_dense(records, header.record_count, header.first_timestamp)?;
    let trailing = (records.len() - scan.used) as u64;
    if trailing != 0 {
        return Err(BatchError::TrailingBytes { count: trailing });
    }
    let last_delta = header.record_count - 1;
    if header.last_offset_delta != last_delta {
        return Err(BatchError::LastOffsetDelta {
            header: header.last_offset_delta,
            computed: last_delta,
        });
    }
    if header.max_timestamp != scan.max_timestamp {
        return Err(BatchError::MaxTimestamp {
            header: header.max_timestamp,
            computed: scan.max_timestamp,
        });
    }
    Ok(Validated { header, has_null_key: scan.has_null_key })
}

#[cfg(test)]
mod tests;
