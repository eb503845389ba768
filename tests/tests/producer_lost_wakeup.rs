//! Regression tests for a lost wake-up in the producer's worker (`client/src/producer/worker.rs`).
//! `Worker::run` used to call `dispatch()` and then `next_wake()`, each reading `Instant::now()`
//! itself. A deadline that fell between the two readings — a batch's linger, a retry's backoff,
//! the next `InitProducer` attempt — was "not yet" for `dispatch` and "already past" for
//! `next_wake`, which keeps only future deadlines; the worker then slept with no timer, and the
//! record's `Delivery` never resolved unless another command or answer happened to wake it.
//! The worker now reads the clock once per round and gives both the same instant.
//!
//! Short lingers and backoffs make the window easy to hit; the defaults (5 ms, 100 ms) only made
//! it rarer (`broker_kill9` hit it under load: "the producer did not stop").

use std::time::Duration;

use eddy_broker::Broker;
use eddy_client::{Admin, ClientError, Producer, ProducerConfig, ProducerRecord, Transport};
use eddy_protocol::v1::{self, request, response};

const TRIES: u64 = 500;
/// Far longer than any linger or backoff below: a delivery still pending then was forgotten.
const PATIENCE: Duration = Duration::from_millis(500);

/// A transport that knows one topic of one partition and fails everything else as a dead
/// connection does (retriable).
struct DeadConnection;

impl Transport for DeadConnection {
    async fn call(&self, body: request::Body) -> Result<response::Body, ClientError> {
        match body {
            request::Body::Metadata(_) => Ok(response::Body::Metadata(v1::MetadataResponse {
                broker_address: String::new(),
                topics: vec![v1::TopicMetadata {
                    name: "t".into(),
                    error: None,
                    partitions: vec![v1::PartitionInfo { partition: 0, ..Default::default() }],
                }],
            })),
            _ => Err(ClientError::Closed { addr: "dead".into() }),
        }
    }

    async fn send(&self, _body: request::Body) -> Result<(), ClientError> {
        Err(ClientError::Closed { addr: "dead".into() })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_producer_retry_after_a_short_backoff_is_not_forgotten() {
    let mut forgotten = Vec::new();
    for i in 0..TRIES {
        let retry_backoff = Duration::from_micros(1 + i % 50);
        let config = ProducerConfig { retries: 2, retry_backoff, ..ProducerConfig::default() };
        let producer = Producer::new(DeadConnection, config).unwrap();
        let delivery = producer.send("t", Some(0), ProducerRecord::value("x")).await.unwrap();
        match tokio::time::timeout(PATIENCE, delivery).await {
            Ok(outcome) => assert!(outcome.is_err(), "a dead connection acknowledged: {outcome:?}"),
            Err(_) => forgotten.push(retry_backoff),
        }
    }
    assert!(forgotten.is_empty(), "deliveries never resolved with backoffs {forgotten:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_record_is_sent_when_its_linger_ends() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    Admin::new(broker.clone()).create_topic("t", v1::TopicConfig::default()).await.unwrap();
    let mut forgotten = Vec::new();
    for i in 0..TRIES {
        let linger = Duration::from_micros(1 + i % 50);
        let config = ProducerConfig { idempotent: false, linger, ..ProducerConfig::default() };
        let producer = Producer::new(broker.clone(), config).unwrap();
        let delivery = producer.send("t", Some(0), ProducerRecord::value("x")).await.unwrap();
        match tokio::time::timeout(PATIENCE, delivery).await {
            Ok(outcome) => assert!(outcome.is_ok(), "{outcome:?}"),
            Err(_) => forgotten.push(linger),
        }
    }
    assert!(forgotten.is_empty(), "deliveries never resolved with lingers {forgotten:?}");
}
