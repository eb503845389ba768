//! The metric families, each computed from one part of the broker's state (pure functions of
//! what they are given, so each is testable alone).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use eddy_broker::Broker;
use eddy_broker::metrics::{
    ApiMeters, ConnectionMeter, KAFKA_KEYS, KAFKA_OUTCOMES, LATENCY_BUCKETS, Meters, NATIVE_APIS,
    NATIVE_CODES,
};
use eddy_broker::processors::observe::Observed;
use eddy_protocol::{ErrorCode, v1};
use eddy_storage::HistogramSnapshot;

use crate::app::App;
use crate::server::ROUTES;

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

/// One series' value.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Counter(u64),
    Gauge(f64),
    /// Buckets are (upper bound, observations in that bucket alone).
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
}

/// One metric: its name (counters without `_total`, which the encoder adds), help, series.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub samples: Vec<(Labels, Sample)>,
}

fn family(name: &'static str, help: &'static str) -> Family {
    Family { name, help, samples: Vec::new() }
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn gauge_of(c: &AtomicI64) -> Sample {
    Sample::Gauge(c.load(Ordering::Relaxed) as f64)
}

/// A histogram snapshot as a sample, its values scaled by `scale` (microseconds to seconds).
fn histogram<const N: usize>(h: &HistogramSnapshot<N>, scale: f64) -> Sample {
    let mut buckets: Vec<(f64, u64)> =
        h.bounds.iter().zip(h.counts).map(|(b, c)| (*b as f64 * scale, c)).collect();
    buckets.push((f64::INFINITY, h.overflow));
    Sample::Histogram { sum: h.sum as f64 * scale, count: h.count(), buckets }
}

/// The HTTP listener's own connections and requests, and the build.
pub fn http(app: &App) -> Vec<Family> {
    let m = app.meter();
    let mut requests =
        family("eddy_http_requests", "HTTP requests answered, by route and status class.");
    for (route, classes) in ROUTES.iter().zip(&m.requests) {
        for (class, count) in classes.iter().enumerate() {
            let n = load(count);
            if n > 0 {
                let labels =
                    vec![("route", route.to_string()), ("status", format!("{}xx", class + 1))];
                requests.samples.push((labels, Sample::Counter(n)));
            }
        }
    }
    let http = || vec![("listener", "http".to_string())];
    let mut open = family("eddy_connections", "Connections open now, by listener.");
    open.samples.push((http(), gauge_of(&m.open)));
    let mut accepted = family("eddy_connections_accepted", "Connections accepted, by listener.");
    accepted.samples.push((http(), Sample::Counter(load(&m.accepted))));
    let mut refused = family(
        "eddy_connections_refused",
        "Connections closed at once because the listener had its maximum, in all or from the client's address, by listener.",
    );
    refused.samples.push((http(), Sample::Counter(load(&m.refused))));
    let mut build = family("eddy_build_info", "Always 1; the version label says which eddy runs.");
    build
        .samples
        .push((vec![("version", env!("CARGO_PKG_VERSION").to_string())], Sample::Gauge(1.0)));
    let mut start = family("eddy_start_time_seconds", "When the process started (Unix time).");
    let since = app.started().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    start.samples.push((Vec::new(), Sample::Gauge(since)));
    let mut ready = family(
        "eddy_ready",
        "1 when /ready answers 200 (open, recovered, every processor running).",
    );
    let is_ready = crate::app::not_ready(app).is_empty();
    ready.samples.push((Vec::new(), Sample::Gauge(if is_ready { 1.0 } else { 0.0 })));
    vec![requests, open, accepted, refused, build, start, ready]
}

/// Requests by listener, API and code, and their latency.
pub fn requests(meters: &Meters) -> Vec<Family> {
    let mut total = family(
        "eddy_requests",
        "Requests handled, by listener, API and error code (NONE: no request-level error; Kafka: NONE answered, REFUSED connection closed).",
    );
    let mut latency = family(
        "eddy_request_duration_seconds",
        "Time from a request's arrival to its answer, by listener and API.",
    );
    let native = (0..NATIVE_APIS.len()).map(|i| (i, NATIVE_APIS[i].to_string()));
    let kafka = (0..KAFKA_KEYS).map(|k| (k, kafka_api_name(k)));
    for (listener, apis, names, codes) in [
        (
            "native",
            &meters.native,
            native.collect::<Vec<_>>(),
            native_code_name as fn(usize) -> String,
        ),
        ("kafka", &meters.kafka, kafka.collect(), kafka_outcome_name),
    ] {
        api_series(listener, apis, &names, codes, &mut total, &mut latency);
    }
    vec![total, latency]
}

fn api_series(
    listener: &'static str,
    apis: &ApiMeters,
    names: &[(usize, String)],
    code_name: fn(usize) -> String,
    total: &mut Family,
    latency: &mut Family,
) {
    for (index, api) in names {
        let Some(meter) = apis.get(*index) else { continue };
        let h: HistogramSnapshot<LATENCY_BUCKETS> = meter.latency_us();
        if h.count() == 0 {
            continue;
        }
        for (code, n) in meter.outcomes().into_iter().enumerate().filter(|(_, n)| *n > 0) {
            let labels = vec![
                ("listener", listener.into()),
                ("api", api.clone()),
                ("code", code_name(code)),
            ];
            total.samples.push((labels, Sample::Counter(n)));
        }
        let labels = vec![("listener", listener.into()), ("api", api.clone())];
        latency.samples.push((labels, histogram(&h, 1e-6)));
    }
}

fn native_code_name(code: usize) -> String {
    let code = if code < NATIVE_CODES { code as i32 } else { 1 };
    ErrorCode::try_from(code)
        .map_or_else(|_| format!("CODE_{code}"), |c| c.as_str_name().to_string())
}

fn kafka_outcome_name(outcome: usize) -> String {
    match KAFKA_OUTCOMES.get(outcome) {
        Some(&"answered") => "NONE".into(),
        _ => "REFUSED".into(),
    }
}

/// Kafka's name of API `key`, in snake case (`ListOffsets` → `list_offsets`).
fn kafka_api_name(key: usize) -> String {
    let Ok(key) = i16::try_from(key) else { return format!("key_{key}") };
    let Ok(api) = kafka_protocol::messages::ApiKey::try_from(key) else {
        return format!("key_{key}");
    };
    let mut out = String::new();
    for (i, c) in format!("{api:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Connections of the native and Kafka listeners.
pub fn connections(meters: &Meters) -> Vec<Family> {
    let mut open = family("eddy_connections", "Connections open now, by listener.");
    let mut accepted = family("eddy_connections_accepted", "Connections accepted, by listener.");
    let mut refused = family(
        "eddy_connections_refused",
        "Connections closed at once because the listener had its maximum, in all or from the client's address, by listener.",
    );
    let listeners: [(&str, &ConnectionMeter); 2] =
        [("native", &meters.native_connections), ("kafka", &meters.kafka_connections)];
    for (name, m) in listeners {
        let labels = || vec![("listener", name.to_string())];
        open.samples.push((labels(), gauge_of(&m.open)));
        accepted.samples.push((labels(), Sample::Counter(load(&m.accepted))));
        refused.samples.push((labels(), Sample::Counter(load(&m.refused))));
    }
    vec![open, accepted, refused]
}

/// Retention and compaction passes.
pub fn maintenance(meters: &Meters) -> Vec<Family> {
    let m = &meters.maintenance;
    let one = |name, help, c: &AtomicU64| {
        let mut f = family(name, help);
        f.samples.push((Vec::new(), Sample::Counter(load(c))));
        f
    };
    vec![
        one(
            "eddy_maintenance_partition_runs",
            "Retention-and-compaction passes over one partition.",
            &m.runs,
        ),
        one(
            "eddy_maintenance_failures",
            "Partition passes that failed (logged with the reason).",
            &m.failures,
        ),
        one(
            "eddy_retention_segments_deleted",
            "Segments deleted by retention.",
            &m.retention_segments_deleted,
        ),
        one(
            "eddy_retention_bytes_deleted",
            "Bytes deleted by retention.",
            &m.retention_bytes_deleted,
        ),
        one(
            "eddy_compaction_segments_rewritten",
            "Segments rewritten by compaction.",
            &m.compaction_segments_rewritten,
        ),
        one(
            "eddy_compaction_records_removed",
            "Superseded records removed by compaction.",
            &m.compaction_records_removed,
        ),
        one(
            "eddy_compaction_bytes_reclaimed",
            "Bytes freed by compaction.",
            &m.compaction_bytes_reclaimed,
        ),
    ]
}

/// Per topic and partition: traffic, offsets, sizes; storage stats summed over partitions.
pub fn topics(broker: &Broker) -> Vec<Family> {
    let mut f: Vec<Family> = [
        ("eddy_topic_records_in", "Records appended by produce requests (either listener), by topic; retries recognised as duplicates are not counted."),
        ("eddy_topic_bytes_in", "Bytes of record batches appended by produce requests, by topic."),
        ("eddy_topic_records_out", "Records in the batches fetch answers carried, by topic."),
        ("eddy_topic_bytes_out", "Bytes of record batches fetch answers carried, by topic."),
        ("eddy_partition_end_offset", "Offset the next record of the partition will get (the high watermark)."),
        ("eddy_partition_start_offset", "First offset still stored in the partition."),
        ("eddy_partition_size_bytes", "Bytes of the partition's log on disk."),
        ("eddy_partition_segments", "Segments of the partition's log."),
        ("eddy_storage_segment_rolls", "Segments sealed, by topic, since the broker started."),
        ("eddy_storage_fsync_duration_seconds", "Duration of each fsync of segment data, over every partition."),
        ("eddy_storage_group_commit_batches", "Batches made durable by one group-commit fsync, over every partition."),
    ]
    .into_iter()
    .map(|(name, help)| family(name, help))
    .collect();
    let (mut fsync, mut commits) = (None, None);
    for topic in broker.topics().all() {
        let t = || vec![("topic", topic.name.clone())];
        let m = &topic.meter;
        for (i, c) in
            [&m.records_in, &m.bytes_in, &m.records_out, &m.bytes_out].into_iter().enumerate()
        {
            f[i].samples.push((t(), Sample::Counter(load(c))));
        }
        let mut rolls = 0;
        for (p, log) in topic.partitions.iter().enumerate() {
            let pl = || vec![("topic", topic.name.clone()), ("partition", p.to_string())];
            f[4].samples.push((pl(), Sample::Gauge(log.next_offset() as f64)));
            f[5].samples.push((pl(), Sample::Gauge(log.start_offset() as f64)));
            f[6].samples.push((pl(), Sample::Gauge(log.size_bytes() as f64)));
            f[7].samples.push((pl(), Sample::Gauge(log.segment_count() as f64)));
            let stats = log.stats();
            rolls += stats.rolls;
            add_to(&mut fsync, &stats.fsync_us);
            add_to(&mut commits, &stats.group_commit_batches);
        }
        f[8].samples.push((t(), Sample::Counter(rolls)));
    }
    if let Some(h) = fsync {
        f[9].samples.push((Vec::new(), histogram(&h, 1e-6)));
    }
    if let Some(h) = commits {
        f[10].samples.push((Vec::new(), histogram(&h, 1.0)));
    }
    f
}

/// Adds `h` into the running sum `total` (the first one starts it).
fn add_to<const N: usize>(total: &mut Option<HistogramSnapshot<N>>, h: &HistogramSnapshot<N>) {
    match total {
        Some(t) => t.add(h),
        None => *total = Some(*h),
    }
}

/// Consumer groups: members, committed offsets and lag per partition.
pub fn groups(described: &[v1::DescribeGroupResponse]) -> Vec<Family> {
    let mut members = family(
        "eddy_group_members",
        "Members of the consumer group (eddy's and Kafka consumer-protocol members).",
    );
    let mut lag = family(
        "eddy_group_lag",
        "Records the group has not committed yet, per partition: end offset - committed (end - log start when nothing is committed).",
    );
    let mut committed = family(
        "eddy_group_committed_offset",
        "The group's committed offset, per partition (absent when nothing is committed).",
    );
    for g in described {
        members
            .samples
            .push((vec![("group", g.group_id.clone())], Sample::Gauge(g.members.len() as f64)));
        for p in &g.offsets {
            let labels = || {
                vec![
                    ("group", g.group_id.clone()),
                    ("topic", p.topic.clone()),
                    ("partition", p.partition.to_string()),
                ]
            };
            lag.samples.push((labels(), Sample::Gauge(p.lag as f64)));
            if let Some(offset) = p.committed {
                committed.samples.push((labels(), Sample::Gauge(offset as f64)));
            }
        }
    }
    vec![members, lag, committed]
}

/// Processors, per version (serving, and one building beside it).
pub fn processors(observed: &[Observed]) -> Vec<Family> {
    let mut f: Vec<Family> = PROCESSOR_FAMILIES.iter().map(|(n, h)| family(n, h)).collect();
    for o in observed {
        let name = || vec![("processor", o.info.name.clone())];
        f[14].samples.push((name(), Sample::Counter(o.switchovers)));
        if let Some(at) = o.last_switch_ms {
            f[15].samples.push((name(), Sample::Gauge(at as f64 / 1000.0)));
        }
        let versions = std::iter::once((&o.info, "serving", o.snapshot_age_ms))
            .chain(o.info.building.as_deref().map(|b| (b, "building", o.building_snapshot_age_ms)));
        for (info, role, snapshot_age) in versions {
            version_series(&mut f, info, role, snapshot_age);
        }
    }
    f
}

const PROCESSOR_FAMILIES: [(&str, &str); 16] = [
    (
        "eddy_processor_records_in",
        "Input records the version processed since it started from offset zero.",
    ),
    (
        "eddy_processor_records_out",
        "Records the version's operators emitted (outputs and table changes).",
    ),
    (
        "eddy_processor_late_records",
        "Records that arrived after their window (or join/dedupe horizon) closed.",
    ),
    ("eddy_processor_decode_errors", "Records whose key or value did not decode."),
    ("eddy_processor_state_keys", "Keys in the version's tables."),
    ("eddy_processor_state_bytes", "Bytes of the version's tables' keys and values."),
    ("eddy_processor_lag_records", "Input records not processed yet, over every task input."),
    ("eddy_processor_records_per_second", "Recent processing rate (smoothed over about a second)."),
    (
        "eddy_processor_snapshot_age_seconds",
        "Age of the version's oldest task snapshot (absent before the first).",
    ),
    (
        "eddy_processor_running",
        "1 when the version runs, 0 when it failed (its error is in processor status).",
    ),
    (
        "eddy_processor_replay_done_records",
        "Input records a version has processed since offset zero (the replay's events done).",
    ),
    (
        "eddy_processor_replay_remaining_records",
        "Input records the version still has to process to catch up (the replay's events to go).",
    ),
    (
        "eddy_processor_replay_progress_ratio",
        "done / (done + to go): 0 when a replay starts, 1 once caught up.",
    ),
    (
        "eddy_processor_replay_eta_seconds",
        "Time to catch up at the current rate (0 when caught up, absent while not moving).",
    ),
    (
        "eddy_processor_switchovers",
        "Switches of the name's serving version (a rebuilt version caught up, or a rollback) since the broker started.",
    ),
    (
        "eddy_processor_last_switch_timestamp_seconds",
        "When the name last switched its serving version (Unix time).",
    ),
];

fn version_series(
    f: &mut [Family],
    info: &v1::ProcessorInfo,
    role: &'static str,
    snapshot_age_ms: Option<u64>,
) {
    let labels = || {
        vec![
            ("processor", info.name.clone()),
            ("version", info.version.to_string()),
            ("role", role.to_string()),
        ]
    };
    let sum = |get: fn(&v1::ProcessorTask) -> u64| info.tasks.iter().map(get).sum::<u64>();
    f[0].samples.push((labels(), Sample::Counter(sum(|t| t.records_in))));
    f[1].samples.push((labels(), Sample::Counter(sum(|t| t.records_out))));
    f[2].samples.push((labels(), Sample::Counter(sum(|t| t.late))));
    f[3].samples.push((labels(), Sample::Counter(sum(|t| t.decode_errors))));
    f[4].samples.push((labels(), Sample::Gauge(sum(|t| t.state_keys) as f64)));
    f[5].samples.push((labels(), Sample::Gauge(sum(|t| t.state_bytes) as f64)));
    f[6].samples.push((labels(), Sample::Gauge(info.lag as f64)));
    f[7].samples.push((labels(), Sample::Gauge(info.records_per_s)));
    if let Some(age) = snapshot_age_ms {
        f[8].samples.push((labels(), Sample::Gauge(age as f64 / 1000.0)));
    }
    let running = if info.state == "failed" { 0.0 } else { 1.0 };
    f[9].samples.push((labels(), Sample::Gauge(running)));
    let (done, to_go) = (info.records_processed, info.lag);
    f[10].samples.push((labels(), Sample::Gauge(done as f64)));
    f[11].samples.push((labels(), Sample::Gauge(to_go as f64)));
    let ratio = if done + to_go == 0 { 1.0 } else { done as f64 / (done + to_go) as f64 };
    f[12].samples.push((labels(), Sample::Gauge(ratio)));
    if info.eta_ms != u64::MAX {
        f[13].samples.push((labels(), Sample::Gauge(info.eta_ms as f64 / 1000.0)));
    }
}
