//! The directory lock: one owner per directory (a `Log`, or a broker's data directory), across
//! processes and within one.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::error::{Error, Result};
use crate::files::LOCK_FILE;

/// Holds an exclusive advisory lock on `dir/.lock` until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io("open lock file", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(Error::Locked { path: dir.to_path_buf() }),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", &path)(e)),
        }
    }
}
