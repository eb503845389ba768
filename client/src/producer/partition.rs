//! One partition as the worker holds it: the batches waiting to be sent or resent, and — for an
//! idempotent producer — the bookkeeping that lets several numbered batches be in flight at once
//! without ever writing one twice or out of order.
//!
//! Why order holds: the broker appends a numbered batch only if its base sequence is the next
//! one expected for its producer id and epoch (else `OUT_OF_ORDER_SEQUENCE`, nothing written),
//! and answers a batch matching one of the last five it appended as a duplicate with the
//! original offsets. So the log can only hold a partition's batches in sequence order, each at
//! most once, whatever order the requests arrive or are handled in; this module keeps the
//! client's side of that bargain.
//!
//! Invariants (idempotent):
//! - `unsettled` holds the ids of the batches numbered and not yet completed to their callers;
//!   ids, like sequences, follow the partition's order. A batch is numbered only while fewer than
//!   `max_in_flight` (at most five, the broker's duplicate window) are unsettled, so any batch
//!   the client may resend is still within the window: a resend of an appended batch is always
//!   recognised as a duplicate.
//! - `batches` is in id order: numbered batches waiting to be resent come first, then batches
//!   not numbered yet. A numbered batch is resent only when it is the oldest unsettled one, so
//!   resends go out one at a time in sequence order, never a later sequence before an earlier
//!   one; new batches are numbered only behind them.
//! - Completions are released in id order (`held` keeps a settled batch until every older one
//!   has settled), so a partition's deliveries resolve in the order of its records.
//! - A batch numbered under one identity is never followed by one numbered under another until
//!   the first identity's batches have all settled (the broker orders sequences per identity,
//!   not across identities).
//! - After a numbered batch fails for good, the batches numbered behind it (`broken`) are not
//!   resent: they cannot be appended in sequence (if it was refused) or their fate is as unknown
//!   as its own. Each fails with [`ClientError::PrecedingBatchFailed`] unless its answer says it
//!   was written. Nothing new is numbered until they have all settled; then the refused batch's
//!   sequence is reused.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use eddy_storage::batch::header::add_sequence;

use super::batch::{Batch, Identity};
use crate::ClientError;

/// How a batch ended: its base offset (`None` with `ACKS_NONE`), or why it failed.
pub(super) type Outcome = Result<Option<u64>, ClientError>;

/// The next sequence of one partition, for the identity it counts under.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SequenceState {
    identity: Option<Identity>,
    next: i32,
}

impl SequenceState {
    /// The base sequence for `count` records under `identity` (a new identity starts at 0).
    pub(super) fn take(&mut self, identity: Identity, count: u32) -> i32 {
        if self.identity != Some(identity) {
            *self = Self { identity: Some(identity), next: 0 };
        }
        let base = self.next;
        self.next = add_sequence(base, count);
        base
    }

    /// A batch numbered from `base` under `identity` was refused without being written, and no
    /// batch numbered after it can be written either: the next batch reuses its sequence.
    fn reuse(&mut self, identity: Identity, base: i32) {
        if self.identity == Some(identity) {
            self.next = base;
        }
    }
}

/// Whether the front batch of a partition may be sent, as far as its partition is concerned
/// (time, request room and the producer identity are the worker's to check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// Nothing waits.
    Empty,
    Open,
    /// Waiting for an answer to an earlier batch of the partition.
    Blocked,
}

/// The partition's numbered batches cannot all be written in sequence any more.
#[derive(Debug)]
struct Broken {
    /// The batch that failed for good; the unsettled batches after it are affected.
    after: u64,
    cause: ClientError,
    /// The failed batch's sequence, to reuse once the affected batches have settled (it was
    /// refused, so nothing from it on was written).
    reuse: Option<(Identity, i32)>,
}

/// One (topic, partition)'s batches, oldest first.
#[derive(Debug, Default)]
pub(super) struct PartitionQueue {
    /// Waiting to be sent: numbered batches to resend first, then new ones (id order).
    pub batches: VecDeque<Batch>,
    /// Batches of this partition in requests not yet answered.
    pub in_flight: usize,
    pub sequence: SequenceState,
    /// Numbered batches not yet completed to their callers.
    unsettled: BTreeSet<u64>,
    /// Settled numbered batches waiting for an older one to settle.
    held: BTreeMap<u64, (Batch, Outcome)>,
    broken: Option<Broken>,
}

impl PartitionQueue {
    /// The batch accepting records, if any.
    pub fn open_batch(&mut self) -> Option<&mut Batch> {
        self.batches.back_mut().filter(|b| b.open)
    }

    /// Whether the front batch may be sent now. `identity` is the producer's current identity
    /// (`None` while not known); `max` the most unsettled batches.
    pub fn gate(&self, idempotent: bool, identity: Option<Identity>, max: usize) -> Gate {
        let Some(front) = self.batches.front() else { return Gate::Empty };
        if !idempotent {
            return Gate::Open;
        }
        let open = if front.is_numbered() {
            // A resend goes only as the oldest unresolved batch: its predecessors are written.
            self.unsettled.first() == Some(&front.id)
        } else {
            // A new identity's numbering starts once the old identity's batches have settled.
            let same_identity = identity.is_none() || self.sequence.identity == identity;
            self.broken.is_none()
                && self.unsettled.len() < max
                && (self.unsettled.is_empty() || same_identity)
        };
        if open { Gate::Open } else { Gate::Blocked }
    }

    /// Notes that `batch`, just taken from the front, is being sent.
    pub fn sending(&mut self, batch: &mut Batch) {
        if batch.is_numbered() {
            self.unsettled.insert(batch.id);
        }
        batch.sent_behind = self.unsettled.first().is_some_and(|oldest| *oldest < batch.id);
        self.in_flight += 1;
    }

    /// Puts a batch that is to be sent again back among the waiting ones, in id order.
    pub fn requeue(&mut self, batch: Batch) {
        let at = self.batches.iter().position(|b| b.id > batch.id).unwrap_or(self.batches.len());
        self.batches.insert(at, batch);
    }

    /// Why `batch` must not be resent: an earlier batch of its partition failed for good.
    pub fn broken_by(&self, batch: &Batch) -> Option<&ClientError> {
        let broken = self.broken.as_ref()?;
        (batch.is_numbered() && batch.id > broken.after).then_some(&broken.cause)
    }

    /// The numbered batch `failed` failed for good with `cause`. The batches numbered after it
    /// are not to be resent; those waiting are returned, to be failed. `reuse` is its sequence
    /// if it was refused (nothing written): the next batch numbered takes it, once none of
    /// those after it is left.
    pub fn break_after(
        &mut self,
        failed: u64,
        cause: &ClientError,
        reuse: Option<(Identity, i32)>,
    ) -> Vec<Batch> {
        if self.unsettled.range(failed + 1..).next().is_none() {
            if let Some((identity, base)) = reuse {
                self.sequence.reuse(identity, base);
            }
            return Vec::new();
        }
        self.broken = Some(Broken { after: failed, cause: cause.clone(), reuse });
        let (doomed, keep): (Vec<Batch>, Vec<Batch>) =
            self.batches.drain(..).partition(|b| b.is_numbered() && b.id > failed);
        self.batches = keep.into();
        doomed
    }

    /// Settles `batch` and returns every batch whose completion is now due, in order: `batch`
    /// itself at once if it was never numbered; else the run of settled batches from the oldest
    /// unsettled one.
    pub fn settle(&mut self, batch: Batch, outcome: Outcome) -> Vec<(Batch, Outcome)> {
        if !self.unsettled.contains(&batch.id) {
            return vec![(batch, outcome)];
        }
        self.held.insert(batch.id, (batch, outcome));
        let mut due = Vec::new();
        while let Some(&oldest) = self.unsettled.first() {
            let Some(done) = self.held.remove(&oldest) else { break };
            self.unsettled.remove(&oldest);
            due.push(done);
        }
        if self.unsettled.is_empty()
            && let Some(broken) = self.broken.take()
            && let Some((identity, base)) = broken.reuse
        {
            self.sequence.reuse(identity, base);
        }
        due
    }
}
