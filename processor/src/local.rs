//! [`LocalLogs`]: topics as directories of `eddy_storage::Log`s, one per partition.
//!
//! ```text
//! root/
//!   orders/
//!     topic.json        {"partitions": 4, "compacted": false}   written atomically, never changed
//!     0/ 1/ 2/ 3/       one eddy_storage::Log each
//! ```
//!
//! Every log of a topic is opened when the topic is first touched and stays open (and locked)
//! until the `LocalLogs` is dropped. Appends bump a generation counter under a mutex and notify a
//! condvar, which is how [`LogAccess::wait_for_data`] waits without polling.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use eddy_storage::vfs::{Fs, OpenMode};
use eddy_storage::{Cleanup, Log, LogConfig, ValidBatch};
use serde::{Deserialize, Serialize};

use crate::error::LogError;
use crate::log_access::{Appended, LogAccess, WaitFor};

const META_FILE: &str = "topic.json";
const TOPIC_NAME_MAX: usize = 200;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct TopicMeta {
    partitions: u32,
    compacted: bool,
}

#[derive(Debug)]
struct Topic {
    meta: TopicMeta,
    partitions: Vec<Log>,
}

/// A directory of topics on the local disk.
#[derive(Debug)]
pub struct LocalLogs {
    /// Every file operation goes through it (`eddy_storage::vfs`).
    fs: Fs,
    root: PathBuf,
    config: LogConfig,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serialises topic creation and opening (rare) so two callers never open one log twice.
    opening: Mutex<()>,
    appended: Mutex<u64>,
    wake: Condvar,
}

/// Wraps a storage error of `topic`/`partition`.
fn storage_error(topic: &str, partition: u32) -> impl FnOnce(eddy_storage::Error) -> LogError {
    let topic = topic.to_owned();
    move |source| LogError::Storage { topic, partition, source }
}

impl LocalLogs {
    /// Opens (creating if needed) the topics under `root`. `config` is used for every partition;
    /// compacted topics get `Cleanup::Compact`.
    pub fn open(root: impl AsRef<Path>, config: LogConfig) -> Result<Self, LogError> {
        Self::open_on(eddy_storage::vfs::os(), root, config)
    }

    /// [`LocalLogs::open`] on the file system `fs` (a simulated one in power-loss tests).
    pub fn open_on(fs: Fs, root: impl AsRef<Path>, config: LogConfig) -> Result<Self, LogError> {
        let root = root.as_ref().to_path_buf();
        create_dir_durable(&*fs, &root)?;
        Ok(Self {
            fs,
            root,
            config,
            topics: RwLock::new(HashMap::new()),
            opening: Mutex::new(()),
            appended: Mutex::new(0),
            wake: Condvar::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Names of the topics on disk, sorted.
    pub fn topics(&self) -> Result<Vec<String>, LogError> {
        let entries = self.fs.read_dir(&self.root).map_err(io("list", &self.root))?;
        let mut names = Vec::new();
        for name in entries {
            let meta = self.root.join(&name).join(META_FILE);
            if self.fs.open(&meta, OpenMode::READ).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, LogError> {
        if let Some(t) = self.topics.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(t.clone());
        }
        let _opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = self.topics.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(t.clone());
        }
        validate_name(name)?;
        let dir = self.root.join(name);
        let meta_path = dir.join(META_FILE);
        let bytes = match self.fs.read(&meta_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LogError::UnknownTopic { topic: name.to_owned() });
            }
            Err(e) => return Err(io("read", &meta_path)(e)),
        };
        let meta: TopicMeta = serde_json::from_slice(&bytes)
            .map_err(|source| LogError::TopicMeta { path: meta_path.clone(), source })?;
        let topic = Arc::new(self.open_partitions(name, &dir, meta)?);
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), topic.clone());
        Ok(topic)
    }

    fn open_partitions(&self, name: &str, dir: &Path, meta: TopicMeta) -> Result<Topic, LogError> {
        let mut config = self.config.clone();
        if meta.compacted {
            config.cleanup = Cleanup::Compact;
        }
        let partitions = (0..meta.partitions)
            .map(|p| {
                Log::open_on(self.fs.clone(), dir.join(p.to_string()), config.clone())
                    .map_err(storage_error(name, p))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Topic { meta, partitions })
    }

    fn with_log<T>(
        &self,
        topic: &str,
        partition: u32,
        f: impl FnOnce(&Log) -> eddy_storage::Result<T>,
    ) -> Result<T, LogError> {
        let t = self.topic(topic)?;
        let log = t
            .partitions
            .get(partition as usize)
            .ok_or_else(|| LogError::UnknownPartition { topic: topic.to_owned(), partition })?;
        f(log).map_err(|source| LogError::Storage { topic: topic.to_owned(), partition, source })
    }

    /// Compacts every compacted topic's sealed segments (a test or an operator calls this; the
    /// local logs run no background cleaner).
    pub fn compact_all(&self, now_ms: i64) -> Result<(), LogError> {
        for name in self.topics()? {
            let t = self.topic(&name)?;
            if !t.meta.compacted {
                continue;
            }
            for (p, log) in t.partitions.iter().enumerate() {
                log.compact(now_ms).map_err(|source| LogError::Storage {
                    topic: name.clone(),
                    partition: p as u32,
                    source,
                })?;
            }
        }
        Ok(())
    }

    fn notify(&self) {
        let mut generation = self.appended.lock().unwrap_or_else(|p| p.into_inner());
        *generation += 1;
        self.wake.notify_all();
    }
}

impl LogAccess for LocalLogs {
    fn partition_count(&self, topic: &str) -> Result<u32, LogError> {
        Ok(self.topic(topic)?.meta.partitions)
    }

    fn create_topic(&self, topic: &str, partitions: u32, compacted: bool) -> Result<(), LogError> {
        match self.topic(topic) {
            Ok(t) if t.meta.partitions == partitions => return Ok(()),
            Ok(t) => {
                return Err(LogError::TopicMismatch {
                    topic: topic.to_owned(),
                    existing: t.meta.partitions,
                    compacted: t.meta.compacted,
                });
            }
            Err(LogError::UnknownTopic { .. }) => {}
            Err(e) => return Err(e),
        }
        if partitions == 0 {
            return Err(LogError::InvalidTopic {
                topic: topic.to_owned(),
                reason: "a topic needs at least one partition",
            });
        }
        let _opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.root.join(topic);
        let meta_path = dir.join(META_FILE);
        if self.fs.open(&meta_path, OpenMode::READ).is_err() {
            // Durably: a topic directory lost in a power loss would take its partitions along.
            create_dir_durable(&*self.fs, &dir)?;
            let meta = TopicMeta { partitions, compacted };
            let bytes = serde_json::to_vec(&meta)
                .map_err(|source| LogError::TopicMeta { path: meta_path.clone(), source })?;
            eddy_storage::write_atomic_on(&*self.fs, &meta_path, &bytes)
                .map_err(storage_error(topic, 0))?;
        }
        drop(_opening);
        self.topic(topic).map(|_| ())
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
    ) -> Result<Bytes, LogError> {
        self.with_log(topic, partition, |log| log.read(from, max_bytes))
    }

    fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.with_log(topic, partition, |log| Ok(log.start_offset()))
    }

    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.with_log(topic, partition, |log| Ok(log.next_offset()))
    }

    fn append(
        &self,
        topic: &str,
        partition: u32,
        batch: &ValidBatch,
    ) -> Result<Appended, LogError> {
        let info = self.with_log(topic, partition, |log| log.append_valid(batch))?;
        self.notify();
        Ok(Appended { base_offset: info.base_offset, last_offset: info.last_offset })
    }

    fn flush(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        self.with_log(topic, partition, |log| log.flush())
    }

    fn wait_for_data(&self, interests: &[WaitFor<'_>], deadline: Instant) -> bool {
        let has_data = || {
            interests
                .iter()
                .any(|w| self.end_offset(w.topic, w.partition).is_ok_and(|e| e > w.offset))
        };
        let mut generation = self.appended.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            // Checked under the lock: an append bumps the generation under it after writing, so
            // one that lands after this check wakes the wait below.
            if has_data() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let seen = *generation;
            let (g, _) = self
                .wake
                .wait_timeout_while(generation, deadline - now, |g| *g == seen)
                .unwrap_or_else(|p| p.into_inner());
            generation = g;
        }
    }
}

fn validate_name(name: &str) -> Result<(), LogError> {
    let bad = |reason| Err(LogError::InvalidTopic { topic: name.to_owned(), reason });
    if name.is_empty() || name.len() > TOPIC_NAME_MAX {
        return bad("must be 1 to 200 bytes");
    }
    if name == "." || name == ".." {
        return bad("must not be . or ..");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return bad("may hold only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Creates `dir` (and missing parents), each fsynced in its parent: a directory lost in a power
/// loss would take everything in it along.
fn create_dir_durable(fs: &dyn eddy_storage::vfs::FileSystem, dir: &Path) -> Result<(), LogError> {
    let created = fs.create_dir_all(dir).map_err(io("create", dir))?;
    for made in created.iter().rev() {
        if let Some(parent) = made.parent() {
            fs.sync_dir(parent).map_err(io("fsync directory", parent))?;
        }
    }
    Ok(())
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LogError {
    let path = path.to_path_buf();
    move |source| LogError::Io { op, path, source }
}
