//! One transactional id's state and the rules of its transitions (Kafka's
//! `TransactionMetadata`), with no I/O: the coordinator (`super`) persists what these decide.
//!
//! ```text
//!            AddPartitions / AddOffsets              EndTxn               markers written
//!  Empty ──────────────────────────────► Ongoing ───────────► Prepare{Commit,Abort} ───► Complete{Commit,Abort}
//!    ▲  (InitProducerId: epoch + 1)         │ InitProducerId or timeout: epoch + 1, abort      │
//!    └──────────────────────────────────────┴──────────────────────────────────────────────────┘
//! ```
//!
//! Invariants: only the current (producer id, epoch) may move a transaction; a Prepare phase
//! always goes on to its Complete phase (after a crash, at the next open); partitions, groups
//! and pending offsets belong to the transaction in progress and are cleared when it
//! completes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::BrokerError;

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

/// An offset a transaction commits for a group when it commits (TxnOffsetCommit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOffset {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: String,
}

/// One transactional id, as stored in `__transaction_state` (JSON, keyed by the id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: u32,
    pub phase: Phase,
    /// Partitions written in the transaction in progress.
    pub partitions: BTreeSet<(String, u32)>,
    /// Groups whose offsets it may commit (AddOffsetsToTxn).
    pub groups: BTreeSet<String>,
    /// Offsets it commits when it commits.
    pub offsets: Vec<PendingOffset>,
    /// When the transaction in progress began (ms since the epoch).
    pub started_ms: i64,
}

/// Why a transactional request is refused (each is one Kafka error code).
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("transaction timeout {asked} ms is outside 1..={max} ms")]
    InvalidTimeout { asked: i32, max: u32 },
    #[error("no producer id is mapped to transactional id {0:?}")]
    UnknownId(String),
    #[error("producer id {got} does not hold this transactional id (producer {current} does)")]
    WrongProducerId { got: i64, current: i64 },
    #[error("producer epoch {got} is fenced: the transactional id is at epoch {current}")]
    Fenced { got: i16, current: i16 },
    #[error("the previous transaction is still completing; retry")]
    Concurrent,
    #[error("{what} is not allowed while the transaction is {phase:?}")]
    InvalidState { phase: Phase, what: &'static str },
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// What EndTxn is to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndAction {
    /// Write the markers (the phase is now Prepare*), then complete.
    Complete,
    /// A retry of an EndTxn already done.
    AlreadyDone,
}

impl TxnMeta {
    /// A new transactional id's state.
    pub fn new(producer_id: i64, timeout_ms: u32) -> Self {
        Self {
            producer_id,
            producer_epoch: 0,
            timeout_ms,
            phase: Phase::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            offsets: Vec::new(),
            started_ms: 0,
        }
    }

    /// Only the producer id and epoch the id holds may act for it.
    pub fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::WrongProducerId { got: producer_id, current: self.producer_id });
        }
        if epoch != self.producer_epoch {
            return Err(TxnError::Fenced { got: epoch, current: self.producer_epoch });
        }
        Ok(())
    }

    /// Moves to Ongoing if no transaction is in progress (AddPartitions, AddOffsets).
    fn begin(&mut self, now_ms: i64) -> Result<(), TxnError> {
        match self.phase {
            Phase::Ongoing => Ok(()),
            Phase::PrepareCommit | Phase::PrepareAbort => Err(TxnError::Concurrent),
            Phase::Empty | Phase::CompleteCommit | Phase::CompleteAbort => {
                self.clear();
                self.phase = Phase::Ongoing;
                self.started_ms = now_ms;
                Ok(())
            }
        }
    }

    fn clear(&mut self) {
        self.partitions.clear();
        self.groups.clear();
        self.offsets.clear();
    }

    pub fn add_partitions(
        &mut self,
        producer_id: i64,
        epoch: i16,
        partitions: impl IntoIterator<Item = (String, u32)>,
        now_ms: i64,
    ) -> Result<(), TxnError> {
        self.check_producer(producer_id, epoch)?;
        self.begin(now_ms)?;
        self.partitions.extend(partitions);
        Ok(())
    }

    pub fn add_group(
        &mut self,
        producer_id: i64,
        epoch: i16,
        group: &str,
        now_ms: i64,
    ) -> Result<(), TxnError> {
        self.check_producer(producer_id, epoch)?;
        self.begin(now_ms)?;
        self.groups.insert(group.to_string());
        Ok(())
    }

    /// TxnOffsetCommit: offsets of a group added to the ongoing transaction.
    pub fn add_offsets(
        &mut self,
        producer_id: i64,
        epoch: i16,
        offsets: Vec<PendingOffset>,
    ) -> Result<(), TxnError> {
        self.check_producer(producer_id, epoch)?;
        let group_added = offsets.iter().all(|o| self.groups.contains(&o.group));
        if self.phase != Phase::Ongoing || !group_added {
            return Err(TxnError::InvalidState { phase: self.phase, what: "TxnOffsetCommit" });
        }
        for o in offsets {
            self.offsets
                .retain(|x| (&x.group, &x.topic, x.partition) != (&o.group, &o.topic, o.partition));
            self.offsets.push(o);
        }
        Ok(())
    }

    /// Whether a transactional produce to `partitions` by this producer is allowed now.
    pub fn check_produce<'a>(
        &self,
        producer_id: i64,
        epoch: i16,
        mut partitions: impl Iterator<Item = (&'a str, u32)>,
    ) -> Result<(), TxnError> {
        self.check_producer(producer_id, epoch)?;
        let added = partitions.all(|(t, p)| self.partitions.contains(&(t.to_string(), p)));
        if self.phase != Phase::Ongoing || !added {
            return Err(TxnError::InvalidState {
                phase: self.phase,
                what: "a transactional produce",
            });
        }
        Ok(())
    }

    /// EndTxn: moves Ongoing to Prepare*, or says the same EndTxn was already done (a retry).
    pub fn prepare_end(
        &mut self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<EndAction, TxnError> {
        self.check_producer(producer_id, epoch)?;
        let invalid = |phase| Err(TxnError::InvalidState { phase, what: "EndTxn" });
        match (self.phase, commit) {
            (Phase::Ongoing, true) => self.phase = Phase::PrepareCommit,
            (Phase::Ongoing, false) => self.phase = Phase::PrepareAbort,
            // A completion that failed half way is finished by the retry.
            (Phase::PrepareCommit, true) | (Phase::PrepareAbort, false) => {}
            (Phase::CompleteCommit, true) | (Phase::CompleteAbort, false) => {
                return Ok(EndAction::AlreadyDone);
            }
            (phase, _) => return invalid(phase),
        }
        Ok(EndAction::Complete)
    }

    /// Prepares an abort the broker decides (InitProducerId over an ongoing transaction, or
    /// its timeout): the epoch goes up first, so the markers fence the old producer.
    pub fn prepare_fenced_abort(&mut self) {
        self.producer_epoch = self.producer_epoch.saturating_add(1);
        self.phase = Phase::PrepareAbort;
    }

    /// After the markers (and, for a commit, the offsets) are written.
    pub fn complete(&mut self) {
        self.phase = match self.phase {
            Phase::PrepareCommit => Phase::CompleteCommit,
            _ => Phase::CompleteAbort,
        };
        self.clear();
    }

    /// Whether the transaction in progress has outlived its timeout at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.phase == Phase::Ongoing
            && now_ms.saturating_sub(self.started_ms) > i64::from(self.timeout_ms)
    }

    /// Whether the epoch can go up once more (else the id gets a new producer id, epoch 0).
    pub fn epoch_exhausted(&self) -> bool {
        self.producer_epoch >= i16::MAX - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_moves_only_for_its_current_producer() {
        let mut m = TxnMeta::new(7, 60_000);
        m.add_partitions(7, 0, [("t".to_string(), 0)], 10).unwrap();
        assert_eq!(m.phase, Phase::Ongoing);
        assert!(matches!(
            m.add_partitions(7, 1, [("t".to_string(), 1)], 10),
            Err(TxnError::Fenced { got: 1, current: 0 })
        ));
        assert!(matches!(m.prepare_end(8, 0, true), Err(TxnError::WrongProducerId { .. })));
        m.check_produce(7, 0, [("t", 0)].into_iter()).unwrap();
        assert!(matches!(
            m.check_produce(7, 0, [("t", 1)].into_iter()),
            Err(TxnError::InvalidState { .. })
        ));
        assert_eq!(m.prepare_end(7, 0, true).unwrap(), EndAction::Complete);
        m.complete();
        assert_eq!(m.phase, Phase::CompleteCommit);
        assert!(m.partitions.is_empty());
        assert_eq!(m.prepare_end(7, 0, true).unwrap(), EndAction::AlreadyDone);
        assert!(matches!(m.prepare_end(7, 0, false), Err(TxnError::InvalidState { .. })));
    }

    #[test]
    fn offsets_need_their_group_added_and_expire_with_the_transaction() {
        let mut m = TxnMeta::new(1, 100);
        let offset = |o| PendingOffset {
            group: "g".into(),
            topic: "in".into(),
            partition: 0,
            offset: o,
            metadata: String::new(),
        };
        assert!(m.add_offsets(1, 0, vec![offset(5)]).is_err());
        m.add_group(1, 0, "g", 1_000).unwrap();
        m.add_offsets(1, 0, vec![offset(5)]).unwrap();
        m.add_offsets(1, 0, vec![offset(9)]).unwrap();
        assert_eq!(m.offsets, vec![offset(9)]);
        assert!(!m.expired(1_100));
        assert!(m.expired(1_101));
        m.prepare_fenced_abort();
        assert_eq!((m.phase, m.producer_epoch), (Phase::PrepareAbort, 1));
        m.complete();
        assert_eq!(m.phase, Phase::CompleteAbort);
        assert!(m.offsets.is_empty());
    }

    #[test]
    fn the_stored_form_round_trips() {
        let mut m = TxnMeta::new(3, 10);
        m.add_partitions(3, 0, [("a".to_string(), 2)], 5).unwrap();
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(serde_json::from_slice::<TxnMeta>(&json).unwrap(), m);
    }
}
