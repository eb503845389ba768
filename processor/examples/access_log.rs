//! The course's log analysis, embedded: generate an nginx access log (1,000,000 lines by
//! default, Zipf-like URL popularity, six hours of timestamps), produce it into a topic, count
//! requests per URL (a table) and per URL per hour (a tumbling window), and compare the top 5 with
//! `awk '{print $7}' access.log | sort | uniq -c | sort -rn | head -n 5`.
//!
//! ```text
//! cargo run --release -p eddy-processor --example access_log -- [LINES] [DIR]
//! ```
//!
//! Prints the time each stage took and the processing throughput in events per second.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, Write};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use eddy_processor::sample::access_log::{self, time_of, url_of};
use eddy_processor::{
    Count, Emit, Ignore, LocalLogs, LogAccess, ProcessorBuilder, RuntimeConfig, Utf8, Windowed,
    Windows,
};
use eddy_storage::{BatchBuilder, LogConfig, Record};

const HOUR_MS: i64 = 3_600_000;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let lines: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
    let keep = args.next();
    let tmp = tempfile_dir()?;
    let dir = keep.map(std::path::PathBuf::from).unwrap_or_else(|| tmp.clone());
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("access.log");

    let t = Instant::now();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    access_log::generate(&mut file, lines, 6, 7)?;
    file.flush()?;
    drop(file);
    println!("generated {lines} lines in {:.2?} -> {}", t.elapsed(), path.display());

    let logs = Arc::new(LocalLogs::open(dir.join("logs"), LogConfig::default())?);
    logs.create_topic("access-log", 1, false)?;
    let t = Instant::now();
    produce(&logs, &path)?;
    println!("produced in {:.2?}", t.elapsed());

    let b = ProcessorBuilder::new("access", 1);
    let by_url = b
        .stream("access-log", Ignore, Utf8)
        .flat_map(|(), line: String| url_of(&line).map(|u| (u.to_owned(), line.clone())))
        .event_time(|_, line, ts| time_of(line).unwrap_or(ts))
        .map_values(|_, _| ());
    by_url.aggregate("requests-per-url", Count)?;
    by_url.window(Windows::tumbling(HOUR_MS).grace(60_000)).aggregate(
        "requests-per-url-hour",
        Count,
        Emit::Final,
    )?;
    let processor = b.build()?;
    let t = Instant::now();
    let running = processor.start(logs.clone(), RuntimeConfig::new(dir.join("state")))?;
    running.wait_caught_up(Duration::from_secs(3600))?;
    let elapsed = t.elapsed();
    println!(
        "processed {lines} events in {elapsed:.2?}: {:.0} events/s",
        lines as f64 / elapsed.as_secs_f64()
    );

    let per_url = running.table::<String, u64>("requests-per-url")?;
    let mut counts: Vec<(u64, String)> = per_url.scan().into_iter().map(|(u, c)| (c, u)).collect();
    counts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    println!("top 5 by the processor:");
    for (c, u) in counts.iter().take(5) {
        println!("{c:>8} {u}");
    }
    let t = Instant::now();
    let shell = Command::new("sh")
        .arg("-c")
        .arg("awk '{print $7}' \"$1\" | sort | uniq -c | sort -rn | head -n 5")
        .arg("sh")
        .arg(&path)
        .output()?;
    let shell = String::from_utf8(shell.stdout)?;
    println!("top 5 by awk | sort | uniq -c | sort -rn | head ({:.2?}):\n{shell}", t.elapsed());
    let theirs: Vec<u64> =
        shell.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
    let ours: Vec<u64> = counts.iter().take(5).map(|c| c.0).collect();
    ensure!(ours == theirs, "top-5 counts differ: {ours:?} vs {theirs:?}");

    let hourly = running.table::<Windowed<String>, u64>("requests-per-url-hour")?;
    let (keys, bytes) = hourly.size();
    println!("per-url-per-hour table: {keys} windows, {bytes} bytes");
    let status = running.status();
    for (task, s) in &status {
        println!("task {task}: {:?} state {:?}", s.metrics, s.state);
    }
    running.stop()?;
    if tmp == dir {
        std::fs::remove_dir_all(&tmp).context("remove the temporary directory")?;
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("eddy-access-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// One record per line: no key, the line as value, the record timestamp "now" (a fixed instant
/// after the log, so runs are reproducible; event time comes from the line itself).
fn produce(logs: &LocalLogs, path: &std::path::Path) -> anyhow::Result<()> {
    let now_ms = access_log::START_MS + 30 * 24 * HOUR_MS;
    let reader = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut builder = BatchBuilder::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        builder.push(Record {
            timestamp: now_ms + i as i64,
            key: None,
            value: Some(line.as_bytes()),
            headers: &[],
        });
        if builder.len_bytes() >= 256 * 1024 {
            logs.append("access-log", 0, &std::mem::take(&mut builder).build_valid()?)?;
        }
    }
    if !builder.is_empty() {
        logs.append("access-log", 0, &builder.build_valid()?)?;
    }
    Ok(())
}
