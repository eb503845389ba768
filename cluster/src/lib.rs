//! eddy's processors over a Kafka-protocol cluster (Kafka, Redpanda, or `eddy serve`'s Kafka
//! listener): [`KafkaLogs`], the processor runtime's [`LogAccess`](eddy_processor::LogAccess)
//! through librdkafka.
//!
//! Layering: this crate depends on eddy-processor and eddy-storage only — never on the broker.
//! A caller compiles its processor (a spec or SQL, whose compilers live in eddy-broker and
//! eddy-sql) and hands the built [`Processor`](eddy_processor::Processor) here.
//!
//! [`Instance`] runs a processor as one of a group of instances: the consumer group of the
//! processor's version assigns task partitions to instances, tasks that move rebuild their
//! state from snapshots kept in the cluster, and each instance answers pull queries for the
//! partitions it runs (`query`) and forwards the others to their owners.
//!
//! Modules, bottom-up: `error` (typed failures, mapped into `LogError`), `config` (how every
//! client reaches the cluster), `reader` (one partition's consumer, batches rebuilt from its
//! records), `writer` (the idempotent and the transactional producer), `logs` (`KafkaLogs`),
//! `task_logs` (a task partition's view: reads through `KafkaLogs`, appends in its
//! transaction), `snapshots` (task snapshots in a compacted topic), `group` (membership,
//! assignments, owners, transactional ids), `runner` (one task partition's thread),
//! `instance` (`Instance`), `query` (the pull-query listener).

mod config;
mod error;
pub mod group;
mod instance;
mod logs;
pub mod query;
mod reader;
pub mod registry;
mod runner;
pub mod snapshots;
pub mod switch;
mod task_logs;
mod writer;

pub use config::ClusterConfig;
pub use error::ClusterError;
pub use instance::{Instance, InstanceConfig, InstanceError};
pub use logs::KafkaLogs;
pub use runner::{RunError, TaskReport};
