//! Processors inside `eddy serve`, deployed from spec files with the CLI: requests per URL and
//! per URL per hour over an access log equal independent counts of the file (the per-URL one
//! by the shell pipeline `awk '{print $7}' | sort | uniq -c`); after a restart the processors
//! resume where they were (no result twice); a dropped processor is gone with its internal
//! topics and stays gone; a bad spec is refused with one clear line.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_client::{Connection, ConnectionOptions, Consumer, ConsumerConfig, SeekTo};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::cli::{eddy, eddy_fails, eddy_ok};
use eddy_tests::generate::Rng;

const LINES: u64 = 50_000;
const MORE: u64 = 1_000;
const HOUR_MS: i64 = 3_600_000;
/// 2023-10-10 13:00:00 UTC.
const START_MS: i64 = 1_696_942_800_000;

const URL_COUNTS: &str = r#"
name = "url-counts"
version = 1
source = { topic = "access", format = "text" }
[[ops]]
op = "fields"
fields = { url = 7 }
[[ops]]
op = "key_by"
field = "url"
[[ops]]
op = "aggregate"
table = "requests"
fn = "count"
[[ops]]
op = "to"
topic = "url-counts"
"#;

/// The grace covers the whole log: the source has two partitions, read by two tasks at their
/// own pace, so after the repartition by URL one task's records can trail the other's by hours
/// of event time (docs/processors.md, "Watermarks").
const URL_HOURLY: &str = r#"
name = "url-hourly"
version = 1
source = { topic = "access", format = "text" }
[[ops]]
op = "fields"
fields = { url = 7, time = "4-5", status = 9 }
[[ops]]
op = "filter"
field = "status"
equals = "200"
[[ops]]
op = "event_time"
field = "time"
format = "clf"
[[ops]]
op = "key_by"
field = "url"
[[ops]]
op = "window"
kind = "tumbling"
size_ms = 3600000
grace_ms = 86400000
[[ops]]
op = "aggregate"
table = "requests-per-hour"
fn = "count"
[[ops]]
op = "to"
topic = "url-hourly"
"#;

/// One access-log line; returns it with its URL, hour start and status.
fn line(rng: &mut Rng, i: u64) -> (String, String, i64, u32) {
    // Skewed popularity: the square of a uniform index favours small ones.
    let u = rng.below(1000);
    let url = format!("/page/{}", u * u / 1000);
    let ms = START_MS + (i as i64) * 500 + rng.below(400) as i64;
    let secs = ms / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // All within 10 Oct 2023 (UTC), printed in UTC.
    let status = if rng.one_in(10) { 404 } else { 200 };
    let text = format!(
        "10.0.0.{} - - [10/Oct/2023:{h:02}:{m:02}:{s:02} +0000] \"GET {url} HTTP/1.1\" {status} {}",
        rng.below(256),
        rng.below(10_000)
    );
    (text, url, ms - ms.rem_euclid(HOUR_MS), status)
}

/// Reads `topic` from the start until it holds `count` records, and checks that no more
/// follow; returns (key, value) of each, in order per partition.
fn read_exactly(addr: &str, topic: &str, count: u64) -> Vec<(String, serde_json::Value)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let conn = Arc::new(Connection::connect(addr, ConnectionOptions::default()).await.unwrap());
        let partitions =
            eddy_client::Admin::new(conn.clone()).partition_count(topic).await.unwrap();
        let config = ConsumerConfig { start: SeekTo::Earliest, ..ConsumerConfig::default() };
        let mut consumer = Consumer::new(conn, config);
        consumer.assign(topic, 0..partitions);
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut records = Vec::new();
        while (records.len() as u64) < count {
            assert!(Instant::now() < deadline, "{topic}: {} of {count} records", records.len());
            for batch in consumer.poll(Duration::from_millis(500)).await.unwrap() {
                for r in batch.to_records().unwrap() {
                    let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                    records.push((key, serde_json::from_slice(&r.value.unwrap()).unwrap()));
                }
            }
        }
        let extra = consumer.poll(Duration::from_millis(200)).await.unwrap();
        assert!(extra.is_empty() && records.len() as u64 == count, "{topic}: more than {count}");
        records
    })
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.display().to_string()
}

#[test]
fn specs_deployed_in_the_server_count_like_awk_resume_after_restart_and_drop_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let addr = broker.addr().to_string();
    eddy_ok(&broker, &["topic", "create", "access", "--partitions", "2"]);
    let mut rng = Rng::new(0x0edd_ac55);
    let mut text = String::new();
    let mut per_hour: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let mut ok = 0u64;
    for i in 0..LINES {
        let (l, url, hour, status) = line(&mut rng, i);
        text.push_str(&l);
        text.push('\n');
        if status == 200 {
            *per_hour.entry((url, hour)).or_default() += 1;
            ok += 1;
        }
    }
    let log = write(&dir.path().join("access.log"), &text);
    eddy_ok(&broker, &["produce", "access", &log]);
    let counts_spec = write(&dir.path().join("counts.toml"), URL_COUNTS);
    let hourly_spec = write(&dir.path().join("hourly.toml"), URL_HOURLY);
    eddy_ok(&broker, &["processor", "deploy", &counts_spec]);
    eddy_ok(&broker, &["processor", "deploy", &hourly_spec]);

    // Requests per URL: the whole table equals the shell pipeline's counts.
    let counts: BTreeMap<String, serde_json::Value> =
        read_exactly(&addr, "url-counts", LINES).into_iter().collect();
    let awk = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("awk '{{print $7}}' {log} | sort | uniq -c | sort -rn"))
        .output()
        .unwrap();
    let expected: BTreeMap<String, serde_json::Value> = String::from_utf8(awk.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (n, url) = l.trim().split_once(' ').unwrap();
            (url.to_string(), serde_json::Value::from(n.parse::<u64>().unwrap()))
        })
        .collect();
    assert_eq!(counts, expected);

    // Pull queries on the live table agree with it: get, top-N, prefix and range scans.
    let rows = |lines: Vec<String>| -> Vec<(String, u64)> {
        lines
            .iter()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l.split_once('\t').unwrap();
                (k.to_string(), v.parse().unwrap())
            })
            .collect()
    };
    let count = |url: &str| expected[url].as_u64().unwrap();
    let got = rows(eddy_ok(&broker, &["query", "requests", "/page/0"]));
    assert_eq!(got, vec![("/page/0".to_string(), count("/page/0"))]);
    let top = rows(eddy_ok(&broker, &["query", "requests", "--top", "5"]));
    let mut by_count: Vec<u64> = expected.values().map(|v| v.as_u64().unwrap()).collect();
    by_count.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(top.iter().map(|r| r.1).collect::<Vec<_>>(), by_count[..5]);
    assert!(top.iter().all(|(url, n)| count(url) == *n));
    let prefixed =
        rows(eddy_ok(&broker, &["query", "requests", "--prefix", "/page/1", "--limit", "3"]));
    let want: Vec<(String, u64)> = expected
        .keys()
        .filter(|k| k.starts_with("/page/1"))
        .take(3)
        .map(|k| (k.clone(), count(k)))
        .collect();
    assert_eq!(prefixed, want);
    let ranged =
        rows(eddy_ok(&broker, &["query", "requests", "--from", "/page/2", "--to", "/page/3"]));
    let want: Vec<(String, u64)> = expected
        .range("/page/2".to_string().."/page/3".to_string())
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(ranged, want);
    let queried = eddy(&broker, &["query", "requests", "/page/0"]);
    assert!(queried.success && queried.stdout.iter().all(|l| !l.starts_with('#')), "{queried:?}");
    let footer = queried.stderr.lines().last().unwrap().to_string();
    assert!(footer.starts_with("# processor url-counts version 1 inputs "), "{footer}");

    // Requests per URL per hour (status 200 only), keyed by URL with the window in the value.
    let windows: BTreeMap<(String, i64), u64> = read_exactly(&addr, "url-hourly", ok)
        .into_iter()
        .map(|(url, v)| ((url, v["start"].as_i64().unwrap()), v["value"].as_u64().unwrap()))
        .collect();
    assert_eq!(windows, per_hour);

    // A restart resumes both processors where they were: new lines add exactly their results.
    assert!(broker.terminate().success());
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let addr = broker.addr().to_string();
    let listed = eddy_ok(&broker, &["processor", "list"]);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        listed[1].starts_with("url-counts  1  running")
            && listed[2].starts_with("url-hourly  1  running"),
        "{listed:?}"
    );
    let mut more = String::new();
    for i in LINES..LINES + MORE {
        more.push_str(&line(&mut rng, i).0);
        more.push('\n');
    }
    let more_log = write(&dir.path().join("more.log"), &more);
    eddy_ok(&broker, &["produce", "access", &more_log]);
    read_exactly(&addr, "url-counts", LINES + MORE);
    let status = eddy_ok(&broker, &["processor", "status", "url-counts"]);
    assert!(status[0].contains("state=running"), "{status:?}");

    // Drop: gone, with its internal topics and state; its output stays; still gone after a
    // restart.
    eddy_ok(&broker, &["processor", "drop", "url-hourly"]);
    let topics = eddy_ok(&broker, &["topic", "list"]);
    assert!(topics.contains(&"url-hourly".to_string()), "{topics:?}");
    assert!(!topics.iter().any(|t| t.starts_with("url-hourly-1-")), "{topics:?}");
    assert!(topics.iter().any(|t| t.starts_with("url-counts-1-")), "{topics:?}");
    assert!(!dir.path().join("data/processors/url-hourly-1").exists());
    assert!(broker.terminate().success());
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let listed = eddy_ok(&broker, &["processor", "list"]);
    assert_eq!(listed.len(), 2, "{listed:?}");

    // Refusals: one line each, with the code and where.
    let again = eddy_fails(&broker, &["processor", "deploy", &counts_spec]);
    assert!(again.contains("PROCESSOR_EXISTS"), "{again}");
    let bad = write(
        &dir.path().join("bad.toml"),
        "name = \"bad\"\nversion = 1\nsource = { topic = \"access\" }\n[[ops]]\nop = \"key_by\"\nfield = \"u\"\n[[ops]]\nop = \"window\"\nkind = \"hopping\"\nsize_ms = 10\n",
    );
    let e = eddy_fails(&broker, &["processor", "deploy", &bad]);
    assert!(e.contains("INVALID_PROCESSOR_SPEC") && e.contains("op 2 (window): advance_ms"), "{e}");
    let missing = eddy_fails(&broker, &["processor", "status", "nope"]);
    assert!(missing.contains("UNKNOWN_PROCESSOR"), "{missing}");
}
