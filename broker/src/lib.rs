//! eddy-broker: topics and partitions over the partition log, served over TCP or embedded.
//!
//! - [`Broker`]: the core. `Broker::open(dir)` gives produce, fetch and admin in-process; it
//!   also implements `eddy_client::Transport`, so the client's producer and consumer run on it
//!   with no socket.
//! - [`server`]: the TCP server — a thin layer that decodes frames and calls the same core,
//!   with limits on frames, connections, in-flight requests and idle time.
//! - [`config`]: the broker's settings (TOML file, environment overrides).
//!
//! Not a cluster: one broker, no replication.
#![forbid(unsafe_code)]

mod broker;
pub mod config;
mod error;
pub mod groups;
mod handle;
mod internal;
pub mod processors;
mod producer_ids;
pub mod server;
pub mod sql;
pub mod topic;
mod wire;

pub use broker::{Broker, Topic, now_ms};
pub use config::{BrokerConfig, Limits};
pub use error::BrokerError;
