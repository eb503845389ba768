//! Records produced by Kafka clients give eddy's processors and SQL queries exactly the answers
//! the same records give when produced natively.
//!
//! One broker, two 4-partition topics with identical content: `pv-native`, filled by eddy's own
//! client, and `pv-kafka`, filled by Kafka clients in five runs, each a different compressed
//! batch format — confluent-kafka (librdkafka) with lz4 (idempotent), zstd and snappy,
//! kafka-python with gzip, kafkajs with gzip. Page views: a few thousand records over a few
//! dozen user keys, JSON values `{"page", "bytes"}`, timestamps over the 20 minutes before
//! the test, out of order by up to 2 s within a partition. The clients' partitioners (murmur2, as
//! eddy's) put every record at the partition and offset it has in `pv-native`; the test checks
//! that first, that the records are stored identically, and that each run's are stored in its
//! codec, so every difference after it is the broker's.
//!
//! Against each topic, the same processors:
//!
//! - spec files (`eddy processor deploy`, deployed before the records are produced, so they
//!   read the compressed batches as they arrive): a count per user, a sum of `bytes` per user,
//!   and a per-page count per one-minute tumbling window (`key_by` page: a repartition);
//! - SQL (`eddy sql`, created once the records are there, so they replay them from offset
//!   zero): `COUNT(*)`, `SUM(bytes)` and `LATEST_BY_OFFSET(page)` per user, and `COUNT(*)`,
//!   `SUM(bytes)` per page per minute (`WINDOW TUMBLING`).
//!
//! Once each has caught up (its status: running, every task reporting, lag 0, the whole source
//! read, nothing late, no decode error), every user's pull query (spec tables by key, SQL by
//! ROWKEY) answers the same for both topics and what a model computed here says; the windowed
//! tables' scans are equal and equal the model; each table pair has the same digest
//! (`eddy query T --scan --digest`); `eddy consume` prints the same records for both topics.
//!
//! Then the broker restarts (SIGTERM): every processor resumes from its snapshot, 1,000 more
//! records go to each topic (confluent-kafka with zstd, idempotent; kafka-python with gzip),
//! and every check above is made again over all the records.
//!
//! Every wait has a deadline. The seed is printed (EDDY_TEST_SEED repeats it). The Kafka
//! clients are the programs in `tests/kafka-clients/` (their `produce-file` command), which
//! `./scripts/test` installs; a missing one fails the test with what to install.
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stderr, reason = "the seed and the timings reach the test output")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy_client::partitioner::partition_for_key;
use eddy_client::{Connection, ConnectionOptions, Producer, ProducerConfig, ProducerRecord};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::child::deadline_in;
use eddy_tests::cli::eddy_ok;
use eddy_tests::env_u64;
use eddy_tests::generate::{Rng, mix64};
use eddy_tests::kafka_clients::{kafkajs_client, python_client, run_to_end};
use eddy_tests::kafka_harness::json_lines;
use eddy_tests::processor_queries::{assert_same_digest, get, scan, sql_pull, wait_caught_up};
use eddy_tests::raw_client::RawClient;
use serde_json::{Value, json};

const PARTITIONS: u32 = 4;
/// Records produced to each topic before the restart, and after it.
const FIRST: usize = 4_000;
const MORE: usize = 1_000;
const RECORDS: usize = FIRST + MORE;
const USERS: u64 = 40;
const PAGES: u64 = 12;
/// Record i's timestamp is `base + i * STEP_MS + jitter`, jitter below `JITTER_MS`: about 21
/// minutes of page views, out of order by less than the windows' grace.
const STEP_MS: i64 = 250;
const JITTER_MS: u64 = 2_000;
const MINUTE_MS: i64 = 60_000;

const NATIVE: &str = "pv-native";
const KAFKA: &str = "pv-kafka";

/// Longest one client run may take, and the deadline the client program gives itself.
const CLIENT_LIMIT: Duration = Duration::from_secs(120);
const CLIENT_TIMEOUT_S: &str = "90";
/// Longest wait for every processor to catch up.
const CATCH_UP: Duration = Duration::from_secs(90);

/// `pv-kafka` is filled in these runs, in order, each taking the records up to its end
/// (exclusive) after the previous run's: (client, codec, idempotent, end). First these:
const FIRST_RUNS: [(Client, &str, bool, usize); 5] = [
    (Client::Confluent, "lz4", true, 1_200),
    (Client::Confluent, "zstd", false, 2_000),
    (Client::Confluent, "snappy", false, 2_600),
    (Client::KafkaPython, "gzip", false, 3_300),
    (Client::Kafkajs, "gzip", false, FIRST),
];
/// Then, after the broker's restart, these.
const MORE_RUNS: [(Client, &str, bool, usize); 2] =
    [(Client::Confluent, "zstd", true, FIRST + 600), (Client::KafkaPython, "gzip", false, RECORDS)];

// ---------------------------------------------------------------------------------------------
// The records and what they should give.

/// One page view, and the partition murmur2 gives its key.
#[derive(Debug, Clone)]
struct View {
    user: String,
    page: String,
    bytes: u64,
    timestamp: i64,
    partition: u32,
}

impl View {
    fn value(&self) -> String {
        json!({"page": self.page, "bytes": self.bytes}).to_string()
    }
}

fn seed() -> u64 {
    let seed = env_u64("EDDY_TEST_SEED").unwrap_or(0x0edd_0af1);
    eprintln!("seed {seed:#x} (EDDY_TEST_SEED to repeat)");
    seed
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// `RECORDS` page views ending about now (records older than a topic's retention, 7 days by
/// default, would be deleted); users skewed towards small numbers, as real traffic is.
fn views(seed: u64) -> Vec<View> {
    let mut rng = Rng::new(mix64(seed));
    let span = RECORDS as i64 * STEP_MS + JITTER_MS as i64;
    let base = now_ms() - span - MINUTE_MS;
    (0..RECORDS)
        .map(|i| {
            let u = rng.below(USERS * USERS);
            let user = format!("user-{:02}", USERS - 1 - u.isqrt());
            let page = format!("/page/{}", rng.below(PAGES));
            let bytes = 200 + rng.below(20_000);
            let timestamp = base + i as i64 * STEP_MS + rng.below(JITTER_MS) as i64;
            let partition = partition_for_key(user.as_bytes(), PARTITIONS);
            View { user, page, bytes, timestamp, partition }
        })
        .collect()
}

/// Per user: (count, sum of bytes, page of the user's last record).
fn per_user(views: &[View]) -> BTreeMap<String, (u64, u64, String)> {
    let mut model: BTreeMap<String, (u64, u64, String)> = BTreeMap::new();
    for v in views {
        let e = model.entry(v.user.clone()).or_default();
        e.0 += 1;
        e.1 += v.bytes;
        // Latest by offset: a user's records are in one partition, in index order.
        e.2 = v.page.clone();
    }
    model
}

/// Per (page, minute start): (count, sum of bytes). The jitter is below the grace and each
/// partition's records are in index order, so no record is late.
fn per_page_minute(views: &[View]) -> BTreeMap<(String, i64), (u64, u64)> {
    let mut model: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
    for v in views {
        let start = v.timestamp - v.timestamp.rem_euclid(MINUTE_MS);
        let e = model.entry((v.page.clone(), start)).or_default();
        e.0 += 1;
        e.1 += v.bytes;
    }
    model
}

// ---------------------------------------------------------------------------------------------
// Producing: natively, and with the Kafka clients.

/// Sends every view to `topic` with eddy's client (murmur2 of the key picks the partition;
/// idempotent, so each partition keeps the order of sending); returns where each landed.
fn produce_natively(addr: &str, topic: &str, views: &[View]) -> Vec<(u32, u64)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let conn = Arc::new(Connection::connect(addr, ConnectionOptions::default()).await.unwrap());
        let producer = Producer::new(conn, ProducerConfig::default()).unwrap();
        let mut deliveries = Vec::with_capacity(views.len());
        for v in views {
            let record =
                ProducerRecord::keyed(v.user.clone(), v.value()).with_timestamp(v.timestamp);
            deliveries.push(producer.send(topic, None, record).await.unwrap());
        }
        let mut landed = Vec::with_capacity(views.len());
        for d in deliveries {
            let m = d.await.unwrap();
            assert_eq!(
                m.timestamp,
                views[landed.len()].timestamp,
                "native record {}",
                landed.len()
            );
            landed.push((m.partition, m.offset.unwrap()));
        }
        producer.close().await.unwrap();
        landed
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Confluent,
    KafkaPython,
    Kafkajs,
}

/// A codec's number in a batch's attributes.
fn codec_id(name: &str) -> u16 {
    match name {
        "gzip" => 1,
        "snappy" => 2,
        "lz4" => 3,
        "zstd" => 4,
        other => panic!("codec {other}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Produces `views` to `topic` with one client run (`produce-file`); the records carry no
/// partition, so the client's own partitioner places them. Returns where each
/// landed, in order, after checking every delivery report.
fn produce_with(
    client: Client,
    codec: &str,
    idempotent: bool,
    bootstrap: &str,
    topic: &str,
    views: &[View],
    file: &Path,
) -> Vec<(u32, u64)> {
    let mut text = String::new();
    for v in views {
        let line = json!({
            "key": hex(v.user.as_bytes()),
            "value": hex(v.value().as_bytes()),
            "timestamp": v.timestamp,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(file, text).unwrap();
    let mut command: Command = match client {
        Client::Confluent => python_client("confluent_client.py"),
        Client::KafkaPython => python_client("kafka_python_client.py"),
        Client::Kafkajs => kafkajs_client(),
    };
    command.args(["produce-file", "--bootstrap", bootstrap, "--timeout", CLIENT_TIMEOUT_S]);
    command.args(["--topic", topic, "--compression", codec]).arg("--file").arg(file);
    if idempotent {
        command.arg("--idempotent");
    }
    let lines = json_lines(&run_to_end(command, CLIENT_LIMIT));
    let what = format!("{client:?} ({codec})");
    let done: Vec<&Value> = lines.iter().filter(|l| l["event"] == "done").collect();
    assert!(done.len() == 1 && done[0]["delivered"] == views.len(), "{what}: {done:?}");
    let mut landed: Vec<Option<(u32, u64)>> = vec![None; views.len()];
    for l in lines.iter().filter(|l| l["event"] == "delivered") {
        let i = usize::try_from(l["index"].as_u64().unwrap()).unwrap();
        let v = &views[i];
        let sent = (l["key"].as_str(), l["value"].as_str(), l["timestamp"].as_i64());
        let want = (hex(v.user.as_bytes()), hex(v.value().as_bytes()));
        assert_eq!(sent, (Some(&*want.0), Some(&*want.1), Some(v.timestamp)), "{what}: {l}");
        let at = (
            u32::try_from(l["partition"].as_u64().unwrap()).unwrap(),
            l["offset"].as_u64().unwrap(),
        );
        assert!(landed[i].replace(at).is_none(), "{what}: record {i} delivered twice");
    }
    landed
        .into_iter()
        .enumerate()
        .map(|(i, at)| at.unwrap_or_else(|| panic!("{what}: no delivery report for record {i}")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reading back.

/// One stored record: position, timestamp, key, value.
type Stored = ((u32, u64), i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record of `topic` through eddy's client, each with the codec of the batch that held
/// it.
fn read_natively(addr: &str, topic: &str) -> Vec<(Stored, u16)> {
    let mut records: Vec<(Stored, u16)> = eddy_tests::kafka_harness::native_read(addr, topic)
        .into_iter()
        .map(|(r, header)| (((r.partition, r.offset), r.timestamp, r.key, r.value), header.codec()))
        .collect();
    records.sort_by_key(|r| r.0.0);
    records
}

/// `eddy consume TOPIC --format json` of every record, as (position, timestamp, key, value).
fn consume_with_cli(
    broker: &BrokerProcess,
    topic: &str,
    records: usize,
) -> Vec<((u32, u64), i64, Value, Value)> {
    let count = records.to_string();
    let args = ["consume", topic, "--from", "earliest", "--count", &count, "--format", "json"];
    let lines = eddy_ok(broker, &args);
    assert_eq!(lines.len(), records, "eddy consume {topic}: {} lines", lines.len());
    let mut records: Vec<_> = lines
        .iter()
        .map(|line| {
            let r: Value = serde_json::from_str(line).unwrap();
            let at = (
                u32::try_from(r["partition"].as_u64().unwrap()).unwrap(),
                r["offset"].as_u64().unwrap(),
            );
            (at, r["timestamp"].as_i64().unwrap(), r["key"].clone(), r["value"].clone())
        })
        .collect();
    records.sort_by_key(|r| r.0);
    records
}

// ---------------------------------------------------------------------------------------------
// The test.

/// Spec files for processors over `topic`, with names ending in `suffix`: (name, tasks, spec).
fn specs(topic: &str, suffix: &str) -> Vec<(String, usize, String)> {
    let head = |name: &str| {
        format!(
            "name = \"{name}\"\nversion = 1\nsource = {{ topic = \"{topic}\", format = \"json\" }}\n"
        )
    };
    let views = format!("views-{suffix}");
    let bytes = format!("bytes-{suffix}");
    let minutes = format!("page-minutes-{suffix}");
    vec![
        (
            views.clone(),
            PARTITIONS as usize,
            format!(
                "{}[[ops]]\nop = \"aggregate\"\ntable = \"{views}\"\nfn = \"count\"\n",
                head(&views)
            ),
        ),
        (
            bytes.clone(),
            PARTITIONS as usize,
            format!(
                "{}[[ops]]\nop = \"aggregate\"\ntable = \"{bytes}\"\nfn = \"sum\"\nfield = \"bytes\"\n",
                head(&bytes)
            ),
        ),
        (
            minutes.clone(),
            2 * PARTITIONS as usize,
            format!(
                "{}[[ops]]\nop = \"key_by\"\nfield = \"page\"\n\
                 [[ops]]\nop = \"window\"\nkind = \"tumbling\"\nsize_ms = {MINUTE_MS}\ngrace_ms = 10000\n\
                 [[ops]]\nop = \"aggregate\"\ntable = \"{minutes}\"\nfn = \"count\"\n",
                head(&minutes)
            ),
        ),
    ]
}

/// The SQL over `topic`: a stream and two tables, named with `suffix` (upper-cased by SQL).
fn sql_script(topic: &str, suffix: &str) -> String {
    format!(
        "CREATE STREAM pv_{suffix} (uid VARCHAR KEY, page VARCHAR, bytes BIGINT) \
             WITH (kafka_topic='{topic}', value_format='JSON', partitions={PARTITIONS});\n\
         CREATE TABLE per_user_{suffix} AS SELECT uid, COUNT(*) AS n, SUM(bytes) AS total, \
             LATEST_BY_OFFSET(page) AS last_page FROM pv_{suffix} GROUP BY uid EMIT CHANGES;\n\
         CREATE TABLE page_minute_{suffix} AS SELECT page, COUNT(*) AS n, SUM(bytes) AS total \
             FROM pv_{suffix} WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS) \
             GROUP BY page EMIT CHANGES;\n"
    )
}

/// Produces `views[positions.len()..]` to both topics: natively, and with `runs` (each taking
/// the records up to its end after the previous run's), and appends where each landed to
/// `positions`. Checks that every record landed at the same partition and offset in both
/// topics (murmur2 everywhere, order kept), that both store the same records, each run's in
/// batches of its codec, and that `eddy consume` prints every record of both topics as it was
/// produced.
fn produce_both(
    broker: &BrokerProcess,
    dir: &Path,
    views: &[View],
    positions: &mut Vec<(u32, u64)>,
    runs: &[(Client, &str, bool, usize)],
) {
    let (addr, bootstrap) = (broker.addr().to_string(), broker.kafka_addr().to_string());
    let from = positions.len();
    let native_at = produce_natively(&addr, NATIVE, &views[from..]);
    let mut kafka_at = Vec::with_capacity(native_at.len());
    for (client, codec, idempotent, end) in runs.iter().copied() {
        let first = from + kafka_at.len();
        let file = dir.join(format!("records-{first}-{end}.jsonl"));
        let run = &views[first..end];
        kafka_at.extend(produce_with(client, codec, idempotent, &bootstrap, KAFKA, run, &file));
    }
    assert_eq!(from + kafka_at.len(), views.len(), "the runs produce records {from}..");
    for (i, v) in views.iter().enumerate().skip(from) {
        let (native, kafka) = (native_at[i - from], kafka_at[i - from]);
        assert_eq!(native.0, v.partition, "eddy's client put record {i} elsewhere");
        assert_eq!(kafka, native, "record {i}: Kafka clients vs eddy's client");
    }
    positions.extend(native_at);

    // Both topics hold the same records, byte for byte.
    let native_stored = read_natively(&addr, NATIVE);
    let kafka_stored = read_natively(&addr, KAFKA);
    assert_eq!(native_stored.len(), views.len(), "{NATIVE}'s records");
    assert_eq!(kafka_stored.len(), views.len(), "{KAFKA}'s records");
    for ((n, _), (k, _)) in native_stored.iter().zip(&kafka_stored) {
        assert_eq!(n, k, "the record at {:?} in {NATIVE} and {KAFKA}", n.0);
    }
    // Each run's records are stored in batches of its codec, but for the odd batch a client
    // sends uncompressed (librdkafka does when compression would not make it smaller, as for
    // a lone record): at least half of them, and seen so far, nearly all.
    let codec_at: BTreeMap<(u32, u64), u16> =
        kafka_stored.iter().map(|(r, codec)| (r.0, *codec)).collect();
    let mut first = from;
    for (client, codec, _, end) in runs.iter().copied() {
        let mut per_codec = BTreeMap::<u16, usize>::new();
        for at in &positions[first..end] {
            *per_codec.entry(codec_at[at]).or_default() += 1;
        }
        eprintln!("{client:?} ({codec}): records per stored codec {per_codec:?}");
        let compressed = per_codec.get(&codec_id(codec)).copied().unwrap_or(0);
        let plain = per_codec.get(&0).copied().unwrap_or(0);
        let n = end - first;
        assert!(
            compressed + plain == n && compressed * 2 >= n,
            "{client:?} ({codec}): records per stored codec {per_codec:?}"
        );
        first = end;
    }

    // eddy consume decompresses: it prints pv-kafka's records as it prints pv-native's, and
    // each as it was produced.
    let consumed = consume_with_cli(broker, NATIVE, views.len());
    assert!(consume_with_cli(broker, KAFKA, views.len()) == consumed, "eddy consume differs");
    let index_at: BTreeMap<(u32, u64), usize> =
        positions.iter().enumerate().map(|(i, at)| (*at, i)).collect();
    for (at, timestamp, key, value) in &consumed {
        let v = &views[index_at[at]];
        let want = (v.timestamp, Value::from(v.user.clone()), Value::from(v.value()));
        assert_eq!((*timestamp, key.clone(), value.clone()), want, "eddy consume at {at:?}");
    }
}

/// Waits until every processor has read `records` records of its source, then checks every
/// answer: each user's pull queries (spec tables by key, the SQL table by ROWKEY) are the same
/// for both topics and what the model says; so are the windowed tables' whole contents; each
/// table pair has the same rows and digest through `eddy query`; and the CLI's pull queries
/// answer as a user would read them.
fn check_answers(broker: &BrokerProcess, processors: &[(String, usize, &str)], views: &[View]) {
    let mut client = RawClient::connect(broker.addr());
    let until = deadline_in(CATCH_UP);
    for (name, tasks, topic) in processors {
        wait_caught_up(&mut client, name, *tasks, topic, views.len(), until);
    }

    // Every user id the generator can pick (a rare one may have no records: then no row), and
    // one it never picks.
    let users = per_user(views);
    assert!(users.len() as u64 > USERS / 2, "{} users", users.len());
    let ids = (0..USERS).map(|u| format!("user-{u:02}")).chain(["user-never".to_string()]);
    for user in &ids.collect::<Vec<_>>() {
        let mut answers = Vec::new();
        for suffix in ["native", "kafka"] {
            let count = get(&mut client, &format!("views-{suffix}"), user);
            let sum = get(&mut client, &format!("bytes-{suffix}"), user);
            let select = format!(
                "SELECT uid, n, total, last_page FROM per_user_{suffix} WHERE ROWKEY = '{user}';"
            );
            let rows = sql_pull(&mut client, &select);
            answers.push((count, sum, rows));
        }
        assert_eq!(answers[0], answers[1], "{user}: pull queries on {NATIVE} vs {KAFKA}");
        let (count, sum, rows) = &answers[1];
        match users.get(user) {
            Some((n, total, last_page)) => {
                assert_eq!(count.as_ref(), Some(&Value::from(*n)), "{user}: views");
                let sum = sum.as_ref().and_then(Value::as_f64);
                assert_eq!(sum, Some(*total as f64), "{user}: bytes");
                assert_eq!(rows, &[json!([user, n, total, last_page])], "{user}: per_user");
            }
            None => assert_eq!((count, sum, rows.len()), (&None, &None, 0), "{user}: no records"),
        }
    }

    // The windowed tables, whole: the same for both topics, and the model's windows.
    let minutes = per_page_minute(views);
    let native_windows = scan(&mut client, "page-minutes-native");
    assert_eq!(scan(&mut client, "page-minutes-kafka"), native_windows, "page-minutes scans");
    let spec_windows: BTreeMap<(String, i64), u64> = native_windows
        .iter()
        .map(|(key, value)| {
            let page = key["key"].as_str().unwrap_or_else(|| panic!("window key {key}"));
            let start = key["start"].as_i64().unwrap();
            assert_eq!(key["end"].as_i64(), Some(start + MINUTE_MS), "{key}");
            ((page.to_string(), start), value.as_u64().unwrap_or_else(|| panic!("{value}")))
        })
        .collect();
    let counts: BTreeMap<(String, i64), u64> =
        minutes.iter().map(|(k, (n, _))| (k.clone(), *n)).collect();
    assert_eq!(spec_windows, counts, "page-minutes: views per page per minute");
    let select = |suffix: &str| {
        format!("SELECT page, WINDOWSTART, WINDOWEND, n, total FROM page_minute_{suffix};")
    };
    let native_rows = sql_pull(&mut client, &select("native"));
    assert_eq!(sql_pull(&mut client, &select("kafka")), native_rows, "page_minute pull queries");
    let sql_windows: BTreeMap<(String, i64), (u64, u64)> = native_rows
        .iter()
        .map(|r| {
            let start = r[1].as_i64().unwrap();
            assert_eq!(r[2].as_i64(), Some(start + MINUTE_MS), "{r}");
            let page = r[0].as_str().unwrap().to_string();
            ((page, start), (r[3].as_u64().unwrap(), r[4].as_u64().unwrap()))
        })
        .collect();
    assert_eq!(native_rows.len(), sql_windows.len(), "page_minute: a window twice");
    assert_eq!(sql_windows, minutes, "page_minute: views and bytes per page per minute");

    // Table by table, the same rows through the CLI, and the same digest.
    for (native, kafka) in [
        ("views-native", "views-kafka"),
        ("bytes-native", "bytes-kafka"),
        ("page-minutes-native", "page-minutes-kafka"),
        ("PER_USER_NATIVE", "PER_USER_KAFKA"),
        ("PAGE_MINUTE_NATIVE", "PAGE_MINUTE_KAFKA"),
    ] {
        assert_same_digest(broker, native, kafka);
    }

    // And the pull queries as a user types them, for the busiest user.
    let (top, (n, total, last_page)) = users.iter().max_by_key(|(_, v)| v.0).unwrap();
    let got = eddy_ok(broker, &["query", "views-kafka", top]);
    assert_eq!(got, [format!("{top}\t{n}")]);
    let select =
        format!("SELECT uid, n, total, last_page FROM per_user_kafka WHERE ROWKEY = '{top}';");
    let out = eddy_ok(broker, &["sql", "-e", &select]);
    let cells: Vec<&str> = out
        .iter()
        .filter(|l| l.contains(top.as_str()))
        .flat_map(|l| l.split('|').map(str::trim).filter(|c| !c.is_empty()))
        .collect();
    let want = [top.clone(), n.to_string(), total.to_string(), last_page.clone()];
    assert_eq!(cells, want, "eddy sql -e {select:?}: {out:?}");
}

#[test]
fn processors_and_sql_answer_the_same_for_kafka_client_and_native_records() {
    let started = Instant::now();
    let views = views(seed());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = BrokerProcess::start(&data, &[]);
    for topic in [NATIVE, KAFKA] {
        eddy_ok(&broker, &["topic", "create", topic, "--partitions", &PARTITIONS.to_string()]);
    }

    // The spec processors first: they read each topic as it fills.
    let mut processors: Vec<(String, usize, &str)> = Vec::new();
    for (topic, suffix) in [(NATIVE, "native"), (KAFKA, "kafka")] {
        for (name, tasks, spec) in specs(topic, suffix) {
            let file = dir.path().join(format!("{name}.toml"));
            std::fs::write(&file, spec).unwrap();
            let out = eddy_ok(&broker, &["processor", "deploy", file.to_str().unwrap()]);
            assert_eq!(out, [format!("deployed processor {name} version 1")]);
            processors.push((name, tasks, topic));
        }
    }

    let mut positions = Vec::with_capacity(views.len());
    produce_both(&broker, dir.path(), &views[..FIRST], &mut positions, &FIRST_RUNS);
    eprintln!("produced {FIRST} records to each topic after {:?}", started.elapsed());

    // The SQL queries now: they replay both topics from offset zero.
    for (topic, suffix) in [(NATIVE, "native"), (KAFKA, "kafka")] {
        let out = eddy_ok(&broker, &["sql", "-e", &sql_script(topic, suffix)]);
        let upper = suffix.to_uppercase();
        for query in [format!("PER_USER_{upper}"), format!("PAGE_MINUTE_{upper}")] {
            let started = format!("started query CTAS_{query} ({query} version 1)");
            assert!(out.contains(&started), "{started:?} not in {out:?}");
            // GROUP BY over a 4-partition stream repartitions: 4 tasks read the stream, 4 the
            // repartition topic.
            processors.push((query, 2 * PARTITIONS as usize, topic));
        }
    }
    check_answers(&broker, &processors, &views[..FIRST]);
    eprintln!("{} processors agree after {:?}", processors.len(), started.elapsed());

    // A restart: every processor resumes from its snapshot, and reads what comes after.
    assert!(broker.terminate().success(), "the broker's exit after SIGTERM");
    let broker = BrokerProcess::start(&data, &[]);
    produce_both(&broker, dir.path(), &views, &mut positions, &MORE_RUNS);
    check_answers(&broker, &processors, &views);
    eprintln!("and again after a restart and {MORE} more records, after {:?}", started.elapsed());
}
