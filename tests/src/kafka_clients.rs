//! Real Kafka clients as processes: kcat, and the programs in `tests/kafka-clients/` run with
//! confluent-kafka and kafka-python (in the venv `./scripts/test` makes at
//! `target/kafka-clients/venv`) and kafkajs (installed by `./scripts/test` with npm into
//! `tests/kafka-clients/node_modules`).
//!
//! A program that is missing fails the test that needs it with a message naming what to
//! install; nothing is skipped. [`run_to_end`] runs a client to completion with a deadline and
//! keeps its stdout byte for byte; [`merge_stderr`] wraps a command so that its stderr arrives
//! on stdout, for a long-running client watched line by line through
//! [`ChildProcess`](crate::child::ChildProcess) (kcat reports rebalances on stderr).

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

/// The repository's root (the parent of the `tests` crate).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `tests/kafka-clients/`: the client programs, `package.json` and `node_modules`.
pub fn clients_dir() -> PathBuf {
    repo_root().join("tests").join("kafka-clients")
}

/// The venv `./scripts/test` makes for confluent-kafka and kafka-python.
pub fn venv_dir() -> PathBuf {
    repo_root().join("target").join("kafka-clients").join("venv")
}

fn missing(what: &str, detail: &str) -> String {
    format!(
        "{what} is missing ({detail}); the Kafka client tests need it and are not skipped: \
         run ./scripts/test, which installs it (and then runs the tests)"
    )
}

/// The venv's python, once it is known to import confluent_kafka and kafka (kafka-python).
/// Panics, naming what to install, if it does not.
pub fn venv_python() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let python = venv_dir().join("bin").join("python");
        if !python.is_file() {
            let detail = format!("no Python venv at {}", venv_dir().display());
            return Err(missing("the Python venv with confluent-kafka and kafka-python", &detail));
        }
        let check = "import confluent_kafka, kafka; \
                     print(confluent_kafka.version()[0], kafka.__version__)";
        let out = run_to_end(
            {
                let mut c = Command::new(&python);
                c.args(["-c", check]);
                c
            },
            Duration::from_secs(60),
        );
        if !out.status.success() {
            let detail = format!("{} cannot import them: {}", python.display(), out.stderr.trim());
            return Err(missing("confluent-kafka or kafka-python", &detail));
        }
        Ok(python)
    });
    found.clone().unwrap_or_else(|e| panic!("{e}"))
}

/// `node`, once `tests/kafka-clients/node_modules/kafkajs` is there. Panics, naming what to
/// install, if either is missing.
pub fn node() -> PathBuf {
    let node = on_path("node")
        .unwrap_or_else(|| panic!("{}", missing("node (Node.js 20)", "no `node` on PATH")));
    let kafkajs = clients_dir().join("node_modules").join("kafkajs").join("package.json");
    assert!(
        kafkajs.is_file(),
        "{}",
        missing("kafkajs", &format!("no {}; npm installs it", kafkajs.display()))
    );
    node
}

/// `kcat`. Panics, naming the Debian package, if it is not on PATH.
pub fn kcat() -> PathBuf {
    on_path("kcat")
        .unwrap_or_else(|| panic!("{}", missing("kcat (Debian package kcat)", "no `kcat` on PATH")))
}

/// The first executable file called `name` in a directory of PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| {
        use std::os::unix::fs::PermissionsExt;
        candidate.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// `python tests/kafka-clients/SCRIPT` with the venv's python (no bytecode written into the
/// source tree).
pub fn python_client(script: &str) -> Command {
    let mut command = Command::new(venv_python());
    command.arg(clients_dir().join(script)).env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

/// `node tests/kafka-clients/kafkajs_client.mjs`.
pub fn kafkajs_client() -> Command {
    let mut command = Command::new(node());
    command.arg(clients_dir().join("kafkajs_client.mjs"));
    command.env("KAFKAJS_NO_PARTITIONER_WARNING", "1");
    command
}

/// `kcat -b BOOTSTRAP`, with the system's librdkafka: `cargo test` puts the build directory of
/// rdkafka-sys (a librdkafka built without OpenSSL, for eddy-bench) on `LD_LIBRARY_PATH`, where
/// kcat would find it first and refuse `security.protocol=ssl`.
pub fn kcat_command(bootstrap: &str) -> Command {
    let mut command = Command::new(kcat());
    command.env_remove("LD_LIBRARY_PATH").args(["-b", bootstrap]);
    command
}

/// `command` run as `sh -c 'exec "$0" "$@" 2>&1'`: the same process (exec keeps the pid, so
/// signals reach it) with its stderr sent to its stdout.
pub fn merge_stderr(command: &Command) -> Command {
    let mut merged = Command::new("/bin/sh");
    merged.args(["-c", "exec \"$0\" \"$@\" 2>&1"]);
    merged.arg(command.get_program()).args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => merged.env(name, value),
            None => merged.env_remove(name),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        merged.current_dir(dir);
    }
    merged
}

/// What a client left when it finished.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Its stdout, byte for byte.
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// The command, for messages.
    pub what: String,
}

impl Finished {
    /// The stdout of a run that must have succeeded; panics with its stderr otherwise.
    pub fn ok(&self) -> &[u8] {
        assert!(
            self.status.success(),
            "{} failed ({}); stdout (end):\n{}\nstderr:\n{}",
            self.what,
            self.status,
            tail(&String::from_utf8_lossy(&self.stdout), 4000),
            tail(&self.stderr, 8000)
        );
        &self.stdout
    }
}

/// The last `max` bytes of `text` (at a character boundary).
pub fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A readable description of `command`.
pub fn describe(command: &Command) -> String {
    let mut words: Vec<OsString> = vec![command.get_program().to_os_string()];
    words.extend(command.get_args().map(OsString::from));
    words.iter().map(|w| w.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

/// Runs `command` (stdin closed) until it exits, which must be within `limit`: its stdout is
/// read to the end on a thread, and the end of stdout is waited for with a deadline (no
/// polling). Past the limit the process is killed and the test fails with its stderr.
pub fn run_to_end(mut command: Command, limit: Duration) -> Finished {
    let what = describe(&command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        panic!("{what}: no stdout or stderr pipe");
    };
    let (send, done) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let result = stdout.read_to_end(&mut bytes).map(|_| bytes);
        let _ = send.send(result);
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    });
    match done.recv_timeout(limit) {
        Ok(Ok(stdout)) => {
            let status = child.wait().unwrap_or_else(|e| panic!("cannot reap {what}: {e}"));
            let stderr = stderr_reader.join().unwrap_or_default();
            Finished { status, stdout, stderr, what }
        }
        Ok(Err(e)) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: reading its stdout: {e}");
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr_reader.join().unwrap_or_default();
            panic!("{what} did not finish within {limit:?}; stderr:\n{}", tail(&stderr, 8000));
        }
    }
}
