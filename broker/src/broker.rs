//! [`Broker`]: topics and partitions over the storage log — the core that both the embedded API
//! and the TCP server drive.
//!
//! Invariants:
//! - One `Broker` per data directory (an exclusive lock on `DATA/.lock`); each partition's log
//!   also locks its own directory.
//! - A topic is visible only once its `topic.json` exists; a directory without one is a creation
//!   that crashed, and open removes it. Deletion renames the topic away first, so a name is
//!   never half deleted.
//! - Appends run on blocking threads (they may wait for an fsync); the partition log serialises
//!   writers and shares fsyncs among them. Every append wakes long-polling fetches.
//! - Topics whose names start with `__` are internal (the group coordinator's
//!   `__consumer_offsets`): created by the broker, readable by anyone, never produced to or
//!   deleted by clients.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eddy_protocol::v1;
use eddy_storage::{DirLock, Log};
use tokio::sync::Notify;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::groups::Coordinator;
use crate::groups::records::OFFSETS_TOPIC;
use crate::processors::logs::AppendSignal;
use crate::processors::{PROCESSORS_TOPIC, Processors};
use crate::producer_ids::ProducerIds;
use crate::sql::{SQL_TOPIC, SqlService};
use crate::topic::{self, CleanupSetting, SETTINGS_FILE, TopicSettings};

/// An eddy broker: cheap to clone (clones share one broker).
#[derive(Debug, Clone)]
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: BrokerConfig,
    _lock: DirLock,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic creation and deletion.
    admin: Mutex<()>,
    /// Woken after every append, for long-polling fetches.
    pub appended: Notify,
    shutting_down: AtomicBool,
    producer_ids: Mutex<ProducerIds>,
    pub groups: Coordinator,
    /// Bumped after every append, for processor threads (which cannot await `appended`).
    pub append_signal: AppendSignal,
    pub processors: Processors,
    /// The SQL session and its `__sql` log.
    pub sql: SqlService,
}

/// One topic and its partition logs.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub settings: TopicSettings,
    pub dir: PathBuf,
    pub partitions: Vec<Arc<Log>>,
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

impl Broker {
    /// Opens the broker in `dir` with default settings — the embedded entry point.
    pub fn open(dir: impl AsRef<Path>) -> Result<Broker, BrokerError> {
        Self::open_with(BrokerConfig {
            data_dir: dir.as_ref().to_path_buf(),
            ..BrokerConfig::default()
        })
    }

    /// Opens the broker described by `config`, recovering every topic's partitions.
    pub fn open_with(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let dir = config.data_dir.clone();
        let topics_dir = dir.join("topics");
        fs::create_dir_all(&topics_dir).map_err(BrokerError::io("create", &topics_dir))?;
        let lock = DirLock::acquire(&dir).map_err(BrokerError::data_dir)?;
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
        let producer_ids = ProducerIds::open(&dir.join("producer-ids"))?;
        let internal = |flush| TopicSettings {
            partitions: 1,
            retention_ms: None,
            retention_bytes: None,
            cleanup: CleanupSetting::Compact,
            flush,
            ..config.topic_defaults.clone()
        };
        let offsets = internal_topic(
            &mut topics,
            &topics_dir,
            OFFSETS_TOPIC,
            internal(config.groups.offsets_flush),
        )?;
        let registry = internal_topic(
            &mut topics,
            &topics_dir,
            PROCESSORS_TOPIC,
            internal(crate::topic::FlushSetting::Always),
        )?;
        let processors = Processors::open(
            registry.partition(0)?.clone(),
            dir.join("processors"),
            Duration::from_millis(config.processors.retire_grace_ms),
        )?;
        let sql_log = internal_topic(
            &mut topics,
            &topics_dir,
            SQL_TOPIC,
            internal(crate::topic::FlushSetting::Always),
        )?;
        let sql = SqlService::open(sql_log.partition(0)?.clone())?;
        let log = offsets.partition(0)?.clone();
        let groups = Coordinator::open(log, config.groups.timing())?;
        tracing::info!(data_dir = %dir.display(), topics = topics.len(), "broker opened");
        let broker = Broker {
            inner: Arc::new(Inner {
                config,
                _lock: lock,
                topics: RwLock::new(topics),
                admin: Mutex::new(()),
                appended: Notify::new(),
                shutting_down: AtomicBool::new(false),
                producer_ids: Mutex::new(producer_ids),
                groups,
                append_signal: AppendSignal::default(),
                processors,
                sql,
            }),
        };
        broker.inner.processors.start_all(&broker);
        broker.inner.sql.reconcile(&broker);
        Ok(broker)
    }

    /// Wakes everything that waits for appends: long-polling fetches and processor tasks.
    pub(crate) fn appended(&self) {
        self.inner.appended.notify_waiters();
        self.inner.append_signal.bump();
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        let topics = self.inner.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.get(name).cloned().ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))
    }

    pub fn topic_names(&self) -> Vec<String> {
        self.inner.topics.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    fn topics(&self) -> Vec<Arc<Topic>> {
        self.inner.topics.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Creates a topic; `config` fields left unset take the broker's defaults.
    pub fn create_topic(
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
        let settings = TopicSettings::resolve(config, &self.inner.config.topic_defaults)?;
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        if self.topic(name).is_ok() {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        let topics_dir = self.inner.config.data_dir.join("topics");
        let topic = Arc::new(create_topic_files(&topics_dir, name, settings)?);
        self.inner
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions = topic.partitions.len(), "created topic");
        Ok(topic)
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        self.check_running()?;
        if topic::is_internal(name) && self.topic(name).is_ok() {
            return Err(BrokerError::InternalTopic(name.to_string()));
        }
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self
            .inner
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

    /// Allocates a producer id for an idempotent producer.
    pub fn init_producer(&self) -> Result<(i64, i16), BrokerError> {
        self.check_running()?;
        let id = self.inner.producer_ids.lock().unwrap_or_else(|p| p.into_inner()).allocate()?;
        Ok((id, 0))
    }

    /// Runs retention and compaction over every partition once, at `now_ms`.
    pub fn run_maintenance(&self, now_ms: i64) {
        for topic in self.topics() {
            for (p, log) in topic.partitions.iter().enumerate() {
                let outcome = log.enforce_retention(now_ms).and_then(|_| log.compact(now_ms));
                if let Err(e) = outcome {
                    tracing::warn!(topic = %topic.name, partition = p, error = %e, "maintenance failed");
                }
            }
        }
    }

    /// Refuses new requests (`SHUTTING_DOWN`) and ends waiting long polls now, with what they
    /// have; requests already running finish.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        self.inner.appended.notify_waiters();
    }

    /// Stops taking requests, wakes long polls, stops the processors (each writes a final
    /// snapshot), and flushes every partition.
    pub fn close(&self) -> Result<(), BrokerError> {
        self.begin_shutdown();
        self.inner.processors.stop_all();
        for topic in self.topics() {
            for (p, log) in topic.partitions.iter().enumerate() {
                log.flush().map_err(|source| BrokerError::Storage {
                    topic: topic.name.clone(),
                    partition: p as u32,
                    source,
                })?;
            }
        }
        tracing::info!("broker closed: every partition flushed");
        Ok(())
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
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
    Ok(Topic { name: name.to_string(), settings, dir: dir.to_path_buf(), partitions })
}

/// The internal topic `name`, created with `settings` if it does not exist yet.
fn internal_topic(
    topics: &mut BTreeMap<String, Arc<Topic>>,
    topics_dir: &Path,
    name: &str,
    settings: TopicSettings,
) -> Result<Arc<Topic>, BrokerError> {
    if let Some(t) = topics.get(name) {
        return Ok(t.clone());
    }
    let t = Arc::new(create_topic_files(topics_dir, name, settings)?);
    topics.insert(name.to_string(), t.clone());
    Ok(t)
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
    fs::create_dir_all(&dir).map_err(BrokerError::io("create", &dir))?;
    let json = serde_json::to_vec_pretty(&settings)
        .map_err(|e| BrokerError::InvalidConfig { field: "settings", reason: e.to_string() })?;
    let partitions = open_partitions(&dir, name, &settings)?;
    // The settings file makes the topic exist; it is written last, atomically.
    write_atomic(&dir.join(SETTINGS_FILE), &json)?;
    Ok(Topic { name: name.to_string(), settings, dir, partitions })
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

/// Write a temporary file, fsync, rename over, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BrokerError> {
    eddy_storage::write_atomic(path, bytes).map_err(BrokerError::data_dir)
}

/// Milliseconds since the Unix epoch, for retention.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// How long a fetch may wait at most, whatever it asks for.
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
