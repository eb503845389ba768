//! eddy-client: talk to an eddy broker — over TCP, or in-process to an embedded broker — with
//! one API.
//!
//! - [`Transport`]: sends a request body and returns the response body. [`tcp::Connection`]
//!   implements it over a socket (pipelined); `eddy_broker::Broker` implements it in-process.
//!   `Arc<T>` is a transport too, so one connection can serve a producer, a consumer and an
//!   admin at once.
//! - [`Producer`] ([`producer`]): batches records per partition in a background task and keeps
//!   several produce requests in flight; idempotent by default.
//! - [`Consumer`] ([`consumer`]): reads assigned partitions with long-polling fetches and hands
//!   out whole batches, decoded lazily.
//! - [`GroupConsumer`] ([`group`]): a consumer group member — heartbeats, follows the
//!   broker's assignment, reads from committed offsets, commits (auto, sync, async).
//! - [`Admin`] ([`admin`]): topics, metadata, offsets and groups; [`acl`]: its ACL calls.
//! - [`partitioner`]: which partition a keyed record goes to (Kafka's murmur2, so keys land
//!   where a Kafka user expects).
//! - [`record`]: the owned record types passed in and out.
//! - [`sasl`]: SASL mechanisms, SCRAM's derivation and messages (shared with the broker), and
//!   the client's side of an authentication ([`tcp::Credentials`]).
//!
//! Not a broker and not a storage engine: it never decodes records on the produce path beyond
//! encoding them once into a batch, and never keeps data past its acknowledgement.
#![forbid(unsafe_code)]

pub mod acl;
pub mod admin;
pub mod consumer;
#[cfg(test)]
mod fake_broker;
pub mod group;
pub mod partitioner;
pub mod producer;
pub mod record;
pub mod sasl;
pub mod tcp;

use std::future::Future;
use std::sync::Arc;

use eddy_protocol::v1::{self, request, response};

pub use admin::{Admin, GroupReset, ListedOffset, OffsetQuery};
pub use consumer::{ConsumedBatch, Consumer, ConsumerConfig, SeekTo};
pub use eddy_protocol::ErrorCode;
pub use eddy_protocol::v1::{Acks, IsolationLevel, TopicConfig};
pub use group::{
    CommitHandle, GroupConfig, GroupConsumer, NoListener, RebalanceListener, TopicPartition,
};
pub use producer::{BatchDelivery, Delivery, Producer, ProducerConfig};
pub use record::{BatchMetadata, ConsumerRecord, ProducerRecord, RecordHeader, RecordMetadata};
pub use tcp::{Connection, ConnectionOptions, Credentials, TlsOptions};

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The broker answered with an error for the whole request.
    #[error("broker error {0}")]
    Broker(v1::Error),
    /// The broker answered with a body of the wrong kind, or none.
    #[error("unexpected response: {0}")]
    UnexpectedResponse(&'static str),
    /// The connection failed or was closed.
    #[error("connection to {addr}: {source}")]
    Connection {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection closed while requests were in flight.
    #[error("connection to {addr} closed")]
    Closed { addr: String },
    /// A frame from the broker did not decode.
    #[error("bad frame from {addr}: {source}")]
    Frame {
        addr: String,
        #[source]
        source: eddy_protocol::FrameError,
    },
    /// No answer within the configured timeout.
    #[error("request timed out after {ms} ms")]
    Timeout { ms: u64 },
    /// Building a record batch failed (for example, `Producer::send_batch` was given no
    /// records).
    #[error("invalid batch: {0}")]
    Batch(#[from] eddy_storage::BatchError),
    /// The broker refused one topic of a request (for example `UNKNOWN_TOPIC`).
    #[error("topic {topic}: {error}")]
    Topic { topic: String, error: v1::Error },
    /// The broker refused one partition of a request (for example `OFFSET_OUT_OF_RANGE`,
    /// `UNKNOWN_PARTITION`, `BATCH_TOO_LARGE`).
    #[error("{topic}/{partition}: {error}")]
    Partition { topic: String, partition: u32, error: v1::Error },
    /// A fetched batch failed its checks: the bytes are not what the broker stored.
    #[error("{topic}/{partition}: fetched batch at offset {offset}: {source}")]
    CorruptFetch {
        topic: String,
        partition: u32,
        offset: u64,
        #[source]
        source: eddy_storage::BatchError,
    },
    /// A request is larger than the broker's `max_frame_bytes`; it was not sent.
    #[error("request of {bytes} bytes exceeds the broker's frame limit of {max} bytes")]
    RequestTooLarge { bytes: u64, max: u32 },
    /// The broker does not speak protocol version 1.
    #[error("broker chose protocol version {version}; this client speaks {supported}")]
    UnsupportedVersion { version: u32, supported: u32 },
    /// The producer was closed (or its background task stopped) before the record was sent.
    #[error("producer is closed")]
    ProducerClosed,
    /// A configuration value is not usable.
    #[error("invalid {field}: {reason}")]
    Config { field: &'static str, reason: &'static str },
    /// The consumer was asked about a partition it is not assigned.
    #[error("{topic}/{partition} is not assigned to this consumer")]
    NotAssigned { topic: String, partition: u32 },
    /// `Producer::send_batch` without a partition was given records whose keys hash to
    /// different partitions; nothing was sent.
    #[error(
        "{topic}: the keys of one batch hash to partitions {first} and {other}; \
         send them in separate batches or name the partition"
    )]
    KeysSpanPartitions { topic: String, first: u32, other: u32 },
    /// An idempotent producer's batch was not sent again because an earlier batch of its
    /// partition failed for good (`cause`): it cannot be appended in sequence after a refused
    /// batch, and after a failure whose outcome is unknown its own outcome is unknown too (it
    /// may have been written, exactly once, like any batch whose answer was lost).
    #[error("{topic}/{partition}: an earlier batch of the partition failed: {cause}")]
    PrecedingBatchFailed { topic: String, partition: u32, cause: Box<ClientError> },
    /// TLS with the broker failed: its certificate was refused (untrusted issuer, expired, not
    /// for this name), it did not answer with TLS, or it refused this client's certificate.
    #[error("TLS with {addr}: {reason}")]
    Tls { addr: String, reason: String },
    /// A TLS file (CA, certificate, key) could not be used.
    #[error("TLS file {path}: {reason}")]
    TlsSetup { path: String, reason: String },
    /// Authenticating the connection failed: the broker refused it (`code` is its error code:
    /// `AUTHENTICATION_FAILED`, `TOO_MANY_CONNECTIONS`), or the exchange broke on this side (a
    /// broker whose SCRAM signature is wrong).
    #[error("authentication as {user:?} with {mechanism} failed: {reason}")]
    Authentication {
        user: String,
        mechanism: &'static str,
        reason: String,
        code: Option<ErrorCode>,
    },
}

impl ClientError {
    /// The broker's error code, when the broker reported this error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Broker(e) | Self::Topic { error: e, .. } | Self::Partition { error: e, .. } => {
                Some(e.error_code())
            }
            Self::Authentication { code, .. } => *code,
            _ => None,
        }
    }

    /// Whether the failure happened on the way to or from the broker, so a request may or may
    /// not have been applied.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            Self::Connection { .. } | Self::Closed { .. } | Self::Timeout { .. } | Self::Tls { .. }
        )
    }
}

/// A copy of the error for each of several waiters (one failed batch fails all its records).
/// `std::io::Error` is not `Clone`; its copy keeps the kind and the message.
impl Clone for ClientError {
    fn clone(&self) -> Self {
        match self {
            Self::Broker(e) => Self::Broker(e.clone()),
            Self::UnexpectedResponse(s) => Self::UnexpectedResponse(s),
            Self::Connection { addr, source } => Self::Connection {
                addr: addr.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Self::Closed { addr } => Self::Closed { addr: addr.clone() },
            Self::Frame { addr, source } => {
                Self::Frame { addr: addr.clone(), source: source.clone() }
            }
            Self::Timeout { ms } => Self::Timeout { ms: *ms },
            Self::Batch(e) => Self::Batch(*e),
            Self::Topic { topic, error } => {
                Self::Topic { topic: topic.clone(), error: error.clone() }
            }
            Self::Partition { topic, partition, error } => Self::Partition {
                topic: topic.clone(),
                partition: *partition,
                error: error.clone(),
            },
            Self::CorruptFetch { topic, partition, offset, source } => Self::CorruptFetch {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
                source: *source,
            },
            Self::RequestTooLarge { bytes, max } => {
                Self::RequestTooLarge { bytes: *bytes, max: *max }
            }
            Self::UnsupportedVersion { version, supported } => {
                Self::UnsupportedVersion { version: *version, supported: *supported }
            }
            Self::ProducerClosed => Self::ProducerClosed,
            Self::Config { field, reason } => Self::Config { field, reason },
            Self::NotAssigned { topic, partition } => {
                Self::NotAssigned { topic: topic.clone(), partition: *partition }
            }
            Self::KeysSpanPartitions { topic, first, other } => {
                Self::KeysSpanPartitions { topic: topic.clone(), first: *first, other: *other }
            }
            Self::PrecedingBatchFailed { topic, partition, cause } => Self::PrecedingBatchFailed {
                topic: topic.clone(),
                partition: *partition,
                cause: cause.clone(),
            },
            Self::Tls { addr, reason } => Self::Tls { addr: addr.clone(), reason: reason.clone() },
            Self::TlsSetup { path, reason } => {
                Self::TlsSetup { path: path.clone(), reason: reason.clone() }
            }
            Self::Authentication { user, mechanism, reason, code } => Self::Authentication {
                user: user.clone(),
                mechanism,
                reason: reason.clone(),
                code: *code,
            },
        }
    }
}

/// Carries request bodies to a broker and brings back its answers.
///
/// Implementations must allow many calls at once (pipelining): a producer keeps several produce
/// requests in flight on one transport.
pub trait Transport: Send + Sync + 'static {
    /// Sends `body` and waits for its response body. A response carrying a request-level error
    /// becomes `ClientError::Broker`.
    fn call(
        &self,
        body: request::Body,
    ) -> impl Future<Output = Result<response::Body, ClientError>> + Send;

    /// Sends `body` without waiting for an answer (produce with `ACKS_NONE`, which the broker
    /// never answers).
    fn send(&self, body: request::Body) -> impl Future<Output = Result<(), ClientError>> + Send;
}

impl<T: Transport> Transport for Arc<T> {
    fn call(
        &self,
        body: request::Body,
    ) -> impl Future<Output = Result<response::Body, ClientError>> + Send {
        (**self).call(body)
    }

    fn send(&self, body: request::Body) -> impl Future<Output = Result<(), ClientError>> + Send {
        (**self).send(body)
    }
}

/// Takes the expected variant out of a response body, or fails with `UnexpectedResponse`.
macro_rules! expect_body {
    ($body:expr, $variant:ident) => {
        match $body {
            ::eddy_protocol::v1::response::Body::$variant(inner) => Ok(inner),
            _ => Err($crate::ClientError::UnexpectedResponse(concat!(
                "expected a ",
                stringify!($variant),
                " response"
            ))),
        }
    };
}
pub(crate) use expect_body;
