//! The access-log analysis of eddy-processor's `tests/access_log.rs`, written in SQL: requests
//! per URL, and per URL per hour in a tumbling window on the time inside each line. Same
//! generator, same answers: the expected counts come from the sample module's own line parsing
//! (`url_of`, `time_of`), which `access_log.rs` checks against `awk | sort | uniq -c`.
#![allow(clippy::unwrap_used)]

#[path = "../../processor/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use eddy_processor::sample::access_log::{self, time_of, url_of};
use eddy_processor::{LogAccess, RuntimeConfig};
use eddy_sql::{FunctionRegistry, Outcome, Session};
use serde_json::Value;

const HOUR_MS: i64 = 3_600_000;

const SQL: &str = r"
CREATE STREAM accessLog (line VARCHAR) WITH (kafka_topic='access-log', value_format='raw', partitions=2);

-- Field 7 (as awk counts) is the URL; the bracketed time is the event time.
CREATE STREAM requests WITH (timestamp='ts') AS
  SELECT SPLIT(line, ' ')[7] AS url,
         PARSE_TIMESTAMP(REGEXP_EXTRACT('\[([^\]]+)\]', line, 1), 'dd/MMM/yyyy:HH:mm:ss Z') AS ts
  FROM accessLog
  EMIT CHANGES;

CREATE TABLE requestsPerUrl AS
  SELECT url, COUNT(*) AS requests FROM requests GROUP BY url EMIT CHANGES;

CREATE TABLE requestsPerUrlHour AS
  SELECT url, WINDOWSTART AS hour, COUNT(*) AS requests
  FROM requests
  WINDOW TUMBLING (SIZE 1 HOUR, GRACE PERIOD 24 HOURS)
  GROUP BY url
  EMIT FINAL;

SELECT url, requests FROM requestsPerUrl WHERE requests >= 100;
";

fn lines() -> u64 {
    std::env::var("EDDY_ACCESS_LINES").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000)
}

#[test]
fn sql_url_counts_and_hourly_counts_match_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    access_log::generate(&mut file, lines(), 6, common::seed(7)).unwrap();
    drop(file);

    let logs = common::open_logs(&dir.path().join("logs"));
    let mut session = Session::new(FunctionRegistry::new());
    let mut running = Vec::new();
    let mut pull = None;
    for o in session.execute(SQL, 1).unwrap() {
        match o {
            Outcome::Declared(i) => logs.create_topic(&i.topic, i.partitions, false).unwrap(),
            Outcome::Query { compiled, .. } => {
                let config = RuntimeConfig::new(dir.path().join("state"));
                running.push(compiled.processor.start(logs.clone(), config).unwrap());
            }
            Outcome::Select(q) => pull = Some(q),
            other => panic!("unexpected {other:?}"),
        }
    }

    // Produce as access_log.rs does (no key, record time "now"), and count independently.
    let now_ms = access_log::START_MS + 30 * 24 * HOUR_MS;
    let mut per_url: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_hour: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let reader = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let (mut chunk, mut partition) = (Vec::new(), 0);
    for (i, line) in reader.lines().enumerate() {
        let line = line.unwrap();
        let url = url_of(&line).unwrap().to_owned();
        let hour = time_of(&line).unwrap().div_euclid(HOUR_MS) * HOUR_MS;
        *per_url.entry(url.clone()).or_default() += 1;
        *per_hour.entry((url, hour)).or_default() += 1;
        chunk.push((None, Some(line.into_bytes()), now_ms + i as i64));
        if chunk.len() == 2_000 {
            common::produce(&*logs, "access-log", partition, &chunk, 500);
            chunk.clear();
            partition ^= 1;
        }
    }
    common::produce(&*logs, "access-log", partition, &chunk, 500);
    for _ in 0..2 {
        for r in &running {
            r.wait_caught_up(Duration::from_secs(120)).unwrap();
        }
    }

    let table = running[1].table::<Value, Value>("REQUESTSPERURL").unwrap();
    let ours: BTreeMap<String, u64> = table
        .scan()
        .into_iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v["REQUESTS"].as_u64().unwrap()))
        .collect();
    assert_eq!(ours, per_url);
    let mut top: Vec<(u64, String)> = ours.iter().map(|(u, c)| (*c, u.clone())).collect();
    top.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    eprintln!("top 5: {:?}", &top[..5]);

    let hourly = running[2].table::<Value, Value>("REQUESTSPERURLHOUR").unwrap();
    let ours_hourly: BTreeMap<(String, i64), u64> = hourly
        .scan()
        .into_iter()
        .map(|(k, v)| {
            assert_eq!(k["end"].as_i64().unwrap() - k["start"].as_i64().unwrap(), HOUR_MS);
            assert_eq!(v["HOUR"], k["start"]);
            let url = k["key"].as_str().unwrap().to_owned();
            ((url, v["HOUR"].as_i64().unwrap()), v["REQUESTS"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(ours_hourly, per_hour);
    let late: u64 =
        running.iter().flat_map(|r| r.status().into_values()).map(|s| s.metrics.late).sum();
    assert_eq!(late, 0);

    // The pull query scans the table and filters: the popular URLs.
    let pull = pull.unwrap();
    let rows = pull.run(&table, &session.functions).unwrap();
    let want: Vec<&String> = per_url.iter().filter(|(_, c)| **c >= 100).map(|(u, _)| u).collect();
    let got: Vec<&str> = rows.iter().map(|r| r["URL"].as_str().unwrap()).collect();
    assert_eq!(got, want);
    assert!(!got.is_empty());
    for r in running {
        r.stop().unwrap();
    }
}
