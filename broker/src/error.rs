//! The broker's error type and its mapping to the protocol's stable error codes.

use std::path::PathBuf;

use eddy_protocol::ErrorCode;
use eddy_protocol::v1;

/// What a broker operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("invalid config {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("data directory {path} is in use by another broker")]
    Locked { path: PathBuf },
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{topic}-{partition}: {source}")]
    Storage {
        topic: String,
        partition: u32,
        #[source]
        source: eddy_storage::Error,
    },
    /// A failure on the data directory itself (not one partition's log).
    #[error("data directory: {0}")]
    DataDir(#[source] eddy_storage::Error),
    #[error("the broker is shutting down")]
    ShuttingDown,
    #[error("topic {0:?} is internal to the broker: it may be read, not written or deleted")]
    InternalTopic(String),
    #[error("group {group:?} has no member {member:?} (it left, was expelled, or never joined)")]
    UnknownMember { group: String, member: String },
    #[error(
        "member {member:?} of group {group:?} sent epoch {sent}, its epoch is {current}: rejoin"
    )]
    FencedEpoch { group: String, member: String, sent: i32, current: i32 },
    #[error(
        "member {member:?} of group {group:?}: epoch {sent} is stale for {topic}-{partition} ({reason})"
    )]
    StaleEpoch {
        group: String,
        member: String,
        sent: i32,
        topic: String,
        partition: u32,
        reason: &'static str,
    },
    #[error("member {member:?} of group {group:?} does not own {topic}-{partition}")]
    NotAssigned { group: String, member: String, topic: String, partition: u32 },
    #[error("group {group:?} has {members} active member(s); {what} needs an empty group")]
    GroupNotEmpty { group: String, members: usize, what: &'static str },
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    #[error("invalid group id {id:?}: {reason}")]
    InvalidGroupId { id: String, reason: &'static str },
    #[error("unsupported assignor {0:?} (this broker has sticky, range, round-robin)")]
    UnsupportedAssignor(String),
    #[error("invalid processor spec: {0}")]
    InvalidSpec(String),
    /// A SQL statement the broker refused (beyond what the SQL layer checks).
    #[error("{0}")]
    Sql(String),
    #[error("processor {0:?} is deployed already (drop it first)")]
    ProcessorExists(String),
    #[error("unknown processor {0:?}")]
    UnknownProcessor(String),
    #[error("no serving processor has a table {0:?}")]
    UnknownTable(String),
}

impl BrokerError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| BrokerError::Io { op, path, source }
    }

    /// A storage error about the data directory (its lock, its metadata files).
    pub(crate) fn data_dir(e: eddy_storage::Error) -> Self {
        match e {
            eddy_storage::Error::Locked { path } => BrokerError::Locked { path },
            other => BrokerError::DataDir(other),
        }
    }

    /// The stable protocol code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            BrokerError::UnknownTopic(_) => ErrorCode::UnknownTopic,
            BrokerError::UnknownPartition { .. } => ErrorCode::UnknownPartition,
            BrokerError::TopicExists(_) => ErrorCode::TopicAlreadyExists,
            BrokerError::InvalidTopicName { .. } | BrokerError::InvalidConfig { .. } => {
                ErrorCode::InvalidConfig
            }
            BrokerError::Malformed(_) => ErrorCode::MalformedRequest,
            BrokerError::Locked { .. } | BrokerError::Io { .. } => ErrorCode::StorageError,
            BrokerError::DataDir(source) => storage_code(source),
            BrokerError::ShuttingDown => ErrorCode::ShuttingDown,
            BrokerError::InternalTopic(_) => ErrorCode::InternalTopic,
            BrokerError::UnknownMember { .. } => ErrorCode::UnknownMemberId,
            BrokerError::FencedEpoch { .. } => ErrorCode::FencedMemberEpoch,
            BrokerError::StaleEpoch { .. } => ErrorCode::StaleMemberEpoch,
            BrokerError::NotAssigned { .. } => ErrorCode::NotAssigned,
            BrokerError::GroupNotEmpty { .. } => ErrorCode::GroupNotEmpty,
            BrokerError::UnknownGroup(_) => ErrorCode::UnknownGroup,
            BrokerError::InvalidGroupId { .. } => ErrorCode::InvalidGroupId,
            BrokerError::UnsupportedAssignor(_) => ErrorCode::UnsupportedAssignor,
            BrokerError::InvalidSpec(_) | BrokerError::Sql(_) => ErrorCode::InvalidProcessorSpec,
            BrokerError::ProcessorExists(_) => ErrorCode::ProcessorExists,
            BrokerError::UnknownProcessor(_) => ErrorCode::UnknownProcessor,
            BrokerError::UnknownTable(_) => ErrorCode::UnknownTable,
            BrokerError::Storage { source, .. } => storage_code(source),
        }
    }

    /// This error as it travels on the wire.
    pub fn to_wire(&self) -> v1::Error {
        v1::Error::new(self.code(), self.to_string())
    }
}

fn storage_code(e: &eddy_storage::Error) -> ErrorCode {
    use eddy_storage::Error as E;
    match e {
        E::NoSpace { .. } => ErrorCode::NoSpace,
        E::Corrupt { .. } => ErrorCode::CorruptStorage,
        E::InvalidBatch(_) => ErrorCode::InvalidBatch,
        E::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
        E::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        E::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
        E::ProducerFenced { .. } => ErrorCode::ProducerFenced,
        E::MissingKey { .. } => ErrorCode::MissingKey,
        E::InvalidConfig { .. } => ErrorCode::InvalidConfig,
        _ => ErrorCode::StorageError,
    }
}
