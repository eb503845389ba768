//! eddy-connect: connectors that move data between eddy's topics and databases, run by the
//! broker as managed tasks (`broker/src/connectors.rs` keeps their definitions and positions in
//! the compacted topic `__connectors`; docs/connectors.md is the user's reference).
//!
//! - [`config`]: a [`ConnectorDef`] (name, source or sink, `WITH` options) checked into a
//!   [`Class`]: PostgreSQL query-mode source, PostgreSQL CDC source, PostgreSQL upsert sink,
//!   JSON-lines file sink.
//! - [`runtime`]: [`Running`], one thread per connector with its own tokio runtime, restarted
//!   after failures; its [`Status`]; [`Positions`], where positions are kept.
//! - [`topics`]: appending to and reading eddy's topics through a `LogAccess`; `consume`:
//!   what sinks read.
//! - [`pg`]: everything PostgreSQL; `file_sink`.
//!
//! Not a Kafka Connect worker: no plugins, converters or transforms, one task per connector,
//! JSON values only.

pub mod config;
mod consume;
pub mod error;
mod file_sink;
pub mod pg;
pub mod runtime;
pub mod topics;

pub use config::{Class, ConnectorDef, Kind};
pub use error::ConnectError;
pub use runtime::{Positions, Running, State, Status};

/// Milliseconds since the Unix epoch, by the wall clock (record timestamps, `ts_ms`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
