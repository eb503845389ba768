//! An in-memory [`Transport`] that behaves like a small broker, for the producer and consumer
//! tests: topics of partitions holding real batches (offsets assigned as the log does),
//! idempotent dedupe by sequence, fetch from the batch holding an offset, list offsets.
//!
//! Faults are injected on demand: lose the answer of a produce after appending it (the case
//! idempotence exists for), refuse the next produce with an error code, refuse batches above a
//! size, or give chosen produces their own latency (so a later request can be handled before an
//! earlier one, as the real broker may).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use eddy_protocol::ErrorCode;
use eddy_protocol::v1::{self, request, response};
use eddy_storage::batch::{BatchHeader, validate_for_append};
use eddy_storage::{BatchView, Batches};

use crate::{ClientError, Transport};

#[derive(Debug, Default)]
pub(crate) struct PartitionLog {
    /// Batches with their base offsets filled in.
    pub batches: Vec<Bytes>,
    pub start_offset: u64,
    pub next_offset: u64,
    /// producer id -> (first_seq, last_seq, base_offset, last_offset) of its last
    /// `RETAINED_BATCHES` batches, oldest first (the storage's duplicate window).
    producers: HashMap<i64, VecDeque<(i32, i32, u64, u64)>>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub topics: BTreeMap<String, Vec<PartitionLog>>,
    next_producer_id: i64,
    /// Every produce request, in arrival order.
    pub produces: Vec<v1::ProduceRequest>,
    /// Produce requests that arrived through `send` (no answer wanted).
    pub sends: usize,
    /// Produce answers to lose (after appending): the caller sees a closed connection.
    pub lose_answers: u32,
    /// Errors to answer the next produces with, per partition, without appending.
    pub refuse: VecDeque<ErrorCode>,
    /// Batches larger than this are refused with `BATCH_TOO_LARGE`, as by the broker's
    /// `max_batch_bytes` (`None`: no limit).
    pub max_batch_bytes: Option<usize>,
    /// (partition, base sequence) of every batch of every produce call, in the order the calls
    /// were made (before their latency).
    pub arrivals: Vec<(u32, i32)>,
    /// Latencies of the next produce calls, in the order they are made (then `produce_latency`).
    pub produce_delays: VecDeque<Duration>,
    /// Produce calls being handled now, per (topic, partition), and the most ever seen.
    in_flight: HashMap<(String, u32), u32>,
    pub max_in_flight_per_partition: u32,
}

#[derive(Debug, Default)]
pub(crate) struct FakeBroker {
    pub state: Mutex<State>,
    /// How long each produce takes (use with paused tokio time).
    pub produce_latency: Duration,
}

impl FakeBroker {
    pub fn with_topic(name: &str, partitions: u32) -> Arc<Self> {
        let broker = Self::default();
        broker.create(name, partitions);
        Arc::new(broker)
    }

    pub fn create(&self, name: &str, partitions: u32) {
        let logs = (0..partitions).map(|_| PartitionLog::default()).collect();
        self.state.lock().unwrap().topics.insert(name.to_owned(), logs);
    }

    /// Appends a batch as a produce would; returns its base offset.
    pub fn append(&self, topic: &str, partition: u32, batch: &[u8]) -> u64 {
        let mut state = self.state.lock().unwrap();
        let log = &mut state.topics.get_mut(topic).unwrap()[partition as usize];
        append(log, batch).unwrap().0
    }

    /// Every record value of a partition, in offset order.
    pub fn values(&self, topic: &str, partition: u32) -> Vec<(u64, Vec<u8>)> {
        let state = self.state.lock().unwrap();
        let log = &state.topics[topic][partition as usize];
        let mut out = Vec::new();
        for batch in &log.batches {
            for r in BatchView::parse(batch).unwrap().records().unwrap().iter() {
                let r = r.unwrap();
                out.push((r.offset, r.value.unwrap_or_default().to_vec()));
            }
        }
        out
    }

    fn handle(&self, body: request::Body) -> Result<response::Body, ClientError> {
        let mut state = self.state.lock().unwrap();
        Ok(match body {
            request::Body::Metadata(m) => response::Body::Metadata(metadata(&state, m)),
            request::Body::InitProducer(_) => {
                state.next_producer_id += 1;
                response::Body::InitProducer(v1::InitProducerResponse {
                    producer_id: state.next_producer_id,
                    producer_epoch: 0,
                })
            }
            request::Body::Produce(p) => {
                let answer = produce(&mut state, &p);
                state.produces.push(p);
                if state.lose_answers > 0 {
                    state.lose_answers -= 1;
                    return Err(ClientError::Closed { addr: "fake".into() });
                }
                response::Body::Produce(answer)
            }
            request::Body::Fetch(f) => response::Body::Fetch(fetch(&state, &f)),
            request::Body::ListOffsets(l) => response::Body::ListOffsets(list_offsets(&state, &l)),
            other => panic!("the fake broker does not handle {other:?}"),
        })
    }

    fn produce_partitions(body: &request::Body) -> Vec<(String, u32)> {
        let request::Body::Produce(p) = body else { return Vec::new() };
        p.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.clone(), p.partition)))
            .collect()
    }

    async fn call_inner(&self, body: request::Body) -> Result<response::Body, ClientError> {
        let partitions = Self::produce_partitions(&body);
        {
            let mut state = self.state.lock().unwrap();
            if let request::Body::Produce(p) = &body {
                for part in p.topics.iter().flat_map(|t| &t.partitions) {
                    let header = BatchHeader::parse(&part.batch).unwrap();
                    state.arrivals.push((part.partition, header.base_sequence));
                }
            }
            for key in &partitions {
                let n = state.in_flight.entry(key.clone()).or_default();
                *n += 1;
                let n = *n;
                state.max_in_flight_per_partition = state.max_in_flight_per_partition.max(n);
            }
        }
        if !partitions.is_empty() {
            let delay = self.state.lock().unwrap().produce_delays.pop_front();
            let latency = delay.unwrap_or(self.produce_latency);
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
        }
        let result = self.handle(body);
        let mut state = self.state.lock().unwrap();
        for key in &partitions {
            *state.in_flight.get_mut(key).unwrap() -= 1;
        }
        result
    }
}

impl Transport for FakeBroker {
    fn call(
        &self,
        body: request::Body,
    ) -> impl Future<Output = Result<response::Body, ClientError>> + Send {
        self.call_inner(body)
    }

    async fn send(&self, body: request::Body) -> Result<(), ClientError> {
        self.state.lock().unwrap().sends += 1;
        self.handle(body).map(drop)
    }
}

fn error(code: ErrorCode) -> Option<v1::Error> {
    Some(v1::Error::new(code, code.as_str_name()))
}

fn metadata(state: &State, m: v1::MetadataRequest) -> v1::MetadataResponse {
    let topics = m
        .topics
        .into_iter()
        .map(|name| match state.topics.get(&name) {
            None => v1::TopicMetadata {
                name,
                error: error(ErrorCode::UnknownTopic),
                partitions: vec![],
            },
            Some(logs) => v1::TopicMetadata {
                name,
                error: None,
                partitions: (0..logs.len() as u32)
                    .map(|partition| v1::PartitionInfo { partition, ..Default::default() })
                    .collect(),
            },
        })
        .collect();
    v1::MetadataResponse { broker_address: "fake".into(), topics }
}

/// Batches remembered per producer for duplicate detection, as by the storage.
const RETAINED_BATCHES: usize = 5;

/// Appends like the log: assigns the base offset, dedupes idempotent batches.
fn append(log: &mut PartitionLog, batch: &[u8]) -> Result<(u64, u64, bool), ErrorCode> {
    let header = validate_for_append(batch).map_err(|_| ErrorCode::InvalidBatch)?.header;
    let (first_seq, last_seq) = (header.base_sequence, header.last_sequence());
    if header.is_idempotent() {
        let known = log.producers.get(&header.producer_id);
        let retained = known.into_iter().flatten();
        if let Some(&(_, _, base, last)) =
            retained.clone().find(|(f, l, _, _)| (*f, *l) == (first_seq, last_seq))
        {
            return Ok((base, last, true));
        }
        let expected = retained.last().map_or(0, |&(_, l, _, _)| l + 1);
        if first_seq != expected {
            return Err(ErrorCode::OutOfOrderSequence);
        }
    }
    let base = log.next_offset;
    let mut stored = batch.to_vec();
    eddy_storage::batch::stamp_position(&mut stored, base);
    log.batches.push(Bytes::from(stored));
    let last = base + u64::from(header.last_offset_delta);
    log.next_offset = last + 1;
    if header.is_idempotent() {
        let retained = log.producers.entry(header.producer_id).or_default();
        if retained.len() == RETAINED_BATCHES {
            retained.pop_front();
        }
        retained.push_back((first_seq, last_seq, base, last));
    }
    Ok((base, last, false))
}

fn produce(state: &mut State, p: &v1::ProduceRequest) -> v1::ProduceResponse {
    let mut topics = Vec::new();
    for t in &p.topics {
        let mut partitions = Vec::new();
        for part in &t.partitions {
            let too_large = state.max_batch_bytes.is_some_and(|max| part.batch.len() > max);
            let refused =
                state.refuse.pop_front().or(too_large.then_some(ErrorCode::BatchTooLarge));
            let result = match (refused, state.topics.get_mut(&t.topic)) {
                (Some(code), _) => Err(code),
                (None, None) => Err(ErrorCode::UnknownTopic),
                (None, Some(logs)) => match logs.get_mut(part.partition as usize) {
                    None => Err(ErrorCode::UnknownPartition),
                    Some(log) => append(log, &part.batch),
                },
            };
            partitions.push(match result {
                Ok((base_offset, last_offset, duplicate)) => v1::ProducePartitionResult {
                    partition: part.partition,
                    error: None,
                    base_offset,
                    last_offset,
                    duplicate,
                },
                Err(code) => v1::ProducePartitionResult {
                    partition: part.partition,
                    error: error(code),
                    ..Default::default()
                },
            });
        }
        topics.push(v1::ProduceTopicResult { topic: t.topic.clone(), partitions });
    }
    v1::ProduceResponse { topics, throttle_time_ms: 0 }
}

fn fetch(state: &State, f: &v1::FetchRequest) -> v1::FetchResponse {
    let topics = f
        .topics
        .iter()
        .map(|t| v1::FetchTopicResult {
            topic: t.topic.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let log = &state.topics[&t.topic][p.partition as usize];
                    let mut result = v1::FetchPartitionResult {
                        partition: p.partition,
                        high_watermark: log.next_offset,
                        log_start_offset: log.start_offset,
                        ..Default::default()
                    };
                    if p.offset < log.start_offset || p.offset > log.next_offset {
                        result.error = error(ErrorCode::OffsetOutOfRange);
                        return result;
                    }
                    let mut records = Vec::new();
                    for batch in &log.batches {
                        let header = BatchHeader::parse(batch).unwrap();
                        if header.last_offset() >= p.offset
                            && (records.is_empty()
                                || records.len() + batch.len() <= p.max_bytes as usize)
                        {
                            records.extend_from_slice(batch);
                        }
                    }
                    result.records = Bytes::from(records);
                    result
                })
                .collect(),
        })
        .collect();
    v1::FetchResponse { topics, heartbeat_now: false, throttle_time_ms: 0 }
}

fn list_offsets(state: &State, l: &v1::ListOffsetsRequest) -> v1::ListOffsetsResponse {
    let topics = l
        .topics
        .iter()
        .map(|t| v1::ListOffsetsTopicResult {
            topic: t.topic.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let log = &state.topics[&t.topic][p.partition as usize];
                    let mut r = v1::ListOffsetsPartitionResult {
                        partition: p.partition,
                        ..Default::default()
                    };
                    match v1::OffsetSpec::try_from(p.spec).unwrap() {
                        v1::OffsetSpec::Earliest => r.offset = log.start_offset,
                        v1::OffsetSpec::Latest => r.offset = log.next_offset,
                        v1::OffsetSpec::ByTimestamp => {
                            r.offset = log.next_offset;
                            let all = log.batches.iter().flat_map(|b| {
                                Batches::new(b).flat_map(|v| {
                                    let records = v.unwrap().records().unwrap();
                                    let stamps = records.iter().map(|r| r.unwrap());
                                    stamps.map(|r| (r.offset, r.timestamp)).collect::<Vec<_>>()
                                })
                            });
                            if let Some(found) =
                                all.into_iter().find(|(_, ts)| *ts >= p.timestamp_ms)
                            {
                                (r.offset, r.timestamp_ms, r.found) = (found.0, found.1, true);
                            }
                        }
                    }
                    r
                })
                .collect(),
        })
        .collect();
    v1::ListOffsetsResponse { topics }
}
