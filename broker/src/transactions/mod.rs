//! The transaction coordinator (Kafka's KIP-98 `TransactionCoordinator`, for the Kafka
//! listener): transactional ids, their producer ids and epochs, and the life of each
//! transaction — partitions and group offsets added, then committed or aborted by writing a
//! marker to every partition it touched.
//!
//! - [`state`]: one id's state and the rules of its transitions.
//! - `complete`: what is written — the id's record in `__transaction_state`, markers, the
//!   committed offsets — and the completion of a transaction, after a crash too.
//!
//! Invariants:
//! - Every change of an id's state is appended to the compacted internal topic
//!   `__transaction_state` (key: the id; value: [`state::TxnMeta`] as JSON) and fsynced before
//!   the request that made it is answered; at open the last record of each id is its state.
//! - A Prepare phase is on disk before any marker is written, and the Complete phase only
//!   after every marker (and, for a commit, every offset) is, so a transaction whose EndTxn
//!   was answered is complete in every partition, and one caught half way by a crash is
//!   completed at the next open.
//! - A transaction left Ongoing by a crash stays open (its partitions' last stable offsets
//!   stay where it began) until its producer ends it, a new producer with its id takes over
//!   (InitProducerId aborts it), or its timeout, counted from when it began, passes and the
//!   broker aborts it.
//! - One request of an id at a time: each id's state sits behind an async mutex, held while
//!   its records and markers are written, and by a transactional produce from its check until
//!   its batches are appended — so no batch lands after its transaction's marker.

pub(crate) mod complete;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use eddy_storage::Log;
use tokio::sync::OwnedMutexGuard;

use self::complete::{Writer, replay};
use self::state::{EndAction, PendingOffset, Phase, TxnError, TxnMeta};
use crate::clock::now_ms;
use crate::config::TransactionSettings;
use crate::error::BrokerError;
use crate::groups::Coordinator as Groups;
use crate::topics::Topics;

/// The internal topic that holds every transactional id's state.
pub const TXN_TOPIC: &str = "__transaction_state";

/// Longest transactional id accepted (as Kafka's group ids; they name records, not files).
pub const MAX_ID_LEN: usize = 32 * 1024;

/// An id's state; `None` until InitProducerId gives it a producer id.
type Slot = Arc<tokio::sync::Mutex<Option<TxnMeta>>>;

/// A transactional produce's hold on its transaction: no marker is written while it lives.
pub type ProduceGuard = OwnedMutexGuard<Option<TxnMeta>>;

#[derive(Debug)]
pub struct Coordinator {
    writer: Writer,
    settings: TransactionSettings,
    ids: Mutex<HashMap<String, Slot>>,
}

impl Coordinator {
    /// Reads every id's state from `log` (`__transaction_state`) and completes the
    /// transactions a crash left in a Prepare phase (markers, offsets, then the record).
    pub fn open(
        log: Arc<Log>,
        topics: Arc<Topics>,
        settings: TransactionSettings,
        groups: &Groups,
    ) -> Result<Coordinator, BrokerError> {
        let writer = Writer { log, topics };
        let mut states = replay(&writer.log)?;
        let mut completed = 0;
        for (id, meta) in &mut states {
            if matches!(meta.phase, Phase::PrepareCommit | Phase::PrepareAbort) {
                writer.complete_blocking(groups, id, meta)?;
                completed += 1;
            }
        }
        let ongoing = states.values().filter(|m| m.phase == Phase::Ongoing).count();
        tracing::info!(ids = states.len(), completed, ongoing, "transaction coordinator opened");
        let ids = states
            .into_iter()
            .map(|(id, meta)| (id, Arc::new(tokio::sync::Mutex::new(Some(meta)))))
            .collect();
        Ok(Coordinator { writer, settings, ids: Mutex::new(ids) })
    }

    fn slot(&self, id: &str) -> Option<Slot> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    fn slot_or_new(&self, id: &str) -> Slot {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.entry(id.to_string()).or_default().clone()
    }

    /// The settings (the largest timeout a producer may ask for, the abort check interval).
    pub fn settings(&self) -> TransactionSettings {
        self.settings
    }

    /// InitProducerId with a transactional id: the id's producer id (allocated by `allocate`
    /// the first time) at a new epoch, which fences every older one. A transaction of the
    /// previous epoch still open is aborted first, with the new epoch on its markers.
    /// `current` is the (producer id, epoch) a KIP-360 client says it holds.
    pub async fn init_producer_id(
        &self,
        groups: &Groups,
        id: &str,
        timeout_ms: i32,
        current: Option<(i64, i16)>,
        allocate: impl FnOnce() -> Result<i64, BrokerError>,
    ) -> Result<(i64, i16), TxnError> {
        let max = self.settings.max_timeout_ms;
        let timeout = u32::try_from(timeout_ms).ok().filter(|t| (1..=max).contains(t));
        let Some(timeout) = timeout else {
            return Err(TxnError::InvalidTimeout { asked: timeout_ms, max });
        };
        check_id(id)?;
        let slot = self.slot_or_new(id);
        let mut guard = slot.lock().await;
        let Some(meta) = guard.as_mut() else {
            let meta = TxnMeta::new(allocate()?, timeout);
            self.writer.persist(id, &meta).await?;
            let answer = (meta.producer_id, meta.producer_epoch);
            *guard = Some(meta);
            return Ok(answer);
        };
        if let Some((producer_id, epoch)) = current {
            meta.check_producer(producer_id, epoch)?;
        }
        match meta.phase {
            Phase::Ongoing => {
                meta.prepare_fenced_abort();
                self.writer.persist(id, meta).await?;
                self.writer.complete(groups, id, meta).await?;
            }
            Phase::PrepareCommit | Phase::PrepareAbort => {
                self.writer.complete(groups, id, meta).await?;
                bump(meta, allocate)?;
            }
            Phase::Empty | Phase::CompleteCommit | Phase::CompleteAbort => bump(meta, allocate)?,
        }
        meta.timeout_ms = timeout;
        meta.phase = Phase::Empty;
        self.writer.persist(id, meta).await?;
        tracing::debug!(
            id,
            producer_id = meta.producer_id,
            epoch = meta.producer_epoch,
            "transactional producer initialised"
        );
        Ok((meta.producer_id, meta.producer_epoch))
    }

    /// Runs `change` on the id's state and persists it if it succeeds (an unknown id is
    /// `UnknownId`).
    async fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut TxnMeta) -> Result<(), TxnError>,
    ) -> Result<(), TxnError> {
        let slot = self.slot(id).ok_or_else(|| TxnError::UnknownId(id.to_string()))?;
        let mut guard = slot.lock().await;
        let meta = guard.as_mut().ok_or_else(|| TxnError::UnknownId(id.to_string()))?;
        let before = meta.clone();
        if let Err(e) = change(meta) {
            *meta = before;
            return Err(e);
        }
        if *meta != before
            && let Err(e) = self.writer.persist(id, meta).await
        {
            *meta = before;
            return Err(e.into());
        }
        Ok(())
    }

    /// AddPartitionsToTxn: the partitions must exist and not be internal.
    pub async fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, u32)>,
    ) -> Result<(), TxnError> {
        let now = now_ms();
        self.update(id, |m| m.add_partitions(producer_id, epoch, partitions, now)).await
    }

    /// AddOffsetsToTxn: the transaction may commit offsets of `group`.
    pub async fn add_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), TxnError> {
        crate::groups::validate_group_id(group)?;
        let now = now_ms();
        self.update(id, |m| m.add_group(producer_id, epoch, group, now)).await
    }

    /// TxnOffsetCommit: offsets committed if (and when) the transaction commits.
    pub async fn txn_offset_commit(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        offsets: Vec<PendingOffset>,
    ) -> Result<(), TxnError> {
        self.update(id, |m| m.add_offsets(producer_id, epoch, offsets)).await
    }

    /// EndTxn: writes the markers (and, for a commit, the offsets), then answers.
    pub async fn end_txn(
        &self,
        groups: &Groups,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        let slot = self.slot(id).ok_or_else(|| TxnError::UnknownId(id.to_string()))?;
        let mut guard = slot.lock().await;
        let meta = guard.as_mut().ok_or_else(|| TxnError::UnknownId(id.to_string()))?;
        let before = meta.clone();
        match meta.prepare_end(producer_id, epoch, commit)? {
            EndAction::AlreadyDone => return Ok(()),
            EndAction::Complete => {}
        }
        if meta.phase != before.phase
            && let Err(e) = self.writer.persist(id, meta).await
        {
            *meta = before;
            return Err(e.into());
        }
        self.writer.complete(groups, id, meta).await?;
        Ok(())
    }

    /// The check before a transactional produce of `producer_id` at `epoch` to `partitions`:
    /// the id's current producer, an ongoing transaction, every partition added. The guard
    /// holds the id until the batches are appended.
    pub async fn begin_produce(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, u32)],
    ) -> Result<ProduceGuard, TxnError> {
        let slot = self.slot(id).ok_or_else(|| TxnError::UnknownId(id.to_string()))?;
        let guard = slot.lock_owned().await;
        let meta = guard.as_ref().ok_or_else(|| TxnError::UnknownId(id.to_string()))?;
        meta.check_produce(producer_id, epoch, partitions.iter().map(|(t, p)| (t.as_str(), *p)))?;
        Ok(guard)
    }

    /// Aborts every transaction past its timeout at `now_ms`, raising its epoch so that its
    /// producer's next request is fenced (as Kafka does). Returns how many were aborted.
    pub async fn abort_expired(&self, groups: &Groups, now_ms: i64) -> usize {
        let slots: Vec<(String, Slot)> = {
            let ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
            ids.iter().map(|(id, slot)| (id.clone(), slot.clone())).collect()
        };
        let mut aborted = 0;
        for (id, slot) in slots {
            let mut guard = slot.lock().await;
            let Some(meta) = guard.as_mut() else { continue };
            if !meta.expired(now_ms) {
                continue;
            }
            let epoch = meta.producer_epoch;
            meta.prepare_fenced_abort();
            let done = match self.writer.persist(&id, meta).await {
                Ok(()) => self.writer.complete(groups, &id, meta).await,
                Err(e) => Err(e.into()),
            };
            match done {
                Ok(()) => {
                    aborted += 1;
                    tracing::info!(
                        id,
                        producer_id = meta.producer_id,
                        epoch,
                        "transaction aborted: past its timeout"
                    );
                }
                Err(e) => {
                    tracing::warn!(id, error = %e, "could not abort a timed-out transaction; retried at the next check")
                }
            }
        }
        aborted
    }
}

/// A new epoch for `meta`'s producer id, or a new producer id when the epoch is spent.
fn bump(
    meta: &mut TxnMeta,
    allocate: impl FnOnce() -> Result<i64, BrokerError>,
) -> Result<(), BrokerError> {
    if meta.epoch_exhausted() {
        meta.producer_id = allocate()?;
        meta.producer_epoch = 0;
    } else {
        meta.producer_epoch += 1;
    }
    Ok(())
}

fn check_id(id: &str) -> Result<(), BrokerError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(BrokerError::Malformed("a transactional id must be 1 to 32768 bytes"));
    }
    Ok(())
}
