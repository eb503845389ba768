//! Processors inside the broker: deployed from spec files, kept in the compacted internal topic
//! `__processors` (one record per processor name: which version serves, which one is being
//! built, which one was retired; a tombstone when dropped), started when the broker opens, and
//! run over the broker's own topics through [`logs::BrokerLogs`].
//!
//! - [`spec`]: the spec format and its compiler to the processor builder.
//! - [`logs`]: `LogAccess` over the broker's topics, with a wake-up on every append.
//! - [`query`]: pull queries (get, scan, top-N) against the serving version's tables.
//! - [`observe`]: what metrics and the console read beyond the status (switch-overs,
//!   snapshot ages, readiness).
//! - [`owned`]: a version's rights — its owner's (the principal that deployed it): checked
//!   when it starts, and on every read and append while it runs.
//!
//! Redeploy (the Kappa way): deploying a higher version of a deployed name starts it *building*
//! — from offset zero, into its own state and topics (`<name>-<version>-…`) — while the
//! current version keeps serving queries and outputs. A supervisor thread switches the name
//! over when the building version's lag is zero on every input partition: one record in
//! `__processors` makes the switch (so it survives restarts, and a crash leaves exactly one
//! serving version), then the old version stops. It stays *retired* — state kept, rollback
//! possible — until `retire_grace_ms` has passed; then its state and internal topics go.
//!
//! Invariants:
//! - Every change of a name's versions is one record, written and fsynced before it takes
//!   effect in memory (before the answer, before the old version is stopped).
//! - A version starts only if every input partition still holds offset zero (a full replay
//!   needs it); otherwise the deploy is refused naming the earliest offset.
//! - A registered version that fails to start after a restart reports "failed" with the
//!   reason; the broker itself still opens. So does one whose owner lost the right to read
//!   an input or write an output (docs/security.md).

pub mod definition;
mod lifecycle;
pub mod logs;
pub mod observe;
pub mod owned;
pub mod query;
pub mod spec;
mod status;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_processor::{RunningProcessor, RuntimeConfig};
use eddy_protocol::v1;
use eddy_storage::Log;
use serde::{Deserialize, Serialize};

use self::definition::Definition;
use self::logs::BrokerLogs;
use self::status::{caught_up, info, update_rate};
use crate::clock::now_ms;
use crate::error::BrokerError;
use crate::security::Principal;
use crate::security::acls::Acls;
use crate::topics::Topics;

/// The internal topic holding every deployed processor's versions.
pub const PROCESSORS_TOPIC: &str = "__processors";

/// How often the supervisor looks for building versions that caught up.
const SUPERVISE_EVERY: Duration = Duration::from_millis(50);

/// What `__processors` holds per name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Registration {
    /// The serving version's spec.
    spec: String,
    #[serde(default)]
    deployed_ms: i64,
    /// A higher version replaying from zero, to serve once caught up.
    #[serde(default)]
    building: Option<String>,
    /// The version served before the last switch, with when it was retired.
    #[serde(default)]
    retired: Option<(String, i64)>,
    /// The principals that deployed the serving, building and retired versions (`User:NAME`;
    /// absent: the broker itself, as for every record written before ACLs existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    building_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired_owner: Option<String>,
}

pub(crate) struct Version {
    pub def: Definition,
    text: String,
    /// Who deployed it: it runs with this principal's rights.
    pub(crate) owner: Principal,
    pub running: Option<RunningProcessor>,
    pub(crate) error: Option<String>,
    started: Instant,
    /// Input records done at the last supervisor look, for the rate.
    last_done: Option<(Instant, u64)>,
    rate: f64,
}

impl Version {
    fn new(def: Definition, text: String, owner: Principal) -> Self {
        Version {
            def,
            text,
            owner,
            running: None,
            error: None,
            started: Instant::now(),
            last_done: None,
            rate: 0.0,
        }
    }

    fn prefix(&self) -> String {
        format!("{}-{}", self.def.name(), self.def.version())
    }

    /// The same definition and owner, not running (what a retired version keeps).
    fn stopped_copy(&self) -> Version {
        Version::new(self.def.clone(), self.text.clone(), self.owner.clone())
    }
}

pub(crate) struct Entry {
    pub serving: Version,
    pub building: Option<Version>,
    retired: Option<(Version, i64)>,
    /// Switches of the serving version in this process (caught up, or rolled back), and when
    /// the last one happened (wall-clock ms).
    switches: (u64, Option<i64>),
}

impl Entry {
    fn registration(&self) -> Registration {
        Registration {
            spec: self.serving.text.clone(),
            deployed_ms: now_ms(),
            building: self.building.as_ref().map(|b| b.text.clone()),
            retired: self.retired.as_ref().map(|(v, at)| (v.text.clone(), *at)),
            owner: self.serving.owner.owner(),
            building_owner: self.building.as_ref().and_then(|b| b.owner.owner()),
            retired_owner: self.retired.as_ref().and_then(|(v, _)| v.owner.owner()),
        }
    }
}

/// The processors of one broker, running over its [`Topics`].
///
/// Ownership: running versions and the supervisor thread hold the `Arc<Topics>` (not the
/// broker); [`Processors::shutdown`] stops and joins them all, after which nothing of this
/// registry holds the data directory.
pub struct Processors {
    pub(crate) entries: Mutex<BTreeMap<String, Entry>>,
    log: Arc<Log>,
    topics: Arc<Topics>,
    state_dir: PathBuf,
    retire_grace: Duration,
    /// What owners may do (checked when a version starts and while it runs).
    acls: Arc<Acls>,
    /// Set by `shutdown`; the supervisor waits on it between looks.
    stopping: (Mutex<bool>, Condvar),
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Processors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processors").field("state_dir", &self.state_dir).finish_non_exhaustive()
    }
}

fn parse_version(name: &str, text: &str, owner: Option<&str>) -> Option<Version> {
    match Definition::parse(text) {
        Ok(def) => Some(Version::new(def, text.to_string(), Principal::from_owner(owner))),
        Err(e) => {
            tracing::warn!(processor = %name, error = %e, "stored spec does not parse; skipped");
            None
        }
    }
}

impl Processors {
    /// Reads the registrations from `log`; nothing starts until [`Processors::start_all`].
    pub fn open(
        topics: Arc<Topics>,
        log: Arc<Log>,
        state_dir: PathBuf,
        retire_grace: Duration,
        acls: Arc<Acls>,
    ) -> Result<Processors, BrokerError> {
        let mut registrations: BTreeMap<String, Registration> = BTreeMap::new();
        crate::internal::for_each_record(&log, PROCESSORS_TOPIC, |_, key, value| {
            let name = String::from_utf8_lossy(key.unwrap_or_default()).into_owned();
            match value.map(serde_json::from_slice::<Registration>) {
                None => {
                    registrations.remove(&name);
                }
                Some(Ok(r)) => {
                    registrations.insert(name, r);
                }
                Some(Err(e)) => {
                    tracing::warn!(processor = %name, error = %e, "stored registration does not parse; skipped")
                }
            }
        })?;
        let mut entries = BTreeMap::new();
        for (name, r) in registrations {
            let Some(serving) = parse_version(&name, &r.spec, r.owner.as_deref()) else {
                continue;
            };
            let building = r
                .building
                .as_deref()
                .and_then(|t| parse_version(&name, t, r.building_owner.as_deref()));
            let retired = r.retired.and_then(|(t, at)| {
                parse_version(&name, &t, r.retired_owner.as_deref()).map(|v| (v, at))
            });
            entries.insert(name, Entry { serving, building, retired, switches: (0, None) });
        }
        Ok(Processors {
            entries: Mutex::new(entries),
            log,
            topics,
            state_dir,
            retire_grace,
            acls,
            stopping: (Mutex::new(false), Condvar::new()),
            supervisor: Mutex::new(None),
        })
    }

    /// The topics the processors run over.
    pub fn topics(&self) -> &Arc<Topics> {
        &self.topics
    }

    /// The ACLs owners are checked against.
    pub fn acls(&self) -> &Arc<Acls> {
        &self.acls
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `def` with `owner`'s rights: refused (`Unauthorized`) unless the owner may read
    /// every input and write (and, when missing, create) every output; then every read and
    /// append it makes outside its own internal topics is checked as the owner's.
    fn start(&self, def: &Definition, owner: &Principal) -> Result<RunningProcessor, BrokerError> {
        let partitions = |t: &str| self.topics.partition_count(t);
        let processor = def.compile(&partitions)?;
        let access = self.acls.access(owner.clone(), None);
        owned::check_rights(&access, &self.topics, &def.inputs(), &def.outputs())?;
        let mut config = RuntimeConfig::new(&self.state_dir);
        config.threads = def.threads().clamp(1, 16);
        config.task.idle_timeout = def.idle_timeout();
        let logs = BrokerLogs::new(self.topics.clone());
        let logs: Arc<dyn eddy_processor::LogAccess> = if access.restricted() {
            Arc::new(owned::OwnedLogs::new(logs, access, processor.internal_topics()))
        } else {
            Arc::new(logs)
        };
        processor.start(logs, config).map_err(|source| BrokerError::ProcessorStart {
            name: def.name().to_string(),
            version: def.version(),
            source: Box::new(source),
        })
    }

    fn start_version(&self, v: &mut Version, name: &str) {
        match self.start(&v.def, &v.owner) {
            Ok(running) => {
                tracing::info!(processor = %name, version = v.def.version(), "processor started");
                v.running = Some(running);
                v.started = Instant::now();
            }
            Err(e) => {
                tracing::error!(processor = %name, error = %e, "processor failed to start");
                v.error = Some(e.to_string());
            }
        }
    }

    /// Starts every registered serving and building version; one that fails is reported, not
    /// fatal. Then starts the supervisor.
    pub fn start_all(self: &Arc<Self>) {
        let mut entries = self.lock();
        for (name, e) in entries.iter_mut() {
            self.start_version(&mut e.serving, name);
            if let Some(b) = e.building.as_mut() {
                self.start_version(b, name);
            }
        }
        drop(entries);
        // The supervisor holds the registry weakly: it never keeps the broker alive.
        let weak: Weak<Processors> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("eddy-processors".into())
            .spawn(move || supervisor(&weak));
        match spawned {
            Ok(handle) => *self.supervisor.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the processor supervisor; redeploys will not switch")
            }
        }
    }

    /// Waits up to `SUPERVISE_EVERY` for `shutdown`; whether it was called.
    fn wait_stopping(&self) -> bool {
        let (flag, changed) = &self.stopping;
        let stopping = flag.lock().unwrap_or_else(|p| p.into_inner());
        if *stopping {
            return true;
        }
        *changed.wait_timeout(stopping, SUPERVISE_EVERY).unwrap_or_else(|p| p.into_inner()).0
    }

    /// Stops the supervisor (joining its thread) and every running version, each writing a
    /// final snapshot. Idempotent; the registry stays readable.
    pub fn shutdown(&self) {
        let (flag, changed) = &self.stopping;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        changed.notify_all();
        let handle = self.supervisor.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle
            && handle.thread().id() != std::thread::current().id()
            && handle.join().is_err()
        {
            tracing::error!("the processor supervisor panicked");
        }
        self.stop_all();
    }

    /// The guard: every input partition must still hold offset zero.
    fn check_replayable(&self, def: &Definition) -> Result<(), BrokerError> {
        for topic in def.inputs() {
            let Ok(t) = self.topics.get(&topic) else { continue };
            for (p, log) in t.partitions.iter().enumerate() {
                let start = log.start_offset();
                if start > 0 {
                    return Err(BrokerError::NotReplayable {
                        name: def.name().to_string(),
                        version: def.version(),
                        topic,
                        partition: p as u32,
                        start_offset: start,
                    });
                }
            }
        }
        Ok(())
    }

    /// Deploys a spec as `owner`'s (it runs with `owner`'s rights): a new name starts serving
    /// at once; a higher version of a deployed name starts building beside the serving one
    /// and takes over once caught up. Blocking.
    pub fn deploy(&self, text: &str, owner: &Principal) -> Result<v1::ProcessorInfo, BrokerError> {
        let def = Definition::parse(text)?;
        let name = def.name().to_string();
        {
            let entries = self.lock();
            if let Some(e) = entries.get(&name) {
                if let Some(b) = &e.building {
                    return Err(BrokerError::VersionBuilding { name, building: b.def.version() });
                }
                if def.version() <= e.serving.def.version() {
                    return Err(BrokerError::ProcessorExists {
                        name,
                        serving: e.serving.def.version(),
                    });
                }
            }
        }
        self.check_replayable(&def)?;
        let running = self.start(&def, owner)?;
        let mut version = Version::new(def, text.to_string(), owner.clone());
        version.running = Some(running);
        let mut entries = self.lock();
        let registration = match entries.get(&name) {
            Some(e) => Registration {
                building: Some(text.to_string()),
                building_owner: owner.owner(),
                ..e.registration()
            },
            None => Registration {
                spec: text.to_string(),
                deployed_ms: now_ms(),
                owner: owner.owner(),
                ..Default::default()
            },
        };
        if let Err(e) = self.write(&name, Some(&registration)) {
            if let Some(r) = version.running.take() {
                let _ = r.stop();
            }
            return Err(e);
        }
        match entries.get_mut(&name) {
            Some(e) => {
                tracing::info!(processor = %name, version = version.def.version(), "building a new version from offset zero");
                e.building = Some(version);
            }
            None => {
                tracing::info!(processor = %name, "processor deployed");
                entries.insert(
                    name.clone(),
                    Entry { serving: version, building: None, retired: None, switches: (0, None) },
                );
            }
        }
        Ok(info(&self.topics, &name, &entries[&name]))
    }

    fn write(&self, name: &str, registration: Option<&Registration>) -> Result<(), BrokerError> {
        let value = registration.map(|r| serde_json::to_vec(r).unwrap_or_default());
        // Registrations are rare; each is made durable whatever the topic's policy.
        crate::internal::append_durable(
            &self.log,
            PROCESSORS_TOPIC,
            name.as_bytes(),
            value.as_deref(),
        )
        .map(drop)
    }

    /// Switches names whose building version caught up, updates rates, and removes retired
    /// versions past their grace.
    fn supervise(&self) {
        let mut entries = self.lock();
        let now_wall = now_ms();
        for (name, e) in entries.iter_mut() {
            for v in std::iter::once(&mut e.serving).chain(e.building.as_mut()) {
                update_rate(v);
            }
            let caught_up = e.building.as_ref().is_some_and(|b| caught_up(&self.topics, b));
            if caught_up && let Some(building) = e.building.take() {
                let old = std::mem::replace(&mut e.serving, building);
                let stale = e.retired.take();
                e.retired = Some((old.stopped_copy(), now_wall));
                if let Err(err) = self.write(name, Some(&e.registration())) {
                    tracing::error!(processor = %name, error = %err, "could not record the switch; retried");
                    // Undo in memory: the log still says the old version serves.
                    e.retired = stale;
                    let new = std::mem::replace(&mut e.serving, old);
                    e.building = Some(new);
                    continue;
                }
                tracing::info!(processor = %name, from = old.def.version(), to = e.serving.def.version(), "switched to the rebuilt version");
                e.switches = (e.switches.0 + 1, Some(now_wall));
                if let Some(r) = old.running
                    && let Err(err) = r.stop()
                {
                    tracing::warn!(processor = %name, error = %err, "retired version stopped with an error");
                }
                if let Some((v, _)) = stale {
                    self.remove_version(&v);
                }
            }
            let expired = e.retired.as_ref().is_some_and(|(_, at)| {
                now_wall.saturating_sub(*at) >= self.retire_grace.as_millis() as i64
            });
            if expired && let Some((v, at)) = e.retired.take() {
                if let Err(err) = self.write(name, Some(&e.registration())) {
                    tracing::warn!(processor = %name, error = %err, "could not record the retirement; retried");
                    e.retired = Some((v, at));
                    continue;
                }
                self.remove_version(&v);
            }
        }
    }

    /// The highest registered version of `name` (serving, building or retired).
    pub fn highest_version(&self, name: &str) -> Option<u32> {
        let entries = self.lock();
        let e = entries.get(name)?;
        let versions = std::iter::once(&e.serving)
            .chain(e.building.as_ref())
            .chain(e.retired.as_ref().map(|(v, _)| v));
        versions.map(|v| v.def.version()).max()
    }

    /// Whether `name` serves a SQL query (`None`: no such processor).
    pub fn is_sql(&self, name: &str) -> Option<bool> {
        self.lock().get(name).map(|e| e.serving.def.is_sql())
    }

    /// The processors (other than `except`) whose serving or building version reads `topic`.
    pub fn readers_of(&self, topic: &str, except: &str) -> Vec<String> {
        let entries = self.lock();
        let reads = |e: &Entry| {
            std::iter::once(&e.serving)
                .chain(e.building.as_ref())
                .any(|v| v.def.inputs().iter().any(|t| t == topic))
        };
        entries
            .iter()
            .filter(|(n, e)| n.as_str() != except && reads(e))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The registry text of `name`'s serving version.
    pub fn serving_text(&self, name: &str) -> Option<String> {
        self.lock().get(name).map(|e| e.serving.text.clone())
    }

    /// `name`'s serving version and the version building beside it, if any.
    pub fn versions(&self, name: &str) -> Option<(u32, Option<u32>)> {
        let entries = self.lock();
        let e = entries.get(name)?;
        Some((e.serving.def.version(), e.building.as_ref().map(|b| b.def.version())))
    }

    /// The processors that serve SQL queries.
    pub fn sql_names(&self) -> Vec<String> {
        self.lock().iter().filter(|(_, e)| e.serving.def.is_sql()).map(|(n, _)| n.clone()).collect()
    }

    pub fn list(&self) -> Vec<v1::ProcessorInfo> {
        self.lock().iter().map(|(name, e)| info(&self.topics, name, e)).collect()
    }

    pub fn status(&self, name: &str) -> Result<v1::ProcessorInfo, BrokerError> {
        let entries = self.lock();
        let e = entries.get(name).ok_or_else(|| BrokerError::UnknownProcessor(name.to_string()))?;
        Ok(info(&self.topics, name, e))
    }

    /// Stops every processor, each writing a final snapshot.
    fn stop_all(&self) {
        let mut entries = self.lock();
        for (name, e) in entries.iter_mut() {
            for v in std::iter::once(&mut e.serving).chain(e.building.as_mut()) {
                if let Some(running) = v.running.take()
                    && let Err(err) = running.stop()
                {
                    tracing::warn!(processor = %name, error = %err, "processor stopped with an error");
                }
            }
        }
    }
}

/// The supervisor thread: a look every `SUPERVISE_EVERY` until shutdown or the registry is gone.
fn supervisor(registry: &Weak<Processors>) {
    loop {
        let Some(processors) = registry.upgrade() else { return };
        if processors.wait_stopping() || processors.topics.is_shutting_down() {
            return;
        }
        processors.supervise();
    }
}
