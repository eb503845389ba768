//! [`Log`]: one partition's log — appends, reads, lookups and flushing over its segments.
//!
//! Invariants:
//! - Offsets are assigned by the log, contiguous across appends, and never reused.
//! - Readers only ever see whole batches: the active segment's `visible_len` and the log's
//!   `next_offset` are published after a batch is completely written, in that order.
//! - Only the active segment is written. A roll seals it without waiting for it to reach the
//!   disk: the background sealer (`seal`) fsyncs it afterwards. Until then it is *unfinished*,
//!   and recovery after a crash checks it like the active segment: open reads every segment
//!   from the recovery point on (`checkpoint`, `recovery`), which may now include sealed ones.
//! - The durable offset is a prefix: an fsync that publishes offsets as durable first fsyncs
//!   every unfinished sealed segment and the directory entries of every segment file
//!   (`sync_through`), so no offset is ever reported durable while a byte below it is not.
//! - A write that fails leaves the file as it was (the partial batch is cut off), or, if even
//!   that fails, poisons the log against further writes. A failed fsync poisons it too, and
//!   fails every durability wait from then on.

use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::batch::{
    BatchHeader, POSITION_LEN, RecordView, ValidBatch, Validated, stamp_position,
    validate_for_append,
};
use crate::commit::{GroupCommit, WaitError};
use crate::config::{Cleanup, Flush, LogConfig};
use crate::error::{Error, Result};
use crate::lock::DirLock;
use crate::producer::{Admit, ProducerTable};
use crate::recovery::Recovered;
use crate::seal::Sealer;
use crate::segment::{ActiveSegment, SealedSegment};
use crate::stats::{Stats, StatsSnapshot};
use crate::sync::{DirSync, SyncFailure};
use crate::txn::index::TxnState;
use crate::txn::{AbortedTxn, ControlType, Marker};
use crate::vfs::{Fs, write_all_vectored};

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: u64,
    pub last_offset: u64,
    /// The batch was a retry of one already in the log; these are its original offsets.
    pub duplicate: bool,
}

/// The first record at or after a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: u64,
    pub timestamp: i64,
}

/// An append-only, segmented log of record batches in one directory.
///
/// `Log` is `Sync`: appends from many threads are serialised internally (and share fsyncs),
/// reads run concurrently with appends and with each other.
#[derive(Debug)]
pub struct Log {
    pub(crate) inner: Arc<Inner>,
    /// The background thread (`worker`): seals, interval flushes, checkpoints.
    worker: Option<JoinHandle<()>>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    /// The file system every file operation goes through.
    pub fs: Fs,
    pub dir: PathBuf,
    pub config: LogConfig,
    pub _lock: DirLock,
    pub writer: Mutex<Writer>,
    pub segments: RwLock<Arc<Segments>>,
    pub next_offset: AtomicU64,
    pub start_offset: AtomicU64,
    pub commit: GroupCommit,
    pub stats: Stats,
    /// Serialises retention and compaction with each other.
    pub maintenance: Mutex<()>,
    /// Segments sealed but not yet finished, for the background thread.
    pub sealer: Sealer,
    pub dir_sync: DirSync,
    /// The recovery point on disk, as [`crate::checkpoint::Checkpoint::order`]: (offset,
    /// segment base).
    pub recovery_point: Mutex<(u64, u64)>,
    /// Open transactions and aborted ones, for readers (`txn`).
    pub txns: TxnState,
    poisoned: OnceLock<&'static str>,
}

/// The segments readers see; replaced wholesale (copy on write) on roll, retention, compaction.
#[derive(Debug)]
pub(crate) struct Segments {
    pub sealed: Vec<Arc<SealedSegment>>,
    pub active: Arc<ActiveSegment>,
}

impl Segments {
    pub fn start_offset(&self) -> u64 {
        self.sealed.first().map_or(self.active.base_offset, |s| s.base_offset)
    }
}

#[derive(Debug)]
pub(crate) struct Writer {
    pub active: Arc<ActiveSegment>,
    /// End of the last complete batch in the active segment.
    pub position: u64,
    /// Max timestamp of the active segment's first batch (rolling by age counts from it).
    pub first_timestamp: Option<i64>,
    pub producers: ProducerTable,
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, checking what follows the recovery point.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log> {
        Self::open_on(crate::vfs::os(), dir, config)
    }

    /// [`Log::open`] on the file system `fs` (a simulated one in tests: [`crate::vfs::sim`]).
    pub fn open_on(fs: Fs, dir: impl AsRef<Path>, config: LogConfig) -> Result<Log> {
        let dir = dir.as_ref();
        let recovered = crate::recovery::open(&fs, dir, &config)?;
        let inner = Arc::new(Inner::new(fs, dir.to_path_buf(), config, recovered));
        let worker = crate::worker::spawn(inner.clone())?;
        Ok(Log { inner, worker: Some(worker) })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// The first offset still in the log.
    pub fn start_offset(&self) -> u64 {
        self.inner.start_offset.load(Ordering::Acquire)
    }

    /// The offset the next appended record gets (the log end).
    pub fn next_offset(&self) -> u64 {
        self.inner.next_offset.load(Ordering::Acquire)
    }

    /// Offsets below this are on stable storage. Right after open, that is the recovery point:
    /// what recovery found after it is fsynced by the next flush.
    pub fn durable_offset(&self) -> u64 {
        self.inner.commit.durable()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Number of segments, active included.
    pub fn segment_count(&self) -> usize {
        self.inner.segments().sealed.len() + 1
    }

    /// Bytes of log on disk (all segments' `.log` files).
    pub fn size_bytes(&self) -> u64 {
        let s = self.inner.segments();
        s.sealed.iter().map(|x| x.len).sum::<u64>() + s.active.visible_len.load(Ordering::Acquire)
    }

    /// Appends one batch (as built by [`BatchBuilder`](crate::BatchBuilder)), assigning its
    /// offsets. The bytes are checked, then written as they are but for the eight-byte base
    /// offset. Returns once the batch is readable — and, with [`Flush::Always`], on disk.
    pub fn append(&self, batch: &[u8]) -> Result<AppendInfo> {
        self.check_size(batch.len())?;
        let validated = validate_for_append(batch)?;
        self.append_checked(batch, &validated)
    }

    /// Appends a batch that is already known to be valid (checked, or built by
    /// [`BatchBuilder::build_valid`](crate::BatchBuilder::build_valid)), without checking it
    /// again.
    pub fn append_valid(&self, batch: &ValidBatch) -> Result<AppendInfo> {
        self.check_size(batch.as_bytes().len())?;
        self.append_checked(batch.as_bytes(), batch.validated())
    }

    /// Appends a valid batch and returns as soon as it is readable, whatever the flush policy.
    /// For a writer that orders its appends under a lock of its own but wants its fsyncs
    /// shared: it appends under that lock, releases it, then calls [`Log::sync_through`] before
    /// acknowledging, as the policy requires.
    pub fn append_valid_unsynced(&self, batch: &ValidBatch) -> Result<AppendInfo> {
        self.check_size(batch.as_bytes().len())?;
        self.inner.append(batch.as_bytes(), batch.validated())
    }

    /// Appends the marker that ends `marker.producer_id`'s transaction in this partition (a
    /// transaction coordinator's write), following the flush policy. A marker older than the
    /// producer's epoch here is refused (`ProducerFenced`); a marker for a producer with no
    /// open transaction is written all the same (a coordinator retrying after a crash).
    pub fn append_marker(&self, marker: &Marker) -> Result<AppendInfo> {
        let batch = marker.batch();
        let info =
            self.inner.append_kind(batch.as_bytes(), batch.validated(), Some(marker.kind))?;
        if self.inner.config.flush == Flush::Always {
            self.inner.sync_through(info.last_offset + 1)?;
        }
        Ok(info)
    }

    /// The last stable offset: the first offset of the earliest open transaction, or the log
    /// end when none is open. `read_committed` readers read below it.
    pub fn last_stable_offset(&self) -> u64 {
        // The end first: a transaction's start is published before the end that covers it.
        let end = self.next_offset();
        end.min(self.inner.txns.first_unstable())
    }

    /// Whether this partition remembers any aborted transaction (one atomic load).
    pub fn has_aborted_txns(&self) -> bool {
        self.inner.txns.has_aborted()
    }

    /// The aborted transactions with records in `[from, upto)`, in marker order.
    pub fn aborted_txns(&self, from: u64, upto: u64) -> Vec<AbortedTxn> {
        self.inner.txns.between(from, upto)
    }

    /// [`Log::read`] for a `read_committed` reader: whole batches below the last stable
    /// offset only, and that offset.
    pub fn read_committed(&self, from: u64, max_bytes: usize) -> Result<(Bytes, u64)> {
        let lso = self.last_stable_offset();
        if from < lso {
            return Ok((crate::txn::cut_at(self.read(from, max_bytes)?, lso), lso));
        }
        let (start, end) = (self.start_offset(), self.next_offset());
        if from < start || from > end {
            return Err(Error::OffsetOutOfRange { requested: from, start, end });
        }
        Ok((Bytes::new(), lso))
    }

    fn check_size(&self, size: usize) -> Result<()> {
        let max = u64::from(self.inner.config.max_batch_bytes);
        if size as u64 > max {
            return Err(Error::BatchTooLarge { size: size as u64, max });
        }
        Ok(())
    }

    fn append_checked(&self, batch: &[u8], validated: &Validated) -> Result<AppendInfo> {
        let info = self.inner.append(batch, validated)?;
        if self.inner.config.flush == Flush::Always {
            self.inner.sync_through(info.last_offset + 1)?;
        }
        Ok(info)
    }

    /// Blocks until every offset below `offset` is on stable storage (sharing fsyncs with other
    /// callers). This is how a producer asks for durability on a log whose policy is not
    /// `Always`.
    pub fn sync_through(&self, offset: u64) -> Result<()> {
        self.inner.sync_through(offset)
    }

    /// Waits, without forcing anything, until offsets below `offset` are on stable storage —
    /// by an appender's fsync, the interval flusher, or the sealing of a rolled segment.
    /// `false` if `timeout` passed or an fsync failed.
    pub fn wait_durable(&self, offset: u64, timeout: std::time::Duration) -> bool {
        self.inner.commit.wait_passive(offset, timeout)
    }

    /// Forces everything appended so far to stable storage.
    pub fn flush(&self) -> Result<()> {
        self.inner.sync_through(self.next_offset())
    }

    /// Forces everything appended so far to stable storage and records the log end as the
    /// recovery point, so that an open after a crash checks only what is appended after this.
    /// (The log also does this by itself: after each seal and every
    /// [`CHECKPOINT_INTERVAL`](crate::CHECKPOINT_INTERVAL) once something made more durable.)
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.checkpoint(true).map(|_| ())
    }

    /// Seals the active segment now (if it holds anything) and starts a new one, as a size or
    /// age limit would. The sealed segment is fsynced in the background.
    pub fn roll(&self) -> Result<()> {
        let mut writer = self.inner.lock_writer()?;
        if writer.position > 0 {
            self.inner.roll(&mut writer)?;
        }
        Ok(())
    }

    /// Flushes and closes the log: every rolled segment is finished, the recovery point is the
    /// log end, and the directory lock is released.
    pub fn close(mut self) -> Result<()> {
        let flushed = self.flush();
        self.stop_worker();
        flushed?;
        self.checkpoint()
    }

    /// Stops the background thread once it has finished the queued seals.
    fn stop_worker(&mut self) {
        if let Some(handle) = self.worker.take() {
            self.inner.sealer.request_stop();
            if handle.join().is_err() {
                tracing::error!(log = %self.inner.dir.display(), "the log's background thread panicked");
            }
        }
    }

    /// Whole batches starting with the one that holds `from`, about `max_bytes` of them (always
    /// at least one, however large). Empty at the log end. The bytes of sealed segments are a
    /// view of the mapped file, not a copy.
    pub fn read(&self, from: u64, max_bytes: usize) -> Result<Bytes> {
        let inner = &self.inner;
        // The end first, then the segments: every offset below the end is in this snapshot
        // (a roll publishes its new segment before anything is appended to it). The start comes
        // from the snapshot itself, so retention running meanwhile cannot make this read skip
        // from a deleted segment to a later one.
        let end = self.next_offset();
        let segments = inner.segments();
        let start = segments.start_offset();
        if from < start || from > end {
            return Err(Error::OffsetOutOfRange { requested: from, start, end });
        }
        if from == end {
            return Ok(Bytes::new());
        }
        let first = segments.sealed.partition_point(|s| s.base_offset <= from).saturating_sub(1);
        for segment in &segments.sealed[first..] {
            // A segment can end below its successor's base when compaction removed its tail.
            if segment.index(&inner.stats)?.next_offset() <= from {
                continue;
            }
            if let Some(bytes) = segment.read(from, max_bytes, &inner.stats)? {
                return Ok(bytes);
            }
        }
        Ok(segments.active.read(from, max_bytes)?.unwrap_or_default())
    }

    /// The earliest record whose timestamp is at or after `timestamp` (Kafka's ListOffsets by
    /// time), or `None` if every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        let inner = &self.inner;
        let segments = inner.segments();
        for segment in &segments.sealed {
            if segment.index(&inner.stats)?.max_timestamp() < timestamp {
                continue;
            }
            if let Some((offset, timestamp)) = segment.find_time(timestamp, &inner.stats)? {
                return Ok(Some(TimestampOffset { offset, timestamp }));
            }
        }
        if segments.active.max_timestamp() >= timestamp
            && let Some((offset, timestamp)) = segments.active.find_time(timestamp)?
        {
            return Ok(Some(TimestampOffset { offset, timestamp }));
        }
        Ok(None)
    }
}

impl Drop for Log {
    /// Finishes the queued seals (which fsyncs what they cover) and records the durable end as
    /// the recovery point; forces nothing else to disk.
    fn drop(&mut self) {
        self.stop_worker();
    }
}

impl Inner {
    pub fn new(fs: Fs, dir: PathBuf, config: LogConfig, r: Recovered) -> Self {
        let next = r.writer.active.index.read().unwrap_or_else(|p| p.into_inner()).next_offset();
        let segments = Segments { sealed: r.sealed, active: r.writer.active.clone() };
        let start = segments.start_offset();
        r.txns.set_first_unstable(r.writer.producers.first_unstable());
        let sealer = Sealer::default();
        for job in r.jobs {
            sealer.push(job);
        }
        Self {
            dir_sync: DirSync::new(fs.clone(), &dir),
            fs,
            dir,
            config,
            _lock: r.lock,
            writer: Mutex::new(r.writer),
            segments: RwLock::new(Arc::new(segments)),
            next_offset: AtomicU64::new(next),
            start_offset: AtomicU64::new(start),
            // What recovery found past the recovery point may be only in the page cache.
            commit: GroupCommit::new(r.durable),
            stats: r.stats,
            maintenance: Mutex::new(()),
            sealer,
            recovery_point: Mutex::new(r.recovery_point),
            txns: r.txns,
            poisoned: OnceLock::new(),
        }
    }

    pub fn segments(&self) -> Arc<Segments> {
        self.segments.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_segments(&self, segments: Segments) {
        *self.segments.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(segments);
    }

    pub fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>> {
        self.check_poisoned()?;
        Ok(self.writer.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.get().is_some()
    }

    /// The operation whose failure poisoned the log, if one did.
    pub fn poisoned_by(&self) -> Option<&'static str> {
        self.poisoned.get().copied()
    }

    fn check_poisoned(&self) -> Result<()> {
        match self.poisoned.get() {
            Some(op) => Err(Error::Poisoned { path: self.dir.clone(), op }),
            None => Ok(()),
        }
    }

    pub fn poison(&self, op: &'static str) {
        if self.poisoned.set(op).is_ok() {
            tracing::error!(log = %self.dir.display(), op, "log poisoned: refusing writes until reopened");
        }
    }

    fn append(&self, batch: &[u8], validated: &Validated) -> Result<AppendInfo> {
        self.append_kind(batch, validated, None)
    }

    /// Appends a data batch (`marker` `None`) or a transaction marker.
    fn append_kind(
        &self,
        batch: &[u8],
        validated: &Validated,
        marker: Option<ControlType>,
    ) -> Result<AppendInfo> {
        if self.config.cleanup == Cleanup::Compact && validated.has_null_key {
            return Err(missing_key(batch));
        }
        let mut w = self.lock_writer()?;
        if let Admit::Duplicate { base_offset, last_offset } =
            w.producers.admit(&validated.header)?
        {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok(AppendInfo { base_offset, last_offset, duplicate: true });
        }
        if self.should_roll(&w, validated) {
            self.roll(&mut w)?;
        }
        let mut header = validated.header;
        header.base_offset = self.next_offset.load(Ordering::Relaxed);
        self.write_batch(&mut w, &header, batch, marker)?;
        Ok(AppendInfo {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            duplicate: false,
        })
    }

    fn should_roll(&self, w: &Writer, v: &Validated) -> bool {
        if w.position == 0 {
            return false;
        }
        let h = &v.header;
        let next = self.next_offset.load(Ordering::Relaxed);
        w.position + u64::from(h.batch_len) > self.config.segment_bytes
            || w.first_timestamp.is_some_and(|first| {
                h.max_timestamp.saturating_sub(first) >= self.config.segment_ms
            })
            || next + u64::from(h.last_offset_delta) - w.active.base_offset > u64::from(u32::MAX)
    }

    /// Writes `batch` at the end of the active segment with its position (base offset and
    /// leader epoch) stamped in front, and publishes it. On failure the segment is cut back to
    /// where it was. An ABORT marker's entry goes to the aborted-transaction index after the
    /// batch is written and before it is published; if it cannot, the batch is cut too.
    fn write_batch(
        &self,
        w: &mut Writer,
        header: &BatchHeader,
        batch: &[u8],
        marker: Option<ControlType>,
    ) -> Result<()> {
        let mut front = [0u8; POSITION_LEN];
        front.copy_from_slice(&batch[..POSITION_LEN]);
        stamp_position(&mut front, header.base_offset);
        let active = w.active.clone();
        let aborted = match marker {
            Some(ControlType::Abort) => {
                w.producers.ended_by(header).map(|(first, after)| AbortedTxn {
                    producer_id: header.producer_id,
                    first_offset: first,
                    last_offset: header.base_offset,
                    last_stable_offset: after.unwrap_or(header.next_offset()),
                })
            }
            _ => None,
        };
        let slices = &mut [IoSlice::new(&front), IoSlice::new(&batch[POSITION_LEN..])];
        let written = write_all_vectored(&*active.file, slices)
            .map_err(Error::io("append to", &active.path))
            .and_then(|()| aborted.as_ref().map_or(Ok(()), |a| self.txns.write_entry(a)));
        if let Err(e) = written {
            let cut =
                active.file.seek_to(w.position).and_then(|()| active.file.set_len(w.position));
            match cut {
                // The cut itself is not durable until an fsync covers it: the next one must
                // run (else a power loss could bring the partial batch back, and recovery
                // would take it for a torn tail and cut every later segment with it).
                Ok(()) => active.sync.cut(w.position),
                Err(_) => self.poison("write"),
            }
            return Err(e);
        }
        active.index.write().unwrap_or_else(|p| p.into_inner()).on_batch(
            header,
            w.position,
            self.config.index_interval_bytes,
        );
        w.position += u64::from(header.batch_len);
        w.first_timestamp.get_or_insert(header.max_timestamp);
        w.producers.record(header);
        if header.is_transactional() {
            // Before the end is published: a reader that sees the new end sees these.
            if let Some(entry) = aborted {
                self.txns.publish(entry);
            }
            self.txns.set_first_unstable(w.producers.first_unstable());
        }
        active.visible_len.store(w.position, Ordering::Release);
        self.next_offset.store(header.next_offset(), Ordering::Release);
        self.stats.appends.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Blocks until every offset below `offset` is durable, leading or sharing an fsync.
    pub fn sync_through(&self, offset: u64) -> Result<()> {
        match self.commit.wait(offset, || self.sync_all()) {
            Ok(()) => Ok(()),
            Err(WaitError::Sync(failure)) => Err(self.durability_lost(failure)),
            Err(WaitError::Failed) => Err(Error::Poisoned { path: self.dir.clone(), op: "fsync" }),
        }
    }

    /// fsyncs whatever holds offsets below the log end as it was on entry, and returns that end:
    /// the unfinished sealed segments (oldest first, sharing the sealer's fsync if it is on it),
    /// the directory if segment files were created since its last fsync, the active segment.
    fn sync_all(&self) -> Result<u64, SyncFailure> {
        let covered = self.next_offset.load(Ordering::Acquire);
        // In this order: a roll after `covered` was read queues its job before publishing the
        // new active segment, so the segment holding `covered` is either `active` or queued.
        let active = self.segments().active.clone();
        let created = self.dir_sync.generation();
        for job in self.sealer.pending() {
            job.sync.sync(job.len, &self.stats)?;
        }
        self.dir_sync.sync_through(created)?;
        active.sync.sync(active.visible_len.load(Ordering::Acquire), &self.stats)?;
        self.stats.group_committed();
        Ok(covered)
    }
}

fn missing_key(batch: &[u8]) -> Error {
    let index = crate::batch::BatchView::parse(batch)
        .ok()
        .and_then(|v| v.records().ok())
        .and_then(|r| r.iter().position(|r| r.is_ok_and(|r: RecordView<'_>| r.key.is_none())))
        .unwrap_or(0);
    Error::MissingKey { index: index as u32 }
}
