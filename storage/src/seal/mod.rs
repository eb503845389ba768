//! Rolling the active segment, and sealing the segment it leaves behind in the background.
//!
//! A roll does only what must happen before the next append: it creates the next segment's
//! files, snapshots the producer state as of its base, publishes the old segment as an
//! *unfinished* sealed segment (its index still the active one) and queues a [`SealJob`]. It
//! fsyncs nothing, so an append that triggers a roll waits for three file creations, not for a
//! gigabyte of page cache to reach the disk.
//!
//! The log's background thread (`worker`) then runs the jobs in roll order. For each it:
//! 1. fsyncs the segment (through its [`SegmentSync`], shared with any appender doing the same);
//! 2. writes the producer snapshot named for the next segment;
//! 3. completes the index files (pending entries, header, fsync);
//! 4. fsyncs the directory, which makes the next segment's files (created by the roll) and the
//!    renames above durable;
//! 5. marks the offsets below the next segment durable and writes a recovery-point checkpoint
//!    at the next segment's start;
//! 6. replaces the unfinished segment with a finished one whose index is mapped from its files
//!    on first use, which frees the heap side of the active index.
//!
//! Invariants:
//! - Jobs run in roll order and leave the queue only when done, so an fsync that makes offsets
//!   durable ([`crate::log`]'s `sync_through`) finds every segment still unsynced in the queue
//!   and fsyncs it first: the durable offset stays a prefix of the log.
//! - A failed fsync of the segment or the directory poisons the log and fails its group commit
//!   for good; a failure to write a cache file (index, producer snapshot, checkpoint) is logged
//!   and leaves it to be rebuilt.
//! - Retention and compaction wait for the jobs queued before them and touch only finished
//!   segments below the checkpointed recovery point: never one a job or recovery still reads.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use crate::active_index::ActiveIndex;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::files::{self, LOG_EXT, PRODUCERS_EXT};
use crate::log::{Inner, Segments, Writer};
use crate::segment::{ActiveSegment, SealedSegment};
use crate::sync::{SegmentSync, SyncFailure};
use crate::vfs::{FileSystem, OpenMode, VFile};

/// A sealed segment the background thread has yet to finish.
#[derive(Debug)]
pub struct SealJob {
    /// The segment as published at the roll (unfinished).
    pub segment: Arc<SealedSegment>,
    pub sync: Arc<SegmentSync>,
    pub index: Arc<RwLock<ActiveIndex>>,
    /// Length of the segment's `.log`.
    pub len: u64,
    /// Base offset of the segment after it.
    pub next_base: u64,
    /// Producer state as of `next_base` ([`crate::producer::ProducerTable::encode`]).
    pub producers: Vec<u8>,
}

/// What the background thread is to do next.
#[derive(Debug)]
pub enum Work {
    Seal(Arc<SealJob>),
    /// A timer may be due.
    Tick,
    /// The log is closing and every job is done.
    Stop,
}

#[derive(Debug, Default)]
struct Queue {
    jobs: VecDeque<Arc<SealJob>>,
    /// Jobs ever queued, and ever finished: tickets to wait on.
    queued: u64,
    finished: u64,
    stop: bool,
    /// The background thread has exited: nobody will finish the jobs.
    gone: bool,
    #[cfg(test)]
    paused: bool,
}

/// The queue of seal jobs between the appenders and the background thread.
#[derive(Debug, Default)]
pub struct Sealer {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Sealer {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, job: SealJob) {
        let mut q = self.lock();
        q.jobs.push_back(Arc::new(job));
        q.queued += 1;
        self.changed.notify_all();
    }

    /// The jobs not yet finished, oldest first.
    pub fn pending(&self) -> Vec<Arc<SealJob>> {
        self.lock().jobs.iter().cloned().collect()
    }

    /// Blocks until every job queued so far is finished (or nobody is left to finish them).
    pub fn wait_for_queued(&self) {
        let mut q = self.lock();
        let ticket = q.queued;
        while q.finished < ticket && !q.gone {
            q = self.changed.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The background thread's wait: the oldest job, else a stop, else a tick at `deadline`.
    pub fn next(&self, deadline: Instant) -> Work {
        let mut q = self.lock();
        loop {
            #[cfg(test)]
            let paused = q.paused && !q.stop;
            #[cfg(not(test))]
            let paused = false;
            if !paused {
                if let Some(job) = q.jobs.front() {
                    return Work::Seal(job.clone());
                }
                if q.stop {
                    return Work::Stop;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Work::Tick;
            }
            q = self.changed.wait_timeout(q, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// The background thread finished the oldest job.
    pub fn finish(&self) {
        let mut q = self.lock();
        q.jobs.pop_front();
        q.finished += 1;
        self.changed.notify_all();
    }

    pub fn request_stop(&self) {
        self.lock().stop = true;
        self.changed.notify_all();
    }

    pub fn worker_gone(&self) {
        self.lock().gone = true;
        self.changed.notify_all();
    }

    /// Holds jobs in the queue (tests of what a crash with a seal pending leaves).
    #[cfg(test)]
    pub fn pause(&self, paused: bool) {
        self.lock().paused = paused;
        self.changed.notify_all();
    }
}

impl Inner {
    /// Seals the active segment and starts a new one at the log end; the sealing itself is
    /// queued for the background thread. Nothing changes in memory unless the new segment's
    /// files were created.
    pub fn roll(&self, w: &mut Writer) -> Result<()> {
        let old = w.active.clone();
        let base = self.next_offset.load(Ordering::Relaxed);
        let path = files::segment_file(&self.dir, base, LOG_EXT);
        let made = create_segment_file(&*self.fs, &path).and_then(|file| {
            let index = ActiveIndex::create(&*self.fs, &path, base)?;
            let active = ActiveSegment::new(base, path.clone(), file, 0, 0, index)?;
            let sealed_file = old.file.try_clone().map_err(Error::io("reopen", &old.path))?;
            Ok((active, sealed_file))
        });
        let (active, sealed_file) = match made {
            Ok(made) => made,
            Err(e) => {
                self.remove_failed_segment(base);
                return Err(e);
            }
        };
        // Counted once the files exist and before they are published: an fsync that sees the
        // new segment covers their directory entries (one that counted them before they
        // existed would record a directory fsync that missed them).
        self.dir_sync.created();
        let active = Arc::new(active);

        let sealed = Arc::new(SealedSegment::unfinished(
            &self.fs,
            old.base_offset,
            old.path.clone(),
            sealed_file,
            w.position,
            self.config.index_interval_bytes,
            old.index.clone(),
        ));
        // Queued before the new segment is published: an fsync that sees the new segment (or
        // any offset in it) sees this job too.
        self.sealer.push(SealJob {
            segment: sealed.clone(),
            sync: old.sync.clone(),
            index: old.index.clone(),
            len: w.position,
            next_base: base,
            producers: w.producers.encode(),
        });
        let mut list = self.segments().sealed.clone();
        list.push(sealed);
        self.set_segments(Segments { sealed: list, active: active.clone() });
        w.active = active;
        w.position = 0;
        w.first_timestamp = None;
        self.stats.rolls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes what a failed roll created at `base`: an empty segment file left behind would
    /// sit inside the active segment's offsets. (If a crash keeps it anyway, recovery removes
    /// it: `recovery` skips empty segments that start inside their predecessor.)
    fn remove_failed_segment(&self, base: u64) {
        for path in crate::recovery::segment_files(&self.dir, base) {
            match self.fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "could not remove a file of a failed roll; recovery will");
                }
            }
        }
    }

    /// Runs one seal job (see the module docs). An error here has already poisoned the log.
    pub fn seal(&self, job: &SealJob) -> Result<()> {
        if let Err(failure) = job.sync.sync(job.len, &self.stats) {
            return Err(self.durability_lost(failure));
        }
        let snapshot = files::segment_file(&self.dir, job.next_base, PRODUCERS_EXT);
        if let Err(e) = files::replace_file(&*self.fs, &snapshot, &job.producers) {
            tracing::warn!(log = %self.dir.display(), error = %e, "could not write the producer snapshot; open will rebuild it if needed");
        }
        let finished = job.index.write().unwrap_or_else(|p| p.into_inner()).finish(job.len);
        if let Err(e) = &finished {
            tracing::warn!(segment = %job.segment.path.display(), error = %e, "could not complete the index files; they will be rebuilt on first use");
        }
        if let Err(failure) = self.dir_sync.sync_now() {
            return Err(self.durability_lost(failure));
        }
        self.commit.mark_durable(job.next_base);
        let checkpoint = Checkpoint::segment_start(job.next_base, job.producers.clone());
        if let Err(e) = self.write_checkpoint(&checkpoint) {
            tracing::warn!(log = %self.dir.display(), error = %e, "could not write the recovery point");
        }
        // Even if the index files could not be completed: the finished segment rebuilds them
        // from the log on first use.
        if let Err(e) = self.replace_finished(&job.segment) {
            tracing::warn!(segment = %job.segment.path.display(), error = %e, "could not reopen the sealed segment; it keeps its index in memory");
        }
        self.remove_old_snapshots(job.next_base);
        Ok(())
    }

    /// An fsync the durable offset depends on failed: refuse writes and durability for good.
    pub fn durability_lost(&self, failure: SyncFailure) -> Error {
        self.poison("fsync");
        self.commit.fail();
        match failure {
            SyncFailure::Io { source, path } => Error::io("fsync", path)(source),
            SyncFailure::Earlier => Error::Poisoned { path: self.dir.clone(), op: "fsync" },
        }
    }

    /// Swaps the finished form of `segment` into the list readers see.
    fn replace_finished(&self, segment: &Arc<SealedSegment>) -> Result<()> {
        let finished = Arc::new(segment.finished()?);
        // The writer lock orders this against the other edits of the list (roll, retention,
        // compaction); it is held for a copy of the list.
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let segments = self.segments();
        let mut sealed = segments.sealed.clone();
        if let Some(slot) = sealed.iter_mut().find(|s| Arc::ptr_eq(s, segment)) {
            *slot = finished;
            self.set_segments(Segments { sealed, active: segments.active.clone() });
        }
        Ok(())
    }

    /// Producer snapshots older than the previous segment's are never read again.
    fn remove_old_snapshots(&self, newest: u64) {
        let segments = self.segments();
        let keep_from = segments.sealed.iter().rev().nth(1).map_or(0, |s| s.base_offset);
        let Ok(names) = self.fs.read_dir(&self.dir) else {
            return;
        };
        for name in names {
            if let Some((base, PRODUCERS_EXT)) = files::parse_segment_name(&name)
                && base < keep_from
                && base != newest
            {
                let _ = self.fs.remove_file(&self.dir.join(&name));
            }
        }
    }

    /// Writes `checkpoint` unless one at or past it is already on disk. `Ok(false)` if skipped.
    pub fn write_checkpoint(&self, checkpoint: &Checkpoint) -> Result<bool> {
        // After a failed fsync (or a failed cut) the bytes below any later point are not known
        // to be on disk, even in segments whose own fsync succeeded: the recovery point stays.
        if let Some(op) = self.poisoned_by() {
            return Err(Error::Poisoned { path: self.dir.clone(), op });
        }
        let mut point = self.recovery_point.lock().unwrap_or_else(|p| p.into_inner());
        if checkpoint.order() <= *point {
            return Ok(false);
        }
        // Every aborted transaction below the point must be on disk before the point is.
        self.txns.sync()?;
        checkpoint.write(&*self.fs, &self.dir)?;
        *point = checkpoint.order();
        tracing::debug!(log = %self.dir.display(), offset = checkpoint.offset(), segment = checkpoint.segment_base, "recovery point written");
        Ok(true)
    }

    /// Records the log's current end as the recovery point. With `force`, fsyncs what is not
    /// yet durable first; without, does nothing unless the end is already durable.
    /// `Ok(false)` if nothing was written.
    pub fn checkpoint(&self, force: bool) -> Result<bool> {
        let (checkpoint, handles, index) = {
            let w = self.lock_writer()?;
            let mut index = w.active.index.write().unwrap_or_else(|p| p.into_inner());
            let state = index.checkpoint_state()?;
            let handles = index.file_handles()?;
            drop(index);
            let checkpoint = Checkpoint {
                segment_base: w.active.base_offset,
                position: w.position,
                first_timestamp: w.first_timestamp,
                index: state,
                producers: w.producers.encode(),
            };
            (checkpoint, handles, w.active.index.clone())
        };
        if checkpoint.order() <= *self.recovery_point.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(false);
        }
        if self.commit.durable() < checkpoint.offset() {
            if !force {
                return Ok(false);
            }
            self.sync_through(checkpoint.offset())?;
        }
        for (file, path) in handles {
            if let Err(e) = file.sync_data() {
                // Not retried: a later fsync could succeed without the lost entries.
                index.write().unwrap_or_else(|p| p.into_inner()).mark_sync_failed(path.clone());
                return Err(Error::io("fsync", &path)(e));
            }
        }
        self.write_checkpoint(&checkpoint)
    }

    /// Whether retention or compaction may delete or rewrite `segment`: the sealer is done
    /// with it and the recovery point on disk lies past it, so nothing reads it at open.
    pub fn may_clean(&self, segment: &SealedSegment) -> bool {
        let point = *self.recovery_point.lock().unwrap_or_else(|p| p.into_inner());
        segment.is_finished() && segment.base_offset < point.1
    }
}

pub fn create_segment_file(fs: &dyn FileSystem, path: &Path) -> Result<VFile> {
    // A file of this name can only be left over from a roll that failed before it was used:
    // its base offset is past every appended record. Start it empty.
    fs.open(path, OpenMode::CREATE_EMPTY).map_err(Error::io("create", path))
}

#[cfg(test)]
mod tests;
