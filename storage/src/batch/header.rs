//! The fixed 61-byte batch header: field offsets, parsing and checksums.
//!
//! Layout (all integers little-endian; `docs/format.md` draws it):
//!
//! ```text
//!  0  base_offset        u64  assigned by the log on append; outside both checksums
//!  8  header_crc         u32  CRC-32 of bytes 12..61 (so a torn length is caught before use)
//! 12  batch_len          u32  length of the whole batch in bytes, header included
//! 16  crc                u32  CRC-32 of bytes 20..batch_len (version byte to the last record)
//! 20  version            u8   format version, currently 1
//! 21  attributes         u16  bits 0-2: compression codec (0 = none); other bits must be 0
//! 23  last_offset_delta  u32  offset of the last record minus base_offset
//! 27  first_timestamp    i64  ms since the epoch; record timestamps are deltas from it
//! 35  max_timestamp      i64  largest record timestamp in the batch
//! 43  producer_id        i64  -1 when the producer is not idempotent
//! 51  producer_epoch     i16  -1 when the producer is not idempotent
//! 53  base_sequence      i32  sequence of the first record; -1 when not idempotent
//! 57  record_count       u32
//! 61  records...
//! ```
//!
//! Neither checksum covers `base_offset`, so the log assigns offsets by writing eight bytes in
//! front of the producer's untouched bytes.

use super::BatchError;

pub const BASE_OFFSET: usize = 0;
pub const HEADER_CRC: usize = BASE_OFFSET + 8;
pub const BATCH_LEN: usize = HEADER_CRC + 4;
pub const CRC: usize = BATCH_LEN + 4;
pub const VERSION: usize = CRC + 4;
pub const ATTRIBUTES: usize = VERSION + 1;
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

/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u8 = 1;
/// Attribute bits that select a compression codec.
pub const ATTR_COMPRESSION_MASK: u16 = 0b111;
/// Producer id, epoch and sequence of a batch from a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;

/// The decoded fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    /// Whole batch length in bytes, header included.
    pub batch_len: u32,
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
    /// Parses and checks the header at the front of `bytes`: the header checksum, the version,
    /// the attributes and that `batch_len` is at least a header. The body is not looked at.
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        let Some(head) = bytes.get(..HEADER_LEN) else {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN as u64,
                available: bytes.len() as u64,
            });
        };
        let stored = u32_at(head, HEADER_CRC);
        let computed = crc32fast::hash(&head[BATCH_LEN..HEADER_LEN]);
        if stored != computed {
            return Err(BatchError::HeaderChecksum { stored, computed });
        }
        let version = head[VERSION];
        if version != FORMAT_VERSION {
            return Err(BatchError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let attributes = u16::from_le_bytes([head[ATTRIBUTES], head[ATTRIBUTES + 1]]);
        if attributes & ATTR_COMPRESSION_MASK != 0 {
            return Err(BatchError::UnsupportedCompression {
                codec: attributes & ATTR_COMPRESSION_MASK,
            });
        }
        if attributes & !ATTR_COMPRESSION_MASK != 0 {
            return Err(BatchError::UnknownAttributes { attributes });
        }
        let batch_len = u32_at(head, BATCH_LEN);
        if (batch_len as usize) < HEADER_LEN {
            return Err(BatchError::BadLength { batch_len });
        }
        Ok(Self {
            base_offset: u64_at(head, BASE_OFFSET),
            batch_len,
            crc: u32_at(head, CRC),
            attributes,
            last_offset_delta: u32_at(head, LAST_OFFSET_DELTA),
            first_timestamp: u64_at(head, FIRST_TIMESTAMP) as i64,
            max_timestamp: u64_at(head, MAX_TIMESTAMP) as i64,
            producer_id: u64_at(head, PRODUCER_ID) as i64,
            producer_epoch: i16::from_le_bytes([head[PRODUCER_EPOCH], head[PRODUCER_EPOCH + 1]]),
            base_sequence: u32_at(head, BASE_SEQUENCE) as i32,
            record_count: u32_at(head, RECORD_COUNT),
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

    /// Sequence number of the last record (sequences wrap at `i32::MAX`, as in Kafka).
    pub fn last_sequence(&self) -> i32 {
        add_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// Checks the body checksum of `batch`, which must hold exactly this header's batch.
    pub fn verify_body(&self, batch: &[u8]) -> Result<(), BatchError> {
        let Some(body) = batch.get(VERSION..self.batch_len as usize) else {
            return Err(BatchError::Truncated {
                needed: u64::from(self.batch_len),
                available: batch.len() as u64,
            });
        };
        let computed = crc32fast::hash(body);
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

/// Writes the checksums of a fully laid-out batch (body checksum first: the header checksum
/// covers it).
pub fn seal_checksums(batch: &mut [u8]) {
    let crc = crc32fast::hash(&batch[VERSION..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_le_bytes());
    let header_crc = crc32fast::hash(&batch[BATCH_LEN..HEADER_LEN]);
    batch[HEADER_CRC..HEADER_CRC + 4].copy_from_slice(&header_crc.to_le_bytes());
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}
