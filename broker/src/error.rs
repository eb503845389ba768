//! The broker's error type and its mapping to the protocol's stable error codes.
//!
//! Every distinct refusal is its own variant with structured fields, and maps to its own code
//! (docs/protocol.md lists them with what a client does); a `String` field carries only text a
//! parser produced (where in a spec), never the distinction between two failures.

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
    #[error(
        "data directory {path} is still open in this process: a Broker handle, or a Producer, Consumer or Admin built on one, is alive (close() and drop them first)"
    )]
    OpenInThisProcess { path: PathBuf },
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
    #[error(
        "group {group:?} has {members} member(s) of the other protocol ({protocol}); Kafka and eddy members cannot share a group"
    )]
    InconsistentGroupProtocol { group: String, members: usize, protocol: &'static str },
    /// A spec (or a stored SQL definition) that does not parse or check; the text says where.
    #[error("invalid processor spec: {0}")]
    InvalidSpec(String),
    #[error("{name}: version {serving} serves; deploy a higher version to replace it")]
    ProcessorExists { name: String, serving: u32 },
    #[error("{name}: version {building} is still building; wait for it or drop the processor")]
    VersionBuilding { name: String, building: u32 },
    #[error(
        "{name}: a processor deployed from a spec has this name; drop it or choose another name"
    )]
    NameTakenBySpec { name: String },
    #[error("processor {name:?} version {version} did not start: {source}")]
    ProcessorStart {
        name: String,
        version: u32,
        #[source]
        source: Box<eddy_processor::Error>,
    },
    #[error(
        "input {topic}-{partition} starts at offset {start_offset} (retention or compaction removed 0..{start_offset}); a full replay needs offset 0, so {name} version {version} would build a partial table"
    )]
    NotReplayable { name: String, version: u32, topic: String, partition: u32, start_offset: u64 },
    #[error(
        "{name}: no retired version to roll back to (its grace period ended, or there was none)"
    )]
    NoRetiredVersion { name: String },
    #[error("processor {name} version {version} is not running{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    ProcessorNotRunning { name: String, version: u32, reason: Option<String> },
    #[error("table {table:?} is in several processors; name one of {}", candidates.join(", "))]
    AmbiguousTable { table: String, candidates: Vec<String> },
    #[error("table {table}: {source}")]
    TableRead {
        table: String,
        #[source]
        source: Box<eddy_processor::TableError>,
    },
    #[error("{name} is read by the processor(s) {}; drop or terminate them first", readers.join(", "))]
    SourceInUse { name: String, readers: Vec<String> },
    #[error("a push query (SELECT ... EMIT CHANGES) must be sent alone; the client polls it")]
    PushNotAlone,
    #[error(
        "topic {topic} has {existing} partition(s); declare it WITH (..., PARTITIONS={existing})"
    )]
    PartitionMismatch { topic: String, existing: u32, declared: u32 },
    /// Dropping a SQL query's processor terminates the query; the TERMINATE failed.
    #[error("TERMINATE {query}: {message}")]
    Terminate { query: String, message: String },
    /// A blocking task of the broker's panicked or was cancelled.
    #[error("a broker task failed: {reason}")]
    TaskFailed { reason: String },
    #[error("unknown processor {0:?}")]
    UnknownProcessor(String),
    #[error("no serving processor has a table {0:?}")]
    UnknownTable(String),
    #[error("unknown connector {0:?}")]
    UnknownConnector(String),
    #[error("connector {0:?} exists; drop it first")]
    ConnectorExists(String),
    /// A connector's definition is refused (its options, its name, its kind).
    #[error("connector {name:?}: {reason}")]
    InvalidConnector { name: String, reason: String },
    /// An ACL refused the request: "User:bob may not WRITE topic orders-eu". The operation and
    /// resource type are the names `security::acl` gives them (`WRITE`, `topic`), so the Kafka
    /// listener can answer the Kafka code for the resource type.
    #[error("{principal} may not {operation} {resource_type} {resource}")]
    Unauthorized {
        principal: String,
        operation: &'static str,
        resource_type: &'static str,
        resource: String,
    },
    /// An ACL binding or filter that cannot be stored or applied; the text says which field.
    #[error("invalid ACL: {0}")]
    InvalidAcl(String),
    /// A request other than ApiVersions or SASL's on an unauthenticated connection of a
    /// listener that requires authentication.
    #[error(
        "this listener requires authentication: authenticate (SaslHandshake, SaslAuthenticate) before {request}"
    )]
    AuthenticationRequired { request: &'static str },
    /// A refused authentication (the text never says whether the user exists).
    #[error("{0}")]
    AuthenticationFailed(String),
    /// An authenticated user already holds its share of a listener's connections.
    #[error(
        "{principal} already has {max} connections to this listener (auth.max_connections_per_principal)"
    )]
    PrincipalConnections { principal: String, max: u32 },
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("user {0:?} exists")]
    UserExists(String),
    /// A user name, password or credential that cannot be stored.
    #[error("user {name:?}: {reason}")]
    InvalidUser { name: String, reason: String },
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
            BrokerError::Locked { .. }
            | BrokerError::OpenInThisProcess { .. }
            | BrokerError::Io { .. } => ErrorCode::StorageError,
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
            BrokerError::InconsistentGroupProtocol { .. } => ErrorCode::InconsistentGroupProtocol,
            BrokerError::InvalidSpec(_) => ErrorCode::InvalidProcessorSpec,
            BrokerError::ProcessorExists { .. } => ErrorCode::ProcessorExists,
            BrokerError::VersionBuilding { .. } => ErrorCode::VersionBuilding,
            BrokerError::NameTakenBySpec { .. } => ErrorCode::NameTakenBySpec,
            BrokerError::ProcessorStart { .. } => ErrorCode::ProcessorStartFailed,
            BrokerError::NotReplayable { .. } => ErrorCode::ReplayNeedsOffsetZero,
            BrokerError::NoRetiredVersion { .. } => ErrorCode::NoRetiredVersion,
            BrokerError::ProcessorNotRunning { .. } => ErrorCode::ProcessorNotRunning,
            BrokerError::AmbiguousTable { .. } => ErrorCode::AmbiguousTable,
            BrokerError::TableRead { .. } => ErrorCode::StorageError,
            BrokerError::SourceInUse { .. } => ErrorCode::SourceInUse,
            BrokerError::PushNotAlone => ErrorCode::PushQueryNotAlone,
            BrokerError::PartitionMismatch { .. } => ErrorCode::PartitionCountMismatch,
            BrokerError::Terminate { .. } => ErrorCode::TerminateFailed,
            BrokerError::TaskFailed { .. } => ErrorCode::Unknown,
            BrokerError::UnknownProcessor(_) => ErrorCode::UnknownProcessor,
            BrokerError::UnknownTable(_) => ErrorCode::UnknownTable,
            BrokerError::UnknownConnector(_) => ErrorCode::UnknownConnector,
            BrokerError::ConnectorExists(_) => ErrorCode::ConnectorExists,
            BrokerError::InvalidConnector { .. } => ErrorCode::InvalidConnector,
            BrokerError::Unauthorized { .. } => ErrorCode::AuthorizationFailed,
            BrokerError::InvalidAcl(_) => ErrorCode::MalformedRequest,
            BrokerError::AuthenticationRequired { .. } => ErrorCode::AuthenticationRequired,
            BrokerError::AuthenticationFailed(_) => ErrorCode::AuthenticationFailed,
            BrokerError::PrincipalConnections { .. } => ErrorCode::TooManyConnections,
            BrokerError::UnknownUser(_) => ErrorCode::UnknownUser,
            BrokerError::UserExists(_) => ErrorCode::UserExists,
            BrokerError::InvalidUser { .. } => ErrorCode::MalformedRequest,
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
