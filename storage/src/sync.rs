//! fsync bookkeeping: which segment bytes and directory entries are known to be on stable storage.
//!
//! Two threads may want to fsync the same segment: an appender making its batch durable (through
//! group commit) and the background sealer finishing a segment that was just rolled. Every fsync
//! of a segment goes through that segment's [`SegmentSync`], which runs them one at a time and
//! remembers the outcome, because two concurrent fsyncs of one open file would share the
//! kernel's error state: the first to return could consume a write-back error and the second
//! report success for pages that were lost. Once an fsync of a segment fails, every later
//! request for it fails too (a retry could report success for data that is gone).
//!
//! A segment file is only durable once its directory entry is: [`DirSync`] counts the files
//! created in the log directory and which of them a directory fsync has covered, so that an fsync
//! reporting offsets durable can first make sure the files holding them can be found after a
//! crash.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::stats::Stats;
use crate::vfs::{Fs, VFile};

/// Why a segment could not be made durable.
#[derive(Debug)]
pub enum SyncFailure {
    /// This fsync failed.
    Io { source: io::Error, path: PathBuf },
    /// An earlier fsync of this file (or the directory) failed; its state is unknown.
    Earlier,
}

#[derive(Debug)]
struct SyncState {
    /// Bytes of the file known to be on stable storage.
    synced_len: u64,
    failed: bool,
    /// The file was cut back (a failed append's partial bytes removed) since the last fsync:
    /// until an fsync covers the cut, a power loss may bring those bytes back past the end,
    /// so the next request fsyncs even if `synced_len` covers it.
    cut: bool,
}

/// Serialises the fsyncs of one segment's `.log` file and remembers how far they got.
#[derive(Debug)]
pub struct SegmentSync {
    file: VFile,
    path: PathBuf,
    state: Mutex<SyncState>,
    /// Makes the next fsync fail, as a disk error would.
    #[cfg(test)]
    pub fail_next: std::sync::atomic::AtomicBool,
}

impl SegmentSync {
    /// `file` is a handle on the segment (a duplicate of the writer's is fine); `synced_len`
    /// bytes of it are already known durable.
    pub fn new(file: VFile, path: PathBuf, synced_len: u64) -> Self {
        Self {
            file,
            path,
            state: Mutex::new(SyncState { synced_len, failed: false, cut: false }),
            #[cfg(test)]
            fail_next: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the first `len` bytes durable (the caller read `len` after they were written).
    /// Waits for an fsync of this segment already running, and skips the call if it covered
    /// them.
    pub fn sync(&self, len: u64, stats: &Stats) -> Result<(), SyncFailure> {
        let mut state = self.lock();
        if state.failed {
            return Err(SyncFailure::Earlier);
        }
        if state.synced_len >= len && !state.cut {
            return Ok(());
        }
        #[cfg(test)]
        let injected = self.fail_next.swap(false, Ordering::AcqRel);
        #[cfg(not(test))]
        let injected = false;
        let started = std::time::Instant::now();
        let outcome = if injected {
            Err(io::Error::other("injected fsync failure"))
        } else {
            self.file.sync_data()
        };
        stats.fsync_us.observe(started.elapsed().as_micros() as u64);
        match outcome {
            Ok(()) => {
                stats.fsyncs.fetch_add(1, Ordering::Relaxed);
                state.synced_len = state.synced_len.max(len);
                state.cut = false;
                Ok(())
            }
            Err(source) => {
                state.failed = true;
                Err(SyncFailure::Io { source, path: self.path.clone() })
            }
        }
    }

    /// Notes that the file was cut back to `len` bytes (see `SyncState::cut`).
    pub fn cut(&self, len: u64) {
        let mut state = self.lock();
        state.synced_len = state.synced_len.min(len);
        state.cut = true;
    }

    /// Whether the first `len` bytes are known durable.
    #[cfg(test)]
    pub fn is_synced(&self, len: u64) -> bool {
        let state = self.lock();
        !state.failed && state.synced_len >= len
    }
}

/// Directory fsyncs: whether every segment file created so far has a durable directory entry.
#[derive(Debug)]
pub struct DirSync {
    fs: Fs,
    path: PathBuf,
    /// Files created (each bumps the count before anything is written to it).
    created: AtomicU64,
    /// The value of `created` the last successful directory fsync covered; its mutex also runs
    /// directory fsyncs one at a time.
    synced: Mutex<u64>,
    failed: std::sync::atomic::AtomicBool,
}

impl DirSync {
    /// A directory whose entries are all durable (recovery fsynced it).
    pub fn new(fs: Fs, path: &Path) -> Self {
        Self {
            fs,
            path: path.to_path_buf(),
            created: AtomicU64::new(0),
            synced: Mutex::new(0),
            failed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Notes that a file was created; returns the count a later fsync must cover.
    pub fn created(&self) -> u64 {
        self.created.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Files created so far.
    pub fn generation(&self) -> u64 {
        self.created.load(Ordering::Acquire)
    }

    /// fsyncs the directory unless a directory fsync since `generation` files were created has
    /// already succeeded.
    pub fn sync_through(&self, generation: u64) -> Result<(), SyncFailure> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if self.failed.load(Ordering::Acquire) {
            return Err(SyncFailure::Earlier);
        }
        if *synced >= generation {
            return Ok(());
        }
        self.sync_locked(&mut synced)
    }

    /// fsyncs the directory now (after renames, which the creation count does not track).
    pub fn sync_now(&self) -> Result<(), SyncFailure> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if self.failed.load(Ordering::Acquire) {
            return Err(SyncFailure::Earlier);
        }
        self.sync_locked(&mut synced)
    }

    fn sync_locked(&self, synced: &mut u64) -> Result<(), SyncFailure> {
        let covers = self.generation();
        match self.fs.sync_dir(&self.path) {
            Ok(()) => {
                *synced = (*synced).max(covers);
                Ok(())
            }
            Err(source) => {
                self.failed.store(true, Ordering::Release);
                Err(SyncFailure::Io { source, path: self.path.clone() })
            }
        }
    }
}
