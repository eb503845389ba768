//! Pull-query latency on a live table under updates (issue 7, item 5).
//!
//! A broker served on loopback in this process (`Served`) holds topic `access-log` (one
//! partition) with `--records` initial lines (default 100,000) from
//! `eddy_processor::sample::access_log`; the `url-counts` spec (no output topic) is deployed
//! over it and left to catch up. Then, per run, while a producer appends new lines through the
//! client over its own TCP connection at `--rate` lines/s (default 20,000; a paced thread sends
//! one `send_batch` of the lines due every millisecond), a query client on another TCP
//! connection issues requests back to back, one at a time, for `PHASE` (or `MAX_QUERIES`) each:
//!
//! - **round trip**: `list_topics` — the floor: one request and answer over the same wire.
//! - **get**: `query_table` get of a URL drawn uniformly from the URLs of the initial lines;
//!   each answer must hold that URL's count.
//! - **top 10**: `query_table` top 10 by count; each answer must hold 10 counts, largest first.
//!
//! Every request's latency (send to answer) goes into an HdrHistogram; the rows show the
//! histograms of all runs merged. The update rate reported is the producer's (lines
//! acknowledged per second of its run) and the processor's (input records taken in per second
//! over the same time).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use eddy_client::{
    Admin, Connection, ConnectionOptions, Producer, ProducerConfig, ProducerRecord, TopicConfig,
    Transport,
};
use eddy_processor::sample::access_log::{self, url_of};
use eddy_protocol::v1;
use eddy_storage::{BatchBuilder, Record};

use crate::net::Served;
use crate::replay::{INPUT, NAME, POLL, TABLE, count_of};
use crate::report::{Row, Timing};
use crate::workload::{Options, url_counts_spec};

/// How long each kind of request is issued per run.
const PHASE: Duration = Duration::from_secs(4);
/// At most this many requests per phase.
const MAX_QUERIES: u64 = 1_000_000;
/// The producer sends for at most this long per run (the three phases and some slack).
const PRODUCE_FOR: Duration = Duration::from_secs(14);
/// Give up on the initial catch-up after this long.
const LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    RoundTrip,
    Get,
    Top,
}

/// One phase of one run.
struct Phase {
    timing: Timing,
    queries: u64,
    /// Records the answers' tables were behind their input's end (get only), max.
    behind_max: u64,
    behind_sum: u64,
}

/// xorshift64: the URL picks.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

async fn phase<T: Transport>(admin: &Admin<T>, kind: Kind, urls: &[String]) -> Result<Phase> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Phase { timing: Timing::new(), queries: 0, behind_max: 0, behind_sum: 0 };
    let start = Instant::now();
    while start.elapsed() < PHASE && out.queries < MAX_QUERIES {
        match kind {
            Kind::RoundTrip => {
                let t = Instant::now();
                let topics = admin.list_topics().await?;
                out.timing.record(t.elapsed());
                ensure!(topics.iter().any(|t| t == INPUT), "list_topics lacks {INPUT}");
            }
            Kind::Get => {
                let url = &urls[rng.below(urls.len())];
                let request = v1::QueryTableRequest {
                    table: TABLE.into(),
                    query: Some(v1::query_table_request::Query::Get(serde_json::to_string(url)?)),
                    digest: false,
                };
                let t = Instant::now();
                let answer = admin.query_table(request).await?;
                out.timing.record(t.elapsed());
                ensure!(answer.rows.len() == 1, "get {url}: {} rows", answer.rows.len());
                ensure!(count_of(&answer.rows[0])? >= 1, "get {url}: a zero count");
                let behind: u64 =
                    answer.inputs.iter().map(|i| i.end_offset.saturating_sub(i.position)).sum();
                out.behind_max = out.behind_max.max(behind);
                out.behind_sum += behind;
            }
            Kind::Top => {
                let request = v1::QueryTableRequest {
                    table: TABLE.into(),
                    query: Some(v1::query_table_request::Query::Top(v1::TopQuery {
                        n: 10,
                        by: String::new(),
                    })),
                    digest: false,
                };
                let t = Instant::now();
                let answer = admin.query_table(request).await?;
                out.timing.record(t.elapsed());
                let counts = answer.rows.iter().map(count_of).collect::<Result<Vec<_>>>()?;
                ensure!(counts.len() == 10, "top 10: {} rows", counts.len());
                ensure!(counts.windows(2).all(|w| w[0] >= w[1]), "top 10 out of order");
            }
        }
        out.queries += 1;
    }
    out.timing.finish(start.elapsed());
    Ok(out)
}

/// What one run measured.
struct RunResult {
    phases: Vec<(Kind, Phase)>,
    /// Lines acknowledged and the producer's time.
    produced: u64,
    produce_secs: f64,
    /// Input records the processor took in while the producer ran.
    processed: u64,
    lag_after: u64,
}

fn one_run(
    opts: &Options,
    initial: &[&str],
    updates: &[&str],
    urls: &[String],
) -> Result<RunResult> {
    let served = Served::start(opts)?;
    let config = TopicConfig { partitions: Some(1), ..TopicConfig::default() };
    let topic = served.broker.create_topic(INPUT, Some(&config))?;
    let now_ms = access_log::START_MS + 30 * 24 * 3_600_000;
    for (n, chunk) in initial.chunks(opts.batch).enumerate() {
        let mut builder = BatchBuilder::new();
        for (i, line) in chunk.iter().enumerate() {
            builder.push(Record {
                timestamp: now_ms + (n * opts.batch + i) as i64,
                key: None,
                value: Some(line.as_bytes()),
                headers: &[],
            });
        }
        topic.partitions[0].append_valid(&builder.build_valid()?)?;
    }
    let rt = &served.runtime;
    let admin = Admin::new(Arc::new(
        rt.block_on(Connection::connect(&served.addr, ConnectionOptions::default()))?,
    ));
    let start = Instant::now();
    rt.block_on(admin.deploy_processor(&url_counts_spec(1, None)))?;
    loop {
        let status = rt.block_on(admin.processor_status(NAME))?;
        if status.state == "failed" {
            bail!("processor failed: {}", status.error);
        }
        if status.lag == 0 && !status.tasks.is_empty() {
            break;
        }
        if start.elapsed() > LIMIT {
            bail!("initial lines not counted after {LIMIT:?}: lag {}", status.lag);
        }
        std::thread::sleep(POLL);
    }
    let records_in =
        |status: &v1::ProcessorInfo| -> u64 { status.tasks.iter().map(|t| t.records_in).sum() };
    let before = records_in(&rt.block_on(admin.processor_status(NAME))?);

    // The producer: its own connection, a paced thread.
    let conn =
        Arc::new(rt.block_on(Connection::connect(&served.addr, ConnectionOptions::default()))?);
    // The producer spawns its worker on the runtime it is created in.
    let _entered = rt.enter();
    let producer = Producer::new(
        conn,
        ProducerConfig { linger: Duration::ZERO, ..ProducerConfig::default() },
    )?;
    let values: Vec<Bytes> = updates.iter().map(|l| Bytes::copy_from_slice(l.as_bytes())).collect();
    let rate = opts.rate;
    let stop = Arc::new(AtomicBool::new(false));
    let handle = rt.handle().clone();
    let pacer = {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<(u64, Duration)> {
            let origin = Instant::now();
            let mut sent = 0usize;
            let mut pending = Vec::new();
            while sent < values.len()
                && !stop.load(Ordering::Relaxed)
                && origin.elapsed() < PRODUCE_FOR
            {
                let due =
                    ((origin.elapsed().as_secs_f64() * rate as f64) as usize).min(values.len());
                if due > sent {
                    let records =
                        values[sent..due].iter().map(|v| ProducerRecord::value(v.clone()));
                    pending.push(handle.block_on(producer.send_batch(INPUT, Some(0), records))?);
                    sent = due;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            for d in pending {
                handle.block_on(d)?;
            }
            let elapsed = origin.elapsed();
            handle.block_on(producer.close())?;
            Ok((sent as u64, elapsed))
        })
    };

    let queries = Admin::new(Arc::new(
        rt.block_on(Connection::connect(&served.addr, ConnectionOptions::default()))?,
    ));
    let mut phases = Vec::new();
    for kind in [Kind::RoundTrip, Kind::Get, Kind::Top] {
        phases.push((kind, rt.block_on(phase(&queries, kind, urls))?));
    }
    stop.store(true, Ordering::Relaxed);
    let (produced, produce_time) =
        pacer.join().map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
    let status = rt.block_on(admin.processor_status(NAME))?;
    let processed = records_in(&status) - before;
    Ok(RunResult {
        phases,
        produced,
        produce_secs: produce_time.as_secs_f64(),
        processed,
        lag_after: status.lag,
    })
}

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let update_lines = opts.rate * PRODUCE_FOR.as_secs();
    let t = Instant::now();
    let mut text = Vec::with_capacity((opts.records + update_lines) as usize * 200);
    access_log::generate(&mut text, opts.records + update_lines, 6, 11)?;
    let text = std::str::from_utf8(&text).context("generated lines are UTF-8")?;
    let lines: Vec<&str> = text.lines().collect();
    let (initial, updates) = lines.split_at(opts.records as usize);
    let urls: Vec<String> = initial
        .iter()
        .filter_map(|l| url_of(l))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_owned)
        .collect();
    println!(
        "generated {} initial and {} update lines ({} URLs in the initial ones) in {:.2?}",
        initial.len(),
        updates.len(),
        urls.len(),
        t.elapsed()
    );

    let mut runs = Vec::new();
    for run in 0..opts.runs {
        let r = one_run(opts, initial, updates, &urls)?;
        let qps: Vec<String> = r
            .phases
            .iter()
            .map(|(k, p)| {
                format!("{k:?} {:.0}/s", p.queries as f64 / p.timing.elapsed.as_secs_f64())
            })
            .collect();
        println!(
            "run {}: {}; produced {:.0} lines/s, processed {:.0}/s, lag after {}",
            run + 1,
            qps.join(", "),
            r.produced as f64 / r.produce_secs,
            r.processed as f64 / r.produce_secs,
            r.lag_after
        );
        runs.push(r);
    }

    let produced: Vec<f64> = runs.iter().map(|r| r.produced as f64 / r.produce_secs).collect();
    let processed: Vec<f64> = runs.iter().map(|r| r.processed as f64 / r.produce_secs).collect();
    let spread = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!("{:.0} / {:.0} / {:.0}", v[0], v[v.len() / 2], v[v.len() - 1])
    };
    let label = |k: Kind| match k {
        Kind::RoundTrip => "round trip (list_topics)".to_string(),
        Kind::Get => "query get (random URL)".to_string(),
        Kind::Top => "query top 10".to_string(),
    };
    let mut rows: Vec<Row> = Vec::new();
    for (i, kind) in [Kind::RoundTrip, Kind::Get, Kind::Top].into_iter().enumerate() {
        let mut merged = Timing::new();
        let (mut queries, mut secs) = (0u64, 0f64);
        let (mut behind_max, mut behind_sum) = (0u64, 0u64);
        let mut per_run_qps = Vec::new();
        for r in &runs {
            let p = &r.phases[i].1;
            merged.merge(&p.timing);
            queries += p.queries;
            secs += p.timing.elapsed.as_secs_f64();
            behind_max = behind_max.max(p.behind_max);
            behind_sum += p.behind_sum;
            per_run_qps.push(p.queries as f64 / p.timing.elapsed.as_secs_f64());
        }
        merged.finish(Duration::from_secs_f64(secs));
        let mut row = Row::new(format!("{} @{}/s", label(kind), opts.rate), queries, 0, &merged)
            .note("queries/s per run (min / median / max)", spread(per_run_qps))
            .note("latency", "per request, send to answer; histograms of all runs merged");
        if kind != Kind::RoundTrip {
            let base = &rows[0];
            row = row.against(base);
        }
        if kind == Kind::Get {
            row = row
                .note(
                    "answers' table behind its input, records (mean / max)",
                    format!("{:.1} / {behind_max}", behind_sum as f64 / queries.max(1) as f64),
                )
                .note(
                    "update rate produced, lines/s per run (min / median / max)",
                    spread(produced.clone()),
                )
                .note(
                    "update rate processed, records/s per run (min / median / max)",
                    spread(processed.clone()),
                )
                .note(
                    "lag after each run",
                    runs.iter().map(|r| r.lag_after.to_string()).collect::<Vec<_>>().join(", "),
                );
        }
        rows.push(row);
    }
    Ok(rows)
}
