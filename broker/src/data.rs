//! The data path of requests: produce, fetch, list offsets, metadata and the version handshake,
//! over [`Topics`] — shared by the TCP server and the embedded transport (the broker's dispatch
//! calls these). Per-partition failures go into the response body; only a request that cannot
//! be handled at all becomes a request-level error.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eddy_protocol::v1;
use eddy_protocol::{ErrorCode, PROTOCOL_VERSION};
use eddy_storage::{AppendInfo, Flush, Log, ValidBatch};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::groups::Coordinator;
use crate::metrics::Meters;
use crate::topics::{MAX_FETCH_WAIT, Topic, Topics};

/// Fetch size when a request leaves `max_bytes` at 0.
const DEFAULT_FETCH_BYTES: u32 = 1 << 20;

/// The data path of one request: what produce, fetch, list-offsets and metadata read.
#[derive(Debug, Clone, Copy)]
pub struct Data<'a> {
    pub topics: &'a Topics,
    pub groups: &'a Coordinator,
    pub config: &'a BrokerConfig,
    pub meters: &'a Meters,
}

impl Data<'_> {
    pub fn api_versions(
        &self,
        r: &v1::ApiVersionsRequest,
    ) -> Result<v1::ApiVersionsResponse, BrokerError> {
        if r.min_version > PROTOCOL_VERSION || r.max_version < PROTOCOL_VERSION {
            return Err(BrokerError::Malformed(
                "no common protocol version (this broker speaks version 1)",
            ));
        }
        let l = &self.config.limits;
        Ok(v1::ApiVersionsResponse {
            version: PROTOCOL_VERSION,
            broker_version: env!("CARGO_PKG_VERSION").to_string(),
            limits: Some(v1::Limits {
                max_frame_bytes: l.max_frame_bytes,
                max_batch_bytes: l.max_batch_bytes,
                max_in_flight: l.max_in_flight,
                idle_timeout_ms: l.idle_timeout_ms,
            }),
        })
    }

    pub fn metadata(&self, r: &v1::MetadataRequest) -> v1::MetadataResponse {
        let names = if r.topics.is_empty() { self.topics.names() } else { r.topics.clone() };
        let topics = names
            .into_iter()
            .map(|name| match self.topics.get(&name) {
                Ok(t) => v1::TopicMetadata { partitions: t.partition_info(), name, error: None },
                Err(e) => v1::TopicMetadata { error: Some(e.to_wire()), name, partitions: vec![] },
            })
            .collect();
        v1::MetadataResponse { broker_address: self.config.listen.to_string(), topics }
    }

    /// Appends a produce request's batches. `turn` is its place in its connection's order:
    /// the batches are checked first (checksums of several requests run at once), then
    /// appended only once the connection's previous produce has appended, so the requests of
    /// one connection append in the order they arrived — what lets an idempotent producer keep
    /// several batches of a partition in flight without their sequences arriving out of order.
    /// Waiting for an fsync comes after the turn is passed on, so fsyncs are still shared.
    pub async fn produce(
        &self,
        r: v1::ProduceRequest,
        turn: AppendTurn,
    ) -> Result<Option<v1::ProduceResponse>, BrokerError> {
        self.produce_as(r, turn, false).await
    }

    /// [`produce`](Self::produce), with transactional batches accepted when `transactional`
    /// (the Kafka listener, having checked with the transaction coordinator that the producer
    /// may write them to these partitions now).
    pub async fn produce_as(
        &self,
        r: v1::ProduceRequest,
        mut turn: AppendTurn,
        transactional: bool,
    ) -> Result<Option<v1::ProduceResponse>, BrokerError> {
        let acks =
            v1::Acks::try_from(r.acks).map_err(|_| BrokerError::Malformed("unknown acks value"))?;
        let mut checked = Vec::with_capacity(r.topics.len());
        for t in r.topics {
            let topic = if crate::topic::is_internal(&t.topic) {
                Err(BrokerError::InternalTopic(t.topic.clone()))
            } else {
                self.topics.get(&t.topic)
            };
            let parts: Vec<_> = t
                .partitions
                .into_iter()
                .map(|p| {
                    let len = p.batch.len() as u64;
                    let job = partition_of(&topic, p.partition)
                        .map(|log| (log, self.check(p.batch, transactional)));
                    (p.partition, len, job)
                })
                .collect();
            checked.push((t.topic, topic.ok(), parts));
        }
        turn.wait().await;
        let pending: Vec<_> = checked
            .into_iter()
            .map(|(name, topic, parts)| {
                let parts: Vec<_> = parts
                    .into_iter()
                    .map(|(partition, len, job)| {
                        (partition, len, job.map(|(log, valid)| append(log, valid, acks)))
                    })
                    .collect();
                (name, topic, parts)
            })
            .collect();
        turn.pass();
        let mut topics = Vec::with_capacity(pending.len());
        for (name, topic, parts) in pending {
            let mut partitions = Vec::with_capacity(parts.len());
            let (mut records, mut bytes) = (0, 0);
            for (partition, len, job) in parts {
                let outcome = match job {
                    Ok(append) => match append.outcome().await {
                        Ok(Ok(info)) => Ok(info),
                        Ok(Err(source)) => {
                            Err(BrokerError::Storage { topic: name.clone(), partition, source }
                                .to_wire())
                        }
                        Err(join) => Err(v1::Error::new(
                            ErrorCode::Unknown,
                            format!("fsync task failed: {join}"),
                        )),
                    },
                    Err(e) => Err(e),
                };
                if let Ok(info) = &outcome
                    && !info.duplicate
                {
                    records += info.last_offset + 1 - info.base_offset;
                    bytes += len;
                }
                partitions.push(match outcome {
                    Ok(info) => v1::ProducePartitionResult {
                        partition,
                        error: None,
                        base_offset: info.base_offset,
                        last_offset: info.last_offset,
                        duplicate: info.duplicate,
                    },
                    Err(error) => v1::ProducePartitionResult {
                        partition,
                        error: Some(error),
                        ..Default::default()
                    },
                });
            }
            if let Some(topic) = topic
                && self.meters.enabled()
            {
                topic.meter.produced(records, bytes);
            }
            topics.push(v1::ProduceTopicResult { topic: name, partitions });
        }
        self.topics.appended();
        Ok((acks != v1::Acks::None).then_some(v1::ProduceResponse { topics, throttle_time_ms: 0 }))
    }

    /// Checks a batch's size and checksums, before it waits for its turn to append.
    fn check(&self, batch: Bytes, transactional: bool) -> Result<ValidBatch, eddy_storage::Error> {
        let max = self.config.limits.max_batch_bytes;
        if batch.len() as u64 > u64::from(max) {
            return Err(eddy_storage::Error::BatchTooLarge {
                size: batch.len() as u64,
                max: u64::from(max),
            });
        }
        if transactional {
            return Ok(ValidBatch::check_transactional(batch)?);
        }
        Ok(ValidBatch::check(batch)?)
    }

    /// Reads every requested partition; if fewer than `min_bytes` are available, waits for
    /// appends (woken by them, never by polling) until `max_wait_ms` has passed.
    pub async fn fetch(&self, r: &v1::FetchRequest) -> v1::FetchResponse {
        let wait = Duration::from_millis(u64::from(r.max_wait_ms)).min(MAX_FETCH_WAIT);
        let deadline = Instant::now() + wait;
        let groups = &self.groups;
        loop {
            // Register for wake-ups before reading, so an append (or a group change) between
            // the read and the wait is not missed.
            let appended = self.topics.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let changed = groups.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (mut response, bytes) = self.read_partitions(r);
            response.heartbeat_now = r.member.as_ref().is_some_and(|m| groups.needs_heartbeat(m));
            // As in Kafka: min_bytes 0 answers at once, and so does any partition error (the
            // client has to act on it; waiting would only delay that).
            let failed =
                response.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error.is_some());
            let enough = r.min_bytes == 0 || bytes >= u64::from(r.min_bytes);
            let done = enough || failed || response.heartbeat_now;
            if done || Instant::now() >= deadline || self.topics.is_shutting_down() {
                return response;
            }
            let woken = async {
                if r.member.is_some() {
                    tokio::select! {
                        () = appended => {}
                        () = changed => {}
                    }
                } else {
                    appended.await;
                }
            };
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                let (mut response, _) = self.read_partitions(r);
                response.heartbeat_now =
                    r.member.as_ref().is_some_and(|m| groups.needs_heartbeat(m));
                return response;
            }
        }
    }

    fn read_partitions(&self, r: &v1::FetchRequest) -> (v1::FetchResponse, u64) {
        // The answer has to fit in one frame, whatever the client asks for.
        let cap = self.max_fetch_bytes();
        let mut budget =
            u64::from(if r.max_bytes == 0 { DEFAULT_FETCH_BYTES } else { r.max_bytes }).min(cap);
        let mut total = 0u64;
        let committed = r.isolation == v1::IsolationLevel::ReadCommitted as i32;
        let topics = r
            .topics
            .iter()
            .map(|t| {
                let topic = self.topics.get(&t.topic);
                let (mut records_out, mut bytes_out) = (0, 0);
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let log = match partition_of(&topic, p.partition) {
                            Ok(log) => log,
                            Err(error) => {
                                return v1::FetchPartitionResult {
                                    partition: p.partition,
                                    error: Some(error),
                                    ..Default::default()
                                };
                            }
                        };
                        let limit = u64::from(if p.max_bytes == 0 {
                            DEFAULT_FETCH_BYTES
                        } else {
                            p.max_bytes
                        })
                        .min(budget);
                        // Once the budget is spent, report offsets without records (the first
                        // partition with data always gets at least one batch).
                        let read = if limit == 0 && total > 0 {
                            check_in_range(&log, p.offset).map(|()| Bytes::new())
                        } else if committed {
                            log.read_committed(p.offset, limit as usize).map(|(b, _)| b)
                        } else {
                            log.read(p.offset, limit as usize)
                        };
                        let mut result = v1::FetchPartitionResult {
                            partition: p.partition,
                            error: None,
                            high_watermark: log.next_offset(),
                            log_start_offset: log.start_offset(),
                            records: Bytes::new(),
                            last_stable_offset: log.last_stable_offset(),
                            aborted: Vec::new(),
                        };
                        match read {
                            // A later partition's first batch can be larger than what is left of
                            // the budget (reads return at least one batch); it waits for the next
                            // fetch rather than push the answer past the frame limit.
                            Ok(records) if total > 0 && records.len() as u64 > limit => {}
                            Ok(records) => {
                                total += records.len() as u64;
                                budget = budget.saturating_sub(records.len() as u64);
                                if committed && !records.is_empty() && log.has_aborted_txns() {
                                    result.aborted = aborted_in(&log, p.offset);
                                }
                                if self.meters.enabled() {
                                    records_out += count_records(&records);
                                    bytes_out += records.len() as u64;
                                }
                                result.records = records;
                            }
                            Err(source) => {
                                let e = BrokerError::Storage {
                                    topic: t.topic.clone(),
                                    partition: p.partition,
                                    source,
                                };
                                result.error = Some(e.to_wire());
                            }
                        }
                        result
                    })
                    .collect();
                if let Ok(topic) = &topic
                    && bytes_out > 0
                {
                    topic.meter.fetched(records_out, bytes_out);
                }
                v1::FetchTopicResult { topic: t.topic.clone(), partitions }
            })
            .collect();
        (v1::FetchResponse { topics, heartbeat_now: false, throttle_time_ms: 0 }, total)
    }

    /// Largest record payload one fetch answer carries: the frame limit less room for the
    /// envelope.
    fn max_fetch_bytes(&self) -> u64 {
        u64::from(self.config.limits.max_frame_bytes).saturating_sub(64 * 1024).max(1)
    }

    pub fn list_offsets(&self, r: &v1::ListOffsetsRequest) -> v1::ListOffsetsResponse {
        let committed = r.isolation == v1::IsolationLevel::ReadCommitted as i32;
        let topics = r
            .topics
            .iter()
            .map(|t| {
                let topic = self.topics.get(&t.topic);
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let outcome = partition_of(&topic, p.partition)
                            .and_then(|log| lookup_offset(&log, p, &t.topic, committed));
                        match outcome {
                            Ok(mut result) => {
                                result.partition = p.partition;
                                result
                            }
                            Err(error) => v1::ListOffsetsPartitionResult {
                                partition: p.partition,
                                error: Some(error),
                                ..Default::default()
                            },
                        }
                    })
                    .collect();
                v1::ListOffsetsTopicResult { topic: t.topic.clone(), partitions }
            })
            .collect();
        v1::ListOffsetsResponse { topics }
    }
}

/// Appends a checked batch now, in the caller's turn, and starts the fsync its answer waits
/// for, if any (acks=durable, or a topic flushed on every append). The append itself is a
/// write into the page cache and runs here; only the fsync wait goes to a blocking thread, so
/// the next request's append need not wait for it and joins the same fsync.
fn append(log: Arc<Log>, valid: Result<ValidBatch, eddy_storage::Error>, acks: v1::Acks) -> Append {
    let info = match valid.and_then(|batch| log.append_valid_unsynced(&batch)) {
        Ok(info) => info,
        Err(e) => return Append::Done(Err(e)),
    };
    if acks == v1::Acks::Durable || log.config().flush == Flush::Always {
        let sync = move || log.sync_through(info.last_offset + 1).map(|()| info);
        Append::Syncing(tokio::task::spawn_blocking(sync))
    } else {
        Append::Done(Ok(info))
    }
}

/// An append done, perhaps waiting for its fsync on a blocking thread.
enum Append {
    Done(Result<AppendInfo, eddy_storage::Error>),
    Syncing(tokio::task::JoinHandle<Result<AppendInfo, eddy_storage::Error>>),
}

impl Append {
    async fn outcome(
        self,
    ) -> Result<Result<AppendInfo, eddy_storage::Error>, tokio::task::JoinError> {
        match self {
            Append::Done(outcome) => Ok(outcome),
            Append::Syncing(handle) => handle.await,
        }
    }
}

/// A produce request's place in its connection's order of appends: it appends after the
/// previous produce of the connection has (or has given up), and lets the next one go once it
/// has appended. The default turn waits for nobody (a request without a connection: the
/// embedded transport, the Kafka listener).
#[derive(Debug, Default)]
pub struct AppendTurn {
    /// Completes (or is dropped) once the previous produce has appended.
    after: Option<oneshot::Receiver<()>>,
    /// Dropped once this request has appended, or if it never gets to: wakes the next one.
    then: Option<oneshot::Sender<()>>,
}

impl AppendTurn {
    /// The next turn of a connection whose last produce passes on through `last`.
    pub fn next(last: &mut Option<oneshot::Receiver<()>>) -> Self {
        let (then, passed) = oneshot::channel();
        Self { after: last.replace(passed), then: Some(then) }
    }

    async fn wait(&mut self) {
        if let Some(after) = self.after.take() {
            // Sent or dropped, either way the previous request is done appending.
            let _ = after.await;
        }
    }

    fn pass(&mut self) {
        self.then = None;
    }
}

/// The log of `partition` in a topic that may not exist, or the error to report for it.
fn partition_of(
    topic: &Result<Arc<Topic>, BrokerError>,
    partition: u32,
) -> Result<Arc<Log>, v1::Error> {
    match topic {
        Ok(topic) => topic.partition(partition).cloned().map_err(|e| e.to_wire()),
        Err(e) => Err(e.to_wire()),
    }
}

/// The aborted transactions a read_committed fetch from `from` needs (the read ends below
/// the last stable offset, so none completed past it matters).
fn aborted_in(log: &Log, from: u64) -> Vec<v1::AbortedTransaction> {
    log.aborted_txns(from, log.last_stable_offset())
        .into_iter()
        .map(|a| v1::AbortedTransaction {
            producer_id: a.producer_id,
            first_offset: a.first_offset,
            last_offset: a.last_offset,
        })
        .collect()
}

/// The offset `p` asks for; `committed`: a read_committed reader's latest is the last stable
/// offset.
fn lookup_offset(
    log: &Log,
    p: &v1::ListOffsetsPartition,
    topic: &str,
    committed: bool,
) -> Result<v1::ListOffsetsPartitionResult, v1::Error> {
    let found =
        |offset| v1::ListOffsetsPartitionResult { offset, found: true, ..Default::default() };
    let Ok(spec) = v1::OffsetSpec::try_from(p.spec) else {
        return Err(v1::Error::new(
            ErrorCode::MalformedRequest,
            format!("unknown offset spec {}", p.spec),
        ));
    };
    Ok(match spec {
        v1::OffsetSpec::Earliest => found(log.start_offset()),
        v1::OffsetSpec::Latest if committed => found(log.last_stable_offset()),
        v1::OffsetSpec::Latest => found(log.next_offset()),
        v1::OffsetSpec::ByTimestamp => match log.offset_for_timestamp(p.timestamp_ms) {
            Ok(Some(t)) => v1::ListOffsetsPartitionResult {
                offset: t.offset,
                timestamp_ms: t.timestamp,
                found: true,
                ..Default::default()
            },
            Ok(None) => v1::ListOffsetsPartitionResult {
                offset: log.next_offset(),
                found: false,
                ..Default::default()
            },
            Err(source) => {
                return Err(BrokerError::Storage {
                    topic: topic.to_string(),
                    partition: p.partition,
                    source,
                }
                .to_wire());
            }
        },
    })
}

/// Records in the data batches of `bytes` (whole batches, as a read returns them), from their
/// headers alone (no checksum is computed); control batches are not records.
fn count_records(mut bytes: &[u8]) -> u64 {
    let mut records = 0;
    while let Ok(header) = eddy_storage::batch::BatchHeader::parse(bytes) {
        if !header.is_control() {
            records += u64::from(header.record_count);
        }
        match bytes.get(header.batch_len as usize..) {
            Some(rest) => bytes = rest,
            None => break,
        }
    }
    records
}

/// The check a read would make of `offset`, for a partition left out of a spent fetch budget.
fn check_in_range(log: &Log, offset: u64) -> Result<(), eddy_storage::Error> {
    let (start, end) = (log.start_offset(), log.next_offset());
    if offset < start || offset > end {
        return Err(eddy_storage::Error::OffsetOutOfRange { requested: offset, start, end });
    }
    Ok(())
}
