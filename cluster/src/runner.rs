//! One task partition running in this instance: a thread that registers the partition's
//! transactional producer (fencing its previous owner), restores the partition's tasks from
//! their latest snapshots in the cluster, polls them until told to stop, snapshots them every
//! `snapshot_every_records` input records and when stopped, and publishes every snapshot to
//! the snapshot topic.
//!
//! Transactions (effectively-once on the cluster): everything the partition's tasks append —
//! outputs, changelogs, repartitioned records, journal steps — and the snapshots it publishes
//! go through the partition's transaction (`task_logs.rs`), committed after every snapshot's
//! publication, every `commit_every` while the tasks progress, whenever they are idle, and at
//! the stop. The input positions are in the snapshots, so they commit with the outputs they
//! account for; no consumer-group offsets are involved.
//!
//! Invariants:
//! - Tasks are opened only after their latest published snapshot was written to the local
//!   state directory (and an unpublished local one removed), so a task that moved here goes
//!   on from where its last owner committed.
//! - A snapshot is published after `Task::snapshot` returned, which flushed the task's outputs
//!   first, and in the same transaction: a visible snapshot only claims visible outputs.
//! - Outputs committed after the last published snapshot are found by the tasks' recovery by
//!   positions (docs/processors.md, "Effectively-once"), reading committed data only: a
//!   restarted task skips them rather than writing them again. Outputs of a transaction that
//!   never committed are invisible to that scan, so they are written again, once.
//! - The partition's tables leave the instance's registry when the thread ends, so a query
//!   never reads a table partition this instance no longer updates; and the partition is
//!   *ready* (queries may read it) only once its tasks have read their inputs as far as they
//!   reached when the tasks were opened — a partition restored from an older snapshot (its
//!   previous owner's last one fenced away) never answers older than its previous owner did.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_processor::{LogAccess, Processor, TableRegistry, Task, TaskConfig, TaskId, TaskMetrics};

use crate::group::transactional_id;
use crate::logs::KafkaLogs;
use crate::snapshots::{SnapshotError, SnapshotTopic, task_key};
use crate::task_logs::TaskLogs;

/// Why a partition's tasks stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error("task {task}: {source}")]
    Task {
        task: TaskId,
        #[source]
        source: eddy_processor::Error,
    },
    #[error("snapshots of partition {partition}: {source}")]
    Snapshot {
        partition: u32,
        #[source]
        source: SnapshotError,
    },
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: eddy_storage::Error,
    },
    #[error("partition {partition}: {source}")]
    Cluster {
        partition: u32,
        #[source]
        source: Box<crate::ClusterError>,
    },
    #[error("partition {partition}: fenced by another instance that took it")]
    Fenced { partition: u32 },
}

/// What a task last reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskReport {
    /// Next offset to read, per input partition.
    pub inputs: Vec<(String, u32, u64)>,
    /// Input records processed since offset zero.
    pub position: u64,
    pub metrics: TaskMetrics,
}

/// What every partition thread shares with the instance.
#[derive(Debug)]
pub(crate) struct Context {
    pub processor: Processor,
    pub logs: Arc<KafkaLogs>,
    pub registry: Arc<TableRegistry>,
    pub snapshots: SnapshotTopic,
    pub tasks: Vec<TaskId>,
    pub task_config: TaskConfig,
    pub snapshot_every_records: u64,
    /// A partition's transaction is committed at least this often while its tasks progress.
    pub commit_every: Duration,
    pub idle_wait: Duration,
    pub reports: Mutex<BTreeMap<TaskId, TaskReport>>,
    /// Partitions whose tasks, since they were opened here, have read their inputs up to
    /// where those ended at the opening: their tables are at least as new as the previous
    /// owner's were, so pull queries may read them.
    pub ready: Mutex<BTreeSet<u32>>,
    pub failure: Mutex<Option<String>>,
}

impl Context {
    fn report(&self, task: &Task) {
        let report = TaskReport {
            inputs: task.input_positions(),
            position: task.position(),
            metrics: task.metrics(),
        };
        self.reports.lock().unwrap_or_else(|p| p.into_inner()).insert(task.id(), report);
    }

    pub(crate) fn fail(&self, partition: u32, error: &RunError) {
        tracing::error!(partition, %error, "partition's tasks failed");
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.get_or_insert_with(|| format!("partition {partition}: {error}"));
    }
}

/// Runs partition `partition`'s tasks until `stop` is set; then snapshots and publishes them.
/// A partition whose producer was fenced (another instance took it while this one was cut
/// off) just ends here: it is not a failure of the instance.
pub(crate) fn run(cx: &Context, partition: u32, stop: &AtomicBool) {
    match drive(cx, partition, stop) {
        Ok(()) => {}
        Err(RunError::Fenced { partition }) => tracing::warn!(
            partition,
            "fenced: another instance runs this partition now; its tasks stopped here and \
             nothing they wrote since the last commit is visible"
        ),
        Err(error) => cx.fail(partition, &error),
    }
    cx.ready.lock().unwrap_or_else(|p| p.into_inner()).remove(&partition);
    cx.registry.remove_partition(partition);
    let mut reports = cx.reports.lock().unwrap_or_else(|p| p.into_inner());
    reports.retain(|id, _| id.partition != partition);
}

fn drive(cx: &Context, partition: u32, stop: &AtomicBool) -> Result<(), RunError> {
    let id = transactional_id(cx.processor.name(), cx.processor.version(), partition);
    let logs = TaskLogs::open(cx.logs.clone(), &id)
        .map_err(|e| RunError::Cluster { partition, source: Box::new(e) })?;
    let logs = Arc::new(logs);
    let result = drive_tasks(cx, partition, stop, &logs);
    if result.is_err() {
        logs.abort();
    }
    match result {
        Err(_) if logs.is_fenced() => Err(RunError::Fenced { partition }),
        other => other,
    }
}

/// Restores and opens the partition's tasks, then polls them, committing the partition's
/// transaction at every snapshot, every `commit_every` and whenever the tasks are idle.
fn drive_tasks(
    cx: &Context,
    partition: u32,
    stop: &AtomicBool,
    logs: &Arc<TaskLogs>,
) -> Result<(), RunError> {
    let ids: Vec<TaskId> = cx.tasks.iter().copied().filter(|t| t.partition == partition).collect();
    restore(cx, &**logs, partition, &ids)?;
    let mut tasks = Vec::new();
    for id in &ids {
        let task = cx
            .processor
            .open_task(logs.clone(), *id, cx.task_config.clone(), &cx.registry)
            .map_err(|source| RunError::Task { task: *id, source })?;
        cx.report(&task);
        tasks.push((task, 0u64));
    }
    logs.settled();
    tracing::info!(partition, tasks = tasks.len(), "partition's tasks opened");
    // Where the inputs end now: once the tasks read that far, the partition is ready.
    let mut catch_up: Option<Vec<(String, u32, u64)>> = Some(
        tasks
            .iter()
            .flat_map(|(t, _)| t.input_positions())
            .map(|(topic, p, _)| {
                let end = cx.logs.end_offset(&topic, p).unwrap_or(u64::MAX);
                (topic, p, end)
            })
            .collect(),
    );
    let mut committed_at = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let (mut progressed, mut snapshotted) = (false, false);
        for (task, since) in &mut tasks {
            let id = task.id();
            let n = task.poll().map_err(|source| RunError::Task { task: id, source })?;
            progressed |= n > 0;
            *since += n;
            if *since >= cx.snapshot_every_records {
                snapshot(cx, logs, task)?;
                (*since, snapshotted) = (0, true);
            }
            cx.report(task);
        }
        if let Some(targets) = &catch_up
            && caught_up(&tasks, targets)
        {
            cx.ready.lock().unwrap_or_else(|p| p.into_inner()).insert(partition);
            tracing::info!(partition, "partition's tables caught up: serving queries");
            catch_up = None;
        }
        if snapshotted || !progressed || committed_at.elapsed() >= cx.commit_every {
            commit(logs, partition)?;
            committed_at = Instant::now();
        }
        if !progressed {
            let interests: Vec<_> = tasks.iter().flat_map(|(t, _)| t.wait_interests()).collect();
            logs.wait_for_data(&interests, Instant::now() + cx.idle_wait);
        }
    }
    for (task, _) in &mut tasks {
        snapshot(cx, logs, task)?;
        cx.report(task);
    }
    commit(logs, partition)?;
    tracing::info!(partition, "partition's tasks stopped, snapshots published");
    Ok(())
}

/// Whether every input of `tasks` is read up to its offset in `targets`.
fn caught_up(tasks: &[(Task, u64)], targets: &[(String, u32, u64)]) -> bool {
    let positions: Vec<(String, u32, u64)> =
        tasks.iter().flat_map(|(t, _)| t.input_positions()).collect();
    targets.iter().all(|(topic, p, end)| {
        positions.iter().any(|(t, q, next)| t == topic && q == p && next >= end)
    })
}

fn commit(logs: &TaskLogs, partition: u32) -> Result<(), RunError> {
    logs.commit().map_err(|e| RunError::Cluster { partition, source: Box::new(e) })?;
    Ok(())
}

/// Writes the task's snapshot (its outputs flushed first) and publishes it in the partition's
/// open transaction, which the caller commits.
fn snapshot(cx: &Context, logs: &TaskLogs, task: &mut Task) -> Result<(), RunError> {
    let id = task.id();
    task.snapshot().map_err(|source| RunError::Task { task: id, source })?;
    let path = cx.processor.snapshot_path(&cx.task_config.state_dir, id);
    let bytes = std::fs::read(&path).map_err(|source| RunError::Io { op: "read", path, source })?;
    cx.snapshots
        .publish(logs, id, &bytes)
        .map_err(|source| RunError::Snapshot { partition: id.partition, source })?;
    Ok(())
}

/// Writes the latest published snapshot of each task in `ids` to the local state directory,
/// and removes the local snapshot of a task with none published: only a published snapshot
/// was committed with the outputs it claims (a local one may be from a transaction that never
/// committed), so without one the task starts from zero — which positions make exact.
fn restore(
    cx: &Context,
    logs: &dyn LogAccess,
    partition: u32,
    ids: &[TaskId],
) -> Result<(), RunError> {
    let latest = cx
        .snapshots
        .latest(logs, partition)
        .map_err(|source| RunError::Snapshot { partition, source })?;
    for id in ids {
        let path = cx.processor.snapshot_path(&cx.task_config.state_dir, *id);
        let Some(bytes) = latest.get(&task_key(*id)) else {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(task = %id, "no published snapshot: local one removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(RunError::Io { op: "remove", path, source }),
            }
            continue;
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
                op: "create",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        eddy_storage::write_atomic(&path, bytes)
            .map_err(|source| RunError::Write { path: path.clone(), source })?;
        tracing::info!(task = %id, bytes = bytes.len(), "restored the published snapshot");
    }
    Ok(())
}

/// The end offsets of `inputs`, for lag.
pub(crate) fn lag(logs: &KafkaLogs, inputs: &[(String, u32, u64)]) -> u64 {
    inputs
        .iter()
        .map(|(t, p, next)| logs.end_offset(t, *p).map_or(0, |end| end.saturating_sub(*next)))
        .sum()
}
