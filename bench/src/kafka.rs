//! The Kafka protocol against the native protocol: the same records produced and consumed
//! through librdkafka (the `rdkafka` crate, librdkafka built from source) over the broker's
//! Kafka listener, and through eddy's own client over its native listener.
//!
//! One broker is served on loopback from this process for the whole run, with both listeners,
//! on a runtime of its own (threads `eddy-broker`). eddy's client runs on another runtime
//! (threads `eddy-client`), librdkafka on its own threads (`rdk:*`); the loops that call either
//! client (send, poll) run on the main thread. Each measurement reports the CPU time of each
//! group of threads (`/proc/self/task/*/schedstat`), so the broker's cost per record on each
//! path is seen apart from the clients'.
//!
//! Each round, for each `--shapes` entry (N records of B bytes, values only, no keys, partition
//! 0 of a one-partition topic):
//!
//! - **produce**: N records, one call per record, to a topic of their own: librdkafka's
//!   `produce` (`BaseProducer::send`, `poll(0)` after each) and eddy's `Producer::send`, with
//!   the same settings where both have them — batches of `--batch` records and of the native
//!   producer's `batch_bytes`, 5 ms linger, 5 requests in flight, 64 MiB of buffered records,
//!   8 MiB requests, no compression, TCP_NODELAY, the same acks (acks=1 is eddy's `written`,
//!   acks=all `durable`, acks=0 `none`), not idempotent (librdkafka's idempotence needs
//!   acks=all). Each client is connected and knows the topic before the clock starts. Timed
//!   from the first send to the last acknowledgement. The op columns are each record's latency
//!   from its send call to the moment the program learns of its acknowledgement (librdkafka: its
//!   delivery report, served by `poll`; eddy: its `Delivery` future, awaited in order by a task).
//! - **consume**: every consumer reads the records librdkafka produced, from offset 0, with no
//!   group: librdkafka's consumer with `assign()` (a `group.id` is set because librdkafka's
//!   assign needs one; nothing joins or commits) and eddy's `Consumer` with `assign`, both
//!   fetching up to 4 MiB per partition and 16 MiB per fetch and both checking each batch's
//!   CRC (librdkafka `check.crcs=true`; eddy's consumer always does). librdkafka reads twice:
//!   as configured so far (its prefetch queue at its defaults: past `queued.min.messages` =
//!   100,000 records it backs off fetching for `fetch.queue.backoff.ms` = 1000 ms), and with
//!   `fetch.queue.backoff.ms` = 10. A bare Fetch v4 loop reads it a fourth time: one blocking
//!   socket, one hand-encoded request at a time, batches checked and records decoded with eddy's
//!   storage code (as eddy's consumer decodes them), which measures the broker's Kafka fetch
//!   path without librdkafka. Each record's offset and value length are checked. Timed from the
//!   assign to the last record; the op columns are the time to receive each
//!   successive 1000 records (the per-record cost at the median, fetch waits and stalls in
//!   the tail), the same measure for every consumer.
//!
//! The order of the paths alternates from round to round, and `sync` runs before every
//! measurement (so none pays for writing back the last one's pages). The produced topics are checked
//! (records, batches) through the embedded broker, untimed, and deleted at the end of the
//! round. librdkafka's request counts come from its statistics. Every wait is bounded
//! ([`LIMIT`]). For experiments, `EDDY_RDKAFKA=name=value,...` sets librdkafka properties (the
//! rows then say so) and `EDDY_RDKAFKA_DEBUG=fetch,msg,...` prints its debug log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use bytes::Bytes;
use eddy_broker::{Broker, BrokerConfig, kafka, server};
use eddy_client::{
    Acks, Admin, Connection, ConnectionOptions, Consumer, ConsumerConfig, Delivery, Producer,
    ProducerRecord, SeekTo, TopicConfig,
};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Message as _, Offset, TopicPartitionList};
use tokio::runtime::Runtime;

use crate::report::{Row, Timing, median, median_against};
use crate::workload::Options;

/// The longest any one measurement may take before the run fails.
const LIMIT: Duration = Duration::from_secs(120);
/// Records per consume op (the time to receive each successive block of this many).
const BLOCK: u64 = 1000;
/// Bytes a fetch may return, per partition and in all (eddy's consumer defaults).
const PARTITION_FETCH_BYTES: u32 = 4 << 20;
const FETCH_BYTES: u32 = 16 << 20;

/// The measurements of each shape, in the order of their rows.
const MEASUREMENTS: [&str; 6] = [
    "produce native",
    "produce kafka",
    "consume native",
    "consume kafka",
    "consume kafka, queue backoff 10 ms",
    "consume kafka wire, bare Fetch v4",
];
const PRODUCE_NATIVE: usize = 0;
const PRODUCE_KAFKA: usize = 1;
const CONSUME_NATIVE: usize = 2;
const CONSUME_KAFKA: usize = 3;
/// librdkafka's consumer with `fetch.queue.backoff.ms` = [`QUICK_BACKOFF_MS`].
const CONSUME_KAFKA_10: usize = 4;
/// The Kafka listener read by a bare Fetch v4 loop decoding with eddy's storage code.
const CONSUME_WIRE: usize = 5;
/// The `fetch.queue.backoff.ms` of the second librdkafka consumer (its default is 1000).
const QUICK_BACKOFF_MS: u32 = 10;

/// The broker, served on loopback with both listeners, and the client runtime.
pub(crate) struct Served {
    pub(crate) broker: Broker,
    pub(crate) native_addr: String,
    pub(crate) kafka_addr: String,
    /// The broker's runtime, serving both listeners until dropped.
    _runtime: Runtime,
    pub(crate) client: Runtime,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Served {
    pub(crate) fn start(opts: &Options) -> Result<Self> {
        let dir = opts.tempdir()?;
        let config = BrokerConfig { data_dir: dir.path().join("data"), ..BrokerConfig::default() };
        let broker = Broker::open_with(config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eddy-broker")
            .enable_all()
            .build()?;
        let client = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eddy-client")
            .enable_all()
            .build()?;
        let native = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let native_addr = native.local_addr()?.to_string();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let bound = listener.local_addr()?;
        let (stop_native, native_stopped) = tokio::sync::oneshot::channel::<()>();
        let (stop_kafka, kafka_stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(server::serve(broker.clone(), native, async {
            let _ = native_stopped.await;
        }));
        runtime.spawn(kafka::serve(
            broker.clone(),
            listener,
            kafka::Advertised::resolve(None, bound),
            async {
                let _ = kafka_stopped.await;
            },
        ));
        Ok(Self {
            broker,
            native_addr,
            kafka_addr: bound.to_string(),
            _runtime: runtime,
            client,
            stops: vec![stop_native, stop_kafka],
            _dir: dir,
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        let _ = self.broker.close();
    }
}

/// CPU time of each thread of this process (nanoseconds on a CPU, by thread id), with its name.
struct CpuSnapshot(HashMap<u32, (String, u64)>);

impl CpuSnapshot {
    fn take() -> Self {
        let mut threads = HashMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Self(threads) };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let path = task.path();
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let ns = std::fs::read_to_string(path.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok());
            if let Some(ns) = ns {
                threads.insert(tid, (name.trim().to_string(), ns));
            }
        }
        Self(threads)
    }

    /// CPU seconds spent since `self` by each group of threads: the broker's runtime, the
    /// client library (eddy's client runtime, or librdkafka's threads), the main thread (which
    /// drives librdkafka) and any other.
    fn since(&self) -> CpuSplit {
        let now = Self::take();
        let main = std::process::id();
        let mut split = CpuSplit::default();
        for (tid, (name, ns)) in &now.0 {
            let before = self.0.get(tid).map_or(0, |(_, ns)| *ns);
            let secs = ns.saturating_sub(before) as f64 / 1e9;
            let group = if *tid == main {
                &mut split.app
            } else if name.starts_with("eddy-broker") {
                &mut split.broker
            } else if name.starts_with("eddy-client") || name.starts_with("rdk:") {
                &mut split.client
            } else {
                &mut split.other
            };
            *group += secs;
        }
        split
    }
}

/// CPU seconds by group of threads over one measurement (see [`CpuSnapshot::since`]).
#[derive(Debug, Default, Clone, Copy)]
struct CpuSplit {
    broker: f64,
    client: f64,
    app: f64,
    other: f64,
}

impl CpuSplit {
    fn notes(self, row: Row, records: u64, wall: f64) -> Row {
        let total = self.broker + self.client + self.app + self.other;
        row.note(
            "cpu s: broker / client library / main thread / other",
            format!(
                "{:.3} / {:.3} / {:.3} / {:.3} (total {:.3} = {:.2} of 2 cores)",
                self.broker,
                self.client,
                self.app,
                self.other,
                total,
                total / wall.max(1e-9) / 2.0
            ),
        )
        .note("broker cpu ns per record", format!("{:.0}", self.broker / records as f64 * 1e9))
        .note(
            "client-side cpu ns per record",
            format!("{:.0}", (self.client + self.app) / records as f64 * 1e9),
        )
    }
}

/// What a round measured for one path: the timing, the CPU split and extra notes.
struct Measured {
    timing: Timing,
    cpu: CpuSplit,
    notes: Vec<(String, String)>,
}

impl Measured {
    fn row(self, name: String, records: u64, bytes: u64) -> Row {
        let wall = self.timing.elapsed.as_secs_f64();
        let mut row = self.cpu.notes(Row::new(name, records, bytes, &self.timing), records, wall);
        let set = overridden();
        if !set.is_empty() {
            let set: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
            row = row.note("librdkafka overrides (EDDY_RDKAFKA)", set.join(","));
        }
        for (k, v) in self.notes {
            row = row.note(&k, v);
        }
        row
    }
}

/// Kafka's acks for eddy's: written is acks=1, durable acks=all, none acks=0.
fn kafka_acks(acks: &str) -> Result<&'static str> {
    Ok(match acks {
        "written" => "1",
        "durable" => "all",
        "none" => "0",
        other => bail!("--acks {other:?}: expected written, durable or none"),
    })
}

/// The options of one shape: `records` of `bytes`.
fn shaped(opts: &Options, records: u64, bytes: usize) -> Options {
    let mut o = opts.clone();
    o.records = records;
    o.record_bytes = bytes;
    o
}

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let kafka_acks = kafka_acks(&opts.acks)?;
    if opts.idempotent && kafka_acks != "all" {
        bail!("--idempotent true needs --acks durable (librdkafka's idempotence needs acks=all)");
    }
    if opts.shapes.is_empty() {
        bail!("--shapes: nothing to measure");
    }
    let served = Served::start(opts)?;
    let conn = served
        .client
        .block_on(Connection::connect(&served.native_addr, ConnectionOptions::default()))?;
    let conn = Arc::new(conn);
    let admin = Admin::new(conn.clone());
    // Per shape and measurement (see `MEASUREMENTS`), a row per round.
    let mut rounds: Vec<[Vec<Row>; 6]> = opts.shapes.iter().map(|_| Default::default()).collect();
    for round in 1..=opts.runs {
        let kafka_first = round % 2 == 1;
        for (&(records, bytes), rows) in opts.shapes.iter().zip(rounds.iter_mut()) {
            let o = shaped(opts, records, bytes);
            let total = records * bytes as u64;
            let (ktopic, ntopic) =
                (format!("kafka-{bytes}-r{round}"), format!("native-{bytes}-r{round}"));
            for topic in [&ktopic, &ntopic] {
                let config = TopicConfig { partitions: Some(1), ..TopicConfig::default() };
                served.client.block_on(admin.create_topic(topic, config))?;
            }
            let mut measured: [Option<Measured>; 6] = Default::default();
            // Kafka's then the native path, or the other way round.
            let mut order = [
                PRODUCE_KAFKA,
                PRODUCE_NATIVE,
                CONSUME_KAFKA,
                CONSUME_KAFKA_10,
                CONSUME_WIRE,
                CONSUME_NATIVE,
            ];
            if !kafka_first {
                order = [
                    PRODUCE_NATIVE,
                    PRODUCE_KAFKA,
                    CONSUME_NATIVE,
                    CONSUME_WIRE,
                    CONSUME_KAFKA_10,
                    CONSUME_KAFKA,
                ];
            }
            for which in order {
                // Each measurement starts with nothing left to write back from the last one.
                std::process::Command::new("sync").status().context("running sync")?;
                let kafka = &served.kafka_addr;
                let m = match which {
                    PRODUCE_KAFKA => {
                        let mut m = produce_kafka(kafka, &ktopic, &o, kafka_acks)?;
                        m.notes.extend(stored(&served, &ktopic, records, bytes)?);
                        m
                    }
                    PRODUCE_NATIVE => {
                        let mut m =
                            served.client.block_on(produce_native(conn.clone(), &ntopic, &o))?;
                        m.notes.extend(stored(&served, &ntopic, records, bytes)?);
                        m
                    }
                    CONSUME_KAFKA => consume_kafka(kafka, &ktopic, records, bytes, None)?,
                    CONSUME_KAFKA_10 => {
                        consume_kafka(kafka, &ktopic, records, bytes, Some(QUICK_BACKOFF_MS))?
                    }
                    CONSUME_WIRE => consume_wire(kafka, &ktopic, records, bytes)?,
                    _ => {
                        let consumed = consume_native(conn.clone(), &ktopic, records, bytes);
                        served.client.block_on(consumed)?
                    }
                };
                measured[which] = Some(m);
            }
            for (which, m) in measured.into_iter().enumerate() {
                let m = m.context("a measurement did not run")?;
                let name = format!("{} {bytes}B [round {round}]", MEASUREMENTS[which]);
                rows[which].push(m.row(name, records, total));
            }
            for topic in [&ktopic, &ntopic] {
                served.client.block_on(admin.delete_topic(topic))?;
            }
            let last = |rows: &[Row]| rows.last().map_or(0.0, |r| r.records_per_s);
            println!(
                "round {round} {bytes}B records/s: produce native {:.0} kafka {:.0}; consume \
                 native {:.0} kafka {:.0} (backoff {QUICK_BACKOFF_MS} ms: {:.0}, bare Fetch: {:.0})",
                last(&rows[PRODUCE_NATIVE]),
                last(&rows[PRODUCE_KAFKA]),
                last(&rows[CONSUME_NATIVE]),
                last(&rows[CONSUME_KAFKA]),
                last(&rows[CONSUME_KAFKA_10]),
                last(&rows[CONSUME_WIRE]),
            );
        }
    }
    let mut results = Vec::new();
    let mut medians = Vec::new();
    for (&(_, bytes), rows) in opts.shapes.iter().zip(rounds) {
        results.extend(rows.iter().flatten().cloned());
        let name = |which: usize| format!("{} {bytes}B", MEASUREMENTS[which]);
        let by_measurement = &rows;
        for (which, rows) in rows.iter().enumerate() {
            let baseline = match which {
                PRODUCE_KAFKA => PRODUCE_NATIVE,
                CONSUME_KAFKA | CONSUME_KAFKA_10 | CONSUME_WIRE => CONSUME_NATIVE,
                _ => which,
            };
            let row = if baseline == which {
                median(rows.clone())
            } else {
                let row = median_against(rows.clone(), &by_measurement[baseline]);
                Row { baseline: Some(name(baseline)), ..row }
            };
            medians.push(Row { name: name(which), ..row });
        }
    }
    results.extend(medians);
    drop(admin);
    drop(conn);
    Ok(results)
}

/// Records, batches and bytes of `topic` as stored, read through the embedded broker
/// (untimed), checked against what was produced.
fn stored(
    served: &Served,
    topic: &str,
    records: u64,
    bytes: usize,
) -> Result<Vec<(String, String)>> {
    let (mut seen, mut batches, mut stored) = (0u64, 0u64, 0u64);
    served.client.block_on(async {
        let mut consumer = Consumer::new(
            served.broker.clone(),
            ConsumerConfig { start: SeekTo::Earliest, ..ConsumerConfig::default() },
        );
        consumer.assign(topic, 0..1);
        let deadline = Instant::now() + LIMIT;
        while seen < records {
            ensure!(Instant::now() < deadline, "{topic}: {seen} of {records} records stored");
            for batch in consumer.poll(Duration::from_secs(5)).await? {
                batches += 1;
                stored += batch.as_bytes().len() as u64;
                for r in batch.records() {
                    let r = r?;
                    ensure!(r.offset == seen, "{topic}: offset {} where {seen} was due", r.offset);
                    ensure!(r.value.map_or(0, <[u8]>::len) == bytes, "{topic}: a value's size");
                    seen += 1;
                }
            }
        }
        Ok(())
    })?;
    ensure!(seen == records, "{topic}: {seen} records stored, {records} produced");
    Ok(vec![
        ("batches stored".into(), batches.to_string()),
        ("records per batch".into(), format!("{:.0}", records as f64 / batches as f64)),
        ("bytes per batch".into(), format!("{:.0}", stored as f64 / batches as f64)),
    ])
}

/// librdkafka's latest statistics (`statistics.interval.ms`), and when they arrived.
#[derive(Default)]
struct Stats(Mutex<Option<(Instant, serde_json::Value)>>);

impl Stats {
    fn keep(&self, raw: &[u8]) {
        if let Ok(value) = serde_json::from_slice(raw) {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), value));
        }
    }

    fn newer_than(&self, t: Instant) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|(at, _)| *at > t)
    }

    /// Requests of `api` sent and bytes sent and received, over every broker connection.
    fn notes(&self, api: &str) -> Vec<(String, String)> {
        let stats = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some((_, stats)) = stats.as_ref() else { return Vec::new() };
        let (mut requests, mut tx, mut rx) = (0, 0, 0);
        for broker in stats["brokers"].as_object().into_iter().flat_map(|b| b.values()) {
            requests += broker["req"][api].as_u64().unwrap_or(0);
            tx += broker["txbytes"].as_u64().unwrap_or(0);
            rx += broker["rxbytes"].as_u64().unwrap_or(0);
        }
        vec![
            (format!("librdkafka: {api} requests"), requests.to_string()),
            (
                "librdkafka: MB sent / received".into(),
                format!("{:.1} / {:.1}", tx as f64 / 1e6, rx as f64 / 1e6),
            ),
        ]
    }
}

/// How often librdkafka reports its statistics (the last report after a measurement gives
/// its request counts).
const STATS_MS: u64 = 100;

/// Counts librdkafka's delivery reports and times each record from send to report.
struct Reports {
    epoch: Instant,
    latency: Mutex<Timing>,
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    stats: Stats,
}

impl ClientContext for Reports {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        log(RDKafkaLogLevel::Error, "ERROR", &format!("{error}: {reason}"));
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.stats.keep(statistics);
    }
}

impl ProducerContext for Reports {
    /// The send time, in nanoseconds since `epoch`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        match result {
            Ok(_) => {
                let now = self.epoch.elapsed().as_nanos() as u64;
                let ns = now.saturating_sub(sent_ns as u64);
                self.latency
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(Duration::from_nanos(ns));
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert(e.to_string());
            }
        }
    }
}

/// librdkafka's log lines and errors, on stderr (its `debug` contexts are switched on with
/// `EDDY_RDKAFKA_DEBUG`, e.g. `fetch,protocol,msg`).
#[allow(clippy::print_stderr, reason = "librdkafka's own diagnostics, for profiling runs")]
fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    eprintln!("rdkafka {level:?} {facility}: {message}");
}

/// Sets librdkafka's `debug` property from `EDDY_RDKAFKA_DEBUG`, and any property from
/// `EDDY_RDKAFKA` (`name=value,name=value`, applied to both producer and consumer, after the
/// workload's own settings), for experiments; runs with the latter say so in their rows.
fn overrides(config: &mut ClientConfig) {
    config.set("statistics.interval.ms", STATS_MS.to_string());
    if let Ok(contexts) = std::env::var("EDDY_RDKAFKA_DEBUG") {
        config.set("debug", contexts).set_log_level(RDKafkaLogLevel::Debug);
    }
    for (name, value) in overridden() {
        config.set(name, value);
    }
}

/// The properties set by `EDDY_RDKAFKA`.
fn overridden() -> Vec<(String, String)> {
    let set = std::env::var("EDDY_RDKAFKA").unwrap_or_default();
    set.split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The consumer's context: its diagnostics and statistics.
#[derive(Default)]
struct Logs {
    stats: Stats,
}

impl ClientContext for Logs {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        log(RDKafkaLogLevel::Error, "ERROR", &format!("{error}: {reason}"));
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.stats.keep(statistics);
    }
}

impl ConsumerContext for Logs {}

/// The producer settings both clients share, as librdkafka's properties.
fn producer_properties(opts: &Options, acks: &str) -> Result<ClientConfig> {
    let native = crate::net::producer_config(opts)?;
    let mut config = ClientConfig::new();
    config
        .set("acks", acks)
        .set("enable.idempotence", opts.idempotent.to_string())
        .set("linger.ms", native.linger.as_millis().to_string())
        .set("batch.num.messages", opts.batch.to_string())
        .set("batch.size", native.batch_bytes.to_string())
        .set("message.max.bytes", native.request_bytes.to_string())
        .set("max.in.flight.requests.per.connection", native.max_in_flight.to_string())
        .set("queue.buffering.max.kbytes", (native.buffer_bytes / 1024).to_string())
        // eddy's producer bounds bytes, not records: let the bytes bound decide here too.
        .set("queue.buffering.max.messages", "10000000")
        .set("compression.codec", "none")
        // eddy's client sets TCP_NODELAY; librdkafka leaves Nagle on unless told.
        .set("socket.nagle.disable", "true");
    Ok(config)
}

/// Produces `opts.records` records of `opts.record_bytes` to partition 0 of `topic` through
/// librdkafka, one `send` per record.
fn produce_kafka(addr: &str, topic: &str, opts: &Options, acks: &str) -> Result<Measured> {
    let mut config = producer_properties(opts, acks)?;
    config.set("bootstrap.servers", addr);
    overrides(&mut config);
    let reports = Reports {
        epoch: Instant::now(),
        latency: Mutex::new(Timing::new()),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
        stats: Stats::default(),
    };
    let producer: BaseProducer<Reports> = config.create_with_context(reports)?;
    // Connected, and the topic's leader known, before the clock starts (as eddy's producer,
    // whose connection is open).
    producer.client().fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let cpu = CpuSnapshot::take();
    let value = vec![b'x'; opts.record_bytes];
    let records = opts.records;
    let (mut sent, mut queue_full) = (0u64, 0u64);
    let start = Instant::now();
    let deadline = start + LIMIT;
    let epoch = producer.context().epoch;
    while sent < records {
        let at = epoch.elapsed().as_nanos() as usize;
        let record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, at)
            .partition(0)
            .payload(&value[..]);
        match producer.send(record) {
            Ok(()) => {
                sent += 1;
                producer.poll(Duration::ZERO);
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                // The 64 MiB buffer is full: serve delivery reports for a millisecond.
                ensure!(Instant::now() < deadline, "librdkafka: {sent} of {records} sent");
                queue_full += 1;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("librdkafka refused record {sent}: {e}"),
        }
    }
    let context = producer.context();
    let done =
        || context.delivered.load(Ordering::Relaxed) + context.failed.load(Ordering::Relaxed);
    while done() < records {
        ensure!(Instant::now() < deadline, "librdkafka: {} of {records} acknowledged", done());
        producer.poll(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    let cpu = cpu.since();
    let end = Instant::now();
    while !context.stats.newer_than(end) && end.elapsed() < Duration::from_secs(1) {
        producer.poll(Duration::from_millis(10));
    }
    if let Some(e) = context.first_error.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        bail!(
            "librdkafka: {} records failed, the first with {e}",
            context.failed.load(Ordering::Relaxed)
        );
    }
    let mut timing = std::mem::replace(
        &mut *context.latency.lock().unwrap_or_else(|p| p.into_inner()),
        Timing::new(),
    );
    timing.finish(elapsed);
    Ok(Measured {
        timing,
        cpu,
        notes: [("send refused: queue full (1 ms waits)".into(), queue_full.to_string())]
            .into_iter()
            .chain(context.stats.notes("Produce"))
            .collect(),
    })
}

/// Produces through eddy's producer, one `send` per record; every `Delivery` is awaited in
/// order by a task that times it from its send.
async fn produce_native(conn: Arc<Connection>, topic: &str, opts: &Options) -> Result<Measured> {
    let cpu = CpuSnapshot::take();
    let mut config = crate::net::producer_config(opts)?;
    if config.acks == Acks::None {
        config.idempotent = false;
    }
    let producer = Producer::new(conn, config)?;
    let value = Bytes::from(vec![b'x'; opts.record_bytes]);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Delivery)>(1 << 16);
    let checker = tokio::spawn(async move {
        let mut latency = Timing::new();
        while let Some((at, delivery)) = rx.recv().await {
            delivery.await?;
            latency.record(at.elapsed());
        }
        Ok::<Timing, eddy_client::ClientError>(latency)
    });
    let start = Instant::now();
    let run = async {
        for _ in 0..opts.records {
            let at = Instant::now();
            let delivery =
                producer.send(topic, Some(0), ProducerRecord::value(value.clone())).await?;
            tx.send((at, delivery)).await.context("the acknowledgement task stopped")?;
        }
        drop(tx);
        producer.close().await?;
        let timing = checker.await??;
        Ok::<Timing, anyhow::Error>(timing)
    };
    let mut timing = tokio::time::timeout(LIMIT, run).await.with_context(|| {
        format!("eddy: {} records not acknowledged in {LIMIT:?}", opts.records)
    })??;
    timing.finish(start.elapsed());
    Ok(Measured { timing, cpu: cpu.since(), notes: Vec::new() })
}

/// Times each successive block of [`BLOCK`] records received.
struct Blocks {
    timing: Timing,
    last: Instant,
    first: Option<Duration>,
    start: Instant,
}

impl Blocks {
    fn new() -> Self {
        let now = Instant::now();
        Self { timing: Timing::new(), last: now, first: None, start: now }
    }

    /// Called with the count of records received so far, after each record; whether a block
    /// ended there.
    fn received(&mut self, seen: u64) -> bool {
        if seen == 1 {
            self.first = Some(self.start.elapsed());
        }
        if !seen.is_multiple_of(BLOCK) {
            return false;
        }
        let now = Instant::now();
        self.timing.record(now - self.last);
        self.last = now;
        true
    }

    fn finish(mut self, cpu: CpuSplit) -> Measured {
        self.timing.finish(self.start.elapsed());
        let first = self.first.map_or(0.0, |d| d.as_secs_f64() * 1e3);
        Measured {
            timing: self.timing,
            cpu,
            notes: vec![("first record after ms".into(), format!("{first:.1}"))],
        }
    }
}

/// Reads `records` records of `bytes` from offset 0 of `topic` through librdkafka: `assign()`,
/// no group membership, no commits.
fn consume_kafka(
    addr: &str,
    topic: &str,
    records: u64,
    bytes: usize,
    queue_backoff_ms: Option<u32>,
) -> Result<Measured> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", addr)
        // Needed by librdkafka's assign(); no JoinGroup is sent without subscribe().
        .set("group.id", "eddy-bench-assign")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("max.partition.fetch.bytes", PARTITION_FETCH_BYTES.to_string())
        .set("fetch.max.bytes", FETCH_BYTES.to_string())
        .set("check.crcs", "true")
        .set("socket.nagle.disable", "true");
    if let Some(ms) = queue_backoff_ms {
        config.set("fetch.queue.backoff.ms", ms.to_string());
    }
    overrides(&mut config);
    let consumer: BaseConsumer<Logs> = config.create_with_context(Logs::default())?;
    // Connected, and the partition's leader known, before the clock starts (as eddy's consumer
    // has its connection): assigned before that, librdkafka finds no leader for its offset
    // query and retries it only after a fixed 500 ms.
    consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    let cpu = CpuSnapshot::take();
    let mut blocks = Blocks::new();
    consumer.assign(&assignment)?;
    let deadline = blocks.start + LIMIT;
    let mut seen = 0u64;
    while seen < records {
        match consumer.poll(Duration::from_secs(5)) {
            Some(Ok(m)) => {
                ensure!(m.offset() == seen as i64, "librdkafka: offset {} for {seen}", m.offset());
                ensure!(m.payload().map_or(0, <[u8]>::len) == bytes, "librdkafka: a value's size");
                seen += 1;
                if blocks.received(seen) {
                    ensure!(Instant::now() < deadline, "librdkafka: {seen} of {records} consumed");
                }
            }
            Some(Err(e)) => bail!("librdkafka: consume failed after {seen} records: {e}"),
            None => bail!("librdkafka: no record for 5 s after {seen} of {records}"),
        }
    }
    let mut measured = blocks.finish(cpu.since());
    let end = Instant::now();
    let stats = &consumer.context().stats;
    while !stats.newer_than(end) && end.elapsed() < Duration::from_secs(1) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(10)) {
            bail!("librdkafka: a record past the end, at offset {}", m.offset());
        }
    }
    measured.notes.extend(stats.notes("Fetch"));
    drop(consumer);
    Ok(measured)
}

/// Reads `records` records of `bytes` from offset 0 of `topic` through eddy's consumer.
async fn consume_native(
    conn: Arc<Connection>,
    topic: &str,
    records: u64,
    bytes: usize,
) -> Result<Measured> {
    let config = ConsumerConfig {
        start: SeekTo::Earliest,
        max_bytes: FETCH_BYTES,
        partition_max_bytes: PARTITION_FETCH_BYTES,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(conn, config);
    let cpu = CpuSnapshot::take();
    let mut blocks = Blocks::new();
    consumer.assign(topic, 0..1);
    let deadline = blocks.start + LIMIT;
    let (mut seen, mut fetches) = (0u64, 0u64);
    while seen < records {
        ensure!(Instant::now() < deadline, "eddy: {seen} of {records} consumed");
        let batches = consumer.poll(Duration::from_secs(5)).await?;
        ensure!(!batches.is_empty(), "eddy: no record for 5 s after {seen} of {records}");
        for batch in &batches {
            for r in batch.records() {
                let r = r?;
                ensure!(r.offset == seen, "eddy: offset {} for {seen}", r.offset);
                ensure!(r.value.map_or(0, <[u8]>::len) == bytes, "eddy: a value's size");
                seen += 1;
                blocks.received(seen);
            }
        }
        fetches += 1;
    }
    let mut measured = blocks.finish(cpu.since());
    measured.notes.push(("fetch requests (polls)".into(), fetches.to_string()));
    Ok(measured)
}

/// Reads `records` records of `bytes` from offset 0 of `topic` over the Kafka listener with the
/// least client there can be: one blocking socket on the main thread, a hand-encoded Fetch v4
/// request at a time (the same fetch sizes as the other consumers), and each batch of the
/// answer checked (CRC) and its records decoded with eddy's storage code, as eddy's consumer
/// decodes them. What is left is the broker's Kafka fetch path and the wire.
fn consume_wire(addr: &str, topic: &str, records: u64, bytes: usize) -> Result<Measured> {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(addr)?;
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let cpu = CpuSnapshot::take();
    let mut blocks = Blocks::new();
    let deadline = blocks.start + LIMIT;
    let (mut seen, mut fetches) = (0u64, 0u64);
    let mut answer = Vec::new();
    while seen < records {
        ensure!(Instant::now() < deadline, "bare fetch: {seen} of {records} consumed");
        fetches += 1;
        socket.write_all(&fetch_v4(fetches as i32, topic, seen as i64))?;
        let mut size = [0u8; 4];
        socket.read_exact(&mut size)?;
        answer.resize(u32::from_be_bytes(size) as usize, 0);
        socket.read_exact(&mut answer)?;
        let area = fetched_records(&answer, fetches as i32)?;
        let before = seen;
        for batch in eddy_storage::batch::Batches::new(area) {
            let batch = match batch {
                Ok(batch) => batch,
                // A batch cut short at the end of the answer is fetched again next time.
                Err(eddy_storage::BatchError::Truncated { .. }) => break,
                Err(e) => bail!("bare fetch: a bad batch after {seen} records: {e}"),
            };
            let batch_records = batch.records()?;
            for r in batch_records.iter() {
                let r = r?;
                if r.offset < seen {
                    continue;
                }
                ensure!(r.offset == seen, "bare fetch: offset {} for {seen}", r.offset);
                ensure!(r.value.map_or(0, <[u8]>::len) == bytes, "bare fetch: a value's size");
                seen += 1;
                blocks.received(seen);
            }
        }
        ensure!(seen > before || seen == records, "bare fetch: no record at offset {seen}");
    }
    let mut measured = blocks.finish(cpu.since());
    measured.notes.push(("fetch requests".into(), fetches.to_string()));
    Ok(measured)
}

/// A Fetch v4 request (size-prefixed, header v1) for partition 0 of `topic` from `offset`.
fn fetch_v4(correlation_id: i32, topic: &str, offset: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + topic.len());
    let string = |b: &mut Vec<u8>, s: &str| {
        b.extend_from_slice(&(s.len() as i16).to_be_bytes());
        b.extend_from_slice(s.as_bytes());
    };
    b.extend_from_slice(&[0; 4]); // size, below
    b.extend_from_slice(&1i16.to_be_bytes()); // api key: Fetch
    b.extend_from_slice(&4i16.to_be_bytes()); // version
    b.extend_from_slice(&correlation_id.to_be_bytes());
    string(&mut b, "eddy-bench");
    b.extend_from_slice(&(-1i32).to_be_bytes()); // replica id: a consumer
    b.extend_from_slice(&500i32.to_be_bytes()); // max wait ms
    b.extend_from_slice(&1i32.to_be_bytes()); // min bytes
    b.extend_from_slice(&(FETCH_BYTES as i32).to_be_bytes());
    b.push(0); // isolation level: read uncommitted
    b.extend_from_slice(&1i32.to_be_bytes()); // one topic
    string(&mut b, topic);
    b.extend_from_slice(&1i32.to_be_bytes()); // one partition
    b.extend_from_slice(&0i32.to_be_bytes()); // partition 0
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&(PARTITION_FETCH_BYTES as i32).to_be_bytes());
    let size = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&size.to_be_bytes());
    b
}

/// The records of the one partition of a Fetch v4 answer (after its size prefix).
fn fetched_records(answer: &[u8], correlation_id: i32) -> Result<&[u8]> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let field = answer.get(at..at + n).context("bare fetch: a short answer")?;
        at += n;
        Ok(field)
    };
    let int = |b: &[u8]| {
        i64::from_be_bytes({
            let mut x = [0u8; 8];
            x[8 - b.len()..].copy_from_slice(b);
            x
        })
    };
    ensure!(int(take(4)?) as i32 == correlation_id, "bare fetch: an answer to another request");
    take(4)?; // throttle time
    ensure!(int(take(4)?) == 1, "bare fetch: not one topic in the answer");
    let name = int(take(2)?) as usize;
    take(name)?;
    ensure!(int(take(4)?) == 1, "bare fetch: not one partition in the answer");
    take(4)?; // partition index
    let code = int(take(2)?) as i16;
    ensure!(code == 0, "bare fetch: error code {code}");
    take(16)?; // high watermark, last stable offset
    let aborted = int(take(4)?) as i32;
    if aborted > 0 {
        take(16 * aborted as usize)?;
    }
    let len = int(take(4)?) as i32;
    if len <= 0 {
        return Ok(&[]);
    }
    take(len as usize)
}
