//! Replay and redeploy in the server: a new version of a per-URL count rebuilds from offset
//! zero while the old one serves, and the table name switches to it only at lag zero — a
//! client querying throughout sees the old answers, then the new ones, never an error, an
//! empty or a partial count. SIGKILLs during rebuilds and switches leave exactly one serving
//! version whose digest equals a crash-free replay's. Digests tell equal inputs from changed
//! ones, and a deploy over an input that lost offset zero is refused naming the earliest offset.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_protocol::v1::{self, request, response};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::cli::{eddy_fails, eddy_ok};
use eddy_tests::env_u64;
use eddy_tests::generate::Rng;
use eddy_tests::raw_client::RawClient;

const LINES: u64 = 20_000;
const URLS: u64 = 40;

fn spec(name: &str, version: u32, only_ok: bool) -> String {
    let filter = if only_ok {
        "[[ops]]\nop = \"filter\"\nfield = \"status\"\nequals = \"200\"\n"
    } else {
        ""
    };
    format!(
        "name = \"{name}\"\nversion = {version}\nsource = {{ topic = \"access\", format = \"text\" }}\n\
         [[ops]]\nop = \"fields\"\nfields = {{ url = 7, status = 9 }}\n{filter}\
         [[ops]]\nop = \"key_by\"\nfield = \"url\"\n\
         [[ops]]\nop = \"aggregate\"\ntable = \"requests\"\nfn = \"count\"\n"
    )
}

/// Lines of the log, and the expected counts (all, status 200 only) per URL.
fn log_lines(seed: u64, lines: u64) -> (String, BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut rng = Rng::new(seed);
    let (mut text, mut all, mut ok) = (String::new(), BTreeMap::new(), BTreeMap::new());
    for _ in 0..lines {
        let url = format!("/u{}", rng.below(URLS));
        let status = if rng.one_in(4) { 500 } else { 200 };
        text.push_str(&format!(
            "10.1.1.1 - - [10/Oct/2023:10:00:00 +0000] \"GET {url} HTTP/1.1\" {status} 10\n"
        ));
        *all.entry(url.clone()).or_insert(0) += 1;
        if status == 200 {
            *ok.entry(url).or_insert(0) += 1;
        }
    }
    (text, all, ok)
}

fn query(client: &mut RawClient, table: &str, key: &str, digest: bool) -> v1::QueryTableResponse {
    let body = request::Body::QueryTable(v1::QueryTableRequest {
        table: table.into(),
        query: Some(v1::query_table_request::Query::Get(serde_json::Value::from(key).to_string())),
        digest,
    });
    match client.call_ok(body) {
        response::Body::QueryTable(q) => q,
        other => panic!("unexpected answer {other:?}"),
    }
}

fn status(client: &mut RawClient, name: &str) -> v1::ProcessorInfo {
    let body = request::Body::ProcessorStatus(v1::ProcessorStatusRequest { name: name.into() });
    match client.call_ok(body) {
        response::Body::ProcessorStatus(s) => s.processor.unwrap(),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Waits (querying, with a deadline) until `name` is served by `version` with no lag and no
/// version building.
fn wait_serving(client: &mut RawClient, name: &str, version: u32) -> v1::ProcessorInfo {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = status(client, name);
        if s.version == version && s.building.is_none() && s.lag == 0 && s.state == "running" {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never served version {version} caught up: {s:?}"
        );
        std::thread::yield_now();
    }
}

fn setup(
    dir: &Path,
    seed: u64,
) -> (BrokerProcess, RawClient, BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let broker = BrokerProcess::start(&dir.join("data"), &[]);
    eddy_ok(&broker, &["topic", "create", "access", "--partitions", "2"]);
    let (text, all, ok) = log_lines(seed, LINES);
    let log = dir.join("access.log");
    std::fs::write(&log, text).unwrap();
    eddy_ok(&broker, &["produce", "access", log.to_str().unwrap()]);
    let client = RawClient::connect(broker.addr());
    (broker, client, all, ok)
}

fn deploy(broker: &BrokerProcess, dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    eddy_ok(broker, &["processor", "deploy", path.to_str().unwrap()]);
}

#[test]
fn queries_see_the_old_version_until_the_new_one_caught_up_then_only_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut client, all, ok) = setup(dir.path(), 11);
    deploy(&broker, dir.path(), "v1.toml", &spec("urls", 1, false));
    wait_serving(&mut client, "urls", 1);

    // A client queries every URL in a loop while v2 is deployed, rebuilt and switched to.
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<(u32, String, u64)>>> = Arc::default();
    let reader = {
        let (stop, answers, addr) = (stop.clone(), answers.clone(), broker.addr());
        let urls: Vec<String> = all.keys().cloned().collect();
        std::thread::spawn(move || {
            let mut client = RawClient::connect(addr);
            while !stop.load(Ordering::Relaxed) {
                for url in &urls {
                    let q = query(&mut client, "requests", url, false);
                    assert_eq!(q.rows.len(), 1, "{url}: no row in version {}", q.version);
                    let count = q.rows[0].value.parse::<u64>().unwrap();
                    answers.lock().unwrap().push((q.version, url.clone(), count));
                }
            }
        })
    };
    deploy(&broker, dir.path(), "v2.toml", &spec("urls", 2, true));
    let served = wait_serving(&mut client, "urls", 2);
    assert_eq!(served.retired_version, 1);
    // Some answers from v2 too, then stop.
    let seen_v2 = |a: &Vec<(u32, String, u64)>| a.iter().filter(|x| x.0 == 2).count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen_v2(&answers.lock().unwrap()) < 2 * URLS as usize {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();

    let answers = answers.lock().unwrap();
    let first_v2 = answers.iter().position(|a| a.0 == 2).unwrap();
    assert!(first_v2 > 0, "v1 served before the switch");
    for (i, (version, url, count)) in answers.iter().enumerate() {
        match version {
            1 => {
                assert!(i < first_v2, "v1 answered after v2 had");
                assert_eq!(*count, all[url], "v1's {url}: a partial count");
            }
            2 => assert_eq!(*count, ok[url], "v2's {url}: a partial count"),
            v => panic!("version {v}"),
        }
    }
    // v2's answers reflect every input offset: it switched at lag zero.
    let q = query(&mut client, "requests", "/u0", false);
    assert!(q.inputs.iter().all(|i| i.position == i.end_offset), "{:?}", q.inputs);
}

#[test]
fn sigkills_during_rebuilds_and_switches_leave_one_serving_version_equal_to_a_replay() {
    let seed = env_u64("EDDY_TEST_SEED").unwrap_or(0x0edd_7e5d);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, mut client, _, _) = setup(dir.path(), 12);
    deploy(&broker, dir.path(), "v1.toml", &spec("urls", 1, false));
    wait_serving(&mut client, "urls", 1);
    for version in 2..=6u32 {
        deploy(&broker, dir.path(), "next.toml", &spec("urls", version, version % 2 == 0));
        // Kill at a random point of the rebuild or around its switch.
        let deadline = Instant::now() + Duration::from_millis(rng.below(400));
        while Instant::now() < deadline {
            let s = status(&mut client, "urls");
            assert!(s.version == version - 1 || s.version == version, "{s:?}");
        }
        broker.kill9();
        broker = BrokerProcess::start(&dir.path().join("data"), &[]);
        client = RawClient::connect(broker.addr());
        // Exactly one version serves: the old one (still building the new) or the new one.
        let s = status(&mut client, "urls");
        assert!(s.version == version - 1 || s.version == version, "{s:?}");
        if s.version == version - 1 {
            assert_eq!(s.building.as_ref().map(|b| b.version), Some(version), "{s:?}");
        }
        wait_serving(&mut client, "urls", version);
    }
    // The survivor equals a crash-free replay of the same logic, key for key (by digest).
    deploy(&broker, dir.path(), "fresh.toml", &spec("fresh", 1, true));
    wait_serving(&mut client, "fresh", 1);
    let survivor = query(&mut client, "urls/requests", "/u1", true);
    let replayed = query(&mut client, "fresh/requests", "/u1", true);
    assert_eq!(survivor.version, 6);
    assert_eq!(survivor.digest, replayed.digest);
    assert_eq!(survivor.rows, replayed.rows);
}

#[test]
fn digests_match_for_equal_inputs_and_differ_for_changed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut client, _, _) = setup(dir.path(), 13);
    deploy(&broker, dir.path(), "a.toml", &spec("a", 1, false));
    deploy(&broker, dir.path(), "b.toml", &spec("b", 1, false));
    wait_serving(&mut client, "a", 1);
    wait_serving(&mut client, "b", 1);
    let da = query(&mut client, "a/requests", "/u0", true).digest;
    assert_eq!(da, query(&mut client, "b/requests", "/u0", true).digest);
    // A replay rebuilds the same logic from zero as the next version: same digest; verify
    // rebuilds it in a shadow and finds every table equal.
    let replayed = eddy_ok(&broker, &["processor", "replay", "a", "--wait"]);
    assert_eq!(replayed.last().unwrap(), "processor a version 2 serves", "{replayed:?}");
    assert_eq!(query(&mut client, "a/requests", "/u0", true).digest, da);
    let verified = eddy_ok(&broker, &["processor", "verify", "a"]);
    assert!(
        verified.iter().any(|l| l.starts_with("requests: live") && l.ends_with("equal")),
        "{verified:?}"
    );
    assert!(!eddy_ok(&broker, &["processor", "list"]).iter().any(|l| l.contains("verify")));
    // One more line changes the table, and its digest.
    let extra = dir.path().join("extra.log");
    std::fs::write(&extra, "1.1.1.1 - - [x] \"GET /u0 HTTP/1.1\" 200 1\n").unwrap();
    eddy_ok(&broker, &["produce", "access", extra.to_str().unwrap()]);
    wait_serving(&mut client, "a", 2);
    assert_ne!(query(&mut client, "a/requests", "/u0", true).digest, da);
}

#[test]
fn a_deploy_over_an_input_that_lost_offset_zero_is_refused_with_the_earliest_offset() {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        BrokerProcess::start(&dir.path().join("data"), &[("EDDY_MAINTENANCE_INTERVAL_MS", "50")]);
    eddy_ok(
        &broker,
        &["topic", "create", "access", "--segment-bytes", "4096", "--retention-bytes", "8192"],
    );
    let (text, _, _) = log_lines(14, 2_000);
    let log = dir.path().join("access.log");
    std::fs::write(&log, text).unwrap();
    eddy_ok(&broker, &["produce", "access", log.to_str().unwrap()]);
    // Retention runs in the background; wait (bounded) until it has removed the first segment.
    let mut client = RawClient::connect(broker.addr());
    let deadline = Instant::now() + Duration::from_secs(30);
    let start = loop {
        let body = request::Body::DescribeTopic(v1::DescribeTopicRequest { name: "access".into() });
        let response::Body::DescribeTopic(d) = client.call_ok(body) else { panic!() };
        let start = d.partitions[0].log_start_offset;
        if start > 0 {
            break start;
        }
        assert!(Instant::now() < deadline, "retention never ran");
        std::thread::yield_now();
    };
    let path = dir.path().join("v1.toml");
    std::fs::write(&path, spec("urls", 1, false)).unwrap();
    let e = eddy_fails(&broker, &["processor", "deploy", path.to_str().unwrap()]);
    assert!(
        e.contains("REPLAY_NEEDS_OFFSET_ZERO") && e.contains("a full replay needs offset 0"),
        "{e}"
    );
    // The offset named is the partition's earliest (retention may have moved on since).
    let named: u64 =
        e.split("starts at offset ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(named >= start && named <= client.next_offset("access", 0), "{e}");
}
