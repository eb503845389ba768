//! Helpers shared by the SQL tests: producing into and reading back from `LocalLogs` (the
//! part of eddy-processor's test helpers these tests use).
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

use std::sync::Arc;

use eddy_processor::{LocalLogs, LogAccess, POSITION_HEADER, Position};
use eddy_storage::{BatchBuilder, Batches, LogConfig, Record};

pub fn open_logs(dir: &std::path::Path) -> Arc<LocalLogs> {
    let config = LogConfig { segment_bytes: 1 << 20, ..LogConfig::default() };
    Arc::new(LocalLogs::open(dir, config).unwrap())
}

/// One record to produce: key, value, timestamp.
pub type In = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

/// Appends `records` to `topic`/`partition` in batches of `batch` records.
pub fn produce(logs: &dyn LogAccess, topic: &str, partition: u32, records: &[In], batch: usize) {
    for chunk in records.chunks(batch.max(1)) {
        let mut b = BatchBuilder::new();
        for (k, v, ts) in chunk {
            b.push(Record { timestamp: *ts, key: k.as_deref(), value: v.as_deref(), headers: &[] });
        }
        logs.append(topic, partition, &b.build_valid().unwrap()).unwrap();
    }
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub offset: u64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub ts: i64,
    pub pos: Option<Position>,
}

pub fn read_all(logs: &dyn LogAccess, topic: &str, partition: u32) -> Vec<Out> {
    let mut out = Vec::new();
    let mut next = logs.start_offset(topic, partition).unwrap();
    let end = logs.end_offset(topic, partition).unwrap();
    while next < end {
        let bytes = logs.read(topic, partition, next, 1 << 20).unwrap();
        for batch in Batches::new(&bytes) {
            let batch = batch.unwrap();
            for rec in batch.records() {
                let rec = rec.unwrap();
                if rec.offset < next {
                    continue;
                }
                let pos = rec
                    .headers()
                    .find(|h| h.key == POSITION_HEADER)
                    .and_then(|h| h.value)
                    .and_then(Position::decode);
                out.push(Out {
                    offset: rec.offset,
                    key: rec.key.map(|k| k.to_vec()),
                    value: rec.value.map(|v| v.to_vec()),
                    ts: rec.timestamp,
                    pos,
                });
            }
            next = batch.last_offset() + 1;
        }
    }
    out
}

/// Every record of every partition of `topic`, partition by partition.
pub fn read_topic(logs: &dyn LogAccess, topic: &str) -> Vec<Out> {
    let count = logs.partition_count(topic).unwrap();
    (0..count).flat_map(|p| read_all(logs, topic, p)).collect()
}

/// Seed from `EDDY_SEED` or a default, printed so a failure replays.
pub fn seed(default: u64) -> u64 {
    let seed = std::env::var("EDDY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    eprintln!("seed = {seed} (set EDDY_SEED to replay)");
    seed
}
