//! The SQL layer's cost (issue 8): one aggregation written in SQL and with the Rust API,
//! replayed from the same log, in the same run.
//!
//! `--records` page views (default 1,000,000) are JSON objects `{"url", "status", "bytes"}`
//! made from the lines of `eddy_processor::sample::access_log` (fields 7, 9 and 10, as awk
//! numbers them), appended in batches of `--batch` to the one partition of topic `pageviews` in
//! `LocalLogs`. Each measurement starts with the whole input in the log and runs a fresh
//! processor until it has caught up (`Processor::start` to `wait_caught_up`):
//!
//! - **Rust API**: `stream::<(), PageView>(Json)` of a `#[derive(Deserialize)]` struct, keyed
//!   by URL, `aggregate(Count)`, its changes written as `{"URL", "VIEWS"}` objects to a topic —
//!   what an embedding program would write.
//! - **SQL**: `CREATE STREAM pageviews (url VARCHAR, status INT, bytes BIGINT) ...;` and
//!   `CREATE TABLE viewsPerUrl AS SELECT url, COUNT(*) AS views FROM pageviews GROUP BY url
//!   EMIT CHANGES;` compiled by `eddy_sql::Session`: the same table and the same
//!   output records.
//!
//! After one unrecorded run of each, each run measures both, in alternating order. Both write
//! every change to their output topic (a CREATE TABLE AS SELECT does) and cache their table's
//! changelog the same way. Each run checks that both tables hold the same counts and that they
//! add up to the input. The goal: SQL at no less than 0.8 x the Rust API's rate.
//!
//! `--only rust` or `--only sql` runs that form once and measures nothing: a single worker
//! thread doing one form's work, for `perf` or `valgrind --tool=callgrind`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use eddy_processor::sample::access_log;
use eddy_processor::{
    Count, Ignore, Json, LocalLogs, LogAccess, Processor, ProcessorBuilder, RuntimeConfig, Utf8,
};
use eddy_sql::{FunctionRegistry, Outcome, Session};
use eddy_storage::{LogConfig, ValidBatch};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::report::{Row, Timing, median, median_against};
use crate::workload::{Options, value_batches};

const INPUT: &str = "pageviews";
/// Give up on a run that has not caught up by then.
const LIMIT: Duration = Duration::from_secs(1800);
/// The goal of issue 8: the SQL layer costs at most 20%.
const GOAL: f64 = 0.8;

const SQL: &str = "
CREATE STREAM pageviews (url VARCHAR, status INT, bytes BIGINT)
  WITH (kafka_topic='pageviews', value_format='json', partitions=1);
CREATE TABLE viewsPerUrl AS
  SELECT url, COUNT(*) AS views FROM pageviews GROUP BY url EMIT CHANGES;
";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PageView {
    url: String,
    status: u16,
    bytes: u64,
}

/// The output record, as the SQL query writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Views {
    #[serde(rename = "URL")]
    url: String,
    #[serde(rename = "VIEWS")]
    views: u64,
}

fn rust_pipeline() -> Result<Processor> {
    let b = ProcessorBuilder::new("views-per-url", 1);
    b.stream::<(), PageView>(INPUT, Ignore, Json)
        .select_key(|_, v| v.url.clone())
        .aggregate("viewsPerUrl", Count)?
        .changes()
        .map(|url: String, views| (url.clone(), Views { url, views }))
        .to("views-per-url", Utf8, Json);
    Ok(b.build()?)
}

fn sql_pipeline() -> Result<(Processor, String)> {
    let mut session = Session::new(FunctionRegistry::new());
    for outcome in session.execute(SQL, 1)? {
        if let Outcome::Query { compiled, .. } = outcome {
            let table = compiled.processor.tables().first().cloned().context("no table")?;
            return Ok((compiled.processor, table));
        }
    }
    bail!("the SQL made no persistent query")
}

/// The page views, in batches.
fn input(records: u64, per_batch: usize) -> Result<(Vec<ValidBatch>, u64)> {
    let mut text = Vec::with_capacity(records as usize * 200);
    access_log::generate(&mut text, records, 6, 7)?;
    let text = std::str::from_utf8(&text).context("generated lines are UTF-8")?;
    let mut values = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let (Some(url), Some(status), Some(size)) = (words.get(6), words.get(8), words.get(9))
        else {
            bail!("a generated line has fewer than 10 fields: {line}");
        };
        let value = serde_json::json!({
            "url": url, "status": status.parse::<u16>()?, "bytes": size.parse::<u64>()?,
        })
        .to_string();
        values.push((0, value));
    }
    let bytes = values.iter().map(|(_, v)| v.len() as u64).sum();
    Ok((value_batches(values, per_batch)?, bytes))
}

/// Runs `processor` over a fresh copy of the input until it has caught up; the table's counts.
fn run_one(
    opts: &Options,
    batches: &[ValidBatch],
    processor: Processor,
    table: &str,
) -> Result<(Timing, BTreeMap<String, u64>)> {
    let dir = opts.tempdir()?;
    let logs = Arc::new(LocalLogs::open(dir.path().join("logs"), LogConfig::default())?);
    logs.create_topic(INPUT, 1, false)?;
    for batch in batches {
        logs.append(INPUT, 0, batch)?;
    }
    let mut config = RuntimeConfig::new(dir.path().join("state"));
    config.threads = 1;
    let mut timing = Timing::new();
    let start = Instant::now();
    let running = processor.start(logs, config)?;
    running.wait_caught_up(LIMIT)?;
    timing.finish(start.elapsed());
    let mut counts = BTreeMap::new();
    for (key, value) in running.table::<Value, Value>(table)?.scan() {
        let url = key.as_str().context("a table key is not text")?.to_owned();
        let n = match &value {
            Value::Number(n) => n.as_u64(),
            row => row.get("VIEWS").and_then(Value::as_u64),
        };
        counts.insert(url, n.with_context(|| format!("no count in {value}"))?);
    }
    running.stop()?;
    Ok((timing, counts))
}

/// The two ways the aggregation is written.
#[derive(Debug, Clone, Copy)]
enum Form {
    Rust,
    Sql,
}

/// Builds `form`'s processor and runs it over the input ([`run_one`]).
fn run_form(
    opts: &Options,
    batches: &[ValidBatch],
    form: Form,
) -> Result<(Timing, BTreeMap<String, u64>)> {
    match form {
        Form::Rust => run_one(opts, batches, rust_pipeline()?, "viewsPerUrl"),
        Form::Sql => {
            let (processor, table) = sql_pipeline()?;
            run_one(opts, batches, processor, &table)
        }
    }
}

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let t = Instant::now();
    let (batches, bytes) = input(opts.records, opts.batch)?;
    println!("generated {} page views ({bytes} bytes) in {:.2?}", opts.records, t.elapsed());
    // One form once, nothing measured: what a profiler or an instruction counter looks at.
    match opts.only.as_deref() {
        None => {}
        Some("rust") => return run_form(opts, &batches, Form::Rust).map(|_| vec![]),
        Some("sql") => return run_form(opts, &batches, Form::Sql).map(|_| vec![]),
        Some(other) => bail!("--only: rust or sql, not {other}"),
    }
    // One unrecorded run of each first: the first processor of a process pays for what the
    // later ones find ready (allocator arenas, code and page cache).
    run_form(opts, &batches, Form::Rust)?;
    run_form(opts, &batches, Form::Sql)?;
    let (mut rust, mut sql) = (Vec::new(), Vec::new());
    for run in 0..opts.runs {
        // Which form runs first alternates, so that neither always inherits what the other
        // left behind (dirty pages of its input and output, a freed heap).
        let ((t, rust_counts), (u, sql_counts)) = if run % 2 == 0 {
            let rust = run_form(opts, &batches, Form::Rust)?;
            (rust, run_form(opts, &batches, Form::Sql)?)
        } else {
            let sql = run_form(opts, &batches, Form::Sql)?;
            (run_form(opts, &batches, Form::Rust)?, sql)
        };
        rust.push(Row::new("rust api: count by url", opts.records, bytes, &t));
        sql.push(Row::new("sql: count by url", opts.records, bytes, &u));
        ensure!(sql_counts == rust_counts, "run {}: the SQL and Rust tables differ", run + 1);
        let total: u64 = sql_counts.values().sum();
        ensure!(total == opts.records, "the tables count {total}, expected {}", opts.records);
        println!(
            "run {}: rust {:.0}/s, sql {:.0}/s ({:.2} x)",
            run + 1,
            rust[run].records_per_s,
            sql[run].records_per_s,
            sql[run].records_per_s / rust[run].records_per_s
        );
    }
    let sql_row = median_against(sql, &rust);
    let ratio = sql_row.records_per_s / median(rust.clone()).records_per_s;
    let verdict = if ratio >= GOAL { "met" } else { "missed" };
    Ok(vec![
        median(rust),
        sql_row.note("goal: >= 0.8 x the Rust API (issue 8)", format!("{verdict}: {ratio:.2} x")),
    ])
}
