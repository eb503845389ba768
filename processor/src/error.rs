//! The processor's error types. A record that cannot be decoded is not an error (it is counted and
//! sent to the dead-letter topic); these are the failures that stop a task or a build.
//!
//! Invariant: a [`RecordError`] is about one record and never stops a task (the record is set
//! aside); an [`Error`] is what does stop a task or fails a build.

use std::path::PathBuf;

use eddy_storage::BatchError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure of the log underneath, as reported by a [`LogAccess`](crate::LogAccess).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("topic {topic:?} does not exist")]
    UnknownTopic { topic: String },
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("invalid topic name {topic:?}: {reason}")]
    InvalidTopic { topic: String, reason: &'static str },
    #[error(
        "topic {topic:?} exists with {existing} partitions (compacted: {compacted}), not as asked"
    )]
    TopicMismatch { topic: String, existing: u32, compacted: bool },
    #[error("partition {topic}-{partition}: {source}")]
    Storage {
        topic: String,
        partition: u32,
        #[source]
        source: eddy_storage::Error,
    },
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("topic metadata {path} is unreadable: {source}")]
    TopicMeta {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// An implementation's own failure (the broker's, say), kept with its source.
    #[error("log backend failed on {topic}-{partition}: {source}")]
    Backend {
        topic: String,
        partition: u32,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why a processor could not be built, started, or kept running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(
        "sources {first:?} ({first_partitions} partitions) and {second:?} ({second_partitions}) share tasks but are not co-partitioned"
    )]
    NotCoPartitioned {
        first: String,
        first_partitions: u32,
        second: String,
        second_partitions: u32,
    },
    #[error("processor definition: {reason}")]
    Definition { reason: &'static str },
    #[error("table {name:?} is defined twice")]
    DuplicateTable { name: String },
    #[error("no table named {name:?}")]
    UnknownTable { name: String },
    #[error("bad batch in {topic}-{partition} near offset {offset}: {fault}")]
    BadBatch { topic: String, partition: u32, offset: u64, fault: BatchError },
    #[error("snapshot {path} is damaged: {fault}")]
    CorruptSnapshot { path: PathBuf, fault: &'static str },
    #[error("snapshot {path} has format version {found}; this build reads version {supported}")]
    SnapshotVersion { path: PathBuf, found: u8, supported: u8 },
    #[error("snapshot {path} does not match this processor: {reason}")]
    SnapshotMismatch { path: PathBuf, reason: &'static str },
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write snapshot: {0}")]
    SnapshotWrite(#[source] eddy_storage::Error),
    #[error("step journal of {topic}-{partition} at offset {offset} is damaged")]
    CorruptJournal { topic: String, partition: u32, offset: u64 },
    #[error("the state of operator {op} cannot be encoded: {source}")]
    EncodeState {
        op: u32,
        #[source]
        source: serde_json::Error,
    },
    #[error("worker {worker} panicked; its tasks stopped")]
    WorkerPanicked { worker: String },
    #[error("task {task} failed: {source}")]
    TaskFailed {
        task: String,
        #[source]
        source: std::sync::Arc<Error>,
    },
    #[error("timed out waiting for the processor to catch up")]
    Timeout,
    #[error("failed to start a worker thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Why a table read failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("the key cannot be encoded: {0}")]
    Key(#[source] serde_json::Error),
    #[error("the stored value does not decode as the asked type: {0}")]
    Value(String),
}

/// Why one record was set aside (counted, and sent to the dead-letter topic if there is one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("key does not decode: {0}")]
    Key(String),
    #[error("value does not decode: {0}")]
    Value(String),
    #[error(
        "record is too late: event time {event_time_ms} is behind the watermark {watermark_ms}"
    )]
    TooLate { event_time_ms: i64, watermark_ms: i64 },
    #[error("a key or value cannot be encoded or decoded: {0}")]
    State(String),
}

impl RecordError {
    /// A short, stable tag for the dead-letter header.
    pub fn kind(&self) -> &'static str {
        match self {
            RecordError::Key(_) => "key",
            RecordError::Value(_) => "value",
            RecordError::TooLate { .. } => "late",
            RecordError::State(_) => "state",
        }
    }
}
