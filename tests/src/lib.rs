//! Shared pieces of eddy's end-to-end tests.
//!
//! The tests drive real processes over real files: `eddy-log-child` (in `src/bin`) appends to a
//! log until it is killed or runs out of space, and the integration tests in `tests/` check what
//! is left on disk; the broker tests run the real `eddy` binary and talk to it in raw frames.
//! Both sides use this library so they agree on every byte:
//!
//! - [`generate`]: a deterministic batch generator, a pure function of a 64-bit seed.
//! - [`check`]: walks a whole log, checking checksums and offset contiguity.
//! - [`child`]: the child's line protocol and a driver for the child process that never blocks
//!   without a deadline.
//! - [`broker`]: a real `eddy serve` process on an ephemeral port (start, SIGTERM, SIGKILL, RSS).
//! - [`connectors`]: connector statuses and whole topics through the `eddy` CLI.
//! - [`cli`]: the `eddy` command run to completion against a broker process.
//! - [`cluster`]: the access log, its `awk` reference and output checks for the processors run
//!   over a Kafka-protocol cluster.
//! - [`raw_client`]: a blocking client that puts exact frames on the wire, with read deadlines.
//! - [`reconnect`]: a client transport that reopens its connection to a restarted broker.
//! - [`hostile`]: hostile frames for the broker, each with the answer a correct broker gives.
//! - [`http`]: the broker's HTTP listener from a test: requests with deadlines, `/metrics`
//!   checked by promtool and parsed by prometheus_client (Python).
//! - [`kafka_clients`]: real Kafka clients (kcat, confluent-kafka, kafka-python, kafkajs) as
//!   processes, found where `./scripts/test` installs them; a missing one fails the test.
//! - [`members`]: consumer group members as processes (`eddy-group-member`), watched through
//!   their output.
//! - [`postgres`]: a real PostgreSQL server (initdb in a temporary directory, logical WAL, a
//!   free port), stopped when dropped, for the connector tests.
//! - [`tls`]: a CA and certificates made with rcgen for the TLS tests, and a blocking rustls
//!   client (what the broker presents, HTTPS requests, a real ClientHello).
//! - [`sasl`]: a broker that requires authentication, the CLI with credentials, SASL by hand on
//!   the Kafka and native listeners, HTTP with Basic credentials.
//! - [`workload`]: client-level records as a pure function of (seed, index), and a reader that
//!   walks a whole topic through the client's consumer.

pub mod broker;
pub mod check;
pub mod child;
pub mod cli;
pub mod cluster;
pub mod connectors;
pub mod generate;
pub mod hostile;
pub mod http;
pub mod instances;
pub mod kafka_clients;
pub mod kafka_harness;
pub mod kafka_wire;
pub mod members;
pub mod postgres;
pub mod processor_queries;
pub mod raw_client;
pub mod reconnect;
pub mod sasl;
pub mod tls;
pub mod workload;

use eddy_storage::{Flush, LogConfig};

/// The child's `append` mode: every append is fsynced before it is acknowledged, and segments
/// are small so that rolls happen (and can be interrupted) during a crash test.
pub fn crash_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        flush: Flush::Always,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// The child's `diskfull` mode: fsynced appends into one large segment, so the only file that
/// grows is the active segment.
pub fn diskfull_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 30,
        flush: Flush::Always,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// Stream seed the `diskfull` mode uses unless one is given on its command line.
pub const DISKFULL_SEED: u64 = 0x00d1_5c0f_0110_5eed;

/// Batches the `diskfull` mode appends (and acknowledges) after the file size limit is lifted,
/// counting the retry of the batch that failed.
pub const DISKFULL_APPENDS_AFTER: u64 = 8;

/// A number from the environment (decimal, or hex with `0x`), for seeds and sizes a run may
/// override; a value that does not parse fails the test with its name.
pub fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={text:?}: {e}")))
}
