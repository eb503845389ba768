//! Round trips through the whole stack: records produced with the client come back from a
//! consumer complete, byte-identical and in order per partition — over TCP to a real
//! `eddy serve`, through the embedded broker with no socket, and through the `eddy` CLI on a
//! file of lines.
//!
//! The client tests keep one `u32` per record (the index of the record acknowledged at each
//! offset) and regenerate the expected record from [`Workload`] when reading it back.
//!
//! Counts default to 1,000,000 records for the client tests and 1,000,000 lines for the
//! one-partition CLI test (200,000 for the keyed one, see [`KEYED_LINES_DEFAULT`]); set
//! `EDDY_ROUND_TRIP_RECORDS` or `EDDY_ROUND_TRIP_LINES` to change them (for a quick run).

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_broker::Broker;
use eddy_client::partitioner::partition_for_key;
use eddy_client::{
    Admin, Connection, ConnectionOptions, Producer, ProducerConfig, TopicConfig, Transport,
};
use eddy_tests::broker::{BrokerProcess, eddy_binary};
use eddy_tests::generate::{Rng, mix64};
use eddy_tests::workload::{Placed, Workload, check_placed, produce_checked};
use tokio::task::block_in_place;

const SEED: u64 = 0x0edd_0001_2003_7000;
const TOPIC: &str = "round-trip";
const PARTITIONS: u32 = 4;
const RECORDS_DEFAULT: u64 = 1_000_000;
const RECORDS_ENV: &str = "EDDY_ROUND_TRIP_RECORDS";
const LINES_DEFAULT: u64 = 1_000_000;
/// The keyed CLI test runs 200,000 lines: at a million it costs another ~20 s of CPU in a
/// debug build (the client and the CLI are unoptimised there), which would take the file past
/// a minute on two cores; the one-partition test already pushes a million lines through the
/// same `produce` and `consume`.
const KEYED_LINES_DEFAULT: u64 = 200_000;
const LINES_ENV: &str = "EDDY_ROUND_TRIP_LINES";
/// Small segments, so that a million records roll several of them per partition.
const SEGMENT_BYTES: u64 = 4 << 20;
/// Upper bound on one whole client round trip (a debug build takes a fraction of it).
const ROUND_TRIP_LIMIT: Duration = Duration::from_secs(300);
/// Upper bound on one CLI command.
const CLI_LIMIT: Duration = Duration::from_secs(180);
/// The `--key-sep` of the keyed CLI test: two bytes, so a split on one byte would show.
const KEY_SEP: &str = ":=";
/// Distinct keys of the keyed CLI test.
const KEYS: u64 = 1000;
/// Lines read back from one partition alone in the keyed CLI test.
const PARTITION_LINES: usize = 2000;

fn count_from_env(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text.parse().unwrap_or_else(|e| panic!("{name}={text:?}: {e}")),
        Err(_) => default,
    }
}

fn topic_config(partitions: u32) -> TopicConfig {
    TopicConfig {
        partitions: Some(partitions),
        // The workload's timestamps are in the past; keep every record.
        retention_ms: Some(-1),
        segment_bytes: Some(SEGMENT_BYTES),
        ..TopicConfig::default()
    }
}

async fn round_trip<T: Transport + Clone>(transport: T) {
    let count = count_from_env(RECORDS_ENV, RECORDS_DEFAULT);
    let workload = Workload::new(SEED, PARTITIONS);
    Admin::new(transport.clone())
        .create_topic(TOPIC, topic_config(PARTITIONS))
        .await
        .expect("create the topic");
    let deadline = Instant::now() + ROUND_TRIP_LIMIT;
    let run = async {
        let producer =
            Producer::new(transport.clone(), ProducerConfig::default()).expect("a producer");
        let mut placed: Placed = vec![Vec::new(); PARTITIONS as usize];
        produce_checked(&producer, TOPIC, &workload, 0..count, &mut placed)
            .await
            .unwrap_or_else(|e| panic!("seed {SEED:#x}: {e}"));
        producer.close().await.expect("close the producer");
        assert_eq!(placed.iter().map(|p| p.len() as u64).sum::<u64>(), count);
        assert!(placed.iter().all(|p| !p.is_empty()), "seed {SEED:#x}: an empty partition");
        check_placed(transport, TOPIC, &workload, &placed, deadline)
            .await
            .unwrap_or_else(|e| panic!("seed {SEED:#x}: {e}"));
    };
    tokio::time::timeout_at(deadline.into(), run)
        .await
        .unwrap_or_else(|_| panic!("seed {SEED:#x}: round trip not done in {ROUND_TRIP_LIMIT:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_records_round_trip_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = block_in_place(|| BrokerProcess::start(dir.path(), &[]));
    let addr = broker.addr().to_string();
    let connection = Connection::connect(&addr, ConnectionOptions::default()).await.unwrap();
    round_trip(Arc::new(connection)).await;
    let status = block_in_place(|| broker.terminate());
    assert!(status.success(), "broker exit after SIGTERM: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_records_round_trip_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    round_trip(broker.clone()).await;
    block_in_place(|| broker.close()).unwrap();
}

// ---- the CLI ----

/// Runs `eddy --broker ADDR ARGS...` with its stdout into `stdout` (or discarded); panics with
/// its stderr unless it exits 0 within [`CLI_LIMIT`].
async fn eddy(addr: &str, args: &[&OsStr], stdout: Option<&Path>) {
    let mut command = tokio::process::Command::new(eddy_binary());
    command.arg("--broker").arg(addr).args(args);
    command.stdin(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    match stdout {
        Some(path) => command.stdout(std::fs::File::create(path).expect("create the output file")),
        None => command.stdout(std::process::Stdio::null()),
    };
    let child = command.kill_on_drop(true).spawn().expect("start eddy");
    let output = tokio::time::timeout(CLI_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("eddy {args:?} still running after {CLI_LIMIT:?}"))
        .expect("wait for eddy");
    assert!(
        output.status.success(),
        "eddy {args:?}: {:?}; stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `0..=max_len` bytes for a line: mostly printable ASCII, a quarter arbitrary (invalid UTF-8,
/// `\r`, NUL), never `\n` and never a byte in `forbidden`.
fn line_bytes(rng: &mut Rng, max_len: u64, forbidden: &[u8]) -> Vec<u8> {
    let mut bytes = rng.bytes(max_len);
    for b in &mut bytes {
        if *b < 0xc0 {
            *b = 0x20 + *b % 95;
        }
        if *b == b'\n' || forbidden.contains(b) {
            *b = b'.';
        }
    }
    bytes
}

fn line_len(rng: &mut Rng) -> u64 {
    if rng.one_in(1000) { 8192 } else { 120 }
}

fn lines(text: &[u8]) -> Vec<&[u8]> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    if text.is_empty() { Vec::new() } else { text.split(|b| *b == b'\n').collect() }
}

async fn create_topic_with_cli(addr: &str, topic: &str, partitions: u32) {
    let partitions = partitions.to_string();
    let args = ["topic", "create", topic, "--partitions", &partitions];
    eddy(addr, &args.map(OsStr::new), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_produce_then_consume_returns_the_file_byte_for_byte() {
    let count = count_from_env(LINES_ENV, LINES_DEFAULT);
    let dir = tempfile::tempdir().unwrap();
    let mut broker = block_in_place(|| BrokerProcess::start(&dir.path().join("data"), &[]));
    let addr = broker.addr().to_string();

    let mut rng = Rng::new(mix64(SEED ^ 1));
    let mut input = Vec::new();
    for _ in 0..count {
        let len = line_len(&mut rng);
        input.extend_from_slice(&line_bytes(&mut rng, len, b""));
        input.push(b'\n');
    }
    let input_path = dir.path().join("input");
    std::fs::write(&input_path, &input).unwrap();

    create_topic_with_cli(&addr, "lines", 1).await;
    eddy(&addr, &[OsStr::new("produce"), OsStr::new("lines"), input_path.as_os_str()], None).await;
    let output_path = dir.path().join("output");
    eddy(&addr, &["consume", "lines"].map(OsStr::new), Some(&output_path)).await;
    let output = std::fs::read(&output_path).unwrap();

    if output != input {
        let (got, wanted) = (lines(&output), lines(&input));
        let first = got.iter().zip(&wanted).position(|(g, w)| g != w);
        panic!(
            "seed {SEED:#x}: output ({} bytes, {} lines) differs from input ({} bytes, {} lines); \
             first different line: {first:?}",
            output.len(),
            got.len(),
            input.len(),
            wanted.len()
        );
    }
    let status = block_in_place(|| broker.terminate());
    assert!(status.success(), "broker exit after SIGTERM: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_keyed_produce_over_four_partitions_keeps_every_line_and_each_keys_order() {
    let count = count_from_env(LINES_ENV, KEYED_LINES_DEFAULT);
    let dir = tempfile::tempdir().unwrap();
    let mut broker = block_in_place(|| BrokerProcess::start(&dir.path().join("data"), &[]));
    let addr = broker.addr().to_string();

    // Keyed lines are `user-K:=vI <bytes>`: the value starts with `v` and the line number `I`,
    // so it is unique and tells where it came from. Lines without the separator are
    // `nokey-<bytes>` (no `:`), a null key: the whole line is the value.
    let mut rng = Rng::new(mix64(SEED ^ 4));
    let mut input = Vec::new();
    let mut values: Vec<Vec<u8>> = Vec::with_capacity(count as usize);
    let mut keys: Vec<Option<u64>> = Vec::with_capacity(count as usize);
    for i in 0..count {
        let len = line_len(&mut rng);
        if rng.one_in(16) {
            let mut value = b"nokey-".to_vec();
            value.extend_from_slice(&line_bytes(&mut rng, len, b":"));
            input.extend_from_slice(&value);
            values.push(value);
            keys.push(None);
        } else {
            let key = rng.below(KEYS);
            let mut value = format!("v{i} ").into_bytes();
            value.extend_from_slice(&line_bytes(&mut rng, len, b""));
            input.extend_from_slice(format!("user-{key}{KEY_SEP}").as_bytes());
            input.extend_from_slice(&value);
            values.push(value);
            keys.push(Some(key));
        }
        input.push(b'\n');
    }
    let input_path = dir.path().join("input");
    std::fs::write(&input_path, &input).expect("write the input file");

    create_topic_with_cli(&addr, "keyed", 4).await;
    let produce = [OsStr::new("produce"), OsStr::new("keyed"), OsStr::new("--key-sep")];
    let args = [&produce[..], &[OsStr::new(KEY_SEP), input_path.as_os_str()]].concat();
    eddy(&addr, &args, None).await;

    // Every line's value comes back once: the sorted outputs match.
    let output_path = dir.path().join("output");
    eddy(&addr, &["consume", "keyed"].map(OsStr::new), Some(&output_path)).await;
    let output = std::fs::read(&output_path).unwrap();
    let got = lines(&output);
    assert_eq!(got.len(), values.len(), "seed {SEED:#x}: line count");
    let mut sorted = got.clone();
    let mut wanted: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    sorted.sort_unstable();
    wanted.sort_unstable();
    let first = sorted.iter().zip(&wanted).position(|(g, w)| g != w);
    assert!(first.is_none(), "seed {SEED:#x}: sorted outputs differ at line {first:?}");

    // Each key's lines come out in input order (a partition is read in offset order).
    let mut last_line_of_key: Vec<Option<u64>> = vec![None; KEYS as usize];
    for line in got.iter().filter(|l| l.starts_with(b"v")) {
        let number = line[1..].split(|b| *b == b' ').next().unwrap_or_default();
        let i: u64 = std::str::from_utf8(number).unwrap().parse().unwrap();
        let key = keys[i as usize].unwrap();
        let last = last_line_of_key[key as usize].replace(i);
        assert!(last < Some(i), "seed {SEED:#x}: key {key}: line {i} came after line {last:?}");
    }

    // One partition alone holds exactly its keys' lines, in order, from the start.
    let partition = 2;
    let in_partition: Vec<bool> = (0..KEYS)
        .map(|k| partition_for_key(format!("user-{k}").as_bytes(), 4) == partition)
        .collect();
    let take: Vec<&[u8]> = (0..count as usize)
        .filter(|i| keys[*i].is_some_and(|k| in_partition[k as usize]))
        .map(|i| values[i].as_slice())
        .take(PARTITION_LINES)
        .collect();
    let path = dir.path().join("partition");
    let limit = PARTITION_LINES.to_string();
    let p = partition.to_string();
    let args = ["consume", "keyed", "--partition", &p, "--count", &limit].map(OsStr::new);
    eddy(&addr, &args, Some(&path)).await;
    let text = std::fs::read(&path).unwrap();
    let all = lines(&text);
    let keyed: Vec<&[u8]> = all.iter().copied().filter(|l| l.starts_with(b"v")).collect();
    // `--count` counts the null-key lines the sticky partitioner put there too.
    assert!(all.len() <= PARTITION_LINES, "seed {SEED:#x}: --count {PARTITION_LINES} gave more");
    assert!(
        take.starts_with(&keyed) && keyed.len() >= take.len().min(PARTITION_LINES / 2),
        "seed {SEED:#x}: partition {partition}: its {} keyed lines read are not the first \
         of its {} keyed lines",
        keyed.len(),
        take.len()
    );

    let status = block_in_place(|| broker.terminate());
    assert!(status.success(), "broker exit after SIGTERM: {status:?}");
}
