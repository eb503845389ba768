//! Reading one partition through a librdkafka consumer kept for it, and rebuilding the
//! consumed messages into batches in eddy's storage format.
//!
//! A [`PartitionReader`] owns one consumer assigned to one partition (no group membership: it
//! is positioned with `assign`, nothing is committed). It remembers where the consumer stands
//! (`next`, the offset of the next message it will deliver), so consecutive reads — a task
//! reading its input forward — go on from librdkafka's prefetched queue without a new fetch
//! position; a read elsewhere seeks it (synchronously: nothing fetched before the seek, and no
//! position from before it, is seen after).
//!
//! Invariants:
//! - [`PartitionReader::read`] returns whole batches whose records carry the offsets, keys,
//!   values, headers and timestamps the cluster holds; a batch covers consecutive offsets
//!   only (a gap — compaction, transaction markers — starts a new batch), so every offset is
//!   `base_offset + offset_delta` as the log had it. Empty bytes mean no record at or after
//!   `from` is in the partition now: the partition's end is checked against the cluster's
//!   end (one ListOffsets) before saying so, so an append acknowledged before the call is
//!   always seen.
//! - Reads are `read_committed`: the end is the partition's last stable offset, and offsets
//!   the consumer passes without handing out a record — transaction markers, the records of
//!   aborted transactions — come back as an empty batch covering them (as eddy's own broker
//!   gives a processor, `storage::txn::skipped_batch`), so a reader's position moves past
//!   them and reaches the end. Where the consumer stands is librdkafka's application
//!   position, which it advances past control records as it serves them.
//! - [`PartitionReader::wait`] blocks on the consumer's queue (librdkafka long-polls the
//!   broker) and keeps a message it received for the next read: it never spins and never
//!   loses a message.

use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_storage::txn::skipped_batch;
use eddy_storage::{BatchBuilder, Header, Record};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::ClusterConfig;
use crate::error::{ClusterError, kafka};

/// A rebuilt batch is closed once it holds this many bytes (the next record starts another).
const BATCH_CUT_BYTES: usize = 1 << 20;
/// How long a read that met an end-of-partition report before any record, with its position
/// still short of the end, waits for records queued behind that report (twice the fetch
/// long-poll).
const EOF_GRACE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Polled {
    Nothing,
    Message,
    Eof,
}

/// One partition's consumer and where it stands.
pub(crate) struct PartitionReader {
    consumer: BaseConsumer,
    /// How the consumer was made (a new one replaces it when a seek cannot be done).
    client: ClientConfig,
    topic: String,
    partition: u32,
    /// The offset the consumer delivers next (`None`: not assigned yet).
    next: Option<u64>,
    /// A message [`wait`](Self::wait) took from the queue, handed out by the next read.
    stash: Option<OwnedMessage>,
    op_timeout: Duration,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionReader")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("next", &self.next)
            .finish()
    }
}

impl PartitionReader {
    pub(crate) fn new(
        config: &ClusterConfig,
        topic: &str,
        partition: u32,
    ) -> Result<Self, ClusterError> {
        let mut client = config.client(&format!("eddy-read-{topic}-{partition}"));
        client
            // librdkafka's assign() wants a group id; nothing joins the group or commits to it.
            .set("group.id", "eddy-cluster-readers")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // Only committed records, up to the last stable offset (librdkafka's default, said
            // here because the effectively-once recovery depends on it).
            .set("isolation.level", "read_committed")
            // A read below the partition's start is an error, never a silent jump.
            .set("auto.offset.reset", "error")
            .set("allow.auto.create.topics", "false")
            .set("fetch.wait.max.ms", "100")
            .set("fetch.queue.backoff.ms", "10")
            .set("max.partition.fetch.bytes", "4194304")
            .set("queued.max.messages.kbytes", "16384");
        let consumer =
            client.create().map_err(|source| ClusterError::Client { what: "reader", source })?;
        Ok(Self {
            consumer,
            client,
            topic: topic.to_owned(),
            partition,
            next: None,
            stash: None,
            op_timeout: config.op_timeout,
        })
    }

    /// Positions the consumer at `from` unless it already stands there. A consumer that stood
    /// elsewhere is moved with a seek, which returns once librdkafka has dropped what it had
    /// fetched and reset its application position, so [`consumed_to`](Self::consumed_to)
    /// never reports where the consumer stood before. If the seek fails (the partition's fetch
    /// has not started yet), a new consumer is assigned at `from`: a fresh one has no
    /// position left over.
    fn position(&mut self, from: u64) -> Result<(), ClusterError> {
        if self.next == Some(from) {
            return Ok(());
        }
        let offset = i64::try_from(from).map_err(|_| self.impossible("offset", i64::MAX))?;
        let sought = self.next.is_some()
            && self
                .consumer
                .seek(&self.topic, self.partition as i32, Offset::Offset(offset), self.op_timeout)
                .is_ok();
        if !sought {
            if self.next.is_some() {
                self.consumer = self
                    .client
                    .create()
                    .map_err(|source| ClusterError::Client { what: "reader", source })?;
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.topic, self.partition as i32, Offset::Offset(offset))
                .map_err(kafka("position the reader of", &self.topic, self.partition))?;
            self.consumer.assign(&tpl).map_err(kafka("assign", &self.topic, self.partition))?;
        }
        self.next = Some(from);
        self.stash = None;
        Ok(())
    }

    /// (start, end) of the partition, asked of the cluster.
    pub(crate) fn watermarks(&self) -> Result<(u64, u64), ClusterError> {
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.topic, self.partition as i32, self.op_timeout)
            .map_err(kafka("ask the offsets of", &self.topic, self.partition))?;
        let low = u64::try_from(low).map_err(|_| self.impossible("start offset", low))?;
        let high = u64::try_from(high).map_err(|_| self.impossible("end offset", high))?;
        Ok((low, high))
    }

    fn impossible(&self, what: &'static str, value: i64) -> ClusterError {
        ClusterError::Impossible {
            topic: self.topic.clone(),
            partition: self.partition,
            what,
            value,
        }
    }

    /// Whole batches from the record at or after `from`, about `max_bytes` of them; empty at
    /// the partition's end.
    pub(crate) fn read(&mut self, from: u64, max_bytes: usize) -> Result<Bytes, ClusterError> {
        self.position(from)?;
        let mut out = Rebuild::new(from);
        if let Some(message) = self.stash.take() {
            out.push(&message, &self.topic, self.partition)?;
        }
        if out.is_empty() {
            let (start, end) = self.watermarks()?;
            if from < start {
                let (topic, partition) = (self.topic.clone(), self.partition);
                return Err(ClusterError::OffsetBelowStart {
                    topic,
                    partition,
                    offset: from,
                    start,
                });
            }
            if from >= end {
                return Ok(Bytes::new());
            }
            self.first_record(&mut out, end)?;
        }
        while out.len() < max_bytes {
            if self.poll_into(&mut out, Duration::ZERO)? != Polled::Message {
                break;
            }
        }
        if let Some(passed) = self.consumed_to()? {
            out.skip_to(passed);
        }
        if let Some(next) = out.next_offset() {
            self.next = Some(next);
        }
        Ok(out.finish())
    }

    /// The offset after the last one the consumer has passed — a record handed out, or a
    /// control record it served itself (librdkafka's application position); `None` before
    /// anything was served since the last `assign`.
    fn consumed_to(&self) -> Result<Option<u64>, ClusterError> {
        let positions = self.consumer.position().map_err(kafka(
            "ask the position of",
            &self.topic,
            self.partition,
        ))?;
        let here = positions.find_partition(&self.topic, self.partition as i32);
        Ok(match here.map(|e| e.offset()) {
            Some(Offset::Offset(o)) => u64::try_from(o).ok(),
            _ => None,
        })
    }

    /// Waits for the first record of a read the end (`end`) says has records. The read is done
    /// without one once the consumer has passed `end` (everything left was markers or aborted
    /// records). An end-of-partition report with the position short of `end` is stale
    /// (records are queued behind it): after [`EOF_GRACE`] with nothing more, the read is
    /// empty.
    fn first_record(&mut self, out: &mut Rebuild, end: u64) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.op_timeout;
        let mut eof_until: Option<Instant> = None;
        while out.is_empty() {
            if self.consumed_to()?.is_some_and(|passed| passed >= end) {
                return Ok(());
            }
            let now = Instant::now();
            if eof_until.is_some_and(|t| now >= t) {
                return Ok(());
            }
            if now >= deadline {
                return Err(self.timeout("read"));
            }
            let until = eof_until.map_or(deadline, |t| t.min(deadline));
            // Short polls: a control record served inside a poll moves the position without
            // ending it, and the position is looked at between polls.
            let slice = (until - now).min(EOF_GRACE);
            if self.poll_into(out, slice)? == Polled::Eof {
                eof_until.get_or_insert(now + EOF_GRACE);
            }
        }
        Ok(())
    }

    /// Polls once; a message goes into `out`.
    fn poll_into(&mut self, out: &mut Rebuild, timeout: Duration) -> Result<Polled, ClusterError> {
        match self.consumer.poll(timeout) {
            None => Ok(Polled::Nothing),
            Some(Ok(message)) => {
                out.push(&message, &self.topic, self.partition)?;
                Ok(Polled::Message)
            }
            Some(Err(KafkaError::PartitionEOF(_))) => Ok(Polled::Eof),
            Some(Err(e)) => Err(kafka("read", &self.topic, self.partition)(e)),
        }
    }

    /// Waits up to `timeout` for a record at or after `from`, or for the consumer to pass
    /// offsets it skips (markers, aborted records) from `from` on; a record that comes is kept
    /// for the next read. Returns whether the next read from `from` moves on.
    pub(crate) fn wait(&mut self, from: u64, timeout: Duration) -> Result<bool, ClusterError> {
        if self.next == Some(from) && self.stash.is_some() {
            return Ok(true);
        }
        self.position(from)?;
        match self.consumer.poll(timeout) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {
                Ok(self.consumed_to()?.is_some_and(|passed| passed > from))
            }
            Some(Ok(message)) => {
                let message = message.detach();
                let here = offset_of(&message).is_some_and(|o| o >= from);
                if here {
                    self.stash = Some(message);
                }
                Ok(here)
            }
            Some(Err(e)) => Err(kafka("wait on", &self.topic, self.partition)(e)),
        }
    }

    fn timeout(&self, op: &'static str) -> ClusterError {
        ClusterError::Timeout {
            op,
            topic: self.topic.clone(),
            partition: self.partition,
            timeout_ms: self.op_timeout.as_millis() as u64,
        }
    }
}

fn offset_of(message: &impl Message) -> Option<u64> {
    u64::try_from(message.offset()).ok()
}

/// Consumed messages laid out as batches of consecutive offsets.
struct Rebuild {
    out: Vec<u8>,
    builder: Option<(u64, BatchBuilder)>,
    /// Messages below this are dropped (librdkafka may hand out a batch's earlier records).
    from: u64,
    last_offset: Option<u64>,
}

impl Rebuild {
    fn new(from: u64) -> Self {
        Self { out: Vec::new(), builder: None, from, last_offset: None }
    }

    fn is_empty(&self) -> bool {
        self.last_offset.is_none()
    }

    fn len(&self) -> usize {
        self.out.len() + self.builder.as_ref().map_or(0, |(_, b)| b.len_bytes())
    }

    fn push(
        &mut self,
        message: &impl Message,
        topic: &str,
        partition: u32,
    ) -> Result<(), ClusterError> {
        let offset = u64::try_from(message.offset()).map_err(|_| ClusterError::Impossible {
            topic: topic.to_owned(),
            partition,
            what: "record offset",
            value: message.offset(),
        })?;
        if offset < self.from || self.last_offset.is_some_and(|last| offset <= last) {
            return Ok(());
        }
        let follows = self.last_offset.is_some_and(|last| offset == last + 1);
        let full = self.builder.as_ref().is_some_and(|(_, b)| b.len_bytes() >= BATCH_CUT_BYTES);
        if !follows || full {
            self.close();
        }
        let headers: Vec<Header<'_>> = message
            .headers()
            .map(|h| h.iter().map(|h| Header { key: h.key.as_bytes(), value: h.value }).collect())
            .unwrap_or_default();
        let (_, builder) = self.builder.get_or_insert_with(|| (offset, BatchBuilder::new()));
        builder.push(Record {
            timestamp: message.timestamp().to_millis().unwrap_or(0),
            key: message.key(),
            value: message.payload(),
            headers: &headers,
        });
        self.last_offset = Some(offset);
        Ok(())
    }

    /// The offset after what this read covers (`None`: nothing).
    fn next_offset(&self) -> Option<u64> {
        self.last_offset.map(|last| last + 1)
    }

    /// Covers the offsets from the end of what was pushed (or `from`) up to `passed` (not
    /// included) with an empty batch: the consumer went past them without a record.
    fn skip_to(&mut self, passed: u64) {
        let first = self.next_offset().unwrap_or(self.from);
        let Some(empty) = passed.checked_sub(1).and_then(|last| skipped_batch(first, last)) else {
            return;
        };
        self.close();
        self.out.extend_from_slice(&empty);
        self.last_offset = Some(passed - 1);
    }

    /// Finishes the open batch at its base offset.
    fn close(&mut self) {
        if let Some((base, builder)) = self.builder.take() {
            let mut bytes = builder.finish();
            eddy_storage::batch::stamp_position(&mut bytes, base);
            self.out.extend_from_slice(&bytes);
        }
    }

    fn finish(mut self) -> Bytes {
        self.close();
        Bytes::from(self.out)
    }
}
