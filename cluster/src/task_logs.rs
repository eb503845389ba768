//! [`TaskLogs`]: the [`LogAccess`] the tasks of one task partition run over inside an
//! [`Instance`](crate::Instance) — reads through the instance's [`KafkaLogs`], appends through
//! the partition's own transactional producer.
//!
//! Owns: that producer, whose `transactional.id` names the processor version and the task
//! partition (`group::transactional_id`), and whether a transaction is open.
//!
//! Invariants:
//! - Opening (`TaskLogs::open`) registers the transactional id, which fences every earlier
//!   holder of the partition: the open transaction of an instance that lost it (paused, or cut
//!   off, not dead) is aborted, and its next append or commit is refused. So whatever a
//!   removed-but-alive member writes is never visible to committed readers.
//! - Every append goes into the open transaction (one is begun by the first append after a
//!   commit); [`TaskLogs::commit`] makes them visible together: the tasks' outputs, changelog
//!   changes, repartitioned records, journal steps and snapshot publications of the partition.
//! - While *settling* (from opening until [`TaskLogs::settled`]: the restore and the tasks'
//!   recovery scans), `end_offset` is a partition's last stable offset once the transactions
//!   open at the call have ended (`KafkaLogs::settled_end`), so a recovery scan sees every
//!   output the partition's earlier owners committed. Afterwards it is the last stable offset.
//! - Once a call has reported [`ClusterError::Fenced`], [`TaskLogs::is_fenced`] says so: the
//!   partition belongs to another instance now.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use eddy_processor::{Appended, LogAccess, LogError, WaitFor};
use eddy_storage::ValidBatch;

use crate::error::ClusterError;
use crate::logs::KafkaLogs;
use crate::writer::Writer;

/// One task partition's view of the cluster.
pub(crate) struct TaskLogs {
    logs: Arc<KafkaLogs>,
    writer: Writer,
    transactional_id: String,
    open: AtomicBool,
    settling: AtomicBool,
    fenced: AtomicBool,
}

impl std::fmt::Debug for TaskLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskLogs").field("transactional_id", &self.transactional_id).finish()
    }
}

impl TaskLogs {
    /// Creates the partition's transactional producer and registers it, fencing every earlier
    /// producer with `transactional_id`. Starts settling.
    pub(crate) fn open(logs: Arc<KafkaLogs>, transactional_id: &str) -> Result<Self, ClusterError> {
        let writer = Writer::transactional(logs.config(), transactional_id)?;
        writer.init()?;
        tracing::info!(transactional_id, "transactional producer registered");
        Ok(Self {
            logs,
            writer,
            transactional_id: transactional_id.to_owned(),
            open: AtomicBool::new(false),
            settling: AtomicBool::new(true),
            fenced: AtomicBool::new(false),
        })
    }

    /// The restore and recovery are over: `end_offset` no longer waits for open transactions.
    pub(crate) fn settled(&self) {
        self.settling.store(false, Ordering::Release);
    }

    /// Whether a call found this producer fenced by a newer one.
    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Commits the open transaction, if any. Returns whether one was committed.
    pub(crate) fn commit(&self) -> Result<bool, ClusterError> {
        if !self.open.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.note(self.writer.commit())?;
        self.open.store(false, Ordering::Release);
        Ok(true)
    }

    /// Aborts the open transaction, if any (best effort: a fenced producer has none left,
    /// and finding that out marks it fenced).
    pub(crate) fn abort(&self) {
        if self.open.swap(false, Ordering::AcqRel)
            && let Err(error) = self.note(self.writer.abort())
        {
            tracing::warn!(transactional_id = %self.transactional_id, %error, "abort failed");
        }
    }

    /// Remembers a fencing on its way out.
    fn note<T>(&self, result: Result<T, ClusterError>) -> Result<T, ClusterError> {
        if let Err(ClusterError::Fenced { .. }) = &result {
            self.fenced.store(true, Ordering::Release);
        }
        result
    }

    fn begin_if_needed(&self) -> Result<(), ClusterError> {
        if !self.open.load(Ordering::Acquire) {
            self.note(self.writer.begin())?;
            self.open.store(true, Ordering::Release);
        }
        Ok(())
    }
}

impl LogAccess for TaskLogs {
    fn partition_count(&self, topic: &str) -> Result<u32, LogError> {
        self.logs.partition_count(topic)
    }

    fn create_topic(&self, topic: &str, partitions: u32, compacted: bool) -> Result<(), LogError> {
        self.logs.create_topic(topic, partitions, compacted)
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
    ) -> Result<Bytes, LogError> {
        self.logs.read(topic, partition, from, max_bytes)
    }

    fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.logs.start_offset(topic, partition)
    }

    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        if self.settling.load(Ordering::Acquire) {
            Ok(self.logs.settled_end(topic, partition)?)
        } else {
            self.logs.end_offset(topic, partition)
        }
    }

    fn append(
        &self,
        topic: &str,
        partition: u32,
        batch: &ValidBatch,
    ) -> Result<Appended, LogError> {
        self.logs.check_partition(topic, partition)?;
        self.begin_if_needed()?;
        let (base_offset, last_offset) = self.note(self.writer.append(topic, partition, batch))?;
        Ok(Appended { base_offset, last_offset })
    }

    fn flush(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        Ok(self.note(self.writer.flush(topic, partition))?)
    }

    fn wait_for_data(&self, interests: &[WaitFor<'_>], deadline: Instant) -> bool {
        self.logs.wait_for_data(interests, deadline)
    }
}
