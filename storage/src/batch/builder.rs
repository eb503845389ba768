//! Producer side: lays records out in the batch format (Kafka's RecordBatch v2), ready to
//! append or send.

use bytes::Bytes;

use super::compression::{self, Compression};
use super::header::{self, HEADER_LEN, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};
use super::varint::{put_varint, varint_len};
use super::{BatchError, BatchHeader, Header, Record, ValidBatch, Validated};

/// Builds one record batch. Records are encoded as they are pushed, so `build` only fills in the
/// header and the checksum.
///
/// The checksum covers the header's fields after it — among them the producer's sequence,
/// which is known only when the batch is sent — and then the records. A caller that encodes
/// records off the sending path can checksum them there as well
/// ([`checksum_records`](Self::checksum_records)); `build` then reads only the header's 40
/// checksummed bytes and combines their CRC with the records' (`crc32c_combine`), instead of
/// reading the whole batch again.
///
/// ```
/// use eddy_storage::batch::{BatchBuilder, BatchView, Record};
///
/// let mut builder = BatchBuilder::new();
/// builder.push(Record { timestamp: 1_700_000_000_000, key: Some(b"k"), value: Some(b"v"), headers: &[] });
/// builder.push(Record { timestamp: 1_700_000_000_001, key: None, value: None, headers: &[] });
/// let bytes = builder.build();
/// let batch = BatchView::parse(&bytes).unwrap();
/// let records = batch.records().unwrap();
/// let records: Vec<_> = records.iter().collect::<Result<_, _>>().unwrap();
/// assert_eq!(records[0].key, Some(&b"k"[..]));
/// assert_eq!(records[1].value, None);
/// assert_eq!(records[1].offset, 1);
/// ```
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    record_count: u32,
    first_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    has_null_key: bool,
    codec: u16,
    /// Set by [`BatchBuilder::transactional`].
    transactional: bool,
    /// CRC-32C of `buf[HEADER_LEN..checksummed]`, the records checksummed so far.
    records_crc: u32,
    /// End of the records `records_crc` covers (`HEADER_LEN`: none).
    checksummed: usize,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty builder for a non-idempotent producer.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty builder whose buffer holds `bytes` of records before growing.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER_LEN + bytes);
        buf.resize(HEADER_LEN, 0);
        Self {
            buf,
            record_count: 0,
            first_timestamp: 0,
            max_timestamp: i64::MIN,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            has_null_key: false,
            codec: 0,
            transactional: false,
            records_crc: 0,
            checksummed: HEADER_LEN,
        }
    }

    /// Compresses the records with `codec` (1 gzip, 2 snappy, 3 lz4, 4 zstd) when the batch is
    /// finished, as a Kafka producer's `compression.type` does.
    pub fn compression(mut self, codec: Compression) -> Self {
        self.codec = codec as u16;
        self
    }

    /// Marks the batch as coming from idempotent producer `id` at `epoch`, its first record
    /// carrying `base_sequence`.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch as written inside a transaction (attribute bit 4), as a transactional
    /// producer's batches are; it must also carry a producer ([`BatchBuilder::producer`]).
    pub fn transactional(mut self) -> Self {
        self.transactional = true;
        self
    }

    /// Appends a record; its offset delta is its position in the batch.
    pub fn push(&mut self, record: Record<'_>) {
        if self.record_count == 0 {
            self.first_timestamp = record.timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        self.has_null_key |= record.key.is_none();
        let timestamp_delta = record.timestamp.wrapping_sub(self.first_timestamp);
        let offset_delta = u64::from(self.record_count);
        put_record(&mut self.buf, &record, timestamp_delta, offset_delta);
        self.record_count += 1;
    }

    /// Checksums the records pushed since the last call, so that `build` need not read them
    /// again. Worth it only where the records are encoded off the path that builds the batch
    /// (a producer encoding a group in the caller's task): call it every few tens of KiB while
    /// the bytes are still in cache, and once after the last record. A compressed batch's
    /// checksum covers the compressed bytes, so this is wasted on one.
    pub fn checksum_records(&mut self) {
        let fresh = &self.buf[self.checksummed..];
        self.records_crc = crc32c::crc32c_append(self.records_crc, fresh);
        self.checksummed = self.buf.len();
    }

    /// Bytes of records pushed since the last [`checksum_records`](Self::checksum_records).
    pub fn unchecksummed_bytes(&self) -> usize {
        self.buf.len() - self.checksummed
    }

    /// Records pushed so far.
    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    /// Size of the batch `build` would return.
    pub fn len_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Finishes the batch, with base offset 0 (the log assigns the real one).
    pub fn build(self) -> Bytes {
        Bytes::from(self.finish())
    }

    /// Finishes the batch as a [`ValidBatch`] the log appends without checking it again.
    /// Fails only if no record was pushed.
    pub fn build_valid(self) -> Result<ValidBatch, BatchError> {
        if self.record_count == 0 {
            return Err(BatchError::Empty);
        }
        let has_null_key = self.has_null_key;
        let bytes = self.finish();
        let header = BatchHeader::parse(&bytes)?;
        Ok(ValidBatch::trusted(Bytes::from(bytes), Validated { header, has_null_key }))
    }

    /// Like [`build`](Self::build), returning the plain buffer.
    pub fn finish(mut self) -> Vec<u8> {
        let last_offset_delta = self.record_count.saturating_sub(1);
        let max_timestamp =
            if self.record_count == 0 { self.first_timestamp } else { self.max_timestamp };
        // The records' CRC as far as `checksum_records` got, if it is of any use.
        let mut records_crc = None;
        if self.codec != 0 {
            // Compression cannot fail on a Vec; a codec this build lacks was refused by
            // `compression`.
            let compressed = compression::compress(self.codec, &self.buf[HEADER_LEN..]);
            self.buf.truncate(HEADER_LEN);
            self.buf.extend_from_slice(&compressed);
        } else if self.checksummed > HEADER_LEN {
            self.checksum_records();
            records_crc = Some(self.records_crc);
        }
        let txn = if self.transactional { header::ATTR_TRANSACTIONAL } else { 0 };
        let fields = HeaderFields {
            attributes: self.codec | txn,
            last_offset_delta,
            first_timestamp: self.first_timestamp,
            max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count: self.record_count,
        };
        match records_crc {
            Some(records_crc) => {
                fill_header(&mut self.buf, &fields);
                header::seal_checksums_with_records(&mut self.buf, records_crc);
            }
            None => write_header(&mut self.buf, &fields),
        }
        self.buf
    }
}

/// The header fields a writer chooses (lengths and checksums are derived).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderFields {
    pub attributes: u16,
    pub last_offset_delta: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: u32,
}

/// Fills the header of `buf` (records already at `HEADER_LEN..`) and seals its checksum.
pub(crate) fn write_header(buf: &mut [u8], f: &HeaderFields) {
    fill_header(buf, f);
    header::seal_checksums(buf);
}

/// Fills the header of `buf` (records already at `HEADER_LEN..`) but for the checksum.
fn fill_header(buf: &mut [u8], f: &HeaderFields) {
    let length_field = (buf.len() - header::LENGTH_FIELD_END) as u32;
    let head = &mut buf[..HEADER_LEN];
    head[header::BASE_OFFSET..header::BASE_OFFSET + 8].copy_from_slice(&0u64.to_be_bytes());
    head[header::BATCH_LENGTH..header::BATCH_LENGTH + 4]
        .copy_from_slice(&length_field.to_be_bytes());
    // A producer does not know the leader epoch; Kafka's clients write -1 and so do we.
    head[header::LEADER_EPOCH..header::LEADER_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
    head[header::MAGIC] = header::FORMAT_VERSION;
    head[header::ATTRIBUTES..header::ATTRIBUTES + 2].copy_from_slice(&f.attributes.to_be_bytes());
    head[header::LAST_OFFSET_DELTA..header::LAST_OFFSET_DELTA + 4]
        .copy_from_slice(&f.last_offset_delta.to_be_bytes());
    head[header::FIRST_TIMESTAMP..header::FIRST_TIMESTAMP + 8]
        .copy_from_slice(&f.first_timestamp.to_be_bytes());
    head[header::MAX_TIMESTAMP..header::MAX_TIMESTAMP + 8]
        .copy_from_slice(&f.max_timestamp.to_be_bytes());
    head[header::PRODUCER_ID..header::PRODUCER_ID + 8]
        .copy_from_slice(&f.producer_id.to_be_bytes());
    head[header::PRODUCER_EPOCH..header::PRODUCER_EPOCH + 2]
        .copy_from_slice(&f.producer_epoch.to_be_bytes());
    head[header::BASE_SEQUENCE..header::BASE_SEQUENCE + 4]
        .copy_from_slice(&f.base_sequence.to_be_bytes());
    head[header::RECORD_COUNT..header::RECORD_COUNT + 4]
        .copy_from_slice(&f.record_count.to_be_bytes());
}

/// Appends one encoded record (Kafka's record v2: every integer a zigzag varint). Compaction
/// calls it directly to keep the original deltas.
pub(crate) fn put_record(
    buf: &mut Vec<u8>,
    record: &Record<'_>,
    timestamp_delta: i64,
    offset_delta: u64,
) {
    let body_len = record_body_len(record, timestamp_delta, offset_delta);
    buf.reserve(varint_len(body_len as i64) + body_len);
    put_varint(buf, body_len as i64);
    buf.push(0);
    put_varint(buf, timestamp_delta);
    put_varint(buf, offset_delta as i64);
    put_bytes(buf, record.key);
    put_bytes(buf, record.value);
    put_varint(buf, record.headers.len() as i64);
    for h in record.headers {
        put_varint(buf, h.key.len() as i64);
        buf.extend_from_slice(h.key);
        put_bytes(buf, h.value);
    }
}

fn record_body_len(record: &Record<'_>, timestamp_delta: i64, offset_delta: u64) -> usize {
    1 + varint_len(timestamp_delta)
        + varint_len(offset_delta as i64)
        + bytes_len(record.key)
        + bytes_len(record.value)
        + varint_len(record.headers.len() as i64)
        + record.headers.iter().map(header_len).sum::<usize>()
}

fn header_len(h: &Header<'_>) -> usize {
    varint_len(h.key.len() as i64) + h.key.len() + bytes_len(h.value)
}

fn bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        None => varint_len(-1),
        Some(b) => varint_len(b.len() as i64) + b.len(),
    }
}

fn put_bytes(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
    }
}
