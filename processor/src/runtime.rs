//! Running a processor: its tasks spread over a bounded pool of threads.
//!
//! Task `i` (in `prepare` order) runs on worker `i % threads` for the processor's whole life;
//! a worker polls its tasks in turn and, when none had input, waits on the log
//! ([`LogAccess::wait_for_data`]) with a short deadline so that `stop` is noticed. Tasks are
//! created on their worker (they are not `Send`). Each poll publishes the task's input positions,
//! counters and state size, which is what [`RunningProcessor::wait_caught_up`] and
//! [`RunningProcessor::status`] read.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::context::TaskMetrics;
use crate::definition::TaskId;
use crate::error::{Error, Result};
use crate::log_access::LogAccess;
use crate::processor::Processor;
use crate::table::{TableReader, TableRegistry};
use crate::task::{StateSize, Task, TaskConfig};

/// How a processor runs.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Worker threads (at most one per task is used).
    pub threads: usize,
    pub task: TaskConfig,
    /// How long an idle worker waits for input before checking for `stop`.
    pub idle_wait: Duration,
}

impl RuntimeConfig {
    pub fn new(state_dir: impl Into<std::path::PathBuf>) -> Self {
        Self { threads: 2, task: TaskConfig::new(state_dir), idle_wait: Duration::from_millis(50) }
    }
}

/// What one task last reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskStatus {
    /// Next offset to read, per input partition.
    pub inputs: Vec<(String, u32, u64)>,
    /// Input records processed since offset zero.
    pub position: u64,
    pub metrics: TaskMetrics,
    pub state: StateSize,
}

#[derive(Debug, Default)]
struct Status {
    tasks: BTreeMap<TaskId, TaskStatus>,
    opened: usize,
    error: Option<(TaskId, Arc<Error>)>,
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    /// Stop without the final snapshot (a simulated crash).
    abort: AtomicBool,
    status: Mutex<Status>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, task: &Task) {
        let status = TaskStatus {
            inputs: task.input_positions(),
            position: task.position(),
            metrics: task.metrics(),
            state: task.state_size(),
        };
        self.lock().tasks.insert(task.id(), status);
        self.changed.notify_all();
    }

    fn fail(&self, task: TaskId, error: Error) {
        tracing::error!(%task, %error, "task failed");
        let mut s = self.lock();
        s.error.get_or_insert((task, Arc::new(error)));
        self.changed.notify_all();
    }
}

/// A started processor.
#[derive(Debug)]
pub struct RunningProcessor {
    processor: Processor,
    logs: Arc<dyn LogAccess>,
    tasks: Vec<TaskId>,
    registry: Arc<TableRegistry>,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Processor {
    /// Creates the processor's topics, opens its tasks on `config.threads` workers and starts
    /// processing. Returns once every task is open (restored from its snapshot).
    pub fn start(
        &self,
        logs: Arc<dyn LogAccess>,
        config: RuntimeConfig,
    ) -> Result<RunningProcessor> {
        let tasks = self.prepare(&*logs)?;
        let registry = TableRegistry::new();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            status: Mutex::new(Status::default()),
            changed: Condvar::new(),
        });
        let threads = config.threads.clamp(1, tasks.len().max(1));
        let mut workers = Vec::new();
        for worker in 0..threads {
            let mine: Vec<TaskId> = tasks.iter().skip(worker).step_by(threads).copied().collect();
            let ctx = Worker {
                processor: self.clone(),
                logs: logs.clone(),
                registry: registry.clone(),
                shared: shared.clone(),
                config: config.clone(),
            };
            let name = format!("{}-{}-w{worker}", self.name(), self.version());
            let worker_name = name.clone();
            let handle = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    // A panic in user code (a map closure, say) leaves the worker's tasks in an
                    // unknown state: they stop, and the panic is reported as the task's error
                    // instead of silently stalling `wait_caught_up`.
                    let shared = ctx.shared.clone();
                    let first = mine.first().copied();
                    let run = std::panic::catch_unwind(AssertUnwindSafe(|| ctx.run(mine)));
                    if run.is_err()
                        && let Some(task) = first
                    {
                        shared.fail(task, Error::WorkerPanicked { worker: worker_name });
                    }
                })
                .map_err(Error::Spawn)?;
            workers.push(handle);
        }
        let running =
            RunningProcessor { processor: self.clone(), logs, tasks, registry, shared, workers };
        running.wait_opened()?;
        Ok(running)
    }
}

struct Worker {
    processor: Processor,
    logs: Arc<dyn LogAccess>,
    registry: Arc<TableRegistry>,
    shared: Arc<Shared>,
    config: RuntimeConfig,
}

impl Worker {
    fn run(self, ids: Vec<TaskId>) {
        let mut tasks = Vec::new();
        for id in ids {
            let opened = Task::open(
                self.processor.def.clone(),
                self.logs.clone(),
                id,
                self.config.task.clone(),
                &self.registry,
            );
            match opened {
                Ok(task) => {
                    self.shared.publish(&task);
                    tasks.push(task);
                }
                Err(e) => return self.shared.fail(id, e),
            }
            self.shared.lock().opened += 1;
            self.shared.changed.notify_all();
        }
        while !self.shared.stop.load(Ordering::Acquire) {
            let mut progressed = false;
            for task in &mut tasks {
                match task.poll() {
                    Ok(n) => {
                        progressed |= n > 0;
                        self.shared.publish(task);
                    }
                    Err(e) => return self.shared.fail(task.id(), e),
                }
            }
            if !progressed {
                let interests: Vec<_> = tasks.iter().flat_map(|t| t.wait_interests()).collect();
                self.logs.wait_for_data(&interests, Instant::now() + self.config.idle_wait);
            }
        }
        if self.shared.abort.load(Ordering::Acquire) {
            return;
        }
        for task in &mut tasks {
            if let Err(e) = task.snapshot() {
                return self.shared.fail(task.id(), e);
            }
            self.shared.publish(task);
        }
    }
}

impl RunningProcessor {
    pub fn processor(&self) -> &Processor {
        &self.processor
    }

    pub fn tasks(&self) -> &[TaskId] {
        &self.tasks
    }

    /// A typed reader of one of the processor's tables.
    pub fn table<K, V>(&self, name: &str) -> Result<TableReader<K, V>> {
        self.registry.reader(name)
    }

    /// The first task failure, if a task has failed (its worker stopped).
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().error.as_ref().map(|(task, e)| format!("task {task}: {e}"))
    }

    /// What every task last reported.
    pub fn status(&self) -> BTreeMap<TaskId, TaskStatus> {
        self.shared.lock().tasks.clone()
    }

    fn check_error(status: &Status) -> Result<()> {
        match &status.error {
            Some((task, e)) => Err(Error::TaskFailed { task: task.to_string(), source: e.clone() }),
            None => Ok(()),
        }
    }

    fn wait_opened(&self) -> Result<()> {
        let mut s = self.shared.lock();
        loop {
            Self::check_error(&s)?;
            if s.opened >= self.tasks.len() {
                return Ok(());
            }
            s = self.shared.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits until every task has processed its input up to the end offsets as they are when
    /// asked — repeated until no task's input grew meanwhile (so output of one sub-topology
    /// read by another is processed too).
    pub fn wait_caught_up(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let ends = self.input_ends()?;
            self.wait_positions(&ends, deadline)?;
            if self.input_ends()? == ends {
                return Ok(());
            }
        }
    }

    fn input_ends(&self) -> Result<BTreeMap<(String, u32), u64>> {
        let mut ends = BTreeMap::new();
        for status in self.status().values() {
            for (topic, partition, _) in &status.inputs {
                let end = self.logs.end_offset(topic, *partition)?;
                ends.insert((topic.clone(), *partition), end);
            }
        }
        Ok(ends)
    }

    fn wait_positions(&self, ends: &BTreeMap<(String, u32), u64>, deadline: Instant) -> Result<()> {
        let mut s = self.shared.lock();
        loop {
            Self::check_error(&s)?;
            let done = s.tasks.values().all(|t| {
                t.inputs.iter().all(|(topic, p, next)| {
                    ends.get(&(topic.clone(), *p)).is_none_or(|end| next >= end)
                })
            });
            if done {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            s = self
                .shared
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Stops the workers; each task writes a final snapshot. Returns a task's error, if any.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown(false)
    }

    /// Stops the workers without final snapshots, as a crash would (for tests).
    pub fn abort(mut self) -> Result<()> {
        self.shutdown(true)
    }

    fn shutdown(&mut self, abort: bool) -> Result<()> {
        self.shared.abort.store(abort, Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
        let mut panicked = None;
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                let worker = self.processor.name().to_owned();
                panicked = Some(Error::WorkerPanicked { worker });
            }
        }
        if let Some(e) = panicked {
            return Err(e);
        }
        Self::check_error(&self.shared.lock())
    }
}

impl Drop for RunningProcessor {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            let _ = self.shutdown(false);
        }
    }
}
