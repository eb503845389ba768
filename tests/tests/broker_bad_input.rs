//! Hostile input against a real `eddy serve` process, over raw sockets.
//!
//! The main test stores known batches, then sends over 100,000 hostile frames (see
//! `eddy_tests::hostile`) from several threads over about a thousand connections, checking every
//! answer the broker owes. Afterwards the broker must still be running and serving, every stored
//! byte must read back unchanged, no topic may have appeared, and its memory must have stayed
//! bounded. The connection limits have their own file, broker_limits.rs.
//!
//! The attack is a function of one seed, printed at the start; `EDDY_BAD_INPUT_SEED=<seed>`
//! replays it and `EDDY_BAD_INPUT_FRAMES=<n>` changes its size.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_protocol::ErrorCode;
use eddy_protocol::v1::{self, Response, request, response};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::env_u64;
use eddy_tests::generate::{Rng, batch_for_seed, batch_seed, mix64};
use eddy_tests::hostile::{self, CheckNote, CloseExpect, Closing, Delivery, Expect, Target};
use eddy_tests::raw_client::{RawClient, big_batch, error_code, mib};

const DEFAULT_SEED: u64 = 0xbad1_4b07_5eed_0001;
const DEFAULT_FRAMES: u64 = 100_000;
const WORKERS: u64 = 4;
/// One connection in five carries up to this many frames; the others a handful, so that many
/// connections end in a closing frame.
const MAX_SESSION_FRAMES: u64 = 1000;
/// Frames written at once before their answers are read (well under `max_in_flight`).
const WINDOW: u64 = 32;
/// Longest wait for the answers to one window, or for the broker to close a connection.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a close whose cause cannot be predicted (random bytes that decode as a
/// long-polling fetch close the connection only once the poll ends).
const UNPREDICTED_CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// The whole attack must finish within this (a hang detector, not a benchmark).
const ATTACK_TIME_BOUND: Duration = Duration::from_secs(150);
const RSS_LIMIT_BYTES: u64 = 200 << 20;
/// Growth allowed between the end of the first half of the attack and the end of the second.
const RSS_GROWTH_LIMIT_BYTES: u64 = 48 << 20;

const TOPIC: &str = "known";
const PARTITIONS: u32 = 2;
const BATCHES_PER_PARTITION: u64 = 8;

/// The known topic's contents, kept as produced.
#[derive(Debug, Clone)]
struct Known {
    /// Per partition: every stored batch, concatenated, base offsets filled in.
    logs: Vec<Vec<u8>>,
    target: Target,
}

/// Creates the known topic and produces `BATCHES_PER_PARTITION` batches into each partition.
fn store_known(client: &mut RawClient, seed: u64, max_frame_bytes: u32) -> Known {
    client.create_topic(TOPIC, PARTITIONS);
    let mut logs = vec![Vec::new(); PARTITIONS as usize];
    let mut next_offsets = vec![0; PARTITIONS as usize];
    let mut first_batches = vec![Vec::new(); PARTITIONS as usize];
    for partition in 0..PARTITIONS {
        let p = partition as usize;
        for k in 0..BATCHES_PER_PARTITION {
            let mut batch = batch_for_seed(batch_seed(seed, u64::from(partition) << 32 | k));
            let (base, last) = client.produce_ok(TOPIC, partition, Bytes::from(batch.clone()));
            assert_eq!(base, next_offsets[p], "offsets of {TOPIC}-{partition} are not dense");
            eddy_storage::batch::stamp_position(&mut batch, base);
            if k == 0 {
                first_batches[p] = batch.clone();
            }
            logs[p].extend_from_slice(&batch);
            next_offsets[p] = last + 1;
        }
    }
    let spare_batch = batch_for_seed(batch_seed(seed, u64::MAX));
    Known {
        logs,
        target: Target {
            max_frame_bytes,
            topic: TOPIC.into(),
            next_offsets,
            first_batches,
            spare_batch,
        },
    }
}

#[derive(Debug, Default)]
struct Stats {
    frames: u64,
    connections: u64,
    answers: u64,
    kinds: BTreeMap<&'static str, u64>,
    unknown_specs_as_latest: u64,
    unknown_specs_refused: u64,
    /// Closes that ended in a reset rather than a clean end-of-file.
    resets: u64,
    /// Connections still open when an unpredictable close was waited for.
    lingering: u64,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.frames += other.frames;
        self.connections += other.connections;
        self.answers += other.answers;
        for (kind, n) in other.kinds {
            *self.kinds.entry(kind).or_default() += n;
        }
        self.unknown_specs_as_latest += other.unknown_specs_as_latest;
        self.unknown_specs_refused += other.unknown_specs_refused;
        self.resets += other.resets;
        self.lingering += other.lingering;
    }

    fn count(&mut self, kind: &'static str) {
        *self.kinds.entry(kind).or_default() += 1;
    }
}

/// What every worker shares.
struct Attack<'a> {
    seed: u64,
    addr: SocketAddr,
    target: &'a Target,
    deadline: Instant,
}

impl Attack<'_> {
    fn fail(&self, what: &str) -> ! {
        panic!("seed {:#x} (replay with EDDY_BAD_INPUT_SEED={:#x}): {what}", self.seed, self.seed)
    }
}

/// One worker: connections, one after another, until it has sent `quota` frames.
fn run_worker(attack: &Attack<'_>, worker_seed: u64, quota: u64) -> Stats {
    let mut rng = Rng::new(worker_seed);
    let mut stats = Stats::default();
    while stats.frames < quota {
        if Instant::now() > attack.deadline {
            attack.fail(&format!("the attack took longer than {ATTACK_TIME_BOUND:?}"));
        }
        let interior = if rng.one_in(5) { rng.below(MAX_SESSION_FRAMES) } else { rng.below(5) };
        session(attack, &mut rng, interior.min(quota - stats.frames), &mut stats);
    }
    stats
}

/// One connection: `interior` frames in windows, every answer checked, then an ending.
fn session(attack: &Attack<'_>, rng: &mut Rng, interior: u64, stats: &mut Stats) {
    let mut client = RawClient::connect(attack.addr);
    stats.connections += 1;
    let mut left = interior;
    while left > 0 {
        let window = left.min(WINDOW);
        left -= window;
        send_window(attack, rng, &mut client, window, stats);
    }
    match rng.below(10) {
        0 => {
            // Requests sent, answers never read: the broker writes to a closed socket.
            let mut bytes = Vec::new();
            for _ in 0..1 + rng.below(WINDOW) {
                let id = client.next_id();
                bytes.extend_from_slice(&hostile::interior(rng, attack.target, id).bytes);
                stats.frames += 1;
            }
            let _ = client.send_bytes(&bytes);
            stats.count("abandoned");
        }
        1 => {
            let _ = client.shutdown_write();
            expect_close(attack, &mut client, &CloseExpect::SilentClose, "shutdown", stats);
            stats.count("shutdown");
        }
        _ => {
            let closing = hostile::closing(rng, attack.target);
            finish_with(attack, &mut client, &closing, stats);
            stats.frames += 1;
            stats.count(closing.kind);
        }
    }
}

/// Sends `window` interior frames in one write and checks every answer they are owed.
fn send_window(
    attack: &Attack<'_>,
    rng: &mut Rng,
    client: &mut RawClient,
    window: u64,
    stats: &mut Stats,
) {
    let mut bytes = Vec::new();
    let mut pending = HashMap::new();
    for _ in 0..window {
        let id = client.next_id();
        let out = hostile::interior(rng, attack.target, id);
        bytes.extend_from_slice(&out.bytes);
        stats.count(out.kind);
        if out.expect != Expect::Nothing {
            pending.insert(id, out);
        }
    }
    stats.frames += window;
    if let Err(e) = client.send_bytes(&bytes) {
        attack.fail(&format!("cannot send {window} frames: {e}"));
    }
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    while !pending.is_empty() {
        let response = match client.recv_until(deadline) {
            Ok(Some(response)) => response,
            Ok(None) => {
                attack.fail(&format!("connection closed with {} answers owed", pending.len()))
            }
            Err(e) => attack.fail(&format!("{e} with {} answers owed", pending.len())),
        };
        let Some(out) = pending.remove(&response.correlation_id) else {
            attack.fail(&format!("an answer to no request in flight: {response:?}"));
        };
        match hostile::check(&response, &out.expect, attack.target) {
            Ok(CheckNote::Plain) => {}
            Ok(CheckNote::UnknownSpecs { as_latest, refused }) => {
                stats.unknown_specs_as_latest += as_latest;
                stats.unknown_specs_refused += refused;
            }
            Err(e) => attack.fail(&format!("{}: {e}", out.kind)),
        }
        stats.answers += 1;
    }
}

fn finish_with(attack: &Attack<'_>, client: &mut RawClient, closing: &Closing, stats: &mut Stats) {
    // The broker may close while random bytes are still arriving; that is its right.
    let _ = client.send_bytes(&closing.bytes);
    if closing.delivery == Delivery::SendThenShutdown {
        let _ = client.shutdown_write();
    }
    expect_close(attack, client, &closing.expect, closing.kind, stats);
}

/// Reads until the broker closes the connection and holds what it sent to `expect`.
fn expect_close(
    attack: &Attack<'_>,
    client: &mut RawClient,
    expect: &CloseExpect,
    kind: &str,
    stats: &mut Stats,
) {
    let timeout =
        if *expect == CloseExpect::Anything { UNPREDICTED_CLOSE_TIMEOUT } else { ANSWER_TIMEOUT };
    let deadline = Instant::now() + timeout;
    let mut responses = Vec::new();
    loop {
        match client.recv_until(deadline) {
            Ok(Some(response)) => responses.push(response),
            Ok(None) => break,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                stats.resets += 1;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut && *expect == CloseExpect::Anything => {
                stats.lingering += 1;
                return;
            }
            Err(e) => attack.fail(&format!("{kind}: {e} (after {responses:?})")),
        }
    }
    let connection_error = |r: &Response| {
        r.correlation_id == 0
            && r.body.is_none()
            && matches!(error_code(r), Some(ErrorCode::FrameTooLarge | ErrorCode::MalformedRequest))
    };
    let ok = match expect {
        CloseExpect::ErrorThenClose(code) => {
            matches!(&responses[..], [r] if r.correlation_id == 0 && r.body.is_none() && error_code(r) == Some(*code))
        }
        CloseExpect::SilentClose => responses.is_empty(),
        CloseExpect::Anything => {
            responses.iter().all(|r| r.correlation_id != 0 || connection_error(r))
        }
    };
    if !ok {
        attack.fail(&format!("{kind}: expected {expect:?} then a close, got {responses:?}"));
    }
}

/// Runs one half of the attack on every worker thread.
fn attack_half(attack: &Attack<'_>, half: u64, frames: u64) -> Stats {
    let quota = frames.div_ceil(WORKERS);
    let results: Vec<Stats> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let worker_seed = mix64(attack.seed ^ mix64(half << 8 | w));
                scope.spawn(move || run_worker(attack, worker_seed, quota))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let mut stats = Stats::default();
    for s in results {
        stats.merge(s);
    }
    stats
}

#[test]
fn hostile_frames_leave_the_broker_serving_and_the_data_intact() {
    let seed = env_u64("EDDY_BAD_INPUT_SEED").unwrap_or(DEFAULT_SEED);
    let frames = env_u64("EDDY_BAD_INPUT_FRAMES").unwrap_or(DEFAULT_FRAMES);
    eprintln!(
        "broker_bad_input: seed {seed:#x} (replay with EDDY_BAD_INPUT_SEED={seed:#x}), {frames} frames"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = RawClient::connect(broker.addr());
    let limits = client.handshake();
    let known = store_known(&mut client, seed, limits.max_frame_bytes);
    let rss_before = broker.rss_bytes().unwrap();

    let started = Instant::now();
    let attack = Attack {
        seed,
        addr: broker.addr(),
        target: &known.target,
        deadline: started + ATTACK_TIME_BOUND,
    };
    let mut stats = attack_half(&attack, 0, frames / 2);
    assert!(
        broker.is_running(),
        "the broker died during the first half: {:?}",
        broker.exit_status()
    );
    let rss_half = broker.rss_bytes().unwrap();
    stats.merge(attack_half(&attack, 1, frames - frames / 2));
    let elapsed = started.elapsed();
    assert!(
        broker.is_running(),
        "the broker died during the second half: {:?}",
        broker.exit_status()
    );
    let rss_after = broker.rss_bytes().unwrap();

    eprintln!(
        "broker_bad_input: {} frames over {} connections in {:.1} s, {} answers checked; \
         {} resets, {} lingering closes; unknown OffsetSpec answered as LATEST {} times, refused {} times",
        stats.frames,
        stats.connections,
        elapsed.as_secs_f64(),
        stats.answers,
        stats.resets,
        stats.lingering,
        stats.unknown_specs_as_latest,
        stats.unknown_specs_refused,
    );
    eprintln!("broker_bad_input: frames by kind: {:?}", stats.kinds);
    eprintln!(
        "broker_bad_input: RSS {:.1} MiB before, {:.1} MiB after half, {:.1} MiB after all",
        mib(rss_before),
        mib(rss_half),
        mib(rss_after)
    );
    assert!(stats.frames >= frames, "only {} of {frames} frames were sent", stats.frames);
    assert!(rss_after < RSS_LIMIT_BYTES, "broker RSS {:.1} MiB", mib(rss_after));
    assert!(
        rss_after <= rss_half + RSS_GROWTH_LIMIT_BYTES,
        "broker RSS grew from {:.1} MiB to {:.1} MiB in the second half",
        mib(rss_half),
        mib(rss_after)
    );

    check_intact_and_serving(&mut broker, &known, seed);
    let status = broker.terminate();
    assert!(status.success(), "the broker did not stop cleanly: {status:?}\n{}", broker.stderr());
}

/// After the attack: the same topics, the same bytes at the same offsets, and a broker that
/// still appends and reads.
fn check_intact_and_serving(broker: &mut BrokerProcess, known: &Known, seed: u64) {
    let mut client = RawClient::connect(broker.addr());
    client.handshake();
    // The broker's own internal topics (`__consumer_offsets`, `__processors`) are listed too.
    let user: Vec<String> =
        client.topic_names().into_iter().filter(|t| !t.starts_with("__")).collect();
    assert_eq!(user, [TOPIC], "the set of topics changed");
    for partition in 0..PARTITIONS {
        let p = partition as usize;
        assert_eq!(client.next_offset(TOPIC, partition), known.target.next_offsets[p]);
        assert!(
            client.fetch_all(TOPIC, partition, 0) == known.logs[p],
            "{TOPIC}-{partition} changed"
        );
    }
    // A deliberate append lands right after the known data.
    let extra = batch_for_seed(batch_seed(seed, u64::MAX - 1));
    let (base, last) = client.produce_ok(TOPIC, 0, Bytes::from(extra.clone()));
    assert_eq!(base, known.target.next_offsets[0]);
    assert_eq!(client.next_offset(TOPIC, 0), last + 1);
    let mut expected = known.logs[0].clone();
    let mut stored = extra;
    eddy_storage::batch::stamp_position(&mut stored, base);
    expected.extend_from_slice(&stored);
    assert!(client.fetch_all(TOPIC, 0, 0) == expected, "{TOPIC}-0 after one more append");
    assert_eq!(client.next_offset(TOPIC, 1), known.target.next_offsets[1]);
    // And a new topic works end to end.
    client.create_topic("after-the-attack", 1);
    let mut batch = batch_for_seed(seed);
    assert_eq!(client.produce_ok("after-the-attack", 0, Bytes::from(batch.clone())).0, 0);
    eddy_storage::batch::stamp_position(&mut batch, 0);
    assert!(client.fetch_all("after-the-attack", 0, 0) == batch);
}

// ---- regressions -----------------------------------------------------------------------------

/// docs/protocol.md: "OFFSET_OUT_OF_RANGE: a fetch below the log start or past the end".
/// Regression: once a fetch's `max_bytes` budget was spent, the broker answered the remaining
/// partitions with no records and no error, without looking at their offsets, so a consumer
/// polling past the end of one partition was never told.
#[test]
fn fetch_reports_offset_out_of_range_after_the_budget_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = RawClient::connect(broker.addr());
    client.create_topic("t", 2);
    client.produce_ok("t", 0, big_batch(1000));
    let fetch = v1::FetchRequest {
        isolation: 0,
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 100,
        topics: vec![v1::FetchTopic {
            topic: "t".into(),
            partitions: vec![
                v1::FetchPartition { partition: 0, offset: 0, max_bytes: 0 },
                v1::FetchPartition { partition: 1, offset: 1_000_000, max_bytes: 0 },
            ],
        }],
        member: None,
    };
    let Some(response::Body::Fetch(f)) = client.call(request::Body::Fetch(fetch)).body else {
        panic!()
    };
    let second = &f.topics[0].partitions[1];
    assert_eq!(
        second.error.as_ref().map(v1::Error::error_code),
        Some(ErrorCode::OffsetOutOfRange),
        "partition 1 at offset 1,000,000 of an empty log: {second:?}"
    );
}

/// docs/protocol.md: "MALFORMED_REQUEST: ... a field is out of range (unknown enum value ...)".
/// Regression: the broker read an unknown `OffsetSpec` as LATEST, answering a question that was
/// not asked.
#[test]
fn list_offsets_refuses_an_unknown_offset_spec() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = RawClient::connect(broker.addr());
    client.create_topic("t", 1);
    let body = request::Body::ListOffsets(v1::ListOffsetsRequest {
        isolation: 0,
        topics: vec![v1::ListOffsetsTopic {
            topic: "t".into(),
            partitions: vec![v1::ListOffsetsPartition { partition: 0, spec: 99, timestamp_ms: 0 }],
        }],
    });
    let response = client.call(body);
    let partition_error = match &response.body {
        Some(response::Body::ListOffsets(l)) => {
            l.topics[0].partitions[0].error.as_ref().map(v1::Error::error_code)
        }
        _ => None,
    };
    let code = error_code(&response).or(partition_error);
    assert_eq!(code, Some(ErrorCode::MalformedRequest), "{response:?}");
}
