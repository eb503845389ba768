//! Byte-rate quotas (docs/security.md, "Quotas") against the real `eddy serve`: librdkafka
//! producers and consumers through confluent-kafka on the Kafka listener, and eddy's own
//! client on the native one.
//!
//! What is shown: a client over its quota is held to it — the rate it achieves stays near
//! the quota, and librdkafka reports the broker's `throttle_time_ms` through its throttle
//! callback — while a client without a quota, running at the same time, is never throttled.
//! How much the unthrottled client's throughput is disturbed is a benchmark's business
//! (docs/benchmarks.md), not a timed test's; the bounds here only hold the throttled client
//! below its quota plus the burst Kafka's measurement allows, which a slow machine cannot
//! break.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use eddy_client::{Connection, ConnectionOptions, Producer, ProducerConfig, ProducerRecord};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::cli::eddy_ok;
use eddy_tests::kafka_clients::{python_client, run_to_end};
use serde_json::Value;

/// The quota the throttled clients get, in bytes per second.
const QUOTA: u64 = 512 * 1024;
/// Kafka's measurement lets a client burst `(samples - 1) × window` of its quota first.
const WINDOW_MS: u64 = 500;
const SAMPLES: u64 = 3;

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("eddy.toml");
    let text = format!(
        "[quotas]\nwindow_ms = {WINDOW_MS}\nsamples = {SAMPLES}\n\
         [quotas.clients.slow]\nproducer_byte_rate = {QUOTA}\n\
         [quotas.clients.slow-reader]\nconsumer_byte_rate = {QUOTA}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start(dir: &std::path::Path) -> BrokerProcess {
    let config = config(dir);
    BrokerProcess::start_with_args(&dir.join("data"), &["--config", config.to_str().unwrap()], &[])
}

/// The "done" line a confluent_quota.py run printed.
fn done(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().rev().find(|l| l.contains("\"done\"")).unwrap_or_else(|| {
        panic!("no done line in {text}");
    });
    serde_json::from_str(line).unwrap()
}

fn quota_client(bootstrap: &str, args: &[&str]) -> std::process::Command {
    let mut command = python_client("confluent_quota.py");
    command.args(["--bootstrap", bootstrap, "--timeout", "120"]).args(args);
    command
}

#[test]
fn a_producer_over_its_quota_is_throttled_and_one_without_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    eddy_ok(&broker, &["topic", "create", "q", "--partitions", "1"]);
    let bootstrap = broker.kafka_addr().to_string();
    let seconds = 4.0;
    let run = |client: &'static str| {
        let bootstrap = bootstrap.clone();
        thread::spawn(move || {
            let command = quota_client(
                &bootstrap,
                &["produce", "--topic", "q", "--client-id", client, "--seconds", "4"],
            );
            run_to_end(command, Duration::from_secs(150))
        })
    };
    let (slow, fast) = (run("slow"), run("fast"));
    let (slow, fast) = (slow.join().unwrap(), fast.join().unwrap());
    let (slow, fast) = (done(slow.ok()), done(fast.ok()));
    eprintln!("slow: {slow}\nfast: {fast}");

    let slow_bytes = slow["bytes"].as_u64().unwrap();
    let slow_seconds = slow["seconds"].as_f64().unwrap();
    // At most the burst plus the quota over the time taken (with a margin of a window).
    let burst = QUOTA * (SAMPLES - 1) * WINDOW_MS / 1000;
    let allowed = burst as f64 + QUOTA as f64 * (slow_seconds + WINDOW_MS as f64 / 1000.0);
    assert!(
        (slow_bytes as f64) <= allowed,
        "the throttled producer sent {slow_bytes} bytes in {slow_seconds:.2} s: more than \
         its quota allows ({allowed:.0})"
    );
    assert!(slow_seconds >= seconds, "{slow}");
    assert!(slow["throttles"].as_u64().unwrap() > 0, "librdkafka saw no throttle: {slow}");
    assert!(slow["throttle_ms"].as_u64().unwrap() > 0, "{slow}");

    // The other client has no quota: never throttled, and well past the slow one's quota.
    assert_eq!(fast["throttles"].as_u64(), Some(0), "{fast}");
    let fast_rate = fast["bytes"].as_f64().unwrap() / fast["seconds"].as_f64().unwrap();
    assert!(fast_rate > 4.0 * QUOTA as f64, "{fast}");
}

#[test]
fn a_consumer_over_its_quota_is_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    eddy_ok(&broker, &["topic", "create", "r", "--partitions", "1"]);
    let bootstrap = broker.kafka_addr().to_string();
    // 3 MiB in the topic, produced by a client without a quota.
    let total: u64 = 3 * 1024 * 1024;
    let value = "v".repeat(1023);
    let lines: String = (0..total / 1024).map(|_| format!("{value}\n")).collect();
    let input = dir.path().join("values.txt");
    std::fs::write(&input, lines).unwrap();
    eddy_ok(&broker, &["produce", "r", input.to_str().unwrap()]);

    // Values only (the newlines are not in them).
    let max_bytes = (total - total / 1024).to_string();
    let command = quota_client(
        &bootstrap,
        &["consume", "--topic", "r", "--client-id", "slow-reader", "--max-bytes", &max_bytes],
    );
    let out = done(run_to_end(command, Duration::from_secs(150)).ok());
    eprintln!("slow-reader: {out}");
    let seconds = out["seconds"].as_f64().unwrap();
    let burst = QUOTA * (SAMPLES - 1) * WINDOW_MS / 1000;
    // Reading 3 MiB at 512 KiB/s after a burst takes at least this long (less a window).
    let least = (total - burst - QUOTA * WINDOW_MS / 1000) as f64 / QUOTA as f64;
    assert!(seconds >= least, "read {total} bytes in {seconds:.2} s, under {least:.2} s: {out}");
    assert!(out["throttles"].as_u64().unwrap() > 0, "librdkafka saw no throttle: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddys_client_over_its_quota_is_slowed_by_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = tokio::task::block_in_place(|| start(dir.path()));
    tokio::task::block_in_place(|| {
        eddy_ok(&broker, &["topic", "create", "n", "--partitions", "1"])
    });
    let addr = broker.addr().to_string();
    let options = ConnectionOptions { client_name: "slow".into(), ..ConnectionOptions::default() };
    let conn = Arc::new(Connection::connect(&addr, options).await.unwrap());
    let producer = Producer::new(conn, ProducerConfig::default()).unwrap();
    // 2 MiB in batches of 64 × 1 KiB.
    let total: u64 = 2 * 1024 * 1024;
    let started = Instant::now();
    let mut deliveries = Vec::new();
    for b in 0..total / (64 * 1024) {
        let records = (0..64).map(|i| ProducerRecord::value(format!("{:01024}", b * 64 + i)));
        deliveries.push(producer.send_batch("n", Some(0), records).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    producer.close().await.unwrap();
    let burst = QUOTA * (SAMPLES - 1) * WINDOW_MS / 1000;
    let least = (total - burst - QUOTA * WINDOW_MS / 1000) as f64 / QUOTA as f64;
    eprintln!("2 MiB at a 512 KiB/s quota took {elapsed:.2} s (at least {least:.2} s)");
    assert!(elapsed >= least, "{elapsed:.2} s < {least:.2} s: the quota did not hold");
    // Every record is there.
    let out = tokio::task::block_in_place(|| {
        let count = (total / 1024).to_string();
        eddy_ok(&broker, &["consume", "n", "--from", "earliest", "--count", &count])
    });
    assert_eq!(out.len() as u64, total / 1024);
    for (i, line) in out.iter().enumerate() {
        assert!(line.ends_with(&format!("{i:01024}")), "record {i}: {line:.60}");
    }
}
