//! What the transaction coordinator writes: an id's state to `__transaction_state`, the
//! markers that end a transaction in each of its partitions, and a committed transaction's
//! group offsets — and completing a transaction in that order. Each write is fsynced before
//! the next step, whatever the topic's flush policy: the order is what recovery relies on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use eddy_storage::{ControlType, Log, Marker};

use super::TXN_TOPIC;
use super::state::{Phase, TxnError, TxnMeta};
use crate::clock::now_ms;
use crate::error::BrokerError;
use crate::groups::Coordinator as Groups;
use crate::internal::{append_durable, for_each_record};
use crate::topics::Topics;

/// The coordinator's epoch on every marker: one broker, one coordinator, never moved.
const COORDINATOR_EPOCH: i32 = 0;

/// Every id's last state in `log`; ids whose last record is a tombstone are gone. A record
/// that does not decode is skipped with a warning (written by another build).
pub fn replay(log: &Log) -> Result<HashMap<String, TxnMeta>, BrokerError> {
    let mut states = HashMap::new();
    for_each_record(log, TXN_TOPIC, |offset, key, value| {
        let Some(id) = key.and_then(|k| std::str::from_utf8(k).ok()) else { return };
        match value.map(serde_json::from_slice::<TxnMeta>) {
            None => {
                states.remove(id);
            }
            Some(Ok(meta)) => {
                states.insert(id.to_string(), meta);
            }
            Some(Err(e)) => {
                tracing::warn!(offset, id, error = %e, "unreadable transaction state record skipped")
            }
        }
    })?;
    Ok(states)
}

/// The logs the coordinator writes to.
#[derive(Debug)]
pub struct Writer {
    /// `__transaction_state`, partition 0.
    pub log: Arc<Log>,
    pub topics: Arc<Topics>,
}

impl Writer {
    /// Appends `meta` as `id`'s state and fsyncs it.
    pub fn persist_blocking(&self, id: &str, meta: &TxnMeta) -> Result<(), BrokerError> {
        let value = serde_json::to_vec(meta).map_err(|e| BrokerError::TaskFailed {
            reason: format!("cannot encode transaction state: {e}"),
        })?;
        append_durable(&self.log, TXN_TOPIC, id.as_bytes(), Some(&value)).map(drop)
    }

    /// [`persist_blocking`](Self::persist_blocking) on a blocking thread.
    pub async fn persist(&self, id: &str, meta: &TxnMeta) -> Result<(), BrokerError> {
        let (log, topics) = (self.log.clone(), self.topics.clone());
        let (id, meta) = (id.to_string(), meta.clone());
        blocking(move || Writer { log, topics }.persist_blocking(&id, &meta)).await
    }

    /// Completes a transaction in a Prepare phase: markers, offsets (a commit), then the
    /// Complete phase, each on disk before the next.
    pub async fn complete(
        &self,
        groups: &Groups,
        id: &str,
        meta: &mut TxnMeta,
    ) -> Result<(), TxnError> {
        let marker = marker_of(meta);
        let partitions: Vec<(String, u32)> = meta.partitions.iter().cloned().collect();
        let topics = self.topics.clone();
        blocking(move || write_markers(&topics, &partitions, &marker)).await?;
        if meta.phase == Phase::PrepareCommit {
            for (group, offsets) in offsets_by_group(meta) {
                groups.serve_commit_for_transaction(&group, &offsets).await?;
            }
        }
        let mut done = meta.clone();
        done.complete();
        self.persist(id, &done).await?;
        *meta = done;
        Ok(())
    }

    /// [`complete`](Self::complete) on this thread (at open, before anything is served).
    pub fn complete_blocking(
        &self,
        groups: &Groups,
        id: &str,
        meta: &mut TxnMeta,
    ) -> Result<(), BrokerError> {
        write_markers(
            &self.topics,
            &meta.partitions.iter().cloned().collect::<Vec<_>>(),
            &marker_of(meta),
        )?;
        if meta.phase == Phase::PrepareCommit {
            for (group, offsets) in offsets_by_group(meta) {
                if let Some(upto) = groups.commit_for_transaction(&group, &offsets)? {
                    groups.log().sync_through(upto).map_err(|source| BrokerError::Storage {
                        topic: crate::groups::records::OFFSETS_TOPIC.into(),
                        partition: 0,
                        source,
                    })?;
                }
            }
        }
        meta.complete();
        self.persist_blocking(id, meta)?;
        tracing::info!(id, phase = ?meta.phase, "completed a transaction left half way by a restart");
        Ok(())
    }
}

/// The marker that ends `meta`'s transaction as its phase says.
fn marker_of(meta: &TxnMeta) -> Marker {
    let kind =
        if meta.phase == Phase::PrepareCommit { ControlType::Commit } else { ControlType::Abort };
    Marker {
        producer_id: meta.producer_id,
        producer_epoch: meta.producer_epoch,
        kind,
        coordinator_epoch: COORDINATOR_EPOCH,
        timestamp: now_ms(),
    }
}

/// The pending offsets of a transaction, by group, as the group coordinator takes them.
fn offsets_by_group(meta: &TxnMeta) -> BTreeMap<String, Vec<(String, u32, u64, String)>> {
    let mut by_group: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for o in &meta.offsets {
        by_group.entry(o.group.clone()).or_default().push((
            o.topic.clone(),
            o.partition,
            o.offset,
            o.metadata.clone(),
        ));
    }
    by_group
}

/// Appends `marker` to each partition and fsyncs it. A partition whose topic was deleted
/// meanwhile is skipped (its records went with it).
fn write_markers(
    topics: &Topics,
    partitions: &[(String, u32)],
    marker: &Marker,
) -> Result<(), BrokerError> {
    for (topic, partition) in partitions {
        let log = match topics.get(topic).and_then(|t| t.partition(*partition).cloned()) {
            Ok(log) => log,
            Err(e) => {
                tracing::warn!(topic, partition, error = %e, "no marker written: the partition is gone");
                continue;
            }
        };
        let storage =
            |source| BrokerError::Storage { topic: topic.clone(), partition: *partition, source };
        let info = log.append_marker(marker).map_err(storage)?;
        log.sync_through(info.last_offset + 1).map_err(storage)?;
    }
    topics.appended();
    Ok(())
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BrokerError::TaskFailed { reason: e.to_string() })?
}
