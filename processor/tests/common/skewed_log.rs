//! The input of the watermark tests (`processor/tests/watermarks.rs`,
//! `broker/tests/watermarks_spec.rs`, `broker/tests/watermarks_sql.rs`): an nginx access log
//! produced keyless over N partitions, dealt in batches round-robin, each partition's records in
//! event-time order give or take a few minutes (well inside the windows' grace), and the
//! reference count per (status, hour window) computed straight from the generated records.
//!
//! Every record is on time for its own partition, so after a repartition by status a correct
//! watermark leaves nothing late, however far one upstream task runs ahead of the others.
//!
//! Included by path beside `common` (it uses `common::Rng`).
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;

use eddy_processor::sample::access_log::{START_MS, format_time};

use crate::common::Rng;

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
/// The windows' grace (allowed lateness): 10 minutes.
pub const GRACE_MS: i64 = 10 * MINUTE_MS;
/// A record's event time is its place in the log's time line ± this, so within a partition no
/// record is more than 2 × JITTER_MS (6 minutes) behind one before it: less than the grace.
pub const JITTER_MS: i64 = 3 * MINUTE_MS;
const _: () = assert!(2 * JITTER_MS < GRACE_MS);
/// Records of 6 hours of event time, as in the issue.
pub const RECORDS: usize = 20_000;
pub const HOURS: i64 = 6;
/// Consecutive records dealt to one partition before the next partition's turn.
pub const BATCH: usize = 100;

/// One request of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Event time, whole seconds (CLF has no milliseconds), in ms.
    pub ts: i64,
    pub status: &'static str,
    pub url: String,
    pub ip: String,
    pub bytes: u64,
}

impl Request {
    /// The nginx "combined" line: awk's `$4-$5` is the time, `$9` the status.
    pub fn clf(&self) -> String {
        format!(
            "{} - - [{}] \"GET {} HTTP/1.1\" {} {} \"-\" \"curl/8.4.0\"",
            self.ip,
            format_time(self.ts),
            self.url,
            self.status,
            self.bytes
        )
    }

    /// The same request as a JSON object: `status` (text), `ts` (ms), `url`, `bytes`.
    pub fn json(&self) -> String {
        serde_json::json!({
            "status": self.status, "ts": self.ts, "url": self.url, "bytes": self.bytes,
        })
        .to_string()
    }
}

/// The requests one partition gets in one turn, in the order they are appended.
#[derive(Debug, Clone)]
pub struct Batch {
    pub partition: u32,
    pub requests: Vec<Request>,
}

/// `RECORDS` requests over `HOURS` hours from `START_MS`, dealt `BATCH` at a time to
/// `partitions` partitions round-robin; the batches in the order they were dealt.
pub fn generate(seed: u64, partitions: u32) -> Vec<Batch> {
    let mut rng = Rng(seed);
    let statuses: [(&str, u64); 6] =
        [("200", 70), ("304", 10), ("404", 8), ("301", 5), ("500", 5), ("503", 2)];
    let span = HOURS * HOUR_MS;
    let mut batches: Vec<Batch> = Vec::new();
    for i in 0..RECORDS {
        let base = START_MS + (i128::from(span) * i as i128 / RECORDS as i128) as i64;
        let jitter = rng.below(2 * JITTER_MS as u64 + 1) as i64 - JITTER_MS;
        let ts = (base + jitter).div_euclid(1000) * 1000;
        let mut pick = rng.below(100);
        let mut status = statuses[0].0;
        for (s, weight) in statuses {
            if pick < weight {
                status = s;
                break;
            }
            pick -= weight;
        }
        let request = Request {
            ts,
            status,
            url: format!("/page-{}.html", rng.below(50)),
            ip: format!("10.0.{}.{}", rng.below(256), 1 + rng.below(254)),
            bytes: 200 + rng.below(50_000),
        };
        if i % BATCH == 0 {
            let partition = ((i / BATCH) % partitions as usize) as u32;
            batches.push(Batch { partition, requests: Vec::with_capacity(BATCH) });
        }
        batches.last_mut().unwrap().requests.push(request);
    }
    batches
}

/// The requests of `partition`, in append order.
pub fn of_partition(batches: &[Batch], partition: u32) -> Vec<Request> {
    batches.iter().filter(|b| b.partition == partition).flat_map(|b| b.requests.clone()).collect()
}

/// The reference: requests per (status, start of its hour window), counted from the input.
pub fn expected(batches: &[Batch]) -> BTreeMap<(String, i64), u64> {
    let mut out = BTreeMap::new();
    for r in batches.iter().flat_map(|b| &b.requests) {
        *out.entry((r.status.to_owned(), r.ts.div_euclid(HOUR_MS) * HOUR_MS)).or_insert(0) += 1;
    }
    out
}

/// The largest lateness within any one partition (how far a record is behind the largest
/// event time before it in its partition): what the grace must cover, and does.
pub fn max_lateness_within_partitions(batches: &[Batch], partitions: u32) -> i64 {
    (0..partitions)
        .map(|p| {
            let mut max = i64::MIN;
            let mut worst = 0;
            for r in of_partition(batches, p) {
                max = max.max(r.ts);
                worst = worst.max(max - r.ts);
            }
            worst
        })
        .max()
        .unwrap_or(0)
}

/// Checks the outcome against the reference: no record late, and every (status, hour) count
/// equal to the input's. One message with the whole picture (late records, records counted,
/// windows that differ, a few examples) rather than a wall of map diff.
pub fn check(
    what: &str,
    late: u64,
    counts: &BTreeMap<(String, i64), u64>,
    expected: &BTreeMap<(String, i64), u64>,
) {
    let counted: u64 = counts.values().sum();
    let total: u64 = expected.values().sum();
    let keys: std::collections::BTreeSet<_> = counts.keys().chain(expected.keys()).collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| counts.get(*k) != expected.get(*k))
        .map(|k| {
            format!(
                "{} {}: counted {}, input has {}",
                k.0,
                format_time(k.1),
                counts.get(k).copied().unwrap_or(0),
                expected.get(k).copied().unwrap_or(0)
            )
        })
        .collect();
    eprintln!(
        "{what}: late = {late}; counted {counted} of {total} records; {} of {} (status, hour) \
         windows differ from the input",
        differ.len(),
        expected.len()
    );
    assert!(
        late == 0 && differ.is_empty(),
        "{what}: {late} of {total} records were counted late (expected 0); the windows hold \
         {counted} of {total}; {} of {} (status, hour) counts differ from the input, e.g. {:#?}",
        differ.len(),
        expected.len(),
        &differ[..differ.len().min(5)]
    );
}
