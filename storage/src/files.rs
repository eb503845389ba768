//! File names in a log directory, and the durable-write helpers every metadata file uses.
//!
//! ```text
//! 00000000000000000000.log        record batches
//! 00000000000000000000.index      sparse offset index (header written when sealed)
//! 00000000000000000000.timeindex  time index (header written when sealed)
//! 00000000000000000000.producers  idempotent-producer state as of this segment's start
//! recovery-point.checkpoint       where an open after a crash starts checking (`checkpoint`)
//! .lock                           held while a Log has the directory open
//! *.tmp, *.cleaned                half-written files; deleted on open
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::vfs::{FileSystem, OpenMode};

pub const LOG_EXT: &str = "log";
pub const INDEX_EXT: &str = "index";
pub const TIME_INDEX_EXT: &str = "timeindex";
pub const PRODUCERS_EXT: &str = "producers";
pub const TMP_EXT: &str = "tmp";
pub const CLEANED_EXT: &str = "cleaned";
pub const LOCK_FILE: &str = ".lock";

/// `dir/{base:020}.{ext}`: zero-padded so names sort by offset.
pub fn segment_file(dir: &Path, base_offset: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// The base offset in a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<(u64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one: write a
/// temporary, fsync it, rename it over. The caller fsyncs the directory (once for several files).
pub fn replace_file(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.{TMP_EXT}",
        path.extension().and_then(|e| e.to_str()).unwrap_or_default()
    ));
    let file = fs.open(&tmp, OpenMode::CREATE_EMPTY).map_err(Error::io("create", &tmp))?;
    file.write_all(bytes).map_err(Error::io("write", &tmp))?;
    file.sync_all().map_err(Error::io("fsync", &tmp))?;
    drop(file);
    fs.rename(&tmp, path).map_err(Error::io("rename", &tmp))
}

/// [`replace_file`], then an fsync of the directory: the new content survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_on(&crate::vfs::OsFs, path, bytes)
}

/// [`write_atomic`] on the file system `fs`.
pub fn write_atomic_on(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> Result<()> {
    replace_file(fs, path, bytes)?;
    sync_dir(fs, path.parent().unwrap_or(Path::new(".")))
}

/// fsyncs a directory so that creates, renames and deletes in it survive a crash.
pub fn sync_dir(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    fs.sync_dir(dir).map_err(Error::io("fsync directory", dir))
}

/// [`create_dir_durable_on`] on the operating system's file system.
pub fn create_dir_durable(dir: &Path) -> Result<()> {
    create_dir_durable_on(&crate::vfs::OsFs, dir)
}

/// Creates `dir` and any missing parents, durably: each directory created is fsynced in its
/// parent, so a power loss cannot take the directory (and every file later made durable in it)
/// away.
pub fn create_dir_durable_on(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let created = fs.create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    for made in created.iter().rev() {
        if let Some(parent) = made.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(fs, parent)?;
        }
    }
    Ok(())
}
