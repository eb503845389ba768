//! The storage I/O seam: every file operation the log does goes through a [`FileSystem`] and the
//! [`FileHandle`]s it opens.
//!
//! Two implementations:
//! - [`OsFs`], the real one: each call is one system call on a `std::fs::File` (or a directory),
//!   behind one dynamic dispatch. Nothing is allocated per call; appends stay one `writev`,
//!   active-segment reads one `pread`, and sealed segments are still memory-mapped.
//! - [`sim::SimFs`], for tests: an in-memory file system that keeps what was written but not
//!   yet fsynced apart from what was, and on a simulated power loss drops, keeps, tears or
//!   reorders the unsynced writes (seeded), loses directory entries no directory fsync covered,
//!   and can fail an fsync, a write or a rename on demand.
//!
//! Invariants the log relies on, which both implementations keep:
//! - `write_vectored`/`write_all` write at the handle's cursor, which clones of a handle share
//!   (as duplicated descriptors do); positioned reads and writes ignore it.
//! - A directory entry (create, rename, remove) survives a crash only once `sync_dir` of its
//!   directory returned success after it; file contents only once an fsync of the file did.
//! - `map` hands out the first `len` bytes of a file as `Bytes` that stay valid while the log
//!   keeps the file unmodified (sealed segments and index files, see [`crate::mmap`]).

pub mod sim;

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

/// A shared handle on the file system a log works on.
pub type Fs = Arc<dyn FileSystem>;

/// An open file.
pub type VFile = Box<dyn FileHandle>;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenMode {
    pub write: bool,
    pub create: bool,
    pub truncate: bool,
}

impl OpenMode {
    /// Read only; the file must exist.
    pub const READ: OpenMode = OpenMode { write: false, create: false, truncate: false };
    /// Read and write; the file must exist.
    pub const READ_WRITE: OpenMode = OpenMode { write: true, create: false, truncate: false };
    /// Read and write, created if missing, kept as it is otherwise.
    pub const CREATE: OpenMode = OpenMode { write: true, create: true, truncate: false };
    /// Read and write, created if missing, emptied otherwise.
    pub const CREATE_EMPTY: OpenMode = OpenMode { write: true, create: true, truncate: true };
}

/// A held directory lock; released when dropped.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// The file operations on paths the log uses.
pub trait FileSystem: Send + Sync + fmt::Debug {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<VFile>;
    /// The whole content of a (small, metadata) file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The length of the file at `path`.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates `path` and any missing parents; returns the directories it created, outermost
    /// first (their parents need a directory fsync for them to survive a crash).
    fn create_dir_all(&self, path: &Path) -> io::Result<Vec<std::path::PathBuf>>;
    /// The names of the entries of a directory (files and directories), in no order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// fsyncs a directory, making its entries' creations, renames and removals durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive lock named by the file at `path` (created if missing); `None` if
    /// another holder has it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>>;
}

/// The operations on an open file the log uses.
pub trait FileHandle: Send + Sync + fmt::Debug {
    /// Writes at the cursor (shared with clones) and moves it; may write less than asked.
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Writes all of `buf` at the cursor.
    fn write_all(&self, buf: &[u8]) -> io::Result<()>;
    fn write_all_at(&self, buf: &[u8], at: u64) -> io::Result<()>;
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()>;
    /// Moves the cursor.
    fn seek_to(&self, position: u64) -> io::Result<()>;
    /// The file's length.
    fn size(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// fdatasync.
    fn sync_data(&self) -> io::Result<()>;
    /// fsync.
    fn sync_all(&self) -> io::Result<()>;
    /// Another handle on the same open file (sharing its cursor).
    fn try_clone(&self) -> io::Result<VFile>;
    /// The first `len` bytes, read-only, for a file the log no longer modifies.
    fn map(&self, len: u64, sequential: bool) -> io::Result<Bytes>;
}

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

/// The operating system's file system as an [`Fs`].
pub fn os() -> Fs {
    Arc::new(OsFs)
}

#[derive(Debug)]
struct OsLock(#[allow(dead_code)] File);

impl LockGuard for OsLock {}

impl FileSystem for OsFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<VFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(mode.write)
            .create(mode.create)
            .truncate(mode.truncate)
            .open(path)?;
        Ok(Box::new(file))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<Vec<std::path::PathBuf>> {
        let mut missing = Vec::new();
        let mut at = Some(path);
        while let Some(dir) = at {
            if dir.as_os_str().is_empty() || dir.is_dir() {
                break;
            }
            missing.push(dir.to_path_buf());
            at = dir.parent();
        }
        std::fs::create_dir_all(path)?;
        missing.reverse();
        Ok(missing)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(OsLock(file)))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

impl FileHandle for File {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Write::write_vectored(&mut &*self, bufs)
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(&mut &*self, buf)
    }

    fn write_all_at(&self, buf: &[u8], at: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, at)
    }

    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, at)
    }

    fn seek_to(&self, position: u64) -> io::Result<()> {
        (&*self).seek(SeekFrom::Start(position)).map(|_| ())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }

    fn try_clone(&self) -> io::Result<VFile> {
        Ok(Box::new(File::try_clone(self)?))
    }

    fn map(&self, len: u64, sequential: bool) -> io::Result<Bytes> {
        crate::mmap::map(self, len, sequential)
    }
}

/// Writes every byte of `slices` at the cursor of `file`, retrying short writes.
pub fn write_all_vectored(file: &dyn FileHandle, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
