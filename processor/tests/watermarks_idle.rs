//! Idle partitions (docs/processors.md, "Idle partitions"): a source partition that stops
//! receiving records holds the watermark of everything downstream of it — no `Emit::Final`
//! window after its last record closes — unless the processor has an idle timeout; then,
//! once it has been silent that long, windows close as the other partitions move on, and a
//! record it sends afterwards for a window that closed meanwhile is counted late.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_processor::{
    Count, Emit, Json, LocalLogs, LogAccess, Processor, ProcessorBuilder, TableRegistry, Task,
    TaskConfig, Windowed, Windows,
};

const HOUR: i64 = 3_600_000;
const GRACE: i64 = 600_000;
/// Long enough that a loaded machine runs the first polls well within it.
const IDLE: Duration = Duration::from_secs(1);

/// Two partitions, re-keyed to one key and repartitioned, so the one downstream task hears
/// from both; hourly counts, final results to `finals`.
fn processor() -> Processor {
    let b = ProcessorBuilder::new("idle", 1);
    let s: eddy_processor::Stream<String, i64> = b.stream("in", Json, Json);
    s.select_key(|_, _| "all".to_string())
        .repartition("one", 1)
        .window(Windows::tumbling(HOUR).grace(GRACE))
        .aggregate("hourly", Count, Emit::Final)
        .unwrap()
        .changes()
        .to("finals", Json, Json);
    b.build().unwrap()
}

fn record(ts: i64) -> common::In {
    (Some(b"\"k\"".to_vec()), Some(b"1".to_vec()), ts)
}

struct Run {
    logs: Arc<LocalLogs>,
    tasks: Vec<Task>,
}

impl Run {
    fn open(dir: &std::path::Path, idle: Option<Duration>) -> Run {
        let logs = common::open_logs(&dir.join("logs"));
        logs.create_topic("in", 2, false).unwrap();
        let processor = processor();
        let mut config = TaskConfig::new(dir.join("state"));
        config.idle_timeout = idle;
        let ids = processor.prepare(&*logs).unwrap();
        let registry = TableRegistry::new();
        let dyn_logs: Arc<dyn LogAccess> = logs.clone();
        let tasks = ids
            .iter()
            .map(|id| {
                processor.open_task(dyn_logs.clone(), *id, config.clone(), &registry).unwrap()
            })
            .collect();
        Run { logs, tasks }
    }

    fn produce(&self, partition: u32, times: &[i64]) {
        let records: Vec<common::In> = times.iter().map(|t| record(*t)).collect();
        common::produce(&*self.logs, "in", partition, &records, 16);
    }

    fn poll(&mut self) {
        common::poll_to_end(&mut self.tasks);
    }

    /// The hours (window starts) with a final result so far.
    fn finals(&self) -> Vec<i64> {
        common::read_topic(&*self.logs, "finals")
            .iter()
            .map(|r| serde_json::from_slice::<Windowed<String>>(r.key.as_deref().unwrap()).unwrap())
            .map(|w| w.start / HOUR)
            .collect()
    }

    fn late(&self) -> u64 {
        self.tasks.iter().map(|t| t.metrics().late).sum()
    }
}

/// Partition 1 sends one record in hour 0 and falls silent; partition 0 goes on to hour 5.
fn silent_partition(run: &mut Run) {
    run.produce(1, &[10 * 60_000]);
    run.produce(0, &(0..5 * 60).map(|m| m * 60_000).collect::<Vec<_>>());
    run.poll();
}

#[test]
fn without_an_idle_timeout_a_silent_partition_holds_windows_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::open(dir.path(), None);
    silent_partition(&mut run);
    // Partition 1's frontier (00:10) less grace is the watermark: no hour has closed.
    assert_eq!(run.finals(), Vec::<i64>::new());
    run.produce(0, &(5 * 60..6 * 60).map(|m| m * 60_000).collect::<Vec<_>>());
    run.poll();
    assert_eq!(run.finals(), Vec::<i64>::new());
    // Partition 1 speaks again, at 03:00: the watermark is 02:50, so hours 0 and 1 close, in
    // order; nothing was late.
    run.produce(1, &[3 * HOUR]);
    run.poll();
    assert_eq!(run.finals(), vec![0, 1]);
    assert_eq!(run.late(), 0);
}

#[test]
fn with_an_idle_timeout_windows_close_once_the_silent_partition_is_idle() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::open(dir.path(), Some(IDLE));
    silent_partition(&mut run);
    assert_eq!(run.finals(), Vec::<i64>::new(), "closed before the partition was idle");
    // The timeout is wall time: let it pass (the thing under test), then partition 0 moves on.
    let silent_since = Instant::now();
    std::thread::sleep(IDLE + Duration::from_millis(50));
    assert!(silent_since.elapsed() > IDLE);
    run.produce(0, &(5 * 60..6 * 60).map(|m| m * 60_000).collect::<Vec<_>>());
    run.poll();
    // Partition 0's frontier is 05:59: hours 0..4 are final.
    assert_eq!(run.finals(), vec![0, 1, 2, 3, 4]);
    // Partition 1 comes back with a record of hour 1 (closed meanwhile: late) and one of
    // hour 5 (still open: counted).
    run.produce(1, &[HOUR + 60_000, 5 * HOUR + 30 * 60_000]);
    run.poll();
    assert_eq!(run.late(), 1);
    run.produce(0, &[7 * HOUR]);
    run.produce(1, &[7 * HOUR]);
    run.poll();
    let finals = common::read_topic(&*run.logs, "finals");
    let hour5 = finals
        .iter()
        .find(|r| {
            serde_json::from_slice::<Windowed<String>>(r.key.as_deref().unwrap()).unwrap().start
                == 5 * HOUR
        })
        .unwrap();
    // 60 records of partition 0 in hour 5, and partition 1's one.
    assert_eq!(serde_json::from_slice::<u64>(hour5.value.as_deref().unwrap()).unwrap(), 61);
}
