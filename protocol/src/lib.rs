//! eddy-protocol: the wire contract between clients and the broker.
//!
//! - [`v1`]: the message types generated from `proto/eddy.proto` (the documented contract).
//! - [`frame`]: the frame codec — a u32 little-endian length, then one protobuf message. Pure:
//!   no I/O, no async, no broker types; "need more bytes" is kept apart from "bad bytes".
//! - [`ErrorCode`] helpers: the stable codes every failure maps to.
//!
//! Not a client or a server: `eddy-client` and `eddy-broker` own the sockets.
#![forbid(unsafe_code)]

pub mod frame;

/// Messages of protocol version 1, generated from `proto/eddy.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/eddy.v1.rs"));
}

pub use frame::{FrameDecoder, FrameError, encode_frame};
pub use v1::ErrorCode;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

impl v1::Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code: code as i32, message: message.into() }
    }

    /// The code, with values this build does not know read as `Unknown`.
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::try_from(self.code).unwrap_or(ErrorCode::Unknown)
    }
}

impl v1::TopicPartitions {
    /// Groups (topic, partition) pairs by topic, topics in first-seen order, partitions in the
    /// order given.
    pub fn group<'a>(pairs: impl IntoIterator<Item = (&'a str, u32)>) -> Vec<v1::TopicPartitions> {
        let mut out: Vec<v1::TopicPartitions> = Vec::new();
        for (topic, partition) in pairs {
            match out.iter_mut().rev().find(|t| t.topic == topic) {
                Some(t) => t.partitions.push(partition),
                None => out.push(v1::TopicPartitions {
                    topic: topic.to_owned(),
                    partitions: vec![partition],
                }),
            }
        }
        out
    }
}

impl std::fmt::Display for v1::Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_code().as_str_name(), self.message)
    }
}
