//! Replay (issues 7 and 20): how fast the server rebuilds the per-URL count from offset zero,
//! against a batch engine (DuckDB) and `awk '{print $7}' | sort | uniq -c` on the same lines in
//! the same run.
//!
//! `--records` lines (default 10,000,000) come from `eddy_processor::sample::access_log` (the
//! generator of the `processor` workload) and are streamed, `--batch` lines per batch, straight
//! into topic `access-log` (`--partitions`, default 1) of a broker served on loopback in this
//! process (`Served`), and at the same time into a file in the same temporary directory. With
//! one partition the lines have no key and the `url-counts` spec keys them by field 7; with
//! several, each line is keyed by its URL when produced (murmur2 picks the partition) and the
//! spec counts by the record's key, so no repartition is needed. Nothing holds the whole input
//! in memory. After a `sync` (so that writing back the fresh 3 GB does not slow the first
//! measurement), per run:
//!
//! - **awk | sort | uniq -c**: the shell pipeline `awk '{print $7}' FILE | sort | uniq -c >
//!   OUT`, run with `sh -c`, timed from spawn to exit — issue 7's baseline.
//! - **DuckDB**: `bench/duckdb_count.py` (Python's `duckdb` package) runs `SELECT
//!   split_part(line, ' ', 7), count(*) ... GROUP BY 1` over the file read as one VARCHAR column,
//!   on 2 threads; the query's own time (the script's clock around the SQL, the file read
//!   included; not the interpreter's start) — issue 20's baseline and the ratio column.
//! - **replay v1**: the spec (split the line, event time from the `[…]` field, count per URL
//!   into table `requests-per-url`; no output topic) deployed with `Admin::deploy_processor`;
//!   timed from the deploy request until `processor_status` reports lag 0 (polled every 5 ms).
//! - **replay v2**: `Admin::replay_processor` rebuilds the count from offset zero as version 2
//!   beside the serving version 1; timed from the request until the name has switched to
//!   version 2 (the broker's supervisor switches at lag 0 and looks every 50 ms).
//!
//! Checks: the source tasks took in every line; the table, and DuckDB's counts, equal the
//! pipeline's output URL by URL; the table's top 5 (`query_table` top) has the pipeline's five
//! largest counts; the digests of the two versions are equal (`query_table` with `digest`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use eddy_client::{Admin, Connection, ConnectionOptions, TopicConfig};
use eddy_processor::partition_for_key;
use eddy_processor::sample::access_log;
use eddy_protocol::v1;
use eddy_storage::{BatchBuilder, Log, Record};

use crate::net::Served;
use crate::report::{Row, Timing, median, median_against};
use crate::workload::{Options, url_counts_by_key_spec, url_counts_spec};

pub(crate) const INPUT: &str = "access-log";
pub(crate) const NAME: &str = "url-counts";
pub(crate) const TABLE: &str = "requests-per-url";
/// How often the deploy and the replay ask for the processor's status.
pub(crate) const POLL: Duration = Duration::from_millis(5);
/// Give up on a rebuild that has not caught up by then.
const LIMIT: Duration = Duration::from_secs(3600);
/// Issue 20's goal for a replay of a per-key count.
const GOAL_EVENTS_PER_S: f64 = 5_000_000.0;
/// DuckDB's threads: the machine's two cores.
const DUCKDB_THREADS: usize = 2;

/// Takes the generator's output, appends each line as a record in batches of `per_batch`, and
/// writes the same bytes to `file`. With one partition the records have no key; with several,
/// each is keyed by its URL (field 7) and goes to that key's partition (murmur2), as a producer
/// keying page views by URL would send them.
struct Feed {
    logs: Vec<Arc<Log>>,
    file: BufWriter<File>,
    builders: Vec<BatchBuilder>,
    per_batch: usize,
    /// The start of a line split across two writes.
    partial: Vec<u8>,
    lines: u64,
    bytes: u64,
    timestamp: i64,
}

impl Feed {
    fn push_line(&mut self, line: &[u8]) -> io::Result<()> {
        let key = (self.logs.len() > 1)
            .then(|| line.split(|b| *b == b' ').filter(|w| !w.is_empty()).nth(6))
            .flatten();
        let p = key.map_or(0, |k| partition_for_key(k, self.logs.len() as u32) as usize);
        self.builders[p].push(Record {
            timestamp: self.timestamp + self.lines as i64,
            key,
            value: Some(line),
            headers: &[],
        });
        self.lines += 1;
        self.bytes += line.len() as u64;
        if self.builders[p].record_count() as usize >= self.per_batch {
            self.append(p)?;
        }
        Ok(())
    }

    fn append(&mut self, p: usize) -> io::Result<()> {
        if self.builders[p].is_empty() {
            return Ok(());
        }
        let batch =
            std::mem::take(&mut self.builders[p]).build_valid().map_err(io::Error::other)?;
        self.logs[p].append_valid(&batch).map_err(io::Error::other)?;
        Ok(())
    }

    fn finish(mut self) -> io::Result<(u64, u64)> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.push_line(&line)?;
        }
        for p in 0..self.logs.len() {
            self.append(p)?;
        }
        self.file.flush()?;
        Ok((self.lines, self.bytes))
    }
}

impl Write for Feed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all(buf)?;
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.push_line(&rest[..i])?;
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&rest[..i]);
                self.push_line(&line)?;
            }
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Runs `awk '{print $7}' FILE | sort | uniq -c > OUT` under `sh -c`.
/// Streams `--records` generated access-log lines into the partitions `logs` (keyed by URL
/// when there are several, `Feed`) and into `file`; returns (lines, bytes).
pub(crate) fn feed(logs: Vec<Arc<Log>>, file: &Path, opts: &Options) -> Result<(u64, u64)> {
    let mut feed = Feed {
        builders: logs.iter().map(|_| BatchBuilder::new()).collect(),
        logs,
        file: BufWriter::with_capacity(1 << 20, File::create(file)?),
        per_batch: opts.batch,
        partial: Vec::new(),
        lines: 0,
        bytes: 0,
        timestamp: access_log::START_MS + 30 * 24 * 3_600_000,
    };
    access_log::generate(&mut feed, opts.records, 6, 7)?;
    Ok(feed.finish()?)
}

pub(crate) fn pipeline(file: &Path, out: &Path) -> Result<Timing> {
    let script =
        format!("awk '{{print $7}}' '{}' | sort | uniq -c > '{}'", file.display(), out.display());
    let mut timing = Timing::new();
    let start = Instant::now();
    let status = Command::new("sh").arg("-c").arg(&script).status().context("sh -c")?;
    let elapsed = start.elapsed();
    ensure!(status.success(), "{script} exited with {status}");
    timing.record(elapsed);
    timing.finish(elapsed);
    Ok(timing)
}

/// Runs `bench/duckdb_count.py` (DuckDB's `split_part(line, ' ', 7)` counts, on `threads`
/// threads) and returns the query's own time, which the script measures (the interpreter's
/// start and DuckDB's import are left out, in DuckDB's favour).
fn duckdb(file: &Path, out: &Path, threads: usize) -> Result<Timing> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("duckdb_count.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(file)
        .arg(out)
        .arg(threads.to_string())
        .output()
        .context(
            "running python3 (the replay bench needs python3 with duckdb: pip install duckdb)",
        )?;
    ensure!(
        output.status.success(),
        "{} failed ({}): {}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let secs: f64 =
        String::from_utf8_lossy(&output.stdout).trim().parse().context("DuckDB's time")?;
    let elapsed = Duration::from_secs_f64(secs);
    let mut timing = Timing::new();
    timing.record(elapsed);
    timing.finish(elapsed);
    Ok(timing)
}

/// `uniq -c` output: `   COUNT URL` per line.
pub(crate) fn read_uniq(out: &Path) -> Result<HashMap<String, u64>> {
    let text = std::fs::read_to_string(out)?;
    let mut counts = HashMap::new();
    for line in text.lines() {
        let (n, url) = line.trim_start().split_once(' ').context("a uniq -c line")?;
        counts.insert(url.to_string(), n.parse()?);
    }
    Ok(counts)
}

/// `n` largest counts, largest first.
fn top_counts(counts: impl Iterator<Item = u64>, n: usize) -> Vec<u64> {
    let mut all: Vec<u64> = counts.collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    all.truncate(n);
    all
}

pub(crate) fn count_of(row: &v1::TableRow) -> Result<u64> {
    row.value.parse().with_context(|| format!("count {:?} of {}", row.value, row.key))
}

/// What a rebuild measured.
struct Rebuild {
    timing: Timing,
    /// From the request until lag 0 (v1) or until the name switched (v2).
    secs: f64,
    /// v2 only: from the request until the building version's lag was 0.
    caught_up_secs: Option<f64>,
    digest: u64,
    top5: Vec<u64>,
}

/// The table's whole content, its top 5 counts and its digest, from the serving version.
async fn table_facts<T: eddy_client::Transport>(
    admin: &Admin<T>,
    version: u32,
) -> Result<(HashMap<String, u64>, Vec<u64>, u64)> {
    let top = admin
        .query_table(v1::QueryTableRequest {
            table: TABLE.into(),
            query: Some(v1::query_table_request::Query::Top(v1::TopQuery {
                n: 5,
                by: String::new(),
            })),
            digest: true,
        })
        .await?;
    ensure!(top.version == version, "version {} answered, expected {version}", top.version);
    let top5 = top.rows.iter().map(count_of).collect::<Result<Vec<_>>>()?;
    let scan = admin
        .query_table(v1::QueryTableRequest {
            table: TABLE.into(),
            query: Some(v1::query_table_request::Query::Scan(v1::ScanQuery::default())),
            digest: false,
        })
        .await?;
    let mut table = HashMap::new();
    for row in &scan.rows {
        let url: String = serde_json::from_str(&row.key).context("a text key")?;
        table.insert(url, count_of(row)?);
    }
    Ok((table, top5, top.digest))
}

/// Deploys the spec, waits for lag 0, rebuilds it with `replay_processor` and waits for the
/// switch; checks both tables against the pipeline's counts.
fn rebuilds(
    served: &Served,
    spec: &str,
    records: u64,
    expected: &HashMap<String, u64>,
) -> Result<(Rebuild, Rebuild)> {
    let want_top5 = top_counts(expected.values().copied(), 5);
    served.runtime.block_on(async {
        let conn = Connection::connect(&served.addr, ConnectionOptions::default()).await?;
        let admin = Admin::new(Arc::new(conn));

        let mut timing = Timing::new();
        let start = Instant::now();
        admin.deploy_processor(spec).await?;
        let status = crate::processor::until_caught_up(&admin, NAME, &mut timing, LIMIT).await?;
        let secs = start.elapsed();
        timing.finish(secs);
        let taken: u64 = status.tasks.iter().map(|t| t.records_in).sum();
        ensure!(taken == records, "v1 took in {taken} records, expected {records}");
        let (table, top5, digest) = table_facts(&admin, 1).await?;
        ensure!(table == *expected, "v1's table differs from the pipeline's counts");
        ensure!(top5 == want_top5, "v1's top 5 {top5:?}, the pipeline's {want_top5:?}");
        let first =
            Rebuild { timing, secs: secs.as_secs_f64(), caught_up_secs: None, digest, top5 };

        let mut timing = Timing::new();
        let start = Instant::now();
        admin.replay_processor(NAME).await?;
        let mut caught_up = None;
        let status = loop {
            let t = Instant::now();
            let status = admin.processor_status(NAME).await?;
            timing.record(t.elapsed());
            if let Some(b) = &status.building {
                if b.state == "failed" {
                    bail!("the rebuild failed: {}", b.error);
                }
                if caught_up.is_none() && b.lag == 0 && !b.tasks.is_empty() {
                    caught_up = Some(start.elapsed());
                }
            } else if status.version == 2 {
                break status;
            }
            if start.elapsed() > LIMIT {
                bail!("not switched after {LIMIT:?}");
            }
            tokio::time::sleep(POLL).await;
        };
        let secs = start.elapsed();
        timing.finish(secs);
        let taken: u64 = status.tasks.iter().map(|t| t.records_in).sum();
        ensure!(taken == records, "v2 took in {taken} records, expected {records}");
        let (table, top5, digest) = table_facts(&admin, 2).await?;
        ensure!(table == *expected, "v2's table differs from the pipeline's counts");
        ensure!(top5 == want_top5, "v2's top 5 {top5:?}, the pipeline's {want_top5:?}");
        let second = Rebuild {
            timing,
            secs: secs.as_secs_f64(),
            caught_up_secs: caught_up.map(|d| d.as_secs_f64()),
            digest,
            top5,
        };
        Ok((first, second))
    })
}

fn goal_note(rate: f64) -> String {
    let verdict = if rate >= GOAL_EVENTS_PER_S { "met" } else { "missed" };
    format!("{verdict}: {:.0} events/s = {:.3} x the goal", rate, rate / GOAL_EVENTS_PER_S)
}

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let (mut awk, mut duck, mut v1s, mut v2s) = (vec![], vec![], vec![], vec![]);
    let parts = opts.partitions;
    // One partition: unkeyed lines, keyed by URL with `key_by`. Several: lines keyed by URL at
    // produce time, counted by their key (no repartition).
    let spec = if parts == 1 { url_counts_spec(1, None) } else { url_counts_by_key_spec(1) };
    for run in 0..opts.runs {
        let served = Served::start(opts)?;
        let config = TopicConfig { partitions: Some(parts), ..TopicConfig::default() };
        let topic = served.broker.create_topic(INPUT, Some(&config))?;
        let files = opts.tempdir()?;
        let (file, out) = (files.path().join("access.log"), files.path().join("uniq-c.txt"));

        let t = Instant::now();
        let (records, bytes) = feed(topic.partitions.clone(), &file, opts)?;
        ensure!(records == opts.records, "fed {records} lines, expected {}", opts.records);
        let fed = t.elapsed();
        println!(
            "run {}: {records} lines ({bytes} bytes) into the topic and {} in {fed:.2?}",
            run + 1,
            file.display()
        );
        // Write back the 3 GB just written (topic and file) before anything is timed, so the
        // kernel's writeback does not slow whichever measurement comes first.
        let synced = Command::new("sync").status().context("running sync")?;
        ensure!(synced.success(), "sync failed: {synced}");

        let t = pipeline(&file, &out)?;
        let expected = read_uniq(&out)?;
        ensure!(
            expected.values().sum::<u64>() == records,
            "the pipeline counted {} lines, expected {records}",
            expected.values().sum::<u64>()
        );
        awk.push(
            Row::new("awk '{print $7}' | sort | uniq -c", records, bytes, &t)
                .note("urls", expected.len())
                .note(
                    "feed (generate + append + write file), s",
                    format!("{:.1}", fed.as_secs_f64()),
                ),
        );
        println!("run {}: awk | sort | uniq -c in {:.2?}", run + 1, t.elapsed);
        let duck_out = files.path().join("duckdb.txt");
        let t = duckdb(&file, &duck_out, DUCKDB_THREADS)?;
        ensure!(read_uniq(&duck_out)? == expected, "DuckDB's counts differ from the pipeline's");
        duck.push(Row::new(
            "DuckDB: split_part(line, ' ', 7) counts (2 threads)",
            records,
            bytes,
            &t,
        ));
        println!("run {}: DuckDB in {:.2?}", run + 1, t.elapsed);

        let (first, second) = rebuilds(&served, &spec, records, &expected)?;
        ensure!(
            first.digest == second.digest,
            "digests differ: v1 {:016x}, v2 {:016x}",
            first.digest,
            second.digest
        );
        let v1 = Row::new("replay v1: deploy -> lag 0", records, bytes, &first.timing);
        let goal = goal_note(v1.records_per_s);
        let v1 = v1
            .note("partitions", parts)
            .note("time to caught-up, s", format!("{:.2}", first.secs))
            .note("digest", format!("{:016x}", first.digest))
            .note("top 5 counts (= the pipeline's)", format!("{:?}", first.top5))
            .note("goal: >= 5,000,000 events/s (issue 20)", goal);
        let v2 = Row::new("replay v2: replay -> switch", records, bytes, &second.timing);
        let goal = goal_note(v2.records_per_s);
        let v2 = v2
            .note("time to switch, s", format!("{:.2}", second.secs))
            .note(
                "time to caught-up (building lag 0), s",
                second.caught_up_secs.map_or("-".into(), |s| format!("{s:.2}")),
            )
            .note("digest (= v1's)", format!("{:016x}", second.digest))
            .note("top 5 counts (= the pipeline's)", format!("{:?}", second.top5))
            .note("goal: >= 5,000,000 events/s (issue 20)", goal);
        println!(
            "run {}: awk {:.0}/s, DuckDB {:.0}/s, replay v1 {:.0}/s ({:.2} s), replay v2 {:.0}/s ({:.2} s), digests equal",
            run + 1,
            awk[run].records_per_s,
            duck[run].records_per_s,
            v1.records_per_s,
            first.secs,
            v2.records_per_s,
            second.secs
        );
        v1s.push(v1);
        v2s.push(v2);
        drop(files);
        drop(served);
    }
    let v1 = against_both(v1s, &duck, &awk);
    let v2 = against_both(v2s, &duck, &awk);
    Ok(vec![median(awk), median(duck), v1, v2])
}

/// The median run of `rows` against DuckDB (the baseline column), with its ratios to awk's
/// pipeline and the two goals.
fn against_both(rows: Vec<Row>, duck: &[Row], awk: &[Row]) -> Row {
    let mut to_awk: Vec<f64> =
        rows.iter().zip(awk).map(|(r, b)| r.records_per_s / b.records_per_s).collect();
    to_awk.sort_by(f64::total_cmp);
    let awk_ratio = to_awk[to_awk.len() / 2];
    let row = median_against(rows, duck);
    let ratio = row.ratio.unwrap_or(0.0);
    let verdict = |r: f64| if r > 1.0 { "met" } else { "missed" };
    row.clone()
        .note("vs awk | sort | uniq -c (median of per-run ratios)", format!("{awk_ratio:.2} x"))
        .note(
            "goal: faster than DuckDB (issue 20)",
            format!("{}: {ratio:.2} x DuckDB's rate", verdict(ratio)),
        )
        .note(
            "goal: faster than awk | sort | uniq -c (issue 7)",
            format!("{}: {awk_ratio:.2} x the pipeline's rate", verdict(awk_ratio)),
        )
}
