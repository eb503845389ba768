//! How a processor sees the log: the [`LogAccess`] trait.
//!
//! A processor reads whole batches in the storage format (`docs/format.md`) and appends batches
//! it built itself; it never sees sockets, the broker, or files. The same processor therefore runs
//! over [`LocalLogs`](crate::LocalLogs) (a directory of `eddy_storage::Log`s, for embedded use and
//! tests) and, later, over the broker's own topics.
//!
//! Contract an implementation must keep:
//! - `read` returns whole batches, the first one holding `from`, and empty bytes at the end;
//!   offsets below `start_offset` fail.
//! - An `append` that returned `Ok` is visible to every later `read` and `end_offset`, in order.
//!   A batch is appended whole or not at all (a crash never leaves half of one readable).
//! - `wait_for_data` returns as soon as any named partition's end passes the given offset, and
//!   at the latest at the deadline. It must not miss an append that happened before it was
//!   called.

use std::time::Instant;

use bytes::Bytes;
use eddy_storage::ValidBatch;

use crate::error::LogError;

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    pub last_offset: u64,
}

/// One partition of interest to [`LogAccess::wait_for_data`]: wake when its end passes `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitFor<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: u64,
}

/// The topics a processor reads and writes.
pub trait LogAccess: Send + Sync {
    /// Number of partitions of `topic`.
    fn partition_count(&self, topic: &str) -> Result<u32, LogError>;

    /// Creates `topic` with `partitions` partitions unless it exists. An existing topic with a
    /// different partition count is an error ([`LogError::TopicMismatch`]); `compacted` topics
    /// keep the latest record per key.
    fn create_topic(&self, topic: &str, partitions: u32, compacted: bool) -> Result<(), LogError>;

    /// Whole batches from the one holding `from`, about `max_bytes` of them (at least one).
    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
    ) -> Result<Bytes, LogError>;

    /// The first offset still in the partition.
    fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError>;

    /// The offset the next appended record gets.
    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError>;

    /// Appends one batch built by the processor.
    fn append(&self, topic: &str, partition: u32, batch: &ValidBatch)
    -> Result<Appended, LogError>;

    /// Forces what was appended to `topic`/`partition` to stable storage. Called before a
    /// snapshot claims those records.
    fn flush(&self, topic: &str, partition: u32) -> Result<(), LogError>;

    /// Blocks until some partition in `interests` has records at or past its `offset`, or until
    /// `deadline`. Returns whether data arrived.
    fn wait_for_data(&self, interests: &[WaitFor<'_>], deadline: Instant) -> bool;
}

impl std::fmt::Debug for dyn LogAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn LogAccess")
    }
}
