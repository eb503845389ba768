//! Helpers for the connector tests: a connector's status through `eddy connector status`,
//! waiting on it with a deadline, and a topic read whole through `eddy consume --format json`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::broker::BrokerProcess;
use crate::cli::{eddy, eddy_ok};

/// `eddy connector status NAME` as `field → value` (the `option ...` lines left out).
pub fn status(broker: &BrokerProcess, name: &str) -> BTreeMap<String, String> {
    eddy_ok(broker, &["connector", "status", name])
        .iter()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| !k.starts_with("option "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Waits until `ready(status)`; panics with the last status at the deadline.
pub fn wait_status(
    broker: &BrokerProcess,
    name: &str,
    within: Duration,
    ready: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + within;
    loop {
        let run = eddy(broker, &["connector", "status", name]);
        if run.success {
            let s: BTreeMap<String, String> = run
                .stdout
                .iter()
                .filter_map(|l| l.split_once(": "))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if ready(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "connector {name} never got there: {s:?}");
        } else {
            assert!(Instant::now() < deadline, "connector {name}: {}", run.stderr);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One record of a topic as `eddy consume --format json` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub partition: u64,
    pub offset: u64,
    pub key: Option<String>,
    pub value: Option<Value>,
}

/// Every record of `topic`, in partition then offset order.
pub fn read_topic(broker: &BrokerProcess, topic: &str) -> Vec<Read> {
    let mut out: Vec<Read> = eddy_ok(broker, &["consume", topic, "--format", "json"])
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            Read {
                partition: v["partition"].as_u64().unwrap_or_default(),
                offset: v["offset"].as_u64().unwrap_or_default(),
                key: v["key"].as_str().map(str::to_string),
                value: v["value"]
                    .as_str()
                    .map(|s| serde_json::from_str(s).unwrap_or(Value::String(s.into()))),
            }
        })
        .collect();
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}
