//! Per-log settings and their limits.

use std::time::Duration;

use crate::error::{Error, Result};

/// When appended bytes are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// fsync before `append` returns; concurrent appenders share one fsync (group commit).
    Always,
    /// fsync from a background thread at this interval; `append` returns once written.
    Interval(Duration),
    /// Leave write-back to the operating system (segments are still fsynced once sealed, by
    /// the log's background thread).
    Os,
}

/// What happens to old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Whole sealed segments are deleted by age and total size.
    Delete,
    /// Sealed segments keep only the latest record per key; tombstones go after
    /// `delete_retention_ms`.
    Compact,
}

/// Settings for one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll the active segment before it would grow past this size.
    pub segment_bytes: u64,
    /// Roll the active segment once its records span this much event time.
    pub segment_ms: i64,
    /// Bytes of log between two sparse index entries.
    pub index_interval_bytes: u32,
    /// Largest batch `append` accepts.
    pub max_batch_bytes: u32,
    pub flush: Flush,
    pub cleanup: Cleanup,
    /// Delete sealed segments whose newest record is older than this (with `Cleanup::Delete`).
    pub retention_ms: Option<i64>,
    /// Delete the oldest sealed segments while the log is larger than this (with `Cleanup::Delete`).
    pub retention_bytes: Option<u64>,
    /// How long a tombstone outlives the records it deletes (with `Cleanup::Compact`).
    pub delete_retention_ms: i64,
}

/// Index positions are u32, and a segment may overshoot `segment_bytes` by one batch.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 31;
pub const MAX_BATCH_BYTES_MAX: u32 = 1 << 30;

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            max_batch_bytes: 8 << 20,
            flush: Flush::Os,
            cleanup: Cleanup::Delete,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            delete_retention_ms: 24 * 3600 * 1000,
        }
    }
}

impl LogConfig {
    /// Checks every value against its range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason| Err(Error::InvalidConfig { field, reason });
        if self.segment_bytes < 1024 || self.segment_bytes > SEGMENT_BYTES_MAX {
            return bad("segment_bytes", "must be between 1 KiB and 2 GiB");
        }
        if self.segment_ms <= 0 {
            return bad("segment_ms", "must be positive");
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes", "must be positive");
        }
        if self.max_batch_bytes < crate::batch::HEADER_LEN as u32
            || self.max_batch_bytes > MAX_BATCH_BYTES_MAX
        {
            return bad("max_batch_bytes", "must be between 61 bytes and 1 GiB");
        }
        if let Flush::Interval(d) = self.flush
            && d.is_zero()
        {
            return bad("flush", "interval must be positive");
        }
        if self.retention_ms.is_some_and(|ms| ms < 0) {
            return bad("retention_ms", "must not be negative");
        }
        if self.delete_retention_ms < 0 {
            return bad("delete_retention_ms", "must not be negative");
        }
        Ok(())
    }
}
