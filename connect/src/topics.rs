//! eddy's topics as connectors use them, through a [`LogAccess`]: [`Output`] appends keyed
//! records (partitioned by murmur2 of the key, as every eddy and Kafka producer does) and makes
//! them durable; [`read_from`] walks a partition for sinks; [`last_header`] reads one header of
//! a partition's last record (how the CDC source finds what it already wrote).
//!
//! Invariant: [`Output::sync`] returns only when every record appended since the last sync is
//! fsynced; a connector stores a position only after that.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use eddy_processor::{LogAccess, LogError, partition_for_key};
use eddy_storage::{BatchBuilder, Batches, Header, Record};

use crate::error::ConnectError;

/// One record to append.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
    /// `(name, value)` headers.
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

/// Batches appended at most this many records at a time.
const BATCH_RECORDS: usize = 2000;

fn storage(topic: &str, partition: u32, e: impl Into<eddy_storage::Error>) -> ConnectError {
    ConnectError::Log(LogError::Storage { topic: topic.to_string(), partition, source: e.into() })
}

/// Appends records to topics and syncs the partitions it touched.
#[derive(Debug)]
pub struct Output {
    logs: Arc<dyn LogAccess>,
    partitions: BTreeMap<String, u32>,
    touched: BTreeSet<(String, u32)>,
}

impl Output {
    pub fn new(logs: Arc<dyn LogAccess>) -> Output {
        Output { logs, partitions: BTreeMap::new(), touched: BTreeSet::new() }
    }

    pub fn logs(&self) -> &Arc<dyn LogAccess> {
        &self.logs
    }

    /// Creates `topic` with `partitions` unless it exists (then its own count is used).
    pub fn ensure_topic(&mut self, topic: &str, partitions: u32) -> Result<u32, ConnectError> {
        if let Some(n) = self.partitions.get(topic) {
            return Ok(*n);
        }
        let n = match self.logs.partition_count(topic) {
            Ok(n) => n,
            Err(LogError::UnknownTopic { .. }) => {
                self.logs.create_topic(topic, partitions, false)?;
                partitions
            }
            Err(e) => return Err(e.into()),
        };
        self.partitions.insert(topic.to_string(), n);
        Ok(n)
    }

    /// The partition `key` goes to in `topic` (0 without a key).
    pub fn partition_of(&mut self, topic: &str, key: Option<&[u8]>) -> Result<u32, ConnectError> {
        let n = self.ensure_topic(topic, 1)?;
        Ok(key.map_or(0, |k| partition_for_key(k, n)))
    }

    /// Appends `records` to `topic` in order (per partition), not yet synced.
    pub fn append(&mut self, topic: &str, records: &[OutRecord]) -> Result<(), ConnectError> {
        let mut by_partition: BTreeMap<u32, Vec<&OutRecord>> = BTreeMap::new();
        for r in records {
            let p = self.partition_of(topic, r.key.as_deref())?;
            by_partition.entry(p).or_default().push(r);
        }
        for (p, list) in by_partition {
            for chunk in list.chunks(BATCH_RECORDS) {
                self.append_batch(topic, p, chunk)?;
            }
            self.touched.insert((topic.to_string(), p));
        }
        Ok(())
    }

    fn append_batch(&self, topic: &str, p: u32, chunk: &[&OutRecord]) -> Result<(), ConnectError> {
        let headers: Vec<Vec<Header<'_>>> = chunk
            .iter()
            .map(|r| {
                r.headers
                    .iter()
                    .map(|(k, v)| Header { key: k.as_bytes(), value: Some(v) })
                    .collect()
            })
            .collect();
        let mut b = BatchBuilder::new();
        for (r, h) in chunk.iter().zip(&headers) {
            b.push(Record {
                timestamp: r.timestamp,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                headers: h,
            });
        }
        let batch = b.build_valid().map_err(|e| storage(topic, p, e))?;
        self.logs.append(topic, p, &batch)?;
        Ok(())
    }

    /// Fsyncs every partition appended to since the last sync.
    pub fn sync(&mut self) -> Result<(), ConnectError> {
        for (topic, p) in std::mem::take(&mut self.touched) {
            self.logs.flush(&topic, p)?;
        }
        Ok(())
    }
}

/// A record read back from a topic, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct InRecord {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// The records of `topic`/`partition` from `from`, about `max_bytes` of them; empty at the end.
pub fn read_from(
    logs: &dyn LogAccess,
    topic: &str,
    partition: u32,
    from: u64,
    max_bytes: usize,
) -> Result<Vec<InRecord>, ConnectError> {
    let from = from.max(logs.start_offset(topic, partition)?);
    if from >= logs.end_offset(topic, partition)? {
        return Ok(Vec::new());
    }
    let bytes = logs.read(topic, partition, from, max_bytes)?;
    let mut out = Vec::new();
    for batch in Batches::new(&bytes) {
        let batch = batch.map_err(|e| storage(topic, partition, e))?;
        let records = batch.records().map_err(|e| storage(topic, partition, e))?;
        for r in records.iter() {
            let r = r.map_err(|e| storage(topic, partition, e))?;
            if r.offset >= from {
                out.push(InRecord {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.map(<[u8]>::to_vec),
                    value: r.value.map(<[u8]>::to_vec),
                });
            }
        }
    }
    Ok(out)
}

/// Header `name` of the last record of `topic`/`partition` (`None`: empty, or no such header).
pub fn last_header(
    logs: &dyn LogAccess,
    topic: &str,
    partition: u32,
    name: &str,
) -> Result<Option<Vec<u8>>, ConnectError> {
    let end = logs.end_offset(topic, partition)?;
    if end == 0 || end <= logs.start_offset(topic, partition)? {
        return Ok(None);
    }
    let bytes = logs.read(topic, partition, end - 1, 1 << 20)?;
    let mut found = None;
    for batch in Batches::new(&bytes) {
        let batch = batch.map_err(|e| storage(topic, partition, e))?;
        let records = batch.records().map_err(|e| storage(topic, partition, e))?;
        for r in records.iter() {
            let r = r.map_err(|e| storage(topic, partition, e))?;
            if r.offset == end - 1 {
                found = r
                    .headers()
                    .find(|h| h.key == name.as_bytes())
                    .and_then(|h| h.value.map(<[u8]>::to_vec));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_processor::LocalLogs;

    #[test]
    fn appended_records_read_back_by_key_partition_with_headers() {
        let dir = tempfile::tempdir().unwrap();
        let logs: Arc<dyn LogAccess> =
            Arc::new(LocalLogs::open(dir.path(), eddy_storage::LogConfig::default()).unwrap());
        let mut out = Output::new(logs.clone());
        out.ensure_topic("t", 3).unwrap();
        let rec = |k: &str, pos: &str| OutRecord {
            key: Some(k.as_bytes().to_vec()),
            value: Some(b"{}".to_vec()),
            timestamp: 7,
            headers: vec![("pos", pos.as_bytes().to_vec())],
        };
        out.append("t", &[rec("a", "1"), rec("a", "2"), rec("b", "3")]).unwrap();
        out.sync().unwrap();
        let p = partition_for_key(b"a", 3);
        let read = read_from(&*logs, "t", p, 0, 1 << 20).unwrap();
        assert!(read.len() >= 2 && read.iter().all(|r| r.timestamp == 7));
        let last = last_header(&*logs, "t", p, "pos").unwrap();
        let expected = if partition_for_key(b"b", 3) == p { "3" } else { "2" };
        assert_eq!(last.as_deref(), Some(expected.as_bytes()));
        assert_eq!(read_from(&*logs, "t", p, 99, 1 << 20).unwrap(), vec![]);
    }
}
