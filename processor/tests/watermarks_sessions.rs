//! Sessions and per-partition lateness: a record far behind its own partition's frontier is
//! late whether or not another, slower partition still holds a session of its time open — the
//! same table and the same late count whatever order the partitions' records interleave in.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_processor::{
    Count, Emit, Json, LogAccess, ProcessorBuilder, TableRegistry, Task, TaskConfig, Windowed,
    Windows,
};

type Table = BTreeMap<(i64, i64), u64>;

/// Upstream tasks 0 and 1 (partitions 0 and 1) and the one downstream task.
fn open(dir: &std::path::Path) -> (Arc<dyn LogAccess>, Vec<Task>, Arc<TableRegistry>) {
    let logs = common::open_logs(&dir.join("logs"));
    logs.create_topic("in", 2, false).unwrap();
    let b = ProcessorBuilder::new("sessions", 1);
    let s: eddy_processor::Stream<u32, u32> = b.stream("in", Json, Json);
    s.select_key(|_, _| 0u32)
        .repartition("r", 1)
        .window(Windows::session(30).grace(20))
        .aggregate("t", Count, Emit::Changes)
        .unwrap();
    let processor = b.build().unwrap();
    let logs: Arc<dyn LogAccess> = logs;
    let ids = processor.prepare(&*logs).unwrap();
    let registry = TableRegistry::new();
    let config = TaskConfig::new(dir.join("state"));
    let tasks = ids
        .iter()
        .map(|id| processor.open_task(logs.clone(), *id, config.clone(), &registry).unwrap())
        .collect();
    (logs, tasks, registry)
}

fn produce(logs: &dyn LogAccess, partition: u32, times: &[i64]) {
    let records: Vec<common::In> =
        times.iter().map(|t| (Some(b"0".to_vec()), Some(b"1".to_vec()), *t)).collect();
    common::produce(logs, "in", partition, &records, 8);
}

/// Runs `steps` (partition, times, the upstream task to poll), then everything to the end.
fn run(steps: &[(u32, &[i64])]) -> (Table, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (logs, mut tasks, registry) = open(dir.path());
    for (partition, times) in steps {
        produce(&*logs, *partition, times);
        let upstream = tasks
            .iter_mut()
            .find(|t| t.id().subtopology == 0 && t.id().partition == *partition)
            .unwrap();
        while upstream.poll().unwrap() > 0 {}
    }
    common::poll_to_end(&mut tasks);
    let table = registry.reader::<Windowed<u32>, u64>("t").unwrap();
    let rows = table.scan().into_iter().map(|(w, n)| ((w.start, w.end), n)).collect();
    (rows, tasks.iter().map(|t| t.metrics().late).sum())
}

#[test]
fn a_session_held_open_by_a_slower_partition_does_not_take_a_late_record() {
    // Partition 0: 2000, then 1010 — 990 ms behind its own frontier, grace 20: late.
    // Partition 1: 1000 and 2000, in two orders relative to partition 0.
    let x = run(&[(1, &[1000]), (0, &[2000, 1010]), (1, &[2000])]);
    let y = run(&[(1, &[1000, 2000]), (0, &[2000, 1010])]);
    let want: Table = [((1000, 1001), 1), ((2000, 2001), 2)].into_iter().collect();
    assert_eq!(x, (want.clone(), 1));
    assert_eq!(y, (want, 1));
}
