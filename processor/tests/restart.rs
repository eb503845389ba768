//! Effectively-once at the library level: tasks dropped at arbitrary points (no clean
//! shutdown: after some polls, between writing outputs and snapshotting, or in the middle of
//! writing outputs) and reopened, over and over; afterwards every output partition holds exactly
//! the records of a run without crashes, in the same order, and every table and changelog equals
//! a replay from zero (record by record, or, for aggregates that cache changes between flushes,
//! by content, with no change written twice).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use common::Rng;
use eddy_processor::{
    Appended, Count, Emit, JoinWindow, Json, LocalLogs, LogAccess, LogError, Processor,
    ProcessorBuilder, Sum, TableRegistry, Task, TaskConfig, Utf8, WaitFor, Windowed, Windows,
    partition_for_key,
};
use eddy_storage::ValidBatch;

const PARTITIONS: u32 = 2;

pub fn processor() -> Processor {
    let b = ProcessorBuilder::new("restart", 1);
    b.dead_letter("restart-dlq");
    let customers = b.table::<String, String>("customers", "customers", Utf8, Utf8).unwrap();
    let orders = b.stream::<String, i64>("orders", Utf8, Json);
    orders.left_join_table(&customers, |_, amount, tier| (*amount, tier.cloned())).to(
        "restart-enriched",
        Utf8,
        Json,
    );
    orders.aggregate("spend", Sum::new(|v: &i64| *v)).unwrap();
    orders
        .window(Windows::tumbling(100).grace(30))
        .aggregate("orders-per-100", Count, Emit::Final)
        .unwrap()
        .changes()
        .to("restart-final", Json, Json);
    orders.dedupe(50, 30).to("restart-deduped", Utf8, Json);
    // A second sub-topology behind a repartition topic (written by both tasks above).
    orders
        .select_key(|_, amount| amount.rem_euclid(7))
        .repartition("by-amount", 3)
        .aggregate("per-amount", Count)
        .unwrap();
    // An outer stream–stream join of the orders with the cheap ones moved 40 later: both
    // buffers and the set of matched records live in snapshots.
    let cheap = orders.filter(|_, amount| *amount < 30).event_time(|_, _, ts| ts + 40);
    orders
        .outer_join(&cheap, JoinWindow::within(60).grace(20), |_, a, c| (a.copied(), c.copied()))
        .to("restart-outer", Utf8, Json);
    b.build().unwrap()
}

fn produce_input(logs: &dyn LogAccess, seed: u64) {
    logs.create_topic("customers", PARTITIONS, false).unwrap();
    logs.create_topic("orders", PARTITIONS, false).unwrap();
    let mut rng = Rng(seed);
    let mut parts: [Vec<Vec<common::In>>; 2] = Default::default();
    for p in &mut parts {
        p.resize(PARTITIONS as usize, Vec::new());
    }
    for i in 0..2_500i64 {
        let key = format!("c{}", rng.below(30));
        let p = partition_for_key(key.as_bytes(), PARTITIONS) as usize;
        if rng.below(8) == 0 {
            let tier = format!("tier-{}", rng.below(4));
            parts[0][p].push((Some(key.into_bytes()), Some(tier.into_bytes()), i * 3));
        } else {
            // Out of order by up to 60 (some later than the grace), one in 40 not JSON.
            let value = if rng.below(40) == 0 {
                b"not json".to_vec()
            } else {
                rng.below(100).to_string().into_bytes()
            };
            let ts = i * 3 - rng.below(60) as i64;
            parts[1][p].push((Some(key.into_bytes()), Some(value), ts));
        }
    }
    for (topic, by_partition) in ["customers", "orders"].iter().zip(&parts) {
        for (p, records) in by_partition.iter().enumerate() {
            common::produce(logs, topic, p as u32, records, 9);
        }
    }
}

/// Every output partition's records (key, value, timestamp, position), by topic, partition and
/// writing task. (Tasks append to a shared output partition in whatever order they are polled;
/// each task's own sequence is what must be exact.)
type Outputs = BTreeMap<(String, u32, u64), Vec<OutRecord>>;
/// key, value, timestamp, position (as text).
type OutRecord = (Option<Vec<u8>>, Option<Vec<u8>>, i64, String);

fn outputs(logs: &dyn LogAccess, processor: &Processor) -> Outputs {
    let mut topics: Vec<String> = [
        "restart-enriched",
        "restart-final",
        "restart-deduped",
        "restart-outer",
        "restart-dlq",
        "restart-1-by-amount-repartition",
    ]
    .map(String::from)
    .to_vec();
    // Aggregates cache their changes until the task flushes, and where a task flushes depends
    // on how much it read per poll, so their changelogs are compared by content (below).
    topics.extend(
        processor
            .tables()
            .iter()
            .filter(|t| !CACHED.contains(&t.as_str()))
            .map(|t| processor.changelog_topic(t).unwrap()),
    );
    let mut out = BTreeMap::new();
    for topic in topics {
        for p in 0..logs.partition_count(&topic).unwrap() {
            for r in common::read_all(logs, &topic, p) {
                let writer = r.pos.unwrap().writer;
                let rec = (r.key, r.value, r.ts, format!("{:?}", r.pos));
                out.entry((topic.clone(), p, writer)).or_insert_with(Vec::new).push(rec);
            }
        }
    }
    out
}

/// Tables written by aggregates, whose changelogs hold one record per key per task flush.
const CACHED: [&str; 2] = ["spend", "per-amount"];

struct Tables {
    customers: Vec<(String, String)>,
    spend: Vec<(String, i64)>,
    windows: Vec<(Windowed<String>, u64)>,
    per_amount: Vec<(i64, u64)>,
    /// The latest value per key of each cached table's changelog.
    cached_changelogs: Vec<BTreeMap<Vec<u8>, Vec<u8>>>,
}

fn tables(registry: &Arc<TableRegistry>, logs: &dyn LogAccess) -> Tables {
    let mut cached_changelogs = Vec::new();
    for table in CACHED {
        let topic = format!("restart-1-{table}-changelog");
        // Each flushed change once: a writer's positions only grow within a partition.
        for p in 0..logs.partition_count(&topic).unwrap() {
            let records = common::read_all(logs, &topic, p);
            for pair in records.windows(2) {
                let (a, b) = (pair[0].pos.unwrap(), pair[1].pos.unwrap());
                if a.writer == b.writer {
                    assert!(a.order() < b.order(), "{topic}/{p}: {a:?} then {b:?}");
                }
            }
        }
        cached_changelogs.push(common::latest_by_key(&common::read_topic(logs, &topic)));
    }
    Tables {
        customers: registry.reader("customers").unwrap().scan(),
        spend: registry.reader("spend").unwrap().scan(),
        windows: registry.reader("orders-per-100").unwrap().scan(),
        per_amount: registry.reader("per-amount").unwrap().scan(),
        cached_changelogs,
    }
}

/// The run without crashes.
fn replay_from_zero(seed: u64) -> (Outputs, Tables) {
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    produce_input(&*logs, seed);
    let processor = processor();
    let (registry, _) =
        common::run_to_end(&processor, logs.clone(), &TaskConfig::new(dir.path().join("state")));
    (outputs(&*logs, &processor), tables(&registry, &*logs))
}

/// `LocalLogs` whose appends start failing after a countdown: a crash in the middle of a
/// task's writes (some partitions written, others not).
struct Faulty {
    inner: Arc<LocalLogs>,
    appends_left: AtomicI64,
}

impl LogAccess for Faulty {
    fn partition_count(&self, topic: &str) -> Result<u32, LogError> {
        self.inner.partition_count(topic)
    }
    fn create_topic(&self, topic: &str, partitions: u32, compacted: bool) -> Result<(), LogError> {
        self.inner.create_topic(topic, partitions, compacted)
    }
    fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Bytes, LogError> {
        self.inner.read(topic, partition, from, max)
    }
    fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.inner.start_offset(topic, partition)
    }
    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.inner.end_offset(topic, partition)
    }
    fn append(
        &self,
        topic: &str,
        partition: u32,
        batch: &ValidBatch,
    ) -> Result<Appended, LogError> {
        if self.appends_left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(LogError::Backend {
                topic: topic.to_owned(),
                partition,
                source: "injected crash".into(),
            });
        }
        self.inner.append(topic, partition, batch)
    }
    fn flush(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        self.inner.flush(topic, partition)
    }
    fn wait_for_data(&self, interests: &[WaitFor<'_>], deadline: Instant) -> bool {
        self.inner.wait_for_data(interests, deadline)
    }
}

fn open_all(processor: &Processor, logs: Arc<dyn LogAccess>, config: &TaskConfig) -> Vec<Task> {
    let ids = processor.prepare(&*logs).unwrap();
    let registry = TableRegistry::new();
    ids.iter()
        .map(|id| processor.open_task(logs.clone(), *id, config.clone(), &registry).unwrap())
        .collect()
}

fn crash_cycles(seed: u64, cycles: usize, faulty_appends: bool) {
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    produce_input(&*logs, seed);
    let processor = processor();
    let mut rng = Rng(seed ^ 0x5eed);
    let mut suppressed = 0;
    for _ in 0..cycles {
        let mut config = TaskConfig::new(dir.path().join("state"));
        config.read_max_bytes = 200 + rng.below(2_000) as usize;
        config.poll_max_records = 1 + rng.below(100);
        config.snapshot_every_records = 50 + rng.below(500);
        let access: Arc<dyn LogAccess> = if faulty_appends {
            let left = rng.below(12) as i64;
            Arc::new(Faulty { inner: logs.clone(), appends_left: AtomicI64::new(left) })
        } else {
            logs.clone()
        };
        let mut tasks = open_all(&processor, access, &config);
        suppressed += tasks.iter().map(|t| t.metrics().suppressed).sum::<u64>();
        let polls = rng.below(8);
        'run: for _ in 0..polls {
            for t in &mut tasks {
                if t.poll().is_err() {
                    break 'run;
                }
            }
        }
        suppressed += tasks.iter().map(|t| t.metrics().suppressed).sum::<u64>();
        // The crash: tasks dropped with whatever they had not yet written or snapshotted.
        drop(tasks);
    }
    let config = TaskConfig::new(dir.path().join("state"));
    let ids = processor.prepare(&*logs).unwrap();
    let registry = TableRegistry::new();
    let mut tasks: Vec<Task> = ids
        .iter()
        .map(|id| processor.open_task(logs.clone(), *id, config.clone(), &registry).unwrap())
        .collect();
    common::poll_to_end(&mut tasks);
    suppressed += tasks.iter().map(|t| t.metrics().suppressed).sum::<u64>();

    let (expected_outputs, expected_tables) = replay_from_zero(seed);
    let got = outputs(&*logs, &processor);
    for (tp, records) in &expected_outputs {
        let mine = &got[tp];
        if mine != records {
            let i = mine
                .iter()
                .zip(records)
                .position(|(a, b)| a != b)
                .unwrap_or(mine.len().min(records.len()));
            let show = |v: &[OutRecord]| {
                v.iter()
                    .map(|r| {
                        format!(
                            "{} {} {} {}",
                            String::from_utf8_lossy(r.0.as_deref().unwrap_or_default()),
                            String::from_utf8_lossy(r.1.as_deref().unwrap_or_default()),
                            r.2,
                            r.3
                        )
                    })
                    .collect::<Vec<_>>()
            };
            let lo = i.saturating_sub(2);
            panic!(
                "{tp:?}: records differ at {i} (seed {seed})\n got {:#?}\n want {:#?}",
                show(&mine[lo..(i + 3).min(mine.len())]),
                show(&records[lo..(i + 3).min(records.len())])
            );
        }
    }
    assert_eq!(got.len(), expected_outputs.len());
    let t = tables(&registry, &*logs);
    assert_eq!(t.customers, expected_tables.customers);
    assert_eq!(t.spend, expected_tables.spend);
    assert_eq!(t.windows, expected_tables.windows);
    assert_eq!(t.per_amount, expected_tables.per_amount);
    let valid_orders = common::read_topic(&*logs, "orders")
        .iter()
        .filter(|r| serde_json::from_slice::<i64>(r.value.as_ref().unwrap()).is_ok())
        .count();
    assert_eq!(t.per_amount.iter().map(|(_, c)| c).sum::<u64>(), valid_orders as u64);
    assert_eq!(t.cached_changelogs, expected_tables.cached_changelogs);
    // ... and they are the tables.
    let spend: BTreeMap<Vec<u8>, Vec<u8>> = t
        .spend
        .iter()
        .map(|(k, v)| (serde_json::to_vec(k).unwrap(), serde_json::to_vec(v).unwrap()))
        .collect();
    assert_eq!(t.cached_changelogs[0], spend);
    let dead_letters: usize =
        expected_outputs.iter().filter(|(k, _)| k.0 == "restart-dlq").map(|(_, v)| v.len()).sum();
    assert!(dead_letters > 10);
    assert!(suppressed > 0, "no crash landed between writing outputs and a snapshot");
}

#[test]
fn tasks_dropped_after_random_polls_resume_exactly() {
    let seed = common::seed(21);
    for i in 0..2 {
        crash_cycles(seed + i, 20, false);
    }
}

#[test]
fn a_crash_in_the_middle_of_writing_outputs_is_repaired_on_restart() {
    let seed = common::seed(31);
    for i in 0..2 {
        crash_cycles(seed + i, 20, true);
    }
}
