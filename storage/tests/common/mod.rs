//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use eddy_storage::{BatchBuilder, Batches, Header, Log, LogConfig, Record};

/// An owned record, for building batches and comparing what comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Rec {
    pub fn kv(timestamp: i64, key: &str, value: Option<&str>) -> Rec {
        Rec {
            timestamp,
            key: Some(key.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: vec![],
        }
    }
}

pub fn batch(records: &[Rec]) -> Vec<u8> {
    producer_batch(records, None)
}

/// A batch from idempotent producer `(id, epoch, base_sequence)`.
pub fn producer_batch(records: &[Rec], producer: Option<(i64, i16, i32)>) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    if let Some((id, epoch, seq)) = producer {
        b = b.producer(id, epoch, seq);
    }
    for r in records {
        let headers: Vec<Header<'_>> =
            r.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect();
        b.push(Record {
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &headers,
        });
    }
    b.finish()
}

/// Every record from `from` to the end, with its offset, reading `max_bytes` at a time.
pub fn read_all(log: &Log, from: u64, max_bytes: usize) -> Vec<(u64, Rec)> {
    let mut out = Vec::new();
    let mut next = from;
    while next < log.next_offset() {
        let bytes = log.read(next, max_bytes).unwrap();
        assert!(!bytes.is_empty(), "empty read at {next} below the end {}", log.next_offset());
        for batch in Batches::new(&bytes) {
            let batch = batch.unwrap();
            for r in batch.records().unwrap().iter() {
                let r = r.unwrap();
                if r.offset >= from {
                    out.push((r.offset, owned(&r)));
                }
            }
            next = batch.last_offset() + 1;
        }
    }
    out
}

pub fn owned(r: &eddy_storage::RecordView<'_>) -> Rec {
    Rec {
        timestamp: r.timestamp,
        key: r.key.map(<[u8]>::to_vec),
        value: r.value.map(<[u8]>::to_vec),
        headers: r.headers().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect(),
    }
}

/// Small segments and a dense index so a few kilobytes exercise rolls and index lookups.
pub fn small_config() -> LogConfig {
    LogConfig { segment_bytes: 4096, index_interval_bytes: 256, ..LogConfig::default() }
}

pub fn values(n: usize, ts: i64, size: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec {
            timestamp: ts + i as i64,
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(vec![b'a' + (i % 26) as u8; size]),
            headers: vec![],
        })
        .collect()
}
