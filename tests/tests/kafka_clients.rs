//! Real Kafka clients work against the real `eddy serve` binary, over its Kafka listener:
//!
//! - kcat: `-L` lists the broker (at its Kafka address) and a created topic; 100,000 lines
//!   through `-P` come back byte-identical from `-C -e`; two `-G` members of one group split a
//!   4-partition topic (both get partitions, disjoint, covering all four) and together read
//!   every record.
//! - confluent-kafka (librdkafka): an idempotent, lz4-compressing, acks=all producer's records
//!   (keys, values, headers, timestamps) are read back identical, and stored as produced (lz4,
//!   with the producer's id); gzip, snappy and zstd too; in a group of three member processes
//!   over six partitions, one is SIGKILLed and the survivors take its partitions once its
//!   session times out (classic and KIP-848 protocols), every record is consumed, every
//!   survivor commits, and the committed offsets end equal to the end offsets; AdminClient
//!   creates (with configs), describes, shows the configs of, lists and deletes topics.
//! - kafka-python's admin client lists, describes and deletes topics.
//!
//! Each test starts its own broker in its own temporary directory; the clients are processes
//! (kcat, and the programs in `tests/kafka-clients/`, which print JSON lines), and every wait
//! has a deadline. A missing client fails its test with what to install: `./scripts/test`
//! installs them all. The seed of generated data is printed (EDDY_TEST_SEED repeats it).
//! kafka_clients_interop.rs has the restart and interop tests; the harness is
//! tests/src/kafka_harness.rs.
#![allow(clippy::unwrap_used)]
#![allow(
    clippy::print_stderr,
    reason = "seeds and what happened in a rebalance reach the test output"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eddy_tests::broker::BrokerProcess;
use eddy_tests::child::deadline_in;
use eddy_tests::cli::eddy_ok;
use eddy_tests::generate::{Rng, mix64};
use eddy_tests::kafka_clients::{kcat_command, merge_stderr, python_client, run_to_end, tail};
use eddy_tests::kafka_harness::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// kcat

#[test]
fn kcat_lists_the_broker_and_a_created_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]);
    eddy_ok(&broker, &["topic", "create", "listed", "--partitions", "3"]);
    let kafka = broker.kafka_addr().to_string();
    let mut command = kcat_command(&kafka);
    command.args(["-L", "-J", "-m", "30"]);
    let run = run_to_end(command, CLIENT_LIMIT);
    let listing: Value = serde_json::from_slice(run.ok()).unwrap();
    let brokers = listing["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1, "{listing}");
    assert_eq!(brokers[0]["id"], 0, "{listing}");
    assert_eq!(brokers[0]["name"], kafka.as_str(), "the broker is listed at its Kafka address");
    let topic = listing["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "listed")
        .unwrap_or_else(|| panic!("topic `listed` is not listed: {listing}"));
    let partitions = topic["partitions"].as_array().unwrap();
    let ids: Vec<u64> = partitions.iter().map(|p| p["partition"].as_u64().unwrap()).collect();
    assert_eq!(ids, [0, 1, 2], "{topic}");
    for p in partitions {
        assert_eq!(p["leader"], 0, "{topic}");
        assert!(p.get("error").is_none(), "{topic}");
    }
}

#[test]
fn kcat_produces_100000_lines_and_consumes_them_back_byte_identical() {
    const LINES: u64 = 100_000;
    let mut rng = Rng::new(mix64(seed() ^ 0x6b63_6174));
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    eddy_ok(&broker, &["topic", "create", "lines", "--partitions", "1"]);
    // Non-empty lines (kcat skips empty ones) of any bytes but the newline.
    let mut text = Vec::new();
    for _ in 0..LINES {
        let max = if rng.one_in(100) { 2000 } else { 120 };
        let len = 1 + rng.below(max);
        for _ in 0..len {
            let byte = loop {
                let b = rng.below(256) as u8;
                if b != b'\n' {
                    break b;
                }
            };
            text.push(byte);
        }
        text.push(b'\n');
    }
    let file = dir.path().join("lines.txt");
    std::fs::write(&file, &text).unwrap();
    let kafka = broker.kafka_addr().to_string();

    let mut produce = kcat_command(&kafka);
    produce.args(["-P", "-t", "lines", "-X", "acks=all", "-l"]).arg(&file);
    let run = run_to_end(produce, CLIENT_LIMIT);
    run.ok();
    assert!(run.stderr.trim().is_empty(), "kcat -P complained:\n{}", tail(&run.stderr, 4000));

    let mut consume = kcat_command(&kafka);
    consume.args(["-C", "-t", "lines", "-o", "beginning", "-e", "-q"]);
    let run = run_to_end(consume, CLIENT_LIMIT);
    let back = run.ok();
    if back != text.as_slice() {
        let at =
            back.iter().zip(&text).position(|(a, b)| a != b).unwrap_or(back.len().min(text.len()));
        let line = text[..at].iter().filter(|b| **b == b'\n').count();
        panic!(
            "kcat -C returned {} bytes for {} produced; first difference at byte {at} (line {line})",
            back.len(),
            text.len()
        );
    }
}

#[test]
fn kcat_group_members_split_a_four_partition_topic_and_read_every_record() {
    const PER_PARTITION: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    eddy_ok(&broker, &["topic", "create", "split", "--partitions", "4"]);
    let kafka = broker.kafka_addr().to_string();
    let member = |name: &str| {
        let mut kcat = kcat_command(&kafka);
        kcat.args(["-G", "kcat-group", "split", "-u", "-f", "rec %p %o\\n"]);
        kcat.args(["-X", "auto.offset.reset=earliest"]);
        Watched::start(name, Speaks::Kcat, merge_stderr(&kcat))
    };
    let mut members = vec![member("kcat-a"), member("kcat-b")];
    let deadline = deadline_in(Duration::from_secs(60));
    wait_for(&mut members, deadline, "both kcat members own partitions", |m| {
        split_evenly(&[&m[0], &m[1]], 4)
    });

    // Records after the split, so each member reads exactly its own partitions.
    for p in 0..4u32 {
        let file = dir.path().join(format!("p{p}.txt"));
        let text: String =
            (0..PER_PARTITION).map(|i| format!("partition {p} record {i}\n")).collect();
        std::fs::write(&file, text).unwrap();
        let path = file.display().to_string();
        eddy_ok(&broker, &["produce", "split", "--partition", &p.to_string(), &path]);
    }
    let all: BTreeSet<(u32, u64)> =
        (0..4).flat_map(|p| (0..PER_PARTITION).map(move |o| (p, o))).collect();
    wait_for(&mut members, deadline, "the kcat members read every record", |m| {
        m[0].read.union(&m[1].read).copied().collect::<BTreeSet<_>>() == all
    });
    for m in &members {
        assert!(!m.read.is_empty(), "{} read nothing: {}", m.name, m.summary());
        assert!(m.read_unowned.is_empty(), "{} read partitions it did not own", m.summary());
        assert!(m.errors.is_empty(), "{}", m.summary());
    }
    assert!(members[0].read.is_disjoint(&members[1].read), "a record was read by both members");
    for m in &mut members {
        m.terminate(deadline);
    }
}

// ---------------------------------------------------------------------------------------------
// confluent-kafka

/// Produces `records` with confluent-kafka (acks=all, `codec`, idempotent or not) to a new
/// 3-partition topic and reads them back with confluent-kafka and with eddy's own client:
/// identical keys, values, headers and timestamps at the offsets the delivery reports gave,
/// nothing more stored, and every batch stored as produced (the codec, and the producer id
/// and sequence of an idempotent producer, or none).
fn confluent_round_trip(codec: (&str, u16), idempotent: bool, records: u64) {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let topic = format!("round-trip-{}", codec.0);
    eddy_ok(&broker, &["topic", "create", &topic, "--partitions", "3"]);
    let kafka = broker.kafka_addr().to_string();
    let mut extra = vec!["--compression", codec.0];
    if idempotent {
        extra.push("--idempotent");
    }
    let sent = produce(Lib::Confluent, &kafka, &topic, records, seed, &extra);
    let ends = ends_of(&sent, 3);

    let (read, watermarks) = confluent_consume(&kafka, &topic, records as usize);
    assert_same_records(&sent, &read, &format!("{topic}: confluent-kafka read back"));
    let expected_watermarks: BTreeMap<u32, u64> = (0..3).zip(ends.iter().copied()).collect();
    assert_eq!(watermarks, expected_watermarks, "{topic}: high watermarks (nothing more stored)");

    let stored = native_read(&broker.addr().to_string(), &topic);
    let natively: Vec<Rec> = stored.iter().map(|(r, _)| r.clone()).collect();
    assert_same_records(&sent, &natively, &format!("{topic}: eddy's client read back"));
    for (r, header) in &stored {
        let at = r.at();
        assert_eq!(
            header.codec(),
            codec.1,
            "{topic}: the batch of {at:?} is not {}: {header:?}",
            codec.0
        );
        assert_eq!(
            header.is_idempotent(),
            idempotent,
            "{topic}: producer id of {at:?}: {header:?}"
        );
        assert_eq!(
            header.base_sequence >= 0,
            idempotent,
            "{topic}: sequence of {at:?}: {header:?}"
        );
    }
}

#[test]
fn confluent_idempotent_lz4_producer_round_trips_keys_values_headers_and_timestamps() {
    confluent_round_trip(("lz4", 3), true, 2_000);
}

#[test]
fn confluent_gzip_snappy_and_zstd_batches_round_trip_and_are_stored_as_produced() {
    for codec in [("gzip", 1), ("snappy", 2), ("zstd", 4)] {
        confluent_round_trip(codec, false, 300);
    }
}

#[test]
fn confluent_group_survivors_take_over_a_killed_members_partitions_and_commit_everything() {
    group_survivors("classic");
}

/// The same with KIP-848's protocol (`group.protocol=consumer`): eddy's own coordinator
/// assigns, by topic id; the session timeout is the broker's (3 s here).
#[test]
fn kip848_group_survivors_take_over_a_killed_members_partitions_and_commit_everything() {
    group_survivors("consumer");
}

fn group_survivors(protocol: &str) {
    const PARTITIONS: u32 = 6;
    const BEFORE: u64 = 3_000;
    const AFTER: u64 = 3_000;
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        &[("EDDY_GROUP_SESSION_TIMEOUT_MS", "3000"), ("EDDY_GROUP_HEARTBEAT_INTERVAL_MS", "500")],
    );
    eddy_ok(&broker, &["topic", "create", "work", "--partitions", &PARTITIONS.to_string()]);
    let kafka = broker.kafka_addr().to_string();
    let mut sent = produce(Lib::Confluent, &kafka, "work", BEFORE, seed, &[]);
    let before_ends = ends_of(&sent, PARTITIONS);

    let member = |name: &str| {
        let mut c = python_client("confluent_client.py");
        c.args(["member", "--bootstrap", &kafka, "--topic", "work", "--group", "workers"]);
        c.args(["--session-ms", "3000", "--timeout", "120", "--group-protocol", protocol]);
        Watched::start(name, Speaks::Json, c)
    };
    let mut members = vec![member("member-0"), member("member-1"), member("member-2")];
    let deadline = deadline_in(Duration::from_secs(100));
    // Every record produced so far read and committed by someone, and the partitions split
    // evenly. (Under KIP-848 there is no initial rebalance delay: the first member may take
    // every partition and read everything before the others arrive, so not every member
    // need have committed yet.)
    let read_so_far = |m: &[Watched]| {
        let all: BTreeSet<(u32, u64)> = m.iter().flat_map(|m| m.read.iter().copied()).collect();
        all.len() as u64 >= BEFORE && m.iter().any(|m| m.commits > 0)
    };
    wait_for(&mut members, deadline, "three members own partitions, everything read", |m| {
        split_evenly(&[&m[0], &m[1], &m[2]], PARTITIONS) && read_so_far(m)
    });

    // SIGKILL: no LeaveGroup; the broker learns of it only when its session times out.
    let victim: BTreeSet<u32> = members[0].owned.clone();
    members[0].child.kill().unwrap();
    // What it printed before it died still counts (records it read, offsets it committed).
    let last_words = members[0].child.remaining_lines(deadline).unwrap();
    for line in last_words {
        members[0].apply(&line);
    }
    members[0].gone = true;
    eprintln!("killed member-0, which owned {victim:?}");

    // More records everywhere, so the victim's partitions have some only a survivor can read.
    sent.extend(produce(Lib::Confluent, &kafka, "work", AFTER, seed ^ 1, &[]));
    let ends = ends_of(&sent, PARTITIONS);
    let all: BTreeSet<(u32, u64)> = sent.iter().map(Rec::at).collect();
    wait_for(
        &mut members,
        deadline,
        "the survivors own every partition, read and commit all",
        |m| {
            let survivors = [&m[1], &m[2]];
            let owned: BTreeSet<u32> =
                survivors.iter().flat_map(|s| s.owned.iter().copied()).collect();
            let read: BTreeSet<(u32, u64)> =
                m.iter().flat_map(|s| s.read.iter().copied()).collect();
            let committed_all = (0..PARTITIONS).all(|p| {
                m.iter().filter_map(|s| s.committed.get(&p)).max() == Some(&ends[p as usize])
            });
            split_evenly(&survivors, PARTITIONS)
                && owned.len() == PARTITIONS as usize
                && read == all
                && committed_all
        },
    );
    for p in &victim {
        let taken_by: Vec<&str> =
            members[1..].iter().filter(|s| s.owned.contains(p)).map(|s| s.name.as_str()).collect();
        assert_eq!(taken_by.len(), 1, "victim's partition {p} is owned by {taken_by:?}");
        let after_kill = (before_ends[*p as usize]..ends[*p as usize]).map(|o| (*p, o));
        for at in after_kill {
            assert!(
                members[1..].iter().any(|s| s.read.contains(&at)),
                "record {at:?}, produced after the kill, was not read by a survivor"
            );
        }
    }
    for m in &members {
        // The victim may have had nothing left to read before it died (see above).
        let survivor = !m.gone;
        assert!(!survivor || m.commits > 0, "{} never committed: {}", m.name, m.summary());
        assert!(m.errors.is_empty(), "{}", m.summary());
        assert!(m.read_unowned.is_empty(), "read outside its assignment: {}", m.summary());
    }
    for m in &mut members[1..] {
        m.terminate(deadline);
        assert!(m.closed, "{} did not close: {}", m.name, m.summary());
    }
    // A commit may fail only because a rebalance was under way (the next owner reads those
    // records again: at least once).
    let failures: Vec<&String> = members.iter().flat_map(|m| &m.commit_failures).collect();
    eprintln!("commits that failed during rebalances: {failures:?}");
    let rebalancing = ["REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID"];
    for failure in &failures {
        assert!(rebalancing.iter().any(|r| failure.contains(r)), "a commit failed: {failure}");
    }

    // No committed offset lost: the group's offsets, read back by a fresh consumer, are the ends.
    let lines =
        run_client(Lib::Confluent, "committed", &kafka, &["--topic", "work", "--group", "workers"]);
    let committed: Vec<(u64, u64, u64)> = events(&lines, "committed")
        .map(|l| {
            let n = |f: &str| l[f].as_u64().unwrap_or_else(|| panic!("{f} in {l}"));
            (n("offset"), n("low"), n("high"))
        })
        .collect();
    let expected: Vec<(u64, u64, u64)> = ends.iter().map(|e| (*e, 0, *e)).collect();
    assert_eq!(committed, expected, "(committed, low, high) per partition");
}

#[test]
fn confluent_admin_creates_describes_configures_and_deletes_a_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let kafka = broker.kafka_addr().to_string();
    let lines = run_client(Lib::Confluent, "admin", &kafka, &["--topic", "managed"]);
    let step = |name: &str| {
        events(&lines, name).next().unwrap_or_else(|| panic!("no {name} line: {lines:?}")).clone()
    };
    assert_eq!(step("created")["topic"], "managed");
    assert_eq!(step("created-again")["error"], "TOPIC_ALREADY_EXISTS");
    let described = step("described");
    assert_eq!(described["topic"], "managed", "{described}");
    let partitions = described["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3, "{described}");
    for (i, p) in partitions.iter().enumerate() {
        assert_eq!(p["id"], i, "{described}");
        assert_eq!(p["leader"], 0, "{described}");
        assert_eq!(p["replicas"], serde_json::json!([0]), "{described}");
    }
    let configs = step("configs");
    assert_eq!(configs["configs"]["cleanup.policy"], "compact", "{configs}");
    assert_eq!(configs["configs"]["retention.ms"], "3600000", "{configs}");
    assert_eq!(step("deleted")["topic"], "managed");
    assert_eq!(step("described-after")["error"], "UNKNOWN_TOPIC_OR_PART");
    // Gone for eddy's own CLI too.
    let listed = eddy_ok(&broker, &["topic", "list"]);
    assert!(!listed.iter().any(|l| l.split_whitespace().next() == Some("managed")), "{listed:?}");
}

/// AdminClient.list_topics() asks for every topic with Metadata v12, as librdkafka encodes it:
/// with 3 bytes after the request's end (librdkafka issue #5049), which Kafka ignores.
#[test]
fn confluent_admin_lists_every_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    eddy_ok(&broker, &["topic", "create", "first", "--partitions", "2"]);
    eddy_ok(&broker, &["topic", "create", "second", "--partitions", "5"]);
    let kafka = broker.kafka_addr().to_string();
    let lines = run_client(Lib::Confluent, "list_topics", &kafka, &["--topic", "-"]);
    let listed = events(&lines, "listed").next().unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(listed["topics"]["first"], 2, "{listed}");
    assert_eq!(listed["topics"]["second"], 5, "{listed}");
    assert_eq!(listed["brokers"], serde_json::json!([kafka]), "{listed}");
}

/// KafkaAdminClient asks Metadata v8 for topic and cluster authorized operations.
#[test]
fn kafka_python_admin_creates_lists_describes_and_deletes_a_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let kafka = broker.kafka_addr().to_string();
    let lines = run_client(Lib::KafkaPython, "admin", &kafka, &["--topic", "managed"]);
    let step = |name: &str| {
        events(&lines, name).next().unwrap_or_else(|| panic!("no {name} line: {lines:?}")).clone()
    };
    assert_eq!(step("created")["errors"], serde_json::json!([]));
    let listed = step("listed");
    assert!(listed["topics"].as_array().unwrap().iter().any(|t| t == "managed"), "{listed}");
    assert_eq!(step("described")["topics"]["managed"], 3);
    assert_eq!(step("configs")["configs"]["retention.ms"], "3600000");
    assert_eq!(step("deleted")["errors"], serde_json::json!([]));
    let topics = eddy_ok(&broker, &["topic", "list"]);
    assert!(!topics.iter().any(|l| l.split_whitespace().next() == Some("managed")), "{topics:?}");
}
