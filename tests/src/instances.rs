//! `eddy processor run --kafka` instances as child processes, for the tests of processors over
//! a Kafka-protocol cluster (`tests/tests/cluster_*.rs`): starting one and reading its query
//! address, asking its pull queries through `eddy query`, the union of several instances'
//! tables, and waiting (with a deadline) for that union to equal a reference.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::broker::eddy_binary;
use crate::child::{ChildProcess, deadline_in};

/// One running instance and where it answers queries.
#[derive(Debug)]
pub struct InstanceProcess {
    pub child: ChildProcess,
    pub query_addr: String,
}

/// Starts `eddy processor run SPEC --kafka KAFKA --state-dir STATE` (snapshots every 1,500
/// records, progress every second, `extra` arguments after) and waits for its query address.
pub fn start_instance(spec: &Path, kafka: &str, state: &Path, extra: &[&str]) -> InstanceProcess {
    let mut command = Command::new(eddy_binary());
    command
        .args(["processor", "run"])
        .arg(spec)
        .args(["--kafka", kafka, "--snapshot-every", "1500", "--progress-ms", "1000"])
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .env("EDDY_LOG", "info");
    start_command(command)
}

/// Starts `command` (an `eddy processor run` or `eddy sql run`) and waits for the line that
/// names its query address (`...: queries on ADDR`).
pub fn start_command(command: Command) -> InstanceProcess {
    let mut child =
        ChildProcess::spawn_command(command).unwrap_or_else(|e| panic!("starting eddy: {e}"));
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

/// `eddy --broker ADDR query TABLE ARGS...`: (key, count) rows, or the error line.
pub fn query(addr: &str, table: &str, args: &[&str]) -> Result<Vec<(String, u64)>, String> {
    let out = Command::new(eddy_binary())
        .args(["--broker", addr, "query", table])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running eddy query: {e}"));
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

/// The union of the instances' scans of `table`, and whether any key was in two of them.
pub fn union(
    instances: &[&InstanceProcess],
    table: &str,
) -> Result<(BTreeMap<String, u64>, bool), String> {
    let mut all = BTreeMap::new();
    let mut twice = false;
    for i in instances {
        for (k, v) in query(&i.query_addr, table, &["--scan"])? {
            twice |= all.insert(k, v).is_some();
        }
    }
    Ok((all, twice))
}

/// Waits up to `limit` until the union of `instances`' `table`s equals `expected` with no key
/// twice; panics with a summary otherwise.
pub fn wait_for_reference(
    instances: &[&InstanceProcess],
    table: &str,
    expected: &BTreeMap<String, u64>,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    let mut backoff = Duration::from_millis(100);
    loop {
        let last = union(instances, table);
        if let Ok((got, false)) = &last
            && got == expected
        {
            return;
        }
        if Instant::now() >= deadline {
            let summary = last.map(|(got, twice)| {
                let total: u64 = got.values().sum();
                format!("{} keys, total {total}, a key twice: {twice}", got.len())
            });
            let want: u64 = expected.values().sum();
            panic!("not caught up: {summary:?}; want {} keys, total {want}", expected.len());
        }
        std::thread::park_timeout(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// The child's exit status, waited for up to `limit` (then it is killed and the test fails).
pub fn wait_exit(child: &mut ChildProcess, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("waiting: {e}")) {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("instance did not exit within {limit:?}; stderr:\n{}", child.stderr());
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}
