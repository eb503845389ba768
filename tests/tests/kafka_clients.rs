//! Real Kafka clients work against the real `eddy serve` binary, over its Kafka listener:
//!
//! - kcat: `-L` lists the broker (at its Kafka address) and a created topic; 100,000 lines
//!   through `-P` come back byte-identical from `-C -e`; two `-G` members of one group split a
//!   4-partition topic (both get partitions, disjoint, covering all four) and together read
//!   every record.
//! - confluent-kafka (librdkafka): an idempotent, lz4-compressing, acks=all producer's records
//!   (keys, values, headers, timestamps) are read back identical, and stored as produced (lz4,
//!   with the producer's id); in a group of three member processes over six partitions, one is
//!   SIGKILLed and the survivors take its partitions once its session times out (classic and
//!   KIP-848 protocols), every record is consumed, every survivor commits, and the committed
//!   offsets end equal to the end offsets; AdminClient creates (with configs), describes, shows the configs of and deletes a
//!   topic.
//! - kafka-python and kafkajs: each produces, consumes part of a topic in a group and commits;
//!   the broker stops on SIGTERM and a new one starts on the same data directory; a new member
//!   of the same group resumes at the committed offsets: nothing committed comes again, nothing
//!   is lost.
//! - interop: records produced by confluent-kafka, kafka-python and kafkajs are read by
//!   `eddy consume --format json` with the same key, value, headers and timestamp at the
//!   same offsets (and every byte through eddy's own client);
//!   records produced with `eddy produce` are read byte-identical by kcat and confluent-kafka.
//!
//! Each test starts its own broker in its own temporary directory; the clients are processes
//! (kcat, and the programs in `tests/kafka-clients/`, which print JSON lines), and every wait
//! has a deadline. A missing client fails its test with what to install: `./scripts/test`
//! installs them all. The seed of generated data is printed (EDDY_TEST_SEED repeats it).
#![allow(clippy::unwrap_used)]
#![allow(
    clippy::print_stderr,
    reason = "seeds and what happened in a rebalance reach the test output"
)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy_client::{
    Admin, Connection, ConnectionOptions, Consumer, ConsumerConfig, OffsetQuery, SeekTo,
};
use eddy_storage::batch::BatchHeader;
use eddy_tests::broker::{BrokerProcess, signal};
use eddy_tests::child::{ChildProcess, deadline_in};
use eddy_tests::cli::eddy_ok;
use eddy_tests::env_u64;
use eddy_tests::generate::{Rng, mix64};
use eddy_tests::kafka_clients::{
    Finished, kafkajs_client, kcat_command, merge_stderr, python_client, run_to_end, tail,
};
use serde_json::Value;

/// Longest one client run may take.
const CLIENT_LIMIT: Duration = Duration::from_secs(120);
/// Seconds the client programs give themselves (their own deadline, inside [`CLIENT_LIMIT`]).
const CLIENT_TIMEOUT_S: &str = "90";

fn seed() -> u64 {
    let seed = env_u64("EDDY_TEST_SEED").unwrap_or(0x0edd_cafe);
    eprintln!("seed {seed:#x} (EDDY_TEST_SEED to repeat)");
    seed
}

/// A recent time in ms: records older than a topic's retention (7 days by default) are
/// deleted, so generated timestamps start now.
fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Records as the client programs print them.

/// One record: where it is and what it holds, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    partition: u32,
    offset: u64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Rec {
    /// A "record" or "delivered" line of a client program (bytes in hex).
    fn from_json(line: &Value) -> Rec {
        let headers = line["headers"]
            .as_array()
            .unwrap_or_else(|| panic!("no headers in {line}"))
            .iter()
            .map(|h| (h[0].as_str().unwrap().as_bytes().to_vec(), unhex(&h[1])))
            .collect();
        Rec {
            partition: u32::try_from(line["partition"].as_u64().unwrap()).unwrap(),
            offset: line["offset"].as_u64().unwrap_or_else(|| panic!("no offset in {line}")),
            timestamp: line["timestamp"].as_i64().unwrap(),
            key: unhex(&line["key"]),
            value: unhex(&line["value"]),
            headers,
        }
    }

    fn at(&self) -> (u32, u64) {
        (self.partition, self.offset)
    }
}

fn unhex(v: &Value) -> Option<Vec<u8>> {
    let text = v.as_str()?;
    assert!(text.len() % 2 == 0, "odd hex {text:?}");
    let digit = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not hex: {text:?}"),
    };
    Some(text.as_bytes().chunks(2).map(|p| digit(p[0]) << 4 | digit(p[1])).collect())
}

/// The JSON lines of a client run that must have succeeded.
fn json_lines(run: &Finished) -> Vec<Value> {
    let stdout = String::from_utf8(run.ok().to_vec()).unwrap();
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {line:?}: {e}", run.what))
        })
        .collect()
}

fn events<'a>(lines: &'a [Value], event: &str) -> impl Iterator<Item = &'a Value> {
    lines.iter().filter(move |l| l["event"] == event)
}

/// Records keyed by (partition, offset); a position twice is a failure.
fn by_position(records: &[Rec], what: &str) -> BTreeMap<(u32, u64), Rec> {
    let mut map = BTreeMap::new();
    for r in records {
        if let Some(before) = map.insert(r.at(), r.clone()) {
            panic!("{what}: two records at {:?}: {before:?} and {r:?}", r.at());
        }
    }
    map
}

/// `got` holds exactly the records of `expected`, at the same positions, byte for byte.
fn assert_same_records(expected: &[Rec], got: &[Rec], what: &str) {
    let expected = by_position(expected, what);
    let got = by_position(got, what);
    for (at, want) in &expected {
        match got.get(at) {
            Some(have) => assert_eq!(have, want, "{what}: the record at {at:?} differs"),
            None => panic!("{what}: no record at {at:?}; expected {want:?}"),
        }
    }
    let extra: Vec<_> = got.keys().filter(|at| !expected.contains_key(at)).collect();
    assert!(extra.is_empty(), "{what}: records at {extra:?} were never produced");
}

/// Each partition's next offset after `records` (which must start at 0 and be contiguous).
fn ends_of(records: &[Rec], partitions: u32) -> Vec<u64> {
    let mut ends = vec![0u64; partitions as usize];
    for at in by_position(records, "ends").keys() {
        assert_eq!(at.1, ends[at.0 as usize], "offsets of partition {} are not contiguous", at.0);
        ends[at.0 as usize] += 1;
    }
    ends
}

// ---------------------------------------------------------------------------------------------
// The client programs.

/// The three libraries whose programs produce with `produce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lib {
    Confluent,
    KafkaPython,
    Kafkajs,
}

impl Lib {
    fn command(self) -> Command {
        match self {
            Lib::Confluent => python_client("confluent_client.py"),
            Lib::KafkaPython => python_client("kafka_python_client.py"),
            Lib::Kafkajs => kafkajs_client(),
        }
    }
}

/// `PROGRAM COMMAND --bootstrap B --timeout S ARGS...`, run to its end.
fn run_client(lib: Lib, command: &str, bootstrap: &str, args: &[&str]) -> Vec<Value> {
    let mut c = lib.command();
    c.arg(command).args(["--bootstrap", bootstrap, "--timeout", CLIENT_TIMEOUT_S]).args(args);
    json_lines(&run_to_end(c, CLIENT_LIMIT))
}

/// Produces records 0..count of stream `seed` with `lib`; checks that every one was delivered
/// once, and returns them as delivered (as sent, where they landed).
fn produce(
    lib: Lib,
    bootstrap: &str,
    topic: &str,
    count: u64,
    seed: u64,
    extra: &[&str],
) -> Vec<Rec> {
    let (count_arg, seed_arg, base) = (count.to_string(), seed.to_string(), now_ms().to_string());
    let mut args = vec!["--topic", topic, "--count", &count_arg, "--seed", &seed_arg];
    args.extend(["--timestamp-base", &base]);
    args.extend(extra);
    let lines = run_client(lib, "produce", bootstrap, &args);
    let done: Vec<_> = events(&lines, "done").collect();
    assert!(
        done.len() == 1 && done[0]["delivered"] == count,
        "{lib:?} produce to {topic}: {done:?}"
    );
    let mut indexes = BTreeSet::new();
    let delivered: Vec<Rec> = events(&lines, "delivered")
        .map(|l| {
            assert!(indexes.insert(l["index"].as_u64().unwrap()), "{lib:?}: record twice: {l}");
            Rec::from_json(l)
        })
        .collect();
    assert_eq!(indexes, (0..count).collect(), "{lib:?} produce to {topic}: delivered indexes");
    delivered
}

/// The first `count` records confluent-kafka reads from every partition of `topic` (no group),
/// and each partition's high watermark after.
fn confluent_consume(bootstrap: &str, topic: &str, count: usize) -> (Vec<Rec>, BTreeMap<u32, u64>) {
    let count_arg = count.to_string();
    let lines = run_client(
        Lib::Confluent,
        "consume",
        bootstrap,
        &["--topic", topic, "--count", &count_arg],
    );
    let records: Vec<Rec> = events(&lines, "record").map(Rec::from_json).collect();
    assert_eq!(records.len(), count, "confluent consume of {topic}");
    let end = events(&lines, "end").next().unwrap_or_else(|| panic!("no end line: {lines:?}"));
    let watermarks = end["watermarks"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(p, w)| (p.parse().unwrap(), w.as_u64().unwrap()))
        .collect();
    (records, watermarks)
}

/// Every record of `topic`, read over eddy's native protocol with eddy's own client, each
/// with the header of the batch it was stored in.
fn native_read(addr: &str, topic: &str) -> Vec<(Rec, BatchHeader)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let conn = Arc::new(Connection::connect(addr, ConnectionOptions::default()).await.unwrap());
        let admin = Admin::new(conn.clone());
        let partitions = admin.partition_count(topic).await.unwrap();
        let queries: Vec<_> = (0..partitions).map(|p| (p, OffsetQuery::Latest)).collect();
        let ends: Vec<u64> =
            admin.list_offsets(topic, &queries).await.unwrap().iter().map(|l| l.offset).collect();
        let config = ConsumerConfig { start: SeekTo::Earliest, ..ConsumerConfig::default() };
        let mut consumer = Consumer::new(conn, config);
        consumer.assign(topic, 0..partitions);
        let deadline = deadline_in(Duration::from_secs(60));
        let mut next = vec![0u64; partitions as usize];
        let mut out = Vec::new();
        while next.iter().zip(&ends).any(|(n, e)| n < e) {
            assert!(Instant::now() < deadline, "{topic}: native read at {next:?} of {ends:?}");
            for batch in consumer.poll(Duration::from_millis(200)).await.unwrap() {
                for r in batch.to_records().unwrap() {
                    if r.offset >= ends[r.partition as usize] {
                        continue;
                    }
                    next[r.partition as usize] = r.offset + 1;
                    let headers = r
                        .headers
                        .iter()
                        .map(|h| (h.key.to_vec(), h.value.as_ref().map(|v| v.to_vec())))
                        .collect();
                    let rec = Rec {
                        partition: r.partition,
                        offset: r.offset,
                        timestamp: r.timestamp,
                        key: r.key.map(|k| k.to_vec()),
                        value: r.value.map(|v| v.to_vec()),
                        headers,
                    };
                    out.push((rec, *batch.header()));
                }
            }
        }
        out
    })
}

// ---------------------------------------------------------------------------------------------
// Long-running clients watched through their output.

/// How a watched client reports: kcat's text, or a client program's JSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Speaks {
    Kcat,
    Json,
}

/// A group member process and what it has said so far.
#[derive(Debug)]
struct Watched {
    name: String,
    speaks: Speaks,
    child: ChildProcess,
    /// Partitions it owns now.
    owned: BTreeSet<u32>,
    /// Every record it read, with whether it owned the partition then.
    read: BTreeSet<(u32, u64)>,
    read_unowned: Vec<(u32, u64)>,
    /// The highest offset it committed per partition, and how many commits succeeded.
    committed: BTreeMap<u32, u64>,
    commits: usize,
    commit_failures: Vec<String>,
    errors: Vec<String>,
    closed: bool,
    /// Its stdout closed (it exited).
    gone: bool,
    recent: VecDeque<String>,
}

impl Watched {
    fn start(name: &str, speaks: Speaks, command: Command) -> Watched {
        let child = ChildProcess::spawn_command(command)
            .unwrap_or_else(|e| panic!("cannot start member {name}: {e}"));
        Watched {
            name: name.to_string(),
            speaks,
            child,
            owned: BTreeSet::new(),
            read: BTreeSet::new(),
            read_unowned: Vec::new(),
            committed: BTreeMap::new(),
            commits: 0,
            commit_failures: Vec::new(),
            errors: Vec::new(),
            closed: false,
            gone: false,
            recent: VecDeque::new(),
        }
    }

    fn apply(&mut self, line: &str) {
        if self.recent.len() == 40 {
            self.recent.pop_front();
        }
        self.recent.push_back(line.to_string());
        match self.speaks {
            Speaks::Kcat => self.apply_kcat(line),
            Speaks::Json => self.apply_json(line),
        }
    }

    fn record(&mut self, at: (u32, u64)) {
        if !self.owned.contains(&at.0) {
            self.read_unowned.push(at);
        }
        self.read.insert(at);
    }

    /// `rec P O` (the `-f` format), and rebalances as kcat reports them on stderr:
    /// `% Group G rebalanced (memberid M): assigned: T [0], T [2]` (or `revoked: ...`).
    fn apply_kcat(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("rec ") {
            let (p, o) = rest.split_once(' ').unwrap();
            self.record((p.parse().unwrap(), o.parse().unwrap()));
        } else if line.contains("rebalanced") {
            let parts = |list: &str| -> BTreeSet<u32> {
                list.split(", ")
                    .filter_map(|t| t.split_once('[')?.1.split_once(']')?.0.parse().ok())
                    .collect()
            };
            if let Some((_, list)) = line.split_once("assigned: ") {
                self.owned = parts(list);
            } else if let Some((_, list)) = line.split_once("revoked: ") {
                for p in parts(list) {
                    self.owned.remove(&p);
                }
            }
        } else if line.contains("ERROR") || line.contains("FAIL") {
            self.errors.push(line.to_string());
        }
    }

    /// confluent_client.py's `member` lines.
    fn apply_json(&mut self, line: &str) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            self.errors.push(format!("not JSON: {line}"));
            return;
        };
        let parts = || -> BTreeSet<u32> {
            v["partitions"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u32).collect()
        };
        match v["event"].as_str().unwrap_or("") {
            // Eager (classic) rebalances revoke everything before assigning; KIP-848's are
            // incremental: an "assigned" adds partitions, a "revoked" removes some.
            "assigned" => self.owned.extend(parts()),
            "revoked" | "lost" => {
                for p in parts() {
                    self.owned.remove(&p);
                }
            }
            "record" => self
                .record((v["partition"].as_u64().unwrap() as u32, v["offset"].as_u64().unwrap())),
            "committed" => {
                self.commits += 1;
                for pair in v["offsets"].as_array().unwrap() {
                    let (p, o) = (pair[0].as_u64().unwrap() as u32, pair[1].as_i64().unwrap());
                    if let Ok(o) = u64::try_from(o) {
                        let best = self.committed.entry(p).or_insert(o);
                        *best = (*best).max(o);
                    }
                }
            }
            "commit-failed" => self.commit_failures.push(v["error"].to_string()),
            "closed" => self.closed = true,
            _ => self.errors.push(line.to_string()),
        }
    }

    /// Reads what it printed until `until` (or its exit).
    fn drain(&mut self, until: Instant) {
        while !self.gone && Instant::now() < until {
            match self.child.next_line(until) {
                Ok(Some(line)) => self.apply(&line),
                Ok(None) => self.gone = true,
                Err(_) => return,
            }
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} (pid {}): owned {:?}, read {}, commits {} ({} failed: {:?}), errors {:?}, gone {}; \
             last lines:\n    {}",
            self.name,
            self.child.id(),
            self.owned,
            self.read.len(),
            self.commits,
            self.commit_failures.len(),
            self.commit_failures.iter().take(5).collect::<Vec<_>>(),
            self.errors.iter().take(5).collect::<Vec<_>>(),
            self.gone,
            self.recent.iter().cloned().collect::<Vec<_>>().join("\n    ")
        )
    }

    /// SIGTERM, then its remaining output; it must exit successfully by `deadline`.
    fn terminate(&mut self, deadline: Instant) {
        if !self.gone {
            signal(self.child.id(), libc::SIGTERM).unwrap();
            let lines = self
                .child
                .remaining_lines(deadline)
                .unwrap_or_else(|e| panic!("{} after SIGTERM: {e}\n{}", self.name, self.summary()));
            for line in lines {
                self.apply(&line);
            }
            self.gone = true;
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{} exited with {status}: {}", self.name, self.summary());
    }
}

/// Reads every member's output (a short slice each, so a quiet one cannot hold up the others)
/// until `done` holds; fails with every member's state at `deadline`, or when all have exited.
fn wait_for(
    members: &mut [Watched],
    deadline: Instant,
    what: &str,
    done: impl Fn(&[Watched]) -> bool,
) {
    loop {
        if done(members) {
            return;
        }
        let report = |members: &[Watched]| {
            members.iter().map(Watched::summary).collect::<Vec<_>>().join("\n")
        };
        assert!(Instant::now() < deadline, "{what}: not by the deadline\n{}", report(members));
        assert!(
            !members.iter().all(|m| m.gone),
            "{what}: every member exited\n{}",
            report(members)
        );
        for m in members.iter_mut() {
            m.drain((Instant::now() + Duration::from_millis(20)).min(deadline));
        }
    }
}

/// The members' current assignments are non-empty, pairwise disjoint and cover `0..partitions`.
fn split_evenly(members: &[&Watched], partitions: u32) -> bool {
    let mut seen = BTreeSet::new();
    members.iter().all(|m| !m.owned.is_empty() && m.owned.iter().all(|p| seen.insert(*p)))
        && seen == (0..partitions).collect()
}

/// `eddy group describe G`: (topic, partition) -> (committed offset or None, end offset).
fn group_offsets(
    broker: &BrokerProcess,
    group: &str,
) -> BTreeMap<(String, u32), (Option<u64>, u64)> {
    let lines = eddy_ok(broker, &["group", "describe", group]);
    let table = lines
        .iter()
        .skip_while(|l| !l.starts_with("topic "))
        .skip(1)
        .filter(|l| !l.trim().is_empty());
    table
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            ((f[0].to_string(), f[1].parse().unwrap()), (f[2].parse().ok(), f[3].parse().unwrap()))
        })
        .collect()
}

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
