//! Versioned redeploy on the cluster: which version of a processor serves, and the switch from
//! one to the next, recorded in the registry (`registry.rs`).
//!
//! A version is started the same way as the first (`eddy processor run SPEC --kafka`, a spec
//! with a higher version): it replays from offset zero in its own group and topics while the
//! serving version answers. Each instance runs a watcher ([`watch`]) that reads the registry
//! every [`WATCH_EVERY`] and acts on its [`Role`]:
//! - **Candidate** (a version above the serving one): records each task partition running here
//!   at lag 0 (its input positions, and this instance's address); the instance running
//!   partition 0 decides: once every task partition's record was made by the instance that
//!   runs it now and its positions are at their inputs' high watermarks *now* — the version's
//!   lag is zero — it records `switching`; once every member of the serving version's group
//!   has acknowledged, it records `serving`.
//! - **Handover** (serving, with a version switching in): acknowledges, and no longer answers
//!   from its tables (queries wait for the switch).
//! - **Retired** (a higher version serves): stops its tasks and leaves its group; its query
//!   listener goes on, forwarding to the serving version.
//!
//! Why answers never go back from N+1 to N: an instance of N answers from its tables only
//! before it acknowledged, N+1 answers only once `serving` is recorded, and that is recorded
//! only after every member of N's group acknowledged. A client that got an answer from N+1 and
//! asks again reaches instances that all stopped answering from N.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::error::ClusterError;
use crate::logs::KafkaLogs;
use crate::registry::{self, Inputs, RegistryError, RegistryView};

/// How often the watcher reads the registry.
pub const WATCH_EVERY: Duration = Duration::from_millis(50);

/// What an instance's version is, as its view of the registry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The serving version: answers from its tables.
    Serving,
    /// A higher version, replaying; queries go to the serving version.
    Candidate,
    /// The serving version while a higher one switches in: answers nothing itself.
    Handover,
    /// A lower version than the serving one: its tasks stop; queries go to the serving version.
    Retired,
}

/// One instance's view of the registry, shared by its watcher and its query listener.
#[derive(Debug)]
pub(crate) struct Switch {
    version: u32,
    state: Mutex<(RegistryView, u64)>,
    changed: Condvar,
}

impl Switch {
    /// Reads the registry to its end for processor `name`.
    pub(crate) fn open(logs: &KafkaLogs, name: &str, version: u32) -> Result<Self, RegistryError> {
        RegistryView::create(logs)?;
        let mut view = RegistryView::new(name);
        view.refresh(logs)?;
        Ok(Self { version, state: Mutex::new((view, 0)), changed: Condvar::new() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (RegistryView, u64)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn view(&self) -> RegistryView {
        self.lock().0.clone()
    }

    pub(crate) fn role(&self) -> Role {
        let state = self.lock();
        role_of(&state.0, self.version)
    }

    /// Reads what the registry gained; wakes the waiters when it changed.
    pub(crate) fn refresh(&self, logs: &KafkaLogs) -> Result<(), RegistryError> {
        let mut view = self.view();
        if view.refresh(logs)? {
            let mut state = self.lock();
            state.0 = view;
            state.1 += 1;
            self.changed.notify_all();
        }
        Ok(())
    }

    /// Waits up to `timeout` for the view to change.
    pub(crate) fn wait_change(&self, timeout: Duration) {
        let state = self.lock();
        let seen = state.1;
        let _ = self
            .changed
            .wait_timeout_while(state, timeout, |s| s.1 == seen)
            .unwrap_or_else(|p| p.into_inner());
    }
}

/// The role of `version` under `view`.
pub(crate) fn role_of(view: &RegistryView, version: u32) -> Role {
    match view.serving() {
        Some(s) if s == version && view.switching().is_some() => Role::Handover,
        Some(s) if s == version => Role::Serving,
        Some(s) if s > version => Role::Retired,
        _ => Role::Candidate,
    }
}

/// What the watcher needs of the instance it runs in.
pub(crate) trait Local: Send + Sync {
    fn name(&self) -> &str;
    fn query_addr(&self) -> &str;
    /// Task partitions running here whose every task is open and at lag 0 (each input's next
    /// offset at its high watermark), with the input positions.
    fn caught_up(&self) -> Vec<(u32, Inputs)>;
    fn runs(&self, partition: u32) -> bool;
    /// The query address of the member of this version's group running each task partition
    /// (`None`: none now).
    fn owners(&self) -> Result<Vec<Option<String>>, ClusterError>;
    fn partition_count(&self) -> u32;
    /// The query addresses of the members of `version`'s group.
    fn members(&self, version: u32) -> Result<Vec<String>, ClusterError>;
    /// Stops the tasks and leaves the group (the query listener goes on).
    fn retire(&self);
}

/// The watcher's loop: until `closed`, reads the registry and acts on the role.
pub(crate) fn watch(switch: &Switch, logs: &KafkaLogs, local: &dyn Local, closed: &AtomicBool) {
    let mut done = Done::default();
    while !closed.load(Ordering::Acquire) {
        if let Err(error) = round(switch, logs, local, &mut done) {
            tracing::warn!(%error, "watching the registry");
        }
        switch.wait_change(WATCH_EVERY);
    }
}

/// What the watcher already did.
#[derive(Debug, Default)]
struct Done {
    progress: HashMap<u32, Inputs>,
    acked: bool,
    retired: bool,
}

/// One look at the registry, and what the role asks for.
fn round(
    switch: &Switch,
    logs: &KafkaLogs,
    local: &dyn Local,
    done: &mut Done,
) -> Result<(), WatchError> {
    switch.refresh(logs)?;
    match switch.role() {
        Role::Serving => {}
        Role::Candidate => {
            publish_progress(switch.version, logs, local, &mut done.progress)?;
            if local.runs(0) {
                decide(switch, logs, local)?;
            }
        }
        role @ (Role::Handover | Role::Retired) => {
            if !done.acked {
                registry::write_ack(logs, local.name(), switch.version, local.query_addr())?;
                tracing::info!(version = switch.version, "handing over: acknowledged");
                done.acked = true;
            }
            if role == Role::Retired && !done.retired {
                tracing::info!(version = switch.version, "retired: stopping the tasks");
                local.retire();
                done.retired = true;
            }
        }
    }
    Ok(())
}

/// A failure of one round of the watcher (the next round tries again).
#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Cluster(#[from] Box<ClusterError>),
}

impl From<ClusterError> for WatchError {
    fn from(e: ClusterError) -> Self {
        WatchError::Cluster(Box::new(e))
    }
}

/// Records the caught-up partitions running here whose positions changed since last written.
fn publish_progress(
    version: u32,
    logs: &KafkaLogs,
    local: &dyn Local,
    written: &mut HashMap<u32, Inputs>,
) -> Result<(), RegistryError> {
    for (partition, inputs) in local.caught_up() {
        if written.get(&partition) != Some(&inputs) {
            let owner = local.query_addr();
            registry::write_progress(logs, local.name(), version, partition, owner, &inputs)?;
            written.insert(partition, inputs);
        }
    }
    Ok(())
}

/// Run where partition 0 runs: records `switching` once the version's lag is zero, then
/// `serving` once the serving version's instances all acknowledged.
fn decide(switch: &Switch, logs: &KafkaLogs, local: &dyn Local) -> Result<(), WatchError> {
    let view = switch.view();
    let me = switch.version;
    if view.switching() != Some(me) {
        let owners = local.owners()?;
        for p in 0..local.partition_count() {
            let Some((recorder, inputs)) = view.progress(me, p) else { return Ok(()) };
            // Recorded by the instance that runs the partition now: one that took it since
            // may still be catching up from an older snapshot.
            if owners.get(p as usize).and_then(Option::as_deref) != Some(recorder) {
                return Ok(());
            }
            for (topic, q, next) in inputs {
                if *next < logs.high_watermark(topic, *q)? {
                    return Ok(());
                }
            }
        }
        registry::write_switching(logs, local.name(), me)?;
        tracing::info!(version = me, "caught up: switching in");
        return Ok(());
    }
    let Some(serving) = view.serving() else {
        registry::write_serving(logs, local.name(), me)?;
        return Ok(());
    };
    let acks = view.acks(serving);
    let members = local.members(serving)?;
    if members.iter().all(|m| acks.contains(m)) {
        registry::write_serving(logs, local.name(), me)?;
        tracing::info!(version = me, replaced = serving, "serving");
    }
    Ok(())
}
