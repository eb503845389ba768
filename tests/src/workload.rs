//! Client-level workloads for the broker tests: records that are a pure function of a seed and
//! an index, and a reader that walks a whole topic through the client's [`Consumer`].
//!
//! A test keeps only a compact digest of what it sent — the index of the record acknowledged
//! at each offset — and regenerates the expected bytes when it reads them back, so a million
//! records cost megabytes of test memory, not the records themselves.
//!
//! With [`Workload::tagged`], every value starts with the record's index (8 bytes, little
//! endian), so a record read back names the one it must equal even when nobody knows where it
//! was written (a crash test's unacknowledged records).

use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_client::partitioner::partition_for_key;
use eddy_client::{
    Admin, ClientError, Consumer, ConsumerConfig, Delivery, OffsetQuery, Producer, ProducerRecord,
    RecordHeader, SeekTo, Transport,
};
use eddy_storage::RecordView;
use tokio::sync::mpsc;

use crate::generate::{Rng, mix64};

/// Record `i` carries the timestamp `TIMESTAMP_BASE_MS + i`. Topics that hold these records
/// must keep them forever (`retention_ms: -1`): the base is in the past.
pub const TIMESTAMP_BASE_MS: i64 = 1_700_000_000_000;
/// Bytes of the index at the front of a tagged value.
pub const TAG_BYTES: usize = 8;

/// A deterministic stream of records with varied shapes: null and empty keys, null and empty
/// values, a few large values, headers with and without values; sent to an explicit partition
/// (one in four), else by key, else (null key) to the sticky partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    pub seed: u64,
    /// The topic's partition count, for explicit partitions.
    pub partitions: u32,
    /// Every value starts with the record's index (and is never null).
    pub tagged: bool,
}

impl Workload {
    pub fn new(seed: u64, partitions: u32) -> Self {
        Self { seed, partitions, tagged: false }
    }

    pub fn tagged(seed: u64, partitions: u32) -> Self {
        Self { seed, partitions, tagged: true }
    }

    /// Record `index` and where to send it: `Some(p)` is an explicit partition, `None` lets
    /// the producer choose (by key, or sticky for a null key).
    pub fn record(&self, index: u64) -> (Option<u32>, ProducerRecord) {
        let mut rng = Rng::new(mix64(self.seed ^ mix64(index)));
        let partition = rng.one_in(4).then(|| rng.below(u64::from(self.partitions.max(1))) as u32);
        let key = (!rng.one_in(8)).then(|| rng.bytes(32));
        let value = if rng.one_in(64) && !self.tagged {
            None
        } else {
            let len = if rng.one_in(256) { rng.below(4097) } else { rng.below(65) };
            let mut value = Vec::with_capacity(len as usize + TAG_BYTES);
            if self.tagged {
                value.extend_from_slice(&index.to_le_bytes());
            }
            let start = value.len();
            value.resize(start + len as usize, 0);
            rng.fill(&mut value[start..]);
            Some(value)
        };
        let mut headers = Vec::new();
        if rng.one_in(4) {
            for _ in 0..=rng.below(3) {
                let key = Bytes::from(rng.bytes(8));
                let value = rng.maybe_bytes(4, 16).map(Bytes::from);
                headers.push(RecordHeader { key, value });
            }
        }
        let record = ProducerRecord {
            key: key.map(Bytes::from),
            value: value.map(Bytes::from),
            headers,
            timestamp: Some(TIMESTAMP_BASE_MS + index as i64),
        };
        (partition, record)
    }
}

/// The index at the front of a tagged value.
pub fn tag_of(value: Option<&[u8]>) -> Option<u64> {
    let bytes: [u8; TAG_BYTES] = value?.get(..TAG_BYTES)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Compares a record read back with the one that was sent: key, value, headers (in order) and
/// timestamp, byte for byte. The error names the first difference.
pub fn compare(expected: &ProducerRecord, got: &RecordView<'_>) -> Result<(), String> {
    if got.key != expected.key.as_deref() {
        return Err(format!("key {:?}, expected {:?}", got.key, expected.key));
    }
    if got.value != expected.value.as_deref() {
        return Err(format!("value {:?}, expected {:?}", got.value, expected.value));
    }
    let got_headers = || got.headers().map(|h| (h.key, h.value));
    let wanted_headers = || expected.headers.iter().map(|h| (&h.key[..], h.value.as_deref()));
    if !got_headers().eq(wanted_headers()) {
        let (headers, wanted): (Vec<_>, Vec<_>) =
            (got_headers().collect(), wanted_headers().collect());
        return Err(format!("headers {headers:?}, expected {wanted:?}"));
    }
    if expected.timestamp.is_some_and(|ts| ts != got.timestamp) {
        return Err(format!("timestamp {}, expected {:?}", got.timestamp, expected.timestamp));
    }
    Ok(())
}

/// Acknowledgements waiting to be checked before [`produce_checked`] stops sending (its memory
/// bound).
const DELIVERIES_QUEUED: usize = 1 << 16;

/// Where a topic's acknowledged records are: `placed[p][offset]` is the index of the record
/// acknowledged at `offset` of partition `p` (every partition starts empty at offset 0).
pub type Placed = Vec<Vec<u32>>;

/// Sends records `indexes` of `workload` to `topic` with `producer` and checks each
/// acknowledgement, in send order, as it comes: the partition is the one asked for (explicit,
/// or the key's murmur2 partition), the offset is the partition's next one in `placed` (so
/// records keep their send order, and no offset is skipped or reused), and the timestamp is
/// the record's. Each acknowledged record is added to `placed`. Stops at the first failure.
pub async fn produce_checked<T: Transport>(
    producer: &Producer<T>,
    topic: &str,
    workload: &Workload,
    indexes: Range<u64>,
    placed: &mut Placed,
) -> Result<(), String> {
    let (deliveries, mut acked) = mpsc::channel::<(u32, Option<u32>, Delivery)>(DELIVERIES_QUEUED);
    let send = async move {
        for index in indexes {
            let (explicit, record) = workload.record(index);
            let wanted = explicit.or_else(|| {
                record.key.as_deref().map(|key| partition_for_key(key, workload.partitions))
            });
            let delivery = producer
                .send(topic, explicit, record)
                .await
                .map_err(|e| format!("sending record {index}: {e}"))?;
            let index = u32::try_from(index).map_err(|_| format!("index {index} over u32"))?;
            if deliveries.send((index, wanted, delivery)).await.is_err() {
                break; // the check failed; it reports why
            }
        }
        Ok::<(), String>(())
    };
    let check = async {
        while let Some((index, wanted, delivery)) = acked.recv().await {
            let meta = delivery.await.map_err(|e| format!("record {index}: {e}"))?;
            let context = || format!("record {index} acknowledged as {meta:?}");
            let here = placed
                .get_mut(meta.partition as usize)
                .ok_or_else(|| format!("{}: no such partition", context()))?;
            if wanted.is_some_and(|p| p != meta.partition) {
                return Err(format!("{}; sent to partition {wanted:?}", context()));
            }
            if meta.offset != Some(here.len() as u64) {
                let next = here.len();
                return Err(format!("{}; the partition's next offset is {next}", context()));
            }
            if meta.timestamp != TIMESTAMP_BASE_MS + i64::from(index) {
                return Err(format!("{}; the record's timestamp differs", context()));
            }
            here.push(index);
        }
        Ok(())
    };
    let (sent, checked) = tokio::join!(send, check);
    checked.and(sent)
}

/// Reads the whole of `topic` and checks each record, byte for byte, against the one
/// acknowledged at its offset in `placed`, and that no partition holds more or fewer records.
pub async fn check_placed<T: Transport + Clone>(
    transport: T,
    topic: &str,
    workload: &Workload,
    placed: &Placed,
    deadline: Instant,
) -> Result<(), String> {
    let ends = read_topic(transport, topic, deadline, |p, view| {
        let index = placed
            .get(p as usize)
            .and_then(|offsets| offsets.get(view.offset as usize))
            .ok_or_else(|| "no record was acknowledged at this offset".to_string())?;
        let (_, expected) = workload.record(u64::from(*index));
        compare(&expected, view).map_err(|e| format!("record {index}: {e}"))
    })
    .await?;
    let acknowledged: Vec<u64> = placed.iter().map(|p| p.len() as u64).collect();
    if ends.start.iter().any(|s| *s != 0) || ends.end != acknowledged {
        return Err(format!(
            "{topic}: partitions hold offsets {:?} to {:?}; acknowledged: 0 to {acknowledged:?}",
            ends.start, ends.end
        ));
    }
    Ok(())
}

/// What [`read_topic`] saw, per partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicEnds {
    /// The first offset stored in each partition.
    pub start: Vec<u64>,
    /// Each partition's next offset when the read began (everything below it was read).
    pub end: Vec<u64>,
}

/// Reads every record of every partition of `topic`, from the earliest offset to where each
/// partition ended when the read began, and hands each to `visit` (partition, record) in
/// offset order per partition. Fails if a partition skips an offset, or if the read is not done
/// by `deadline`. Records produced meanwhile are not visited.
pub async fn read_topic<T, F>(
    transport: T,
    topic: &str,
    deadline: Instant,
    mut visit: F,
) -> Result<TopicEnds, String>
where
    T: Transport + Clone,
    F: FnMut(u32, &RecordView<'_>) -> Result<(), String>,
{
    let err = |what: &str, e: ClientError| format!("{topic}: {what}: {e}");
    let admin = Admin::new(transport.clone());
    let partitions = admin.partition_count(topic).await.map_err(|e| err("partition count", e))?;
    let start = offsets(&admin, topic, partitions, OffsetQuery::Earliest)
        .await
        .map_err(|e| err("list earliest offsets", e))?;
    let end = offsets(&admin, topic, partitions, OffsetQuery::Latest)
        .await
        .map_err(|e| err("list latest offsets", e))?;
    let config = ConsumerConfig { start: SeekTo::Earliest, ..ConsumerConfig::default() };
    let mut consumer = Consumer::new(transport, config);
    consumer.assign(topic, 0..partitions);
    let mut next = start.clone();
    while next.iter().zip(&end).any(|(n, e)| n < e) {
        if Instant::now() >= deadline {
            return Err(format!("{topic}: read not done by the deadline: at {next:?} of {end:?}"));
        }
        let batches =
            consumer.poll(Duration::from_millis(200)).await.map_err(|e| err("poll", e))?;
        for batch in &batches {
            let p = batch.partition();
            let end = end[p as usize];
            for record in batch.records() {
                let record = record.map_err(|e| err("decode", e))?;
                if record.offset >= end {
                    break;
                }
                let expected = next[p as usize];
                if record.offset != expected {
                    return Err(format!(
                        "{topic}/{p}: read offset {} where {expected} was next",
                        record.offset
                    ));
                }
                visit(p, &record)
                    .map_err(|e| format!("{topic}/{p} offset {}: {e}", record.offset))?;
                next[p as usize] += 1;
            }
        }
    }
    Ok(TopicEnds { start, end })
}

/// `query` answered for partitions `0..partitions` of `topic`, in partition order.
async fn offsets<T: Transport>(
    admin: &Admin<T>,
    topic: &str,
    partitions: u32,
    query: OffsetQuery,
) -> Result<Vec<u64>, ClientError> {
    let queries: Vec<(u32, OffsetQuery)> = (0..partitions).map(|p| (p, query)).collect();
    Ok(admin.list_offsets(topic, &queries).await?.iter().map(|l| l.offset).collect())
}
