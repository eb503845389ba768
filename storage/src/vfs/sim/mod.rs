//! [`SimFs`]: an in-memory file system that can lose power.
//!
//! It keeps, per file, what the last successful fsync made durable apart from the writes since
//! (`state`), and per directory the entries a directory fsync made durable apart from the
//! creations, renames and removals since. [`SimFs::crash`] (or an armed crash point, reached
//! after a number of mutating operations) takes the image a power loss at that instant would
//! leave (`crash`) as a new `SimFs`, and kills this one: every later call on it, or on a file
//! opened from it, fails with `EIO`, so the process that "lost power" can neither acknowledge
//! anything more nor touch the image.
//!
//! Faults on demand ([`Fault`]): an fsync that fails (and, as Linux does after a write-back
//! error, drops the unsynced writes it was to make durable while reads still see them: a later
//! fsync then "succeeds" with nothing to write), a write that fails with `ENOSPC` or `EIO`
//! (optionally after writing half of what it was given), a rename or directory fsync that fails.
//!
//! Every mutating call (create, write, set_len, fsync, rename, remove, directory fsync) counts
//! as one operation, which is what crash points and faults are placed by.

mod crash;
mod file;
pub mod rng;
mod state;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use crash::{CrashReport, FileFate, SECTOR};
pub use rng::SimRng;

use self::file::{SimFile, SimLock};
use self::state::{DataOp, Node, State, normal};
use super::{FileSystem, Fs, LockGuard, OpenMode, VFile};

/// Which operation a [`Fault`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    Fsync,
    Write,
    Rename,
    SyncDir,
    Create,
}

/// What a [`Fault`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultError {
    /// Fails the operation with `EIO`.
    Eio,
    /// Fails the operation with `ENOSPC`.
    NoSpace,
    /// Loses power just before the operation: the image is taken (with this seed, for
    /// [`SimFs::take_image`]) and the file system dies.
    PowerLoss { seed: u64 },
}

/// One injected failure: the `skip + 1`th operation of kind `op` on a path containing
/// `path_contains` fails, and the `times - 1` matching ones after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub op: FaultOp,
    pub path_contains: String,
    pub error: FaultError,
    pub skip: u32,
    pub times: u32,
    /// For a write: write the first half of the bytes before failing.
    pub partial: bool,
}

impl Fault {
    /// The next `op` on a path containing `path_contains` fails once with `EIO`.
    pub fn once(op: FaultOp, path_contains: &str) -> Self {
        Fault {
            op,
            path_contains: path_contains.to_owned(),
            error: FaultError::Eio,
            skip: 0,
            times: 1,
            partial: false,
        }
    }

    /// Power loss just before the `skip + 1`th `op` on a path containing `path_contains`.
    pub fn power_loss(op: FaultOp, path_contains: &str, skip: u32, seed: u64) -> Self {
        Fault {
            op,
            path_contains: path_contains.to_owned(),
            error: FaultError::PowerLoss { seed },
            skip,
            times: 1,
            partial: false,
        }
    }

    fn io_error(&self) -> io::Error {
        match self.error {
            FaultError::Eio => io::Error::other("injected EIO"),
            FaultError::NoSpace => io::Error::from(io::ErrorKind::StorageFull),
            FaultError::PowerLoss { .. } => dead(),
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: State,
    dead: bool,
    ops: u64,
    /// Crash when the operation count reaches this, with this seed.
    crash_at: Option<(u64, u64)>,
    /// The image an armed crash left.
    image: Option<(SimFs, CrashReport)>,
    faults: Vec<Fault>,
    /// Faults that fired, in order: (op, path).
    fired: Vec<(FaultOp, PathBuf)>,
}

/// An in-memory file system that can crash; cheap to clone (a handle on shared state).
#[derive(Debug, Clone)]
pub struct SimFs {
    shared: Arc<Mutex<Shared>>,
}

impl Default for SimFs {
    fn default() -> Self {
        Self::from_state(State::default())
    }
}

/// What a mutating operation is, for crash points and faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Fault(FaultOp),
    Other,
}

impl SimFs {
    pub fn new() -> Self {
        Self::default()
    }

    fn from_state(state: State) -> Self {
        let shared = Shared {
            state,
            dead: false,
            ops: 0,
            crash_at: None,
            image: None,
            faults: Vec::new(),
            fired: Vec::new(),
        };
        Self { shared: Arc::new(Mutex::new(shared)) }
    }

    /// This file system as an [`Fs`] for [`crate::Log::open_on`].
    pub fn fs(&self) -> Fs {
        Arc::new(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutating operations so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Whether this file system has crashed (every call fails).
    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    /// Power loss now: the image it leaves, chosen by `seed`. This file system is dead after.
    pub fn crash(&self, seed: u64) -> (SimFs, CrashReport) {
        let mut shared = self.lock();
        shared.dead = true;
        let (state, report) = crash::image(&shared.state, &mut SimRng::new(seed));
        (SimFs::from_state(state), report)
    }

    /// A copy of this file system as it is now (unsynced writes still unsynced), which lives
    /// on independently; this one is untouched.
    pub fn fork(&self) -> SimFs {
        let mut state = self.lock().state.clone();
        state.locks.clear();
        SimFs::from_state(state)
    }

    /// Arms a power loss just before the mutating operation number `at` (counting from the
    /// next one as 1); the image is taken then, with `seed`, and kept for [`SimFs::take_image`].
    pub fn crash_after(&self, at: u64, seed: u64) {
        let mut shared = self.lock();
        let now = shared.ops;
        shared.crash_at = Some((now + at, seed));
    }

    /// The image an armed crash left, if it happened.
    pub fn take_image(&self) -> Option<(SimFs, CrashReport)> {
        self.lock().image.take()
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// The faults that fired so far.
    pub fn fired(&self) -> Vec<(FaultOp, PathBuf)> {
        self.lock().fired.clone()
    }

    /// A file's content as reads see it (tests), `None` if it does not exist.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let shared = self.lock();
        let ino = shared.state.file(path).ok()?;
        shared.state.inodes.get(&ino).map(|i| i.current.clone())
    }

    /// Replaces a file's content, durably (tests: damage on disk).
    pub fn set_contents(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut shared = self.lock();
        let ino = shared.state.file(path)?;
        let inode = shared.state.inode(ino)?;
        inode.push(DataOp::SetLen(0));
        inode.push(DataOp::Write { at: 0, data: bytes.to_vec() });
        inode.sync();
        Ok(())
    }

    /// The files of a directory (tests), sorted.
    pub fn files(&self, dir: &Path) -> Vec<String> {
        let shared = self.lock();
        let Ok(d) = shared.state.dir(dir) else { return Vec::new() };
        d.entries
            .iter()
            .filter(|(_, n)| matches!(n, Node::File(_)))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Counts a mutating operation on `path`: fails if the file system is dead, crashes it if
    /// the armed point is reached, and returns the fault to inject, if one matches.
    fn begin(&self, shared: &mut Shared, kind: OpKind, path: &Path) -> io::Result<Option<Fault>> {
        if shared.dead {
            return Err(dead());
        }
        shared.ops += 1;
        if let Some((at, seed)) = shared.crash_at
            && shared.ops >= at
        {
            shared.dead = true;
            let (state, report) = crash::image(&shared.state, &mut SimRng::new(seed));
            shared.image = Some((SimFs::from_state(state), report));
            return Err(dead());
        }
        let OpKind::Fault(op) = kind else { return Ok(None) };
        let text = path.to_string_lossy();
        let Some(i) = shared
            .faults
            .iter()
            .position(|f| f.op == op && text.contains(f.path_contains.as_str()))
        else {
            return Ok(None);
        };
        let fault = &mut shared.faults[i];
        if fault.skip > 0 {
            fault.skip -= 1;
            return Ok(None);
        }
        let fired = fault.clone();
        fault.times = fault.times.saturating_sub(1);
        if fault.times == 0 {
            shared.faults.remove(i);
        }
        shared.fired.push((op, path.to_path_buf()));
        tracing::debug!(?op, path = %path.display(), "injected fault");
        if let FaultError::PowerLoss { seed } = fired.error {
            shared.dead = true;
            let (state, report) = crash::image(&shared.state, &mut SimRng::new(seed));
            shared.image = Some((SimFs::from_state(state), report));
            return Err(dead());
        }
        Ok(Some(fired))
    }

    /// Runs a read-only call on the state.
    fn read_state<T>(&self, f: impl FnOnce(&State) -> io::Result<T>) -> io::Result<T> {
        let shared = self.lock();
        if shared.dead {
            return Err(dead());
        }
        f(&shared.state)
    }

    /// Runs a mutating call: counted, crashable, failing if a fault of `kind` matches.
    fn mutate<T>(
        &self,
        kind: OpKind,
        path: &Path,
        f: impl FnOnce(&mut State, Option<&Fault>) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut shared = self.lock();
        let fault = self.begin(&mut shared, kind, path)?;
        f(&mut shared.state, fault.as_ref())
    }
}

fn dead() -> io::Error {
    io::Error::other("simulated power loss: the file system is gone")
}

impl FileSystem for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<VFile> {
        let path = normal(path);
        let existing = self.read_state(|s| s.lookup(&path))?;
        let ino = match existing {
            Some(Node::File(ino)) if mode.truncate => {
                self.mutate(OpKind::Other, &path, |s, _| {
                    s.inode(ino)?.push(DataOp::SetLen(0));
                    Ok(ino)
                })?
            }
            Some(Node::File(ino)) => ino,
            Some(Node::Dir) => {
                return Err(io::Error::new(io::ErrorKind::IsADirectory, "is a directory"));
            }
            None if mode.create => {
                self.mutate(OpKind::Fault(FaultOp::Create), &path, |s, fault| match fault {
                    Some(f) => Err(f.io_error()),
                    None => s.create(&path),
                })?
            }
            None => return Err(state::not_found(&path)),
        };
        Ok(Box::new(SimFile::new(self.clone(), ino, path, mode.write)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.read_state(|s| {
            let ino = s.file(path)?;
            Ok(s.inodes.get(&ino).map(|i| i.current.clone()).unwrap_or_default())
        })
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.read_state(|s| {
            let ino = s.file(path)?;
            Ok(s.inodes.get(&ino).map_or(0, |i| i.current.len() as u64))
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.mutate(OpKind::Fault(FaultOp::Rename), from, |s, fault| match fault {
            Some(f) => Err(f.io_error()),
            None => s.rename(from, to),
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.mutate(OpKind::Other, path, |s, _| s.remove(path))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.mutate(OpKind::Other, path, |s, _| s.create_dir_all(path))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.read_state(|s| Ok(s.dir(path)?.entries.keys().cloned().collect()))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.mutate(OpKind::Fault(FaultOp::SyncDir), path, |s, fault| {
            let dir = s.dir_mut(path)?;
            if let Some(f) = fault {
                // Like a failed file fsync: the changes stay visible but are not made durable.
                dir.pending.clear();
                return Err(f.io_error());
            }
            dir.durable = dir.entries.clone();
            dir.pending.clear();
            Ok(())
        })
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        let path = normal(path);
        let mut shared = self.lock();
        if shared.dead {
            return Err(dead());
        }
        if !shared.state.locks.insert(path.clone()) {
            return Ok(None);
        }
        Ok(Some(Box::new(SimLock { fs: self.clone(), path })))
    }
}
