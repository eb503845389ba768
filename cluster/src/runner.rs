//! One task partition running in this instance: a thread that restores the partition's tasks
//! from their latest snapshots in the cluster, polls them until told to stop, snapshots them
//! every `snapshot_every_records` input records and when stopped, and publishes every snapshot
//! to the snapshot topic.
//!
//! Invariants:
//! - Tasks are opened only after their latest published snapshot was written to the local
//!   state directory, so a task that moved here goes on from where its last owner published.
//! - A snapshot is published after `Task::snapshot` returned, which flushed the task's outputs
//!   first: a published snapshot only claims outputs the cluster holds.
//! - The partition's tables leave the instance's registry when the thread ends, so a query
//!   never reads a table partition this instance no longer updates.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_processor::{LogAccess, Processor, TableRegistry, Task, TaskConfig, TaskId, TaskMetrics};

use crate::logs::KafkaLogs;
use crate::snapshots::{SnapshotError, SnapshotTopic, task_key};

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
    pub idle_wait: Duration,
    pub reports: Mutex<BTreeMap<TaskId, TaskReport>>,
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
pub(crate) fn run(cx: &Context, partition: u32, stop: &AtomicBool) {
    if let Err(error) = drive(cx, partition, stop) {
        cx.fail(partition, &error);
    }
    cx.registry.remove_partition(partition);
    let mut reports = cx.reports.lock().unwrap_or_else(|p| p.into_inner());
    reports.retain(|id, _| id.partition != partition);
}

fn drive(cx: &Context, partition: u32, stop: &AtomicBool) -> Result<(), RunError> {
    let ids: Vec<TaskId> = cx.tasks.iter().copied().filter(|t| t.partition == partition).collect();
    restore(cx, partition, &ids)?;
    let mut tasks = Vec::new();
    for id in &ids {
        let task = cx
            .processor
            .open_task(cx.logs.clone(), *id, cx.task_config.clone(), &cx.registry)
            .map_err(|source| RunError::Task { task: *id, source })?;
        cx.report(&task);
        tasks.push((task, 0u64));
    }
    tracing::info!(partition, tasks = tasks.len(), "partition's tasks opened");
    while !stop.load(Ordering::Acquire) {
        let mut progressed = false;
        for (task, since) in &mut tasks {
            let id = task.id();
            let n = task.poll().map_err(|source| RunError::Task { task: id, source })?;
            progressed |= n > 0;
            *since += n;
            if *since >= cx.snapshot_every_records {
                snapshot(cx, task)?;
                *since = 0;
            }
            cx.report(task);
        }
        if !progressed {
            let interests: Vec<_> = tasks.iter().flat_map(|(t, _)| t.wait_interests()).collect();
            cx.logs.wait_for_data(&interests, Instant::now() + cx.idle_wait);
        }
    }
    for (task, _) in &mut tasks {
        snapshot(cx, task)?;
        cx.report(task);
    }
    tracing::info!(partition, "partition's tasks stopped, snapshots published");
    Ok(())
}

/// Writes the task's snapshot (its outputs flushed first) and publishes it.
fn snapshot(cx: &Context, task: &mut Task) -> Result<(), RunError> {
    let id = task.id();
    task.snapshot().map_err(|source| RunError::Task { task: id, source })?;
    let path = cx.processor.snapshot_path(&cx.task_config.state_dir, id);
    let bytes = std::fs::read(&path).map_err(|source| RunError::Io { op: "read", path, source })?;
    cx.snapshots
        .publish(&*cx.logs, id, &bytes)
        .map_err(|source| RunError::Snapshot { partition: id.partition, source })?;
    Ok(())
}

/// Writes the latest published snapshot of each task in `ids` to the local state directory
/// (a task without one keeps whatever local snapshot it has: any snapshot it wrote is a valid
/// starting point).
fn restore(cx: &Context, partition: u32, ids: &[TaskId]) -> Result<(), RunError> {
    let latest = cx
        .snapshots
        .latest(&*cx.logs, partition)
        .map_err(|source| RunError::Snapshot { partition, source })?;
    for id in ids {
        let Some(bytes) = latest.get(&task_key(*id)) else { continue };
        let path = cx.processor.snapshot_path(&cx.task_config.state_dir, *id);
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
