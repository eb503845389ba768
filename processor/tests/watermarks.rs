//! Watermarks after a repartition (the scenario, through the Rust API over `LocalLogs`):
//! an nginx access log produced keyless over 2 or 4 partitions, each partition in event-time
//! order within ±3 minutes, is keyed by status, repartitioned, and counted per status in
//! tumbling 1-hour windows with 10 minutes of grace. Every record is on time in its own
//! partition, so however far one upstream task runs ahead of the others — the first task polled
//! to its end before the next starts, or one partition replayed from zero while the other is
//! still being produced — no record may be counted late, and every (status, hour) count must
//! equal a count of the input.
//!
//! A watermark that is "the largest event time this operator has seen, minus grace" fails this:
//! the downstream task reads one upstream task's whole output before the others', and drops
//! theirs as late.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/skewed_log.rs"]
mod skewed_log;

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_processor::sample::access_log::{START_MS, time_of};
use eddy_processor::{
    Count, Emit, Ignore, LocalLogs, LogAccess, Processor, ProcessorBuilder, TableRegistry,
    TaskConfig, TaskMetrics, Utf8, Windowed, Windows,
};
use skewed_log::{Batch, GRACE_MS, HOUR_MS};

const TOPIC: &str = "access-log";
const TABLE: &str = "requests-per-status-hour";

/// fields → event time from the CLF time → key by status → repartition → tumbling 1 h, grace
/// 10 min → count; records set aside go to topic `late`.
fn processor(partitions: u32) -> Processor {
    let b = ProcessorBuilder::new("status-hourly", 1);
    b.dead_letter("late");
    b.stream::<(), String>(TOPIC, Ignore, Utf8)
        .event_time(|_, line, ts| time_of(line).unwrap_or(ts))
        .select_key(|_, line| line.split_whitespace().nth(8).unwrap_or("").to_owned())
        .map_values(|_, _| ())
        .repartition("by-status", partitions)
        .window(Windows::tumbling(HOUR_MS).grace(GRACE_MS))
        .aggregate(TABLE, Count, Emit::Changes)
        .unwrap();
    b.build().unwrap()
}

/// Appends one batch: no key, the CLF line as value, the record timestamp a later "now" (the
/// event time is the one in the line).
fn produce(logs: &dyn LogAccess, batch: &Batch) {
    let now_ms = START_MS + 30 * 24 * HOUR_MS;
    let records: Vec<common::In> =
        batch.requests.iter().map(|r| (None, Some(r.clf().into_bytes()), now_ms)).collect();
    common::produce(logs, TOPIC, batch.partition, &records, 50);
}

/// The table as (status, window start) → count; every window is one whole hour.
fn counts(tables: &Arc<TableRegistry>) -> BTreeMap<(String, i64), u64> {
    tables
        .reader::<Windowed<String>, u64>(TABLE)
        .unwrap()
        .scan()
        .into_iter()
        .map(|(w, count)| {
            assert_eq!(w.end - w.start, HOUR_MS, "{w:?}");
            assert_eq!(w.start.rem_euclid(HOUR_MS), 0, "{w:?}");
            ((w.key, w.start), count)
        })
        .collect()
}

/// Sums `late` over every task, and checks it against the dead-letter topic.
fn late(logs: &dyn LogAccess, metrics: &[TaskMetrics]) -> u64 {
    let late: u64 = metrics.iter().map(|m| m.late).sum();
    let dead_letters = if logs.partition_count("late").is_ok() {
        common::read_topic(logs, "late").len() as u64
    } else {
        0
    };
    assert_eq!(dead_letters, late, "every late record is dead-lettered");
    late
}

fn setup(partitions: u32, seed: u64) -> (tempfile::TempDir, Arc<LocalLogs>, Vec<Batch>) {
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    logs.create_topic(TOPIC, partitions, false).unwrap();
    let batches = skewed_log::generate(seed, partitions);
    let worst = skewed_log::max_lateness_within_partitions(&batches, partitions);
    assert!(worst < GRACE_MS, "a partition has a record {worst} ms late: more than the grace");
    (dir, logs, batches)
}

/// All batches appended (round-robin), then the tasks polled as `run_to_end` does: each
/// upstream task reads its whole partition in one poll before the next upstream task starts,
/// so the repartition topic holds upstream task 0's 6 hours before anything of task 1's.
fn first_task_runs_ahead(partitions: u32, seed: u64) {
    let (dir, logs, batches) = setup(partitions, seed);
    for batch in &batches {
        produce(&*logs, batch);
    }
    let processor = processor(partitions);
    let config = TaskConfig::new(dir.path().join("state"));
    let (tables, metrics) = common::run_to_end(&processor, logs.clone(), &config);
    skewed_log::check(
        &format!("{partitions} partitions, first task ahead"),
        late(&*logs, &metrics),
        &counts(&tables),
        &skewed_log::expected(&batches),
    );
}

#[test]
fn two_partitions_one_task_far_ahead_nothing_is_late() {
    first_task_runs_ahead(2, common::seed(0x5eed_0002));
}

#[test]
fn four_partitions_one_task_far_ahead_nothing_is_late() {
    first_task_runs_ahead(4, common::seed(0x5eed_0004));
}

/// Partition 0 is produced whole and processed to the end (a replay from offset zero of a
/// partition that already holds 6 hours) before partition 1 has a single record; then
/// partition 1 arrives batch by batch, "live", and every task is polled to its end after each.
#[test]
fn one_partition_replayed_from_zero_while_the_other_is_live_nothing_is_late() {
    let seed = common::seed(0x5eed_0102);
    let (dir, logs, batches) = setup(2, seed);
    let processor = processor(2);
    let config = TaskConfig::new(dir.path().join("state"));
    let ids = processor.prepare(&*logs).unwrap();
    let tables = TableRegistry::new();
    let dyn_logs: Arc<dyn LogAccess> = logs.clone();
    let mut tasks: Vec<_> = ids
        .iter()
        .map(|id| processor.open_task(dyn_logs.clone(), *id, config.clone(), &tables).unwrap())
        .collect();

    for batch in batches.iter().filter(|b| b.partition == 0) {
        produce(&*logs, batch);
    }
    common::poll_to_end(&mut tasks);
    for batch in batches.iter().filter(|b| b.partition == 1) {
        produce(&*logs, batch);
        common::poll_to_end(&mut tasks);
    }

    let metrics: Vec<TaskMetrics> = tasks.iter().map(|t| t.metrics()).collect();
    let records_in: u64 = metrics.iter().map(|m| m.records_in).sum();
    assert_eq!(records_in, 2 * skewed_log::RECORDS as u64, "each record read once per stage");
    skewed_log::check(
        "partition 0 replayed, partition 1 live",
        late(&*logs, &metrics),
        &counts(&tables),
        &skewed_log::expected(&batches),
    );
}
