//! The owned record types that cross the client's API: what a producer sends, what it learns
//! back (per record or per batch), and what a consumer hands out when asked for owned records.
//!
//! Keys, values and headers are `Bytes`: a consumer's owned records are slices of the fetched
//! frame (no copy), and a producer's records are dropped as soon as they are encoded into a
//! batch.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use eddy_storage::{Header, RecordView};

/// A record header: a non-null key and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// `None` is a null key: the record goes to the sticky partition (and compacted topics
    /// refuse it).
    pub key: Option<Bytes>,
    /// `None` is a null value: a tombstone on compacted topics.
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
    /// Milliseconds since the Unix epoch; `None` takes the time of `send`.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and no key.
    pub fn value(value: impl Into<Bytes>) -> Self {
        Self { value: Some(value.into()), ..Self::default() }
    }

    /// A record with a key and a value.
    pub fn keyed(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self { key: Some(key.into()), value: Some(value.into()), ..Self::default() }
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<Bytes>, value: Option<Bytes>) -> Self {
        self.headers.push(RecordHeader { key: key.into(), value });
        self
    }

    /// Sets the timestamp (ms since the Unix epoch).
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// An upper bound on the bytes this record adds to a batch (lengths as 10-byte varints),
    /// for deciding when a batch is full.
    pub(crate) fn size_estimate(&self) -> usize {
        const VARINT_MAX: usize = 10;
        let opt = |b: &Option<Bytes>| VARINT_MAX + b.as_ref().map_or(0, Bytes::len);
        let headers: usize =
            self.headers.iter().map(|h| VARINT_MAX + h.key.len() + opt(&h.value)).sum();
        // length, attributes, timestamp delta, offset delta, header count.
        4 * VARINT_MAX + 1 + opt(&self.key) + opt(&self.value) + headers
    }

    /// Encodes the record into `builder` with `timestamp`.
    pub(crate) fn push_into(&self, builder: &mut eddy_storage::BatchBuilder, timestamp: i64) {
        let headers: Vec<Header<'_>> = self
            .headers
            .iter()
            .map(|h| Header { key: &h.key, value: h.value.as_deref() })
            .collect();
        builder.push(eddy_storage::Record {
            timestamp,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &headers,
        });
    }
}

/// Where an acknowledged record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: Arc<str>,
    pub partition: u32,
    /// The record's offset; `None` with `ACKS_NONE`, where the broker never says.
    pub offset: Option<u64>,
    /// The timestamp the record was written with.
    pub timestamp: i64,
}

/// Where a batch from [`Producer::send_batch`](crate::Producer::send_batch) went: all its
/// records, in order, at `base_offset..=last_offset` of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMetadata {
    pub topic: Arc<str>,
    pub partition: u32,
    /// The first record's offset; `None` with `ACKS_NONE`, where the broker never says.
    pub base_offset: Option<u64>,
    /// The last record's offset (`base_offset + record_count - 1`); `None` with `ACKS_NONE`.
    pub last_offset: Option<u64>,
    pub record_count: u32,
}

/// One consumed record, owning (reference-counted slices of) its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

impl ConsumerRecord {
    /// Copies `view` out of `batch` (the bytes `view` borrows from) as zero-copy slices.
    pub(crate) fn from_view(
        topic: &Arc<str>,
        partition: u32,
        batch: &Bytes,
        view: &RecordView<'_>,
    ) -> Self {
        let slice = |s: &[u8]| batch.slice_ref(s);
        Self {
            topic: Arc::clone(topic),
            partition,
            offset: view.offset,
            timestamp: view.timestamp,
            key: view.key.map(slice),
            value: view.value.map(slice),
            headers: view
                .headers()
                .map(|h| RecordHeader { key: slice(h.key), value: h.value.map(slice) })
                .collect(),
        }
    }
}

/// Milliseconds since the Unix epoch, by the wall clock (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
