//! The harness of the Kafka client tests (tests/tests/kafka_clients*.rs): records as the client
//! programs in `tests/kafka-clients/` print them, running those programs, reading what a
//! topic holds through eddy's own client, and long-running group members watched through
//! their output (with deadlines, never sleeps).
#![allow(clippy::unwrap_used, reason = "a harness: a failure is the test's failure")]
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
use serde_json::Value;

use crate::broker::{BrokerProcess, signal};
use crate::child::{ChildProcess, deadline_in};
use crate::cli::eddy_ok;
use crate::env_u64;
use crate::kafka_clients::{Finished, kafkajs_client, python_client, run_to_end};

pub const CLIENT_LIMIT: Duration = Duration::from_secs(120);
/// Seconds the client programs give themselves (their own deadline, inside [`CLIENT_LIMIT`]).
pub const CLIENT_TIMEOUT_S: &str = "90";

pub fn seed() -> u64 {
    let seed = env_u64("EDDY_TEST_SEED").unwrap_or(0x0edd_cafe);
    eprintln!("seed {seed:#x} (EDDY_TEST_SEED to repeat)");
    seed
}

/// A recent time in ms: records older than a topic's retention (7 days by default) are
/// deleted, so generated timestamps start now.
pub fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Records as the client programs print them.

/// One record: where it is and what it holds, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Rec {
    /// A "record" or "delivered" line of a client program (bytes in hex).
    pub fn from_json(line: &Value) -> Rec {
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

    pub fn at(&self) -> (u32, u64) {
        (self.partition, self.offset)
    }
}

pub fn unhex(v: &Value) -> Option<Vec<u8>> {
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
pub fn json_lines(run: &Finished) -> Vec<Value> {
    let stdout = String::from_utf8(run.ok().to_vec()).unwrap();
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {line:?}: {e}", run.what))
        })
        .collect()
}

pub fn events<'a>(lines: &'a [Value], event: &str) -> impl Iterator<Item = &'a Value> {
    lines.iter().filter(move |l| l["event"] == event)
}

/// Records keyed by (partition, offset); a position twice is a failure.
pub fn by_position(records: &[Rec], what: &str) -> BTreeMap<(u32, u64), Rec> {
    let mut map = BTreeMap::new();
    for r in records {
        if let Some(before) = map.insert(r.at(), r.clone()) {
            panic!("{what}: two records at {:?}: {before:?} and {r:?}", r.at());
        }
    }
    map
}

/// `got` holds exactly the records of `expected`, at the same positions, byte for byte.
pub fn assert_same_records(expected: &[Rec], got: &[Rec], what: &str) {
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
pub fn ends_of(records: &[Rec], partitions: u32) -> Vec<u64> {
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
pub enum Lib {
    Confluent,
    KafkaPython,
    Kafkajs,
}

impl Lib {
    pub fn command(self) -> Command {
        match self {
            Lib::Confluent => python_client("confluent_client.py"),
            Lib::KafkaPython => python_client("kafka_python_client.py"),
            Lib::Kafkajs => kafkajs_client(),
        }
    }
}

/// `PROGRAM COMMAND --bootstrap B --timeout S ARGS...`, run to its end.
pub fn run_client(lib: Lib, command: &str, bootstrap: &str, args: &[&str]) -> Vec<Value> {
    let mut c = lib.command();
    c.arg(command).args(["--bootstrap", bootstrap, "--timeout", CLIENT_TIMEOUT_S]).args(args);
    json_lines(&run_to_end(c, CLIENT_LIMIT))
}

/// Produces records 0..count of stream `seed` with `lib`; checks that every one was delivered
/// once, and returns them as delivered (as sent, where they landed).
pub fn produce(
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
pub fn confluent_consume(
    bootstrap: &str,
    topic: &str,
    count: usize,
) -> (Vec<Rec>, BTreeMap<u32, u64>) {
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
pub fn native_read(addr: &str, topic: &str) -> Vec<(Rec, BatchHeader)> {
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
pub enum Speaks {
    Kcat,
    Json,
}

/// A group member process and what it has said so far.
#[derive(Debug)]
pub struct Watched {
    pub name: String,
    pub speaks: Speaks,
    pub child: ChildProcess,
    /// Partitions it owns now.
    pub owned: BTreeSet<u32>,
    /// Every record it read, with whether it owned the partition then.
    pub read: BTreeSet<(u32, u64)>,
    pub read_unowned: Vec<(u32, u64)>,
    /// The highest offset it committed per partition, and how many commits succeeded.
    pub committed: BTreeMap<u32, u64>,
    pub commits: usize,
    pub commit_failures: Vec<String>,
    pub errors: Vec<String>,
    pub closed: bool,
    /// Its stdout closed (it exited).
    pub gone: bool,
    pub recent: VecDeque<String>,
}

impl Watched {
    pub fn start(name: &str, speaks: Speaks, command: Command) -> Watched {
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

    pub fn apply(&mut self, line: &str) {
        if self.recent.len() == 40 {
            self.recent.pop_front();
        }
        self.recent.push_back(line.to_string());
        match self.speaks {
            Speaks::Kcat => self.apply_kcat(line),
            Speaks::Json => self.apply_json(line),
        }
    }

    pub fn record(&mut self, at: (u32, u64)) {
        if !self.owned.contains(&at.0) {
            self.read_unowned.push(at);
        }
        self.read.insert(at);
    }

    /// `rec P O` (the `-f` format), and rebalances as kcat reports them on stderr:
    /// `% Group G rebalanced (memberid M): assigned: T [0], T [2]` (or `revoked: ...`).
    pub fn apply_kcat(&mut self, line: &str) {
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
    pub fn apply_json(&mut self, line: &str) {
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
    pub fn drain(&mut self, until: Instant) {
        while !self.gone && Instant::now() < until {
            match self.child.next_line(until) {
                Ok(Some(line)) => self.apply(&line),
                Ok(None) => self.gone = true,
                Err(_) => return,
            }
        }
    }

    pub fn summary(&self) -> String {
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
    pub fn terminate(&mut self, deadline: Instant) {
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
pub fn wait_for(
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
pub fn split_evenly(members: &[&Watched], partitions: u32) -> bool {
    let mut seen = BTreeSet::new();
    members.iter().all(|m| !m.owned.is_empty() && m.owned.iter().all(|p| seen.insert(*p)))
        && seen == (0..partitions).collect()
}

/// `eddy group describe G`: (topic, partition) -> (committed offset or None, end offset).
pub fn group_offsets(
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
