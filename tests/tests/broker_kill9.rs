//! Crash cycles with a real broker process: an idempotent producer with `acks = durable` writes
//! continuously while the broker is killed with SIGKILL at a seeded random point (after a
//! random number of acknowledged records), then restarted on the same data directory.
//!
//! The topics flush with the OS's write-back (`flush = os`), so only the durable
//! acknowledgement (an fsync before the answer) protects a record. After every cycle, the
//! whole log read back must hold:
//! - every acknowledged record at its acknowledged (topic, partition, offset), byte-identical;
//! - no record twice: each value starts with the record's unique index, and an index occurs at
//!   most once over all topics — acknowledged or not (an unacknowledged record may be there,
//!   once, intact and in its partition);
//! - nothing that was never sent, and no gap in any partition's offsets;
//! - within a cycle, each partition's acknowledgements at increasing offsets in send order.
//!
//! `EDDY_KILL9_SEED` replaces the seed (printed with any failure) to explore other kill points.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eddy_client::partitioner::partition_for_key;
use eddy_client::{
    Acks, Admin, Connection, ConnectionOptions, Delivery, OffsetQuery, Producer, ProducerConfig,
    TopicConfig,
};
use eddy_protocol::v1;
use eddy_tests::broker::BrokerProcess;
use eddy_tests::generate::{Rng, mix64};
use eddy_tests::workload::{Workload, compare, read_topic, tag_of};
use tokio::sync::{mpsc, watch};
use tokio::task::block_in_place;

const SEED: u64 = 0x0edd_0003_c1a5_4e99;
const SEED_ENV: &str = "EDDY_KILL9_SEED";
const CYCLES: u64 = 32;
/// A cycle kills the broker after 1 to this many acknowledged records.
const KILL_AFTER_MAX: u64 = 1500;
/// Two topics, so an acknowledgement is checked against the right one:
/// (name, partitions); a record goes to the second one in three.
const TOPICS: [(&str, u32); 2] = [("crash-a", 3), ("crash-b", 1)];
/// Small segments, so that segment rolls happen (and are interrupted) during the test.
const SEGMENT_BYTES: u64 = 64 << 10;
/// Records between the sender and the acknowledgement collector: the most that can be in
/// flight when the broker dies.
const QUEUED_RECORDS: usize = 4096;
/// Upper bound on one cycle's wait for its kill point, and on the producer stopping after it.
const CYCLE_LIMIT: Duration = Duration::from_secs(60);
const READ_LIMIT: Duration = Duration::from_secs(60);

/// A durably acknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ack {
    index: u64,
    topic: usize,
    partition: u32,
    offset: u64,
}

/// Reports the seed when the test panics, wherever the panic came from (a broker that does not
/// come back up after a crash panics inside `BrokerProcess::start`).
struct SeedOnPanic(u64);

impl Drop for SeedOnPanic {
    #[allow(clippy::print_stderr, reason = "the seed must reach the test output on failure")]
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "broker_kill9 failed with seed {:#x} (replay: {SEED_ENV}={:#x})",
                self.0, self.0
            );
        }
    }
}

fn seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(text) => {
            let digits = text.trim_start_matches("0x");
            u64::from_str_radix(digits, 16).unwrap_or_else(|e| panic!("{SEED_ENV}={text:?}: {e}"))
        }
        Err(_) => SEED,
    }
}

/// The records of the test: index `i` goes to topic `topic_of(i)`, shaped by that topic's
/// workload. Values are tagged with the index, so every record names itself.
#[derive(Debug, Clone, Copy)]
struct Records {
    seed: u64,
}

impl Records {
    fn topic_of(&self, index: u64) -> usize {
        usize::from(mix64(self.seed ^ index.rotate_left(17)).is_multiple_of(3))
    }

    fn workload(&self, topic: usize) -> Workload {
        Workload::tagged(self.seed, TOPICS[topic].1)
    }
}

async fn connect(broker: &BrokerProcess) -> Arc<Connection> {
    let addr = broker.addr().to_string();
    let connection = Connection::connect(&addr, ConnectionOptions::default())
        .await
        .unwrap_or_else(|e| panic!("connecting to the broker at {addr}: {e}"));
    Arc::new(connection)
}

async fn create_topics(conn: &Arc<Connection>) {
    let admin = Admin::new(conn.clone());
    for (name, partitions) in TOPICS {
        let config = TopicConfig {
            partitions: Some(partitions),
            retention_ms: Some(-1),
            segment_bytes: Some(SEGMENT_BYTES),
            flush: Some(v1::FlushPolicy { policy: Some(v1::flush_policy::Policy::Os(true)) }),
            ..TopicConfig::default()
        };
        let created = admin.create_topic(name, config).await.expect("create a topic");
        let flush = created.flush.and_then(|f| f.policy);
        assert_eq!(flush, Some(v1::flush_policy::Policy::Os(true)), "{name}: {created:?}");
    }
}

/// What one cycle's producer did.
#[derive(Debug, Default)]
struct CycleOutcome {
    /// The first index not sent.
    next_index: u64,
    acks: Vec<Ack>,
    failed: u64,
    first_failure: Option<String>,
}

/// Sends records from `first_index` on until `stop` is set, and collects the acknowledgements
/// in send order (publishing their count on `acked`).
async fn produce_until_stopped(
    producer: Producer<Arc<Connection>>,
    records: Records,
    first_index: u64,
    stop: Arc<AtomicBool>,
    acked: watch::Sender<u64>,
) -> CycleOutcome {
    let (queue, mut queued) = mpsc::channel::<(u64, usize, Delivery)>(QUEUED_RECORDS);
    let send = async {
        let mut index = first_index;
        while !stop.load(Ordering::Acquire) {
            let topic = records.topic_of(index);
            let (partition, record) = records.workload(topic).record(index);
            let Ok(delivery) = producer.send(TOPICS[topic].0, partition, record).await else {
                break;
            };
            index += 1;
            if queue.send((index - 1, topic, delivery)).await.is_err() {
                break;
            }
        }
        drop(queue);
        index
    };
    let collect = async {
        let mut outcome = CycleOutcome::default();
        while let Some((index, topic, delivery)) = queued.recv().await {
            match delivery.await {
                Ok(meta) => {
                    let offset = meta.offset.expect("a durable acknowledgement has an offset");
                    outcome.acks.push(Ack { index, topic, partition: meta.partition, offset });
                    acked.send_replace(outcome.acks.len() as u64);
                }
                Err(e) => {
                    outcome.failed += 1;
                    outcome.first_failure.get_or_insert_with(|| format!("record {index}: {e}"));
                }
            }
        }
        outcome
    };
    let (next_index, mut outcome) = tokio::join!(send, collect);
    outcome.next_index = next_index;
    drop(producer);
    outcome
}

/// Per topic, per partition: an offset (the next one, or the end of the acknowledged ones).
type Ends = Vec<Vec<u64>>;

/// Every partition's next offset.
async fn log_ends(conn: &Arc<Connection>) -> Ends {
    let admin = Admin::new(conn.clone());
    let mut ends = Vec::new();
    for (name, partitions) in TOPICS {
        let queries: Vec<(u32, OffsetQuery)> =
            (0..partitions).map(|p| (p, OffsetQuery::Latest)).collect();
        let listed = admin.list_offsets(name, &queries).await.expect("list offsets");
        ends.push(listed.iter().map(|l| l.offset).collect());
    }
    ends
}

/// One cycle: start the broker, produce until `kill_after` records are acknowledged, SIGKILL
/// it, and let the producer fail what it still held. `acked_ends` (the end of the records
/// acknowledged so far) is checked against the restarted log and moved past this cycle's
/// acknowledgements, which must continue each partition at its next offset, without a gap.
async fn cycle(
    n: u64,
    dir: &Path,
    records: Records,
    first_index: u64,
    kill_after: u64,
    acked_ends: &mut Ends,
) -> CycleOutcome {
    let mut broker = block_in_place(|| BrokerProcess::start(dir, &[]));
    let conn = connect(&broker).await;
    if first_index == 0 {
        create_topics(&conn).await;
    }
    let restarted = log_ends(&conn).await;
    for (t, (name, _)) in TOPICS.iter().enumerate() {
        for (p, (next, acked)) in restarted[t].iter().zip(&acked_ends[t]).enumerate() {
            assert!(
                next >= acked,
                "cycle {n}: {name}/{p} restarted at offset {next}; {acked} were acknowledged"
            );
        }
    }
    let config = ProducerConfig {
        acks: Acks::Durable,
        idempotent: true,
        // The connection is gone after the kill: retry little and fast, then give up.
        retries: 2,
        retry_backoff: Duration::from_millis(1),
        // Small batches sent soon: acknowledgements come a few dozen records at a time, so
        // the kill lands at a fine-grained point with batches of every partition in flight.
        batch_bytes: 4 << 10,
        linger: Duration::from_millis(1),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(conn, config).expect("a producer");
    let stop = Arc::new(AtomicBool::new(false));
    let (acked_tx, mut acked) = watch::channel(0u64);
    let task = tokio::spawn(produce_until_stopped(
        producer,
        records,
        first_index,
        Arc::clone(&stop),
        acked_tx,
    ));

    let wait = acked.wait_for(|n| *n >= kill_after);
    let reached = tokio::time::timeout(CYCLE_LIMIT, wait).await.is_ok_and(|r| r.is_ok());
    let acked_then = *acked.borrow();
    let status = block_in_place(|| broker.kill9());
    stop.store(true, Ordering::Release);
    if !reached {
        let outcome = task.await.expect("the producer task");
        panic!(
            "cycle {n}: {acked_then} of {kill_after} records acknowledged after {CYCLE_LIMIT:?} \
             (first failure: {:?}); broker stderr:\n{}",
            outcome.first_failure,
            broker.stderr()
        );
    }
    assert_eq!(status.signal(), Some(libc::SIGKILL), "cycle {n}: broker exit: {status:?}");
    let outcome = tokio::time::timeout(CYCLE_LIMIT, task)
        .await
        .unwrap_or_else(|_| {
            panic!("cycle {n}: the producer did not stop within {CYCLE_LIMIT:?} of the kill")
        })
        .expect("the producer task");
    // The producer is the only writer: its acknowledgements continue each partition from where
    // the restarted log ended, in send order, at increasing offsets. Not always one after
    // another: with several batches of a partition in flight, one whose answer the kill lost
    // fails (its outcome unknown) while a later one already acknowledged is delivered, so the
    // gap holds records that failed — the read-back checks they were sent and are there once.
    let mut next = restarted;
    for ack in &outcome.acks {
        let expected = &mut next[ack.topic][ack.partition as usize];
        assert!(
            ack.offset >= *expected,
            "cycle {n}: {ack:?}: below the partition's next offset {expected}"
        );
        *expected = ack.offset + 1;
        acked_ends[ack.topic][ack.partition as usize] = *expected;
    }
    outcome
}

/// Where each stored record is: per topic, per partition, the index at each offset.
type Stored = Vec<Vec<Vec<u64>>>;

/// Reads both topics whole and checks every record on the way: it names an index that was
/// sent, it is byte-identical to that record, it is in the record's partition, and no index
/// occurs twice.
async fn read_everything(conn: Arc<Connection>, records: Records, sent: u64) -> Stored {
    let mut seen: BTreeMap<u64, (usize, u32, u64)> = BTreeMap::new();
    let mut stored: Stored = Vec::new();
    for (topic, (name, partitions)) in TOPICS.into_iter().enumerate() {
        let workload = records.workload(topic);
        let mut here: Vec<Vec<u64>> = vec![Vec::new(); partitions as usize];
        let deadline = Instant::now() + READ_LIMIT;
        read_topic(conn.clone(), name, deadline, |p, view| {
            let index =
                tag_of(view.value).ok_or_else(|| "a value without an index tag".to_string())?;
            if index >= sent || records.topic_of(index) != topic {
                return Err(format!("record {index} was never sent to this topic"));
            }
            let (explicit, expected) = workload.record(index);
            compare(&expected, view).map_err(|e| format!("record {index}: {e}"))?;
            let wanted = explicit
                .or_else(|| expected.key.as_deref().map(|key| partition_for_key(key, partitions)));
            if wanted.is_some_and(|w| w != p) {
                return Err(format!("record {index} belongs in partition {wanted:?}"));
            }
            if let Some(first) = seen.insert(index, (topic, p, view.offset)) {
                return Err(format!("record {index} is stored twice; also at {first:?}"));
            }
            here[p as usize].push(index);
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("seed {:#x}: reading back: {e}", records.seed));
        stored.push(here);
    }
    stored
}

async fn crash_cycles(dir: &Path, seed: u64) {
    let records = Records { seed };
    let mut rng = Rng::new(mix64(seed));
    let mut acks: Vec<Ack> = Vec::new();
    let (mut next_index, mut failed) = (0u64, 0u64);
    let mut acked_ends: Ends = TOPICS.iter().map(|(_, n)| vec![0; *n as usize]).collect();
    for n in 0..CYCLES {
        let kill_after = 1 + rng.below(KILL_AFTER_MAX);
        let outcome = cycle(n, dir, records, next_index, kill_after, &mut acked_ends).await;
        assert!(
            outcome.acks.len() as u64 >= kill_after,
            "cycle {n}: killed after {kill_after} acknowledgements, yet {} counted",
            outcome.acks.len()
        );
        next_index = outcome.next_index;
        failed += outcome.failed;
        acks.extend(outcome.acks);
    }

    let mut broker = block_in_place(|| BrokerProcess::start(dir, &[]));
    let conn = connect(&broker).await;
    let stored = read_everything(conn, records, next_index).await;
    for ack in &acks {
        let at = stored[ack.topic][ack.partition as usize].get(ack.offset as usize);
        assert_eq!(
            at,
            Some(&ack.index),
            "seed {seed:#x}: acknowledged {ack:?}, but that offset holds {at:?}"
        );
    }
    let held: usize = stored.iter().flatten().map(Vec::len).sum();
    assert!(
        held >= acks.len() && held as u64 <= next_index,
        "seed {seed:#x}: {held} records stored, {} acknowledged, {next_index} sent",
        acks.len()
    );
    // Every record either was acknowledged or failed: none is left unaccounted for.
    assert_eq!(acks.len() as u64 + failed, next_index, "seed {seed:#x}: records sent");
    let status = block_in_place(|| broker.terminate());
    assert_eq!(status.code(), Some(0), "final broker exit after SIGTERM: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_cycles_lose_no_durable_acknowledgement_and_duplicate_nothing() {
    let seed = seed();
    let _report = SeedOnPanic(seed);
    let dir = tempfile::tempdir().unwrap();
    crash_cycles(dir.path(), seed).await;
}
