//! An [`Instance`]: one process's share of a processor running over a Kafka-protocol cluster.
//!
//! Instances of the same processor name and version form a consumer group (`group.rs`); the
//! partitions the group assigns to this one are the task partitions it runs, each on a thread
//! of its own (`runner.rs`) with its own transactional producer (`task_logs.rs`). On revoke a
//! partition's tasks stop with a final snapshot, published and committed; on assign the
//! partition's producer is registered first (fencing whoever had it), then the tasks start
//! from the latest published snapshot — so a task that moved rebuilds its state and goes on
//! with the effectively-once recovery of `docs/processors.md` (outputs found by their
//! positions, whoever wrote them, among the committed ones).
//!
//! Owns: the group member (on a coordinator thread that polls it, where rebalances run), the
//! partition threads, the table registry (the tables of the partitions it runs), the reports
//! of its tasks.
//!
//! Versions (`switch.rs`): at start the instance reads the registry in the cluster; the first
//! version of a name records itself serving, a higher one replays as a candidate, and a lower
//! one than the serving version does not start ([`InstanceError::Retired`]). A watcher thread
//! follows the registry for the instance's life and retires it (tasks stopped, group left,
//! queries forwarded) when a higher version takes over.
//!
//! Invariant: a partition is in `runners` exactly while its thread may write; `revoked`
//! returns only after the thread has ended.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use eddy_processor::{Processor, TableRegistry, TaskConfig, TaskId, partition_for_key};

use crate::error::ClusterError;
use crate::group::{self, Assignments, Member};
use crate::logs::KafkaLogs;
use crate::registry::{self, Inputs};
use crate::runner::{self, Context, TaskReport};
use crate::snapshots::SnapshotTopic;
use crate::switch::{self, Local, Role, Switch};

/// How an instance runs.
#[derive(Debug, Clone)]
pub struct InstanceConfig {
    /// Local snapshots go under `<state_dir>/<processor>-<version>/`.
    pub state_dir: PathBuf,
    /// Where this instance answers pull queries (published to the group in its `client.id`).
    pub query_addr: String,
    /// A task snapshots (and publishes) after this many input records.
    pub snapshot_every_records: u64,
    /// A task partition's transaction commits at least this often while it progresses (and
    /// whenever it is idle): how long its outputs wait before committed readers see them.
    pub commit_every: Duration,
    /// How long an idle partition thread waits for input before looking for a stop.
    pub idle_wait: Duration,
    /// The spec's `idle_timeout_ms` (`TaskConfig::idle_timeout`).
    pub idle_timeout: Option<Duration>,
}

impl InstanceConfig {
    pub fn new(state_dir: impl Into<PathBuf>, query_addr: impl Into<String>) -> Self {
        Self {
            state_dir: state_dir.into(),
            query_addr: query_addr.into(),
            snapshot_every_records: 100_000,
            commit_every: Duration::from_millis(100),
            idle_wait: Duration::from_millis(100),
            idle_timeout: None,
        }
    }
}

/// Why an instance could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstanceError {
    #[error(transparent)]
    Processor(#[from] eddy_processor::Error),
    #[error(transparent)]
    Log(#[from] eddy_processor::LogError),
    #[error(transparent)]
    Cluster(#[from] Box<ClusterError>),
    #[error("processor {name} has no source topic to form its group over")]
    NoSource { name: String },
    #[error("failed to start a thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the group member's thread ended before joining")]
    MemberGone,
    #[error("{0}")]
    Failed(String),
    #[error("version {version} of {name} is retired: version {serving} serves")]
    Retired { name: String, version: u32, serving: u32 },
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

struct Runner {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// What the coordinator thread and the callbacks share.
struct Shared {
    cx: Arc<Context>,
    runners: Mutex<BTreeMap<u32, Runner>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Runner>> {
        self.runners.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop_partitions(&self, partitions: &[u32]) {
        let stopping: Vec<(u32, Runner)> = {
            let mut runners = self.lock();
            partitions.iter().filter_map(|p| runners.remove(p).map(|r| (*p, r))).collect()
        };
        for (_, r) in &stopping {
            r.stop.store(true, Ordering::Release);
        }
        for (p, r) in stopping {
            if r.thread.join().is_err() {
                let error = format!("partition {p}: its thread panicked");
                self.cx.failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(error);
            }
        }
    }
}

impl Assignments for Shared {
    fn assigned(&self, partitions: Vec<u32>) {
        let mut runners = self.lock();
        for p in partitions {
            if runners.contains_key(&p) {
                continue;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let (cx, flag) = (self.cx.clone(), stop.clone());
            let name = format!("{}-p{p}", self.cx.processor.name());
            match std::thread::Builder::new().name(name).spawn(move || runner::run(&cx, p, &flag)) {
                Ok(thread) => {
                    runners.insert(p, Runner { stop, thread });
                }
                Err(e) => {
                    let error = format!("partition {p}: cannot start its thread: {e}");
                    self.cx.failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(error);
                }
            }
        }
    }

    fn revoked(&self, partitions: Vec<u32>) {
        self.stop_partitions(&partitions);
    }
}

/// One running instance.
pub struct Instance {
    shared: Arc<Shared>,
    group: String,
    topic: String,
    stop: Arc<AtomicBool>,
    coordinator: Mutex<Option<JoinHandle<()>>>,
    switch: Arc<Switch>,
    closed: Arc<AtomicBool>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").field("group", &self.group).finish_non_exhaustive()
    }
}

impl Instance {
    /// Creates the processor's topics and its snapshot topic, joins the group, and runs the
    /// partitions the group assigns until [`stop`](Self::stop).
    pub fn start(
        processor: Processor,
        logs: Arc<KafkaLogs>,
        config: InstanceConfig,
    ) -> Result<Instance, InstanceError> {
        let switch = Arc::new(enter(&logs, processor.name(), processor.version())?);
        let tasks = processor.prepare(&*logs)?;
        let topic = processor
            .source_topics()
            .into_iter()
            .next()
            .ok_or_else(|| InstanceError::NoSource { name: processor.name().to_owned() })?;
        let partitions = tasks.iter().map(|t| t.partition + 1).max().unwrap_or(1);
        let snapshots = SnapshotTopic::of(&processor);
        snapshots.create(&*logs, partitions)?;
        let mut task_config = TaskConfig::new(&config.state_dir);
        // Snapshots are taken by the partition threads, which publish each one.
        task_config.snapshot_every_records = u64::MAX;
        task_config.idle_timeout = config.idle_timeout;
        let group = group::group_id(processor.name(), processor.version());
        let cx = Arc::new(Context {
            processor,
            logs: logs.clone(),
            registry: TableRegistry::new(),
            snapshots,
            tasks,
            task_config,
            snapshot_every_records: config.snapshot_every_records.max(1),
            commit_every: config.commit_every,
            idle_wait: config.idle_wait,
            reports: Mutex::new(BTreeMap::new()),
            ready: Mutex::new(BTreeSet::new()),
            failure: Mutex::new(None),
        });
        let shared = Arc::new(Shared { cx, runners: Mutex::new(BTreeMap::new()) });
        let stop = Arc::new(AtomicBool::new(false));
        let coordinator = spawn_coordinator(&shared, &logs, &group, &topic, &config, &stop)?;
        let closed = Arc::new(AtomicBool::new(false));
        let handle = Handle {
            shared: shared.clone(),
            stop: stop.clone(),
            addr: config.query_addr,
            group: group.clone(),
            topic: topic.clone(),
        };
        let watcher = {
            let (switch, logs, closed) = (switch.clone(), logs.clone(), closed.clone());
            std::thread::Builder::new()
                .name(format!("{group}-registry"))
                .spawn(move || switch::watch(&switch, &logs, &handle, &closed))
                .map_err(InstanceError::Spawn)?
        };
        Ok(Instance {
            shared,
            group,
            topic,
            stop,
            coordinator: Mutex::new(Some(coordinator)),
            switch,
            closed,
            watcher: Mutex::new(Some(watcher)),
        })
    }

    /// What this instance's version is now (serving, candidate, handing over, retired).
    pub fn role(&self) -> Role {
        self.switch.role()
    }

    /// The serving version, as this instance's view of the registry says.
    pub fn serving_version(&self) -> Option<u32> {
        self.switch.view().serving()
    }

    /// The version switching in, if one caught up and does not serve yet.
    pub fn switching_version(&self) -> Option<u32> {
        self.switch.view().switching()
    }

    /// Waits up to `timeout` for this instance's view of the registry to change.
    pub fn wait_for_registry(&self, timeout: Duration) {
        self.switch.wait_change(timeout);
    }

    pub fn processor(&self) -> &Processor {
        &self.shared.cx.processor
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The tables of the partitions this instance runs.
    pub fn registry(&self) -> &Arc<TableRegistry> {
        &self.shared.cx.registry
    }

    /// The task partitions running here.
    pub fn partitions(&self) -> Vec<u32> {
        self.shared.lock().keys().copied().collect()
    }

    /// The task partitions whose tables answer here: running, and every task opened (restored
    /// from its snapshot). A partition assigned a moment ago is running but not ready: a get
    /// for its keys must be asked again, not answered empty.
    pub fn ready_partitions(&self) -> Vec<u32> {
        let cx = &self.shared.cx;
        let reports = cx.reports.lock().unwrap_or_else(|p| p.into_inner());
        self.partitions()
            .into_iter()
            .filter(|&p| {
                cx.tasks.iter().filter(|t| t.partition == p).all(|t| reports.contains_key(t))
            })
            .collect()
    }

    /// How many task partitions there are.
    pub fn partition_count(&self) -> u32 {
        self.shared.cx.tasks.iter().map(|t| t.partition + 1).max().unwrap_or(1)
    }

    /// The task partition a table key (its bytes, as the records carry it) belongs to.
    pub fn partition_of(&self, key: &[u8]) -> u32 {
        partition_for_key(key, self.partition_count())
    }

    /// What each task running here last reported.
    pub fn reports(&self) -> BTreeMap<TaskId, TaskReport> {
        self.shared.cx.reports.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records left to read over the inputs of the tasks running here (asks the cluster).
    pub fn lag(&self) -> u64 {
        let reports = self.reports();
        reports.values().map(|r| runner::lag(&self.shared.cx.logs, &r.inputs)).sum()
    }

    /// The first failure of a partition's tasks, if any.
    pub fn failure(&self) -> Option<String> {
        self.shared.cx.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The query address of the instance that runs task partition `partition` now, from the
    /// group's description (`None` while the group is rebalancing).
    pub fn owner_of(&self, partition: u32) -> Result<Option<String>, ClusterError> {
        self.owner_in(&self.group, partition)
    }

    /// [`owner_of`](Self::owner_of) among the instances of `version` of this processor.
    pub fn owner_in_version(
        &self,
        version: u32,
        partition: u32,
    ) -> Result<Option<String>, ClusterError> {
        self.owner_in(&group::group_id(self.processor().name(), version), partition)
    }

    fn owner_in(&self, group: &str, partition: u32) -> Result<Option<String>, ClusterError> {
        let members = self.shared.cx.logs.group_members(group)?;
        Ok(group::owner(&members, &self.topic, partition))
    }

    /// Leaves the group: every partition's tasks stop with a published snapshot. Later calls
    /// return at once.
    pub fn stop(&self) -> Result<(), InstanceError> {
        self.closed.store(true, Ordering::Release);
        let watcher = self.watcher.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = watcher
            && thread.join().is_err()
        {
            return Err(InstanceError::Failed("the registry watcher panicked".into()));
        }
        self.stop.store(true, Ordering::Release);
        let coordinator = self.coordinator.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = coordinator
            && thread.join().is_err()
        {
            return Err(InstanceError::Failed("the group member's thread panicked".into()));
        }
        match self.failure() {
            Some(f) => Err(InstanceError::Failed(f)),
            None => Ok(()),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Reads the registry for `name`: the first version of a name records itself serving; a
/// version below the serving one is refused.
fn enter(logs: &KafkaLogs, name: &str, version: u32) -> Result<Switch, InstanceError> {
    let switch = Switch::open(logs, name, version)?;
    match switch.view().serving() {
        None => {
            registry::write_serving(logs, name, version)?;
            switch.refresh(logs)?;
        }
        Some(serving) if serving > version => {
            return Err(InstanceError::Retired { name: name.to_owned(), version, serving });
        }
        Some(_) => {}
    }
    tracing::info!(name, version, role = ?switch.role(), "entered the registry");
    Ok(switch)
}

/// What the registry watcher sees of the instance.
struct Handle {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    addr: String,
    group: String,
    topic: String,
}

impl Local for Handle {
    fn name(&self) -> &str {
        self.shared.cx.processor.name()
    }

    fn query_addr(&self) -> &str {
        &self.addr
    }

    fn caught_up(&self) -> Vec<(u32, Inputs)> {
        let cx = &self.shared.cx;
        let reports = cx.reports.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let running: Vec<u32> = self.shared.lock().keys().copied().collect();
        let mut out = Vec::new();
        for p in running {
            let ids: Vec<TaskId> = cx.tasks.iter().copied().filter(|t| t.partition == p).collect();
            let Some(mut inputs) = ids
                .iter()
                .map(|id| reports.get(id).map(|r| r.inputs.clone()))
                .collect::<Option<Vec<_>>>()
                .map(|all| all.concat())
            else {
                continue;
            };
            let at_end = inputs
                .iter()
                .all(|(t, q, next)| cx.logs.high_watermark(t, *q).is_ok_and(|end| *next >= end));
            if at_end {
                inputs.sort();
                out.push((p, inputs));
            }
        }
        out
    }

    fn runs(&self, partition: u32) -> bool {
        self.shared.lock().contains_key(&partition)
    }

    fn owners(&self) -> Result<Vec<Option<String>>, ClusterError> {
        let members = self.shared.cx.logs.group_members(&self.group)?;
        Ok((0..self.partition_count()).map(|p| group::owner(&members, &self.topic, p)).collect())
    }

    fn partition_count(&self) -> u32 {
        self.shared.cx.tasks.iter().map(|t| t.partition + 1).max().unwrap_or(1)
    }

    fn members(&self, version: u32) -> Result<Vec<String>, ClusterError> {
        let group = group::group_id(self.name(), version);
        let members = self.shared.cx.logs.group_members(&group)?;
        Ok(members
            .iter()
            .filter_map(|(client_id, _)| group::query_addr_of(client_id).map(str::to_owned))
            .collect())
    }

    fn retire(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The thread that joins the group and polls it (rebalances run there) until `stop`; then
/// stops every partition and leaves. Returns once the member has been created.
fn spawn_coordinator(
    shared: &Arc<Shared>,
    logs: &KafkaLogs,
    group: &str,
    topic: &str,
    config: &InstanceConfig,
    stop: &Arc<AtomicBool>,
) -> Result<JoinHandle<()>, InstanceError> {
    let (joined_tx, joined) = mpsc::channel::<Result<(), ClusterError>>();
    let (shared, stop) = (shared.clone(), stop.clone());
    let (cluster, group, topic) = (logs.config().clone(), group.to_owned(), topic.to_owned());
    let query_addr = config.query_addr.clone();
    let thread = std::thread::Builder::new()
        .name(format!("{group}-member"))
        .spawn(move || {
            let handler: Arc<dyn Assignments> = shared.clone();
            let member = match Member::join(&cluster, &group, &topic, &query_addr, handler) {
                Ok(m) => m,
                Err(e) => {
                    let _ = joined_tx.send(Err(e));
                    return;
                }
            };
            let _ = joined_tx.send(Ok(()));
            while !stop.load(Ordering::Acquire) {
                member.poll(Duration::from_millis(100));
            }
            let running: Vec<u32> = shared.lock().keys().copied().collect();
            shared.stop_partitions(&running);
            member.leave();
        })
        .map_err(InstanceError::Spawn)?;
    match joined.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(e)) => Err(Box::new(e).into()),
        Err(_) => Err(InstanceError::MemberGone),
    }
}
