//! SQL persistent queries over a Kafka-protocol cluster (issue 21, goal 3): the course's
//! rideshare statements (`examples/rideshare.sql`, without its final push query) run once in a
//! single broker (`eddy sql -f`) and once as two `eddy sql run FILE --kafka` instances over
//! another `eddy serve`'s Kafka listener, fed the same input (ride positions on `geoEvents`,
//! car positions on the 3-partition `locations`).
//!
//! Shown: for every ride and car, the get each cluster instance answers (itself or by
//! forwarding to the instance running the key's partition) equals the single broker's, and
//! the union of the instances' scans of each table equals the broker's scan — the promotion of
//! ride 6fd0fcdb included; the instances share the 3-partition table (each scan holds part of
//! it); both instances stop cleanly on SIGTERM.
//!
//! Every wait has a deadline; the seed is printed (EDDY_SEED to repeat).
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stderr, reason = "the seed reaches the test output")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use eddy_tests::broker::{BrokerProcess, eddy_binary, signal};
use eddy_tests::cli::eddy_ok;
use eddy_tests::env_u64;
use eddy_tests::instances::{InstanceProcess, start_command, wait_exit};

const RIDESHARE: &str = include_str!("../../examples/rideshare.sql");
/// Notre-Dame, Paris: every ride's destination.
const DST: (f64, f64) = (48.8530, 2.3499);
const RIDES: u64 = 40;
const CARS: u64 = 60;
const CATCH_UP: Duration = Duration::from_secs(120);

/// The example without its final push query (which would wait for changes).
fn rideshare_without_push() -> String {
    let push = RIDESHARE.rfind("SELECT vehicleId").expect("the example ends with a push query");
    RIDESHARE[..push].to_owned()
}

/// Ride positions as `KEY<TAB>JSON` lines: rides `r0`.. at seeded distances over 3 rounds,
/// and ride 6fd0fcdb approaching its destination (10.8 km, then 1.9 km).
fn geo_events(seed: u64) -> String {
    let line = |key: &str, km: f64| {
        let lat = DST.0 + km / 111.195;
        format!(
            "{key}\t{{\"latitude\":{lat},\"longitude\":{},\"dstLatitude\":{},\"dstLongitude\":{}}}\n",
            DST.1, DST.0, DST.1
        )
    };
    let mut text = line("6fd0fcdb", 10.8);
    for round in 0..3 {
        for i in 0..RIDES {
            let km = ((seed >> (i % 32)) + i * 7 + round * 3) % 10;
            text.push_str(&line(&format!("r{i}"), km as f64 + 0.5));
        }
    }
    text.push_str(&line("6fd0fcdb", 1.9));
    text
}

/// Car positions as `KEY<TAB>JSON` lines, each car twice (the table keeps the second).
fn waypoints() -> String {
    let mut text = String::new();
    for round in 0..2 {
        for n in 0..CARS {
            text.push_str(&format!(
                "car-{n}\t{{\"vehicleId\":\"car-{n}\",\"latitude\":{}.{round}5,\"longitude\":2.25}}\n",
                n % 90
            ));
        }
    }
    text.push_str("6fd0fcdb\t{\"vehicleId\":\"6fd0fcdb\",\"latitude\":48.86,\"longitude\":2.35}\n");
    text
}

/// `eddy produce TOPIC --key-sep TAB` of `text` against `broker`.
fn produce(broker: &BrokerProcess, dir: &Path, topic: &str, text: &str) {
    let file = dir.join(format!("{topic}.in"));
    std::fs::write(&file, text).unwrap();
    eddy_ok(broker, &["produce", topic, "--key-sep", "\t", file.to_str().unwrap()]);
}

/// `eddy --broker ADDR query TABLE ARGS...`: the `KEY<TAB>VALUE` lines, or the error.
fn query(addr: &str, table: &str, args: &[&str]) -> Result<Vec<String>, String> {
    let out = Command::new(eddy_binary())
        .args(["--broker", addr, "query", table])
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect())
}

/// A table's rows by key, from a scan's lines.
fn rows(lines: Vec<String>) -> BTreeMap<String, String> {
    lines
        .into_iter()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap_or_else(|| panic!("row {l:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Waits until `f` returns `Some`, up to [`CATCH_UP`]; `what` names it in the failure.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Result<Option<T>, String>) -> T {
    let deadline = Instant::now() + CATCH_UP;
    let mut last = String::new();
    loop {
        match f() {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(e) => last = e,
        }
        assert!(Instant::now() < deadline, "{what} never held (last error: {last})");
        std::thread::park_timeout(Duration::from_millis(200));
    }
}

/// `table` of the cluster `instances` against the single broker at `single_addr`: the union of
/// their scans equals its scan once it holds `keys` (and 6fd0fcdb), and every get asked of
/// every instance answers as it does.
fn compare(
    single_addr: &str,
    instances: &[InstanceProcess],
    table: &str,
    keys: impl Iterator<Item = String>,
) {
    let keys: Vec<String> = keys.chain(["6fd0fcdb".to_owned()]).collect();
    let reference = eventually(&format!("{table} complete in the single broker"), || {
        let got = rows(query(single_addr, table, &["--scan"])?);
        Ok(keys.iter().all(|k| got.contains_key(k)).then_some(got))
    });
    eventually(&format!("{table}: the instances' union equals the single broker's"), || {
        let mut union = BTreeMap::new();
        for i in instances {
            union.extend(rows(query(&i.query_addr, table, &["--scan"])?));
        }
        Ok((union == reference).then_some(()))
    });
    for key in &keys {
        let want = query(single_addr, table, &[key]).unwrap();
        assert_eq!(want.len(), 1, "{table} {key}: {want:?}");
        // Every instance answers as the single broker does, or NOT_ASSIGNED (asked again: the
        // group may still move partitions just after the instances start) — never an empty or
        // other answer.
        for i in instances {
            let addr = &i.query_addr;
            let got = eventually(&format!("{table} {key} from {addr}"), || {
                query(addr, table, &[key]).map(Some)
            });
            assert_eq!(got, want, "{table} {key} from {addr}");
        }
    }
}

#[test]
fn rideshare_on_two_cluster_instances_answers_as_the_single_broker() {
    let seed = env_u64("EDDY_SEED").unwrap_or(0x0edd_05a1);
    eprintln!("seed {seed:#x} (EDDY_SEED to repeat)");
    let dir = tempfile::tempdir().unwrap();
    let single = BrokerProcess::start(&dir.path().join("single"), &[]);
    let cluster = BrokerProcess::start(&dir.path().join("cluster"), &[]);
    let kafka = cluster.kafka_addr().to_string();
    let script = dir.path().join("rideshare.sql");
    std::fs::write(&script, rideshare_without_push()).unwrap();

    // The single broker runs the script; two instances run it over the cluster.
    eddy_ok(&single, &["sql", "-f", script.to_str().unwrap()]);
    let mut instances: Vec<InstanceProcess> = (0..2)
        .map(|i| {
            let mut command = Command::new(eddy_binary());
            command
                .args(["sql", "run"])
                .arg(&script)
                .args(["--kafka", &kafka, "--progress-ms", "1000", "--state-dir"])
                .arg(dir.path().join(format!("i{i}")))
                .env("EDDY_LOG", "info");
            start_command(command)
        })
        .collect();

    let (geo, cars) = (geo_events(seed), waypoints());
    for broker in [&single, &cluster] {
        produce(broker, dir.path(), "geoEvents", &geo);
        produce(broker, dir.path(), "locations", &cars);
    }

    let single_addr = single.addr().to_string();
    compare(&single_addr, &instances, "ACTIVEPROMOTIONS", (0..RIDES).map(|i| format!("r{i}")));
    compare(&single_addr, &instances, "CURRENTCARLOCATIONS", (0..CARS).map(|n| format!("car-{n}")));

    // The two instances share the 3-partition table: each holds part of it.
    let whole = rows(query(&single_addr, "CURRENTCARLOCATIONS", &["--scan"]).unwrap());
    for i in &instances {
        let part = rows(query(&i.query_addr, "CURRENTCARLOCATIONS", &["--scan"]).unwrap());
        assert!(!part.is_empty() && part.len() < whole.len(), "{} of {}", part.len(), whole.len());
    }
    let promotion = query(&instances[1].query_addr, "ACTIVEPROMOTIONS", &["6fd0fcdb"]).unwrap();
    assert!(promotion[0].contains("true"), "ride 6fd0fcdb has no promotion: {promotion:?}");

    for i in &instances {
        signal(i.child.id(), libc::SIGTERM).unwrap();
    }
    for i in &mut instances {
        let status = wait_exit(&mut i.child, Duration::from_secs(60));
        assert!(status.success(), "instance exited {status:?}; stderr:\n{}", i.child.stderr());
    }
}
