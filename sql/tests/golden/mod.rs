//! The golden-test harness shared by `sql_golden.rs` and `ksql_semantics.rs`: a case is a
//! script (declarations and persistent queries), input events, and the expected table rows or
//! records of output topics — run on real `LocalLogs` in a temporary directory.
#![allow(clippy::unwrap_used, dead_code)]

#[path = "../../../processor/tests/common/mod.rs"]
pub mod common;

use std::sync::Arc;
use std::time::Duration;

use eddy_processor::{LogAccess, RunningProcessor, RuntimeConfig};
use eddy_sql::{FunctionRegistry, Outcome, Session, SqlType};
use serde_json::Value;

/// One input event: topic, key, value (JSON, or a string for raw topics), timestamp.
pub type Event = (&'static str, Option<&'static str>, Value, i64);

/// Not an event: every query processes what was produced so far before the next event is.
/// Joins of several topics need it for a known processing order (a task merges its sources by
/// event time over what it has read, so without it the order depends on scheduling).
pub const SETTLE: Event = ("", None, Value::Null, 0);

/// `events`, each processed before the next is produced.
pub fn one_by_one(events: Vec<Event>) -> Vec<Event> {
    events.into_iter().flat_map(|e| [e, SETTLE]).collect()
}

#[derive(Debug)]
pub enum Expect {
    /// The table's rows: (key, row), in key order.
    Table(&'static str, Vec<(Value, Value)>),
    /// The records of a topic: (key, value or null for a tombstone), in order.
    Topic(&'static str, Vec<(Option<&'static str>, Value)>),
    /// The records of a topic with several partitions, in any order.
    TopicAnyOrder(&'static str, Vec<(Option<&'static str>, Value)>),
    /// The records of a topic with their timestamps: (key, value or null, timestamp).
    TopicTimed(&'static str, Vec<(Option<&'static str>, Value, i64)>),
    /// The records of a topic whose values are text (DELIMITED): (key, value or none).
    TopicText(&'static str, Vec<(Option<&'static str>, Option<&'static str>)>),
}

pub struct Case {
    pub name: &'static str,
    pub sql: &'static str,
    pub input: Vec<Event>,
    pub expect: Vec<Expect>,
}

pub fn functions() -> FunctionRegistry {
    let mut fns = FunctionRegistry::new();
    fns.register("TRIPLE", Some(vec![SqlType::Bigint]), SqlType::Bigint, |args| {
        Ok(args[0].as_i64().map_or(Value::Null, |n| Value::from(n * 3)))
    });
    fns
}

pub struct Ran {
    _dir: tempfile::TempDir,
    pub logs: Arc<eddy_processor::LocalLogs>,
    pub running: Vec<RunningProcessor>,
}

pub fn run(sql: &str, input: &[Event]) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    let mut session = Session::new(functions());
    let outcomes = session.execute(sql, 1).unwrap();
    let mut running = Vec::new();
    for o in outcomes {
        match o {
            Outcome::Declared(info) => {
                logs.create_topic(&info.topic, info.partitions, false).unwrap()
            }
            Outcome::Query { compiled, .. } => {
                let config = RuntimeConfig::new(dir.path().join("state"));
                running.push(compiled.processor.start(logs.clone(), config).unwrap());
            }
            Outcome::Inserted(r) => {
                let p = r
                    .key
                    .as_ref()
                    .map_or(0, |k| eddy_processor::partition_for_key(k, r.partitions));
                let rec = (r.key, r.value, r.timestamp.unwrap_or(0));
                common::produce(&*logs, &r.topic, p, &[rec], 1);
            }
            Outcome::Materialized { compiled, .. } => {
                let info = &compiled.target;
                logs.create_topic(&info.topic, info.partitions, false).unwrap();
                let config = RuntimeConfig::new(dir.path().join("state"));
                running.push(compiled.processor.start(logs.clone(), config).unwrap());
            }
            _ => {}
        }
    }
    for (topic, key, value, ts) in input {
        if topic.is_empty() {
            settle(&running);
            continue;
        }
        let bytes = match value {
            Value::String(s) if !s.starts_with('{') => s.clone().into_bytes(),
            Value::Null => Vec::new(),
            v => serde_json::to_vec(v).unwrap(),
        };
        let value = (!value.is_null()).then_some(bytes);
        let k = key.map(|k| k.as_bytes().to_vec());
        let parts = logs.partition_count(topic).unwrap();
        let p = k.as_ref().map_or(0, |k| eddy_processor::partition_for_key(k, parts));
        common::produce(&*logs, topic, p, &[(k, value, *ts)], 1);
    }
    settle(&running);
    Ran { _dir: dir, logs, running }
}

/// Waits until every query processed its input (twice: a query may read another's output).
pub fn settle(running: &[RunningProcessor]) {
    for _ in 0..2 {
        for r in running {
            r.wait_caught_up(Duration::from_secs(30)).unwrap();
        }
    }
}

pub fn table(ran: &Ran, name: &str) -> Vec<(Value, Value)> {
    for r in &ran.running {
        if let Ok(t) = r.table::<Value, Value>(name) {
            return t.scan();
        }
    }
    panic!("no table {name}");
}

pub fn topic(ran: &Ran, name: &str) -> Vec<(Option<String>, Value)> {
    common::read_topic(&*ran.logs, name)
        .into_iter()
        .map(|r| {
            let key = r.key.map(|k| String::from_utf8(k).unwrap());
            let value = r.value.map_or(Value::Null, |v| serde_json::from_slice(&v).unwrap());
            (key, value)
        })
        .collect()
}

/// The records of topic `name` with their timestamps.
pub fn timed_topic(ran: &Ran, name: &str) -> Vec<(Option<String>, Value, i64)> {
    common::read_topic(&*ran.logs, name)
        .into_iter()
        .map(|r| {
            let key = r.key.map(|k| String::from_utf8(k).unwrap());
            let value = r.value.map_or(Value::Null, |v| serde_json::from_slice(&v).unwrap());
            (key, value, r.ts)
        })
        .collect()
}

/// The error `sql` is refused with (its `Display`), when a statement of it is refused.
pub fn refusal(sql: &str) -> Option<String> {
    Session::new(functions()).execute(sql, 1).err().map(|e| e.to_string())
}

pub fn check(case: &Case) {
    let ran = run(case.sql, &case.input);
    for e in &case.expect {
        match e {
            Expect::Table(name, rows) => {
                assert_eq!(&table(&ran, name), rows, "case {}: table {name}", case.name)
            }
            Expect::Topic(name, records) => {
                let want: Vec<(Option<String>, Value)> =
                    records.iter().map(|(k, v)| (k.map(str::to_owned), v.clone())).collect();
                assert_eq!(topic(&ran, name), want, "case {}: topic {name}", case.name)
            }
            Expect::TopicAnyOrder(name, records) => {
                let order = |r: &mut Vec<(Option<String>, Value)>| {
                    r.sort_by_key(|(k, v)| (k.clone(), v.to_string()));
                };
                let mut want: Vec<(Option<String>, Value)> =
                    records.iter().map(|(k, v)| (k.map(str::to_owned), v.clone())).collect();
                let mut got = topic(&ran, name);
                order(&mut want);
                order(&mut got);
                assert_eq!(got, want, "case {}: topic {name}", case.name)
            }
            Expect::TopicText(name, records) => {
                let text = |b: Option<Vec<u8>>| b.map(|b| String::from_utf8(b).unwrap());
                let got: Vec<(Option<String>, Option<String>)> =
                    common::read_topic(&*ran.logs, name)
                        .into_iter()
                        .map(|r| (text(r.key), text(r.value)))
                        .collect();
                let want: Vec<(Option<String>, Option<String>)> = records
                    .iter()
                    .map(|(k, v)| (k.map(str::to_owned), v.map(str::to_owned)))
                    .collect();
                assert_eq!(got, want, "case {}: topic {name}", case.name)
            }
            Expect::TopicTimed(name, records) => {
                let want: Vec<(Option<String>, Value, i64)> = records
                    .iter()
                    .map(|(k, v, ts)| (k.map(str::to_owned), v.clone(), *ts))
                    .collect();
                assert_eq!(timed_topic(&ran, name), want, "case {}: topic {name}", case.name)
            }
        }
    }
    for r in ran.running {
        r.stop().unwrap();
    }
}

/// Runs pull query `query` against the tables of `ran` (started from `script`): its output
/// columns in order, and its rows.
pub fn pull(
    ran: &Ran,
    script: &str,
    query: &str,
) -> (Vec<String>, Vec<serde_json::Map<String, Value>>) {
    let mut session = Session::new(functions());
    session.execute(script, 1).unwrap();
    let outcomes = session.execute(query, 1).unwrap();
    let Some(Outcome::Select(q)) = outcomes.into_iter().next() else {
        panic!("{query} is not a pull query")
    };
    let reader = ran
        .running
        .iter()
        .find_map(|r| r.table::<Value, Value>(&q.table).ok())
        .unwrap_or_else(|| panic!("no table {}", q.table));
    (q.columns(), q.run(&reader, &session.functions).unwrap())
}
