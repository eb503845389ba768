//! Hostile frames, each paired with what a correct broker does with it.
//!
//! A generator is a pure function of a [`Rng`] (and the [`Target`] it attacks), so a run replays
//! from its seed. Frames come in two families:
//!
//! - [`interior`]: frames the broker must answer and keep the connection open for — requests
//!   without a body, unknown field numbers, out-of-range enums, corrupt batches, unknown topics
//!   and partitions, offsets out of range, invalid topic configurations. Each carries an
//!   [`Expect`] that [`check`] holds the answer to.
//! - [`closing`]: frames after which the connection ends — length prefixes over the limit,
//!   messages that do not decode (wrong wire types, invalid UTF-8, truncated fields), frames cut
//!   short, random bytes. Each carries a [`CloseExpect`].
//!
//! Every hand-made message is decoded here with prost before it is used: an interior frame must
//! decode to exactly the request it stands for, an undecodable one must fail. So a mistake in
//! this file cannot pass for a broker bug.

use bytes::Bytes;
use eddy_protocol::ErrorCode;
use eddy_protocol::v1::{self, Request, Response, request, response};
use eddy_storage::batch::header;
use prost::Message;

use crate::generate::Rng;

/// What the frames are aimed at: a broker holding one known topic.
#[derive(Debug, Clone)]
pub struct Target {
    pub max_frame_bytes: u32,
    pub topic: String,
    /// Per partition of `topic`: the offset the next record gets. No hostile frame may move it.
    pub next_offsets: Vec<u64>,
    /// Per partition: the stored bytes of the batch at offset 0.
    pub first_batches: Vec<Vec<u8>>,
    /// A valid batch, never appended; corruptions start from it.
    pub spare_batch: Vec<u8>,
}

/// One frame (length prefix included) and what the broker owes for it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub kind: &'static str,
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

/// The answer an interior frame must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No answer at all (produce with acks = none).
    Nothing,
    /// A request-level error with this code and no body.
    Error(ErrorCode),
    /// Metadata in which the target topic's partitions are where they were.
    TargetMetadata,
    /// The handshake answer, with the target's frame limit.
    ApiVersions,
    /// Exactly the target topic.
    TopicNames,
    /// Per-partition produce results, in request order.
    Produce(Vec<(String, u32, ErrorCode)>),
    /// Per-partition fetch results, in request order.
    Fetch(Vec<(String, u32, FetchOutcome)>),
    /// Per-partition list-offsets results, in request order.
    ListOffsets(Vec<(String, u32, OffsetsOutcome)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    Error(ErrorCode),
    /// Records that begin with the partition's first stored batch.
    FirstBatch,
    /// No records, no error (the offset is the partition's end).
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetsOutcome {
    Error(ErrorCode),
    Offset(u64),
    /// An `OffsetSpec` value the protocol does not define. docs/protocol.md promises
    /// `MALFORMED_REQUEST` for unknown enum values; the broker reads it as `LATEST`. Either is
    /// accepted (and counted), anything else is not.
    UnknownSpec {
        latest: u64,
    },
}

/// What happens on the connection after a closing frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseExpect {
    /// One error frame with correlation id 0 and this code, then a clean close.
    ErrorThenClose(ErrorCode),
    /// A clean close with nothing sent.
    SilentClose,
    /// Unknown in advance (random bytes that happen to decode as requests): any answers, then
    /// a close; a correlation-id-0 error must be FRAME_TOO_LARGE or MALFORMED_REQUEST.
    Anything,
}

/// How a closing frame is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written, then the client waits for the answer and the close.
    Send,
    /// Written, then the client shuts down its sending side and waits for the close.
    SendThenShutdown,
}

/// The last frame of a connection.
#[derive(Debug, Clone)]
pub struct Closing {
    pub kind: &'static str,
    pub bytes: Vec<u8>,
    pub delivery: Delivery,
    pub expect: CloseExpect,
}

mod check;
mod closing;
mod interior;
mod wire;

pub use check::*;
pub use closing::*;
pub use interior::*;
pub use wire::framed;
