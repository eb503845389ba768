//! Kafka transactions against the real `eddy serve`, driven by confluent-kafka (librdkafka)
//! through `tests/kafka-clients/confluent_txn.py`: committed and aborted transactions as
//! read_committed and read_uncommitted consumers (confluent-kafka's, kcat's and eddy's own) see
//! them; consume-transform-produce with offsets in the transaction; fencing by a second
//! producer with the same transactional id; a broker killed with SIGKILL mid-transaction; and
//! a transaction aborted by the broker when its timeout passes.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_client::{
    Admin, Connection, ConnectionOptions, Consumer, ConsumerConfig, IsolationLevel, OffsetQuery,
    SeekTo,
};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::child::{ChildProcess, deadline_in};
use eddy_tests::cli::eddy_ok;
use eddy_tests::kafka_clients::{kcat_command, python_client, run_to_end};
use eddy_tests::kafka_harness::{CLIENT_LIMIT, CLIENT_TIMEOUT_S, events, json_lines};
use serde_json::Value;

/// Broker settings for these tests: timed-out transactions are looked for every 100 ms.
const ENV: &[(&str, &str)] = &[("EDDY_TXN_ABORT_CHECK_INTERVAL_MS", "100")];

/// `confluent_txn.py COMMAND --bootstrap B --timeout S ARGS...`, run to its end.
fn txn_client(command: &str, broker: &BrokerProcess, args: &[&str]) -> Vec<Value> {
    let mut c = python_client("confluent_txn.py");
    let bootstrap = broker.kafka_addr().to_string();
    c.arg(command).args(["--bootstrap", &bootstrap, "--timeout", CLIENT_TIMEOUT_S]).args(args);
    json_lines(&run_to_end(c, CLIENT_LIMIT))
}

/// Values per partition, in offset order, as confluent-kafka reads them at `isolation`.
fn confluent_values(
    broker: &BrokerProcess,
    topic: &str,
    isolation: &str,
) -> BTreeMap<u64, Vec<String>> {
    let lines = txn_client("consume", broker, &["--topic", topic, "--isolation", isolation]);
    assert_eq!(events(&lines, "end").count(), 1, "{lines:?}");
    let mut out: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
    for r in events(&lines, "record") {
        let (p, o) = (r["partition"].as_u64().unwrap(), r["offset"].as_u64().unwrap());
        out.entry(p).or_default().push((o, r["value"].as_str().unwrap().to_string()));
    }
    out.into_iter()
        .map(|(p, mut v)| {
            assert!(v.windows(2).all(|w| w[0].0 < w[1].0), "partition {p} out of order: {v:?}");
            v.sort();
            (p, v.into_iter().map(|(_, s)| s).collect())
        })
        .collect()
}

/// Values per partition, in offset order, as eddy's own consumer reads them at `isolation`,
/// up to each partition's latest offset at that isolation when called.
fn native_values(
    broker: &BrokerProcess,
    topic: &str,
    isolation: IsolationLevel,
) -> BTreeMap<u64, Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let addr = broker.addr().to_string();
        let conn =
            Arc::new(Connection::connect(&addr, ConnectionOptions::default()).await.unwrap());
        let admin = Admin::new(conn.clone());
        let partitions = admin.partition_count(topic).await.unwrap();
        let queries: Vec<_> = (0..partitions).map(|p| (p, OffsetQuery::Latest)).collect();
        let listed = admin.list_offsets_as(topic, &queries, isolation).await.unwrap();
        let ends: Vec<u64> = listed.iter().map(|l| l.offset).collect();
        let config = ConsumerConfig { start: SeekTo::Earliest, isolation, ..Default::default() };
        let mut consumer = Consumer::new(conn, config);
        consumer.assign(topic, 0..partitions);
        let deadline = deadline_in(Duration::from_secs(30));
        let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        loop {
            let done = (0..partitions)
                .all(|p| consumer.position(topic, p).is_some_and(|at| at >= ends[p as usize]));
            if done {
                return out;
            }
            assert!(Instant::now() < deadline, "native read of {topic} to {ends:?}");
            for batch in consumer.poll(Duration::from_millis(200)).await.unwrap() {
                for r in batch.to_records().unwrap() {
                    let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                    out.entry(u64::from(r.partition)).or_default().push(value);
                }
            }
        }
    })
}

/// (latest, latest under read_committed) of every partition, over eddy's protocol.
fn ends(broker: &BrokerProcess, topic: &str) -> Vec<(u64, u64)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let addr = broker.addr().to_string();
        let conn =
            Arc::new(Connection::connect(&addr, ConnectionOptions::default()).await.unwrap());
        let admin = Admin::new(conn);
        let n = admin.partition_count(topic).await.unwrap();
        let queries: Vec<_> = (0..n).map(|p| (p, OffsetQuery::Latest)).collect();
        let all = admin.list_offsets(topic, &queries).await.unwrap();
        let stable =
            admin.list_offsets_as(topic, &queries, IsolationLevel::ReadCommitted).await.unwrap();
        all.iter().zip(&stable).map(|(a, s)| (a.offset, s.offset)).collect()
    })
}

/// Waits until no transaction is open in `topic` (every LSO is its high watermark).
fn wait_until_stable(broker: &BrokerProcess, topic: &str, within: Duration) {
    let deadline = deadline_in(within);
    loop {
        let e = ends(broker, topic);
        if e.iter().all(|(end, lso)| end == lso) {
            return;
        }
        assert!(Instant::now() < deadline, "{topic}: LSO never reached the end: {e:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn strings(values: &Value) -> Vec<String> {
    values.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

#[test]
fn committed_and_aborted_transactions_as_each_isolation_level_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), ENV);
    eddy_ok(&broker, &["topic", "create", "tx", "--partitions", "3"]);
    let lines = txn_client(
        "transactions",
        &broker,
        &[
            "--topic",
            "tx",
            "--partitions",
            "3",
            "--count",
            "30",
            "--abort-every",
            "3",
            "--txn-id",
            "t",
        ],
    );
    assert_eq!(events(&lines, "done").count(), 1, "{lines:?}");
    assert_eq!(events(&lines, "aborted").count(), 10);
    // What each partition must hold: transaction i wrote "t{i}-p{p}" to partition p.
    let (mut committed, mut everything) = (BTreeMap::new(), BTreeMap::new());
    for line in lines.iter().filter(|l| l["event"] == "committed" || l["event"] == "aborted") {
        for (p, v) in strings(&line["values"]).into_iter().enumerate() {
            everything.entry(p as u64).or_insert_with(Vec::new).push(v.clone());
            if line["event"] == "committed" {
                committed.entry(p as u64).or_insert_with(Vec::new).push(v);
            }
        }
    }
    assert_eq!(committed[&0].len(), 20);
    assert_eq!(confluent_values(&broker, "tx", "read_committed"), committed);
    assert_eq!(confluent_values(&broker, "tx", "read_uncommitted"), everything);
    assert_eq!(native_values(&broker, "tx", IsolationLevel::ReadCommitted), committed);
    assert_eq!(native_values(&broker, "tx", IsolationLevel::ReadUncommitted), everything);
    // The CLI: read_committed by flag, no control records either way.
    let cli =
        eddy_ok(&broker, &["consume", "tx", "--partition", "1", "--isolation", "read_committed"]);
    assert_eq!(cli, committed[&1]);
    // kcat (librdkafka's C consumer) with isolation.level=read_committed.
    let mut kcat = kcat_command(&broker.kafka_addr().to_string());
    kcat.args(["-C", "-t", "tx", "-p", "2", "-e", "-q", "-f", "%s\n"]);
    kcat.args(["-X", "isolation.level=read_committed"]);
    let out = run_to_end(kcat, CLIENT_LIMIT);
    let read: Vec<String> =
        String::from_utf8(out.ok().to_vec()).unwrap().lines().map(str::to_string).collect();
    assert_eq!(read, committed[&2]);
}

/// The group's committed offsets of `topic`, per partition (-1001: none).
fn group_offsets(broker: &BrokerProcess, topic: &str, group: &str) -> Vec<i64> {
    let mut c = python_client("confluent_client.py");
    let bootstrap = broker.kafka_addr().to_string();
    c.args(["committed", "--bootstrap", &bootstrap, "--timeout", CLIENT_TIMEOUT_S]);
    c.args(["--topic", topic, "--group", group]);
    let lines = json_lines(&run_to_end(c, CLIENT_LIMIT));
    events(&lines, "committed").map(|l| l["offset"].as_i64().unwrap()).collect()
}

#[test]
fn offsets_sent_to_a_transaction_move_only_when_it_commits() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), ENV);
    eddy_ok(&broker, &["topic", "create", "in", "--partitions", "2"]);
    eddy_ok(&broker, &["topic", "create", "out", "--partitions", "1"]);
    let lines = txn_client(
        "transactions",
        &broker,
        &[
            "--topic",
            "in",
            "--partitions",
            "2",
            "--count",
            "4",
            "--abort-every",
            "100",
            "--txn-id",
            "src",
        ],
    );
    assert_eq!(events(&lines, "committed").count(), 4);
    let args = ["--topic", "in", "--output", "out", "--group", "ctp", "--txn-id", "ctp-1"];
    let aborted = txn_client("transform", &broker, &[&args[..], &["--abort"]].concat());
    assert_eq!(events(&aborted, "aborted").count(), 1, "{aborted:?}");
    assert_eq!(group_offsets(&broker, "in", "ctp"), [-1001, -1001]);
    assert!(confluent_values(&broker, "out", "read_committed").is_empty());
    let committed = txn_client("transform", &broker, &args);
    let line = events(&committed, "committed").next().unwrap_or_else(|| panic!("{committed:?}"));
    // Every input record is behind the offsets: 4 transactions of one record and one marker.
    assert_eq!(line["offsets"], serde_json::json!([[0, 8], [1, 8]]));
    assert_eq!(group_offsets(&broker, "in", "ctp"), [8, 8]);
    let mut out = confluent_values(&broker, "out", "read_committed").remove(&0).unwrap();
    out.sort();
    let mut expected: Vec<String> =
        strings(&line["values"]).iter().map(|v| v.to_uppercase()).collect();
    expected.sort();
    assert_eq!(out, expected);
    assert_eq!(out.len(), 8);
}

#[test]
fn a_second_producer_with_the_same_id_fences_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), ENV);
    eddy_ok(&broker, &["topic", "create", "f", "--partitions", "1"]);
    let lines = txn_client("fence", &broker, &["--topic", "f", "--txn-id", "shared"]);
    let fenced = events(&lines, "a-fenced").next().unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(fenced["error"], "_FENCED");
    assert_eq!(fenced["fatal"], true);
    assert_eq!(events(&lines, "b-committed").count(), 1);
    // A's open transaction was aborted when B initialised: only B's record is committed.
    let committed = confluent_values(&broker, "f", "read_committed");
    assert_eq!(committed, BTreeMap::from([(0, vec!["b-committed".to_string()])]));
    let all = confluent_values(&broker, "f", "read_uncommitted");
    assert_eq!(all[&0], ["a-open", "b-committed"]);
}

/// A producer left with an open transaction: `open` run until it prints "open".
fn open_transaction(
    broker: &BrokerProcess,
    id: &str,
    partition: &str,
    timeout_ms: &str,
    go: &str,
) -> ChildProcess {
    let mut c = python_client("confluent_txn.py");
    let bootstrap = broker.kafka_addr().to_string();
    c.args(["open", "--bootstrap", &bootstrap, "--timeout", CLIENT_TIMEOUT_S, "--topic", "k"]);
    c.args(["--txn-id", id, "--value", id, "--partition", partition]);
    c.args(["--txn-timeout-ms", timeout_ms, "--go-file", go]);
    let mut child = ChildProcess::spawn_command(c).unwrap();
    let deadline = deadline_in(CLIENT_LIMIT);
    loop {
        let line = child.next_line(deadline).unwrap();
        match line {
            Some(l) if l.contains("\"open\"") => return child,
            Some(_) => {}
            None => panic!("{id}: no open transaction: {}", child.stderr()),
        }
    }
}

#[test]
fn after_a_sigkill_no_transaction_is_half_visible() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), ENV);
    eddy_ok(&broker, &["topic", "create", "k", "--partitions", "2"]);
    for (id, p) in [("c0", "0"), ("c1", "1")] {
        let lines = txn_client(
            "commit-one",
            &broker,
            &["--topic", "k", "--txn-id", id, "--value", id, "--partition", p],
        );
        assert_eq!(events(&lines, "committed").count(), 1, "{lines:?}");
    }
    let go = dir.path().join("never").to_string_lossy().into_owned();
    let open: Vec<ChildProcess> = [("o0", "0"), ("o1", "1")]
        .iter()
        .map(|(id, p)| open_transaction(&broker, id, p, "3000", &go))
        .collect();
    // Open transactions hold each partition's LSO at their first record.
    assert!(ends(&broker, "k").iter().all(|(end, lso)| lso < end));
    broker.kill9();
    drop(open);
    let broker = BrokerProcess::start(dir.path(), ENV);
    let expected = BTreeMap::from([(0, vec!["c0".to_string()]), (1, vec!["c1".to_string()])]);
    // Every acknowledged commit is visible, and nothing of the open ones.
    assert_eq!(native_values(&broker, "k", IsolationLevel::ReadCommitted), expected);
    // The open transactions survived the restart and end when their timeout passes.
    wait_until_stable(&broker, "k", Duration::from_secs(30));
    assert_eq!(confluent_values(&broker, "k", "read_committed"), expected);
    assert_eq!(native_values(&broker, "k", IsolationLevel::ReadCommitted), expected);
    let all = confluent_values(&broker, "k", "read_uncommitted");
    assert_eq!(all[&0], ["c0", "o0"]);
    // A new producer with an open transaction's id works.
    let lines = txn_client(
        "commit-one",
        &broker,
        &["--topic", "k", "--txn-id", "o0", "--value", "again", "--partition", "0"],
    );
    assert_eq!(events(&lines, "committed").count(), 1, "{lines:?}");
    let committed = confluent_values(&broker, "k", "read_committed");
    assert_eq!(committed[&0], ["c0", "again"]);
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), ENV);
    eddy_ok(&broker, &["topic", "create", "k", "--partitions", "1"]);
    let go = dir.path().join("go");
    let mut producer = open_transaction(&broker, "slow", "0", "1500", &go.to_string_lossy());
    let (end, lso) = ends(&broker, "k")[0];
    assert_eq!((end, lso), (1, 0), "the open transaction holds the LSO");
    wait_until_stable(&broker, "k", Duration::from_secs(20));
    // Its producer comes back and tries to commit: fenced, as Kafka does.
    std::fs::write(&go, b"").unwrap();
    let rest = producer.remaining_lines(deadline_in(CLIENT_LIMIT)).unwrap();
    let failed: Vec<&String> = rest.iter().filter(|l| l.contains("commit-failed")).collect();
    assert_eq!(failed.len(), 1, "{rest:?}\n{}", producer.stderr());
    assert!(native_values(&broker, "k", IsolationLevel::ReadCommitted).is_empty());
    assert_eq!(native_values(&broker, "k", IsolationLevel::ReadUncommitted)[&0], ["slow"]);
}
