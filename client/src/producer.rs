//! [`Producer`]: batches records per partition and sends them with several produce requests in
//! flight; idempotent by default.
//!
//! # How a record travels
//!
//! 1. [`Producer::send`] (in the caller's task) picks the partition — explicit, else
//!    `murmur2(key)` as Kafka does, else the topic's sticky partition (see [`partitioner`](crate::partitioner)) —
//!    using a partition count cached from a `Metadata` call; waits for room in the record
//!    buffer ([`ProducerConfig::buffer_bytes`], the producer's memory bound); and hands the
//!    record to the background worker. It returns a [`Delivery`]: a future of the record's
//!    [`RecordMetadata`] (partition and offset) once acknowledged.
//! 2. The worker (`worker.rs`) appends the record to the open batch of its partition
//!    (`batch.rs`). A batch is closed when the next record does not fit in
//!    [`ProducerConfig::batch_bytes`], and is sent when closed or when it is
//!    [`ProducerConfig::linger`] old — whichever comes first, and only when a request slot is
//!    free, so batches keep filling while requests are in flight.
//! 3. One produce request carries the ready batches of many partitions (at most one per
//!    partition per request); at most [`ProducerConfig::max_in_flight`] requests are in flight.
//! 4. The response's base offset plus each record's index in its batch completes each record's
//!    [`Delivery`].
//!
//! # Whole batches
//!
//! [`Producer::send_batch`] is the same path for a group of records the caller has already
//! gathered, without the per-record costs (a future, a buffer permit and a channel message per
//! record, ~1.5 µs together). The records are encoded into one batch in the caller's task, and
//! checksummed there too, so encoding and most of the checksum run beside the worker rather
//! than in it (the worker combines the records' CRC with the header's once the sequence is
//! known); the group takes one buffer permit for its
//! encoded size and goes to the worker as one message. There it closes its partition's open
//! batch (so order with [`Producer::send`] is kept) and queues as a closed batch of its own,
//! sent as exactly one batch on the wire — never split and never merged with other records —
//! and numbered, retried and deduplicated like any other batch. One [`BatchDelivery`] resolves
//! to its base and last offsets, or fails for all its records together. A group larger than
//! the broker's `max_batch_bytes` is refused by the broker (`BATCH_TOO_LARGE`), one larger
//! than its frame limit by the transport ([`ClientError::RequestTooLarge`]); either fails the
//! whole group and nothing of it is written.
//!
//! # Retries and idempotence
//!
//! A batch is encoded once, when first sent; a retry resends the same bytes. Transport errors
//! (the request may or may not have been applied), `NO_SPACE` and `TOO_MANY_IN_FLIGHT` are
//! retried up to [`ProducerConfig::retries`] times with exponential backoff.
//!
//! With [`ProducerConfig::idempotent`] the worker first gets a `(producer_id, epoch)` from
//! `InitProducer`, and each partition numbers its records: a batch carries the sequence of its
//! first record, fixed when it is first sent and kept across retries. The broker appends a
//! batch only if its sequence is the next one it expects from that producer on that partition
//! (else `OUT_OF_ORDER_SEQUENCE`, nothing written), and answers a batch matching one of the
//! last five it appended as a duplicate, with the original offsets.
//!
//! **What the client may rely on from the broker about order.** Over one TCP connection, an
//! eddy broker appends a connection's produce requests in the order they arrived (it checks
//! them concurrently and waits for their fsyncs concurrently, but takes their appends in turn);
//! it answers every request in completion order, and runs other requests concurrently. The
//! embedded transport (`Broker` in-process) gives no order at all: each call runs on its own.
//! The producer's guarantees do not rest on that order — the broker's sequence check is what
//! orders a partition's batches, whatever order requests are handled in — the order only
//! spares resends. The producer keeps its side of the sequence check, so that the broker never
//! refuses a batch the producer cannot repair:
//!
//! - Up to [`ProducerConfig::max_in_flight`] (at most [`MAX_IDEMPOTENT_IN_FLIGHT`] = 5, as in
//!   Kafka) batches per partition are numbered and unacknowledged at once. So every batch the
//!   producer might resend is within the broker's window of five, and a resend of a batch that
//!   was appended is always answered as a duplicate, never written twice.
//! - A batch that fails retriably — a transport error (written or not: unknown), `NO_SPACE`,
//!   `TOO_MANY_IN_FLIGHT`, or `OUT_OF_ORDER_SEQUENCE` for a batch that was sent while an
//!   earlier batch of its partition was unresolved (that batch failed, or was handled after
//!   it) — is resent with the same bytes, and the partition's resends go **one at a time in
//!   sequence order**: a resend goes only once every earlier batch of the partition is
//!   acknowledged, and new batches are numbered only behind the resends. A later sequence is
//!   never resent before an earlier one. (The out-of-order case does not count against
//!   [`ProducerConfig::retries`] and waits no backoff: by the time it is resent, the batches
//!   before it are written, so it cannot happen to it twice.)
//! - Deliveries resolve in order per partition: an acknowledged batch waits for every earlier
//!   batch of its partition to be acknowledged or to fail.
//! - When a numbered batch fails for good, the batches numbered behind it are **failed, not
//!   resent** ([`ClientError::PrecedingBatchFailed`]): if the broker refused the batch, they
//!   cannot be appended after it (and were not); if its outcome is unknown, theirs is as
//!   unknown. Kafka instead renumbers them; here a batch's bytes are sealed with its sequence
//!   once (the checksum covers it), and failing them is the behaviour that can never reorder or
//!   duplicate a record. One of them whose answer already said "written" is delivered as
//!   written. Then, as with a single batch in flight, the failed batch's sequence is reused if
//!   the broker refused it (nothing from it on was written), or, if it may have been written or
//!   the broker disagrees about its sequence, the producer takes a new identity from
//!   `InitProducer` so no later batch can be taken for a duplicate of it. A partition's batches
//!   under a new identity are numbered only once its batches under the old one have settled.
//!
//! Without idempotence, a partition may have several batches in flight, and a retried batch can
//! land after a later one (as in Kafka with `max.in.flight > 1`).
//!
//! # `ACKS_NONE`
//!
//! Requests go out with [`Transport::send`]; a record's [`Delivery`] resolves once its request
//! is handed to the transport, with `offset: None`. Idempotence needs answers, so
//! [`ProducerConfig::idempotent`] has no effect with `ACKS_NONE`.
//!
//! # Shutdown
//!
//! [`Producer::flush`] waits for every record and group sent before it; [`Producer::close`] flushes and
//! stops the worker. Dropping a producer without closing it lets the worker send what it holds
//! and then stop, as long as the runtime runs.

mod batch;
mod partition;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use eddy_protocol::v1;
use eddy_storage::{BatchBuilder, BatchError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::admin::partition_count;
use crate::partitioner::partition_for_key;
use crate::record::{BatchMetadata, ProducerRecord, RecordMetadata, now_ms};
use crate::{ClientError, ErrorCode, Transport};
use batch::{Pending, PendingBatch, Target};
use worker::{Command, Worker};

/// The most batches of one partition an idempotent producer keeps numbered and unacknowledged:
/// the broker remembers the last five batches of each producer per partition (Kafka's rule, and
/// the storage's `RETAINED_BATCHES`), and a resent batch must be among them to be recognised as
/// a duplicate.
pub const MAX_IDEMPOTENT_IN_FLIGHT: usize = 5;

/// How a [`Producer`] batches, sends and retries.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// When the broker answers: once written (`Written`), once fsynced (`Durable`), or never
    /// (`None`: offsets stay unknown).
    pub acks: v1::Acks,
    /// How long a batch may wait for more records before it is sent.
    pub linger: Duration,
    /// A batch is closed when the next record would take it past this size. A record larger
    /// than this goes alone in its own batch.
    pub batch_bytes: usize,
    /// Produce requests in flight at once (per producer). With `idempotent`, also the most
    /// batches of one partition numbered and not yet acknowledged; at most
    /// [`MAX_IDEMPOTENT_IN_FLIGHT`] then, as in Kafka.
    pub max_in_flight: usize,
    /// Number the records so retries are never duplicated. Has no effect with
    /// `acks: None`, which gets no answers to learn duplicates from (as in Kafka, where the
    /// default idempotence yields to `acks=0`).
    pub idempotent: bool,
    /// Times a batch is resent after a retriable failure.
    pub retries: u32,
    /// Wait before the first retry; doubles with each retry, up to 32 times this.
    pub retry_backoff: Duration,
    /// Upper bound on the bytes of records accepted but not yet acknowledged; `send` and
    /// `send_batch` wait for room beyond it (a record or group larger than this waits for the
    /// whole buffer).
    pub buffer_bytes: usize,
    /// Upper bound on the batch bytes of one produce request (a single larger batch is sent
    /// alone). Keep it below the broker's `max_frame_bytes`.
    pub request_bytes: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: v1::Acks::Written,
            linger: Duration::from_millis(5),
            batch_bytes: 128 * 1024,
            max_in_flight: 5,
            idempotent: true,
            retries: 5,
            retry_backoff: Duration::from_millis(100),
            buffer_bytes: 64 * 1024 * 1024,
            request_bytes: 1024 * 1024,
        }
    }
}

impl ProducerConfig {
    fn check(&self) -> Result<(), ClientError> {
        let bad = |field, reason| Err(ClientError::Config { field, reason });
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "must be at least 1");
        }
        if self.idempotent
            && self.acks != v1::Acks::None
            && self.max_in_flight > MAX_IDEMPOTENT_IN_FLIGHT
        {
            return bad("max_in_flight", "must be at most 5 for an idempotent producer");
        }
        if self.batch_bytes == 0 || self.buffer_bytes == 0 || self.request_bytes == 0 {
            return bad("batch_bytes, buffer_bytes, request_bytes", "must be at least 1");
        }
        Ok(())
    }
}

/// A topic's name (shared by all its batches) and partition count.
#[derive(Debug, Clone)]
struct TopicInfo {
    name: Arc<str>,
    partitions: u32,
}

/// What the caller side and the worker share.
#[derive(Debug)]
struct Shared<T> {
    transport: T,
    topics: Mutex<HashMap<String, TopicInfo>>,
    /// One metadata lookup at a time, so a burst of first sends makes one call.
    lookup: tokio::sync::Mutex<()>,
}

impl<T: Transport> Shared<T> {
    fn cached(&self, topic: &str) -> Option<TopicInfo> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner).get(topic).cloned()
    }

    /// Drops a topic's cached partition count (the broker said it is stale).
    fn forget(&self, topic: &str) {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner).remove(topic);
    }

    async fn topic(&self, topic: &str, refresh: bool) -> Result<TopicInfo, ClientError> {
        if !refresh && let Some(info) = self.cached(topic) {
            return Ok(info);
        }
        let _one_at_a_time = self.lookup.lock().await;
        if !refresh && let Some(info) = self.cached(topic) {
            return Ok(info);
        }
        let partitions = partition_count(&self.transport, topic).await?;
        let info = TopicInfo { name: Arc::from(topic), partitions };
        tracing::debug!(topic, partitions, "topic metadata");
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        topics.insert(topic.to_owned(), info.clone());
        Ok(info)
    }
}

/// Sends records to a broker in batches. See the [module docs](self).
#[derive(Debug)]
pub struct Producer<T: Transport> {
    shared: Arc<Shared<T>>,
    commands: mpsc::UnboundedSender<Command>,
    buffer: Arc<Semaphore>,
    buffer_bytes: usize,
    worker: JoinHandle<()>,
}

impl<T: Transport> Producer<T> {
    /// Starts a producer and its background worker (call inside a tokio runtime).
    pub fn new(transport: T, mut config: ProducerConfig) -> Result<Self, ClientError> {
        config.check()?;
        config.idempotent &= config.acks != v1::Acks::None;
        let shared = Arc::new(Shared {
            transport,
            topics: Mutex::new(HashMap::new()),
            lookup: tokio::sync::Mutex::new(()),
        });
        let buffer_bytes = config.buffer_bytes.min(Semaphore::MAX_PERMITS);
        let buffer = Arc::new(Semaphore::new(buffer_bytes));
        let (commands, queued) = mpsc::unbounded_channel();
        let worker = tokio::spawn(Worker::new(Arc::clone(&shared), config, queued).run());
        Ok(Self { shared, commands, buffer, buffer_bytes, worker })
    }

    pub fn transport(&self) -> &T {
        &self.shared.transport
    }

    /// Queues `record` for `topic` (at `partition`, or chosen by key, or sticky) and returns
    /// its [`Delivery`]. Waits only for buffer room and, on a topic's first use, for its
    /// partition count; the record is sent in the background.
    pub async fn send(
        &self,
        topic: &str,
        partition: Option<u32>,
        record: ProducerRecord,
    ) -> Result<Delivery, ClientError> {
        let info = self.shared.topic(topic, false).await?;
        let target = match (partition, &record.key) {
            (Some(p), _) => Target::Partition(self.check_partition(&info, p).await?),
            (None, Some(key)) => Target::Partition(partition_for_key(key, info.partitions)),
            (None, None) => Target::Sticky(info.partitions),
        };
        let size = record.size_estimate();
        let permit = self.reserve(size).await?;
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let (done, delivery) = oneshot::channel();
        let pending = Pending { topic: info.name, target, record, timestamp, size, done, permit };
        self.commands.send(Command::Send(pending)).map_err(|_| ClientError::ProducerClosed)?;
        Ok(Delivery { rx: delivery })
    }

    /// [`send`](Self::send), then waits for the acknowledgement.
    pub async fn send_and_wait(
        &self,
        topic: &str,
        partition: Option<u32>,
        record: ProducerRecord,
    ) -> Result<RecordMetadata, ClientError> {
        self.send(topic, partition, record).await?.await
    }

    /// Queues `records` for `topic` as one batch of their own and returns its [`BatchDelivery`]:
    /// sent whole, after every record already sent to the same partition, and acknowledged or
    /// failed as a whole. See [whole batches](crate::producer#whole-batches).
    ///
    /// The partition is `partition` if given; else the partition the records' keys hash to,
    /// which must be the same for every keyed record (keyless records among them follow it);
    /// else, with no keys at all, the topic's sticky partition. Records without a timestamp
    /// take the time of this call.
    ///
    /// Fails without sending anything if `records` is empty ([`BatchError::Empty`]) or if its
    /// keys hash to different partitions ([`ClientError::KeysSpanPartitions`]).
    pub async fn send_batch<I>(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: I,
    ) -> Result<BatchDelivery, ClientError>
    where
        I: IntoIterator<Item = ProducerRecord>,
    {
        let info = self.shared.topic(topic, false).await?;
        let explicit = match partition {
            Some(p) => Some(self.check_partition(&info, p).await?),
            None => None,
        };
        // Keyed records without an explicit partition: a Kafka user expects every record of a
        // key on the partition murmur2 gives it (consumers and compaction rely on it). Sending
        // the whole group to the first key's partition would silently break that for the
        // other keys, so keys that disagree are refused instead; one key (or keys that happen
        // to agree) is the common case of a batch and needs no partition from the caller.
        let hash_among = explicit.is_none().then_some(info.partitions);
        let (builder, keyed) = encode_group(&info.name, records, hash_among)?;
        let target = match (explicit, keyed) {
            (Some(p), _) | (None, Some(p)) => Target::Partition(p),
            (None, None) => Target::Sticky(info.partitions),
        };
        let permit = self.reserve(builder.len_bytes()).await?;
        let (done, delivery) = oneshot::channel();
        let group = PendingBatch { topic: info.name, target, builder, done, permit };
        self.commands.send(Command::SendBatch(group)).map_err(|_| ClientError::ProducerClosed)?;
        Ok(BatchDelivery { rx: delivery })
    }

    /// Waits for `bytes` of room in the buffer (the whole buffer if larger).
    async fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ClientError> {
        let permits = u32::try_from(bytes.min(self.buffer_bytes)).unwrap_or(u32::MAX);
        Arc::clone(&self.buffer)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| ClientError::ProducerClosed)
    }

    /// An explicit partition must exist; a stale count is refreshed once before refusing.
    async fn check_partition(&self, info: &TopicInfo, partition: u32) -> Result<u32, ClientError> {
        if partition < info.partitions {
            return Ok(partition);
        }
        let info = self.shared.topic(&info.name, true).await?;
        if partition < info.partitions {
            return Ok(partition);
        }
        let message = format!("partition {partition} of a topic with {}", info.partitions);
        Err(ClientError::Partition {
            topic: info.name.to_string(),
            partition,
            error: v1::Error::new(ErrorCode::UnknownPartition, message),
        })
    }

    /// Sends every record and group queued before this call without waiting for `linger`, and
    /// waits until each is acknowledged or has failed.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Flush(tx)).map_err(|_| ClientError::ProducerClosed)?;
        rx.await.map_err(|_| ClientError::ProducerClosed)
    }

    /// Flushes, then stops the worker.
    pub async fn close(self) -> Result<(), ClientError> {
        self.flush().await?;
        let Self { commands, worker, .. } = self;
        drop(commands);
        worker.await.map_err(|_| ClientError::ProducerClosed)
    }
}

/// The acknowledgement of one record: resolves to where it was written, or why it was not.
#[derive(Debug)]
#[must_use = "a Delivery does nothing unless awaited; drop it to ignore the outcome"]
pub struct Delivery {
    rx: oneshot::Receiver<Result<RecordMetadata, ClientError>>,
}

impl Future for Delivery {
    type Output = Result<RecordMetadata, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or(Err(ClientError::ProducerClosed)))
    }
}

/// The acknowledgement of a group from [`Producer::send_batch`]: resolves to where all its
/// records were written, or why none was.
#[derive(Debug)]
#[must_use = "a BatchDelivery does nothing unless awaited; drop it to ignore the outcome"]
pub struct BatchDelivery {
    rx: oneshot::Receiver<Result<BatchMetadata, ClientError>>,
}

impl Future for BatchDelivery {
    type Output = Result<BatchMetadata, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or(Err(ClientError::ProducerClosed)))
    }
}

/// The most a group's buffer is sized to up front; a larger group grows it as it encodes.
const GROUP_PREALLOC_MAX: usize = 16 << 20;
/// Encoded bytes of a group checksummed at a time, while they are still in cache.
const CHECKSUM_STRIDE: usize = 32 << 10;

/// Encodes `records` into one batch (records only; the header is written when it is sent),
/// and checksums them: the batch's CRC also covers the sequence, fixed only when the worker
/// sends the batch, but the records' share of it is computed here, in the caller's task, so
/// the worker only combines it with the header's (see `BatchBuilder::checksum_records`).
/// With `hash_among` (no explicit partition), also returns the partition the keyed records
/// hash to, refusing keys that disagree.
fn encode_group(
    topic: &str,
    records: impl IntoIterator<Item = ProducerRecord>,
    hash_among: Option<u32>,
) -> Result<(BatchBuilder, Option<u32>), ClientError> {
    let mut records = records.into_iter();
    let Some(first) = records.next() else { return Err(ClientError::Batch(BatchError::Empty)) };
    // Sized from the first record and the iterator's length, so a batch of similar records is
    // encoded without growing (and copying) its buffer; the estimate errs on the large side.
    let expected = records.size_hint().0.saturating_add(1);
    let capacity = first.size_estimate().saturating_mul(expected).min(GROUP_PREALLOC_MAX);
    let mut builder = BatchBuilder::with_capacity(capacity);
    // One reading of the clock for the group: the records are sent together.
    let now = now_ms();
    let mut keyed: Option<u32> = None;
    for record in std::iter::once(first).chain(records) {
        if let (Some(partitions), Some(key)) = (hash_among, &record.key) {
            let p = partition_for_key(key, partitions);
            match keyed {
                None => keyed = Some(p),
                Some(first) if first != p => {
                    return Err(ClientError::KeysSpanPartitions {
                        topic: topic.to_owned(),
                        first,
                        other: p,
                    });
                }
                Some(_) => {}
            }
        }
        record.push_into(&mut builder, record.timestamp.unwrap_or(now));
        if builder.unchecksummed_bytes() >= CHECKSUM_STRIDE {
            builder.checksum_records();
        }
    }
    builder.checksum_records();
    Ok((builder, keyed))
}

#[cfg(test)]
mod tests;
