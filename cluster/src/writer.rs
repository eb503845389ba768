//! Appending a processor's batches through a librdkafka producer: the instance's idempotent
//! one, or a task partition's transactional one.
//!
//! [`Writer::append`] sends the records of one batch, in order, to one partition and waits
//! until the cluster has acknowledged every one of them (`acks=all`); it returns the offsets
//! of the first and the last.
//!
//! A transactional writer ([`Writer::transactional`]) carries a `transactional.id`:
//! [`init`](Writer::init) fences every earlier producer with that id (its open transaction is
//! aborted, its next request refused), and what is appended between [`begin`](Writer::begin)
//! and [`commit`](Writer::commit) becomes visible to `read_committed` readers all at once, or
//! never. A writer that was fenced reports [`ClusterError::Fenced`] from then on.
//!
//! Invariants:
//! - The producer is idempotent (`enable.idempotence`): within a partition, records land in
//!   the order they were sent, each once, with no gap — even across librdkafka's retries. A
//!   crash can cut an append short, but what is in the log is always a prefix of what was
//!   sent, in order, which is what the processors' recovery by output positions needs
//!   (docs/processors.md, "Effectively-once"). librdkafka may split one eddy batch over several
//!   Kafka batches, so unlike a local log a batch is not appended all or nothing.
//! - `append` returns only when every record's delivery report has come back: `Ok` means the
//!   cluster holds them all.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use eddy_storage::{BatchView, ValidBatch};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Message as _};

use crate::config::ClusterConfig;
use crate::error::{ClusterError, kafka};

/// How long an append that found librdkafka's queue full waits for a delivery before trying
/// again (a bound on one wait, not a sleep: a delivery wakes it at once).
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(100);

/// Where one append's delivery reports are gathered.
#[derive(Debug)]
struct Deliveries {
    state: Mutex<DeliveryState>,
    done: Condvar,
}

#[derive(Debug)]
struct DeliveryState {
    waiting: usize,
    first: Option<i64>,
    last: Option<i64>,
    error: Option<KafkaError>,
}

impl Deliveries {
    fn lock(&self) -> std::sync::MutexGuard<'_, DeliveryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The delivery report's address: which append, and whether the record is its first / last.
#[derive(Debug)]
pub(crate) struct Ticket {
    deliveries: Arc<Deliveries>,
    first: bool,
    last: bool,
}

/// The producer's context: routes each delivery report to its append.
#[derive(Debug, Default)]
pub(crate) struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<Ticket>) {
        let mut state = ticket.deliveries.lock();
        match result {
            Ok(message) => {
                if ticket.first {
                    state.first = Some(message.offset());
                }
                if ticket.last {
                    state.last = Some(message.offset());
                }
            }
            Err((e, _)) => {
                state.error.get_or_insert_with(|| e.clone());
            }
        }
        state.waiting = state.waiting.saturating_sub(1);
        drop(state);
        ticket.deliveries.done.notify_all();
    }
}

/// The producer appends go through.
pub(crate) struct Writer {
    producer: ThreadedProducer<Reports>,
    delivery_timeout: Duration,
    op_timeout: Duration,
    /// `Some` for a transactional writer.
    transactional_id: Option<String>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// The idempotent (not transactional) writer.
    pub(crate) fn new(config: &ClusterConfig) -> Result<Self, ClusterError> {
        Self::create(config, None)
    }

    /// A transactional writer with `transactional_id`; call [`init`](Self::init) before use.
    pub(crate) fn transactional(
        config: &ClusterConfig,
        transactional_id: &str,
    ) -> Result<Self, ClusterError> {
        Self::create(config, Some(transactional_id))
    }

    fn create(
        config: &ClusterConfig,
        transactional_id: Option<&str>,
    ) -> Result<Self, ClusterError> {
        // librdkafka refuses a message timeout past the transaction timeout.
        let delivery = match transactional_id {
            Some(_) => config.delivery_timeout.min(config.transaction_timeout),
            None => config.delivery_timeout,
        };
        let timeout_ms = delivery.as_millis().to_string();
        let mut client = config.client(transactional_id.unwrap_or("eddy-writer"));
        if let Some(id) = transactional_id {
            client
                .set("transactional.id", id)
                .set("transaction.timeout.ms", config.transaction_timeout.as_millis().to_string());
        }
        let producer = client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", &timeout_ms)
            .set("queue.buffering.max.kbytes", "262144")
            .set("allow.auto.create.topics", "false")
            .create_with_context(Reports)
            .map_err(|source| ClusterError::Client { what: "producer", source })?;
        Ok(Self {
            producer,
            delivery_timeout: delivery,
            op_timeout: config.op_timeout,
            transactional_id: transactional_id.map(str::to_owned),
        })
    }

    /// Registers the transactional id with its coordinator, fencing every earlier producer
    /// with it (their open transaction is aborted before this returns).
    pub(crate) fn init(&self) -> Result<(), ClusterError> {
        let result = self.producer.init_transactions(self.op_timeout);
        result.map_err(|e| self.classify("initialise the transactions of", "", 0, e))
    }

    /// Opens a transaction: what is appended from now on commits or aborts together.
    pub(crate) fn begin(&self) -> Result<(), ClusterError> {
        let result = self.producer.begin_transaction();
        result.map_err(|e| self.classify("begin a transaction of", "", 0, e))
    }

    /// Commits the open transaction (every append in it was already acknowledged).
    pub(crate) fn commit(&self) -> Result<(), ClusterError> {
        let result = self.producer.commit_transaction(self.op_timeout);
        result.map_err(|e| self.classify("commit a transaction of", "", 0, e))
    }

    /// Aborts the open transaction: nothing appended in it is ever visible to committed
    /// readers.
    pub(crate) fn abort(&self) -> Result<(), ClusterError> {
        let result = self.producer.abort_transaction(self.op_timeout);
        result.map_err(|e| self.classify("abort a transaction of", "", 0, e))
    }

    /// A librdkafka failure as a [`ClusterError`]: [`ClusterError::Fenced`] when another
    /// producer with this writer's transactional id took over (directly, or as the cause of
    /// the producer's fatal error).
    fn classify(
        &self,
        op: &'static str,
        topic: &str,
        partition: u32,
        e: KafkaError,
    ) -> ClusterError {
        if let Some(id) = &self.transactional_id {
            let fatal = self.producer.client().fatal_error().map(|(code, _)| code);
            if e.rdkafka_error_code().is_some_and(is_fencing) || fatal.is_some_and(is_fencing) {
                return ClusterError::Fenced { transactional_id: id.clone() };
            }
        }
        let topic =
            if topic.is_empty() { self.transactional_id.as_deref().unwrap_or("") } else { topic };
        kafka(op, topic, partition)(e)
    }

    /// Sends `batch`'s records, in order, to `topic`/`partition` and waits for all of them.
    /// Returns the offsets of the first and the last.
    pub(crate) fn append(
        &self,
        topic: &str,
        partition: u32,
        batch: &ValidBatch,
    ) -> Result<(u64, u64), ClusterError> {
        let bad = |source| ClusterError::BadBatch { topic: topic.to_owned(), partition, source };
        let view = BatchView::parse(batch.as_bytes()).map_err(bad)?;
        let records = view.records().map_err(bad)?;
        let count = view.header().record_count as usize;
        let deliveries = Arc::new(Deliveries {
            state: Mutex::new(DeliveryState { waiting: 0, first: None, last: None, error: None }),
            done: Condvar::new(),
        });
        for (i, record) in records.iter().enumerate() {
            let record = record.map_err(bad)?;
            let mut headers = OwnedHeaders::new_with_capacity(record.header_count() as usize);
            for h in record.headers() {
                let key = std::str::from_utf8(h.key).map_err(|_| ClusterError::HeaderKey {
                    topic: topic.to_owned(),
                    partition,
                    key: h.key.to_vec(),
                })?;
                headers = headers.insert(Header { key, value: h.value });
            }
            let ticket = Box::new(Ticket {
                deliveries: deliveries.clone(),
                first: i == 0,
                last: i + 1 == count,
            });
            let mut out = BaseRecord::<[u8], [u8], Box<Ticket>>::with_opaque_to(topic, ticket)
                .partition(partition as i32)
                .timestamp(record.timestamp)
                .headers(headers);
            out.key = record.key;
            out.payload = record.value;
            deliveries.lock().waiting += 1;
            self.send(out, &deliveries, topic, partition)?;
        }
        self.wait(&deliveries, topic, partition)
    }

    /// Hands one record to librdkafka, waiting for room when its queue is full.
    fn send<'a>(
        &self,
        mut record: BaseRecord<'a, [u8], [u8], Box<Ticket>>,
        deliveries: &Deliveries,
        topic: &str,
        partition: u32,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.delivery_timeout;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    record = back;
                    let state = deliveries.lock();
                    let _ = deliveries.done.wait_timeout(state, QUEUE_FULL_WAIT);
                }
                Err((e, _)) => {
                    deliveries.lock().waiting -= 1;
                    return Err(self.classify("append to", topic, partition, e));
                }
            }
        }
    }

    /// Waits for every delivery report of one append.
    fn wait(
        &self,
        deliveries: &Deliveries,
        topic: &str,
        partition: u32,
    ) -> Result<(u64, u64), ClusterError> {
        let deadline = Instant::now() + self.delivery_timeout + Duration::from_secs(5);
        let mut state = deliveries.lock();
        while state.waiting > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClusterError::Timeout {
                    op: "append to",
                    topic: topic.to_owned(),
                    partition,
                    timeout_ms: self.delivery_timeout.as_millis() as u64,
                });
            }
            state = deliveries.done.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        if let Some(e) = state.error.take() {
            return Err(self.classify("append to", topic, partition, e));
        }
        let offset = |o: Option<i64>, what| {
            o.and_then(|o| u64::try_from(o).ok()).ok_or(ClusterError::Impossible {
                topic: topic.to_owned(),
                partition,
                what,
                value: o.unwrap_or(-1),
            })
        };
        Ok((
            offset(state.first, "first appended offset")?,
            offset(state.last, "last appended offset")?,
        ))
    }

    /// Waits until everything sent has been acknowledged (every append already waited for
    /// its own records; this covers none left behind).
    pub(crate) fn flush(&self, topic: &str, partition: u32) -> Result<(), ClusterError> {
        let result = self.producer.flush(self.delivery_timeout);
        result.map_err(|e| self.classify("flush", topic, partition, e))
    }
}

/// Whether `code` says a producer was fenced by a newer one with its transactional id (or
/// its transaction was aborted by the coordinator, which raised its epoch).
fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}
