//! Effectively-once on a Kafka-protocol cluster (issue 21): a paused, not dead, instance is
//! fenced. Three `eddy processor run --kafka` instances share the access log's per-URL count
//! over a 6-partition topic on `eddy serve`'s Kafka listener; one is SIGSTOPped while input
//! keeps coming, so the group removes it after its session timeout and the other two take its
//! partitions (registering their transactional producers, which fences the paused one's). Then
//! it is SIGCONTed with more input: it wakes believing it still runs its partitions, and its
//! writes are refused (it logs that it was fenced, and goes on as a member that lost them).
//!
//! Shown: the tables of the instances equal `awk '{print $7}' | sort | uniq -c` at every
//! stage; the output topic read committed holds each count once (per writer and partition,
//! positions strictly increasing) with the latest count of every URL the reference's — so
//! nothing the zombie wrote after losing its partitions is visible; the zombie says it was
//! fenced, and every instance stops cleanly on SIGTERM.
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
use eddy_tests::cluster::{
    append_lines, awk_counts, url_counts_spec, wait_output, write_access_log,
};
use eddy_tests::env_u64;
use eddy_tests::instances::{InstanceProcess, start_instance, wait_exit, wait_for_reference};

const PARTITIONS: u32 = 6;
const CATCH_UP: Duration = Duration::from_secs(120);

fn wait_for(instances: &[&InstanceProcess], expected: &BTreeMap<String, u64>) {
    wait_for_reference(instances, "requests", expected, CATCH_UP);
}

#[test]
fn a_paused_instance_whose_partitions_moved_is_fenced_and_writes_nothing_visible() {
    let seed = env_u64("EDDY_SEED").unwrap_or(0x0edd_f3c3);
    eprintln!("seed {seed:#x} (EDDY_SEED to repeat)");
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let kafka = broker.kafka_addr().to_string();
    let logs = Arc::new(KafkaLogs::new(ClusterConfig::new(&kafka)).unwrap());
    let paths: Vec<_> = (0..3).map(|i| dir.path().join(format!("part{i}.log"))).collect();
    let parts: Vec<Vec<String>> = [3_000, 3_000, 1_500]
        .iter()
        .zip(&paths)
        .enumerate()
        .map(|(i, (n, path))| write_access_log(path, *n, seed ^ i as u64))
        .collect();
    logs.create_topic("access-log", PARTITIONS, false).unwrap();
    append_lines(&*logs, "access-log", PARTITIONS, &parts[0], 150, 1_700_000_000_000);
    let spec = dir.path().join("url-counts.toml");
    std::fs::write(&spec, url_counts_spec("access-log", "url-counts")).unwrap();

    let mut instances: Vec<InstanceProcess> = (0..3)
        .map(|i| start_instance(&spec, &kafka, &dir.path().join(format!("i{i}")), &[]))
        .collect();
    wait_for(&instances.iter().collect::<Vec<_>>(), &awk_counts(&[&paths[0]]));

    // Pause one: the others take its partitions after the session timeout, and count on.
    let zombie = instances[0].child.id();
    signal(zombie, libc::SIGSTOP).unwrap();
    eprintln!("instance at {} SIGSTOPped", instances[0].query_addr);
    append_lines(&*logs, "access-log", PARTITIONS, &parts[1], 150, 1_700_000_100_000);
    let expected = awk_counts(&[&paths[0], &paths[1]]);
    wait_for(&[&instances[1], &instances[2]], &expected);

    // Wake it with more input: whatever it tries to write for its old partitions is refused.
    signal(zombie, libc::SIGCONT).unwrap();
    eprintln!("instance at {} SIGCONTed", instances[0].query_addr);
    append_lines(&*logs, "access-log", PARTITIONS, &parts[2], 150, 1_700_000_200_000);
    let expected = awk_counts(&[&paths[0], &paths[1], &paths[2]]);
    wait_for(&instances.iter().collect::<Vec<_>>(), &expected);

    // The output topic, read committed: each count once, the latest per URL the reference's.
    let writers = wait_output(&*logs, "url-counts", &expected, Duration::from_secs(30));
    assert_eq!(writers.len(), PARTITIONS as usize, "one writer per aggregating task");

    for i in &instances {
        signal(i.child.id(), libc::SIGTERM).unwrap();
    }
    let mut stderrs = Vec::new();
    for i in &mut instances {
        let status = wait_exit(&mut i.child, Duration::from_secs(60));
        let stderr = i.child.stderr();
        assert!(status.success(), "instance exited {status:?}; stderr:\n{stderr}");
        stderrs.push(stderr);
    }
    assert!(
        stderrs[0].contains("fenced: another instance runs this partition now"),
        "the paused instance never found itself fenced; stderr:\n{}",
        stderrs[0]
    );
}
