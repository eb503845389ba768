//! Meters: what the listeners and the data path count as requests go by, read by whatever
//! exposes them (eddy-http's `/metrics`) when it is scraped.
//!
//! Owns only counters; everything else a scrape shows (topics' offsets and sizes, groups' lag,
//! processors' progress) is computed from the broker's state at scrape time.
//!
//! Invariants:
//! - Nothing here allocates or locks after [`Meters::new`]: every slot a request can touch is
//!   preallocated and found by index (a native request's kind, a Kafka API key, an error code),
//!   and updated with `Relaxed` atomics — a request costs a clock read and a few atomic adds.
//! - Label sets are bounded by construction: API kinds and error codes are fixed enumerations,
//!   topics are the broker's topics (per-topic counters live on the `Topic` itself).
//! - A disabled `Meters` (no HTTP listener configured) records nothing; readers see zeros.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use eddy_protocol::v1::request;
use eddy_storage::{Histogram, HistogramSnapshot};

/// Upper bounds (microseconds) of the request latency buckets.
pub const LATENCY_BOUNDS_US: [u64; LATENCY_BUCKETS] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];
pub const LATENCY_BUCKETS: usize = 17;

/// Native error codes are counted by value below this; a larger one counts as `UNKNOWN` (1).
pub const NATIVE_CODES: usize = 128;

/// The Kafka listener's outcomes: answered (whatever error codes the body holds), or the
/// connection closed for a request this broker would not answer.
pub const KAFKA_OUTCOMES: [&str; 2] = ["answered", "refused"];

/// Kafka API keys are counted below this (Kafka's are below 100).
pub const KAFKA_KEYS: usize = 128;

/// The native request kinds, by the index [`native_api`] gives.
pub const NATIVE_APIS: [&str; 39] = [
    "api_versions",
    "metadata",
    "create_topic",
    "delete_topic",
    "list_topics",
    "describe_topic",
    "produce",
    "fetch",
    "list_offsets",
    "init_producer",
    "group_heartbeat",
    "offset_commit",
    "offset_fetch",
    "list_groups",
    "describe_group",
    "reset_group_offsets",
    "delete_group",
    "deploy_processor",
    "list_processors",
    "processor_status",
    "drop_processor",
    "rollback_processor",
    "query_table",
    "replay_processor",
    "sql",
    "create_connector",
    "list_connectors",
    "connector_status",
    "drop_connector",
    "pause_connector",
    "create_acls",
    "list_acls",
    "delete_acls",
    "sasl_handshake",
    "sasl_authenticate",
    "create_user",
    "alter_user",
    "delete_user",
    "list_users",
];

/// The index in [`NATIVE_APIS`] of a request's kind (exhaustive: a new kind needs a name).
pub fn native_api(body: &request::Body) -> usize {
    use request::Body as B;
    match body {
        B::ApiVersions(_) => 0,
        B::Metadata(_) => 1,
        B::CreateTopic(_) => 2,
        B::DeleteTopic(_) => 3,
        B::ListTopics(_) => 4,
        B::DescribeTopic(_) => 5,
        B::Produce(_) => 6,
        B::Fetch(_) => 7,
        B::ListOffsets(_) => 8,
        B::InitProducer(_) => 9,
        B::GroupHeartbeat(_) => 10,
        B::OffsetCommit(_) => 11,
        B::OffsetFetch(_) => 12,
        B::ListGroups(_) => 13,
        B::DescribeGroup(_) => 14,
        B::ResetGroupOffsets(_) => 15,
        B::DeleteGroup(_) => 16,
        B::DeployProcessor(_) => 17,
        B::ListProcessors(_) => 18,
        B::ProcessorStatus(_) => 19,
        B::DropProcessor(_) => 20,
        B::RollbackProcessor(_) => 21,
        B::QueryTable(_) => 22,
        B::ReplayProcessor(_) => 23,
        B::Sql(_) => 24,
        B::CreateConnector(_) => 25,
        B::ListConnectors(_) => 26,
        B::ConnectorStatus(_) => 27,
        B::DropConnector(_) => 28,
        B::PauseConnector(_) => 29,
        B::CreateAcls(_) => 30,
        B::ListAcls(_) => 31,
        B::DeleteAcls(_) => 32,
        B::SaslHandshake(_) => 33,
        B::SaslAuthenticate(_) => 34,
        B::CreateUser(_) => 35,
        B::AlterUser(_) => 36,
        B::DeleteUser(_) => 37,
        B::ListUsers(_) => 38,
    }
}

/// One API's requests: how many ended with each outcome, and how long they took.
#[derive(Debug)]
pub struct ApiMeter {
    outcomes: Box<[AtomicU64]>,
    latency_us: Histogram<LATENCY_BUCKETS>,
}

impl ApiMeter {
    fn new(outcomes: usize) -> Self {
        Self {
            outcomes: (0..outcomes).map(|_| AtomicU64::new(0)).collect(),
            latency_us: Histogram::new(LATENCY_BOUNDS_US),
        }
    }

    /// Requests per outcome (index: a native error code, or into [`KAFKA_OUTCOMES`]).
    pub fn outcomes(&self) -> Vec<u64> {
        self.outcomes.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    pub fn latency_us(&self) -> HistogramSnapshot<LATENCY_BUCKETS> {
        self.latency_us.snapshot()
    }
}

/// The requests of one listener, per API.
#[derive(Debug)]
pub struct ApiMeters {
    apis: Box<[ApiMeter]>,
}

impl ApiMeters {
    fn new(apis: usize, outcomes: usize) -> Self {
        Self { apis: (0..apis).map(|_| ApiMeter::new(outcomes)).collect() }
    }

    /// The meter of API `index`, if in range.
    pub fn get(&self, index: usize) -> Option<&ApiMeter> {
        self.apis.get(index)
    }

    fn record(&self, api: usize, outcome: usize, took: Duration) {
        let Some(meter) = self.apis.get(api) else { return };
        if let Some(count) = meter.outcomes.get(outcome).or_else(|| meter.outcomes.get(1)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        meter.latency_us.observe(took.as_micros() as u64);
    }
}

/// Connections of one listener.
#[derive(Debug, Default)]
pub struct ConnectionMeter {
    pub open: AtomicI64,
    pub accepted: AtomicU64,
    /// Closed at once: past `max_connections`.
    pub refused: AtomicU64,
}

/// Retention and compaction passes over partitions.
#[derive(Debug, Default)]
pub struct MaintenanceMeter {
    pub runs: AtomicU64,
    pub retention_segments_deleted: AtomicU64,
    pub retention_bytes_deleted: AtomicU64,
    pub compaction_segments_rewritten: AtomicU64,
    pub compaction_records_removed: AtomicU64,
    pub compaction_bytes_reclaimed: AtomicU64,
    pub failures: AtomicU64,
}

/// Everything one broker counts on its request paths.
#[derive(Debug)]
pub struct Meters {
    enabled: bool,
    pub native: ApiMeters,
    pub kafka: ApiMeters,
    pub native_connections: ConnectionMeter,
    pub kafka_connections: ConnectionMeter,
    pub maintenance: MaintenanceMeter,
}

impl Meters {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            native: ApiMeters::new(NATIVE_APIS.len(), NATIVE_CODES),
            kafka: ApiMeters::new(KAFKA_KEYS, KAFKA_OUTCOMES.len()),
            native_connections: ConnectionMeter::default(),
            kafka_connections: ConnectionMeter::default(),
            maintenance: MaintenanceMeter::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A native request of kind `api` (see [`native_api`]) ended with `code` (0: none).
    pub fn native_request(&self, api: usize, code: i32, took: Duration) {
        if self.enabled {
            self.native.record(api, usize::try_from(code).unwrap_or(1), took);
        }
    }

    /// A Kafka request of API `key` was answered, or `refused` (the connection closed).
    pub fn kafka_request(&self, key: i16, refused: bool, took: Duration) {
        if self.enabled {
            let api = usize::try_from(key).unwrap_or(usize::MAX);
            self.kafka.record(api, usize::from(refused), took);
        }
    }

    /// A connection accepted (`Some(true)`), refused (`Some(false)`) or closed (`None`).
    pub fn connection(&self, meter: &ConnectionMeter, accepted: Option<bool>) {
        if !self.enabled {
            return;
        }
        match accepted {
            Some(true) => {
                meter.accepted.fetch_add(1, Ordering::Relaxed);
                meter.open.fetch_add(1, Ordering::Relaxed);
            }
            Some(false) => {
                meter.refused.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                meter.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Records and bytes through one topic, kept on the topic so the data path needs no lookup.
#[derive(Debug, Default)]
pub struct TopicMeter {
    pub records_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub records_out: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl TopicMeter {
    /// A produce appended `records` in `bytes` of batches (duplicates not counted).
    pub fn produced(&self, records: u64, bytes: u64) {
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A fetch answered `records` in `bytes` of batches.
    pub fn fetched(&self, records: u64, bytes: u64) {
        self.records_out.fetch_add(records, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_by_api_and_code_and_disabled_meters_count_nothing() {
        let m = Meters::new(true);
        m.native_request(6, 0, Duration::from_micros(150));
        m.native_request(6, 10, Duration::from_millis(3));
        m.native_request(6, 999, Duration::from_millis(3));
        let produce = m.native.get(6).expect("produce");
        let outcomes = produce.outcomes();
        assert_eq!((outcomes[0], outcomes[10], outcomes[1]), (1, 1, 1));
        assert_eq!(produce.latency_us().count(), 3);
        m.kafka_request(0, false, Duration::ZERO);
        m.kafka_request(-1, true, Duration::ZERO);
        assert_eq!(m.kafka.get(0).expect("key 0").outcomes(), vec![1, 0]);

        let off = Meters::new(false);
        off.native_request(6, 0, Duration::ZERO);
        off.connection(&off.native_connections, Some(true));
        assert_eq!(off.native.get(6).expect("produce").outcomes()[0], 0);
        assert_eq!(off.native_connections.open.load(Ordering::Relaxed), 0);
    }
}
