//! Helpers shared by the processor tests (and eddy-sql's, which include this file by path):
//! producing into and reading back from `LocalLogs`.
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
            for rec in batch.records().unwrap().iter() {
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

/// The latest value of each key in a changelog-style topic (what compaction would keep).
pub fn latest_by_key(records: &[Out]) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let mut map = std::collections::BTreeMap::new();
    for r in records {
        let Some(k) = &r.key else { continue };
        match &r.value {
            Some(v) => map.insert(k.clone(), v.clone()),
            None => map.remove(k),
        };
    }
    map
}

/// A small deterministic generator (SplitMix64), so tests need no RNG crate and replay by seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Seed from `EDDY_SEED` or a default, printed so a failure replays.
pub fn seed(default: u64) -> u64 {
    let seed = std::env::var("EDDY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    eprintln!("seed = {seed} (set EDDY_SEED to replay)");
    seed
}

/// Opens every task of `processor` on this thread and polls them until all have read their
/// input to the end. Returns the tables and each task's counters.
pub fn run_to_end(
    processor: &eddy_processor::Processor,
    logs: Arc<dyn LogAccess>,
    config: &eddy_processor::TaskConfig,
) -> (Arc<eddy_processor::TableRegistry>, Vec<eddy_processor::TaskMetrics>) {
    let ids = processor.prepare(&*logs).unwrap();
    let registry = eddy_processor::TableRegistry::new();
    let mut tasks: Vec<_> = ids
        .iter()
        .map(|id| processor.open_task(logs.clone(), *id, config.clone(), &registry).unwrap())
        .collect();
    poll_to_end(&mut tasks);
    let metrics = tasks.iter().map(|t| t.metrics()).collect();
    (registry, metrics)
}

/// Polls `tasks` until none makes progress and all are caught up.
pub fn poll_to_end(tasks: &mut [eddy_processor::Task]) {
    loop {
        let mut progressed = false;
        for t in tasks.iter_mut() {
            progressed |= t.poll().unwrap() > 0;
        }
        if !progressed && tasks.iter().all(|t| t.caught_up().unwrap()) {
            return;
        }
    }
}
