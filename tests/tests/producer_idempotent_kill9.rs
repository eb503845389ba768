//! An idempotent producer with five batches in flight per partition keeps writing while its
//! broker is SIGKILLed mid-stream and restarted on the same data directory (at a new ephemeral
//! port, which the producer's transport reconnects to). Every acknowledged record must be in
//! the log exactly once and in order: batches in flight when the broker died are resent, in
//! sequence order, and those it had already appended are answered as duplicates with their
//! original offsets.
//!
//! First, the broker guarantee the producer's pipelining rests on: a connection's produce
//! requests append in the order they arrived, so numbered batches sent back to back are never
//! refused as out of sequence.
//!
//! The kill points (after how many acknowledged batches) come from a seed, printed on failure;
//! `EDDY_IDEMPOTENT_KILL9_SEED` replaces it. Waits are on events with deadlines, never sleeps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_client::{
    Acks, Admin, BatchDelivery, Connection, ConnectionOptions, Producer, ProducerConfig,
    ProducerRecord, TopicConfig, Transport,
};
use eddy_protocol::v1::{self, request, response};
use eddy_storage::BatchBuilder;
use eddy_storage::batch::Record;
use eddy_tests::broker::BrokerProcess;
use eddy_tests::generate::{Rng, mix64};
use eddy_tests::reconnect::Reconnecting;
use eddy_tests::workload::read_topic;
use tokio::sync::{mpsc, watch};
use tokio::task::block_in_place;

const SEED: u64 = 0x0edd_0020_1de5_9a7e;
const SEED_ENV: &str = "EDDY_IDEMPOTENT_KILL9_SEED";
const TOPIC: &str = "numbered";
const RECORDS: u64 = 200_000;
/// Records per `send_batch` call: one batch on the wire each.
const PER_BATCH: u64 = 500;
const BATCHES: u64 = RECORDS / PER_BATCH;
const KILLS: usize = 3;
const VALUE_BYTES: usize = 100;
/// Upper bound on every wait: a kill point being reached, a broker coming back, the read-back.
const LIMIT: Duration = Duration::from_secs(120);

/// Reports the seed when the test panics, wherever the panic came from.
struct SeedOnPanic(u64);

impl Drop for SeedOnPanic {
    #[allow(clippy::print_stderr, reason = "the seed must reach the test output on failure")]
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failed with seed {:#x} (replay: {SEED_ENV}={:#x})", self.0, self.0);
        }
    }
}

fn seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(text) => u64::from_str_radix(text.trim_start_matches("0x"), 16)
            .unwrap_or_else(|e| panic!("{SEED_ENV}={text:?}: {e}")),
        Err(_) => SEED,
    }
}

/// Record `i`'s value: its number, big-endian, padded to `VALUE_BYTES`.
fn record(i: u64) -> ProducerRecord {
    let mut value = vec![b'.'; VALUE_BYTES];
    value[..8].copy_from_slice(&i.to_be_bytes());
    ProducerRecord::value(value)
}

/// The kill points: after how many acknowledged batches each kill comes, increasing, all
/// within the first four fifths of the stream so the producer is still sending.
fn kill_points(seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(mix64(seed));
    let mut points: Vec<u64> = (0..KILLS).map(|_| 1 + rng.below(BATCHES * 4 / 5)).collect();
    points.sort_unstable();
    points.dedup();
    points
}

/// What the producer side saw: per batch, its first record's number and its acknowledged base
/// offset (or the error), in send order.
type Outcomes = Vec<(u64, Result<u64, String>)>;

/// Sends every record in `send_batch` calls of `PER_BATCH` and awaits the acknowledgements in
/// order, publishing how many batches are acknowledged on `acked`.
async fn produce(producer: Producer<Arc<Reconnecting>>, acked: watch::Sender<u64>) -> Outcomes {
    let (queue, mut queued) = mpsc::channel::<(u64, BatchDelivery)>(64);
    let send = async {
        for first in (0..RECORDS).step_by(PER_BATCH as usize) {
            let records = (first..first + PER_BATCH).map(record);
            let delivery = producer.send_batch(TOPIC, Some(0), records).await.expect("send_batch");
            queue.send((first, delivery)).await.expect("the collector runs");
        }
        drop(queue);
    };
    let collect = async {
        let mut outcomes = Outcomes::new();
        while let Some((first, delivery)) = queued.recv().await {
            let outcome = delivery.await.map_err(|e| e.to_string()).map(|meta| {
                assert_eq!(u64::from(meta.record_count), PER_BATCH);
                meta.base_offset.expect("a durable acknowledgement has an offset")
            });
            let ok = outcome.is_ok();
            outcomes.push((first, outcome));
            if ok {
                acked.send_modify(|n| *n += 1);
            }
        }
        outcomes
    };
    let ((), outcomes) = tokio::join!(send, collect);
    producer.close().await.expect("close the producer");
    outcomes
}

async fn create_topic(broker: &BrokerProcess) {
    let conn = Connection::connect(&broker.addr().to_string(), ConnectionOptions::default())
        .await
        .expect("connect");
    let config =
        TopicConfig { partitions: Some(1), retention_ms: Some(-1), ..TopicConfig::default() };
    Admin::new(conn).create_topic(TOPIC, config).await.expect("create the topic");
}

/// Reads the whole partition back: the record number at each offset.
async fn read_back(broker: &BrokerProcess) -> Vec<u64> {
    let conn = Connection::connect(&broker.addr().to_string(), ConnectionOptions::default())
        .await
        .expect("connect for the read-back");
    let mut numbers = Vec::new();
    read_topic(Arc::new(conn), TOPIC, Instant::now() + LIMIT, |_, view| {
        let raw = view.value.and_then(|v| v.get(..8)).ok_or("a value shorter than its number")?;
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(raw);
        numbers.push(u64::from_be_bytes(bytes));
        Ok(())
    })
    .await
    .expect("read the partition back");
    numbers
}

/// Produces one numbered batch of `count` records from `base`; returns its base offset.
async fn produce_numbered(
    conn: &Connection,
    id: i64,
    base: i32,
    count: i32,
) -> Result<u64, String> {
    let mut builder = BatchBuilder::new();
    for i in base..base + count {
        let value = i.to_be_bytes();
        builder.push(Record { timestamp: 1, key: None, value: Some(&value), headers: &[] });
    }
    let partition =
        v1::ProducePartition { partition: 0, batch: builder.producer(id, 0, base).build() };
    let topics = vec![v1::ProduceTopic { topic: TOPIC.into(), partitions: vec![partition] }];
    let body = request::Body::Produce(v1::ProduceRequest { acks: Acks::Durable as i32, topics });
    let Ok(response::Body::Produce(answer)) = conn.call(body).await else {
        return Err("no produce answer".into());
    };
    let result = &answer.topics[0].partitions[0];
    match &result.error {
        Some(e) if e.code != 0 => Err(format!("batch from sequence {base}: {e:?}")),
        _ => Ok(result.base_offset),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_pipelined_produces_append_in_arrival_order() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut broker = block_in_place(|| BrokerProcess::start(dir.path(), &[]));
    create_topic(&broker).await;
    let conn = Connection::connect(&broker.addr().to_string(), ConnectionOptions::default())
        .await
        .expect("connect");
    let init = request::Body::InitProducer(v1::InitProducerRequest {});
    let Ok(response::Body::InitProducer(identity)) = conn.call(init).await else {
        panic!("no producer id");
    };
    let id = identity.producer_id;
    const COUNT: i32 = 10;
    // Rounds of five requests queued at once (one write), as an idempotent producer pipelines.
    for round in 0..40 {
        let seq = |k: i32| (round * 5 + k) * COUNT;
        let answers = tokio::join!(
            produce_numbered(&conn, id, seq(0), COUNT),
            produce_numbered(&conn, id, seq(1), COUNT),
            produce_numbered(&conn, id, seq(2), COUNT),
            produce_numbered(&conn, id, seq(3), COUNT),
            produce_numbered(&conn, id, seq(4), COUNT),
        );
        let answers = [answers.0, answers.1, answers.2, answers.3, answers.4];
        for (k, answer) in answers.into_iter().enumerate() {
            let expected = seq(k as i32) as u64;
            assert_eq!(answer, Ok(expected), "round {round}, request {k}");
        }
    }
    let status = block_in_place(|| broker.terminate());
    assert_eq!(status.code(), Some(0), "broker exit after SIGTERM: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_broker_mid_stream_leaves_every_acknowledged_record_once_and_in_order() {
    let seed = seed();
    let _report = SeedOnPanic(seed);
    let points = kill_points(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut broker = block_in_place(|| BrokerProcess::start(dir.path(), &[]));
    create_topic(&broker).await;

    let (transport, address) = Reconnecting::new(Some(broker.addr()), LIMIT);
    let config = ProducerConfig {
        acks: Acks::Durable,
        idempotent: true,
        max_in_flight: 5,
        // A kill fails the calls in flight at that moment; their resends wait in the transport
        // for the restarted broker, so a few attempts are plenty.
        retries: 10,
        retry_backoff: Duration::from_millis(5),
        request_bytes: 8 << 20,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(Arc::new(transport), config).expect("a producer");
    let (acked_tx, mut acked) = watch::channel(0u64);
    let task = tokio::spawn(produce(producer, acked_tx));

    let mut acked_at_kill = Vec::new();
    for &point in &points {
        let reached = tokio::time::timeout(LIMIT, acked.wait_for(|n| *n >= point))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(reached, "{point} batches not acknowledged within {LIMIT:?}");
        // No address while the broker is down: new calls wait for the restarted one.
        address.send_replace(None);
        let status = block_in_place(|| broker.kill9());
        acked_at_kill.push(*acked.borrow());
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
        broker = block_in_place(|| BrokerProcess::start(dir.path(), &[]));
        address.send_replace(Some(broker.addr()));
    }
    let outcomes = tokio::time::timeout(LIMIT, task)
        .await
        .expect("the producer finished within the limit")
        .expect("the producer task");
    // The kills came while batches were still being sent, not after the stream.
    assert!(
        acked_at_kill.iter().all(|n| *n < BATCHES),
        "acknowledged at the kills: {acked_at_kill:?}"
    );

    println!(
        "seed {seed:#x}: killed after {points:?} batches; {acked_at_kill:?} acknowledged then"
    );
    let numbers = read_back(&broker).await;
    // Increasing: no record twice, none out of order.
    if let Some(w) = numbers.windows(2).position(|w| w[0] >= w[1]) {
        panic!("offset {}: record {} follows record {}", w + 1, numbers[w + 1], numbers[w]);
    }
    // Every acknowledged batch is where its acknowledgement said, whole.
    let mut failed = Vec::new();
    for (first, outcome) in &outcomes {
        match outcome {
            Ok(base) => {
                let at = numbers.get(*base as usize..(*base + PER_BATCH) as usize);
                let expected: Vec<u64> = (*first..first + PER_BATCH).collect();
                assert_eq!(
                    at,
                    Some(&expected[..]),
                    "batch from record {first} acknowledged at {base}"
                );
            }
            Err(e) => failed.push(format!("batch from record {first}: {e}")),
        }
    }
    // The transport waits for the restarted broker, so nothing should have failed: all of it is
    // in the log, exactly once.
    assert!(failed.is_empty(), "kills after {acked_at_kill:?} batches; failed: {failed:?}");
    assert_eq!(numbers.len() as u64, RECORDS);
    let status = block_in_place(|| broker.terminate());
    assert_eq!(status.code(), Some(0), "broker exit after SIGTERM: {status:?}");
}
