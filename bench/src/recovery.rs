//! Recovery: how long `Log::open` takes as the number of sealed segments grows, after a clean
//! stop and after `kill -9` of the process that was appending.
//!
//! Open reads only the active segment (sealed ones are taken by name and size, their indexes
//! loaded on first use), so the time should stay flat from 10 to 1000 segments; each row is
//! compared with the 10-segment log opened the same way.
//!
//! The kill -9 case runs the writer as a child process (this binary's hidden `recovery-fill`
//! workload), which fills the log, reports `ready`, and is killed while it holds the log open.
//!
//! The recovery-point case (issue 20): a child (`recovery-fill-active`) fills a 1 GiB active
//! segment, makes all but its last 10 MB durable and records that as the recovery point
//! (`Log::checkpoint`), appends the last 10 MB, and is killed. The same files are then opened
//! 20 times with the recovery point, and 20 times with the checkpoint file removed before each
//! open (the fallback: the whole active segment is checked) — the baseline, in the same run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use eddy_storage::{Log, LogConfig};

use crate::report::{Row, Timing};
use crate::workload::{Options, batches};

const SEGMENT_BYTES: u64 = 64 * 1024;
/// The recovery-point case: one active segment this large...
const ACTIVE_BYTES: u64 = 1 << 30;
/// ...of which this much follows the recovery point.
const TAIL_BYTES: u64 = 10_000_000;
const SEGMENT_COUNTS: [u64; 3] = [10, 100, 1000];
/// Opens timed per log (after one untimed open to settle the page cache).
const OPENS: usize = 20;

fn config() -> LogConfig {
    LogConfig { segment_bytes: SEGMENT_BYTES, retention_ms: None, ..LogConfig::default() }
}

/// Appends batches of 100 records of 100 bytes until the log has `segments` sealed segments
/// and a half-full active one. Used in-process and by the child.
pub fn fill(dir: &Path, segments: u64) -> Result<Log> {
    let log = Log::open(dir, config())?;
    let batches = batches(100, 100, 100);
    let batch = batches.first().context("no batch")?;
    while log.segment_count() as u64 <= segments {
        log.append_valid(batch)?;
    }
    while log.size_bytes() % SEGMENT_BYTES < SEGMENT_BYTES / 2 {
        log.append_valid(batch)?;
    }
    Ok(log)
}

/// The child side of the kill -9 case: fill, say so, and wait to be killed.
pub fn run_fill_child(dir: &str, segments: &str) -> Result<()> {
    let log = fill(Path::new(dir), segments.parse()?)?;
    ready_then_wait(&log)
}

/// A fill child's last words: says it is ready (with the log's end offset), then blocks until
/// killed (or until the parent closes its stdin).
fn ready_then_wait(log: &Log) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout();
    writeln!(out, "ready {}", log.next_offset())?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(())
}

fn time_opens(dir: &Path) -> Result<Timing> {
    Ok(time_opens_with(dir, config(), || Ok(()))?.0)
}

/// Times [`OPENS`] opens (after one untimed one), running `before` ahead of each; also returns
/// the bytes the last open checked, and whether it had to check the whole active segment.
fn time_opens_with(
    dir: &Path,
    config: LogConfig,
    before: impl Fn() -> Result<()>,
) -> Result<(Timing, u64, bool)> {
    before()?;
    drop(Log::open(dir, config.clone())?);
    let mut timing = Timing::new();
    let mut scanned = 0;
    let mut full_scan = false;
    let start = Instant::now();
    for _ in 0..OPENS {
        before()?;
        let t = Instant::now();
        let log = Log::open(dir, config.clone())?;
        timing.record(t.elapsed());
        if log.stats().index_loads != 0 {
            bail!("open loaded {} sealed indexes", log.stats().index_loads);
        }
        scanned = log.stats().recovery_scanned_bytes;
        full_scan = log.stats().recovery_full_scans > 0;
        drop(log);
    }
    timing.finish(start.elapsed());
    Ok((timing, scanned, full_scan))
}

fn active_config() -> LogConfig {
    LogConfig { segment_bytes: ACTIVE_BYTES, retention_ms: None, ..LogConfig::default() }
}

/// The child side of the recovery-point case: a 1 GiB active segment whose last 10 MB follow
/// the recovery point; then it says so and waits to be killed.
pub fn run_fill_active_child(dir: &str) -> Result<()> {
    let log = Log::open(dir, active_config())?;
    let batches = batches(100_000, 100, 100);
    let mut next = batches.iter().cycle();
    let largest = batches.iter().map(|b| b.as_bytes().len() as u64).max().unwrap_or(0);
    while log.size_bytes() + largest < ACTIVE_BYTES - TAIL_BYTES {
        log.append_valid(next.next().context("no batch")?)?;
    }
    log.checkpoint()?;
    while log.size_bytes() + largest < ACTIVE_BYTES {
        log.append_valid(next.next().context("no batch")?)?;
    }
    if log.segment_count() != 1 {
        bail!("the active segment rolled");
    }
    ready_then_wait(&log)
}

/// Opens after kill -9 with the recovery point 10 MB from the end of a 1 GiB active segment,
/// then without it (the checkpoint removed before each open).
fn recovery_point_rows(opts: &Options) -> Result<Vec<Row>> {
    let dir = opts.tempdir()?;
    killed_child(&["recovery-fill-active", &dir.path().display().to_string()])?;
    let checkpoint = dir.path().join("recovery-point.checkpoint");
    let saved = std::fs::read(&checkpoint).context("the child wrote no checkpoint")?;
    let (with, scanned_with, fell_back) = time_opens_with(dir.path(), active_config(), || Ok(()))?;
    ensure!(!fell_back, "the open with the recovery point checked the whole segment");
    let (without, scanned_without, _) =
        time_opens_with(dir.path(), active_config(), || match std::fs::remove_file(&checkpoint) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        })?;
    std::fs::write(&checkpoint, saved)?;
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    let baseline = Row::new(
        "open after kill -9, 1 GiB active segment, no checkpoint (whole segment checked)",
        OPENS as u64,
        0,
        &without,
    )
    .note("opens", OPENS)
    .note("checked per open", mib(scanned_without));
    let row = Row::new(
        "open after kill -9, 1 GiB active segment, recovery point 10 MB from its end",
        OPENS as u64,
        0,
        &with,
    )
    .note("opens", OPENS)
    .note("checked per open", mib(scanned_with))
    .against(&baseline);
    Ok(vec![baseline, row])
}

fn killed_child_log(dir: &Path, segments: u64) -> Result<()> {
    killed_child(&["recovery-fill", &dir.display().to_string(), &segments.to_string()])
}

/// Runs this binary with `args` as a writer child, and kills it (SIGKILL) once it is ready.
fn killed_child(args: &[&str]) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the writer child")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("ready") {
        let _ = child.kill();
        bail!("writer child said {line:?}");
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    Ok(())
}

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (case, killed) in [("clean stop", false), ("kill -9", true)] {
        let mut baseline: Option<Row> = None;
        for segments in SEGMENT_COUNTS {
            let dir = opts.tempdir()?;
            if killed {
                killed_child_log(dir.path(), segments)?;
            } else {
                fill(dir.path(), segments)?.close()?;
            }
            let timing = time_opens(dir.path())?;
            let name = format!("open after {case}, {segments} sealed segments");
            let row = Row::new(name, OPENS as u64, 0, &timing).note("opens", OPENS);
            let row = match &baseline {
                None => {
                    baseline = Some(row.clone());
                    row
                }
                Some(b) => row.against(b),
            };
            rows.push(row);
        }
    }
    rows.extend(recovery_point_rows(opts)?);
    Ok(rows)
}
