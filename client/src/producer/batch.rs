//! A batch as the worker holds it: records accepted from `send` (a batch being filled) or a
//! group accepted whole from `send_batch`, and who is told how it ended. The queue a batch
//! waits in, and its partition's sequence, are `partition.rs`.
//!
//! Invariants:
//! - A batch is *open* (accepting records) until it is closed, which happens when a record does
//!   not fit, on flush, when a group from `send_batch` arrives for its partition, or when it is
//!   taken to be sent. Only the last batch of a partition's queue can be open.
//! - A group from `send_batch` arrives already encoded (records only, no header) and is never
//!   open: it is exactly one batch on the wire, with one waiter for all its records.
//! - A batch is encoded exactly once, when first taken to be sent; from then on its bytes —
//!   and, if idempotent, its producer id, epoch and base sequence — never change, so a retry is
//!   byte-for-byte the first attempt.
//! - Every accepted record is completed exactly once: acknowledged with its offset, or failed
//!   (a group's records together, through its one waiter).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eddy_storage::BatchBuilder;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;

use super::partition::SequenceState;
use crate::ClientError;
use crate::record::{BatchMetadata, ProducerRecord, RecordMetadata};

pub(super) type Completion = oneshot::Sender<Result<RecordMetadata, ClientError>>;
pub(super) type BatchCompletion = oneshot::Sender<Result<BatchMetadata, ClientError>>;

/// Where `send` wants a record to go.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    Partition(u32),
    /// No key and no partition: the sticky partition among this many.
    Sticky(u32),
}

/// A record on its way from `send` to a batch.
#[derive(Debug)]
pub(super) struct Pending {
    pub topic: Arc<str>,
    pub target: Target,
    pub record: ProducerRecord,
    pub timestamp: i64,
    /// Upper bound on the bytes it adds to a batch.
    pub size: usize,
    pub done: Completion,
    /// Its share of the producer's buffer, released when the record completes.
    pub permit: OwnedSemaphorePermit,
}

/// A group of records from `send_batch`, encoded in the caller's task, on its way to the worker.
#[derive(Debug)]
pub(super) struct PendingBatch {
    pub topic: Arc<str>,
    pub target: Target,
    /// The records, encoded; the header (and sequence) is written when the batch is sent.
    pub builder: BatchBuilder,
    pub done: BatchCompletion,
    /// The group's share of the producer's buffer (its encoded size), released when it
    /// completes.
    pub permit: OwnedSemaphorePermit,
}

/// Who is told how a batch ended.
#[derive(Debug)]
enum Waiters {
    /// Records from `send`: one `Delivery` each, with the record's timestamp.
    Records(Vec<(Completion, i64)>),
    /// A group from `send_batch`: one `BatchDelivery` for all its records.
    Group(BatchCompletion),
}

/// An idempotent producer's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    pub producer_id: i64,
    pub epoch: i16,
}

/// A batch once encoded.
#[derive(Debug, Clone)]
pub(super) struct Encoded {
    pub bytes: Bytes,
    /// `(identity, base_sequence)` when idempotent.
    pub sequence: Option<(Identity, i32)>,
}

#[derive(Debug)]
pub(super) struct Batch {
    pub id: u64,
    pub topic: Arc<str>,
    pub partition: u32,
    builder: BatchBuilder,
    pub encoded: Option<Encoded>,
    waiters: Waiters,
    /// Records in the batch.
    records: u32,
    permits: Option<OwnedSemaphorePermit>,
    created: Instant,
    pub open: bool,
    /// Sends that failed so far.
    pub attempts: u32,
    pub retry_at: Option<Instant>,
    /// A failed attempt may have been appended (a transport error: the answer was lost).
    pub maybe_written: bool,
    /// Send in a request of its own (a shared request was too large for the broker).
    pub alone: bool,
    /// Its last send went out while an earlier batch of its partition was unresolved, so an
    /// `OUT_OF_ORDER_SEQUENCE` answer may only mean that batch had not been appended yet.
    pub sent_behind: bool,
}

impl Batch {
    pub fn new(id: u64, topic: Arc<str>, partition: u32, now: Instant) -> Self {
        Self {
            id,
            topic,
            partition,
            builder: BatchBuilder::new(),
            encoded: None,
            waiters: Waiters::Records(Vec::new()),
            records: 0,
            permits: None,
            created: now,
            open: true,
            attempts: 0,
            retry_at: None,
            maybe_written: false,
            alone: false,
            sent_behind: false,
        }
    }

    /// A closed batch of exactly the records of a `send_batch` group.
    pub fn group(id: u64, partition: u32, group: PendingBatch, now: Instant) -> Self {
        let PendingBatch { topic, builder, done, permit, target: _ } = group;
        let records = builder.record_count();
        Self {
            builder,
            waiters: Waiters::Group(done),
            records,
            permits: Some(permit),
            open: false,
            ..Self::new(id, topic, partition, now)
        }
    }

    /// Whether a record of `size` bytes fits (an empty batch takes any record).
    pub fn fits(&self, size: usize, batch_bytes: usize) -> bool {
        self.builder.is_empty() || self.builder.len_bytes().saturating_add(size) <= batch_bytes
    }

    pub fn push(&mut self, pending: Pending) {
        debug_assert!(self.open && self.encoded.is_none());
        let Waiters::Records(completions) = &mut self.waiters else {
            // Only open batches take records, and a group is created closed.
            unreachable!("a record pushed into a send_batch group");
        };
        pending.record.push_into(&mut self.builder, pending.timestamp);
        completions.push((pending.done, pending.timestamp));
        self.records += 1;
        match &mut self.permits {
            Some(permits) => permits.merge(pending.permit),
            None => self.permits = Some(pending.permit),
        }
    }

    pub fn len_bytes(&self) -> usize {
        self.encoded.as_ref().map_or(self.builder.len_bytes(), |e| e.bytes.len())
    }

    pub fn record_count(&self) -> u32 {
        self.records
    }

    /// Whether the batch carries a sequence (idempotent, and sent at least once).
    pub fn is_numbered(&self) -> bool {
        self.encoded.as_ref().is_some_and(|e| e.sequence.is_some())
    }

    /// When the batch may be sent: at once if closed, else when it has lingered; never before a
    /// pending retry's backoff ends.
    pub fn ready_at(&self, linger: Duration) -> Instant {
        let ready = if self.open { self.created + linger } else { self.created };
        self.retry_at.map_or(ready, |retry| retry.max(ready))
    }

    /// Encodes the batch, numbering it from `sequence` if idempotent. Call once.
    pub fn encode(&mut self, sequence: Option<(Identity, &mut SequenceState)>) {
        debug_assert!(self.encoded.is_none());
        let builder = std::mem::take(&mut self.builder);
        let count = builder.record_count();
        debug_assert_eq!(count, self.record_count());
        let encoded = match sequence {
            None => Encoded { bytes: builder.build(), sequence: None },
            Some((identity, state)) => {
                let base = state.take(identity, count);
                let bytes = builder.producer(identity.producer_id, identity.epoch, base).build();
                Encoded { bytes, sequence: Some((identity, base)) }
            }
        };
        self.open = false;
        self.encoded = Some(encoded);
    }

    /// Acknowledges every record: offsets from `base_offset`, or unknown (`ACKS_NONE`).
    pub fn complete(self, base_offset: Option<u64>) {
        // The caller may have dropped its Delivery: nothing to tell then.
        match self.waiters {
            Waiters::Records(completions) => {
                for (index, (done, timestamp)) in completions.into_iter().enumerate() {
                    let metadata = RecordMetadata {
                        topic: Arc::clone(&self.topic),
                        partition: self.partition,
                        offset: base_offset.map(|base| base + index as u64),
                        timestamp,
                    };
                    drop(done.send(Ok(metadata)));
                }
            }
            Waiters::Group(done) => {
                let last = u64::from(self.records.saturating_sub(1));
                drop(done.send(Ok(BatchMetadata {
                    topic: self.topic,
                    partition: self.partition,
                    base_offset,
                    last_offset: base_offset.map(|base| base + last),
                    record_count: self.records,
                })));
            }
        }
    }

    pub fn fail(self, error: &ClientError) {
        match self.waiters {
            Waiters::Records(completions) => {
                for (done, _) in completions {
                    drop(done.send(Err(error.clone())));
                }
            }
            Waiters::Group(done) => drop(done.send(Err(error.clone()))),
        }
    }
}
