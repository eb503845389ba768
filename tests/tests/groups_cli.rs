//! Consumer groups through the `eddy` CLI, end to end against a real `eddy serve`: a group
//! consumer reads part of a topic and commits exactly what it printed, `eddy group describe`
//! and `eddy group list` show it, the next member of the group prints exactly the rest, a
//! reset makes the group read everything again, and a deleted group is gone.
//!
//! Every command runs to completion with a deadline; nothing sleeps.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use eddy_tests::broker::BrokerProcess;
use eddy_tests::cli::{eddy_fails, eddy_ok};

const TOPIC: &str = "t";
const GROUP: &str = "g";
const PARTITIONS: u32 = 3;
const LINES: usize = 300;
const FIRST: usize = 100;

/// One row of `eddy group describe`'s offsets table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    committed: Option<u64>,
    end: u64,
    lag: u64,
}

/// `eddy group describe G`: the state on the header line and the offsets table by partition.
fn describe(broker: &BrokerProcess) -> (String, BTreeMap<u32, Row>) {
    let out = eddy_ok(broker, &["group", "describe", GROUP]);
    let header = out.first().unwrap_or_else(|| panic!("empty describe output"));
    assert!(header.starts_with(&format!("group {GROUP} ")), "{out:#?}");
    let state = header
        .split_whitespace()
        .find_map(|w| w.strip_prefix("state="))
        .unwrap_or_else(|| panic!("no state in {header:?}"))
        .to_string();
    let table = out
        .iter()
        .position(|l| l.split_whitespace().collect::<Vec<_>>() == TABLE_HEADER)
        .unwrap_or_else(|| panic!("no offsets table in {out:#?}"));
    let mut rows = BTreeMap::new();
    for line in &out[table + 1..] {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), TABLE_HEADER.len(), "bad row {line:?} in {out:#?}");
        assert_eq!(f[0], TOPIC, "{line:?}");
        let committed = (f[2] != "-").then(|| f[2].parse().unwrap());
        let row = Row { committed, end: f[3].parse().unwrap(), lag: f[4].parse().unwrap() };
        assert!(rows.insert(f[1].parse::<u32>().unwrap(), row).is_none(), "{out:#?}");
    }
    (state, rows)
}

const TABLE_HEADER: [&str; 6] = ["topic", "partition", "committed", "end-offset", "lag", "owner"];

/// Sorted lines, for comparing outputs as multisets.
fn sorted(lines: &[String]) -> Vec<String> {
    let mut lines = lines.to_vec();
    lines.sort_unstable();
    lines
}

/// Starts a broker with a 3-partition topic holding 300 keyed lines; returns the values.
fn topic_with_lines(dir: &Path) -> (BrokerProcess, Vec<String>) {
    let broker = BrokerProcess::start(&dir.join("data"), &[]);
    let partitions = PARTITIONS.to_string();
    eddy_ok(&broker, &["topic", "create", TOPIC, "--partitions", &partitions]);
    let values: Vec<String> = (0..LINES).map(|i| format!("line-{i:03}")).collect();
    let input: String = values.iter().enumerate().map(|(i, v)| format!("key-{i}={v}\n")).collect();
    let input_path = dir.join("input");
    std::fs::write(&input_path, input).unwrap();
    eddy_ok(&broker, &["produce", TOPIC, "--key-sep", "=", input_path.to_str().unwrap()]);
    (broker, values)
}

#[test]
fn group_consumers_resume_from_commits_and_reset_and_delete_work() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, values) = topic_with_lines(dir.path());

    // The first member prints 100 lines and commits what it printed.
    let count = FIRST.to_string();
    let first = eddy_ok(&broker, &["consume", TOPIC, "--group", GROUP, "--count", &count]);
    assert_eq!(first.len(), FIRST, "{first:?}");

    let (state, rows) = describe(&broker);
    assert_eq!(state, "empty");
    assert_eq!(rows.len(), PARTITIONS as usize, "every partition of the topic: {rows:?}");
    assert_eq!(rows.values().map(|r| r.end).sum::<u64>(), LINES as u64, "{rows:?}");
    assert!(rows.values().all(|r| r.end > 0), "the keys did not spread: {rows:?}");
    let committed: u64 = rows.values().map(|r| r.committed.unwrap_or(0)).sum();
    assert_eq!(committed, FIRST as u64, "{rows:?}");
    assert_eq!(rows.values().map(|r| r.lag).sum::<u64>(), (LINES - FIRST) as u64, "{rows:?}");

    let list = eddy_ok(&broker, &["group", "list"]);
    let row: Vec<&str> = list
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&GROUP))
        .unwrap_or_else(|| panic!("{GROUP} not listed: {list:?}"));
    assert_eq!(row, [GROUP, "empty", "0"], "{list:?}");

    // The next member prints exactly the other 200 lines.
    let second = eddy_ok(&broker, &["consume", TOPIC, "--group", GROUP]);
    assert_eq!(second.len(), LINES - FIRST, "{second:?}");
    let both = sorted(&[first.clone(), second].concat());
    let mut distinct = both.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), both.len(), "a line was printed twice");
    assert_eq!(both, sorted(&values), "the two members' lines are not the input");

    let (_, rows) = describe(&broker);
    for (p, r) in &rows {
        assert_eq!((r.committed, r.lag), (Some(r.end), 0), "partition {p}: {rows:?}");
    }

    // A third member has nothing left to print.
    let third = eddy_ok(&broker, &["consume", TOPIC, "--group", GROUP]);
    assert!(third.is_empty(), "{third:?}");

    // After a reset to the earliest offsets, the group reads everything again.
    let reset = ["group", "reset", GROUP, "--topic", TOPIC, "--to", "earliest"];
    let out = eddy_ok(&broker, &reset);
    assert!(out.first().is_some_and(|l| l.contains("offsets reset")), "{out:?}");
    let (_, rows) = describe(&broker);
    assert!(rows.values().all(|r| r.committed == Some(0) && r.lag == r.end), "{rows:?}");
    let again = eddy_ok(&broker, &["consume", TOPIC, "--group", GROUP]);
    assert_eq!(sorted(&again), sorted(&values), "after the reset");

    // A deleted group is gone.
    let out = eddy_ok(&broker, &["group", "delete", GROUP]);
    assert_eq!(out, [format!("deleted group {GROUP}")]);
    let line = eddy_fails(&broker, &["group", "describe", GROUP]);
    assert!(line.contains("UNKNOWN_GROUP") && line.contains(GROUP), "{line:?}");
    let list = eddy_ok(&broker, &["group", "list"]);
    assert!(list.iter().all(|l| l.split_whitespace().next() != Some(GROUP)), "{list:?}");

    let status = broker.terminate();
    assert!(status.success(), "broker exit after SIGTERM: {status:?}");
}

#[test]
fn consume_with_a_group_and_a_partition_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = topic_with_lines(dir.path());
    let line = eddy_fails(&broker, &["consume", TOPIC, "--group", GROUP, "--partition", "0"]);
    for word in ["--partition", "--group", "assigns partitions"] {
        assert!(line.contains(word), "{line:?} lacks {word:?}");
    }
    // Refused before joining: the group was never created.
    let list = eddy_ok(&broker, &["group", "list"]);
    assert_eq!(list.len(), 1, "only the header: {list:?}");
}
