//! eddy-broker: topics and partitions over the partition log, served over TCP or embedded. A
//! library: the `eddy` command (argument parsing, the SQL shell, logging setup) is eddy-cli,
//! so a program that embeds the broker compiles none of that.
//!
//! Modules, bottom-up (each names only modules above it in this list; `tests/tests/layering.rs`
//! checks it):
//!
//! - `clock`, `error`, `files`, `internal`: leaves — wall-clock milliseconds, [`BrokerError`]
//!   and its wire codes, atomic metadata files, and reading/writing the internal topics.
//! - [`metrics`]: [`metrics::Meters`], the request counters and latency histograms the
//!   listeners and the data path keep (atomics only), read by eddy-http's `/metrics`.
//! - [`topic`]: one topic's settings; `topics`: [`Topics`], the data directory and its topics
//!   (the service every other one sees topics through).
//! - [`groups`]: the consumer group coordinator (state in `__consumer_offsets`), seeing topics
//!   only as a `TopicView`.
//! - [`security`]: [`security::Principal`], who a request is handled as; TLS; the user
//!   registry (`__users`) and the server's side of a SASL exchange; the ACL model and the
//!   broker's ACLs (`__acls`); [`quotas`]: byte rates per principal and client id, measured as
//!   Kafka measures them.
//! - [`config`]: the broker's settings (TOML file, environment overrides); `producer_ids`.
//! - [`transactions`]: the Kafka transaction coordinator (state in `__transaction_state`),
//!   writing transaction markers to the partitions and committed offsets to the groups.
//! - [`processors`]: the processor registry (`__processors`), specs, versions, redeploys.
//! - [`connectors`]: the connector registry (`__connectors`), running eddy-connect's
//!   connectors (PostgreSQL sources and sink, file sink) over the topics.
//! - [`sql`]: streaming SQL (`__sql`), deploying its queries as processors.
//! - `data`: the data path of requests (produce, fetch, list offsets, metadata).
//! - `guard`: what each native request needs of the ACLs, checked before it runs.
//! - `broker`: [`Broker`], which owns the services and routes requests; it also implements
//!   `eddy_client::Transport`, so the client's producer and consumer run on it with no socket.
//! - `wire`, [`server`]: frames and the TCP server, with limits on frames, connections,
//!   in-flight requests and idle time; `admission`: each listener's connection budget, in all
//!   and per client address.
//! - [`kafka`]: the Kafka-protocol listener, translating Kafka's requests onto [`Broker`]'s.
//!
//! Not a cluster: one broker, no replication.
#![forbid(unsafe_code)]

pub mod admission;
mod broker;
mod clock;
pub mod config;
pub mod connectors;
mod data;
mod error;
mod files;
pub mod groups;
mod guard;
mod internal;
pub mod kafka;
pub mod metrics;
pub mod processors;
mod producer_ids;
pub mod quotas;
pub mod security;
pub mod server;
mod service;
pub mod sql;
pub mod topic;
mod topics;
pub mod transactions;
mod wire;

pub use broker::Broker;
pub use clock::now_ms;
pub use config::{BrokerConfig, Limits};
pub use error::BrokerError;
pub use topics::{MAX_FETCH_WAIT, MaintenanceReport, Topic, Topics};
