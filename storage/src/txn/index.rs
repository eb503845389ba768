//! [`TxnState`]: a partition's transaction state as readers see it — the first offset of the
//! earliest open transaction, and the aborted transactions — and the `aborted.txnindex` file
//! that keeps the aborted ones across restarts.
//!
//! ```text
//! aborted.txnindex
//!  0 magic "ETXN" | 4 version u8 = 1 | 5 three zero bytes
//!  8 entries, 36 bytes each, in marker order:
//!      producer_id i64 | first_offset u64 | last_offset u64 | last_stable_offset u64
//!      | crc u32 (CRC-32 of the entry's first 32 bytes)
//! ```
//!
//! An entry is written (not fsynced) when an ABORT marker is appended, before the marker is
//! published; the file is fsynced before every recovery-point checkpoint. At open the entries
//! whose marker lies below the recovery point are kept (a torn or damaged tail is dropped) and
//! the rest are found again by replaying the log after it. Retention drops the entries whose
//! marker is below the new log start (the file is rewritten atomically).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use super::AbortedTxn;
use crate::batch::header::{le_u32_at, le_u64_at};
use crate::error::{Error, Result};
use crate::files;
use crate::vfs::{Fs, OpenMode, VFile};

pub const FILE_NAME: &str = "aborted.txnindex";
const MAGIC: [u8; 4] = *b"ETXN";
const VERSION: u8 = 1;
const HEADER_LEN: u64 = 8;
const ENTRY_LEN: usize = 36;
/// `first_unstable` when no transaction is open.
const NONE_OPEN: u64 = u64::MAX;

/// What [`load`] found in `aborted.txnindex`.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The entries whose marker lies below `keep_below`, in marker order.
    pub entries: Vec<AbortedTxn>,
    /// Whether that is all the file held (it need not be rewritten).
    pub whole: bool,
    /// Where the file is damaged (a bad header, or a whole entry failing its checksum), if
    /// it is: entries below the recovery point may be missing, so the caller rebuilds them
    /// from the log (`txn::replay`). A short last entry is a torn write, not damage.
    pub damage: Option<u64>,
}

/// Reads the entries of `dir`'s index whose marker lies below `keep_below`. A missing file
/// gives none; an unknown version is an error.
pub(crate) fn load(fs: &Fs, dir: &Path, keep_below: u64) -> Result<Loaded> {
    let path = dir.join(FILE_NAME);
    let bytes = match fs.read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(Error::io("read", &path)(e)),
    };
    if bytes.len() < HEADER_LEN as usize || bytes[..4] != MAGIC || bytes[5..8] != [0, 0, 0] {
        return Ok(Loaded { damage: Some(0), ..Loaded::default() });
    }
    if bytes[4] != VERSION {
        return Err(Error::UnsupportedFileVersion { path, found: bytes[4], supported: VERSION });
    }
    let mut loaded = Loaded { whole: true, ..Loaded::default() };
    let mut at = HEADER_LEN;
    for chunk in bytes[HEADER_LEN as usize..].chunks(ENTRY_LEN) {
        match decode(chunk) {
            Some(e) if e.last_offset < keep_below => loaded.entries.push(e),
            Some(_) => {
                loaded.whole = false;
                break;
            }
            None => {
                loaded.whole = false;
                if chunk.len() == ENTRY_LEN {
                    loaded.damage = Some(at);
                }
                break;
            }
        }
        at += ENTRY_LEN as u64;
    }
    Ok(loaded)
}

fn encode(e: &AbortedTxn) -> [u8; ENTRY_LEN] {
    let mut out = [0u8; ENTRY_LEN];
    out[..8].copy_from_slice(&e.producer_id.to_le_bytes());
    out[8..16].copy_from_slice(&e.first_offset.to_le_bytes());
    out[16..24].copy_from_slice(&e.last_offset.to_le_bytes());
    out[24..32].copy_from_slice(&e.last_stable_offset.to_le_bytes());
    let crc = crc32fast::hash(&out[..32]);
    out[32..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn decode(chunk: &[u8]) -> Option<AbortedTxn> {
    if chunk.len() != ENTRY_LEN || crc32fast::hash(&chunk[..32]) != le_u32_at(chunk, 32) {
        return None;
    }
    Some(AbortedTxn {
        producer_id: le_u64_at(chunk, 0) as i64,
        first_offset: le_u64_at(chunk, 8),
        last_offset: le_u64_at(chunk, 16),
        last_stable_offset: le_u64_at(chunk, 24),
    })
}

/// The file's whole content for `entries`.
fn file_bytes(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN as usize + entries.len() * ENTRY_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    for e in entries {
        out.extend_from_slice(&encode(e));
    }
    out
}

/// The open index file: appended at `len` with positioned writes, so a failed write leaves
/// garbage only past `len`, which the next write covers.
#[derive(Debug)]
struct IndexFile {
    file: VFile,
    len: u64,
    /// Written since the last fsync.
    dirty: bool,
    /// An fsync of it failed: what it wrote may be gone whatever a later fsync says, so no
    /// later one is trusted (every [`TxnState::sync`] fails, and with it every checkpoint,
    /// until the log is reopened and replays what follows the last good one).
    failed: bool,
}

/// One partition's transaction state, shared by the writer and every reader.
#[derive(Debug)]
pub(crate) struct TxnState {
    fs: Fs,
    path: PathBuf,
    /// In marker order (ascending `last_offset`).
    aborted: RwLock<Vec<AbortedTxn>>,
    has_aborted: AtomicBool,
    first_unstable: AtomicU64,
    file: Mutex<IndexFile>,
}

impl TxnState {
    /// Opens the state of the log in `dir` with `entries` (what `load` kept and replay added);
    /// rewrites the file unless `unchanged`.
    pub fn open(
        fs: &Fs,
        dir: &Path,
        entries: Vec<AbortedTxn>,
        unchanged: bool,
        first_unstable: Option<u64>,
    ) -> Result<Self> {
        let path = dir.join(FILE_NAME);
        if !unchanged {
            files::write_atomic_on(&**fs, &path, &file_bytes(&entries))?;
        }
        let file = fs.open(&path, OpenMode::READ_WRITE).map_err(Error::io("open", &path))?;
        let len = HEADER_LEN + (entries.len() * ENTRY_LEN) as u64;
        Ok(Self {
            fs: fs.clone(),
            path,
            has_aborted: AtomicBool::new(!entries.is_empty()),
            aborted: RwLock::new(entries),
            first_unstable: AtomicU64::new(first_unstable.unwrap_or(NONE_OPEN)),
            file: Mutex::new(IndexFile { file, len, dirty: false, failed: false }),
        })
    }

    /// The first offset of the earliest open transaction (`u64::MAX`: none).
    pub fn first_unstable(&self) -> u64 {
        self.first_unstable.load(Ordering::Acquire)
    }

    /// Publishes the earliest open transaction's first offset; called before the log end that
    /// covers the change is published.
    pub fn set_first_unstable(&self, first: Option<u64>) {
        self.first_unstable.store(first.unwrap_or(NONE_OPEN), Ordering::Release);
    }

    pub fn has_aborted(&self) -> bool {
        self.has_aborted.load(Ordering::Acquire)
    }

    /// The aborted transactions with records in `[from, upto)`.
    pub fn between(&self, from: u64, upto: u64) -> Vec<AbortedTxn> {
        if !self.has_aborted() || from >= upto {
            return Vec::new();
        }
        let aborted = self.aborted.read().unwrap_or_else(|p| p.into_inner());
        let start = aborted.partition_point(|a| a.last_offset < from);
        let mut out = Vec::new();
        for a in &aborted[start..] {
            if a.first_offset < upto {
                out.push(*a);
            }
            // Every transaction completed after this one started at or past its LSO.
            if a.last_stable_offset >= upto {
                break;
            }
        }
        out
    }

    /// Every aborted transaction remembered (for compaction).
    pub fn all(&self) -> Vec<AbortedTxn> {
        if !self.has_aborted() {
            return Vec::new();
        }
        self.aborted.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Writes `entry` to the file (not fsynced); it is published by [`TxnState::publish`]
    /// once its marker is in the log.
    pub fn write_entry(&self, entry: &AbortedTxn) -> Result<()> {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let at = f.len;
        f.file.write_all_at(&encode(entry), at).map_err(Error::io("append to", &self.path))?;
        f.len = at + ENTRY_LEN as u64;
        f.dirty = true;
        Ok(())
    }

    /// Makes `entry` visible to readers (its marker is about to be published).
    pub fn publish(&self, entry: AbortedTxn) {
        self.aborted.write().unwrap_or_else(|p| p.into_inner()).push(entry);
        self.has_aborted.store(true, Ordering::Release);
    }

    /// fsyncs the file if anything was written since the last time: before a checkpoint.
    pub fn sync(&self) -> Result<()> {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if f.failed {
            return Err(Error::Poisoned { path: self.path.clone(), op: "fsync" });
        }
        if f.dirty {
            if let Err(e) = f.file.sync_data() {
                f.failed = true;
                tracing::error!(path = %self.path.display(), error = %e, "fsync of the aborted-transaction index failed; no recovery point is written until the log is reopened");
                return Err(Error::io("fsync", &self.path)(e));
            }
            f.dirty = false;
        }
        Ok(())
    }

    /// Forgets the entries whose marker is below `start` (retention deleted them).
    pub fn trim(&self, start: u64) -> Result<()> {
        if !self.has_aborted() {
            return Ok(());
        }
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut aborted = self.aborted.write().unwrap_or_else(|p| p.into_inner());
        let drop = aborted.partition_point(|a| a.last_offset < start);
        if drop == 0 {
            return Ok(());
        }
        let kept = aborted[drop..].to_vec();
        files::replace_file(&*self.fs, &self.path, &file_bytes(&kept))?;
        // The path names the new file from here on, whatever follows: entries must go to it,
        // not to the replaced one (whose writes would never be found again).
        let file = match self.fs.open(&self.path, OpenMode::READ_WRITE) {
            Ok(file) => file,
            Err(e) => {
                f.failed = true;
                return Err(Error::io("open", &self.path)(e));
            }
        };
        let len = HEADER_LEN + (kept.len() * ENTRY_LEN) as u64;
        *f = IndexFile { file, len, dirty: false, failed: f.failed };
        *aborted = kept;
        // Until the rename is durable, what is written to the new file is not known to be
        // found after a power loss: no recovery point counts on it (as after a failed fsync).
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if let Err(e) = files::sync_dir(&*self.fs, dir) {
            f.failed = true;
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os() -> Fs {
        crate::vfs::os()
    }

    fn entry(pid: i64, first: u64, last: u64, lso: u64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn entries_survive_reopen_below_the_recovery_point_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = TxnState::open(&os(), dir.path(), Vec::new(), false, None).unwrap();
        state.write_entry(&entry(1, 0, 5, 6)).unwrap();
        state.write_entry(&entry(2, 3, 9, 10)).unwrap();
        state.sync().unwrap();
        let loaded = load(&os(), dir.path(), 7).unwrap();
        assert_eq!(loaded.entries, vec![entry(1, 0, 5, 6)]);
        assert!(!loaded.whole);
        let loaded = load(&os(), dir.path(), 100).unwrap();
        assert_eq!(loaded.entries.len(), 2);
        assert!(loaded.whole);
        assert_eq!(loaded.damage, None);
    }

    #[test]
    fn a_torn_entry_ends_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = TxnState::open(&os(), dir.path(), Vec::new(), false, None).unwrap();
        state.write_entry(&entry(1, 0, 5, 6)).unwrap();
        state.write_entry(&entry(2, 3, 9, 10)).unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let loaded = load(&os(), dir.path(), 100).unwrap();
        assert_eq!(loaded.entries, vec![entry(1, 0, 5, 6)]);
        assert!(!loaded.whole);
        // A whole entry failing its checksum is damage, for the log to repair.
        assert_eq!(loaded.damage, Some(HEADER_LEN + ENTRY_LEN as u64));
    }

    #[test]
    fn lookups_stop_at_the_stable_offset_and_trim_forgets() {
        let dir = tempfile::tempdir().unwrap();
        // Transaction 3 (from offset 2) stays open while 1 and 2 abort: their LSO is 2.
        let entries = vec![entry(1, 0, 4, 2), entry(2, 6, 8, 2), entry(3, 2, 12, 13)];
        let state = TxnState::open(&os(), dir.path(), entries.clone(), false, None).unwrap();
        assert_eq!(state.between(5, 9), vec![entries[1], entries[2]]);
        assert_eq!(state.between(0, 3), vec![entries[0], entries[2]]);
        assert_eq!(state.between(9, 20), vec![entries[2]]);
        assert_eq!(state.between(13, 20), vec![]);
        state.trim(5).unwrap();
        assert_eq!(state.all(), entries[1..].to_vec());
        assert_eq!(load(&os(), dir.path(), 100).unwrap().entries, entries[1..].to_vec());
    }
}
