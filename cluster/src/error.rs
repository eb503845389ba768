//! The errors of a Kafka-backed log, and how they reach the processor runtime.
//!
//! Invariant: every failure of librdkafka is kept with the operation and partition it hit
//! ([`ClusterError`]); the runtime sees it as a [`LogError`] — the variants it acts on
//! (`UnknownTopic`, `UnknownPartition`, `TopicMismatch`) as themselves, everything else as
//! [`LogError::Backend`] with this error as its source.

use eddy_processor::LogError;
use rdkafka::error::KafkaError;

/// A failure talking to the Kafka-protocol cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    #[error("cannot create the {what} client: {source}")]
    Client {
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("{op} {topic}-{partition}: {source}")]
    Kafka {
        op: &'static str,
        topic: String,
        partition: u32,
        #[source]
        source: KafkaError,
    },
    #[error("topic {topic:?} does not exist")]
    UnknownTopic { topic: String },
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("topic {topic:?} exists with {existing} partitions, not {wanted}")]
    TopicMismatch { topic: String, existing: u32, wanted: u32 },
    #[error("{op} {topic}-{partition} took longer than {timeout_ms} ms")]
    Timeout { op: &'static str, topic: String, partition: u32, timeout_ms: u64 },
    #[error("{topic}-{partition}: a batch to append does not decode: {source}")]
    BadBatch {
        topic: String,
        partition: u32,
        #[source]
        source: eddy_storage::BatchError,
    },
    #[error("{topic}-{partition}: header key {key:?} is not UTF-8, which Kafka clients require")]
    HeaderKey { topic: String, partition: u32, key: Vec<u8> },
    #[error("{topic}-{partition}: offset {offset} is below the partition's start {start}")]
    OffsetBelowStart { topic: String, partition: u32, offset: u64, start: u64 },
    #[error("producer {transactional_id:?} was fenced: another instance took its task partition")]
    Fenced { transactional_id: String },
    #[error("{topic}-{partition}: the cluster answered an impossible {what} ({value})")]
    Impossible { topic: String, partition: u32, what: &'static str, value: i64 },
}

impl From<ClusterError> for LogError {
    fn from(e: ClusterError) -> LogError {
        match e {
            ClusterError::UnknownTopic { topic } => LogError::UnknownTopic { topic },
            ClusterError::UnknownPartition { topic, partition } => {
                LogError::UnknownPartition { topic, partition }
            }
            ClusterError::TopicMismatch { topic, existing, .. } => {
                LogError::TopicMismatch { topic, existing, compacted: false }
            }
            other => {
                let (topic, partition) = other.place();
                LogError::Backend { topic, partition, source: Box::new(other) }
            }
        }
    }
}

impl ClusterError {
    /// The topic and partition the error is about (empty and 0 for a client's creation).
    fn place(&self) -> (String, u32) {
        match self {
            ClusterError::Client { .. } => (String::new(), 0),
            ClusterError::Fenced { transactional_id } => (transactional_id.clone(), 0),
            ClusterError::UnknownTopic { topic } | ClusterError::TopicMismatch { topic, .. } => {
                (topic.clone(), 0)
            }
            ClusterError::Kafka { topic, partition, .. }
            | ClusterError::UnknownPartition { topic, partition }
            | ClusterError::Timeout { topic, partition, .. }
            | ClusterError::BadBatch { topic, partition, .. }
            | ClusterError::HeaderKey { topic, partition, .. }
            | ClusterError::OffsetBelowStart { topic, partition, .. }
            | ClusterError::Impossible { topic, partition, .. } => (topic.clone(), *partition),
        }
    }
}

/// A `map_err` for librdkafka calls about one partition.
pub(crate) fn kafka(
    op: &'static str,
    topic: &str,
    partition: u32,
) -> impl FnOnce(KafkaError) -> ClusterError {
    let topic = topic.to_owned();
    move |source| ClusterError::Kafka { op, topic, partition, source }
}
