//! eddy-client: talk to an eddy broker — over TCP, or in-process to an embedded broker — with
//! one API.
//!
//! - [`Transport`]: sends a request body and returns the response body. [`tcp::Connection`]
//!   implements it over a socket (pipelined); `eddy_broker::Broker` implements it in-process.
//! - `Producer`, `Consumer`, `Admin`: the user-facing API, generic over the transport.
#![forbid(unsafe_code)]

use std::future::Future;

use eddy_protocol::v1::{self, request, response};

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
    /// Building a record batch failed (for example, a record larger than the broker accepts).
    #[error("invalid batch: {0}")]
    Batch(#[from] eddy_storage::BatchError),
}

/// Carries request bodies to a broker and brings back its answers.
///
/// Implementations must allow many calls at once (pipelining): a producer keeps several produce
/// requests in flight on one transport.
pub trait Transport: Send + Sync + 'static {
    /// Sends `body` and waits for its response body. A response carrying a request-level error
    /// becomes `ClientError::Broker`.
    fn call(&self, body: request::Body) -> impl Future<Output = Result<response::Body, ClientError>> + Send;

    /// Sends `body` without waiting for an answer (produce with `ACKS_NONE`, which the broker
    /// never answers).
    fn send(&self, body: request::Body) -> impl Future<Output = Result<(), ClientError>> + Send;
}
