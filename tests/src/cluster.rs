//! Shared pieces of the tests of eddy's processors over a Kafka-protocol cluster
//! (`tests/tests/cluster_*.rs`): the access log and its `awk` reference, lines appended
//! through any [`LogAccess`], the `url-counts` spec, and the check that an output topic holds
//! each result once.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use eddy_processor::{LogAccess, POSITION_HEADER, Position};
use eddy_storage::{BatchBuilder, Batches, Record};

/// The per-URL count over topic `input` (text lines), into table `requests`, each new count
/// written to `output`. `key_by` on a multi-partition source repartitions by URL.
pub fn url_counts_spec(input: &str, output: &str) -> String {
    format!(
        r#"name = "url-counts"
version = 1
source = {{ topic = "{input}", format = "text" }}
[[ops]]
op = "fields"
fields = {{ url = 7 }}
[[ops]]
op = "key_by"
field = "url"
[[ops]]
op = "aggregate"
table = "requests"
fn = "count"
[[ops]]
op = "to"
topic = "{output}"
"#
    )
}

/// Writes `lines` access-log lines (`eddy_processor::sample::access_log`) to `path` and
/// returns them.
pub fn write_access_log(path: &Path, lines: u64, seed: u64) -> Vec<String> {
    let mut bytes = Vec::new();
    eddy_processor::sample::access_log::generate(&mut bytes, lines, 6, seed)
        .unwrap_or_else(|e| panic!("generating the access log: {e}"));
    std::fs::write(path, &bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    String::from_utf8(bytes)
        .unwrap_or_else(|e| panic!("the access log is not UTF-8: {e}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `awk '{print $7}' FILE | sort | uniq -c`, as URL -> count.
pub fn awk_counts(paths: &[&Path]) -> BTreeMap<String, u64> {
    let files: Vec<String> = paths.iter().map(|p| format!("'{}'", p.display())).collect();
    let script = format!("cat {} | awk '{{print $7}}' | sort | uniq -c", files.join(" "));
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (n, url) = l.trim().split_once(' ').unwrap_or_else(|| panic!("awk line {l:?}"));
            (url.to_owned(), n.parse().unwrap_or_else(|e| panic!("awk count {n:?}: {e}")))
        })
        .collect()
}

/// Appends `lines` to `topic` through `logs`, `per_batch` lines a batch, the batches dealt
/// round-robin over `partitions` partitions (starting at `first`); timestamps `ts0 + i`.
pub fn append_lines(
    logs: &dyn LogAccess,
    topic: &str,
    partitions: u32,
    lines: &[String],
    per_batch: usize,
    ts0: i64,
) {
    for (b, chunk) in lines.chunks(per_batch.max(1)).enumerate() {
        let mut builder = BatchBuilder::new();
        for (i, line) in chunk.iter().enumerate() {
            let ts = ts0 + (b * per_batch + i) as i64;
            builder.push(Record {
                timestamp: ts,
                key: None,
                value: Some(line.as_bytes()),
                headers: &[],
            });
        }
        let batch = builder.build_valid().unwrap_or_else(|e| panic!("building a batch: {e}"));
        let partition = b as u32 % partitions;
        logs.append(topic, partition, &batch)
            .unwrap_or_else(|e| panic!("appending to {topic}-{partition}: {e}"));
    }
}

/// One record read back: where it is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Every record of `topic`/`partition` from `from` to its end, read `max_bytes` at a time;
/// checks that each read moves on (a record, or an empty batch over offsets a committed reader
/// skips: transaction markers, aborted records).
pub fn read_partition(
    logs: &dyn LogAccess,
    topic: &str,
    partition: u32,
    from: u64,
    max_bytes: usize,
) -> Vec<ReadRecord> {
    let end = logs.end_offset(topic, partition).unwrap_or_else(|e| panic!("{topic}: {e}"));
    let mut next = from;
    let mut out = Vec::new();
    while next < end {
        let bytes = logs
            .read(topic, partition, next, max_bytes)
            .unwrap_or_else(|e| panic!("reading {topic}-{partition} at {next}: {e}"));
        assert!(!bytes.is_empty(), "{topic}-{partition}: empty read at {next} below end {end}");
        let before = next;
        let mut covered = next;
        for batch in Batches::new(&bytes) {
            let batch = batch.unwrap_or_else(|e| panic!("{topic}-{partition}: bad batch: {e}"));
            covered = covered.max(batch.last_offset() + 1);
            let records = batch.records().unwrap_or_else(|e| panic!("records: {e}"));
            for r in records.iter() {
                let r = r.unwrap_or_else(|e| panic!("record: {e}"));
                if r.offset < next {
                    continue;
                }
                out.push(ReadRecord {
                    partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.map(Bytes::copy_from_slice),
                    value: r.value.map(Bytes::copy_from_slice),
                    headers: r
                        .headers()
                        .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
                        .collect(),
                });
            }
        }
        next = covered.max(out.last().map_or(next, |r| r.offset + 1));
        assert!(next > before, "{topic}-{partition}: a read at {before} did not move on");
    }
    out
}

/// Checks that `records` (one topic, all partitions, in offset order per partition) hold each
/// result once: per writer and partition, output positions strictly increase. Returns the
/// latest value per key, and how many records each writer wrote.
pub fn latest_once(records: &[ReadRecord]) -> (BTreeMap<String, String>, BTreeMap<u64, u64>) {
    let mut last: BTreeMap<(u64, u32), (u64, u32)> = BTreeMap::new();
    let mut per_writer: BTreeMap<u64, u64> = BTreeMap::new();
    let mut latest = BTreeMap::new();
    for r in records {
        let pos = r
            .headers
            .iter()
            .find(|(k, _)| k == POSITION_HEADER)
            .and_then(|(_, v)| v.as_deref().and_then(Position::decode))
            .unwrap_or_else(|| panic!("record at {}-{} has no position", r.partition, r.offset));
        if let Some(prev) = last.insert((pos.writer, r.partition), pos.order()) {
            assert!(
                pos.order() > prev,
                "writer {:#x} wrote position {:?} after {prev:?} at {}-{}: a result twice",
                pos.writer,
                pos.order(),
                r.partition,
                r.offset
            );
        }
        *per_writer.entry(pos.writer).or_default() += 1;
        let text =
            |b: &Option<Bytes>| String::from_utf8_lossy(b.as_deref().unwrap_or(b"")).into_owned();
        latest.insert(text(&r.key), text(&r.value));
    }
    (latest, per_writer)
}

/// Waits up to `limit` until `topic`'s latest value per key, read committed through `logs`,
/// equals `expected` (outputs become visible when their transaction commits, a moment after
/// the tables that produced them answer). Every look checks that each result is there once
/// ([`latest_once`]). Returns how many records each writer wrote.
pub fn wait_output(
    logs: &dyn LogAccess,
    topic: &str,
    expected: &BTreeMap<String, u64>,
    limit: std::time::Duration,
) -> BTreeMap<u64, u64> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let partitions = logs.partition_count(topic).unwrap_or_else(|e| panic!("{topic}: {e}"));
        let mut records = Vec::new();
        for p in 0..partitions {
            records.extend(read_partition(logs, topic, p, 0, 1 << 20));
        }
        let (latest, writers) = latest_once(&records);
        let latest: BTreeMap<String, u64> = latest
            .into_iter()
            .map(|(k, v)| {
                let n = v.parse().unwrap_or_else(|e| panic!("{topic}: value {v:?} of {k}: {e}"));
                (k, n)
            })
            .collect();
        if &latest == expected {
            return writers;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}: the latest value per key is not the reference ({} keys, want {})",
            latest.len(),
            expected.len()
        );
        std::thread::park_timeout(std::time::Duration::from_millis(100));
    }
}
