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
//!   once (read committed: per writer and partition, positions strictly increasing) with the
//!   latest count of every URL equal to the reference;
//! - SIGTERM stops the survivors cleanly (exit 0, snapshots published, group left).
//!
//! Every wait has a deadline; the seed is printed (EDDY_SEED to repeat).
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stderr, reason = "the seed and progress reach the test output")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use eddy_cluster::{ClusterConfig, KafkaLogs};
use eddy_processor::LogAccess;
use eddy_tests::broker::{BrokerProcess, signal};
use eddy_tests::child::deadline_in;
use eddy_tests::cluster::{
    append_lines, awk_counts, url_counts_spec, wait_output, write_access_log,
};
use eddy_tests::env_u64;
use eddy_tests::instances::{InstanceProcess, query, start_instance, wait_exit};

/// The instances' `requests` tables together equal `expected` (waited for).
fn wait_for_reference(instances: &[&InstanceProcess], expected: &BTreeMap<String, u64>) {
    eddy_tests::instances::wait_for_reference(instances, "requests", expected, CATCH_UP);
}

const PARTITIONS: u32 = 6;
const FIRST: u64 = 6_000;
const MORE: u64 = 9_000;
/// Longest wait for the instances to agree with the reference.
const CATCH_UP: Duration = Duration::from_secs(180);

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

    let mut instances: Vec<InstanceProcess> = (0..3)
        .map(|i| start_instance(&spec, &kafka, &dir.path().join(format!("i{i}")), &[]))
        .collect();
    let expected = awk_counts(&[&first_path]);
    wait_for_reference(&instances.iter().collect::<Vec<_>>(), &expected);

    // A get asked of every instance is answered, by forwarding when the URL lives elsewhere.
    let (url, count) = expected.iter().max_by_key(|(_, n)| **n).unwrap();
    for i in &instances {
        assert_eq!(query(&i.query_addr, "requests", &[url]).unwrap(), vec![(url.clone(), *count)]);
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
        assert_eq!(query(&i.query_addr, "requests", &[url]).unwrap(), vec![(url.clone(), *count)]);
    }

    // The output topic: each count once per writer, the latest per URL the reference's.
    let writers = wait_output(&*logs, "url-counts", &expected, Duration::from_secs(30));
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
