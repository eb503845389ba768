//! [`Topics`]: the broker's topics over the storage log — the data directory's lock, the topic
//! map, creation and deletion, and the wake-ups every append sends. Every service of the
//! broker (groups, processors, SQL, request handling) reaches topics through an
//! `Arc<Topics>`; none of them needs the `Broker`.
//!
//! Invariants:
//! - One `Topics` per data directory (an exclusive lock on `DATA/.lock`, held until the last
//!   `Arc<Topics>` is dropped); each partition's log also locks its own directory.
//! - A topic is visible only once its `topic.json` exists; a directory without one is a creation
//!   that crashed, and open removes it. Deletion renames the topic away first, so a name is
//!   never half deleted.
//! - Every append made through the broker calls [`Topics::appended`], which wakes long-polling
//!   fetches (async) and processor threads (blocking) alike.
//! - Topics whose names start with `__` are internal (`__consumer_offsets`, `__processors`,
//!   `__sql`): created by the broker, readable by anyone, never produced to or deleted by
//!   clients.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy_protocol::v1;
use eddy_storage::{DirLock, Log};
use tokio::sync::Notify;

use crate::error::BrokerError;
use crate::files::write_atomic;
use crate::metrics::TopicMeter;
use crate::topic::{self, SETTINGS_FILE, TopicSettings};

/// How long a fetch (or a push query's poll) may wait at most, whatever it asks for.
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);

/// One topic and its partition logs.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub settings: TopicSettings,
    pub dir: PathBuf,
    pub partitions: Vec<Arc<Log>>,
    /// Records and bytes produced to and fetched from it (shared by the topic's successors
    /// when partitions are added, so the counters go on).
    pub meter: Arc<TopicMeter>,
}

impl Topic {
    pub fn partition(&self, partition: u32) -> Result<&Arc<Log>, BrokerError> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| BrokerError::UnknownPartition { topic: self.name.clone(), partition })
    }

    pub fn partition_info(&self) -> Vec<v1::PartitionInfo> {
        self.partitions
            .iter()
            .enumerate()
            .map(|(p, log)| v1::PartitionInfo {
                partition: p as u32,
                log_start_offset: log.start_offset(),
                next_offset: log.next_offset(),
                size_bytes: log.size_bytes(),
                segments: log.segment_count() as u32,
            })
            .collect()
    }
}

/// What one maintenance pass over every partition did, summed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub partitions: u64,
    pub retention: eddy_storage::RetentionReport,
    pub compaction: eddy_storage::CompactionReport,
    /// Partitions whose pass failed (logged).
    pub failures: u64,
}

/// Appends seen so far, for threads that cannot await [`Notify`] (processor tasks).
#[derive(Debug, Default)]
struct AppendSignal {
    count: Mutex<u64>,
    changed: Condvar,
}

/// The topics of one data directory.
#[derive(Debug)]
pub struct Topics {
    dir: PathBuf,
    defaults: TopicSettings,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic creation and deletion.
    admin: Mutex<()>,
    /// Woken after every append, for long-polling fetches.
    appended: Notify,
    append_signal: AppendSignal,
    shutting_down: AtomicBool,
    // Last: released after every partition log above has closed.
    _held: Held,
}

/// The directory's lock, then its entry in [`OPEN_HERE`]: fields drop in order, so the
/// directory is unlocked before a waiting `open` in this process is woken.
#[derive(Debug)]
struct Held {
    _lock: DirLock,
    _open: OpenHere,
}

/// The data directories open in this process, so an `open` that finds one locked can tell a
/// handle of its own process (and wait briefly for it to go) from another process.
static OPEN_HERE: (Mutex<BTreeSet<PathBuf>>, Condvar) =
    (Mutex::new(BTreeSet::new()), Condvar::new());

/// How long `open` waits for this process's own handles on the directory to be dropped (a
/// producer dropped without `close()` finishes its in-flight requests first).
const RELEASE_WAIT: Duration = Duration::from_secs(3);

/// A directory's entry in [`OPEN_HERE`], removed (and waiters woken) on drop.
#[derive(Debug)]
struct OpenHere(PathBuf);

impl Drop for OpenHere {
    fn drop(&mut self) {
        let (open, released) = &OPEN_HERE;
        open.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.0);
        released.notify_all();
    }
}

/// Locks `dir`. When this process holds it already, waits up to [`RELEASE_WAIT`] for that
/// holder to be dropped, then names it in the error. On a current-thread tokio runtime it does
/// not wait: the holder (a producer's task, say) could only finish on this very thread.
fn lock_dir(dir: &Path) -> Result<Held, BrokerError> {
    let path = fs::canonicalize(dir).map_err(BrokerError::io("resolve", dir))?;
    let (open, released) = &OPEN_HERE;
    let one_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
    let wait = if one_thread { Duration::ZERO } else { RELEASE_WAIT };
    let deadline = Instant::now() + wait;
    let mut held = open.lock().unwrap_or_else(|p| p.into_inner());
    while held.contains(&path) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BrokerError::OpenInThisProcess { path });
        }
        held = released.wait_timeout(held, left).unwrap_or_else(|p| p.into_inner()).0;
    }
    let lock = DirLock::acquire(&path).map_err(BrokerError::data_dir)?;
    held.insert(path.clone());
    Ok(Held { _lock: lock, _open: OpenHere(path) })
}

impl Topics {
    /// Locks `dir` and recovers every topic under `dir/topics`; `defaults` fill the settings a
    /// creation leaves unset.
    pub fn open(dir: &Path, defaults: TopicSettings) -> Result<Topics, BrokerError> {
        let topics_dir = dir.join("topics");
        eddy_storage::create_dir_durable(&topics_dir).map_err(BrokerError::data_dir)?;
        let held = lock_dir(dir)?;
        let mut topics = BTreeMap::new();
        for entry in fs::read_dir(&topics_dir).map_err(BrokerError::io("list", &topics_dir))? {
            let entry = entry.map_err(BrokerError::io("list", &topics_dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            if name.starts_with(".deleted-") || !path.join(SETTINGS_FILE).exists() {
                // A deletion or a creation that did not finish.
                tracing::info!(path = %path.display(), "removing unfinished topic directory");
                fs::remove_dir_all(&path).map_err(BrokerError::io("remove", &path))?;
                continue;
            }
            let topic = open_topic(&path, &name)?;
            topics.insert(name, Arc::new(topic));
        }
        Ok(Topics {
            dir: dir.to_path_buf(),
            defaults,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            appended: Notify::new(),
            append_signal: AppendSignal::default(),
            shutting_down: AtomicBool::new(false),
            _held: held,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Topic `name`; a secret internal topic (`topic::is_secret`) is unknown here.
    pub fn get(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        self.lookup(name)
            .filter(|_| !topic::is_secret(name))
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))
    }

    /// Topic `name`, secret or not (for the broker's own services).
    fn lookup(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// `topic`'s partition count, if it exists.
    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        self.get(topic).ok().map(|t| t.partitions.len() as u32)
    }

    /// The next offset of `topic`-`partition`, if it exists.
    pub fn end_offset(&self, topic: &str, partition: u32) -> Option<u64> {
        let t = self.get(topic).ok()?;
        t.partitions.get(partition as usize).map(|log| log.next_offset())
    }

    /// Every topic's name but the secret ones'.
    pub fn names(&self) -> Vec<String> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.keys().filter(|name| !topic::is_secret(name)).cloned().collect()
    }

    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// The internal topic `name`, created with `settings` if it does not exist yet.
    pub(crate) fn internal(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> Result<Arc<Topic>, BrokerError> {
        topic::validate_name(name)?;
        let _admin = self.admin();
        if let Some(t) = self.lookup(name) {
            return Ok(t);
        }
        self.insert(name, settings)
    }

    /// Creates a topic; `config` fields left unset take the defaults.
    pub fn create(
        &self,
        name: &str,
        config: Option<&v1::TopicConfig>,
    ) -> Result<Arc<Topic>, BrokerError> {
        self.check_running()?;
        topic::validate_name(name)?;
        if topic::is_internal(name) {
            return Err(BrokerError::InvalidTopicName {
                name: name.to_string(),
                reason: "names starting with '__' are reserved for internal topics",
            });
        }
        let settings = TopicSettings::resolve(config, &self.defaults)?;
        let _admin = self.admin();
        if self.get(name).is_ok() {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        let topic = self.insert(name, settings)?;
        tracing::info!(topic = name, partitions = topic.partitions.len(), "created topic");
        Ok(topic)
    }

    /// Grows topic `name` to `count` partitions: the new partitions' logs are created, then
    /// `topic.json` is replaced (atomically: a crash before that leaves the old count, and
    /// the new, empty directories are reopened and reused), then the topic is swapped in the
    /// map. Existing partitions are untouched; keys hash to new partitions from now on, as in
    /// Kafka.
    pub fn add_partitions(&self, name: &str, count: u32) -> Result<Arc<Topic>, BrokerError> {
        self.check_running()?;
        if topic::is_internal(name) {
            return Err(BrokerError::InternalTopic(name.to_string()));
        }
        let _admin = self.admin();
        let old = self.get(name)?;
        let have = old.partitions.len() as u32;
        if count <= have {
            return Err(BrokerError::InvalidConfig {
                field: "partitions",
                reason: format!("{name} has {have} partitions; it can only grow"),
            });
        }
        let mut settings = old.settings.clone();
        settings.partitions = count;
        settings.validate()?;
        let mut partitions = old.partitions.clone();
        for p in have..count {
            let log = Log::open(topic::partition_dir(&old.dir, p), settings.log_config()).map_err(
                |source| BrokerError::Storage { topic: name.to_string(), partition: p, source },
            )?;
            partitions.push(Arc::new(log));
        }
        let json = serde_json::to_vec_pretty(&settings)
            .map_err(|e| BrokerError::InvalidConfig { field: "settings", reason: e.to_string() })?;
        write_atomic(&old.dir.join(SETTINGS_FILE), &json)?;
        let topic = Arc::new(Topic {
            name: name.to_string(),
            settings,
            dir: old.dir.clone(),
            partitions,
            meter: old.meter.clone(),
        });
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, from = have, to = count, "added partitions");
        Ok(topic)
    }

    fn admin(&self) -> MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the files of a topic and makes it visible; the caller holds `admin`.
    fn insert(&self, name: &str, settings: TopicSettings) -> Result<Arc<Topic>, BrokerError> {
        let topic = Arc::new(create_topic_files(&self.dir.join("topics"), name, settings)?);
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// Deletes a topic and its data.
    pub fn delete(&self, name: &str) -> Result<(), BrokerError> {
        self.check_running()?;
        if topic::is_internal(name) && self.lookup(name).is_some() {
            return Err(BrokerError::InternalTopic(name.to_string()));
        }
        let _admin = self.admin();
        let topic = self
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let graveyard = topic.dir.with_file_name(format!(".deleted-{name}-{nanos}"));
        fs::rename(&topic.dir, &graveyard).map_err(BrokerError::io("rename", &topic.dir))?;
        drop(topic);
        // Requests still holding the partitions keep reading unlinked files; the space returns
        // when they finish.
        if let Err(e) = fs::remove_dir_all(&graveyard) {
            tracing::warn!(path = %graveyard.display(), error = %e, "could not remove deleted topic; open retries");
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Runs retention and compaction over every partition once, at `now_ms`.
    pub fn run_maintenance(&self, now_ms: i64) -> MaintenanceReport {
        let mut report = MaintenanceReport::default();
        for topic in self.all() {
            for (p, log) in topic.partitions.iter().enumerate() {
                report.partitions += 1;
                let outcome = log.enforce_retention(now_ms).and_then(|retention| {
                    report.retention.segments_deleted += retention.segments_deleted;
                    report.retention.bytes_deleted += retention.bytes_deleted;
                    log.compact(now_ms)
                });
                match outcome {
                    Ok(c) => {
                        report.compaction.segments_rewritten += c.segments_rewritten;
                        report.compaction.records_removed += c.records_removed;
                        report.compaction.bytes_before += c.bytes_before;
                        report.compaction.bytes_after += c.bytes_after;
                    }
                    Err(e) => {
                        report.failures += 1;
                        tracing::warn!(topic = %topic.name, partition = p, error = %e, "maintenance failed");
                    }
                }
            }
        }
        report
    }

    /// Flushes every partition of every topic.
    pub fn flush_all(&self) -> Result<(), BrokerError> {
        for topic in self.all() {
            for (p, log) in topic.partitions.iter().enumerate() {
                log.flush().map_err(|source| BrokerError::Storage {
                    topic: topic.name.clone(),
                    partition: p as u32,
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Wakes everything that waits for appends: long-polling fetches and processor threads.
    pub(crate) fn appended(&self) {
        self.appended.notify_waiters();
        *self.append_signal.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.append_signal.changed.notify_all();
    }

    /// Resolves at the next [`Topics::appended`] (or shutdown); `enable` it before looking at
    /// the logs so an append in between is not missed.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }

    /// Blocks until `ready()` holds, an append happens after a look that found it false, or
    /// `deadline` passes; returns `ready()`'s last answer. Reads the append counter before
    /// each look and waits only while it is unchanged, so an append between the look and the
    /// wait is never missed.
    pub(crate) fn wait_until(&self, deadline: Instant, mut ready: impl FnMut() -> bool) -> bool {
        let signal = &self.append_signal;
        let mut seen = signal.count.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let before = *seen;
            if ready() {
                return true;
            }
            if Instant::now() >= deadline || self.is_shutting_down() {
                return false;
            }
            while *seen == before {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                seen = signal.changed.wait_timeout(seen, left).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
    }

    /// Refuses new work (`SHUTTING_DOWN`) and wakes every waiter now.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.appended();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn check_running(&self) -> Result<(), BrokerError> {
        if self.is_shutting_down() { Err(BrokerError::ShuttingDown) } else { Ok(()) }
    }
}

fn open_topic(dir: &Path, name: &str) -> Result<Topic, BrokerError> {
    let path = dir.join(SETTINGS_FILE);
    let text = fs::read(&path).map_err(BrokerError::io("read", &path))?;
    let settings: TopicSettings =
        serde_json::from_slice(&text).map_err(|e| BrokerError::InvalidConfig {
            field: "topic.json",
            reason: format!("{}: {e}", path.display()),
        })?;
    settings.validate()?;
    let partitions = open_partitions(dir, name, &settings)?;
    Ok(Topic {
        name: name.to_string(),
        settings,
        dir: dir.to_path_buf(),
        partitions,
        meter: Arc::default(),
    })
}

/// Creates a topic's directory, partitions and (last, atomically) its settings file.
fn create_topic_files(
    topics_dir: &Path,
    name: &str,
    settings: TopicSettings,
) -> Result<Topic, BrokerError> {
    let dir = topics_dir.join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(BrokerError::io("remove", &dir))?;
    }
    // Fsynced in `topics/`: a power loss must not take the directory, and with it partitions
    // whose appends were acknowledged durable.
    eddy_storage::create_dir_durable(&dir).map_err(BrokerError::data_dir)?;
    let json = serde_json::to_vec_pretty(&settings)
        .map_err(|e| BrokerError::InvalidConfig { field: "settings", reason: e.to_string() })?;
    let partitions = open_partitions(&dir, name, &settings)?;
    // The settings file makes the topic exist; it is written last, atomically.
    write_atomic(&dir.join(SETTINGS_FILE), &json)?;
    Ok(Topic { name: name.to_string(), settings, dir, partitions, meter: Arc::default() })
}

fn open_partitions(
    dir: &Path,
    name: &str,
    settings: &TopicSettings,
) -> Result<Vec<Arc<Log>>, BrokerError> {
    (0..settings.partitions)
        .map(|p| {
            Log::open(topic::partition_dir(dir, p), settings.log_config()).map(Arc::new).map_err(
                |source| BrokerError::Storage { topic: name.to_string(), partition: p, source },
            )
        })
        .collect()
}
