//! The sinks' crash windows, made to happen on purpose: eddy-connect's connectors run
//! in-process over a `LocalLogs`, with a positions store that refuses chosen stores — as if the
//! broker died after a batch was applied and before its position was stored. The connector
//! fails, starts again from the last stored position and applies the batch again. Against a
//! real PostgreSQL (tests/src/postgres.rs), as the other connector tests.
//!
//! - the file sink repeats no line, even when the first batch's position is the one lost
//!   (regression: it used to write the first batch twice);
//! - the PostgreSQL sink applies the batch again (at-least-once): upserts write the same rows,
//!   deletes of rows already gone change nothing, the table ends equal to the topic folded;
//! - the PostgreSQL sink maps JSON values of every kind into typed columns, and finds table
//!   `kv` for topic `KV` (regression: eddy's SQL upper-cases topic names, PostgreSQL folds
//!   unquoted table names to lower case, and the default table name is the topic's).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_connect::topics::{OutRecord, Output, read_from};
use eddy_connect::{ConnectorDef, Kind, Positions, Running};
use eddy_processor::{LocalLogs, LogAccess};
use eddy_tests::postgres::Postgres;
use serde_json::{Value, json};

/// Positions in memory; refuses the first `refuse` stores that cover records.
struct FlakyPositions {
    stored: Mutex<HashMap<String, Value>>,
    refuse: Mutex<u32>,
}

/// Whether a stored position (`{"offsets": {..}}`, maybe under `"position"`) is past offset 0.
fn covers_records(position: &Value) -> bool {
    let offsets = position.get("offsets").or_else(|| position["position"].get("offsets"));
    offsets.and_then(Value::as_object).is_some_and(|o| o.values().any(|v| v.as_u64() > Some(0)))
}

impl Positions for FlakyPositions {
    fn load(&self, connector: &str) -> Option<Value> {
        self.stored.lock().unwrap().get(connector).cloned()
    }

    fn store(&self, connector: &str, position: &Value) -> Result<(), String> {
        let mut refuse = self.refuse.lock().unwrap();
        if *refuse > 0 && covers_records(position) {
            *refuse -= 1;
            return Err("refused on purpose: the broker died before the position".into());
        }
        self.stored.lock().unwrap().insert(connector.to_string(), position.clone());
        Ok(())
    }
}

impl FlakyPositions {
    fn new(refuse: u32) -> Arc<FlakyPositions> {
        Arc::new(FlakyPositions { stored: Mutex::default(), refuse: Mutex::new(refuse) })
    }

    /// Waits until `connector`'s stored offsets reach the end of every partition of `topic`.
    fn wait_caught_up(&self, connector: &str, logs: &dyn LogAccess, topic: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stored = self.load(connector).unwrap_or_default();
            let offsets = stored.get("offsets").or_else(|| stored["position"].get("offsets"));
            let done = (0..logs.partition_count(topic).unwrap()).all(|p| {
                let at = offsets.and_then(|o| o[format!("{topic}/{p}")].as_u64()).unwrap_or(0);
                at == logs.end_offset(topic, p).unwrap()
            });
            if done {
                return;
            }
            assert!(Instant::now() < deadline, "{connector} never caught up: {stored}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn logs(dir: &Path) -> Arc<dyn LogAccess> {
    Arc::new(LocalLogs::open(dir, eddy_storage::LogConfig::default()).unwrap())
}

/// Appends `(key, value)` records (`None`: a tombstone) to `topic`, durably.
fn append(
    logs: &Arc<dyn LogAccess>,
    topic: &str,
    partitions: u32,
    records: &[(&str, Option<Value>)],
) {
    let mut out = Output::new(logs.clone());
    out.ensure_topic(topic, partitions).unwrap();
    let records: Vec<OutRecord> = records
        .iter()
        .map(|(k, v)| OutRecord {
            key: Some(k.as_bytes().to_vec()),
            value: v.as_ref().map(|v| v.to_string().into_bytes()),
            timestamp: 1_700_000_000_000,
            headers: vec![],
        })
        .collect();
    out.append(topic, &records).unwrap();
    out.sync().unwrap();
}

/// [`append`] of owned keys, to a topic of 2 partitions.
fn append_owned(logs: &Arc<dyn LogAccess>, topic: &str, records: &[(String, Option<Value>)]) {
    let list: Vec<(&str, Option<Value>)> =
        records.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    append(logs, topic, 2, &list);
}

fn sink(name: &str, options: &[(&str, &str)]) -> ConnectorDef {
    let config = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    ConnectorDef { name: name.into(), kind: Kind::Sink, config, paused: false }
}

/// Every record of `topic` as the file sink writes it: (partition, offset, key, value).
fn topic_lines(logs: &dyn LogAccess, topic: &str) -> Vec<(u64, u64, Value, Value)> {
    let mut out = Vec::new();
    for p in 0..logs.partition_count(topic).unwrap() {
        for r in read_from(logs, topic, p, 0, 1 << 20).unwrap() {
            let value = r.value.map_or(Value::Null, |v| serde_json::from_slice(&v).unwrap());
            let key = r.key.map_or(Value::Null, |k| String::from_utf8(k).unwrap().into());
            out.push((u64::from(p), r.offset, key, value));
        }
    }
    out
}

fn file_lines(path: &Path) -> Vec<(u64, u64, Value, Value)> {
    let mut out: Vec<_> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let n = |f: &str| v[f].as_u64().unwrap();
            (n("partition"), n("offset"), v["key"].clone(), v["value"].clone())
        })
        .collect();
    out.sort_by_key(|l| (l.0, l.1));
    out
}

#[test]
fn the_file_sink_repeats_no_line_when_its_first_position_was_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(&dir.path().join("logs"));
    let records: Vec<(String, Option<Value>)> =
        (0..60).map(|i| (format!("k{}", i % 7), (i % 9 != 4).then(|| json!({"i": i})))).collect();
    append_owned(&logs, "t", &records[..40]);
    let file = dir.path().join("t.jsonl");
    std::fs::write(&file, "").unwrap();
    let positions = FlakyPositions::new(1);
    let def = sink(
        "lines",
        &[
            ("connector.class", "FileStreamSinkConnector"),
            ("file", file.to_str().unwrap()),
            ("topics", "t"),
        ],
    );
    let running = Running::start(def, logs.clone(), positions.clone());
    positions.wait_caught_up("lines", &*logs, "t");
    assert_eq!(running.status().failures, 1, "the refused position failed the connector once");
    append_owned(&logs, "t", &records[40..]);
    positions.wait_caught_up("lines", &*logs, "t");
    running.stop();
    let written = file_lines(&file);
    assert_eq!(written.len(), records.len());
    assert_eq!(written, topic_lines(&*logs, "t"));
}

/// `SELECT k, v, note FROM kv` as `k → (v, note)`.
fn kv_rows(pg: &Postgres) -> BTreeMap<String, (i64, String)> {
    pg.psql("postgres", "SELECT k, v, note FROM kv")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.splitn(3, '|').collect();
            (f[0].to_string(), (f[1].parse().unwrap(), f[2].to_string()))
        })
        .collect()
}

fn pg_sink(pg: &Postgres, name: &str, topic: &str, pk: &str) -> ConnectorDef {
    sink(
        name,
        &[
            ("connector.class", "JdbcSinkConnector"),
            ("connection.url", &pg.jdbc_url("postgres")),
            ("topics", topic),
            ("pk.fields", pk),
        ],
    )
}

#[test]
fn the_pg_sink_applies_a_batch_again_when_its_position_was_not_stored_and_ends_the_same() {
    let pg = Postgres::start();
    pg.psql(
        "postgres",
        "CREATE TABLE kv (k text PRIMARY KEY, v bigint NOT NULL, note text); \
         CREATE TABLE audit (id bigserial PRIMARY KEY, k text, v bigint, op text); \
         CREATE FUNCTION audit() RETURNS trigger AS $$ BEGIN \
           INSERT INTO audit (k, v, op) VALUES (COALESCE(NEW.k, OLD.k), COALESCE(NEW.v, OLD.v), TG_OP); \
           RETURN NULL; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON kv FOR EACH ROW EXECUTE FUNCTION audit();",
    );
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    // Ten keys written twice each; then (the sink stopped) written again and three deleted.
    let round = |from: i64| -> Vec<(String, Option<Value>)> {
        (from..from + 20)
            .map(|i| (format!("k{}", i % 10), Some(json!({"V": i, "note": format!("it's #{i}")}))))
            .collect()
    };
    let mut records = round(0);
    append_owned(&logs, "KV", &records);
    let positions = FlakyPositions::new(0);
    let running =
        Running::start(pg_sink(&pg, "mirror", "KV", "k"), logs.clone(), positions.clone());
    positions.wait_caught_up("mirror", &*logs, "KV");
    running.stop();
    let mut second = round(20);
    second.extend(["k3", "k7", "k8"].map(|k| (k.to_string(), None)));
    append_owned(&logs, "KV", &second);
    records.extend(second);
    *positions.refuse.lock().unwrap() = 1;
    let running =
        Running::start(pg_sink(&pg, "mirror", "KV", "k"), logs.clone(), positions.clone());
    positions.wait_caught_up("mirror", &*logs, "KV");
    assert_eq!(running.status().failures, 1, "the refused position failed the connector once");
    running.stop();

    let mut folded = BTreeMap::new();
    for (k, v) in &records {
        match v {
            Some(v) => {
                let row = (v["V"].as_i64().unwrap(), v["note"].as_str().unwrap().to_string());
                folded.insert(k.clone(), row);
            }
            None => drop(folded.remove(k)),
        }
    }
    assert_eq!(kv_rows(&pg), folded);
    // The second round went in twice: each upserted key's last row written twice, each delete
    // found its row the first time only, and no row ever went back to an older value.
    let audit = pg.psql("postgres", "SELECT k, v, op FROM audit ORDER BY id");
    let mut writes: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut deleted = Vec::new();
    for l in audit.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = l.split('|').collect();
        match f[2] {
            "DELETE" => deleted.push(f[0]),
            _ => writes.entry(f[0]).or_default().push(f[1].parse().unwrap()),
        }
    }
    deleted.sort_unstable();
    assert_eq!(deleted, ["k3", "k7", "k8"]);
    for (k, vs) in &writes {
        let expected = match folded.get(*k) {
            Some((v, _)) => vec![v - 20, *v, *v],
            None => vec![k[1..].parse::<i64>().unwrap() + 10],
        };
        assert_eq!(*vs, expected, "{k}: the rows written");
    }
}

#[test]
fn a_topic_named_in_upper_case_finds_its_lower_case_table_and_every_json_type_maps() {
    let pg = Postgres::start();
    pg.psql(
        "postgres",
        "CREATE TABLE typed (k int PRIMARY KEY, \"Mixed\" text, d float8, b boolean, ts timestamptz, \
           j jsonb, tags text[], n numeric, missing text);",
    );
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let row = json!({"MIXED": "it's a \\ back\"slash", "D": 1.5, "B": true, "TS": 1_714_557_600_000i64,
                     "J": {"a": [1, 2]}, "TAGS": ["x", "y z"], "N": 12.25, "EXTRA": 1});
    append(
        &logs,
        "TYPED",
        1,
        &[("5", Some(row)), ("6", Some(json!([1]))), ("7", Some(json!({"D": 2.0}))), ("7", None)],
    );
    let positions = FlakyPositions::new(0);
    let running =
        Running::start(pg_sink(&pg, "typed", "TYPED", "k"), logs.clone(), positions.clone());
    positions.wait_caught_up("typed", &*logs, "TYPED");
    let status = running.status();
    running.stop();
    assert_eq!(status.failures, 0, "{status:?}");
    let got = pg.psql(
        "postgres",
        "SELECT k, \"Mixed\", d, b, (extract(epoch FROM ts) * 1000)::bigint, j, tags, n, missing FROM typed ORDER BY k",
    );
    // Key 6's value is not an object (skipped); key 7 was deleted; missing columns are NULL.
    assert_eq!(
        got.trim(),
        "5|it's a \\ back\"slash|1.5|t|1714557600000|{\"a\": [1, 2]}|{x,\"y z\"}|12.25|"
    );
}
