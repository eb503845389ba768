//! The broker's HTTP listener from a test: plain HTTP/1.1 requests over a blocking socket with
//! deadlines, and its `/metrics` parsed by real Prometheus parsers — `promtool check metrics`
//! (Debian's `prometheus` package) and prometheus_client's parser in Python (the venv
//! `./scripts/test` makes). A missing tool fails the test with a message naming it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::kafka_clients::{repo_root, run_to_end, venv_dir};

/// Longest one request may take.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(30);

/// An answer: status code, headers (lower-cased names), body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// `METHOD path` with `body` (JSON when given), answered within [`REQUEST_LIMIT`].
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_LIMIT)?;
    stream.set_read_timeout(Some(REQUEST_LIMIT))?;
    stream.set_write_timeout(Some(REQUEST_LIMIT))?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw).ok_or_else(|| {
        std::io::Error::other(format!("not an HTTP answer: {:?}", String::from_utf8_lossy(&raw)))
    })
}

/// `GET path`, which must answer.
pub fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, None).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// An HTTP/1.1 answer read to its end (chunked bodies joined), or `None` if it is not one.
pub fn parse(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers.get("transfer-encoding").is_some_and(|t| t == "chunked") {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Some(Answer { status, headers, body })
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

/// One sample of a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A scrape, parsed.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// The value of the sample `name` whose labels include every pair of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
            .map(|s| s.value)
    }

    /// Every sample named `name`.
    pub fn all(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

/// The venv's python with prometheus_client importable; panics naming what to install.
pub fn python_with(module: &str) -> PathBuf {
    let python = venv_dir().join("bin").join("python");
    assert!(
        python.is_file(),
        "no Python venv at {} (it needs {module}); run ./scripts/test, which makes it",
        venv_dir().display()
    );
    let mut check = Command::new(&python);
    check.args(["-c", &format!("import {module}")]);
    let out = run_to_end(check, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "the venv's python cannot import {module} ({}); run ./scripts/test, which installs it",
        out.stderr.trim()
    );
    python
}

/// `promtool`, from Debian's `prometheus` package; panics naming it when missing.
pub fn promtool() -> PathBuf {
    crate::kafka_clients::on_path("promtool").unwrap_or_else(|| {
        panic!("promtool is missing (Debian package `prometheus`); run ./scripts/test, which installs it")
    })
}

/// Scrapes `/metrics` and parses it twice: `promtool check metrics` must accept it, and
/// prometheus_client's parser gives the samples.
pub fn scrape(addr: SocketAddr) -> Scrape {
    let answer = get(addr, "/metrics");
    assert_eq!(answer.status, 200, "GET /metrics: {answer:?}");
    let text = answer.body;
    let promtool = promtool();
    let checked = pipe(Command::new(&promtool).args(["check", "metrics"]), &text);
    assert!(checked.0, "promtool check metrics refused the scrape: {}\n{text}", checked.1);
    let python = python_with("prometheus_client");
    let script = repo_root().join("tests").join("observe").join("parse_metrics.py");
    let (ok, out) = pipe(Command::new(&python).arg(&script), &text);
    assert!(ok, "prometheus_client could not parse the scrape: {out}\n{text}");
    let samples = out
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let labels = v["labels"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            Sample {
                name: v["name"].as_str().unwrap_or_default().to_string(),
                labels,
                value: v["value"].as_f64().unwrap_or(f64::NAN),
            }
        })
        .collect();
    Scrape { samples }
}

/// Runs `program ARGS... < FILE` (through `sh`) with `input` in a temporary file, to the end
/// within a minute; (success, stdout followed by stderr).
fn pipe(command: &mut Command, input: &str) -> (bool, String) {
    let file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("temporary file: {e}"));
    std::fs::write(file.path(), input).unwrap_or_else(|e| panic!("temporary file: {e}"));
    let mut shell = Command::new("sh");
    shell.arg("-c").arg("f=\"$1\"; shift; exec \"$@\" < \"$f\"").arg("sh").arg(file.path());
    shell.arg(command.get_program()).args(command.get_args());
    let out = run_to_end(shell, Duration::from_secs(60));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), out.stderr);
    (out.status.success(), text)
}
