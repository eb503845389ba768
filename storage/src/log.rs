//! [`Log`]: one partition's log — appends, reads, lookups and flushing over its segments.
//!
//! Invariants:
//! - Offsets are assigned by the log, contiguous across appends, and never reused.
//! - Readers only ever see whole batches: the active segment's `visible_len` and the log's
//!   `next_offset` are published after a batch is completely written, in that order.
//! - Only the active segment is written; a segment is fsynced before it is sealed, so recovery
//!   never needs to look at sealed segments.
//! - A write that fails leaves the file as it was (the partial batch is cut off), or, if even
//!   that fails, poisons the log against further writes.

use std::fs::File;
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, mpsc};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::batch::{
    BatchHeader, POSITION_LEN, RecordView, ValidBatch, Validated, stamp_position,
    validate_for_append,
};
use crate::commit::{GroupCommit, WaitError};
use crate::config::{Cleanup, Flush, LogConfig};
use crate::error::{Error, Result};
use crate::files::{self, LOG_EXT, PRODUCERS_EXT};
use crate::index::IndexBuilder;
use crate::lock::DirLock;
use crate::producer::{Admit, ProducerTable};
use crate::segment::{ActiveSegment, SealedSegment};
use crate::stats::{Stats, StatsSnapshot};

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
    flusher: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

#[derive(Debug)]
pub(crate) struct Inner {
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
    /// Opens (creating if needed) the log in `dir`, recovering the active segment's tail.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log> {
        let inner = Arc::new(crate::recovery::open(dir.as_ref(), config)?);
        let flusher = match inner.config.flush {
            Flush::Interval(every) => Some(spawn_flusher(Arc::downgrade(&inner), every)),
            Flush::Always | Flush::Os => None,
        };
        Ok(Log { inner, flusher })
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

    /// Offsets below this are on stable storage.
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
    /// by an appender's fsync, the interval flusher, or a roll. `false` if `timeout` passed.
    pub fn wait_durable(&self, offset: u64, timeout: std::time::Duration) -> bool {
        self.inner.commit.wait_passive(offset, timeout)
    }

    /// Forces everything appended so far to stable storage.
    pub fn flush(&self) -> Result<()> {
        self.inner.sync_through(self.next_offset())
    }

    /// Seals the active segment now (if it holds anything) and starts a new one, as a size or
    /// age limit would.
    pub fn roll(&self) -> Result<()> {
        let mut writer = self.inner.lock_writer()?;
        if writer.position > 0 {
            self.inner.roll(&mut writer)?;
        }
        Ok(())
    }

    /// Flushes and closes the log, releasing the directory lock.
    pub fn close(mut self) -> Result<()> {
        self.stop_flusher();
        self.flush()
    }

    fn stop_flusher(&mut self) {
        if let Some((stop, handle)) = self.flusher.take() {
            drop(stop);
            let _ = handle.join();
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
            if segment.index(&inner.stats)?.next_offset <= from {
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
            if segment.index(&inner.stats)?.max_timestamp < timestamp {
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
    fn drop(&mut self) {
        self.stop_flusher();
    }
}

impl Inner {
    pub fn new(
        dir: PathBuf,
        config: LogConfig,
        lock: DirLock,
        writer: Writer,
        sealed: Vec<Arc<SealedSegment>>,
        stats: Stats,
    ) -> Self {
        let next = writer.active.index.read().unwrap_or_else(|p| p.into_inner()).next_offset;
        let segments = Segments { sealed, active: writer.active.clone() };
        let start = segments.start_offset();
        Self {
            dir,
            config,
            _lock: lock,
            writer: Mutex::new(writer),
            segments: RwLock::new(Arc::new(segments)),
            next_offset: AtomicU64::new(next),
            start_offset: AtomicU64::new(start),
            // Whatever survived recovery is on disk as far as this process can tell.
            commit: GroupCommit::new(next),
            stats,
            maintenance: Mutex::new(()),
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
        self.write_batch(&mut w, &header, batch)?;
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
    /// leader epoch) stamped in front, and publishes it. On failure the segment is cut back to where it was.
    fn write_batch(&self, w: &mut Writer, header: &BatchHeader, batch: &[u8]) -> Result<()> {
        let mut front = [0u8; POSITION_LEN];
        front.copy_from_slice(&batch[..POSITION_LEN]);
        stamp_position(&mut front, header.base_offset);
        let active = w.active.clone();
        let slices = &mut [IoSlice::new(&front), IoSlice::new(&batch[POSITION_LEN..])];
        if let Err(e) = write_all_vectored(&active.file, slices) {
            let cut = (&active.file)
                .seek(SeekFrom::Start(w.position))
                .and_then(|_| active.file.set_len(w.position));
            if cut.is_err() {
                self.poison("write");
            }
            return Err(Error::io("append to", &active.path)(e));
        }
        active.index.write().unwrap_or_else(|p| p.into_inner()).on_batch(
            header,
            w.position,
            self.config.index_interval_bytes,
        );
        w.position += u64::from(header.batch_len);
        w.first_timestamp.get_or_insert(header.max_timestamp);
        w.producers.record(header);
        active.visible_len.store(w.position, Ordering::Release);
        self.next_offset.store(header.next_offset(), Ordering::Release);
        self.stats.appends.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Seals the active segment and starts a new one at the log end. Nothing changes in memory
    /// unless every step on disk succeeded.
    pub fn roll(&self, w: &mut Writer) -> Result<()> {
        let old = w.active.clone();
        if let Err(e) = old.file.sync_data() {
            self.poison("fsync");
            return Err(Error::io("fsync", &old.path)(e));
        }
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        let index = old.index.read().unwrap_or_else(|p| p.into_inner()).clone();
        index.write_files(&old.path, w.position)?;
        let base = index.next_offset;
        files::replace_file(
            &files::segment_file(&self.dir, base, PRODUCERS_EXT),
            &w.producers.encode(),
        )?;
        let path = files::segment_file(&self.dir, base, LOG_EXT);
        let file = create_segment_file(&path)?;
        files::sync_dir(&self.dir)?;

        let sealed_file = old.file.try_clone().map_err(Error::io("reopen", &old.path))?;
        let sealed = SealedSegment::from_file(
            old.base_offset,
            old.path.clone(),
            sealed_file,
            w.position,
            self.config.index_interval_bytes,
            Some(index.into_sealed()),
        );
        let active = Arc::new(ActiveSegment::new(base, path, file, 0, IndexBuilder::new(base)));
        let mut list = self.segments().sealed.clone();
        list.push(Arc::new(sealed));
        self.set_segments(Segments { sealed: list, active: active.clone() });
        w.active = active;
        w.position = 0;
        w.first_timestamp = None;
        self.commit.mark_durable(base);
        self.stats.rolls.fetch_add(1, Ordering::Relaxed);
        self.remove_old_snapshots(base);
        Ok(())
    }

    /// Producer snapshots older than the previous segment's are never read again.
    fn remove_old_snapshots(&self, newest: u64) {
        let segments = self.segments();
        let keep_from = segments.sealed.iter().rev().nth(1).map_or(0, |s| s.base_offset);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some((base, PRODUCERS_EXT)) = name.to_str().and_then(files::parse_segment_name)
                && base < keep_from
                && base != newest
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    pub fn sync_through(&self, offset: u64) -> Result<()> {
        let outcome = self.commit.wait(offset, || {
            let covered = self.next_offset.load(Ordering::Acquire);
            let active = self.segments().active.clone();
            active.file.sync_data().map_err(|e| (e, active.path.clone()))?;
            self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            Ok(covered)
        });
        match outcome {
            Ok(()) => Ok(()),
            Err(WaitError::Sync((e, path))) => {
                self.poison("fsync");
                Err(Error::io("fsync", path)(e))
            }
            Err(WaitError::Failed) => Err(Error::Poisoned { path: self.dir.clone(), op: "fsync" }),
        }
    }
}

fn create_segment_file(path: &Path) -> Result<File> {
    // A file of this name can only be left over from a roll that failed before it was used:
    // its base offset is past every appended record. Start it empty.
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(Error::io("create", path))
}

fn write_all_vectored(mut file: &File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn missing_key(batch: &[u8]) -> Error {
    let index = crate::batch::BatchView::parse(batch)
        .ok()
        .and_then(|v| v.records().ok())
        .and_then(|r| r.iter().position(|r| r.is_ok_and(|r: RecordView<'_>| r.key.is_none())))
        .unwrap_or(0);
    Error::MissingKey { index: index as u32 }
}

fn spawn_flusher(
    inner: std::sync::Weak<Inner>,
    every: std::time::Duration,
) -> (mpsc::Sender<()>, JoinHandle<()>) {
    let (stop, wake) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new().name("eddy-log-flusher".into()).spawn(move || {
        // Disconnected = the Log was dropped; a timeout = time to flush.
        while let Err(mpsc::RecvTimeoutError::Timeout) = wake.recv_timeout(every) {
            let Some(inner) = inner.upgrade() else { return };
            let end = inner.next_offset.load(Ordering::Acquire);
            if end > inner.commit.durable()
                && let Err(e) = inner.sync_through(end)
            {
                tracing::error!(log = %inner.dir.display(), error = %e, "interval flush failed");
                return;
            }
        }
    });
    match handle {
        Ok(handle) => (stop, handle),
        // Without a thread the policy degrades to Os; say so rather than fail the open.
        Err(e) => {
            tracing::error!(error = %e, "could not start the flusher thread; relying on OS write-back");
            let (stop, _) = mpsc::channel();
            (stop, std::thread::spawn(|| {}))
        }
    }
}
