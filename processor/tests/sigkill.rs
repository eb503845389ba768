//! Effectively-once across real process kills: `eddy-process-demo run` (an example of this
//! crate) is SIGKILLed at random points while it processes, 20 times, then run to the end;
//! every output partition then holds exactly what an uninterrupted run wrote (per writing task,
//! in order; a table's changelog by content, with no change twice), and every table has the
//! same digest.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::Rng;
use eddy_processor::LogAccess;

/// The `eddy-process-demo` example's executable. Examples get no `CARGO_BIN_EXE_*`, so cargo
/// builds it (a no-op when `cargo test` already has) and says where it is.
fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut build = Command::new(env!("CARGO"));
        build.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "build",
            "--quiet",
            "--package=eddy-processor",
            "--example=eddy-process-demo",
            "--message-format=json",
        ]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let out = build.stderr(Stdio::inherit()).output().unwrap();
        assert!(out.status.success(), "building the eddy-process-demo example failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact" && m["target"]["name"] == "eddy-process-demo"
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the example's executable")
    })
}

fn demo(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Table digests printed by a run to the end.
fn digests(stdout: &str) -> Vec<String> {
    stdout.lines().filter(|l| l.starts_with("table ")).map(str::to_owned).collect()
}

type Outputs = BTreeMap<(String, u32, u64), Vec<(Option<Vec<u8>>, Option<Vec<u8>>, i64)>>;

fn outputs(dir: &Path) -> Outputs {
    let logs = common::open_logs(&dir.join("logs"));
    let mut out = Outputs::new();
    for topic in logs.topics().unwrap() {
        if topic == "customers" || topic == "orders" || topic.ends_with("-steps") {
            continue;
        }
        for p in 0..logs.partition_count(&topic).unwrap() {
            let records = common::read_all(&*logs, &topic, p);
            // An aggregate writes its table's changes once per task flush, and where the task
            // flushed depends on where it was killed: a changelog is compared by content, after
            // checking that no change was written twice (a writer's positions only grow).
            if topic.ends_with("-changelog") {
                for pair in records.windows(2) {
                    let (a, b) = (pair[0].pos.unwrap(), pair[1].pos.unwrap());
                    assert!(a.writer != b.writer || a.order() < b.order(), "{topic}/{p}");
                }
                let writer = records.first().map_or(0, |r| r.pos.unwrap().writer);
                let latest = common::latest_by_key(&records);
                let entry = out.entry((topic.clone(), p, writer)).or_default();
                entry.extend(latest.into_iter().map(|(k, v)| (Some(k), Some(v), 0)));
                continue;
            }
            for r in records {
                let writer = r.pos.unwrap().writer;
                out.entry((topic.clone(), p, writer)).or_default().push((r.key, r.value, r.ts));
            }
        }
    }
    out
}

#[test]
fn twenty_sigkills_leave_each_result_exactly_once() {
    let seed = common::seed(41);
    let killed = tempfile::tempdir().unwrap();
    let clean = tempfile::tempdir().unwrap();
    let (killed_dir, clean_dir) = (killed.path().to_str().unwrap(), clean.path().to_str().unwrap());
    demo(&["produce", killed_dir, &seed.to_string()]);
    demo(&["produce", clean_dir, &seed.to_string()]);
    let reference = demo(&["run", clean_dir, "--until-caught-up"]);

    let mut rng = Rng(seed);
    let mut last = 0u64;
    for cycle in 0..20 {
        let mut child =
            Command::new(bin()).args(["run", killed_dir]).stdout(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait for a random number of poll rounds (the process keeps running meanwhile), then
        // kill it wherever it is.
        let rounds = rng.below(40);
        for _ in 0..rounds {
            let Some(Ok(line)) = lines.next() else { break };
            last = line.trim_start_matches("polled ").parse().unwrap_or(last);
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "cycle {cycle}: the child exited by itself");
        eprintln!("cycle {cycle}: killed after {rounds} rounds, {last} records");
    }
    assert!(last > 0, "no kill landed after processing started");
    let after = demo(&["run", killed_dir, "--until-caught-up"]);
    assert_eq!(digests(&after), digests(&reference));
    assert_eq!(digests(&after).len(), 3);

    let (got, want) = (outputs(killed.path()), outputs(clean.path()));
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (k, records) in &want {
        assert_eq!(got[k].len(), records.len(), "{k:?}: count");
        assert!(got[k] == *records, "{k:?}: records differ");
    }
}
