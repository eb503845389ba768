//! Counters a log keeps about itself, for tests, benchmarks and the broker's metrics.
//!
//! Everything here is an atomic updated with `Relaxed` ordering: a counter is read as a whole
//! only by [`Stats::snapshot`], which is allowed to see a slightly stale mix. Histograms have
//! fixed bucket bounds chosen at compile time, so observing is a search over a few constants
//! and two atomic adds — no lock, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (microseconds) of the fsync latency buckets.
pub const FSYNC_BOUNDS_US: [u64; FSYNC_BUCKETS] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];
pub const FSYNC_BUCKETS: usize = 13;

/// Upper bounds (batches) of the group-commit size buckets: batches made durable by one fsync.
pub const GROUP_COMMIT_BOUNDS: [u64; GROUP_COMMIT_BUCKETS] = [1, 2, 4, 8, 16, 32, 64, 128, 256];
pub const GROUP_COMMIT_BUCKETS: usize = 9;

/// A histogram over fixed bucket bounds, updated with atomics only.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: [u64; N],
    /// Observations in each bucket alone (not cumulative): `counts[i]` holds values in
    /// `(bounds[i-1], bounds[i]]`.
    counts: [AtomicU64; N],
    /// Observations above the last bound.
    overflow: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub fn new(bounds: [u64; N]) -> Self {
        Self {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts `value` in its bucket.
    pub fn observe(&self, value: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        match self.counts.get(i) {
            Some(count) => count.fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot<N> {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            overflow: self.overflow.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time copy of a [`Histogram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramSnapshot<const N: usize> {
    pub bounds: [u64; N],
    /// Per bucket, not cumulative (see [`HistogramSnapshot::cumulative`]).
    pub counts: [u64; N],
    pub overflow: u64,
    pub sum: u64,
}

impl<const N: usize> HistogramSnapshot<N> {
    /// Every observation.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.overflow
    }

    /// `(upper bound, observations at or below it)` per bucket, as Prometheus exposes them
    /// (the `+Inf` bucket is [`HistogramSnapshot::count`]).
    pub fn cumulative(&self) -> [(u64, u64); N] {
        let mut total = 0;
        std::array::from_fn(|i| {
            total += self.counts[i];
            (self.bounds[i], total)
        })
    }

    /// Adds `other` (same bounds) into this one: the sum over several logs.
    pub fn add(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.overflow += other.overflow;
        self.sum += other.sum;
    }
}

/// Live counters (monotonic since open).
#[derive(Debug)]
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
    /// Duration of each segment data fsync, in microseconds.
    pub fsync_us: Histogram<FSYNC_BUCKETS>,
    /// Batches appended since the previous group commit, observed by each group commit.
    pub group_commit_batches: Histogram<GROUP_COMMIT_BUCKETS>,
    /// `appends` as the last group commit saw it.
    pub committed_appends: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        let zero = || AtomicU64::new(0);
        Stats {
            appends: zero(),
            duplicates: zero(),
            fsyncs: zero(),
            rolls: zero(),
            index_loads: zero(),
            index_rebuilds: zero(),
            recovery_truncated_bytes: zero(),
            recovery_scanned_bytes: zero(),
            recovery_full_scans: zero(),
            fsync_us: Histogram::new(FSYNC_BOUNDS_US),
            group_commit_batches: Histogram::new(GROUP_COMMIT_BOUNDS),
            committed_appends: zero(),
        }
    }
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// How long each segment data fsync took, in microseconds.
    pub fsync_us: HistogramSnapshot<FSYNC_BUCKETS>,
    /// Batches each group commit made durable (appended since the previous one).
    pub group_commit_batches: HistogramSnapshot<GROUP_COMMIT_BUCKETS>,
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
            fsync_us: self.fsync_us.snapshot(),
            group_commit_batches: self.group_commit_batches.snapshot(),
        }
    }

    /// Records one group commit: the batches appended since the previous one.
    pub fn group_committed(&self) {
        let appends = self.appends.load(Ordering::Relaxed);
        let before = self.committed_appends.swap(appends, Ordering::Relaxed);
        self.group_commit_batches.observe(appends.saturating_sub(before));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_values_at_their_upper_bound_and_counts_overflow() {
        let h = Histogram::new([10, 100]);
        for v in [0, 10, 11, 100, 101, 5000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.counts, [2, 2]);
        assert_eq!(s.overflow, 2);
        assert_eq!(s.count(), 6);
        assert_eq!(s.sum, 5222);
        assert_eq!(s.cumulative(), [(10, 2), (100, 4)]);
        let mut twice = s;
        twice.add(&s);
        assert_eq!(twice.count(), 12);
    }
}
