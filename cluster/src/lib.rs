//! eddy's processors over a Kafka-protocol cluster (Kafka, Redpanda, or `eddy serve`'s Kafka
//! listener): [`KafkaLogs`], the processor runtime's [`LogAccess`](eddy_processor::LogAccess)
//! through librdkafka.
//!
//! Layering: this crate depends on eddy-processor and eddy-storage only — never on the broker.
//! A caller compiles its processor (a spec or SQL, whose compilers live in eddy-broker and
//! eddy-sql) and hands the built [`Processor`](eddy_processor::Processor) here.
//!
//! Modules, bottom-up: `error` (typed failures, mapped into `LogError`), `config` (how every
//! client reaches the cluster), `reader` (one partition's consumer, batches rebuilt from its
//! records), `writer` (the idempotent producer), `logs` (`KafkaLogs`).

mod config;
mod error;
mod logs;
mod reader;
mod writer;

pub use config::ClusterConfig;
pub use error::ClusterError;
pub use logs::KafkaLogs;
