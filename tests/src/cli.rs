//! Running the `eddy` CLI against a [`BrokerProcess`] to completion: stdout read line by line
//! with a deadline, stderr collected, no sleeps.

use std::process::Command;
use std::time::Duration;

use crate::broker::{BrokerProcess, eddy_binary};
use crate::child::{ChildProcess, deadline_in};

/// Longest one command may take.
pub const CLI_LIMIT: Duration = Duration::from_secs(120);

/// What a finished `eddy` command left behind.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: Vec<String>,
    pub stderr: String,
}

/// Runs `eddy --broker ADDR ARGS...` to completion.
pub fn eddy(broker: &BrokerProcess, args: &[&str]) -> Run {
    let mut command = Command::new(eddy_binary());
    command.arg("--broker").arg(broker.addr().to_string()).args(args);
    let mut child = ChildProcess::spawn_command(command)
        .unwrap_or_else(|e| panic!("cannot start eddy {args:?}: {e}"));
    let stdout = child
        .remaining_lines(deadline_in(CLI_LIMIT))
        .unwrap_or_else(|e| panic!("eddy {args:?}: {e}"));
    let status = child.wait().unwrap_or_else(|e| panic!("eddy {args:?}: {e}"));
    Run { success: status.success(), stdout, stderr: child.stderr() }
}

/// Runs a command that must succeed; returns its stdout lines.
pub fn eddy_ok(broker: &BrokerProcess, args: &[&str]) -> Vec<String> {
    let run = eddy(broker, args);
    assert!(run.success, "eddy {args:?} failed; stderr:\n{}", run.stderr);
    run.stdout
}

/// The one stderr line (`eddy: ...`) of a command that must fail.
pub fn eddy_fails(broker: &BrokerProcess, args: &[&str]) -> String {
    let run = eddy(broker, args);
    assert!(!run.success, "eddy {args:?} succeeded: {run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "eddy {args:?}: stderr not one line: {run:?}");
    assert!(run.stderr.starts_with("eddy: "), "eddy {args:?}: {:?}", run.stderr);
    run.stderr
}
