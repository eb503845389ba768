//! Read-only memory maps of sealed files, handed out as `Bytes` that keep the map alive.
//!
//! This is the only module with `unsafe` code.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use bytes::Bytes;
use memmap2::{Advice, Mmap};

/// Maps the first `len` bytes of `file` read-only.
///
/// # Safety (of the call inside)
/// A mapping is only sound while nobody truncates or rewrites the file under it: a read past a
/// truncated end raises SIGBUS, and a rewrite changes bytes that were already checked. eddy maps
/// only sealed segments and index files, which it never modifies after sealing — compaction
/// writes a new file and renames it over the old name, and retention unlinks; neither touches
/// the mapped inode. The directory lock keeps other eddy processes out. A foreign process that
/// truncates a sealed segment is outside what the log can defend against.
pub fn map(file: &File, len: u64, sequential: bool) -> io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
    // SAFETY: see the function docs: the mapped files are immutable while eddy has them open.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
    if sequential {
        // Advice only; a failure changes performance, not correctness.
        let _ = map.advise(Advice::Sequential);
    }
    Ok(Bytes::from_owner(MapOwner(map)))
}

struct MapOwner(Mmap);

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
