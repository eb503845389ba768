//! The directory lock: one owner per directory (a `Log`, or a broker's data directory), across
//! processes and within one.

use std::path::Path;

use crate::error::{Error, Result};
use crate::files::LOCK_FILE;
use crate::vfs::{FileSystem, LockGuard, OsFs};

/// Holds an exclusive advisory lock on `dir/.lock` until dropped.
#[derive(Debug)]
pub struct DirLock {
    _guard: Box<dyn LockGuard>,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        Self::acquire_on(&OsFs, dir)
    }

    /// [`DirLock::acquire`] on the file system `fs`.
    pub fn acquire_on(fs: &dyn FileSystem, dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        match fs.try_lock(&path) {
            Ok(Some(guard)) => Ok(Self { _guard: guard }),
            Ok(None) => Err(Error::Locked { path: dir.to_path_buf() }),
            Err(e) => Err(Error::io("lock", &path)(e)),
        }
    }
}
