//! Broker memory as the log grows: the resident memory of a real `eddy serve` process while
//! `--records` records of `--record-bytes` are produced to it over TCP.
//!
//! The broker is the release `eddy` binary next to this one (`target/release/eddy`), started as
//! a child with a temporary data directory and `--listen 127.0.0.1:0`, so its resident memory
//! is its own and not the load generator's. One producer sends batches of `--batch` records
//! (`send_batch`, acks=written) to a one-partition topic. After each tenth of the records the
//! producer is flushed (every batch acknowledged) and `/proc/PID/status` of the broker is read:
//!
//! - `RssAnon`: the broker's own memory (heap, stacks) — what the goal is about;
//! - `RssFile`: file pages mapped into the broker (its binary, mapped sealed segments and
//!   indexes) — page cache, reported apart and not counted as the broker's own;
//! - `VmRSS`, the sum, and `VmHWM`, its peak.
//!
//! The goal (issue 4): `RssAnon` after the whole run (default 5.12 GB of values) within 10 % of
//! `RssAnon` after the first tenth (0.512 GB). Each of `--runs` runs (default 3) starts a fresh
//! broker; the rows are those of the run with the median ratio, and the last row gives that
//! ratio with every run's beside it. The op columns time one `send_batch` call (it waits when
//! the producer's buffer is full, so a stalled broker shows there).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use eddy_client::{
    Acks, Admin, Connection, ConnectionOptions, Producer, ProducerConfig, ProducerRecord,
    TopicConfig,
};

use crate::report::{Row, Timing};
use crate::workload::Options;

const TOPIC: &str = "memory";
/// Samples after each tenth of the records.
const SAMPLES: u64 = 10;
/// The goal: RssAnon at the end at most this many times RssAnon after the first tenth.
const GOAL: f64 = 1.10;
/// Longest wait for the broker to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the whole workload (every run) may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Log bytes per record beyond its value (record and batch framing), for the disk check.
const OVERHEAD_PER_RECORD: u64 = 64;

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let binary = eddy_binary(opts)?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut runs = Vec::new();
    for _ in 0..opts.runs {
        let dir = opts.tempdir()?;
        ensure_room(dir.path(), opts.records * (opts.record_bytes as u64 + OVERHEAD_PER_RECORD))?;
        let broker = BrokerChild::start(&binary, dir.path(), TOPIC)?;
        runs.push(runtime.block_on(produce_and_sample(&broker, opts, deadline))?);
    }
    // The run with the median end / first-tenth ratio, and every run's ratio beside it.
    let ratio = |rows: &Vec<Row>| rows.last().and_then(|r| r.ratio).unwrap_or(f64::NAN);
    let each: Vec<String> = runs.iter().map(|r| format!("{:.2}", ratio(r))).collect();
    runs.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let mut rows = runs.swap_remove(runs.len() / 2);
    if let Some(summary) = rows.pop() {
        rows.push(
            summary.note("ratio per run, in run order (this is the median run)", each.join(" / ")),
        );
    }
    Ok(rows)
}

/// One run: the rows of its samples, then a summary row whose ratio is RssAnon at the end over
/// RssAnon after the first tenth.
async fn produce_and_sample(
    broker: &BrokerChild,
    opts: &Options,
    deadline: Instant,
) -> Result<Vec<Row>> {
    let conn = Arc::new(Connection::connect(&broker.addr, ConnectionOptions::default()).await?);
    let admin = Admin::new(conn.clone());
    admin
        .create_topic(TOPIC, TopicConfig { partitions: Some(1), ..TopicConfig::default() })
        .await?;
    let config = ProducerConfig {
        acks: Acks::Written,
        batch_bytes: opts.batch * (opts.record_bytes + 16) + 64,
        linger: Duration::from_millis(5),
        request_bytes: 8 << 20,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(conn, config)?;
    let value = Bytes::from(vec![b'x'; opts.record_bytes]);
    let started = Status::read(broker.pid)?;
    let mut rows =
        vec![started.row("broker at start, empty log", 0, opts.record_bytes, &Timing::new())];
    let mut first: Option<(String, Status)> = None;
    let mut last = started;
    let mut sent = 0u64;
    for sample in 1..=SAMPLES {
        let until = opts.records * sample / SAMPLES;
        let from = sent;
        let mut timing = Timing::new();
        let start = Instant::now();
        let mut pending = Vec::new();
        while sent < until {
            ensure!(Instant::now() < deadline, "the runs took longer than {RUN_TIMEOUT:?}");
            let n = (until - sent).min(opts.batch as u64);
            let t = Instant::now();
            let records = (0..n).map(|_| ProducerRecord::value(value.clone()));
            pending.push(producer.send_batch(TOPIC, Some(0), records).await?);
            timing.record(t.elapsed());
            sent += n;
        }
        producer.flush().await?;
        for delivery in pending {
            delivery.await?;
        }
        timing.finish(start.elapsed());
        let status = Status::read(broker.pid)?;
        last = status;
        let gb = sent as f64 * opts.record_bytes as f64 / 1e9;
        let name = format!("broker after {gb:.2} GB");
        // The rate columns are those of this tenth; the name says how much the log holds.
        let mut row = status.row(&name, sent - from, opts.record_bytes, &timing);
        match &first {
            None => first = Some((name, status)),
            Some((first_name, first_status)) => {
                row.baseline = Some(first_name.clone());
                row.ratio = Some(status.anon as f64 / first_status.anon as f64);
            }
        }
        rows.push(row.note("log on disk", format!("{:.2} GB", broker.log_bytes()? as f64 / 1e9)));
    }
    producer.close().await?;
    if let Some((first_name, first_status)) = &first {
        let ratio = last.anon as f64 / first_status.anon as f64;
        let verdict = if ratio <= GOAL {
            "met".to_string()
        } else {
            format!("missed by {:.0} %", (ratio / GOAL - 1.0) * 100.0)
        };
        let summary = Row::new("RssAnon, end / first tenth", 0, 0, &Timing::new());
        let summary = Row { baseline: Some(first_name.clone()), ratio: Some(ratio), ..summary };
        rows.push(
            summary
                .note("RssAnon after the first tenth", mib(first_status.anon))
                .note("RssAnon at the end", mib(last.anon))
                .note(&format!("goal <= {GOAL:.2}"), verdict),
        );
    }
    Ok(rows)
}

/// The memory lines of `/proc/PID/status`, in bytes.
#[derive(Debug, Clone, Copy)]
struct Status {
    anon: u64,
    file: u64,
    shmem: u64,
    rss: u64,
    hwm: u64,
    threads: u64,
}

impl Status {
    fn read(pid: u32) -> Result<Status> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        Status::parse(&text)
    }

    fn parse(text: &str) -> Result<Status> {
        let fields: HashMap<&str, u64> = text
            .lines()
            .filter_map(|l| {
                let (key, rest) = l.split_once(':')?;
                let value = match rest.trim().strip_suffix("kB") {
                    Some(kib) => kib.trim().parse::<u64>().ok()? * 1024,
                    None => rest.trim().parse::<u64>().ok()?,
                };
                Some((key, value))
            })
            .collect();
        let get = |k: &str| fields.get(k).copied().with_context(|| format!("no {k} in status"));
        Ok(Status {
            anon: get("RssAnon")?,
            file: get("RssFile")?,
            shmem: get("RssShmem")?,
            rss: get("VmRSS")?,
            hwm: get("VmHWM")?,
            threads: get("Threads")?,
        })
    }

    /// A row whose op columns time one `send_batch` call since the previous sample.
    fn row(&self, name: &str, records: u64, record_bytes: usize, timing: &Timing) -> Row {
        let bytes = records * record_bytes as u64;
        Row::new(name, records, bytes, timing)
            .note("RssAnon", mib(self.anon))
            .note("RssFile (mapped files: page cache)", mib(self.file))
            .note("RssShmem", mib(self.shmem))
            .note("VmRSS", mib(self.rss))
            .note("VmHWM", mib(self.hwm))
            .note("threads", self.threads)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Fails unless the filesystem of `dir` has room for a log of `need` bytes and 10 % more.
pub(crate) fn ensure_room(dir: &Path, need: u64) -> Result<()> {
    let free = free_bytes(dir)?;
    ensure!(
        free > need + need / 10,
        "{} has {:.1} GB free; the log needs about {:.1} GB (and 10 % to spare)",
        dir.display(),
        free as f64 / 1e9,
        need as f64 / 1e9
    );
    Ok(())
}

/// Free bytes for an unprivileged user on the filesystem of `dir`, from `df`.
fn free_bytes(dir: &Path) -> Result<u64> {
    let out = Command::new("df").args(["-Pk"]).arg(dir).output().context("running df")?;
    ensure!(out.status.success(), "df {} failed: {}", dir.display(), out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|f| f.parse().ok())
        .with_context(|| format!("unexpected df output {text:?}"))?;
    Ok(kib * 1024)
}

/// `--broker`, or `eddy` in the directory of this executable (both are built into
/// `target/release`).
pub(crate) fn eddy_binary(opts: &Options) -> Result<PathBuf> {
    if let Some(binary) = &opts.broker {
        ensure!(binary.is_file(), "--broker {} is not a file", binary.display());
        return Ok(binary.clone());
    }
    let exe = std::env::current_exe()?;
    let binary = exe.with_file_name(format!("eddy{}", std::env::consts::EXE_SUFFIX));
    if !binary.is_file() {
        bail!(
            "the broker binary is missing at {}: build it with `cargo build --release -p eddy-cli`",
            binary.display()
        );
    }
    Ok(binary)
}

/// A running `eddy serve`, killed (SIGKILL) and reaped on drop.
pub(crate) struct BrokerChild {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) addr: String,
    /// The Kafka listener's address, when `args` turned it on (`--kafka-listen`).
    pub(crate) kafka_addr: Option<String>,
    /// The HTTP listener's address, once [`BrokerChild::http_addr`] read it.
    http_addr: Option<String>,
    lines: mpsc::Receiver<String>,
    data_dir: PathBuf,
    topic: String,
}

impl BrokerChild {
    /// Starts `binary` on a data directory in `dir`; `topic` is the one whose partition 0
    /// [`BrokerChild::partition_dir`] names.
    pub(crate) fn start(binary: &Path, dir: &Path, topic: &str) -> Result<BrokerChild> {
        Self::start_with(binary, dir, topic, false)
    }

    /// [`BrokerChild::start`], with the HTTP listener (and so the broker's request meters) on
    /// an ephemeral port when `metrics` is set, off otherwise.
    pub(crate) fn start_with(
        binary: &Path,
        dir: &Path,
        topic: &str,
        metrics: bool,
    ) -> Result<BrokerChild> {
        Self::start_with_args(binary, dir, topic, metrics, &[], &[])
    }

    /// [`BrokerChild::start_with`], with `env` set (after every inherited `EDDY_*` setting is
    /// removed).
    pub(crate) fn start_with_env(
        binary: &Path,
        dir: &Path,
        topic: &str,
        metrics: bool,
        env: &[(&str, &str)],
    ) -> Result<BrokerChild> {
        Self::start_with_args(binary, dir, topic, metrics, &[], env)
    }

    /// [`BrokerChild::start_with`], with `args` added to `eddy serve`'s (`--config FILE`, or
    /// `--kafka-listen 127.0.0.1:0` instead of the default `off`) and `env` set (after every
    /// inherited `EDDY_*` setting is removed).
    pub(crate) fn start_with_args(
        binary: &Path,
        dir: &Path,
        topic: &str,
        metrics: bool,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<BrokerChild> {
        let data_dir = dir.join("data");
        let stderr = std::fs::File::create(dir.join("broker.stderr"))?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(["--http-listen", if metrics { "127.0.0.1:0" } else { "off" }])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        // A developer's EDDY_* settings must not change the measurement.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| n.starts_with("EDDY_") && n != "EDDY_LOG") {
                command.env_remove(&name);
            }
        }
        if !args.contains(&"--kafka-listen") {
            command.args(["--kafka-listen", "off"]);
        }
        command.envs(env.iter().copied());
        let mut child =
            command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("the broker's stdout")?;
        let (tx, rx) = mpsc::channel();
        // Reads every line the broker prints until it exits; ends with the pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut broker = BrokerChild {
            child,
            pid,
            addr: String::new(),
            kafka_addr: None,
            http_addr: None,
            lines: rx,
            data_dir,
            topic: topic.to_string(),
        };
        // The Kafka and HTTP listeners' lines may come before the native one's.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let line = broker.next_line(deadline, dir)?;
            if let Some(addr) = line.strip_prefix("eddy kafka listening on ") {
                broker.kafka_addr = Some(addr.trim().to_string());
            } else if let Some(addr) = line.strip_prefix("eddy http listening on ") {
                broker.http_addr = Some(addr.trim().to_string());
            } else if let Some(addr) = line.strip_prefix("eddy listening on ") {
                broker.addr = addr.trim().to_string();
                return Ok(broker);
            }
        }
    }

    /// The HTTP listener's address (started with `metrics`), waiting for the line that says it.
    pub(crate) fn http_addr(&mut self, dir: &Path) -> Result<String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while self.http_addr.is_none() {
            let line = self.next_line(deadline, dir)?;
            if let Some(addr) = line.strip_prefix("eddy http listening on ") {
                self.http_addr = Some(addr.trim().to_string());
            }
        }
        self.http_addr.clone().context("the HTTP listener's address")
    }

    /// The broker's next line on stdout, by `deadline` (its stderr, in `dir`, in the error).
    fn next_line(&self, deadline: Instant, dir: &Path) -> Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines.recv_timeout(left).map_err(|e| {
            let log = std::fs::read_to_string(dir.join("broker.stderr")).unwrap_or_default();
            anyhow::anyhow!("the broker did not print its addresses ({e}); stderr:\n{log}")
        })
    }

    /// The directory of the topic's partition 0.
    pub(crate) fn partition_dir(&self) -> PathBuf {
        self.data_dir.join("topics").join(&self.topic).join("0")
    }

    /// Bytes of the partition's segment files.
    fn log_bytes(&self) -> Result<u64> {
        let dir = self.partition_dir();
        let mut total = 0;
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "log") {
                total += std::fs::metadata(&path)?.len();
            }
        }
        Ok(total)
    }
}

impl Drop for BrokerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_bytes() {
        let text = "Name:\teddy\nVmHWM:\t  2048 kB\nVmRSS:\t  1536 kB\nRssAnon:\t  1024 kB\n\
                    RssFile:\t   512 kB\nRssShmem:\t     0 kB\nThreads:\t4\n";
        let s = Status::parse(text).expect("parses");
        assert_eq!(
            (s.anon, s.file, s.shmem, s.rss, s.hwm, s.threads),
            (1 << 20, 512 << 10, 0, 1536 << 10, 2 << 20, 4)
        );
        assert!(Status::parse("Name:\teddy\n").is_err());
    }
}
