//! The course's log analysis, embedded: an nginx access log produced into a topic, requests per
//! URL counted into a table (checked against `awk | sort | uniq -c | sort -rn | head`), and
//! requests per URL per hour in a tumbling window (checked against an independent count).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::Command;
use std::time::Duration;

use eddy_processor::sample::access_log::{self, format_time, time_of, url_of};
use eddy_processor::{
    Count, Emit, Ignore, LogAccess, ProcessorBuilder, RuntimeConfig, Utf8, Windowed, Windows,
};

const HOUR_MS: i64 = 3_600_000;

fn lines() -> u64 {
    std::env::var("EDDY_ACCESS_LINES").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000)
}

fn access_processor() -> eddy_processor::Processor {
    let b = ProcessorBuilder::new("access", 1);
    let by_url = b
        .stream("access-log", Ignore, Utf8)
        .flat_map(|(), line: String| url_of(&line).map(|u| (u.to_owned(), line.clone())))
        // Event time is the time in the line, not the record's (producer's) timestamp.
        .event_time(|_, line, ts| time_of(line).unwrap_or(ts))
        .map_values(|_, _| ())
        .repartition("by-url", 2);
    by_url.aggregate("requests-per-url", Count).unwrap();
    by_url
        .window(Windows::tumbling(HOUR_MS).grace(24 * HOUR_MS))
        .aggregate("requests-per-url-hour", Count, Emit::Final)
        .unwrap();
    b.build().unwrap()
}

#[test]
fn url_counts_match_the_shell_pipeline_and_hourly_counts_match_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    access_log::generate(&mut file, lines(), 6, common::seed(7)).unwrap();
    drop(file);

    // Produce: no key, the line as value, the record timestamp "now" (a fixed, later instant).
    let logs = common::open_logs(&dir.path().join("logs"));
    logs.create_topic("access-log", 2, false).unwrap();
    let now_ms = access_log::START_MS + 30 * 24 * HOUR_MS;
    let reader = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let mut chunk = Vec::new();
    let mut partition = 0;
    for (i, line) in reader.lines().enumerate() {
        chunk.push((None, Some(line.unwrap().into_bytes()), now_ms + i as i64));
        if chunk.len() == 2_000 {
            common::produce(&*logs, "access-log", partition, &chunk, 500);
            chunk.clear();
            partition ^= 1;
        }
    }
    common::produce(&*logs, "access-log", partition, &chunk, 500);

    let processor = access_processor();
    let config = RuntimeConfig::new(dir.path().join("state"));
    let running = processor.start(logs.clone(), config).unwrap();
    running.wait_caught_up(Duration::from_secs(120)).unwrap();

    // Top 5 by the real shell pipeline.
    let shell = Command::new("sh")
        .arg("-c")
        .arg("awk '{print $7}' \"$1\" | sort | uniq -c | sort -rn | head -n 5")
        .arg("sh")
        .arg(&path)
        .output()
        .unwrap();
    assert!(shell.status.success());
    let expected: Vec<(u64, String)> = String::from_utf8(shell.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (count, url) = l.trim().split_once(' ').unwrap();
            (count.parse().unwrap(), url.to_owned())
        })
        .collect();
    assert_eq!(expected.len(), 5);

    let per_url = running.table::<String, u64>("requests-per-url").unwrap();
    let mut counts: Vec<(u64, String)> = per_url.scan().into_iter().map(|(u, c)| (c, u)).collect();
    counts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let total: u64 = counts.iter().map(|c| c.0).sum();
    assert_eq!(total, lines());
    // Ties: the counts must agree position by position; URLs strictly above the fifth count
    // must be the same set, and each URL the shell printed at the fifth count must have it.
    let ours: Vec<u64> = counts.iter().take(5).map(|c| c.0).collect();
    let theirs: Vec<u64> = expected.iter().map(|c| c.0).collect();
    assert_eq!(ours, theirs, "top-5 counts");
    let fifth = theirs[4];
    let above = |v: &[(u64, String)]| {
        let mut s: Vec<String> = v.iter().filter(|c| c.0 > fifth).map(|c| c.1.clone()).collect();
        s.sort();
        s
    };
    assert_eq!(above(&counts[..5]), above(&expected));
    for (count, url) in expected.iter().filter(|c| c.0 == fifth) {
        assert_eq!(per_url.get(url).unwrap(), Some(*count), "{url}");
    }
    eprintln!("top 5: {expected:?}");

    // Per URL per hour: the shell groups by the line's own "dd/Mon/yyyy:HH" (the log's zone is
    // a whole number of hours, so local hours are UTC hours); the table's windows are mapped to
    // the same text through the window start.
    let shell = Command::new("sh")
        .arg("-c")
        .arg("awk '{print $7, substr($4, 2, 14)}' \"$1\" | sort | uniq -c")
        .arg("sh")
        .arg(&path)
        .output()
        .unwrap();
    assert!(shell.status.success());
    let mut expected_hourly = BTreeMap::new();
    for l in String::from_utf8(shell.stdout).unwrap().lines() {
        let mut f = l.split_whitespace();
        let count: u64 = f.next().unwrap().parse().unwrap();
        let url = f.next().unwrap().to_owned();
        let hour = f.next().unwrap().to_owned();
        expected_hourly.insert((url, hour), count);
    }
    let hourly = running.table::<Windowed<String>, u64>("requests-per-url-hour").unwrap();
    let mut ours_hourly = BTreeMap::new();
    for (w, count) in hourly.scan() {
        assert_eq!(w.end - w.start, HOUR_MS);
        assert_eq!(w.start.rem_euclid(HOUR_MS), 0);
        ours_hourly.insert((w.key, format_time(w.start)[..14].to_owned()), count);
    }
    assert_eq!(ours_hourly.len(), expected_hourly.len());
    assert_eq!(ours_hourly, expected_hourly);

    let status = running.status();
    let late: u64 = status.values().map(|s| s.metrics.late).sum();
    assert_eq!(late, 0);
    let state: u64 = status.values().map(|s| s.state.table_keys).sum();
    assert_eq!(state as usize, counts.len() + ours_hourly.len());
    running.stop().unwrap();

    // The changelog is the table: its latest value per key equals the live table.
    let changelog = processor.changelog_topic("requests-per-url").unwrap();
    let latest = common::latest_by_key(&common::read_topic(&*logs, &changelog));
    assert_eq!(latest.len(), counts.len());
    for (k, v) in latest {
        let url: String = serde_json::from_slice(&k).unwrap();
        let count: u64 = serde_json::from_slice(&v).unwrap();
        assert_eq!(per_url.get(&url).unwrap(), Some(count));
    }
}

#[test]
fn time_of_reads_back_format_time() {
    let t = access_log::START_MS + 12_345_000;
    let line = format!("1.2.3.4 - - [{}] \"GET / HTTP/1.1\" 200 1 \"-\" \"x\"", format_time(t));
    assert_eq!(time_of(&line), Some(t), "{line}");
}
