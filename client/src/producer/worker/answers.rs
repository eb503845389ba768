//! How the worker settles a produce request's answer: each batch is written (completed, in its
//! partition's order), sent again, or failed for good — and, when idempotent, what a final
//! failure means for the batches numbered behind it and for the producer's identity.
//!
//! A batch is sent again, with the same bytes, after:
//! - a transport error (the request may or may not have been applied: a resend of an applied
//!   batch is answered as a duplicate), `NO_SPACE` or `TOO_MANY_IN_FLIGHT` — counted against
//!   [`ProducerConfig::retries`](crate::ProducerConfig::retries), after a backoff;
//! - `OUT_OF_ORDER_SEQUENCE` for a batch sent while an earlier batch of its partition was
//!   unresolved — that batch had simply not been appended yet (it failed, or the broker handled
//!   the later request first). Not counted, no backoff: the resend waits until the batch is the
//!   oldest unresolved of its partition, so it cannot be out of order for that reason twice.

use std::collections::HashMap;

use eddy_protocol::v1;
use tokio::time::Instant;

use super::{IdentityState, Worker};
use crate::producer::batch::Batch;
use crate::producer::partition::Outcome;
use crate::{ClientError, ErrorCode, Transport};

/// How a batch's attempt ended.
enum Settled {
    Written {
        base_offset: u64,
        last_offset: u64,
        duplicate: bool,
    },
    /// `ACKS_NONE`: handed to the transport.
    Sent,
    Failed(ClientError),
}

impl<T: Transport> Worker<T> {
    pub(super) fn on_produced(
        &mut self,
        request: u64,
        outcome: Result<Option<v1::ProduceResponse>, ClientError>,
    ) {
        let Some(batches) = self.in_flight.remove(&request) else { return };
        match outcome {
            Err(ClientError::RequestTooLarge { bytes, max }) if batches.len() > 1 => {
                tracing::debug!(bytes, max, "produce request too large; sending its batches alone");
                for mut batch in batches {
                    batch.alone = true;
                    self.requeue(batch);
                }
            }
            Err(error) => {
                for batch in batches {
                    self.settle(batch, Settled::Failed(error.clone()));
                }
            }
            Ok(None) => {
                for batch in batches {
                    self.settle(batch, Settled::Sent);
                }
            }
            Ok(Some(response)) => {
                let mut results: HashMap<(&str, u32), &v1::ProducePartitionResult> = HashMap::new();
                for topic in &response.topics {
                    for r in &topic.partitions {
                        results.insert((topic.topic.as_str(), r.partition), r);
                    }
                }
                for batch in batches {
                    let settled = match results.get(&(&*batch.topic, batch.partition)) {
                        None => Settled::Failed(ClientError::UnexpectedResponse(
                            "produce response lacks a partition that was sent",
                        )),
                        Some(r) => match &r.error {
                            Some(error) if error.error_code() != ErrorCode::None => {
                                Settled::Failed(ClientError::Partition {
                                    topic: batch.topic.to_string(),
                                    partition: batch.partition,
                                    error: error.clone(),
                                })
                            }
                            _ => Settled::Written {
                                base_offset: r.base_offset,
                                last_offset: r.last_offset,
                                duplicate: r.duplicate,
                            },
                        },
                    };
                    self.settle(batch, settled);
                }
            }
        }
    }

    /// Puts a batch back among its partition's waiting batches, no longer in flight.
    fn requeue(&mut self, batch: Batch) {
        self.landed(&batch);
        self.queue(&batch.topic, batch.partition).requeue(batch);
    }

    /// A batch of this partition is no longer in flight.
    fn landed(&mut self, batch: &Batch) {
        let queue = self.queue(&batch.topic, batch.partition);
        debug_assert!(queue.in_flight > 0, "a batch landed that was not in flight");
        queue.in_flight = queue.in_flight.saturating_sub(1);
    }

    fn settle(&mut self, batch: Batch, settled: Settled) {
        match settled {
            Settled::Written { base_offset, last_offset, duplicate } => {
                self.landed(&batch);
                let expected = base_offset + u64::from(batch.record_count().saturating_sub(1));
                if last_offset != expected {
                    tracing::warn!(topic = %batch.topic, partition = batch.partition, base_offset, last_offset, records = batch.record_count(), "acknowledged offsets do not span the batch");
                }
                if duplicate {
                    tracing::debug!(topic = %batch.topic, partition = batch.partition, base_offset, "resend answered as a duplicate");
                }
                self.finish(batch, Ok(Some(base_offset)));
            }
            Settled::Sent => {
                self.landed(&batch);
                self.finish(batch, Ok(None));
            }
            Settled::Failed(error) => self.on_failed(batch, error),
        }
    }

    fn on_failed(&mut self, mut batch: Batch, error: ClientError) {
        self.landed(&batch);
        batch.maybe_written |= error.is_transport();
        if matches!(error.code(), Some(ErrorCode::UnknownPartition | ErrorCode::UnknownTopic)) {
            self.shared.forget(&batch.topic);
        }
        let queue = self.queue(&batch.topic, batch.partition);
        if let Some(cause) = queue.broken_by(&batch) {
            let error = preceding_failed(&batch, cause);
            return self.finish(batch, Err(error));
        }
        if batch.sent_behind && error.code() == Some(ErrorCode::OutOfOrderSequence) {
            tracing::debug!(topic = %batch.topic, partition = batch.partition, "sent ahead of an unresolved batch; will resend in order");
            return queue.requeue(batch);
        }
        if batch.attempts < self.config.retries && retriable(&error) {
            batch.attempts += 1;
            batch.retry_at = Some(Instant::now() + self.backoff(batch.attempts));
            tracing::debug!(topic = %batch.topic, partition = batch.partition, attempt = batch.attempts, %error, "produce failed; will retry");
            return self.queue(&batch.topic, batch.partition).requeue(batch);
        }
        tracing::warn!(topic = %batch.topic, partition = batch.partition, %error, "produce failed");
        self.after_final_failure(&batch, &error);
        self.finish(batch, Err(error));
    }

    /// Hands `batch`'s outcome to its partition, and completes whatever is due.
    fn finish(&mut self, batch: Batch, outcome: Outcome) {
        let due = self.queue(&batch.topic, batch.partition).settle(batch, outcome);
        for (batch, outcome) in due {
            self.live.remove(&batch.id);
            match outcome {
                Ok(base_offset) => batch.complete(base_offset),
                Err(error) => batch.fail(&error),
            }
        }
    }

    /// Keeps idempotent numbering sound after a numbered batch failed for good: the batches
    /// numbered behind it are failed rather than resent, and either its sequence is reused
    /// (the broker refused it: nothing from it on was written) or the producer takes a new
    /// identity (it may have been written, or the broker disagrees about the sequence), so no
    /// later batch can be taken for a duplicate of it.
    fn after_final_failure(&mut self, batch: &Batch, error: &ClientError) {
        let Some((identity, base)) = batch.encoded.as_ref().and_then(|e| e.sequence) else {
            return;
        };
        let sequence_broken =
            matches!(error.code(), Some(ErrorCode::OutOfOrderSequence | ErrorCode::ProducerFenced));
        let unknown = batch.maybe_written || sequence_broken;
        if unknown && self.identity == IdentityState::Ready(identity) {
            tracing::warn!(
                producer_id = identity.producer_id,
                "producer identity reset after an unresolved failure"
            );
            self.identity = IdentityState::Unset;
        }
        let reuse = (!unknown).then_some((identity, base));
        let doomed = self.queue(&batch.topic, batch.partition).break_after(batch.id, error, reuse);
        for behind in doomed {
            let error = preceding_failed(&behind, error);
            self.finish(behind, Err(error));
        }
    }
}

fn preceding_failed(batch: &Batch, cause: &ClientError) -> ClientError {
    ClientError::PrecedingBatchFailed {
        topic: batch.topic.to_string(),
        partition: batch.partition,
        cause: Box::new(cause.clone()),
    }
}

/// Whether resending the same batch may succeed.
pub(super) fn retriable(error: &ClientError) -> bool {
    error.is_transport()
        || matches!(error.code(), Some(ErrorCode::NoSpace | ErrorCode::TooManyInFlight))
}
