//! The child process: its line protocol, and a driver that reads its output with deadlines.
//!
//! The child writes one line per event on stdout and flushes it:
//!
//! ```text
//! ack <base_offset> <last_offset> <batch_seed>   an append returned Ok
//! nospace <error>                                an append failed with Error::NoSpace
//! error <error>                                  anything else went wrong (the child exits)
//! ```

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An acknowledged append: the batch with seed `seed` is at `[base_offset, last_offset]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub base_offset: u64,
    pub last_offset: u64,
    pub seed: u64,
}

impl fmt::Display for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ack {} {} {}", self.base_offset, self.last_offset, self.seed)
    }
}

/// One line of the child's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildLine {
    Ack(Ack),
    NoSpace(String),
    Error(String),
    /// Anything the protocol does not know.
    Unknown(String),
}

impl ChildLine {
    pub fn parse(line: &str) -> ChildLine {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "ack" => {
                parse_ack(rest).map_or_else(|| ChildLine::Unknown(line.to_owned()), ChildLine::Ack)
            }
            "nospace" => ChildLine::NoSpace(rest.to_owned()),
            "error" => ChildLine::Error(rest.to_owned()),
            _ => ChildLine::Unknown(line.to_owned()),
        }
    }
}

fn parse_ack(rest: &str) -> Option<Ack> {
    let mut fields = rest.split(' ').map(str::parse::<u64>);
    let base_offset = fields.next()?.ok()?;
    let last_offset = fields.next()?.ok()?;
    let seed = fields.next()?.ok()?;
    if fields.next().is_some() {
        return None;
    }
    Some(Ack { base_offset, last_offset, seed })
}

/// A running child whose stdout lines arrive through a reader thread, so every wait for
/// output has a deadline, and whose stderr is collected for failure messages. Dropping it kills
/// the child.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    lines: Receiver<String>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<String>>,
    status: Option<ExitStatus>,
}

impl ChildProcess {
    /// Starts `program` with `args`, stdin closed and stdout and stderr piped.
    pub fn spawn<I, S>(program: &Path, args: I) -> io::Result<ChildProcess>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(program);
        command.args(args);
        ChildProcess::spawn_command(command)
    }

    /// Starts `command` (program, arguments and environment already set), with stdin closed
    /// and stdout and stderr piped.
    pub fn spawn_command(mut command: Command) -> io::Result<ChildProcess> {
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("child has no stdout or stderr pipe"));
        };
        let (send, lines) = mpsc::channel();
        let stdout_reader = std::thread::Builder::new()
            .name("child-stdout".into())
            .spawn(move || forward_lines(stdout, &send))?;
        let stderr_reader =
            std::thread::Builder::new().name("child-stderr".into()).spawn(move || {
                let mut text = Vec::new();
                let _ = stderr.read_to_end(&mut text);
                String::from_utf8_lossy(&text).into_owned()
            })?;
        Ok(ChildProcess {
            child,
            lines,
            stdout_reader: Some(stdout_reader),
            stderr_reader: Some(stderr_reader),
            status: None,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The next complete stdout line; `None` once stdout is closed. Fails with
    /// [`io::ErrorKind::TimedOut`] if no line arrives by `deadline`.
    pub fn next_line(&mut self, deadline: Instant) -> io::Result<Option<String>> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => Ok(Some(line)),
            Err(RecvTimeoutError::Disconnected) => {
                if let Some(reader) = self.stdout_reader.take() {
                    let _ = reader.join();
                }
                Ok(None)
            }
            Err(RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no output from child {} in time", self.child.id()),
            )),
        }
    }

    /// Every stdout line left until stdout closes, which must happen by `deadline`.
    pub fn remaining_lines(&mut self, deadline: Instant) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        while let Some(line) = self.next_line(deadline)? {
            lines.push(line);
        }
        Ok(lines)
    }

    /// Kills the child with SIGKILL (a no-op if it already exited) and reaps it.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        self.child.kill()?;
        self.wait()
    }

    /// The exit status if the child has exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let status = self.child.try_wait()?;
        self.status = status;
        Ok(status)
    }

    /// Whether the child has been reaped (after which its pid may belong to another process).
    pub fn has_exited(&self) -> bool {
        self.status.is_some()
    }

    /// Waits for the child to exit. Call it once stdout is closed, so it cannot hang on a child
    /// that is still working.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }

    /// Everything the child wrote to stderr. Only call it after the child exited (it waits for
    /// stderr to close).
    pub fn stderr(&mut self) -> String {
        match self.stderr_reader.take() {
            Some(reader) => reader.join().unwrap_or_else(|_| "<stderr reader panicked>".to_owned()),
            None => String::new(),
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends each complete line (newline stripped); a last line without its newline was cut short
/// by the child's death and is dropped: its event was never reported.
fn forward_lines(stdout: ChildStdout, send: &mpsc::Sender<String>) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.pop() != Some(b'\n') {
                    return;
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                if send.send(text).is_err() {
                    return;
                }
            }
        }
    }
}

/// A deadline `timeout` from now.
pub fn deadline_in(timeout: Duration) -> Instant {
    Instant::now() + timeout
}
