//! Three `eddy processor run --kafka` instances share the access log's per-URL count over a
//! 6-partition topic on `eddy serve`'s Kafka listener (issue 21):
//!
//! - they form one consumer group and split the task partitions; once caught up, the union of
//!   their tables (each instance's scan of the partitions it runs) equals
//!   `awk '{print $7}' | sort | uniq -c` and no URL is in two instances' tables;
//! - a get asked of an instance for a URL another one runs is forwarded and answered;
//! - one instance is SIGKILLed while input is still being produced; the others take its
//!   partitions (restoring the tasks from the snapshots published in the cluster), and after
//!   catching up the union still equals the reference, and the output topic holds each count
//!   once (per writer and partition, positions strictly increasing) with the latest count of
//!   every URL equal to the reference;
//! - SIGTERM stops the survivors cleanly (exit 0, snapshots published, group left).
//!
//! Every wait has a deadline; the seed is printed (EDDY_SEED to repeat).
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stderr, reason = "the seed and progress reach the test output")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_cluster::{ClusterConfig, KafkaLogs};
use eddy_processor::LogAccess;
use eddy_tests::broker::{BrokerProcess, eddy_binary, signal};
use eddy_tests::child::{ChildProcess, deadline_in};
use eddy_tests::cluster::{
    append_lines, awk_counts, latest_once, read_partition, url_counts_spec, write_access_log,
};
use eddy_tests::env_u64;

const PARTITIONS: u32 = 6;
const FIRST: u64 = 6_000;
const MORE: u64 = 9_000;
/// Longest wait for the instances to agree with the reference.
const CATCH_UP: Duration = Duration::from_secs(180);

struct InstanceProcess {
    child: ChildProcess,
    query_addr: String,
}

fn start_instance(spec: &Path, kafka: &str, state: &Path) -> InstanceProcess {
    let mut command = Command::new(eddy_binary());
    command
        .args(["processor", "run"])
        .arg(spec)
        .args(["--kafka", kafka, "--snapshot-every", "1500", "--progress-ms", "1000"])
        .arg("--state-dir")
        .arg(state)
        .env("EDDY_LOG", "info");
    let mut child = ChildProcess::spawn_command(command).unwrap();
    let deadline = deadline_in(Duration::from_secs(60));
    loop {
        match child.next_line(deadline) {
            Ok(Some(line)) => {
                if let Some((_, addr)) = line.split_once(": queries on ") {
                    return InstanceProcess { child, query_addr: addr.trim().to_owned() };
                }
            }
            other => {
                let _ = child.kill();
                panic!("instance did not start ({other:?}); stderr:\n{}", child.stderr());
            }
        }
    }
}

/// `eddy --broker ADDR query requests ARGS...`: (key, count) rows, or the error line.
fn query(addr: &str, args: &[&str]) -> Result<Vec<(String, u64)>, String> {
    let out = Command::new(eddy_binary())
        .args(["--broker", addr, "query", "requests"])
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap_or_else(|| panic!("row {l:?}"));
            (k.to_owned(), v.parse().unwrap_or_else(|e| panic!("count in {l:?}: {e}")))
        })
        .collect())
}

/// The union of the instances' scans, and whether any URL was in two of them.
fn union(instances: &[&InstanceProcess]) -> Result<(BTreeMap<String, u64>, bool), String> {
    let mut all = BTreeMap::new();
    let mut twice = false;
    for i in instances {
        for (k, v) in query(&i.query_addr, &["--scan"])? {
            twice |= all.insert(k, v).is_some();
        }
    }
    Ok((all, twice))
}

/// Waits until the union of `instances`' tables equals `expected` with no URL twice.
fn wait_for_reference(instances: &[&InstanceProcess], expected: &BTreeMap<String, u64>) {
    let deadline = Instant::now() + CATCH_UP;
    let mut backoff = Duration::from_millis(100);
    loop {
        let last = union(instances);
        if let Ok((got, false)) = &last
            && got == expected
        {
            return;
        }
        if Instant::now() >= deadline {
            let summary = last.map(|(got, twice)| {
                let total: u64 = got.values().sum();
                format!("{} URLs, {total} requests, a URL twice: {twice}", got.len())
            });
            let want: u64 = expected.values().sum();
            panic!("not caught up: {summary:?}; want {} URLs, {want} requests", expected.len());
        }
        std::thread::park_timeout(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// The child's exit status, waited for up to `limit` (then it is killed and the test fails).
fn wait_exit(child: &mut ChildProcess, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("instance did not exit within {limit:?}; stderr:\n{}", child.stderr());
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

#[test]
fn three_instances_share_the_count_survive_a_sigkill_and_write_each_result_once() {
    let seed = env_u64("EDDY_SEED").unwrap_or(0x0edd_3105);
    eprintln!("seed {seed:#x} (EDDY_SEED to repeat)");
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let kafka = broker.kafka_addr().to_string();
    let logs = Arc::new(KafkaLogs::new(ClusterConfig::new(&kafka)).unwrap());
    let (first_path, more_path) = (dir.path().join("first.log"), dir.path().join("more.log"));
    let first = write_access_log(&first_path, FIRST, seed);
    let more = write_access_log(&more_path, MORE, seed ^ 0x5eed);
    logs.create_topic("access-log", PARTITIONS, false).unwrap();
    append_lines(&*logs, "access-log", PARTITIONS, &first, 200, 1_700_000_000_000);
    let spec = dir.path().join("url-counts.toml");
    std::fs::write(&spec, url_counts_spec("access-log", "url-counts")).unwrap();

    let mut instances: Vec<InstanceProcess> =
        (0..3).map(|i| start_instance(&spec, &kafka, &dir.path().join(format!("i{i}")))).collect();
    let expected = awk_counts(&[&first_path]);
    wait_for_reference(&instances.iter().collect::<Vec<_>>(), &expected);

    // A get asked of every instance is answered, by forwarding when the URL lives elsewhere.
    let (url, count) = expected.iter().max_by_key(|(_, n)| **n).unwrap();
    for i in &instances {
        assert_eq!(query(&i.query_addr, &[url]).unwrap(), vec![(url.clone(), *count)]);
    }

    // More input while one instance is SIGKILLed halfway through it.
    let producer = {
        let logs = logs.clone();
        let (tx, halfway) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let (a, b) = more.split_at(more.len() / 2);
            append_lines(&*logs, "access-log", PARTITIONS, a, 150, 1_700_000_100_000);
            let _ = tx.send(());
            append_lines(&*logs, "access-log", PARTITIONS, b, 150, 1_700_000_200_000);
        });
        halfway.recv_timeout(Duration::from_secs(120)).unwrap();
        thread
    };
    let mut killed = instances.remove(0);
    killed.child.kill().unwrap();
    eprintln!("instance at {} SIGKILLed", killed.query_addr);
    producer.join().unwrap();

    let expected = awk_counts(&[&first_path, &more_path]);
    wait_for_reference(&instances.iter().collect::<Vec<_>>(), &expected);
    let (url, count) = expected.iter().max_by_key(|(_, n)| **n).unwrap();
    for i in &instances {
        assert_eq!(query(&i.query_addr, &[url]).unwrap(), vec![(url.clone(), *count)]);
    }

    // The output topic: each count once per writer, the latest per URL the reference's.
    let mut records = Vec::new();
    for p in 0..logs.partition_count("url-counts").unwrap() {
        records.extend(read_partition(&*logs, "url-counts", p, 0, 1 << 20));
    }
    let (latest, writers) = latest_once(&records);
    let latest: BTreeMap<String, u64> =
        latest.into_iter().map(|(k, v)| (k, v.parse().unwrap())).collect();
    assert_eq!(latest, expected, "url-counts' latest count per URL");
    assert_eq!(writers.len(), PARTITIONS as usize, "one writer per aggregating task");

    // SIGTERM: a clean stop.
    for i in &mut instances {
        signal(i.child.id(), libc::SIGTERM).unwrap();
    }
    for i in &mut instances {
        let status = wait_exit(&mut i.child, Duration::from_secs(60));
        let rest = i.child.remaining_lines(deadline_in(Duration::from_secs(5))).unwrap_or_default();
        assert!(status.success(), "instance exited {status:?}; stderr:\n{}", i.child.stderr());
        assert!(rest.iter().any(|l| l.starts_with("stopped")), "{rest:?}");
    }
}
