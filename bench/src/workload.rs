//! Command-line options shared by the workloads, and the records they write.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use eddy_storage::{BatchBuilder, Record, ValidBatch};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// Records per run.
    pub records: u64,
    /// Value size of each record.
    pub record_bytes: usize,
    /// Records per batch.
    pub batch: usize,
    /// Repetitions of each measurement; the table shows the median run.
    pub runs: usize,
    /// Concurrent appenders (group-commit workload).
    pub threads: usize,
    /// Where files are written (a temporary directory under it).
    pub dir: Option<PathBuf>,
    pub json: Option<PathBuf>,
    /// Producer acknowledgement: written, durable or none.
    pub acks: String,
    /// Records per second for the e2e workload.
    pub rate: u64,
    /// How the produce workload hands records to the producer: `record` (one `send` each) or
    /// `batch` (one `send_batch` of `--batch` records).
    pub api: String,
    /// Whether the producer numbers its batches (and so keeps one batch in flight per
    /// partition); `acks = none` turns it off regardless.
    pub idempotent: bool,
    /// Records per batch at each point of the batch-sweep workload.
    pub batches: Vec<usize>,
    /// Partitions of the topic the produce workload writes (records spread round-robin).
    pub partitions: u32,
    /// The sql workload's form to run once, alone and unmeasured (`rust` or `sql`), for
    /// profilers and instruction counters.
    pub only: Option<String>,
    /// Record counts and sizes the kafka workload runs, each `RECORDSxBYTES`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shapes: Vec<(u64, usize)>,
    /// The `eddy` binary the memory and rolls workloads start (default: the one beside this
    /// one), e.g. an older build to compare with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<PathBuf>,
    /// Where the produce workload's TCP broker runs: `thread` (served from this process, beside
    /// the embedded runs) or `process` (a child `eddy serve`, beside a loopback TCP copy).
    pub server: String,
    /// Whether `produce --server process` consumes what it produced (off: a produce-only run,
    /// for profilers).
    pub consume: bool,
    /// Whether the broker counts requests for `/metrics` (`--metrics on|off`): `process` starts
    /// `eddy serve` with `--http-listen 127.0.0.1:0` or `off`; `thread` sets `http_listen` in
    /// the broker's config the same way (which is what switches its meters on or off).
    pub metrics: bool,
    /// Wrong authentication attempts of the auth-flood workload.
    pub attempts: u64,
    /// Idle connections the conn-flood workload opens on each listener from one address.
    pub idle: u64,
    /// Half-open handshakes the conn-flood workload holds on each listener.
    pub half_open: u64,
    /// Whether the conn-flood workload tries refused connections again (a connection storm).
    pub retry_refused: bool,
}

impl Options {
    /// Parses the flags of `workload`, whose defaults may differ from the others' (the replay
    /// workload rebuilds from 10,000,000 lines once; the query workload appends at 20,000/s).
    pub fn parse(workload: &str, mut args: impl Iterator<Item = String>) -> Result<Self> {
        let mut o = Options {
            records: 1_000_000,
            record_bytes: 100,
            batch: 1000,
            runs: 7,
            threads: 8,
            dir: None,
            json: None,
            acks: "written".into(),
            rate: 10_000,
            api: "record".into(),
            idempotent: true,
            batches: vec![1, 10, 100, 1000, 10_000],
            partitions: 1,
            only: None,
            shapes: Vec::new(),
            broker: None,
            server: "thread".into(),
            consume: true,
            metrics: true,
            attempts: 10_000,
            idle: 5_000,
            half_open: 1_000,
            retry_refused: false,
        };
        match workload {
            "replay" => (o.records, o.runs) = (10_000_000, 1),
            "query" => (o.records, o.rate) = (100_000, 20_000),
            "consume" => o.runs = 3,
            // 5,000,000 records of 1 KiB: 5.12 GB of values.
            "memory" => (o.records, o.record_bytes, o.runs) = (5_000_000, 1024, 3),
            "batch-sweep" => o.runs = 3,
            // 5,000 quiet produces, then produces for as long as 10,000 wrong attempts from 64
            // connections at once last; once.
            "auth-flood" => (o.records, o.runs, o.threads) = (5_000, 1, 64),
            // 5,000 sessions on each listener quiet, then 5,000 under the flood (about 30 s:
            // the flood's held connections meet their handshake deadline and come back); once.
            "conn-flood" => (o.records, o.runs) = (5_000, 1),
            // 10,000 changes from 4 sessions, three runs.
            "cdc" => (o.records, o.runs, o.threads) = (10_000, 3, 4),
            // 32,000,000 records of 100 B at 1,000,000/s: a 3.5 GB log, three rolls of 1 GiB.
            "rolls" => (o.records, o.rate, o.runs) = (32_000_000, 1_000_000, 1),
            // Kafka's acks=1 cannot be idempotent in librdkafka, so neither side is by default.
            "kafka" => {
                (o.runs, o.idempotent) = (5, false);
                o.shapes = vec![(1_000_000, 100), (300_000, 1024)];
            }
            _ => {}
        }
        while let Some(flag) = args.next() {
            let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--records" => o.records = value()?.parse()?,
                "--record-bytes" => o.record_bytes = value()?.parse()?,
                "--batch" => o.batch = value()?.parse()?,
                "--runs" => o.runs = value()?.parse()?,
                "--threads" => o.threads = value()?.parse()?,
                "--dir" => o.dir = Some(value()?.into()),
                "--json" => o.json = Some(value()?.into()),
                "--acks" => o.acks = value()?,
                "--rate" => o.rate = value()?.parse()?,
                "--api" => o.api = value()?,
                "--idempotent" => o.idempotent = value()?.parse()?,
                "--partitions" => o.partitions = value()?.parse()?,
                "--only" => o.only = Some(value()?),
                "--broker" => o.broker = Some(value()?.into()),
                "--server" => o.server = value()?,
                "--consume" => o.consume = value()?.parse()?,
                "--attempts" => o.attempts = value()?.parse()?,
                "--idle" => o.idle = value()?.parse()?,
                "--half-open" => o.half_open = value()?.parse()?,
                "--retry-refused" => o.retry_refused = value()?.parse()?,
                "--metrics" => {
                    o.metrics = match value()?.as_str() {
                        "on" => true,
                        "off" => false,
                        other => bail!("--metrics {other:?}: expected on or off"),
                    }
                }
                "--shapes" => {
                    o.shapes = value()?
                        .split(',')
                        .map(|shape| {
                            let (records, bytes) = shape.trim().split_once('x')?;
                            Some((records.parse().ok()?, bytes.parse().ok()?))
                        })
                        .collect::<Option<_>>()
                        .context("--shapes: a comma-separated list of RECORDSxBYTES")?;
                }
                "--batches" => {
                    o.batches = value()?
                        .split(',')
                        .map(|b| b.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .context("--batches: a comma-separated list of batch sizes")?;
                }
                other => bail!("unknown option {other}"),
            }
        }
        let zero_batch = o.batches.is_empty() || o.batches.contains(&0);
        if o.batch == 0
            || o.records == 0
            || o.runs == 0
            || o.threads == 0
            || o.rate == 0
            || o.partitions == 0
        {
            bail!(
                "--records, --batch, --runs, --threads, --rate and --partitions must be positive"
            );
        }
        if o.shapes.iter().any(|&(records, _)| records == 0) {
            bail!("--shapes must list positive record counts");
        }
        if o.server != "thread" && o.server != "process" {
            bail!("--server {:?}: expected thread or process", o.server);
        }
        if zero_batch {
            bail!("--batches must list positive batch sizes");
        }
        Ok(o)
    }

    pub fn tempdir(&self) -> Result<tempfile::TempDir> {
        match &self.dir {
            Some(dir) => Ok(tempfile::tempdir_in(dir)?),
            None => Ok(tempfile::tempdir()?),
        }
    }
}

/// `count` batches of `per_batch` records with `value_bytes`-byte values and 8-byte keys,
/// built once so that eddy and the baseline write exactly the same bytes.
pub fn batches(total_records: u64, per_batch: usize, value_bytes: usize) -> Vec<ValidBatch> {
    let mut value = vec![0u8; value_bytes];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for b in value.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    let count = total_records.div_ceil(per_batch as u64);
    (0..count)
        .map(|i| {
            let mut builder = BatchBuilder::with_capacity(per_batch * (value_bytes + 24));
            for j in 0..per_batch as u64 {
                let n = i * per_batch as u64 + j;
                let key = n.to_le_bytes();
                builder.push(Record {
                    timestamp: 1_700_000_000_000 + n as i64,
                    key: Some(&key),
                    value: Some(&value),
                    headers: &[],
                });
            }
            builder.build_valid().expect("a batch with records is valid")
        })
        .collect()
}

/// Unkeyed records (event time, value) in batches of `per_batch`, the last one shorter.
pub fn value_batches<V: AsRef<[u8]>>(
    records: impl IntoIterator<Item = (i64, V)>,
    per_batch: usize,
) -> Result<Vec<ValidBatch>> {
    let (mut batches, mut builder) = (Vec::new(), BatchBuilder::new());
    for (timestamp, value) in records {
        builder.push(Record { timestamp, key: None, value: Some(value.as_ref()), headers: &[] });
        if builder.record_count() as usize >= per_batch {
            batches.push(std::mem::take(&mut builder).build_valid()?);
        }
    }
    if !builder.is_empty() {
        batches.push(builder.build_valid()?);
    }
    Ok(batches)
}

/// The `url-counts` spec (the example of `broker/src/processors/spec/mod.rs`) that the
/// processor, replay and query workloads deploy: requests per URL of topic `access-log`, with
/// `threads` tasks, its changes written to `output` when given.
pub fn url_counts_spec(threads: u32, output: Option<&str>) -> String {
    let to = output.map(|t| format!("[[ops]]\nop = \"to\"\ntopic = \"{t}\"\n")).unwrap_or_default();
    let key_by = "[[ops]]\nop = \"key_by\"\nfield = \"url\"\n";
    url_counts(threads, "url = 7, status = 9, time = \"4-5\"", key_by, &to)
}

/// The per-URL count of lines already keyed by URL: no `key_by` (the table is keyed by the
/// record's key), so a topic of several partitions needs no repartition — each task counts its
/// own partition's URLs.
pub fn url_counts_by_key_spec(threads: u32) -> String {
    url_counts(threads, "time = \"4-5\"", "", "")
}

/// A `url-counts` spec: `fields` picks `fields`, event time from `time`, then the `key_by` op
/// (if any), the count, and the `to` op (if any).
fn url_counts(threads: u32, fields: &str, key_by: &str, to: &str) -> String {
    format!(
        r#"name = "url-counts"
version = 1
source = {{ topic = "access-log", format = "text" }}
threads = {threads}

[[ops]]
op = "fields"
fields = {{ {fields} }}
[[ops]]
op = "event_time"
field = "time"
format = "clf"
{key_by}[[ops]]
op = "aggregate"
table = "requests-per-url"
fn = "count"
{to}"#
    )
}
