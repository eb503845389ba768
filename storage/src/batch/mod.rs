//! The record batch: the unit that is produced, stored, fetched and checksummed.
//!
//! - [`BatchBuilder`] encodes records (producer side).
//! - [`BatchView`] checks one batch and decodes its records without copying (consumer side);
//!   [`Batches`] walks the concatenated batches a log read returns.
//! - [`validate_for_append`] is what the log runs on bytes it did not write itself.
//!
//! The byte layout is Kafka's RecordBatch v2, in [`header`] and, drawn out, in
//! `docs/format.md`. A compressed batch is kept as produced; [`BatchView::records`]
//! decompresses it for readers that want records.

mod builder;
pub mod compression;
mod crc;
pub mod header;
mod records;
pub mod varint;

use std::borrow::Cow;

pub use builder::BatchBuilder;
pub(crate) use builder::{HeaderFields, put_record, write_header};
use bytes::Bytes;
pub use compression::Compression;
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
    #[error("batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("unsupported batch format (magic) {found}: this build reads magic {supported}")]
    UnsupportedVersion { found: u8, supported: u8 },
    #[error("unsupported compression codec {codec}")]
    UnsupportedCompression { codec: u16 },
    #[error("unknown batch attributes {attributes:#06x}")]
    UnknownAttributes { attributes: u16 },
    #[error("batch length field {length} does not cover the {HEADER_LEN}-byte header")]
    BadLength { length: i32 },
    #[error(
        "negative count in header: last_offset_delta {last_offset_delta}, records {record_count}"
    )]
    NegativeCount { last_offset_delta: i32, record_count: i32 },
    #[error("{attribute} batches are not accepted from producers")]
    AttributeNotAllowed { attribute: &'static str },
    #[error("cannot decompress records (codec {codec}): {reason}")]
    Decompress { codec: u16, reason: &'static str },
    #[error("records decompress to more than {limit} bytes")]
    DecompressedTooLarge { limit: u64 },
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
    /// A stored batch's base offset does not follow the batch before it (or its index entry).
    #[error("stored batch has base offset {found}; expected {expected}")]
    OffsetMismatch { expected: u64, found: u64 },
    /// A stored batch ends at or past the end its segment's index records.
    #[error("stored batch ends at offset {last}, past its segment's end {segment_end}")]
    OffsetPastSegment { last: u64, segment_end: u64 },
    /// A stored batch's leader epoch is not the 0 the log writes.
    #[error("stored batch has leader epoch {found}; the log writes 0")]
    LeaderEpoch { found: i32 },
}

/// One checked batch over borrowed bytes.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Checks the batch at the front of `bytes` (header and checksum) and returns a view of
    /// exactly that batch.
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

    /// The batch's records, decompressed if the batch is compressed (borrowed, without a
    /// copy, if it is not). Iterate them with [`Records::iter`].
    pub fn records(&self) -> Result<Records<'a>, BatchError> {
        let area = &self.bytes[HEADER_LEN..];
        let data = match self.header.codec() {
            0 => Cow::Borrowed(area),
            codec => Cow::Owned(compression::decompress(codec, area)?),
        };
        Ok(Records { data, header: self.header })
    }
}

/// The records of one batch, ready to decode (see [`BatchView::records`]).
#[derive(Debug, Clone)]
pub struct Records<'a> {
    data: Cow<'a, [u8]>,
    header: BatchHeader,
}

impl Records<'_> {
    /// Decodes the records in order; each item fails independently on malformed bytes.
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter::over(&self.data, &self.header)
    }

    /// The uncompressed records area.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// The records area as shared bytes: a slice of `batch` (the buffer this batch was parsed
    /// from) when the batch is not compressed, else the decompressed buffer. Decode it with
    /// [`RecordIter::over`]; keys and values can then be sliced out of it without a copy.
    pub fn into_bytes(self, batch: &Bytes) -> Bytes {
        match self.data {
            Cow::Borrowed(area) => batch.slice_ref(area),
            Cow::Owned(area) => Bytes::from(area),
        }
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

    /// Checks `bytes` as a batch of a transactional producer: as [`ValidBatch::check`], but
    /// the transactional bit is allowed (on an idempotent producer's batch). Whether the
    /// producer may write in a transaction is the broker's to check.
    pub fn check_transactional(bytes: Bytes) -> Result<Self, BatchError> {
        let validated = validate(&bytes, true)?;
        Ok(Self { bytes, validated })
    }

    /// A transaction marker the log built (`txn::Marker::batch`): a control batch, which no
    /// producer may send, so not one `validate_for_append` passes.
    pub(crate) fn marker(bytes: Bytes, validated: Validated) -> Self {
        Self { bytes, validated }
    }

    pub(crate) fn trusted(bytes: Bytes, validated: Validated) -> Self {
        debug_assert_eq!(validate(&bytes, true), Ok(validated));
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
/// the checksum matches, it has records and is no transaction marker, every record decodes
/// (after decompression), offset deltas are 0..n, and the header's `last_offset_delta` and
/// `max_timestamp` agree with the records.
pub fn validate_for_append(bytes: &[u8]) -> Result<Validated, BatchError> {
    validate(bytes, false)
}

/// [`validate_for_append`], with the transactional bit allowed or not.
fn validate(bytes: &[u8], transactional: bool) -> Result<Validated, BatchError> {
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
    refuse_broker_attributes(&header, transactional)?;
    let area = &bytes[HEADER_LEN..];
    let records = match header.codec() {
        0 => Cow::Borrowed(area),
        codec => Cow::Owned(compression::decompress(codec, area)?),
    };
    let scan = records::scan_dense(&records, header.record_count, header.first_timestamp)?;
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

/// Bytes at the front of a batch the log writes on append: base offset, length (unchanged)
/// and partition leader epoch. The checksum covers none of them.
pub const POSITION_LEN: usize = header::MAGIC;

/// Writes the log's part of a batch header into `front` (at least [`POSITION_LEN`] bytes of
/// an encoded batch): its base offset, and leader epoch 0 (eddy is its partitions' only
/// leader, always of epoch 0).
pub fn stamp_position(front: &mut [u8], base_offset: u64) {
    front[header::BASE_OFFSET..header::BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    front[header::LEADER_EPOCH..header::LEADER_EPOCH + 4].copy_from_slice(&0i32.to_be_bytes());
}

/// Attributes only a broker (or a transaction coordinator) may set.
fn refuse_broker_attributes(header: &BatchHeader, transactional: bool) -> Result<(), BatchError> {
    let refused = if header.is_control() {
        "control"
    } else if header.is_transactional() && !transactional {
        "transactional"
    } else if header.is_transactional() && (header.producer_id < 0 || header.base_sequence < 0) {
        "transactional (without a producer id and sequence)"
    } else if header.is_log_append_time() {
        "log-append-time"
    } else if header.attributes & header::ATTR_DELETE_HORIZON != 0 {
        "delete-horizon"
    } else {
        return Ok(());
    };
    Err(BatchError::AttributeNotAllowed { attribute: refused })
}

#[cfg(test)]
mod tests;
