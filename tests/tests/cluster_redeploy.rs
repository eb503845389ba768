//! Versioned redeploy on a Kafka-protocol cluster (issue 21, goal 2): three instances of the
//! access log's per-URL count (version 1) serve over a 6-partition topic on `eddy serve`'s
//! Kafka listener; three instances of version 2 (the same command, the spec's version raised)
//! replay from offset zero in their own group and topics, and the processor switches to them
//! when their lag is zero, through the registry topic in the cluster — while a client asks
//! gets of every instance, old and new, one after the other.
//!
//! Shown: every answer is the URL's full count (never empty, never partial); the answers come
//! from version 1, then only from version 2 (never back); every version-1 instance reports
//! itself retired and every version-2 instance serving; the union of version 2's tables
//! equals `awk '{print $7}' | sort | uniq -c`; `eddy processor verify url-counts --kafka`
//! rebuilds version 2 from offset zero and finds its digest equal to the live tables'; a
//! version-1 instance started after the switch refuses to start, naming the serving version;
//! every instance stops cleanly on SIGTERM.
//!
//! Every wait has a deadline; the seed is printed (EDDY_SEED to repeat).
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stderr, reason = "the seed and progress reach the test output")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_cluster::{ClusterConfig, KafkaLogs};
use eddy_processor::LogAccess;
use eddy_tests::broker::{BrokerProcess, eddy_binary, signal};
use eddy_tests::child::deadline_in;
use eddy_tests::cluster::{append_lines, awk_counts, url_counts_spec, write_access_log};
use eddy_tests::env_u64;
use eddy_tests::instances::{InstanceProcess, start_instance, wait_exit, wait_for_reference};

const PARTITIONS: u32 = 6;
const LINES: u64 = 8_000;
const SWITCH: Duration = Duration::from_secs(90);

/// A get's answer: the answering version and the rows, or the error.
type Answer = Result<(u32, Vec<(String, u64)>), String>;

/// One get through `eddy query`.
fn get(addr: &str, url: &str) -> Answer {
    let out = Command::new(eddy_binary())
        .args(["--broker", addr, "query", "requests", url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(stderr);
    }
    let version = stderr
        .lines()
        .find_map(|l| l.strip_prefix("# processor url-counts version "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no version in {stderr:?}"))?;
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect();
    Ok((version, rows))
}

/// Waits for a stdout line of `instance` starting with `prefix`.
fn wait_line(instance: &mut InstanceProcess, prefix: &str) {
    let deadline = deadline_in(SWITCH);
    loop {
        match instance.child.next_line(deadline) {
            Ok(Some(line)) if line.starts_with(prefix) => return,
            Ok(Some(_)) => {}
            other => {
                let _ = instance.child.kill();
                panic!("no {prefix:?} line ({other:?}); stderr:\n{}", instance.child.stderr());
            }
        }
    }
}

/// The client: gets of random URLs asked of every instance in turn until `stop`.
fn client(
    addrs: Arc<Mutex<Vec<String>>>,
    expected: BTreeMap<String, u64>,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Vec<(String, String, Answer)> {
    let urls: Vec<&String> = expected.keys().collect();
    let mut state = seed | 1;
    let mut answers = Vec::new();
    let mut turn = 0usize;
    while !stop.load(Ordering::Acquire) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let url = urls[(state % urls.len() as u64) as usize];
        let addr = {
            let addrs = addrs.lock().unwrap();
            addrs[turn % addrs.len()].clone()
        };
        turn += 1;
        answers.push((addr.clone(), url.clone(), get(&addr, url)));
    }
    answers
}

/// Every answer is the URL's full count; versions go 1 ... 1, 2 ... 2, never back.
fn check_answers(answers: &[(String, String, Answer)], expected: &BTreeMap<String, u64>) {
    let mut versions = Vec::new();
    for (addr, url, answer) in answers {
        let (version, rows) = answer.as_ref().unwrap_or_else(|e| panic!("{addr} {url}: {e}"));
        assert_eq!(rows, &vec![(url.clone(), expected[url])], "{addr} (version {version})");
        versions.push(*version);
    }
    let first_v2 = versions.iter().position(|v| *v == 2).expect("no answer from version 2");
    assert!(first_v2 > 0, "no answer from version 1 before the switch");
    assert!(
        versions[..first_v2].iter().all(|v| *v == 1)
            && versions[first_v2..].iter().all(|v| *v == 2),
        "answers went back to version 1 after version 2: {versions:?}"
    );
    eprintln!("{} answers: {first_v2} from version 1, then version 2", versions.len());
}

/// `eddy processor verify url-counts --kafka`: the rebuild's digest equals the live one.
fn check_verify(kafka: &str) {
    let verified = Command::new(eddy_binary())
        .args(["processor", "verify", "url-counts", "--kafka", kafka])
        // A rebuild that cannot catch up fails with where each side stood, not a hang.
        .args(["--timeout-ms", "180000"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{said}{}", String::from_utf8_lossy(&verified.stderr));
    let line = said.lines().find(|l| l.starts_with("requests: live ")).unwrap_or_default();
    let digests: Vec<&str> = line.split_whitespace().collect();
    assert!(
        digests.len() == 6 && digests[2] == digests[4] && digests[5] == "equal",
        "verify said:\n{said}"
    );
    assert!(said.contains("url-counts: every table equals its rebuild from offset zero"));
}

/// A version-1 instance started after the switch knows version 2 serves, and does not start.
fn check_late_start(v1: &Path, kafka: &str, state: &Path) {
    let late = Command::new(eddy_binary())
        .args(["processor", "run"])
        .arg(v1)
        .args(["--kafka", kafka, "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&late.stderr);
    assert!(!late.status.success(), "a retired version started");
    assert!(why.contains("version 1 of url-counts is retired: version 2 serves"), "{why}");
}

#[test]
fn a_redeploy_switches_every_instance_to_version_2_and_answers_never_go_back() {
    let seed = env_u64("EDDY_SEED").unwrap_or(0x0edd_2ede);
    eprintln!("seed {seed:#x} (EDDY_SEED to repeat)");
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let kafka = broker.kafka_addr().to_string();
    let logs = Arc::new(KafkaLogs::new(ClusterConfig::new(&kafka)).unwrap());
    let log_path = dir.path().join("access.log");
    let lines = write_access_log(&log_path, LINES, seed);
    logs.create_topic("access-log", PARTITIONS, false).unwrap();
    append_lines(&*logs, "access-log", PARTITIONS, &lines, 200, 1_700_000_000_000);
    let expected = awk_counts(&[&log_path]);
    let v1_spec = url_counts_spec("access-log", "url-counts");
    assert!(v1_spec.contains("version = 1\n"));
    let (v1, v2) = (dir.path().join("v1.toml"), dir.path().join("v2.toml"));
    std::fs::write(&v1, &v1_spec).unwrap();
    std::fs::write(&v2, v1_spec.replace("version = 1\n", "version = 2\n")).unwrap();

    let state = |v: u32, i: u32| dir.path().join(format!("v{v}-i{i}"));
    let mut old: Vec<InstanceProcess> =
        (0..3).map(|i| start_instance(&v1, &kafka, &state(1, i), &[])).collect();
    for i in &mut old {
        wait_line(i, "serving version 1");
    }
    wait_for_reference(&old.iter().collect::<Vec<_>>(), "requests", &expected, SWITCH);

    // The client asks every instance in turn, the new ones as soon as they are up.
    let addrs = Arc::new(Mutex::new(old.iter().map(|i| i.query_addr.clone()).collect()));
    let stop = Arc::new(AtomicBool::new(false));
    let asking = {
        let (addrs, expected, stop) = (addrs.clone(), expected.clone(), stop.clone());
        std::thread::spawn(move || client(addrs, expected, seed, stop))
    };
    let mut new: Vec<InstanceProcess> = (0..3)
        .map(|i| {
            let instance = start_instance(&v2, &kafka, &state(2, i), &[]);
            addrs.lock().unwrap().push(instance.query_addr.clone());
            instance
        })
        .collect();
    for i in &mut new {
        wait_line(i, "serving version 2");
    }
    for i in &mut old {
        wait_line(i, "retired: version 2 serves");
    }
    // Some more answers after every instance switched.
    let after = Instant::now();
    while after.elapsed() < Duration::from_secs(3) {
        std::thread::park_timeout(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Release);
    let answers = asking.join().unwrap();

    check_answers(&answers, &expected);
    wait_for_reference(&new.iter().collect::<Vec<_>>(), "requests", &expected, SWITCH);

    check_verify(&kafka);
    check_late_start(&v1, &kafka, &state(1, 9));

    for i in old.iter().chain(&new) {
        signal(i.child.id(), libc::SIGTERM).unwrap();
    }
    for i in old.iter_mut().chain(&mut new) {
        let status = wait_exit(&mut i.child, Duration::from_secs(60));
        assert!(status.success(), "instance exited {status:?}; stderr:\n{}", i.child.stderr());
    }
}
