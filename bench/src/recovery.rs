//! Recovery: how long `Log::open` takes as the number of sealed segments grows, after a clean
//! stop and after `kill -9` of the process that was appending.
//!
//! Open reads only the active segment (sealed ones are taken by name and size, their indexes
//! loaded on first use), so the time should stay flat from 10 to 1000 segments; each row is
//! compared with the 10-segment log opened the same way.
//!
//! The kill -9 case runs the writer as a child process (this binary's hidden `recovery-fill`
//! workload), which fills the log, reports `ready`, and is killed while it holds the log open.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use eddy_storage::{Log, LogConfig};

use crate::report::{Row, Timing};
use crate::workload::{Options, batches};

const SEGMENT_BYTES: u64 = 64 * 1024;
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
    use std::io::Write;
    let mut out = std::io::stdout();
    writeln!(out, "ready {}", log.next_offset())?;
    out.flush()?;
    // Block until killed (or until the parent closes our stdin).
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(())
}

fn time_opens(dir: &Path) -> Result<Timing> {
    drop(Log::open(dir, config())?);
    let mut timing = Timing::new();
    let start = Instant::now();
    for _ in 0..OPENS {
        let t = Instant::now();
        let log = Log::open(dir, config())?;
        timing.record(t.elapsed());
        if log.stats().index_loads != 0 {
            bail!("open loaded {} sealed indexes", log.stats().index_loads);
        }
        drop(log);
    }
    timing.finish(start.elapsed());
    Ok(timing)
}

fn killed_child_log(dir: &Path, segments: u64) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["recovery-fill", &dir.display().to_string(), &segments.to_string()])
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
    Ok(rows)
}
