//! A real `eddy serve` process on an ephemeral port.
//!
//! [`BrokerProcess::start`] runs the `eddy` binary that cargo built next to the test executable
//! (`target/<profile>/eddy`) with `serve --data-dir DIR --listen 127.0.0.1:0 --kafka-listen
//! 127.0.0.1:0 --http-listen 127.0.0.1:0`, and waits — with a deadline, never a sleep — for
//! the `eddy listening on ADDR` line it prints once bound (after `eddy http listening on ADDR`
//! and `eddy kafka listening on ADDR`). Dropping
//! it kills the broker with SIGKILL; [`BrokerProcess::terminate`] asks it to stop with SIGTERM.
//!
//! The binary must be built before the tests run: `cargo test --workspace` does it (eddy-cli
//! has integration tests, so cargo builds its `eddy` binary); `cargo test -p eddy-tests` alone
//! does not, so run `cargo build -p eddy-cli` first.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::child::{ChildProcess, deadline_in};

/// Longest wait for the broker to print its address (a debug build recovering its topics).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the broker to exit after SIGTERM or SIGKILL.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

const LISTENING_PREFIX: &str = "eddy listening on ";
const KAFKA_LISTENING_PREFIX: &str = "eddy kafka listening on ";
const HTTP_LISTENING_PREFIX: &str = "eddy http listening on ";

/// A running `eddy serve`. Dropping it kills the process (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct BrokerProcess {
    child: ChildProcess,
    addr: SocketAddr,
    kafka_addr: SocketAddr,
    http_addr: SocketAddr,
    data_dir: PathBuf,
}

impl BrokerProcess {
    /// Starts `eddy serve` on `data_dir` and an ephemeral loopback port, with `extra_env` added
    /// to an environment from which every inherited `EDDY_*` variable (but `EDDY_LOG`) was
    /// removed, so a developer's settings cannot change a test. Panics, with the broker's
    /// stderr, if it does not come up within [`START_TIMEOUT`].
    pub fn start(data_dir: &Path, extra_env: &[(&str, &str)]) -> BrokerProcess {
        Self::start_with_args(data_dir, &[], extra_env)
    }

    /// [`start`](Self::start) with `args` added to `eddy serve`'s (for example `--config FILE`).
    pub fn start_with_args(
        data_dir: &Path,
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> BrokerProcess {
        let binary = eddy_binary();
        let mut command = Command::new(&binary);
        command.arg("serve").arg("--data-dir").arg(data_dir).args(["--listen", "127.0.0.1:0"]);
        command.args(args);
        command.args(["--kafka-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
        for (name, _) in std::env::vars_os() {
            let inherited_setting =
                name.to_str().is_some_and(|n| n.starts_with("EDDY_") && n != "EDDY_LOG");
            if inherited_setting {
                command.env_remove(&name);
            }
        }
        command.envs(extra_env.iter().copied());
        let mut child = ChildProcess::spawn_command(command)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let deadline = deadline_in(START_TIMEOUT);
        let (mut kafka_addr, mut http_addr) = (None, None);
        let addr = loop {
            match child.next_line(deadline) {
                Ok(Some(line)) => {
                    if let Some(addr) = line.strip_prefix(KAFKA_LISTENING_PREFIX) {
                        kafka_addr = addr.trim().parse::<SocketAddr>().ok();
                    } else if let Some(addr) = line.strip_prefix(HTTP_LISTENING_PREFIX) {
                        http_addr = addr.trim().parse::<SocketAddr>().ok();
                    } else if let Some(addr) = line.strip_prefix(LISTENING_PREFIX) {
                        break addr.trim().parse::<SocketAddr>().unwrap_or_else(|e| {
                            panic!("broker printed an unparsable address {line:?}: {e}")
                        });
                    }
                }
                Ok(None) => {
                    let status = child.wait();
                    panic!(
                        "broker exited before listening ({status:?}); stderr:\n{}",
                        child.stderr()
                    );
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!("broker did not print its address: {e}; stderr:\n{}", child.stderr());
                }
            }
        };
        let kafka_addr = kafka_addr.unwrap_or_else(|| {
            panic!("broker did not print its Kafka address; stderr:\n{}", child.stderr())
        });
        let http_addr = http_addr.unwrap_or_else(|| {
            panic!("broker did not print its HTTP address; stderr:\n{}", child.stderr())
        });
        BrokerProcess { child, addr, kafka_addr, http_addr, data_dir: data_dir.to_path_buf() }
    }

    /// The address of the broker's Kafka-protocol listener (`host:port` for Kafka clients).
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    /// The address of the broker's HTTP listener (metrics, health, the console).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The address the broker is listening on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The next line the broker prints on stdout after the listening lines (`eddy tls
    /// reloaded`, ...); `None` once stdout is closed. Fails if none arrives by `deadline`.
    pub fn next_line(&mut self, deadline: std::time::Instant) -> io::Result<Option<String>> {
        self.child.next_line(deadline)
    }

    /// Whether the process is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The exit status, if the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Resident set size of the broker, from `/proc/PID/status` (`VmRSS`).
    pub fn rss_bytes(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| io::Error::other("no VmRSS line in /proc/PID/status"))?;
        Ok(kib * 1024)
    }

    /// Sends SIGTERM (graceful shutdown) and waits up to [`EXIT_TIMEOUT`] for the process to
    /// exit. Panics, after a SIGKILL, if it does not.
    pub fn terminate(&mut self) -> ExitStatus {
        self.terminate_within(EXIT_TIMEOUT)
    }

    /// Like [`terminate`](Self::terminate) with a chosen deadline.
    pub fn terminate_within(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.exit_status() {
            return status;
        }
        signal(self.pid(), libc::SIGTERM)
            .unwrap_or_else(|e| panic!("cannot send SIGTERM to broker {}: {e}", self.pid()));
        self.wait_for_exit(timeout, "SIGTERM")
    }

    /// Kills the process with SIGKILL (no shutdown at all) and reaps it.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.exit_status() {
            return status;
        }
        signal(self.pid(), libc::SIGKILL)
            .unwrap_or_else(|e| panic!("cannot send SIGKILL to broker {}: {e}", self.pid()));
        self.wait_for_exit(EXIT_TIMEOUT, "SIGKILL")
    }

    /// Everything the broker wrote to stderr. Only call it once the process has exited.
    pub fn stderr(&mut self) -> String {
        self.child.stderr()
    }

    /// The process closes its stdout when it exits, so the end of stdout (which has a deadline)
    /// is the exit; reaping it afterwards cannot block.
    fn wait_for_exit(&mut self, timeout: Duration, after: &str) -> ExitStatus {
        let pid = self.pid();
        match self.child.remaining_lines(deadline_in(timeout)) {
            Ok(_) => self.child.wait().unwrap_or_else(|e| panic!("cannot reap broker {pid}: {e}")),
            Err(e) => {
                let _ = self.child.kill();
                panic!(
                    "broker {pid} still running {timeout:?} after {after} ({e}); stderr:\n{}",
                    self.child.stderr()
                );
            }
        }
    }
}

/// Sends `signal` to `pid`, which must be a child of ours that has not been reaped.
#[allow(unsafe_code)]
pub fn signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill(2) reads no memory of ours, it only takes two integers. The one hazard is
    // signalling the wrong process: callers pass the pid of a child they hold and have not yet
    // reaped (checked through `exit_status`), so the pid cannot have been reused.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// `target/<profile>/eddy`: the test executable runs from `target/<profile>/deps/`.
pub fn eddy_binary() -> PathBuf {
    let exe =
        std::env::current_exe().unwrap_or_else(|e| panic!("cannot locate the test binary: {e}"));
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("test binary {} is not in target/<profile>/deps", exe.display()));
    let binary = profile_dir.join(format!("eddy{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "the eddy binary is missing at {}: build it first with `cargo build -p eddy-cli` \
         (or run `cargo test --workspace`, which builds it)",
        binary.display()
    );
    binary
}
