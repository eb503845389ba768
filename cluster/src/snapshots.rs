//! Task snapshots kept in the cluster, so that a task that moves to another instance starts
//! from its latest snapshot there.
//!
//! The topic `<processor>-<version>-snapshots` is compacted and has one partition per task
//! partition; task (sub, p)'s snapshots go to partition p. A snapshot (the file the task wrote,
//! byte for byte, `docs/processors.md` "Snapshots") is cut into chunks of at most
//! [`CHUNK_BYTES`] (a Kafka record is limited to about 1 MB by default) and appended as one
//! batch: the chunks, keyed `task-<sub>-<p>/<i>`, then a manifest keyed `task-<sub>-<p>`
//! holding the chunk count, the length and the CRC-32 of the whole.
//!
//! Invariants:
//! - A snapshot is published only after the task wrote it, and a task writes one only after
//!   flushing its outputs, so a published snapshot never claims outputs the cluster lacks.
//! - [`SnapshotTopic::latest`] returns, per task, the last snapshot whose manifest matches
//!   the chunks before it (length and CRC): a publication cut short by a crash is skipped, and
//!   the one before it (or none: the task replays from zero, which positions make exact) is
//!   used. Any snapshot a task ever wrote is a valid starting point: recovery finds the outputs
//!   written after it by their positions, whoever wrote them.

use std::collections::{BTreeMap, HashMap};

use eddy_processor::{LogAccess, LogError, Processor, TaskId};
use eddy_storage::{BatchBuilder, Batches, Record};

/// Bytes of a snapshot per record.
pub const CHUNK_BYTES: usize = 512 << 10;
/// Bytes read per request while scanning the topic.
const READ_BYTES: usize = 4 << 20;

/// Why a snapshot could not be published or fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("snapshot batch for {task}: {source}")]
    Batch {
        task: TaskId,
        #[source]
        source: eddy_storage::BatchError,
    },
    #[error("{topic}-{partition} at {offset}: a damaged batch: {source}")]
    Damaged {
        topic: String,
        partition: u32,
        offset: u64,
        #[source]
        source: eddy_storage::BatchError,
    },
}

/// The snapshot topic of one processor version.
#[derive(Debug, Clone)]
pub struct SnapshotTopic {
    topic: String,
}

pub(crate) fn task_key(id: TaskId) -> String {
    format!("task-{}-{}", id.subtopology, id.partition)
}

impl SnapshotTopic {
    pub fn of(processor: &Processor) -> Self {
        Self { topic: format!("{}-{}-snapshots", processor.name(), processor.version()) }
    }

    pub fn name(&self) -> &str {
        &self.topic
    }

    /// Creates the topic (compacted, `partitions` partitions) unless it exists.
    pub fn create(&self, logs: &dyn LogAccess, partitions: u32) -> Result<(), LogError> {
        logs.create_topic(&self.topic, partitions, true)
    }

    /// Appends `snapshot` (the bytes of task `id`'s snapshot file) as chunks and a manifest.
    /// Returns the manifest's offset.
    pub fn publish(
        &self,
        logs: &dyn LogAccess,
        id: TaskId,
        snapshot: &[u8],
    ) -> Result<u64, SnapshotError> {
        let key = task_key(id);
        let chunks: Vec<&[u8]> = snapshot.chunks(CHUNK_BYTES).collect();
        let keys: Vec<String> = (0..chunks.len()).map(|i| format!("{key}/{i}")).collect();
        let mut builder = BatchBuilder::new();
        for (chunk, k) in chunks.iter().zip(&keys) {
            builder.push(Record {
                timestamp: 0,
                key: Some(k.as_bytes()),
                value: Some(chunk),
                headers: &[],
            });
        }
        let manifest = Manifest {
            chunks: chunks.len() as u32,
            len: snapshot.len() as u64,
            crc: crc32fast::hash(snapshot),
        }
        .encode();
        builder.push(Record {
            timestamp: 0,
            key: Some(key.as_bytes()),
            value: Some(&manifest),
            headers: &[],
        });
        let batch =
            builder.build_valid().map_err(|source| SnapshotError::Batch { task: id, source })?;
        let appended = logs.append(&self.topic, id.partition, &batch)?;
        logs.flush(&self.topic, id.partition)?;
        Ok(appended.last_offset)
    }

    /// The latest complete snapshot of every task with partition `partition`, by task.
    pub fn latest(
        &self,
        logs: &dyn LogAccess,
        partition: u32,
    ) -> Result<BTreeMap<String, Vec<u8>>, SnapshotError> {
        let end = logs.end_offset(&self.topic, partition)?;
        let mut next = logs.start_offset(&self.topic, partition)?;
        let mut chunks: HashMap<String, Vec<u8>> = HashMap::new();
        let mut found = BTreeMap::new();
        while next < end {
            let bytes = logs.read(&self.topic, partition, next, READ_BYTES)?;
            if bytes.is_empty() {
                break;
            }
            let damaged = |offset, source| SnapshotError::Damaged {
                topic: self.topic.clone(),
                partition,
                offset,
                source,
            };
            for batch in Batches::new(&bytes) {
                let batch = batch.map_err(|e| damaged(next, e))?;
                let records = batch.records().map_err(|e| damaged(batch.base_offset(), e))?;
                for r in records.iter() {
                    let r = r.map_err(|e| damaged(batch.base_offset(), e))?;
                    next = next.max(r.offset + 1);
                    let (Some(key), Some(value)) = (r.key, r.value) else { continue };
                    let key = String::from_utf8_lossy(key).into_owned();
                    match key.split_once('/') {
                        Some(_) => {
                            chunks.insert(key, value.to_vec());
                        }
                        None => {
                            if let Some(snapshot) = assemble(&key, value, &chunks) {
                                found.insert(key, snapshot);
                            }
                        }
                    }
                }
                next = next.max(batch.last_offset() + 1);
            }
        }
        Ok(found)
    }
}

/// What a manifest says of the snapshot its chunks make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Manifest {
    chunks: u32,
    len: u64,
    crc: u32,
}

impl Manifest {
    fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&self.chunks.to_le_bytes());
        out[4..12].copy_from_slice(&self.len.to_le_bytes());
        out[12..].copy_from_slice(&self.crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Manifest> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        let (chunks, rest) = bytes.split_first_chunk::<4>()?;
        let (len, crc) = rest.split_first_chunk::<8>()?;
        let crc: [u8; 4] = crc.try_into().ok()?;
        Some(Manifest {
            chunks: u32::from_le_bytes(*chunks),
            len: u64::from_le_bytes(*len),
            crc: u32::from_le_bytes(crc),
        })
    }
}

/// The snapshot manifest `value` describes, from the latest chunks seen, if they match it.
fn assemble(key: &str, value: &[u8], chunks: &HashMap<String, Vec<u8>>) -> Option<Vec<u8>> {
    let manifest = Manifest::decode(value)?;
    let mut out = Vec::with_capacity(usize::try_from(manifest.len).ok()?);
    for i in 0..manifest.chunks {
        out.extend_from_slice(chunks.get(&format!("{key}/{i}"))?);
    }
    (out.len() as u64 == manifest.len && crc32fast::hash(&out) == manifest.crc).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_round_trips_and_rejects_other_lengths() {
        let m = Manifest { chunks: 3, len: 1_234_567, crc: 0xdead_beef };
        assert_eq!(Manifest::decode(&m.encode()), Some(m));
        assert_eq!(Manifest::decode(&m.encode()[..15]), None);
    }

    #[test]
    fn chunks_that_do_not_match_their_manifest_are_no_snapshot() {
        let whole = b"abcdefgh".to_vec();
        let m = Manifest { chunks: 2, len: 8, crc: crc32fast::hash(&whole) }.encode();
        let mut chunks = HashMap::new();
        chunks.insert("task-0-1/0".to_owned(), b"abcd".to_vec());
        assert_eq!(assemble("task-0-1", &m, &chunks), None, "a chunk missing");
        chunks.insert("task-0-1/1".to_owned(), b"efgX".to_vec());
        assert_eq!(assemble("task-0-1", &m, &chunks), None, "a chunk from another snapshot");
        chunks.insert("task-0-1/1".to_owned(), b"efgh".to_vec());
        assert_eq!(assemble("task-0-1", &m, &chunks), Some(whole));
    }
}
