//! The `eddy` binary as a user runs it: usage, one-line errors, and the data directory lock.
//!
//! (Having integration tests also makes cargo build `target/<profile>/eddy` before any test of
//! the workspace runs, which the end-to-end tests in `eddy-tests` rely on.)

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const EDDY: &str = env!("CARGO_BIN_EXE_eddy");
/// Longest a command may run: a command that should fail at once but serves instead must fail
/// the test, not hang it.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `eddy args` to completion, killing it if it outlives [`TIMEOUT`].
fn eddy(args: &[&str]) -> Output {
    let mut child = spawn(args, Stdio::piped());
    let stdout = read_to_end(child.stdout.take().expect("stdout is piped"));
    let stderr = read_to_end(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + TIMEOUT;
    let outputs = [stdout, stderr]
        .map(|r| r.recv_timeout(deadline.saturating_duration_since(Instant::now())));
    let [Ok(stdout), Ok(stderr)] = outputs else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("eddy {args:?} still running after {TIMEOUT:?}");
    };
    Output { status: child.wait().expect("reap eddy"), stdout, stderr }
}

fn spawn(args: &[&str], stderr: Stdio) -> Child {
    Command::new(EDDY)
        .args(args)
        .env_remove("EDDY_LISTEN")
        .env_remove("EDDY_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start the eddy binary")
}

/// Everything `pipe` yields until it closes, delivered through a channel (so waits have deadlines).
fn read_to_end(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = send.send(text);
    });
    receive
}

fn stderr_line(output: &Output) -> &str {
    let stderr = &output.stderr;
    assert_eq!(stderr.lines().count(), 1, "stderr is not one line: {stderr:?}");
    assert!(stderr.starts_with("eddy: "), "stderr does not start with \"eddy: \": {stderr:?}");
    stderr
}

#[test]
fn help_prints_usage_and_exits_zero() {
    let output = eddy(&["--help"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = output.stdout;
    assert!(stdout.starts_with("usage: eddy"), "{stdout}");
    assert!(stdout.contains("serve"), "{stdout}");
}

#[test]
fn bad_listen_address_is_one_line_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let output = eddy(&["serve", "--data-dir", data_dir, "--listen", "nowhere"]);
    assert!(!output.status.success(), "{output:?}");
    let line = stderr_line(&output);
    assert!(line.contains("nowhere"), "the message does not name the bad value: {line:?}");
}

#[test]
fn second_broker_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let mut first = spawn(
        &[
            "serve",
            "--data-dir",
            data_dir,
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "off",
            "--http-listen",
            "off",
        ],
        Stdio::null(),
    );
    // Wait (with a deadline, through a reader thread) until the first broker is listening: it
    // holds the lock by then.
    let stdout = first.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    let listening = lines.recv_timeout(TIMEOUT);
    let second = eddy(&[
        "serve",
        "--data-dir",
        data_dir,
        "--listen",
        "127.0.0.1:0",
        "--kafka-listen",
        "off",
        "--http-listen",
        "off",
    ]);
    let _ = first.kill();
    let _ = first.wait();

    let listening = listening.unwrap().unwrap();
    assert!(listening.starts_with("eddy listening on 127.0.0.1:"), "{listening:?}");
    assert!(!second.status.success(), "{second:?}");
    let line = stderr_line(&second);
    assert!(line.contains("in use"), "the message does not say the directory is in use: {line:?}");
}
