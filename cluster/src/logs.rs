//! [`KafkaLogs`]: the processor runtime's [`LogAccess`] over a Kafka-protocol cluster.
//!
//! What it owns: one idempotent producer for appends made through it ([`Writer`]; the tasks of
//! an [`Instance`](crate::Instance) append through their partition's transactional producer
//! instead, `task_logs.rs`), one consumer per partition it reads (kept and reused: a task
//! reading forward keeps librdkafka's prefetch going, [`PartitionReader`]), two metadata
//! clients (partition counts; ends as committed and as uncommitted readers see them) and one
//! admin client (topic creation).
//!
//! How each call keeps the trait's contract (`processor/src/log_access.rs`):
//! - `read` returns whole batches rebuilt from the committed records at their real offsets
//!   (offsets skipped — markers, aborted records — as empty batches); empty only when the
//!   cluster says nothing committed is at or after `from`. `end_offset` is the last stable
//!   offset, which is what a committed reader can reach.
//! - `append` returns once the cluster acknowledged every record (`acks=all`), so a later
//!   `read` or `end_offset` sees them; records land in order, each once (idempotence). A
//!   batch is not atomic on a Kafka cluster (see `writer.rs`): a crash leaves a prefix of it.
//! - `create_topic` creates through the admin API (`cleanup.policy=compact` for compacted
//!   topics, `retention.ms=-1`: a processor's topics are its state and history), and checks
//!   an existing topic's partition count.
//! - `wait_for_data` blocks on the partitions' consumers, which long-poll the cluster: it
//!   returns as soon as a record at or past an asked offset has arrived (kept for the next
//!   read), never spins, and cannot miss a record appended before the call (the consumer
//!   fetches from the asked offset).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_processor::{Appended, LogAccess, LogError, WaitFor};
use eddy_storage::ValidBatch;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::ClusterConfig;
use crate::error::{ClusterError, kafka};
use crate::reader::PartitionReader;
use crate::writer::Writer;

/// How long one consumer is waited on before `wait_for_data` turns to the next partition it
/// was asked about (the others' records are prefetched meanwhile, so none is missed).
const WAIT_SLICE: Duration = Duration::from_millis(20);
/// First pause between looks at a topic's metadata while a new topic propagates; doubled up
/// to [`MAX_BACKOFF`], always bounded by the operation's deadline.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

type Shared<T> = Arc<Mutex<T>>;

/// [`LogAccess`] over a Kafka-protocol cluster, through librdkafka.
pub struct KafkaLogs {
    config: ClusterConfig,
    meta: BaseConsumer,
    /// Asks ends as a `read_uncommitted` reader sees them (the high watermark).
    meta_uncommitted: BaseConsumer,
    admin: AdminClient<DefaultClientContext>,
    writer: Writer,
    readers: Mutex<HashMap<(String, u32), Shared<PartitionReader>>>,
    partitions: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for KafkaLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLogs").field("bootstrap", &self.config.bootstrap).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KafkaLogs {
    /// Connects lazily: librdkafka reaches the cluster on the first call that needs it.
    pub fn new(config: ClusterConfig) -> Result<Self, ClusterError> {
        let meta_client = |isolation| {
            config
                .client("eddy-meta")
                .set("group.id", "eddy-cluster-readers")
                .set("enable.auto.commit", "false")
                .set("allow.auto.create.topics", "false")
                .set("isolation.level", isolation)
                .create::<BaseConsumer>()
                .map_err(|source| ClusterError::Client { what: "metadata", source })
        };
        let meta = meta_client("read_committed")?;
        let meta_uncommitted = meta_client("read_uncommitted")?;
        let admin = config
            .client("eddy-admin")
            .create()
            .map_err(|source| ClusterError::Client { what: "admin", source })?;
        let writer = Writer::new(&config)?;
        Ok(Self {
            config,
            meta,
            meta_uncommitted,
            admin,
            writer,
            readers: Mutex::new(HashMap::new()),
            partitions: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The partition count the cluster's metadata gives `topic` now (no cache).
    fn fetch_partition_count(&self, topic: &str) -> Result<u32, ClusterError> {
        let md = self.meta.fetch_metadata(Some(topic), self.config.op_timeout).map_err(kafka(
            "ask the metadata of",
            topic,
            0,
        ))?;
        let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
            return Err(ClusterError::UnknownTopic { topic: topic.to_owned() });
        };
        match t.error() {
            None if !t.partitions().is_empty() => Ok(t.partitions().len() as u32),
            Some(code)
                if RDKafkaErrorCode::from(code) != RDKafkaErrorCode::UnknownTopicOrPartition =>
            {
                Err(kafka("ask the metadata of", topic, 0)(
                    rdkafka::error::KafkaError::MetadataFetch(code.into()),
                ))
            }
            _ => Err(ClusterError::UnknownTopic { topic: topic.to_owned() }),
        }
    }

    fn count(&self, topic: &str) -> Result<u32, ClusterError> {
        if let Some(n) = lock(&self.partitions).get(topic) {
            return Ok(*n);
        }
        let n = self.fetch_partition_count(topic)?;
        lock(&self.partitions).insert(topic.to_owned(), n);
        Ok(n)
    }

    pub(crate) fn check_partition(&self, topic: &str, partition: u32) -> Result<(), ClusterError> {
        if partition < self.count(topic)? {
            Ok(())
        } else {
            Err(ClusterError::UnknownPartition { topic: topic.to_owned(), partition })
        }
    }

    /// The reader of `topic`/`partition`, created on first use.
    fn reader(&self, topic: &str, partition: u32) -> Result<Shared<PartitionReader>, ClusterError> {
        self.check_partition(topic, partition)?;
        let key = (topic.to_owned(), partition);
        if let Some(r) = lock(&self.readers).get(&key) {
            return Ok(r.clone());
        }
        let reader = Arc::new(Mutex::new(PartitionReader::new(&self.config, topic, partition)?));
        Ok(lock(&self.readers).entry(key).or_insert(reader).clone())
    }

    /// Drops the consumers of `topic`'s partitions in `partitions` (a task that moved away no
    /// longer reads them; they are created again if it comes back).
    pub fn forget_readers(&self, topic: &str, partitions: &[u32]) {
        lock(&self.readers).retain(|(t, p), _| !(t == topic && partitions.contains(p)));
    }

    /// The members of consumer group `group`: each one's `client.id` and assignment bytes
    /// (Kafka's ConsumerProtocol Assignment), from DescribeGroups.
    pub fn group_members(&self, group: &str) -> Result<Vec<(String, Vec<u8>)>, ClusterError> {
        let list = self
            .meta
            .client()
            .fetch_group_list(Some(group), self.config.op_timeout)
            .map_err(kafka("describe group", group, 0))?;
        let members = list
            .groups()
            .iter()
            .filter(|g| g.name() == group)
            .flat_map(|g| g.members())
            .map(|m| (m.client_id().to_owned(), m.assignment().unwrap_or_default().to_vec()))
            .collect();
        Ok(members)
    }

    /// (start, last stable offset) of a partition.
    fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), ClusterError> {
        self.ends(&self.meta, topic, partition)
    }

    /// The last stable offset of `topic`/`partition` once every transaction open there now has
    /// ended: waits until it reaches the high watermark seen at the call. A restarting task
    /// scans the partitions it writes up to their end for its own outputs; those of its last
    /// committed transactions may lie past a stable offset another writer's open transaction
    /// holds back, and a scan that stopped there would miss them (and write them again).
    pub(crate) fn settled_end(&self, topic: &str, partition: u32) -> Result<u64, ClusterError> {
        let (_, high) = self.ends(&self.meta_uncommitted, topic, partition)?;
        let deadline = Instant::now() + self.config.transaction_timeout + self.config.op_timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let (_, stable) = self.watermarks(topic, partition)?;
            if stable >= high {
                return Ok(stable);
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    op: "wait for the open transactions of",
                    topic: topic.to_owned(),
                    partition,
                    timeout_ms: (self.config.transaction_timeout + self.config.op_timeout)
                        .as_millis() as u64,
                });
            }
            std::thread::park_timeout(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The high watermark of `topic`/`partition`: the end as an uncommitted reader sees it,
    /// open transactions included. A committed reader at it has read everything written.
    pub fn high_watermark(&self, topic: &str, partition: u32) -> Result<u64, ClusterError> {
        Ok(self.ends(&self.meta_uncommitted, topic, partition)?.1)
    }

    fn ends(
        &self,
        client: &BaseConsumer,
        topic: &str,
        partition: u32,
    ) -> Result<(u64, u64), ClusterError> {
        self.check_partition(topic, partition)?;
        let (low, high) = client
            .fetch_watermarks(topic, partition as i32, self.config.op_timeout)
            .map_err(kafka("ask the offsets of", topic, partition))?;
        let bad = |what, value| ClusterError::Impossible {
            topic: topic.to_owned(),
            partition,
            what,
            value,
        };
        Ok((
            u64::try_from(low).map_err(|_| bad("start offset", low))?,
            u64::try_from(high).map_err(|_| bad("end offset", high))?,
        ))
    }

    fn create(&self, topic: &str, partitions: u32, compacted: bool) -> Result<(), ClusterError> {
        match self.count(topic) {
            Ok(n) if n == partitions => return Ok(()),
            Ok(existing) => {
                return Err(ClusterError::TopicMismatch {
                    topic: topic.to_owned(),
                    existing,
                    wanted: partitions,
                });
            }
            Err(ClusterError::UnknownTopic { .. }) => {}
            Err(e) => return Err(e),
        }
        let mut new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(-1))
            .set("retention.ms", "-1");
        if compacted {
            new = new.set("cleanup.policy", "compact");
        }
        let options = AdminOptions::new().operation_timeout(Some(self.config.op_timeout));
        let results = block_on(self.admin.create_topics([&new], &options))
            .map_err(kafka("create", topic, 0))?;
        for result in results {
            match result {
                Ok(_) => {}
                // Created meanwhile by another task or instance: checked below.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(kafka("create", topic, 0)(rdkafka::error::KafkaError::AdminOp(
                        code,
                    )));
                }
            }
        }
        self.await_topic(topic, partitions)
    }

    /// Deletes `topics` (a shadow's internal topics once it is done); a topic already gone is
    /// no error.
    pub fn delete_topics(&self, topics: &[String]) -> Result<(), ClusterError> {
        if topics.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(self.config.op_timeout));
        let results = block_on(self.admin.delete_topics(&names, &options))
            .map_err(kafka("delete", &topics[0], 0))?;
        for result in results {
            match result {
                Ok(topic) => {
                    lock(&self.partitions).remove(&topic);
                }
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((topic, code)) => {
                    return Err(kafka("delete", &topic, 0)(rdkafka::error::KafkaError::AdminOp(
                        code,
                    )));
                }
            }
        }
        Ok(())
    }

    /// Waits until the cluster's metadata shows `topic` (a new topic takes a moment to reach
    /// every broker of a real cluster), then checks its partition count.
    fn await_topic(&self, topic: &str, partitions: u32) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.config.op_timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.fetch_partition_count(topic) {
                Ok(n) => {
                    lock(&self.partitions).insert(topic.to_owned(), n);
                    return if n == partitions {
                        Ok(())
                    } else {
                        Err(ClusterError::TopicMismatch {
                            topic: topic.to_owned(),
                            existing: n,
                            wanted: partitions,
                        })
                    };
                }
                Err(ClusterError::UnknownTopic { .. }) if Instant::now() + backoff < deadline => {
                    std::thread::park_timeout(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn wait_any(&self, interests: &[WaitFor<'_>], deadline: Instant) -> Result<bool, ClusterError> {
        let readers: Vec<(Shared<PartitionReader>, u64)> = interests
            .iter()
            .map(|w| Ok((self.reader(w.topic, w.partition)?, w.offset)))
            .collect::<Result<_, ClusterError>>()?;
        if readers.is_empty() {
            // Nothing to wait on: the contract's latest return is the deadline.
            while Instant::now() < deadline {
                std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
            }
            return Ok(false);
        }
        loop {
            for (reader, from) in &readers {
                let left = deadline.saturating_duration_since(Instant::now());
                if lock(reader).wait(*from, left.min(WAIT_SLICE))? {
                    return Ok(true);
                }
                if left.is_zero() {
                    return Ok(false);
                }
            }
        }
    }
}

impl LogAccess for KafkaLogs {
    fn partition_count(&self, topic: &str) -> Result<u32, LogError> {
        Ok(self.count(topic)?)
    }

    fn create_topic(&self, topic: &str, partitions: u32, compacted: bool) -> Result<(), LogError> {
        Ok(self.create(topic, partitions, compacted)?)
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
    ) -> Result<Bytes, LogError> {
        let reader = self.reader(topic, partition)?;
        let bytes = lock(&reader).read(from, max_bytes)?;
        Ok(bytes)
    }

    fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        Ok(self.watermarks(topic, partition)?.0)
    }

    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        Ok(self.watermarks(topic, partition)?.1)
    }

    fn append(
        &self,
        topic: &str,
        partition: u32,
        batch: &ValidBatch,
    ) -> Result<Appended, LogError> {
        self.check_partition(topic, partition)?;
        let (base_offset, last_offset) = self.writer.append(topic, partition, batch)?;
        Ok(Appended { base_offset, last_offset })
    }

    fn flush(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        Ok(self.writer.flush(topic, partition)?)
    }

    fn wait_for_data(&self, interests: &[WaitFor<'_>], deadline: Instant) -> bool {
        match self.wait_any(interests, deadline) {
            Ok(arrived) => arrived,
            Err(error) => {
                // The next read meets the same failure and reports it to the task.
                tracing::warn!(%error, "waiting for data failed");
                true
            }
        }
    }
}

/// Runs an admin future to completion on this thread. librdkafka's own thread completes it,
/// so nothing here needs an async runtime: the thread parks until it is woken.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
