//! Open files of a [`SimFs`]: handles on an inode (which outlives its directory entry, as on
//! POSIX), with a cursor shared by clones.

use std::io::{self, IoSlice};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::state::DataOp;
use super::{FaultOp, OpKind, SimFs};
use crate::vfs::{FileHandle, LockGuard, VFile};

#[derive(Debug)]
pub struct SimFile {
    fs: SimFs,
    ino: u64,
    path: PathBuf,
    writable: bool,
    cursor: Arc<AtomicU64>,
}

impl SimFile {
    pub fn new(fs: SimFs, ino: u64, path: PathBuf, writable: bool) -> Self {
        Self { fs, ino, path, writable, cursor: Arc::new(AtomicU64::new(0)) }
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::PermissionDenied, "opened read-only"))
        }
    }

    /// Writes `data` at `at` as one operation (which a fault may fail, or cut in half).
    /// Returns the bytes written.
    fn write_at(&self, data: &[u8], at: u64) -> io::Result<usize> {
        self.check_writable()?;
        let ino = self.ino;
        self.fs.mutate(OpKind::Fault(FaultOp::Write), &self.path, |s, fault| {
            let inode = s.inode(ino)?;
            if let Some(f) = fault {
                if f.partial && data.len() > 1 {
                    let half = data[..data.len() / 2].to_vec();
                    inode.push(DataOp::Write { at, data: half });
                }
                return Err(f.io_error());
            }
            inode.push(DataOp::Write { at, data: data.to_vec() });
            Ok(data.len())
        })
    }

    fn sync(&self) -> io::Result<()> {
        let ino = self.ino;
        self.fs.mutate(OpKind::Fault(FaultOp::Fsync), &self.path, |s, fault| {
            let inode = s.inode(ino)?;
            if let Some(f) = fault {
                // fsyncgate: the write-back failed, the pages are marked clean. Reads still see
                // them until evicted; they will never reach the disk, and the next fsync has
                // nothing to write, so it succeeds.
                inode.pending.clear();
                return Err(f.io_error());
            }
            inode.sync();
            Ok(())
        })
    }
}

impl FileHandle for SimFile {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let data: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        let at = self.cursor.load(Ordering::Acquire);
        match self.write_at(&data, at) {
            Ok(n) => {
                self.cursor.store(at + n as u64, Ordering::Release);
                Ok(n)
            }
            Err(e) => Err(e),
        }
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        self.write_vectored(&[IoSlice::new(buf)]).map(|_| ())
    }

    fn write_all_at(&self, buf: &[u8], at: u64) -> io::Result<()> {
        self.write_at(buf, at).map(|_| ())
    }

    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let ino = self.ino;
        self.fs.read_state(|s| {
            let content = s.inodes.get(&ino).map_or(&[][..], |i| &i.current[..]);
            let end = at as usize + buf.len();
            if end > content.len() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.copy_from_slice(&content[at as usize..end]);
            Ok(())
        })
    }

    fn seek_to(&self, position: u64) -> io::Result<()> {
        self.cursor.store(position, Ordering::Release);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let ino = self.ino;
        self.fs.read_state(|s| Ok(s.inodes.get(&ino).map_or(0, |i| i.current.len() as u64)))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let ino = self.ino;
        self.fs.mutate(OpKind::Other, &self.path, |s, _| {
            s.inode(ino)?.push(DataOp::SetLen(len));
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }

    fn try_clone(&self) -> io::Result<VFile> {
        self.fs.read_state(|_| Ok(()))?;
        Ok(Box::new(SimFile {
            fs: self.fs.clone(),
            ino: self.ino,
            path: self.path.clone(),
            writable: self.writable,
            cursor: self.cursor.clone(),
        }))
    }

    fn map(&self, len: u64, _sequential: bool) -> io::Result<Bytes> {
        let ino = self.ino;
        self.fs.read_state(|s| {
            let content = s.inodes.get(&ino).map_or(&[][..], |i| &i.current[..]);
            let len = usize::try_from(len).map_err(|_| io::ErrorKind::FileTooLarge)?;
            match content.get(..len) {
                Some(bytes) => Ok(Bytes::copy_from_slice(bytes)),
                None => Err(io::ErrorKind::UnexpectedEof.into()),
            }
        })
    }
}

/// A lock held in a [`SimFs`]'s lock table.
#[derive(Debug)]
pub struct SimLock {
    pub fs: SimFs,
    pub path: PathBuf,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.lock().state.locks.remove(&self.path);
    }
}
