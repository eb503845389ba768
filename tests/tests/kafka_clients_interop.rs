//! Kafka clients and eddy agree across a restart and across protocols, against the real
//! `eddy serve`:
//!
//! - kafka-python and kafkajs: each produces, consumes part of a topic in a group and commits;
//!   the broker stops on SIGTERM and a new one starts on the same data directory; a new member
//!   of the same group resumes at the committed offsets: nothing committed comes again, nothing
//!   is lost.
//! - interop: records produced by confluent-kafka, kafka-python and kafkajs are read by
//!   `eddy consume --format json` with the same key, value, headers and timestamp at the
//!   same offsets (and every byte through eddy's own client); records produced with
//!   `eddy produce` are read byte-identical by kcat and confluent-kafka.
//!
//! The harness (client programs, records, deadlines) is tests/src/kafka_harness.rs.
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stderr, reason = "seeds reach the test output")]

use std::collections::BTreeMap;

use eddy_tests::broker::BrokerProcess;
use eddy_tests::cli::eddy_ok;
use eddy_tests::generate::{Rng, mix64};
use eddy_tests::kafka_clients::{kcat_command, run_to_end};
use eddy_tests::kafka_harness::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// kafka-python and kafkajs: committed offsets survive a broker restart.

fn group_consume(lib: Lib, bootstrap: &str, topic: &str, group: &str, count: u64) -> Vec<Rec> {
    let count_arg = count.to_string();
    let args = ["--topic", topic, "--group", group, "--count", &count_arg];
    let lines = run_client(lib, "group-consume", bootstrap, &args);
    assert!(events(&lines, "closed").next().is_some(), "{lib:?} did not close: {lines:?}");
    let records: Vec<Rec> = events(&lines, "record").map(Rec::from_json).collect();
    assert_eq!(records.len() as u64, count, "{lib:?} group-consume read");
    // It committed, for every partition it read, the offset after the last record it read.
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for r in &records {
        last.insert(r.partition, r.offset + 1);
    }
    let mut committed: BTreeMap<u32, u64> = BTreeMap::new();
    for line in events(&lines, "committed") {
        for pair in line["offsets"].as_array().unwrap() {
            committed.insert(pair[0].as_u64().unwrap() as u32, pair[1].as_u64().unwrap());
        }
    }
    assert_eq!(committed, last, "{lib:?}: committed offsets are not those read");
    records
}

fn resumes_after_a_broker_restart(lib: Lib) {
    const PARTITIONS: u32 = 3;
    const FIRST: u64 = 600;
    const READ_BEFORE: u64 = 250;
    const MORE: u64 = 100;
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = BrokerProcess::start(&data, &[]);
    eddy_ok(&broker, &["topic", "create", "resume", "--partitions", &PARTITIONS.to_string()]);
    let kafka = broker.kafka_addr().to_string();
    let mut sent = produce(lib, &kafka, "resume", FIRST, seed, &[]);
    let before = group_consume(lib, &kafka, "resume", "resumers", READ_BEFORE);
    let committed_before: BTreeMap<u32, u64> = before.iter().fold(BTreeMap::new(), |mut m, r| {
        m.insert(r.partition, r.offset + 1);
        m
    });

    let status = broker.terminate();
    assert!(status.success(), "the broker's SIGTERM exit: {status}");
    let broker = BrokerProcess::start(&data, &[]);
    let kafka = broker.kafka_addr().to_string();
    // The committed offsets are there after the restart, and nothing moved them.
    let offsets = group_offsets(&broker, "resumers");
    for p in 0..PARTITIONS {
        let (committed, _) = offsets[&("resume".to_string(), p)];
        assert_eq!(committed, committed_before.get(&p).copied(), "partition {p}: {offsets:?}");
    }

    sent.extend(produce(lib, &kafka, "resume", MORE, seed ^ 1, &[]));
    let after = group_consume(lib, &kafka, "resume", "resumers", FIRST + MORE - READ_BEFORE);
    let twice: Vec<_> =
        before.iter().map(Rec::at).filter(|at| after.iter().any(|r| r.at() == *at)).collect();
    assert!(twice.is_empty(), "{lib:?}: committed records delivered again: {twice:?}");
    let mut read = before;
    read.extend(after);
    assert_same_records(&sent, &read, &format!("{lib:?}: records read across the restart"));

    let ends = ends_of(&sent, PARTITIONS);
    let offsets = group_offsets(&broker, "resumers");
    for p in 0..PARTITIONS {
        let want = (Some(ends[p as usize]), ends[p as usize]);
        assert_eq!(offsets[&("resume".to_string(), p)], want, "partition {p}: {offsets:?}");
    }
}

#[test]
fn kafka_python_resumes_from_committed_offsets_after_a_broker_restart() {
    resumes_after_a_broker_restart(Lib::KafkaPython);
}

#[test]
fn kafkajs_resumes_from_committed_offsets_after_a_broker_restart() {
    resumes_after_a_broker_restart(Lib::Kafkajs);
}

// ---------------------------------------------------------------------------------------------
// Interop with eddy's own CLI and client.

#[test]
fn records_from_every_kafka_client_read_the_same_through_eddy() {
    const RECORDS: u64 = 300;
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let kafka = broker.kafka_addr().to_string();
    for (lib, topic) in [
        (Lib::Confluent, "from-confluent"),
        (Lib::KafkaPython, "from-kafka-python"),
        (Lib::Kafkajs, "from-kafkajs"),
    ] {
        eddy_ok(&broker, &["topic", "create", topic, "--partitions", "2"]);
        let sent = produce(lib, &kafka, topic, RECORDS, seed, &[]);
        let count = RECORDS.to_string();
        let lines = eddy_ok(
            &broker,
            &["consume", topic, "--from", "earliest", "--count", &count, "--format", "json"],
        );
        assert_eq!(lines.len() as u64, RECORDS, "{topic}: eddy consume printed {lines:?}");
        let wanted = by_position(&sent, topic);
        let text = |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8(b.clone()).unwrap());
        for line in &lines {
            let got: Value = serde_json::from_str(line).unwrap();
            let at = (got["partition"].as_u64().unwrap() as u32, got["offset"].as_u64().unwrap());
            let want = wanted
                .get(&at)
                .unwrap_or_else(|| panic!("{topic}: nothing was sent to {at:?}: {line}"));
            assert_eq!(
                got["key"].as_str().map(str::to_string),
                text(&want.key),
                "{topic} {at:?}: key"
            );
            assert_eq!(
                got["value"].as_str().map(str::to_string),
                text(&want.value),
                "{topic} {at:?}: value"
            );
            assert_eq!(
                got["timestamp"].as_i64(),
                Some(want.timestamp),
                "{topic} {at:?}: timestamp"
            );
            let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = got["headers"]
                .as_array()
                .unwrap_or_else(|| panic!("{topic} {at:?}: no headers in {line}"))
                .iter()
                .map(|h| {
                    let value = h["value"].as_str().map(|v| v.as_bytes().to_vec());
                    (h["key"].as_str().unwrap().as_bytes().to_vec(), value)
                })
                .collect();
            assert_eq!(headers, want.headers, "{topic} {at:?}: headers");
        }
        // Every byte (values need not be UTF-8) through eddy's own client as well.
        let native: Vec<Rec> =
            native_read(&broker.addr().to_string(), topic).into_iter().map(|(r, _)| r).collect();
        assert_same_records(&sent, &native, &format!("{topic} through eddy's client"));
    }
}

#[test]
fn records_from_eddy_produce_are_read_byte_identical_by_kcat_and_confluent() {
    const LINES: u64 = 2_000;
    let mut rng = Rng::new(mix64(seed() ^ 0x0edd_9d0c));
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    eddy_ok(&broker, &["topic", "create", "from-eddy", "--partitions", "1"]);
    // Lines of any bytes but the newline; with `--key-sep |` the part before the first `|` is
    // the key (never containing `|`), a line without one is a record with no key.
    let byte = |rng: &mut Rng, but: &[u8]| loop {
        let b = rng.below(256) as u8;
        if !but.contains(&b) {
            break b;
        }
    };
    let mut text = Vec::new();
    let mut expected: Vec<(Option<Vec<u8>>, Vec<u8>)> = Vec::new();
    for _ in 0..LINES {
        let key = (!rng.one_in(8)).then(|| {
            let len = rng.below(17);
            (0..len).map(|_| byte(&mut rng, b"\n|")).collect::<Vec<u8>>()
        });
        let len = if rng.one_in(20) { 0 } else { rng.below(200) };
        let but: &[u8] = if key.is_some() { b"\n" } else { b"\n|" };
        let value: Vec<u8> = (0..len).map(|_| byte(&mut rng, but)).collect();
        if let Some(key) = &key {
            text.extend_from_slice(key);
            text.push(b'|');
        }
        text.extend_from_slice(&value);
        text.push(b'\n');
        expected.push((key, value));
    }
    let file = dir.path().join("records.txt");
    std::fs::write(&file, &text).unwrap();
    eddy_ok(&broker, &["produce", "from-eddy", "--key-sep", "|", &file.display().to_string()]);
    let kafka = broker.kafka_addr().to_string();

    // kcat: partition, offset, timestamp, key length (-1: null), key, value length, value.
    let mut kcat = kcat_command(&kafka);
    kcat.args(["-C", "-t", "from-eddy", "-o", "beginning", "-e", "-q"]);
    kcat.args(["-f", "%p %o %T %K %k %S %s\\n"]);
    let run = run_to_end(kcat, CLIENT_LIMIT);
    let kcat_records = parse_kcat(run.ok());
    assert_eq!(kcat_records.len() as u64, LINES, "kcat read");
    let (confluent_records, _) = confluent_consume(&kafka, "from-eddy", LINES as usize);
    let confluent = by_position(&confluent_records, "confluent");
    for (i, ((key, value), k)) in expected.iter().zip(&kcat_records).enumerate() {
        let at = (0u32, i as u64);
        assert_eq!(k.at(), at, "kcat's record {i}");
        assert_eq!((&k.key, k.value.as_ref()), (key, Some(value)), "kcat's record at {at:?}");
        let c = &confluent[&at];
        assert_eq!((&c.key, c.value.as_ref()), (key, Some(value)), "confluent's record at {at:?}");
        assert_eq!(c.timestamp, k.timestamp, "timestamps at {at:?}: confluent {c:?}, kcat {k:?}");
        assert!(c.headers.is_empty(), "{c:?}");
    }
}

/// kcat's `-f '%p %o %T %K %k %S %s\n'` output, split by the lengths it gives.
fn parse_kcat(mut out: &[u8]) -> Vec<Rec> {
    fn number(out: &mut &[u8]) -> i64 {
        let end = out.iter().position(|b| *b == b' ').unwrap();
        let n = std::str::from_utf8(&out[..end]).unwrap().parse().unwrap();
        *out = &out[end + 1..];
        n
    }
    fn bytes(out: &mut &[u8], len: i64) -> Option<Vec<u8>> {
        let taken = usize::try_from(len).ok().map(|n| out[..n].to_vec());
        *out = &out[taken.as_ref().map_or(0, Vec::len)..];
        taken
    }
    let mut records = Vec::new();
    while !out.is_empty() {
        let partition = u32::try_from(number(&mut out)).unwrap();
        let offset = u64::try_from(number(&mut out)).unwrap();
        let timestamp = number(&mut out);
        let key_len = number(&mut out);
        let key = bytes(&mut out, key_len);
        assert_eq!(out[0], b' ', "kcat output after a key");
        out = &out[1..];
        let value_len = number(&mut out);
        let value = bytes(&mut out, value_len);
        assert_eq!(out[0], b'\n', "kcat output after a value");
        out = &out[1..];
        records.push(Rec { partition, offset, timestamp, key, value, headers: Vec::new() });
    }
    records
}
