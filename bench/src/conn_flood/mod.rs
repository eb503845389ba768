//! `conn-flood`: what a flood of idle and half-open connections costs a normal client on each
//! listener (docs/security.md, "Connection limits"). A child `eddy serve` with authentication
//! on and its default connection limits serves the native, Kafka and HTTP listeners. A normal
//! client from 127.0.0.1 runs whole sessions, `--records` on each listener, one at a time —
//! connect, authenticate, produce one record, close ([`sessions`]) — and their latencies are
//! measured twice in the same run:
//!
//! 1. quiet: nothing else connects;
//! 2. under the flood ([`flood`]): on every listener, `--idle` (5,000) connections from 127.0.0.2
//!    that never send a byte, and `--half-open` (1,000) from 127.0.0.3 that start the
//!    handshake and never finish it (a SASL handshake with no authentication after it; half an
//!    HTTP request head). A flood connection the broker held until its handshake deadline is
//!    opened again after `FLOOD_REOPEN`, for as long as the measurement lasts, as a source
//!    that wants to keep its connections would; one refused at once is given up, unless
//!    `--retry-refused true` makes the flood a connection storm (every refused connection
//!    tried again after `FLOOD_REOPEN`).
//!
//! Each flooded row is compared with its quiet one by p50 and p99 (the goal is within 2x), and
//! notes say how many connections the listener held at most (the broker's own gauge), how many
//! flood connections it refused at once, and how long it held those that never completed their
//! handshake. Every acknowledged record must be
//! in the topic afterwards (its end offset counts them), or the workload fails.

mod flood;
mod sessions;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use eddy_client::{Admin, Connection, ConnectionOptions, Credentials, OffsetQuery, TopicConfig};

use crate::memory::{BrokerChild, eddy_binary};
use crate::report::{Row, Timing};
use crate::workload::Options;
use flood::{Flood, Listener};
use sessions::Sessions;

const TOPIC: &str = "steady";
const USER: &str = "admin";
const PASSWORD: &str = "bench-admin-password";
/// How long a flood connection waits before it is opened again once the broker closed it.
const FLOOD_REOPEN: Duration = Duration::from_secs(1);
/// How often the broker's connection gauges are read during the flood.
const GAUGE_EVERY: Duration = Duration::from_millis(100);
/// Longest the flood may take to make its first attempt on every connection.
const FLOOD_START: Duration = Duration::from_secs(120);

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let binary = eddy_binary(opts)?;
    let dir = opts.tempdir()?;
    let bootstrap = format!("{USER}:{PASSWORD}");
    let env = [("EDDY_AUTH_ENABLED", "true"), ("EDDY_BOOTSTRAP_USER", bootstrap.as_str())];
    let args = ["--kafka-listen", "127.0.0.1:0"];
    let mut broker = BrokerChild::start_with_args(&binary, dir.path(), TOPIC, true, &args, &env)?;
    let http = broker.http_addr(dir.path())?;
    let kafka = broker.kafka_addr.clone().context("the Kafka listener's address")?;
    let addrs = [broker.addr.clone(), kafka, http];

    let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let credentials = Credentials::new(USER, PASSWORD);
    let options = ConnectionOptions { credentials: Some(credentials), ..Default::default() };
    let admin = client.block_on(async {
        let conn = Connection::connect(&addrs[0], options.clone()).await?;
        let admin = Admin::new(Arc::new(conn));
        admin.create_topic(TOPIC, TopicConfig::default()).await?;
        anyhow::Ok(admin)
    })?;
    let mut sessions = Sessions::new(&client, &addrs, options, (USER, PASSWORD), TOPIC)?;

    let quiet = measure(opts, &mut sessions)?;
    let flood_runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let retry = opts.retry_refused;
    let flood = Flood::start(flood_runtime.handle(), &addrs, opts.idle, opts.half_open, retry)?;
    flood.wait_started(Instant::now() + FLOOD_START)?;
    let gauges = Gauges::sample(addrs[2].clone(), sessions.basic.clone());
    let loud = measure(opts, &mut sessions)?;
    let open = gauges.stop()?;
    let seen = flood.stop();
    drop(flood_runtime);

    let acknowledged = sessions.acknowledged();
    let end = client.block_on(admin.list_offsets(TOPIC, &[(0, OffsetQuery::Latest)]))?;
    let end = end.first().map(|o| o.offset).context("no end offset")?;
    ensure!(
        end == acknowledged,
        "the topic ends at offset {end}, but {acknowledged} records were acknowledged"
    );

    let mut rows = Vec::new();
    for (i, listener) in Listener::ALL.iter().enumerate() {
        let name = listener.session();
        let quiet_row = Row::new(format!("{name}, quiet"), opts.records, 0, &quiet[i]);
        let loud_row = Row::new(format!("{name}, under the flood"), opts.records, 0, &loud[i]);
        let p50 = loud_row.op_p50_us / quiet_row.op_p50_us.max(1e-9);
        let p99 = loud_row.op_p99_us / quiet_row.op_p99_us.max(1e-9);
        let loud_row = seen[i]
            .notes(loud_row)
            .note("connections the listener held at most", open[i])
            .note("p50 under the flood / quiet", format!("{p50:.2} (goal: at most 2)"))
            .note("p99 under the flood / quiet", format!("{p99:.2} (goal: at most 2)"));
        rows.extend([quiet_row, loud_row]);
    }
    Ok(rows)
}

/// The broker's own count of each listener's open connections (`eddy_connections` on
/// `/metrics`), sampled on a thread of its own until stopped; the most seen.
struct Gauges {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<[u64; 3]>>,
}

impl Gauges {
    fn sample(http: String, basic: String) -> Gauges {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut most = [0u64; 3];
            while !stopped.load(Ordering::Acquire) {
                let metrics = sessions::http(&http, &basic, "GET /metrics", "")?;
                for (i, listener) in Listener::ALL.iter().enumerate() {
                    let name = format!("eddy_connections{{listener=\"{}\"}} ", listener.name());
                    let open = metrics.lines().find_map(|l| l.strip_prefix(name.as_str()));
                    let open = open.and_then(|v| v.trim().parse::<f64>().ok());
                    most[i] = most[i].max(open.context("no eddy_connections")? as u64);
                }
                std::thread::sleep(GAUGE_EVERY);
            }
            Ok(most)
        });
        Gauges { stop, thread }
    }

    fn stop(self) -> Result<[u64; 3]> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().map_err(|_| anyhow::anyhow!("the gauge thread panicked"))?
    }
}

/// `--records` sessions on each listener in turn (native, Kafka, HTTP, native, ...), so that
/// the three see the same moments of the flood.
fn measure(opts: &Options, sessions: &mut Sessions<'_>) -> Result<[Timing; 3]> {
    let mut timings = [Timing::new(), Timing::new(), Timing::new()];
    let started = Instant::now();
    for _ in 0..opts.records {
        for (listener, timing) in Listener::ALL.iter().zip(&mut timings) {
            let began = Instant::now();
            sessions.run(*listener).with_context(|| format!("a {} session", listener.name()))?;
            timing.record(began.elapsed());
        }
    }
    for timing in &mut timings {
        timing.finish(started.elapsed());
    }
    Ok(timings)
}
