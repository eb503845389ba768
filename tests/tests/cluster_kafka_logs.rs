//! `KafkaLogs` (eddy-cluster), the processor runtime's `LogAccess` over a Kafka-protocol
//! cluster, against the real `eddy serve` binary's Kafka listener:
//!
//! - the `LogAccess` contract: topics created (compacted or not) and checked, appends in order
//!   with their offsets, reads of whole batches with each record's offset, key, value, headers
//!   and timestamp, from any offset and in small pieces, an append seen by the next read and
//!   `end_offset`, `wait_for_data` that returns at its deadline without data and at once when
//!   data comes;
//! - the access log's per-URL count (the `url-counts` spec) run over `KafkaLogs`: its table
//!   equals `awk '{print $7}' | sort | uniq -c`, its output topic holds each count once; after
//!   a stop (final snapshots) and more input, the restarted processor goes on and both still
//!   hold;
//! - input written by a transactional producer (rdkafka; committed and aborted transactions,
//!   the partitions ending with a commit marker, then with an aborted transaction): the count
//!   reaches lag 0 — its positions reach each partition's end past the markers and aborted
//!   records — and counts exactly the committed lines.
//!
//! Every wait has a deadline; the seed is printed (EDDY_SEED to repeat).
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stderr, reason = "the seed reaches the test output")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_broker::processors::spec::Spec;
use eddy_cluster::{ClusterConfig, KafkaLogs};
use eddy_processor::{LogAccess, LogError, RuntimeConfig, WaitFor};
use eddy_storage::{BatchBuilder, Header, Record};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::cli::eddy_ok;
use eddy_tests::cluster::{
    append_lines, awk_counts, latest_once, read_partition, url_counts_spec, write_access_log,
};
use eddy_tests::env_u64;
use serde_json::Value;

fn seed() -> u64 {
    let seed = env_u64("EDDY_SEED").unwrap_or(0x0edd_c105);
    eprintln!("seed {seed:#x} (EDDY_SEED to repeat)");
    seed
}

fn logs_for(broker: &BrokerProcess) -> Arc<KafkaLogs> {
    Arc::new(KafkaLogs::new(ClusterConfig::new(broker.kafka_addr().to_string())).unwrap())
}

/// A batch of `n` records: every third with a null key, headers (one with a null value) on
/// every other, timestamps `ts0 + i`.
fn batch(tag: &str, n: usize, ts0: i64) -> eddy_storage::ValidBatch {
    let mut b = BatchBuilder::new();
    let keys: Vec<String> = (0..n).map(|i| format!("{tag}-k{i}")).collect();
    let values: Vec<String> =
        (0..n).map(|i| format!("{tag}-v{i}-{}", "x".repeat(i % 50))).collect();
    for i in 0..n {
        let headers = [
            Header { key: b"h-one", value: Some(values[i].as_bytes()) },
            Header { key: b"h-null", value: None },
        ];
        b.push(Record {
            timestamp: ts0 + i as i64,
            key: (i % 3 != 0).then(|| keys[i].as_bytes()),
            value: Some(values[i].as_bytes()),
            headers: if i % 2 == 0 { &headers } else { &[] },
        });
    }
    b.build_valid().unwrap()
}

#[test]
fn kafka_logs_keep_the_log_access_contract() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let logs = logs_for(&broker);

    // Topics: created, created again (a no-op), a different count refused, unknown ones named.
    logs.create_topic("plain", 3, false).unwrap();
    logs.create_topic("plain", 3, false).unwrap();
    let mismatch = logs.create_topic("plain", 4, false).unwrap_err();
    assert!(matches!(mismatch, LogError::TopicMismatch { existing: 3, .. }), "{mismatch}");
    assert_eq!(logs.partition_count("plain").unwrap(), 3);
    let unknown = logs.partition_count("nope").unwrap_err();
    assert!(matches!(unknown, LogError::UnknownTopic { .. }), "{unknown}");
    let no_partition = logs.end_offset("plain", 3).unwrap_err();
    assert!(matches!(no_partition, LogError::UnknownPartition { partition: 3, .. }));
    logs.create_topic("state", 2, true).unwrap();
    let described = eddy_ok(&broker, &["topic", "describe", "state"]).join("\n");
    assert!(described.contains("compact"), "not compacted:\n{described}");

    // An empty partition: nothing to read, offsets 0.
    assert_eq!(logs.start_offset("plain", 1).unwrap(), 0);
    assert_eq!(logs.end_offset("plain", 1).unwrap(), 0);
    assert!(logs.read("plain", 1, 0, 1 << 20).unwrap().is_empty());

    // Appends land in order, at the offsets they report.
    let first = batch("a", 40, 1_000);
    let second = batch("b", 25, 5_000);
    let a = logs.append("plain", 1, &first).unwrap();
    assert_eq!((a.base_offset, a.last_offset), (0, 39));
    let b = logs.append("plain", 1, &second).unwrap();
    assert_eq!((b.base_offset, b.last_offset), (40, 64));
    logs.flush("plain", 1).unwrap();
    assert_eq!(logs.end_offset("plain", 1).unwrap(), 65);

    // Read back whole, and in small pieces from every starting offset: the same records.
    let whole = read_partition(&*logs, "plain", 1, 0, 1 << 20);
    assert_eq!(whole.len(), 65);
    for (i, r) in whole.iter().enumerate() {
        let (tag, j, ts0) = if i < 40 { ("a", i, 1_000) } else { ("b", i - 40, 5_000) };
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.timestamp, ts0 + j as i64, "offset {i}");
        let key = (j % 3 != 0).then(|| format!("{tag}-k{j}"));
        assert_eq!(r.key.as_deref(), key.as_deref().map(str::as_bytes), "offset {i}");
        let value = format!("{tag}-v{j}-{}", "x".repeat(j % 50));
        assert_eq!(r.value.as_deref(), Some(value.as_bytes()), "offset {i}");
        let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = if j % 2 == 0 {
            vec![(b"h-one".to_vec(), Some(value.into_bytes())), (b"h-null".to_vec(), None)]
        } else {
            vec![]
        };
        assert_eq!(r.headers, headers, "offset {i}");
    }
    for from in [0, 1, 17, 39, 40, 41, 64] {
        let piece = read_partition(&*logs, "plain", 1, from, 100);
        assert_eq!(piece, whole[from as usize..], "read in pieces from {from}");
    }
    assert!(logs.read("plain", 1, 65, 1 << 20).unwrap().is_empty());

    // An append is seen by the very next read from the reader that stood at the end.
    let c = logs.append("plain", 1, &batch("c", 3, 9_000)).unwrap();
    assert_eq!(c.base_offset, 65);
    let tail = read_partition(&*logs, "plain", 1, 65, 1 << 20);
    assert_eq!(tail.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![65, 66, 67]);

    // wait_for_data: returns at its deadline with nothing to read, at once with data there.
    let interest = [WaitFor { topic: "plain", partition: 2, offset: 0 }];
    let started = Instant::now();
    assert!(!logs.wait_for_data(&interest, started + Duration::from_millis(300)));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(290) && waited < Duration::from_secs(5), "{waited:?}");
    let already = [WaitFor { topic: "plain", partition: 1, offset: 10 }];
    assert!(logs.wait_for_data(&already, Instant::now() + Duration::from_secs(20)));

    // ... and wakes when an append comes while it waits.
    let waiter = {
        let logs = logs.clone();
        std::thread::spawn(move || {
            let interest = [WaitFor { topic: "plain", partition: 2, offset: 0 }];
            let started = Instant::now();
            let arrived = logs.wait_for_data(&interest, started + Duration::from_secs(30));
            (arrived, started.elapsed())
        })
    };
    logs.append("plain", 2, &batch("d", 1, 1)).unwrap();
    let (arrived, took) = waiter.join().unwrap();
    assert!(arrived && took < Duration::from_secs(20), "arrived {arrived} after {took:?}");
    let d = read_partition(&*logs, "plain", 2, 0, 1 << 20);
    assert_eq!(d.len(), 1);
}

/// The url-counts processor over `logs`, with its state under `state`.
fn start_url_counts(
    logs: &Arc<KafkaLogs>,
    state: &std::path::Path,
) -> eddy_processor::RunningProcessor {
    let spec = Spec::parse(&url_counts_spec("access-log", "url-counts")).unwrap();
    let processor = spec.compile(&|t| logs.partition_count(t).ok()).unwrap();
    let mut config = RuntimeConfig::new(state);
    config.threads = 2;
    config.task.snapshot_every_records = 5_000;
    processor.start(logs.clone(), config).unwrap()
}

fn table_of(running: &eddy_processor::RunningProcessor) -> BTreeMap<String, u64> {
    let table = running.table::<Value, Value>("requests").unwrap();
    table
        .scan()
        .into_iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.as_u64().unwrap()))
        .collect()
}

/// The output topic holds each count once, and its latest count per URL is `expected`'s.
fn check_output(logs: &KafkaLogs, expected: &BTreeMap<String, u64>) {
    let mut records = Vec::new();
    for p in 0..logs.partition_count("url-counts").unwrap() {
        records.extend(read_partition(logs, "url-counts", p, 0, 1 << 20));
    }
    let (latest, _) = latest_once(&records);
    let latest: BTreeMap<String, u64> =
        latest.into_iter().map(|(k, v)| (k, v.parse().unwrap())).collect();
    assert_eq!(&latest, expected, "url-counts' latest count per URL");
}

#[test]
fn url_counts_over_kafka_logs_equal_awk_and_resume_after_a_stop() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let logs = logs_for(&broker);
    let first_path = dir.path().join("first.log");
    let more_path = dir.path().join("more.log");
    let first = write_access_log(&first_path, 6_000, seed);
    let more = write_access_log(&more_path, 2_000, seed ^ 1);
    logs.create_topic("access-log", 3, false).unwrap();
    append_lines(&*logs, "access-log", 3, &first, 250, 1_700_000_000_000);

    let state = dir.path().join("state");
    let running = start_url_counts(&logs, &state);
    running.wait_caught_up(Duration::from_secs(120)).unwrap();
    let expected = awk_counts(&[&first_path]);
    assert_eq!(table_of(&running), expected);
    check_output(&logs, &expected);
    running.stop().unwrap();

    // More input while it is stopped: the restart goes on from the snapshots.
    append_lines(&*logs, "access-log", 3, &more, 250, 1_700_000_100_000);
    let running = start_url_counts(&logs, &state);
    running.wait_caught_up(Duration::from_secs(120)).unwrap();
    let expected = awk_counts(&[&first_path, &more_path]);
    assert_eq!(table_of(&running), expected);
    check_output(&logs, &expected);
    running.stop().unwrap();
}

/// A transactional producer (rdkafka) writing `lines` to `topic`: one transaction per `per_txn`
/// lines, each line to partition `i % partitions`; the transactions for which `abort(k)` holds
/// are aborted. Returns the lines committed.
fn write_transactions(
    kafka: &str,
    topic: &str,
    partitions: u32,
    lines: &[String],
    per_txn: usize,
    abort: impl Fn(usize) -> bool,
) -> Vec<String> {
    use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka)
            .set("transactional.id", format!("test-input-{topic}"))
            .create()
            .unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();
    let mut committed = Vec::new();
    for (k, chunk) in lines.chunks(per_txn).enumerate() {
        producer.begin_transaction().unwrap();
        for (i, line) in chunk.iter().enumerate() {
            let record = BaseRecord::<(), str>::to(topic)
                .payload(line)
                .partition((i as u32 % partitions) as i32);
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        if abort(k) {
            producer.abort_transaction(timeout).unwrap();
        } else {
            producer.commit_transaction(timeout).unwrap();
            committed.extend_from_slice(chunk);
        }
    }
    committed
}

/// Every task's input positions are at their partitions' ends (lag 0).
fn assert_lag_zero(logs: &KafkaLogs, running: &eddy_processor::RunningProcessor) {
    for (task, status) in running.status() {
        for (topic, p, next) in &status.inputs {
            let end = logs.end_offset(topic, *p).unwrap();
            assert_eq!(*next, end, "task {task} input {topic}-{p}: position {next}, end {end}");
        }
    }
}

#[test]
fn transactional_input_reaches_lag_zero_and_counts_only_committed_lines() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let kafka = broker.kafka_addr().to_string();
    let logs = logs_for(&broker);
    let lines = write_access_log(&dir.path().join("all.log"), 3_000, seed);
    logs.create_topic("access-log", 3, false).unwrap();
    // Every third transaction aborted; the last one (k = 29) commits, so every partition ends
    // with a commit marker.
    let committed = write_transactions(&kafka, "access-log", 3, &lines, 100, |k| k % 3 == 1);
    assert_eq!(committed.len(), 2_000);
    let committed_path = dir.path().join("committed.log");
    std::fs::write(&committed_path, committed.join("\n") + "\n").unwrap();

    // A committed read of the topic: only the committed lines, and it reaches the end.
    let mut read = Vec::new();
    for p in 0..3 {
        let records = read_partition(&*logs, "access-log", p, 0, 1 << 16);
        read.extend(records.into_iter().map(|r| r.value.unwrap()));
    }
    let mut want: Vec<&[u8]> = committed.iter().map(|l| l.as_bytes()).collect();
    let mut got: Vec<&[u8]> = read.iter().map(|v| &v[..]).collect();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "a committed read holds exactly the committed lines");

    let state = dir.path().join("state");
    let running = start_url_counts(&logs, &state);
    running.wait_caught_up(Duration::from_secs(120)).unwrap();
    assert_lag_zero(&logs, &running);
    let expected = awk_counts(&[&committed_path]);
    assert_eq!(table_of(&running), expected);
    check_output(&logs, &expected);

    // Now the partitions end with an aborted transaction: still lag 0, nothing counted.
    let aborted = write_transactions(&kafka, "access-log", 3, &lines[..300], 300, |_| true);
    assert!(aborted.is_empty());
    running.wait_caught_up(Duration::from_secs(120)).unwrap();
    assert_lag_zero(&logs, &running);
    assert_eq!(table_of(&running), expected);
    running.stop().unwrap();
}
