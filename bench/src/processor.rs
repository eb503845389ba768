//! The per-URL count of issue 6 (requests per URL of an nginx access log), embedded and in the
//! server.
//!
//! `--records` lines come from `eddy_processor::sample::access_log` (the generator the
//! processor's access-log test and example use: Zipf-like popularity over 20,000 URLs, six hours
//! of timestamps), built once into batches of `--batch` records and appended to topic
//! `access-log` with 1 and then 2 partitions (line *i* to partition *i mod P*). Each measurement
//! starts with all input in the log and runs until the processor has caught up with it:
//!
//! - **read**: the floor — every input partition read end to end through `LogAccess::read` on
//!   `LocalLogs`, each record decoded and its value checked as UTF-8. No processing.
//! - **embedded builder**: the pipeline written with the typed builder over `LocalLogs` in a
//!   temporary directory: parse the URL (field 7) and the time of each line, key by URL
//!   (repartitioned by URL when P > 1), count into table `requests-per-url`, send the changes
//!   to `url-counts`. Timed from `Processor::start` to `wait_caught_up`.
//! - **embedded spec**: the `url-counts` spec of `broker/src/processors/spec/mod.rs` compiled by the
//!   broker's own compiler and run over `LocalLogs` — the server's pipeline (JSON values)
//!   without the server.
//! - **server**: the same spec deployed with `Admin::deploy_processor` to a broker served on
//!   loopback in this process (`Served`); timed from the deploy request until
//!   `processor_status(name).lag == 0`, polled every 5 ms.
//!
//! Every variant runs with as many worker threads as the input has partitions (the spec says so
//! with `threads = P`). Each run checks that the whole input was counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use eddy_broker::processors::spec::Spec;
use eddy_client::{Admin, Connection, ConnectionOptions, TopicConfig};
use eddy_processor::sample::access_log::{self, time_of, url_of};
use eddy_processor::{
    Count, Ignore, Json, LocalLogs, LogAccess, Processor, ProcessorBuilder, RuntimeConfig, Utf8,
};
use eddy_storage::{Batches, LogConfig, ValidBatch};

use crate::net::Served;
use crate::report::{Row, Timing, median, median_against};
use crate::workload::{Options, url_counts_spec, value_batches};

pub(crate) const INPUT: &str = "access-log";
const OUTPUT: &str = "url-counts";
const TABLE: &str = "requests-per-url";
const NAME: &str = "url-counts";
/// How often the server run asks for the processor's lag.
const POLL: Duration = Duration::from_millis(5);
/// Give up on a run that has not caught up by then.
pub(crate) const LIMIT: Duration = Duration::from_secs(1800);

/// The input: the generated lines, in batches per partition.
pub(crate) struct Input {
    pub(crate) partitions: u32,
    batches: Vec<Vec<ValidBatch>>,
}

/// Generates `records` lines and splits them into `per_batch`-record batches, line `i` going to
/// partition `i % partitions`. Record timestamps are a fixed instant after the log (event time
/// comes from the line), as in the example.
pub(crate) fn input(lines: &[&str], partitions: u32, per_batch: usize) -> Result<Input> {
    let now_ms = access_log::START_MS + 30 * 24 * 3_600_000;
    let batches = (0..partitions as usize)
        .map(|p| {
            let mine = lines.iter().enumerate().skip(p).step_by(partitions as usize);
            value_batches(mine.map(|(i, line)| (now_ms + i as i64, line)), per_batch)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Input { partitions, batches })
}

/// A fresh `LocalLogs` under `dir` holding the input.
pub(crate) fn local_input(dir: &std::path::Path, input: &Input) -> Result<Arc<LocalLogs>> {
    let logs = Arc::new(LocalLogs::open(dir.join("logs"), LogConfig::default())?);
    logs.create_topic(INPUT, input.partitions, false)?;
    for (p, batches) in input.batches.iter().enumerate() {
        for batch in batches {
            logs.append(INPUT, p as u32, batch)?;
        }
    }
    Ok(logs)
}

/// Reads every input partition end to end, decoding each record: the floor under any processor.
pub(crate) fn read_floor(logs: &dyn LogAccess, partitions: u32, records: u64) -> Result<Timing> {
    let mut timing = Timing::new();
    let mut seen = 0u64;
    let mut bytes = 0usize;
    let start = Instant::now();
    for p in 0..partitions {
        let (mut next, end) = (logs.start_offset(INPUT, p)?, logs.end_offset(INPUT, p)?);
        while next < end {
            let t = Instant::now();
            let data = logs.read(INPUT, p, next, 1 << 20)?;
            for batch in Batches::new(&data) {
                let batch = batch?;
                for record in batch.records()?.iter() {
                    let record = record?;
                    if record.offset < next {
                        continue;
                    }
                    let line = std::str::from_utf8(record.value.unwrap_or_default())?;
                    bytes += line.len();
                    seen += 1;
                }
                next = batch.last_offset() + 1;
            }
            timing.record(t.elapsed());
        }
    }
    timing.finish(start.elapsed());
    ensure!(seen == records && bytes > 0, "read {seen} records, expected {records}");
    Ok(timing)
}

/// The per-URL count written with the typed builder: what an embedding program would write.
fn builder_pipeline(partitions: u32) -> Result<Processor> {
    let b = ProcessorBuilder::new(NAME, 1);
    let by_url = requests_by_url(&b, partitions);
    by_url.aggregate(TABLE, Count)?.changes().to(OUTPUT, Utf8, Json);
    Ok(b.build()?)
}

/// Each line's URL as the key, its time as the event time (repartitioned by URL when the
/// input has several partitions): the start of the typed builder's pipelines.
pub(crate) fn requests_by_url(
    b: &ProcessorBuilder,
    partitions: u32,
) -> eddy_processor::Stream<String, ()> {
    let by_url = b
        .stream::<(), String>(INPUT, Ignore, Utf8)
        .flat_map(|(), line: String| url_of(&line).map(|u| (u.to_owned(), time_of(&line))))
        .event_time(|_, time, ts| time.unwrap_or(ts))
        .map_values(|_, _| ());
    if partitions > 1 { by_url.repartition("by-url", partitions) } else { by_url }
}

/// Runs `processor` over a fresh copy of the input in `LocalLogs` until it has caught up;
/// checks that the counts add up to the input.
fn embedded(opts: &Options, input: &Input, records: u64, processor: Processor) -> Result<Timing> {
    let dir = opts.tempdir()?;
    let logs = local_input(dir.path(), input)?;
    let mut config = RuntimeConfig::new(dir.path().join("state"));
    config.threads = input.partitions as usize;
    let mut timing = Timing::new();
    let start = Instant::now();
    let running = processor.start(logs, config)?;
    running.wait_caught_up(LIMIT)?;
    timing.finish(start.elapsed());
    let counted: u64 = running.table::<String, u64>(TABLE)?.scan().iter().map(|(_, n)| n).sum();
    running.stop()?;
    ensure!(counted == records, "the table counts {counted} requests, expected {records}");
    Ok(timing)
}

/// Deploys the spec to a served broker holding the input and polls its status until the lag is
/// zero; checks that the tasks reading the source took in the whole input.
fn server(opts: &Options, input: &Input, records: u64) -> Result<Timing> {
    let served = Served::start(opts)?;
    let config = TopicConfig { partitions: Some(input.partitions), ..TopicConfig::default() };
    let topic = served.broker.create_topic(INPUT, Some(&config))?;
    for (p, batches) in input.batches.iter().enumerate() {
        for batch in batches {
            topic.partitions[p].append_valid(batch)?;
        }
    }
    let text = url_counts_spec(input.partitions, Some(OUTPUT));
    served.runtime.block_on(async {
        let conn = Connection::connect(&served.addr, ConnectionOptions::default()).await?;
        let admin = Admin::new(Arc::new(conn));
        let mut timing = Timing::new();
        let start = Instant::now();
        admin.deploy_processor(&text).await?;
        let status = until_caught_up(&admin, NAME, &mut timing, LIMIT).await?;
        timing.finish(start.elapsed());
        let taken: u64 = status
            .tasks
            .iter()
            .filter(|t| t.inputs.iter().any(|i| i.topic == INPUT))
            .map(|t| t.records_in)
            .sum();
        ensure!(taken == records, "source tasks took in {taken} records, expected {records}");
        admin.drop_processor(NAME).await?;
        Ok(timing)
    })
}

/// Asks for processor `name`'s status every `POLL` (each call's latency into `timing`) until
/// it has tasks and lag 0; fails if it failed or `limit` has passed.
pub(crate) async fn until_caught_up<T: eddy_client::Transport>(
    admin: &Admin<T>,
    name: &str,
    timing: &mut Timing,
    limit: Duration,
) -> Result<eddy_protocol::v1::ProcessorInfo> {
    let start = Instant::now();
    loop {
        let t = Instant::now();
        let status = admin.processor_status(name).await?;
        timing.record(t.elapsed());
        if status.state == "failed" {
            bail!("processor failed: {}", status.error);
        }
        if status.lag == 0 && !status.tasks.is_empty() {
            return Ok(status);
        }
        if start.elapsed() > limit {
            bail!("not caught up after {limit:?}: lag {}", status.lag);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `min / median / max` of the per-run ratios of `rows` to `baselines`.
fn ratios(rows: &[Row], baselines: &[Row]) -> String {
    let mut r: Vec<f64> =
        rows.iter().zip(baselines).map(|(a, b)| a.records_per_s / b.records_per_s).collect();
    r.sort_by(f64::total_cmp);
    format!("{:.3} / {:.3} / {:.3}", r[0], r[r.len() / 2], r[r.len() - 1])
}

/// `records` generated access-log lines (six hours of timestamps), one per line.
pub(crate) fn access_log_text(records: u64) -> Result<String> {
    let mut text = Vec::with_capacity(records as usize * 200);
    access_log::generate(&mut text, records, 6, 7)?;
    String::from_utf8(text).context("generated lines are UTF-8")
}

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let t = Instant::now();
    let text = access_log_text(opts.records)?;
    let lines: Vec<&str> = text.lines().collect();
    let records = lines.len() as u64;
    let bytes = lines.iter().map(|l| l.len() as u64).sum::<u64>();
    ensure!(records == opts.records, "generated {records} lines, expected {}", opts.records);
    println!("generated {records} lines ({bytes} bytes) in {:.2?}", t.elapsed());

    let mut rows = Vec::new();
    for partitions in [1u32, 2] {
        let input = input(&lines, partitions, opts.batch)?;
        let label = format!("{partitions}p {partitions}t");
        let (mut read, mut built, mut compiled, mut served) = (vec![], vec![], vec![], vec![]);
        for run in 0..opts.runs {
            let dir = opts.tempdir()?;
            let logs = local_input(dir.path(), &input)?;
            let t = read_floor(&*logs, partitions, records)?;
            read.push(Row::new(format!("read input {partitions}p"), records, bytes, &t));
            drop((logs, dir));

            let t = embedded(opts, &input, records, builder_pipeline(partitions)?)?;
            built.push(Row::new(format!("embedded builder {label}"), records, bytes, &t));

            let processor = Spec::parse(&url_counts_spec(partitions, Some(OUTPUT)))?
                .compile(&|t: &str| (t == INPUT).then_some(partitions))?;
            let t = embedded(opts, &input, records, processor)?;
            compiled.push(Row::new(format!("embedded spec {label}"), records, bytes, &t));

            let t = server(opts, &input, records)?;
            served.push(
                Row::new(format!("server spec {label}"), records, bytes, &t)
                    .note("op", "one processor_status call"),
            );
            println!(
                "{partitions}p run {}: read {:.0}/s, builder {:.0}/s, spec {:.0}/s, server {:.0}/s",
                run + 1,
                read[run].records_per_s,
                built[run].records_per_s,
                compiled[run].records_per_s,
                served[run].records_per_s
            );
        }
        let vs_spec = ratios(&served, &compiled);
        rows.push(median(read.clone()));
        rows.push(median_against(built.clone(), &read));
        rows.push(
            median_against(compiled.clone(), &built)
                .note("vs read input (min / median / max)", ratios(&compiled, &read)),
        );
        rows.push(
            median_against(served.clone(), &built)
                .note("vs embedded spec (min / median / max)", vs_spec)
                .note("vs read input (min / median / max)", ratios(&served, &read)),
        );
    }
    Ok(rows)
}
