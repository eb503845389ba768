//! Effectively-once inside the server: a processor deployed in `eddy serve` sums payments per
//! user while the broker is SIGKILLed at random points of its work, 20 times. After the last
//! restart the output topic holds exactly one result per input record — for each user, the
//! running sums of its payments in order, none missing, none twice — and the table's changelog
//! equals, key for key, that of a second processor that read the same input once, without
//! crashes; both equal the sums computed here.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_client::partitioner::partition_for_key;
use eddy_client::{Connection, ConnectionOptions, Consumer, ConsumerConfig, SeekTo};
use eddy_storage::{BatchBuilder, Record};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::cli::eddy_ok;
use eddy_tests::env_u64;
use eddy_tests::generate::Rng;
use eddy_tests::raw_client::RawClient;

const PARTITIONS: u32 = 2;
const USERS: u64 = 50;
const CYCLES: usize = 20;
const CHUNK: u64 = 2_000;

/// A record's key and value bytes.
type KeyValue = (Vec<u8>, Vec<u8>);

fn spec(name: &str) -> String {
    format!(
        r#"
name = "{name}"
version = 1
source = {{ topic = "payments", format = "json" }}
[[ops]]
op = "key_by"
field = "user"
[[ops]]
op = "aggregate"
table = "totals"
fn = "sum"
field = "amount"
[[ops]]
op = "to"
topic = "{name}-out"
"#
    )
}

/// Produces `CHUNK` payments; records (user, amount) in `sent`.
fn produce(client: &mut RawClient, rng: &mut Rng, sent: &mut Vec<(String, u64)>) {
    let mut batches: BTreeMap<u32, BatchBuilder> = BTreeMap::new();
    for _ in 0..CHUNK {
        let user = format!("u{}", rng.below(USERS));
        let amount = 1 + rng.below(100);
        let value = serde_json::json!({ "user": user, "amount": amount }).to_string();
        let partition = partition_for_key(user.as_bytes(), PARTITIONS);
        batches.entry(partition).or_default().push(Record {
            timestamp: 0,
            key: Some(user.as_bytes()),
            value: Some(value.as_bytes()),
            headers: &[],
        });
        sent.push((user, amount));
    }
    for (p, b) in batches {
        client.produce_ok("payments", p, Bytes::from(b.finish()));
    }
}

/// Records of `topic` from offset zero — (key, value) in order per partition, partitions one
/// after the other — once it holds `at_least`: at that moment (`settle` false), or once
/// no more arrive (`settle` true). Fails at `deadline`.
fn read(addr: &str, topic: &str, at_least: u64, settle: bool, deadline: Instant) -> Vec<KeyValue> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let conn = Arc::new(Connection::connect(addr, ConnectionOptions::default()).await.unwrap());
        let partitions =
            eddy_client::Admin::new(conn.clone()).partition_count(topic).await.unwrap();
        let config = ConsumerConfig { start: SeekTo::Earliest, ..ConsumerConfig::default() };
        let mut consumer = Consumer::new(conn, config);
        consumer.assign(topic, 0..partitions);
        let mut by_partition: BTreeMap<u32, Vec<KeyValue>> = BTreeMap::new();
        let mut seen = 0u64;
        loop {
            if !settle && seen >= at_least {
                break;
            }
            let batches = consumer.poll(Duration::from_millis(300)).await.unwrap();
            if batches.is_empty() && seen >= at_least {
                break;
            }
            assert!(Instant::now() < deadline, "{topic}: {seen} records, waiting for {at_least}");
            for batch in batches {
                for r in batch.to_records().unwrap() {
                    let key = r.key.map(|k| k.to_vec()).unwrap_or_default();
                    let value = r.value.map(|v| v.to_vec()).unwrap_or_default();
                    by_partition.entry(r.partition).or_default().push((key, value));
                    seen += 1;
                }
            }
        }
        by_partition.into_values().flatten().collect()
    })
}

/// Latest value per key.
fn latest(records: Vec<KeyValue>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    records.into_iter().collect()
}

fn start(data: &Path) -> (BrokerProcess, RawClient) {
    let broker = BrokerProcess::start(data, &[]);
    let client = RawClient::connect(broker.addr());
    (broker, client)
}

#[test]
fn sigkilled_broker_leaves_each_result_once_and_tables_equal_a_replay() {
    let mut rng = Rng::new(env_u64("EDDY_TEST_SEED").unwrap_or(0x0edd_5a1e));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut broker, mut client) = start(&data);
    client.create_topic("payments", PARTITIONS);
    let spec_file = dir.path().join("sums.toml");
    std::fs::write(&spec_file, spec("sums")).unwrap();
    eddy_ok(&broker, &["processor", "deploy", spec_file.to_str().unwrap()]);

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut sent = Vec::new();
    let mut busy = 0u64;
    for _ in 0..CYCLES {
        produce(&mut client, &mut rng, &mut sent);
        // Let the processor get some way into the chunk, then kill the broker under it.
        let target = (sent.len() as u64 - CHUNK) + rng.below(CHUNK);
        let seen = read(&broker.addr().to_string(), "sums-out", target, false, deadline).len();
        broker.kill9();
        busy += u64::from(seen < sent.len());
        (broker, client) = start(&data);
    }
    eprintln!("{CYCLES} SIGKILLs, {busy} of them with input not yet processed");
    let total = sent.len() as u64;
    let addr = broker.addr().to_string();
    let outputs = read(&addr, "sums-out", total, true, deadline);
    assert_eq!(outputs.len() as u64, total, "one result per payment, none twice");

    // Per user, the running sums in input order.
    let mut expected: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for (user, amount) in &sent {
        let s = sums.entry(user.clone()).or_default();
        *s += *amount as f64;
        expected.entry(user.clone()).or_default().push(*s);
    }
    let mut got: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (k, v) in &outputs {
        let user = String::from_utf8(k.clone()).unwrap();
        let value: f64 = serde_json::from_slice(v).unwrap();
        got.entry(user).or_default().push(value);
    }
    assert_eq!(got, expected);

    // The table, as its changelog holds it, equals a crash-free replay's — and the sums.
    let fresh = dir.path().join("fresh.toml");
    std::fs::write(&fresh, spec("fresh")).unwrap();
    eddy_ok(&broker, &["processor", "deploy", fresh.to_str().unwrap()]);
    read(&addr, "fresh-out", total, true, deadline);
    let crashed = latest(read(&addr, "sums-1-totals-changelog", 1, true, deadline));
    let replayed = latest(read(&addr, "fresh-1-totals-changelog", 1, true, deadline));
    assert_eq!(crashed, replayed);
    assert_eq!(crashed.len(), sums.len());
    for (user, sum) in &sums {
        let key = serde_json::to_vec(user).unwrap();
        let value: f64 = serde_json::from_slice(&crashed[&key]).unwrap();
        assert_eq!(value, *sum, "{user}");
    }
}
