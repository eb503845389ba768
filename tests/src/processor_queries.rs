//! Processors and their tables over the native protocol, for tests: a processor's status,
//! waiting (with a deadline) until it has caught up with its source, pull queries (`get`,
//! `scan`, SQL `SELECT`), and table digests through the CLI.
#![allow(clippy::unwrap_used, reason = "a test helper: a failure is the test's failure")]

use std::time::{Duration, Instant};

use eddy_protocol::v1::{self, request, response, sql_result::Result as SqlAnswer};
use serde_json::Value;

use crate::broker::BrokerProcess;
use crate::cli::eddy;
use crate::raw_client::RawClient;

pub fn status(client: &mut RawClient, name: &str) -> v1::ProcessorInfo {
    let body = request::Body::ProcessorStatus(v1::ProcessorStatusRequest { name: name.into() });
    match client.call_ok(body) {
        response::Body::ProcessorStatus(s) => s.processor.unwrap(),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Polls `name`'s status until it has caught up with all of `source`: running, `tasks` tasks
/// each reporting its inputs, lag 0 and every source partition read to its end (`records` in
/// all). The lag covers repartition topics too, and a task reports its positions only after
/// writing what it read, so this is the moment the tables hold every record. Fails with the
/// status if the processor fails or the deadline passes.
pub fn wait_caught_up(
    client: &mut RawClient,
    name: &str,
    tasks: usize,
    source: &str,
    records: usize,
    until: Instant,
) {
    loop {
        let s = status(client, name);
        assert!(s.state != "failed" && s.error.is_empty(), "{name} failed: {s:#?}");
        let read: u64 = s
            .tasks
            .iter()
            .flat_map(|t| &t.inputs)
            .filter(|i| i.topic == source)
            .map(|i| i.position)
            .sum();
        let reporting = s.tasks.len() == tasks && s.tasks.iter().all(|t| !t.inputs.is_empty());
        if s.state == "running" && s.building.is_none() && reporting && s.lag == 0 {
            assert_eq!(read, records as u64, "{name} read more than {source} holds: {s:#?}");
            // Nothing set aside: no record failed to decode (a compressed batch included), and
            // none was late (the jitter is below the grace).
            for t in &s.tasks {
                assert_eq!((t.late, t.decode_errors), (0, 0), "{name} task {}: {s:#?}", t.task);
            }
            return;
        }
        assert!(Instant::now() < until, "{name} did not catch up with {source}: {s:#?}");
        // A status request costs the broker little; 10 ms between them leaves it the CPU.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A pull query by key over the wire: the row's value (JSON), or None when the key is absent.
pub fn get(client: &mut RawClient, table: &str, key: &str) -> Option<Value> {
    let body = request::Body::QueryTable(v1::QueryTableRequest {
        table: table.into(),
        query: Some(v1::query_table_request::Query::Get(Value::from(key).to_string())),
        digest: false,
    });
    let rows = match client.call_ok(body) {
        response::Body::QueryTable(q) => q.rows,
        other => panic!("unexpected answer {other:?}"),
    };
    assert!(rows.len() <= 1, "{table} {key}: {rows:?}");
    rows.first().map(|r| {
        assert_eq!(r.key, Value::from(key).to_string(), "{table}: the key of {r:?}");
        serde_json::from_str(&r.value).unwrap()
    })
}

/// Every row of a table over the wire, as (key JSON, value JSON), in key order.
pub fn scan(client: &mut RawClient, table: &str) -> Vec<(Value, Value)> {
    let body = request::Body::QueryTable(v1::QueryTableRequest {
        table: table.into(),
        query: Some(v1::query_table_request::Query::Scan(v1::ScanQuery::default())),
        digest: false,
    });
    match client.call_ok(body) {
        response::Body::QueryTable(q) => q
            .rows
            .iter()
            .map(|r| {
                (serde_json::from_str(&r.key).unwrap(), serde_json::from_str(&r.value).unwrap())
            })
            .collect(),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// A SQL pull query over the wire: its rows (JSON arrays in SELECT order).
pub fn sql_pull(client: &mut RawClient, text: &str) -> Vec<Value> {
    let body =
        request::Body::Sql(v1::SqlRequest { sql: text.into(), from: vec![], max_wait_ms: 0 });
    let results = match client.call_ok(body) {
        response::Body::Sql(r) => r.results,
        other => panic!("unexpected answer {other:?}"),
    };
    match results.into_iter().last().and_then(|r| r.result) {
        Some(SqlAnswer::Rows(rows)) => {
            rows.rows.iter().map(|r| serde_json::from_str(r).unwrap()).collect()
        }
        other => panic!("{text}: {other:?}"),
    }
}

/// `eddy query TABLE --scan --digest`: the rows it prints and the digest on its stderr line.
pub fn digest_with_cli(broker: &BrokerProcess, table: &str) -> (Vec<String>, String) {
    let run = eddy(broker, &["query", table, "--scan", "--digest"]);
    assert!(run.success, "eddy query {table} --scan --digest: {run:?}");
    let footer = run.stderr.lines().last().unwrap_or_default();
    let digest = footer
        .split_once(" digest ")
        .map(|(_, d)| d.trim().to_string())
        .unwrap_or_else(|| panic!("no digest from eddy query {table}: {:?}", run.stderr));
    (run.stdout, digest)
}

/// The rows of `eddy query` (`KEY<TAB>VALUE`) for two tables are the same, non-empty, and so
/// are their digests.
pub fn assert_same_digest(broker: &BrokerProcess, native: &str, kafka: &str) {
    let (native_rows, native_digest) = digest_with_cli(broker, native);
    let (kafka_rows, kafka_digest) = digest_with_cli(broker, kafka);
    assert!(!native_rows.is_empty(), "{native} is empty");
    assert_eq!(native_rows, kafka_rows, "eddy query --scan of {native} and {kafka}");
    assert_eq!(native_digest, kafka_digest, "digests of {native} and {kafka}");
}
