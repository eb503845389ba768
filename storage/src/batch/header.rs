//! The fixed 61-byte batch header: field offsets, parsing and the checksum.
//!
//! The layout is Kafka's RecordBatch v2 ("magic 2"), so the bytes a Kafka client produces are
//! the bytes eddy stores and the bytes it serves back. All integers are big-endian
//! (`docs/format.md` draws it):
//!
//! ```text
//!  0  base_offset             i64  assigned by the log on append; outside the checksum
//!  8  batch_length            i32  bytes after this field (whole batch length - 12)
//! 12  partition_leader_epoch  i32  written by the log on append (0); outside the checksum
//! 16  magic                   i8   2
//! 17  crc                     u32  CRC-32C of bytes 21..end (attributes to the last record)
//! 21  attributes              i16  bits 0-2 compression, 3 timestamp type, 4 transactional,
//!                                  5 control, 6 delete horizon; 7-15 must be 0
//! 23  last_offset_delta       i32  offset of the last record minus base_offset
//! 27  base_timestamp          i64  ms since the epoch; record timestamps are deltas from it
//! 35  max_timestamp           i64  largest record timestamp in the batch
//! 43  producer_id             i64  -1 when the producer is not idempotent
//! 51  producer_epoch          i16  -1 when the producer is not idempotent
//! 53  base_sequence           i32  sequence of the first record; -1 when not idempotent
//! 57  record_count            i32
//! 61  records... (compressed as one block when bits 0-2 are not 0)
//! ```
//!
//! The checksum covers neither `base_offset` nor the leader epoch, so the log assigns offsets
//! by writing sixteen bytes in front of the producer's untouched bytes. The length is not
//! covered either: whoever reads it bounds it by the bytes that exist before using it.

use super::BatchError;

pub const BASE_OFFSET: usize = 0;
pub const BATCH_LENGTH: usize = BASE_OFFSET + 8;
pub const LEADER_EPOCH: usize = BATCH_LENGTH + 4;
pub const MAGIC: usize = LEADER_EPOCH + 4;
pub const CRC: usize = MAGIC + 1;
pub const ATTRIBUTES: usize = CRC + 4;
pub const LAST_OFFSET_DELTA: usize = ATTRIBUTES + 2;
pub const FIRST_TIMESTAMP: usize = LAST_OFFSET_DELTA + 4;
pub const MAX_TIMESTAMP: usize = FIRST_TIMESTAMP + 8;
pub const PRODUCER_ID: usize = MAX_TIMESTAMP + 8;
pub const PRODUCER_EPOCH: usize = PRODUCER_ID + 8;
pub const BASE_SEQUENCE: usize = PRODUCER_EPOCH + 2;
pub const RECORD_COUNT: usize = BASE_SEQUENCE + 4;
/// Size of the fixed header; records start here.
pub const HEADER_LEN: usize = RECORD_COUNT + 4;
const _: () = assert!(HEADER_LEN == 61);
/// Bytes before `batch_length` counts: the base offset and the length field itself.
pub const LENGTH_FIELD_END: usize = LEADER_EPOCH;

/// The only format version (Kafka's "magic") this build reads and writes.
pub const FORMAT_VERSION: u8 = 2;
/// Attribute bits that select a compression codec.
pub const ATTR_COMPRESSION_MASK: u16 = 0b111;
/// Set when record timestamps are the broker's append time, not the producer's.
pub const ATTR_LOG_APPEND_TIME: u16 = 1 << 3;
/// Set on batches written inside a transaction.
pub const ATTR_TRANSACTIONAL: u16 = 1 << 4;
/// Set on control batches (transaction markers), which hold no user records.
pub const ATTR_CONTROL: u16 = 1 << 5;
/// Set when compaction recorded a delete horizon in `base_timestamp`.
pub const ATTR_DELETE_HORIZON: u16 = 1 << 6;
const ATTR_KNOWN: u16 = ATTR_COMPRESSION_MASK
    | ATTR_LOG_APPEND_TIME
    | ATTR_TRANSACTIONAL
    | ATTR_CONTROL
    | ATTR_DELETE_HORIZON;
/// The highest compression codec defined (4 = zstd).
pub const MAX_CODEC: u16 = 4;
/// Producer id, epoch and sequence of a batch from a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;

/// The decoded fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    /// Whole batch length in bytes, header included (the stored field plus 12).
    pub batch_len: u32,
    pub leader_epoch: i32,
    pub crc: u32,
    pub attributes: u16,
    pub last_offset_delta: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: u32,
}

impl BatchHeader {
    /// Parses and checks the header at the front of `bytes`: the magic byte, the attributes,
    /// that the length covers at least a header and that the counts are not negative. The
    /// body (and so the checksum) is not looked at.
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        let Some(head) = bytes.get(..HEADER_LEN) else {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN as u64,
                available: bytes.len() as u64,
            });
        };
        let magic = head[MAGIC];
        if magic != FORMAT_VERSION {
            return Err(BatchError::UnsupportedVersion { found: magic, supported: FORMAT_VERSION });
        }
        let attributes = u16_at(head, ATTRIBUTES);
        if attributes & !ATTR_KNOWN != 0 {
            return Err(BatchError::UnknownAttributes { attributes });
        }
        if attributes & ATTR_COMPRESSION_MASK > MAX_CODEC {
            return Err(BatchError::UnsupportedCompression {
                codec: attributes & ATTR_COMPRESSION_MASK,
            });
        }
        let length_field = u32_at(head, BATCH_LENGTH) as i32;
        let batch_len = i64::from(length_field) + LENGTH_FIELD_END as i64;
        if batch_len < HEADER_LEN as i64 || batch_len > i64::from(u32::MAX) {
            return Err(BatchError::BadLength { length: length_field });
        }
        let last_offset_delta = u32_at(head, LAST_OFFSET_DELTA) as i32;
        let record_count = u32_at(head, RECORD_COUNT) as i32;
        if last_offset_delta < 0 || record_count < 0 {
            return Err(BatchError::NegativeCount { last_offset_delta, record_count });
        }
        Ok(Self {
            base_offset: u64_at(head, BASE_OFFSET),
            batch_len: batch_len as u32,
            leader_epoch: u32_at(head, LEADER_EPOCH) as i32,
            crc: u32_at(head, CRC),
            attributes,
            last_offset_delta: last_offset_delta as u32,
            first_timestamp: u64_at(head, FIRST_TIMESTAMP) as i64,
            max_timestamp: u64_at(head, MAX_TIMESTAMP) as i64,
            producer_id: u64_at(head, PRODUCER_ID) as i64,
            producer_epoch: u16_at(head, PRODUCER_EPOCH) as i16,
            base_sequence: u32_at(head, BASE_SEQUENCE) as i32,
            record_count: record_count as u32,
        })
    }

    /// Offset of the last record (or, for a batch emptied by compaction, the last offset the
    /// batch once held).
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// The offset that follows this batch.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    /// Whether the batch carries an idempotent producer's identity.
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }

    /// The compression codec of the records area (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn codec(&self) -> u16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    /// Whether record timestamps are the broker's append time (`max_timestamp`).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// Whether this is a control batch (a transaction marker, not user records).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Whether the batch was written inside a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Sequence number of the last record (sequences wrap at `i32::MAX`, as in Kafka).
    pub fn last_sequence(&self) -> i32 {
        add_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// Checks the checksum of `batch`, which must hold exactly this header's batch.
    pub fn verify_body(&self, batch: &[u8]) -> Result<(), BatchError> {
        let Some(body) = batch.get(ATTRIBUTES..self.batch_len as usize) else {
            return Err(BatchError::Truncated {
                needed: u64::from(self.batch_len),
                available: batch.len() as u64,
            });
        };
        let computed = crc32c::crc32c(body);
        if computed != self.crc {
            return Err(BatchError::Checksum { stored: self.crc, computed });
        }
        Ok(())
    }
}

/// `base + delta` in sequence space, which wraps from `i32::MAX` to 0.
pub fn add_sequence(base: i32, delta: u32) -> i32 {
    ((i64::from(base) + i64::from(delta)) % (i64::from(i32::MAX) + 1)) as i32
}

/// Writes the checksum of a fully laid-out batch.
pub fn seal_checksums(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Writes the checksum of a fully laid-out batch whose records' CRC-32C (of
/// `batch[HEADER_LEN..]`) is `records_crc`: only the header is read. CRC-32C is linear, so
/// the CRC of the header fields followed by the records is the header's CRC shifted past the
/// records' length and combined with theirs (`crc.rs`) — byte for byte what [`seal_checksums`]
/// writes.
pub fn seal_checksums_with_records(batch: &mut [u8], records_crc: u32) {
    let head = crc32c::crc32c(&batch[ATTRIBUTES..HEADER_LEN]);
    let records_len = batch.len() - HEADER_LEN;
    let crc = super::crc::crc32c_combine(head, records_crc, records_len);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(raw)
}

/// Little-endian readers for eddy's own files (indexes, producer snapshots), which keep the
/// byte order they were designed with; only batches follow Kafka's big-endian layout.
pub(crate) fn le_u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

pub(crate) fn le_u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}
