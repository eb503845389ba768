//! Counters a log keeps about itself, for tests, benchmarks and the broker's metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters (monotonic since open).
#[derive(Debug, Default)]
pub struct Stats {
    pub appends: AtomicU64,
    pub duplicates: AtomicU64,
    pub fsyncs: AtomicU64,
    pub rolls: AtomicU64,
    pub index_loads: AtomicU64,
    pub index_rebuilds: AtomicU64,
    pub recovery_truncated_bytes: AtomicU64,
    pub recovery_scanned_bytes: AtomicU64,
    pub recovery_full_scans: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Batches appended (duplicates excluded).
    pub appends: u64,
    /// Batches recognised as retries of an idempotent producer and not written again.
    pub duplicates: u64,
    /// fsync calls on segment data (group commit makes this far smaller than `appends`).
    pub fsyncs: u64,
    /// Segments sealed.
    pub rolls: u64,
    /// Sealed-segment indexes loaded since open (zero right after open: nothing is scanned).
    pub index_loads: u64,
    /// Indexes rebuilt from their segment because the files were missing or bad.
    pub index_rebuilds: u64,
    /// Bytes cut when the log was opened: a torn tail, and any segments after a torn one.
    pub recovery_truncated_bytes: u64,
    /// Bytes read and checked when the log was opened: everything after the recovery point.
    pub recovery_scanned_bytes: u64,
    /// 1 if the open found no usable recovery point and checked the whole active segment.
    pub recovery_full_scans: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            appends: get(&self.appends),
            duplicates: get(&self.duplicates),
            fsyncs: get(&self.fsyncs),
            rolls: get(&self.rolls),
            index_loads: get(&self.index_loads),
            index_rebuilds: get(&self.index_rebuilds),
            recovery_truncated_bytes: get(&self.recovery_truncated_bytes),
            recovery_scanned_bytes: get(&self.recovery_scanned_bytes),
            recovery_full_scans: get(&self.recovery_full_scans),
        }
    }
}
