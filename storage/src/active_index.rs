//! The index of a segment still being appended, kept in its `.index`/`.timeindex` files rather
//! than on the heap.
//!
//! Entries go to the files as they are made (in chunks of [`FLUSH_BYTES`], after the 40-byte
//! header the files get when the segment is sealed), so a long segment of small batches costs
//! page cache, not the broker's own memory. What stays in memory is small: the entries not yet
//! written, the key of every [`ENTRIES_PER_BLOCK`]th written entry (so a lookup binary-searches
//! those, reads one block of at most 64 entries with one `pread`, and searches it), and a running
//! CRC of the written entries, so that sealing writes the header without reading the entries
//! back.
//!
//! Invariants:
//! - The file holds `written` entries after the header, in order; nothing before
//!   `HEADER_LEN + written * entry_len` is ever rewritten, so readers may `pread` it while the
//!   writer appends. The header stays zero (an unusable index) until [`ActiveIndex::finish`].
//! - `summary[b]` is the key of entry `b * ENTRIES_PER_BLOCK`, for every such entry written.
//! - Entries are never lost from memory before they are in the file: a failed write keeps them
//!   pending and is retried, so lookups stay exact whatever the disk does.

use std::io;
use std::path::{Path, PathBuf};

use crate::batch::BatchHeader;
use crate::batch::header::{le_u32_at as u32_at, le_u64_at as u64_at};
use crate::error::{Error, Result};
use crate::files::{INDEX_EXT, TIME_INDEX_EXT};
use crate::index::{
    CRC_AT, EntryClock, HEADER_LEN, OFFSET_ENTRY_LEN, OFFSET_MAGIC, TIME_ENTRY_LEN, TIME_MAGIC,
    partition_point,
};
use crate::vfs::{FileSystem, OpenMode, VFile};

/// Entries per block of the in-memory summary: one lookup reads at most this many.
pub const ENTRIES_PER_BLOCK: usize = 64;
/// Pending entries are written once they reach this many bytes.
pub const FLUSH_BYTES: usize = 4096;

/// What a recovery-point checkpoint keeps of an active index: enough to trust the first entries
/// of its files (count and CRC) and to continue from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexState {
    pub offset_entries: u64,
    pub offset_crc: u32,
    pub time_entries: u64,
    pub time_crc: u32,
    pub last_time_entry: i64,
    pub bytes_since_entry: u64,
    pub next_offset: u64,
    pub max_timestamp: i64,
}

impl IndexState {
    /// The state of an empty segment at `base`.
    pub fn empty(base: u64) -> Self {
        Self {
            offset_entries: 0,
            offset_crc: 0,
            time_entries: 0,
            time_crc: 0,
            last_time_entry: i64::MIN,
            bytes_since_entry: 0,
            next_offset: base,
            max_timestamp: i64::MIN,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Offset,
    Time,
}

impl Kind {
    fn entry_len(self) -> usize {
        match self {
            Kind::Offset => OFFSET_ENTRY_LEN,
            Kind::Time => TIME_ENTRY_LEN,
        }
    }

    /// What entries are ordered by: the relative offset, or the timestamp.
    fn key(self, entry: &[u8]) -> i64 {
        match self {
            Kind::Offset => i64::from(u32_at(entry, 0)),
            Kind::Time => u64_at(entry, 0) as i64,
        }
    }

    fn magic(self) -> [u8; 4] {
        match self {
            Kind::Offset => OFFSET_MAGIC,
            Kind::Time => TIME_MAGIC,
        }
    }

    fn ext(self) -> &'static str {
        match self {
            Kind::Offset => INDEX_EXT,
            Kind::Time => TIME_INDEX_EXT,
        }
    }
}

/// One index file being appended.
#[derive(Debug)]
struct EntryFile {
    kind: Kind,
    file: VFile,
    path: PathBuf,
    written: u64,
    pending: Vec<u8>,
    summary: Vec<i64>,
    crc: crc32fast::Hasher,
    /// The last write failed (said once, not at every batch).
    failing: bool,
}

/// The longest entry, for copies out of a block.
type Entry = [u8; TIME_ENTRY_LEN];

impl EntryFile {
    fn open(fs: &dyn FileSystem, log_path: &Path, kind: Kind, truncate: bool) -> Result<Self> {
        let path = log_path.with_extension(kind.ext());
        let mode = if truncate { OpenMode::CREATE_EMPTY } else { OpenMode::CREATE };
        let file = fs.open(&path, mode).map_err(Error::io("open", &path))?;
        Ok(Self {
            kind,
            file,
            path,
            written: 0,
            pending: Vec::new(),
            summary: Vec::new(),
            crc: crc32fast::Hasher::new(),
            failing: false,
        })
    }

    fn entries(&self) -> u64 {
        self.written + (self.pending.len() / self.kind.entry_len()) as u64
    }

    fn push(&mut self, entry: &[u8]) {
        self.pending.extend_from_slice(entry);
        if self.pending.len() >= FLUSH_BYTES {
            match self.flush() {
                Ok(()) => self.failing = false,
                Err(e) => {
                    if !self.failing {
                        tracing::warn!(index = %self.path.display(), error = %e, "could not write index entries; keeping them in memory and retrying");
                    }
                    self.failing = true;
                }
            }
        }
    }

    /// Writes the pending entries after the written ones.
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let len = self.kind.entry_len();
        let at = HEADER_LEN as u64 + self.written * len as u64;
        self.file.write_all_at(&self.pending, at).map_err(Error::io("write", &self.path))?;
        self.crc.update(&self.pending);
        for (i, entry) in self.pending.chunks_exact(len).enumerate() {
            if (self.written + i as u64).is_multiple_of(ENTRIES_PER_BLOCK as u64) {
                self.summary.push(self.kind.key(entry));
            }
        }
        self.written += (self.pending.len() / len) as u64;
        self.pending.clear();
        Ok(())
    }

    /// The last entry whose key satisfies `pred` (true for a prefix of the entries, then false).
    fn last_where(&self, pred: impl Fn(i64) -> bool) -> io::Result<Option<Entry>> {
        let len = self.kind.entry_len();
        let copy = |bytes: &[u8]| {
            let mut entry = [0u8; TIME_ENTRY_LEN];
            entry[..len].copy_from_slice(&bytes[..len]);
            entry
        };
        let pending = self.pending.len() / len;
        if pending > 0 && pred(self.kind.key(&self.pending)) {
            let i = partition_point(pending, |i| pred(self.kind.key(&self.pending[i * len..])));
            return Ok(Some(copy(&self.pending[(i - 1) * len..])));
        }
        let block = match partition_point(self.summary.len(), |b| pred(self.summary[b])) {
            0 => return Ok(None),
            after => after - 1,
        };
        let first = (block * ENTRIES_PER_BLOCK) as u64;
        let count = (self.written - first).min(ENTRIES_PER_BLOCK as u64) as usize;
        let mut buf = [0u8; ENTRIES_PER_BLOCK * TIME_ENTRY_LEN];
        let buf = &mut buf[..count * len];
        self.file.read_exact_at(buf, HEADER_LEN as u64 + first * len as u64)?;
        let i = partition_point(count, |i| pred(self.kind.key(&buf[i * len..])));
        // The block's first entry satisfies `pred` (the summary said so): i >= 1.
        Ok(Some(copy(&buf[(i.max(1) - 1) * len..])))
    }

    /// Takes the first `entries` entries of the file as written, if their CRC is `crc`, and
    /// drops any after them. `false` if the file is too short or the CRC differs.
    fn adopt_prefix(&mut self, entries: u64, crc: u32) -> Result<bool> {
        let len = self.kind.entry_len() as u64;
        let file_len = self.file.size().map_err(Error::io("stat", &self.path))?;
        let Some(bytes) = entries.checked_mul(len) else { return Ok(false) };
        // A segment with no entries yet may have an empty file: nothing was written to it.
        if bytes > 0 && file_len.saturating_sub(HEADER_LEN as u64) < bytes {
            return Ok(false);
        }
        // Bounded by the file's real length, checked above.
        let mut buf = vec![0u8; bytes as usize];
        self.file
            .read_exact_at(&mut buf, HEADER_LEN as u64)
            .map_err(Error::io("read", &self.path))?;
        if crc32fast::hash(&buf) != crc {
            return Ok(false);
        }
        self.summary = buf
            .chunks_exact(len as usize)
            .step_by(ENTRIES_PER_BLOCK)
            .map(|entry| self.kind.key(entry))
            .collect();
        self.crc = crc32fast::Hasher::new_with_initial_len(crc, bytes);
        self.written = entries;
        self.cut_after_written()?;
        Ok(true)
    }

    /// Drops whatever follows the written entries and zeroes the header: a file that ends
    /// anywhere else, or carries a sealed header, would not describe this segment.
    fn cut_after_written(&self) -> Result<()> {
        let end = HEADER_LEN as u64 + self.written * self.kind.entry_len() as u64;
        self.file.set_len(end).map_err(Error::io("truncate", &self.path))?;
        self.file.write_all_at(&[0u8; HEADER_LEN], 0).map_err(Error::io("write", &self.path))
    }

    /// Writes what is pending and the header for a sealed segment of `log_len` bytes.
    fn finish(&mut self, clock: &EntryClock, log_len: u64) -> Result<()> {
        self.flush()?;
        self.cut_after_written()?;
        let head = clock.header(self.kind.magic(), log_len, self.written);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.combine(&self.crc);
        let mut full = [0u8; HEADER_LEN];
        full[..CRC_AT].copy_from_slice(&head);
        full[CRC_AT..].copy_from_slice(&crc.finalize().to_le_bytes());
        self.file.write_all_at(&full, 0).map_err(Error::io("write", &self.path))?;
        self.file.sync_data().map_err(Error::io("fsync", &self.path))
    }
}

/// The offset and time index of the active segment (or of one sealed but not yet finished).
#[derive(Debug)]
pub struct ActiveIndex {
    clock: EntryClock,
    offsets: EntryFile,
    times: EntryFile,
    /// An fsync of this file failed: entries it was to make durable may be gone whatever a
    /// later fsync says, so no checkpoint may count them (`checkpoint_state` fails).
    sync_failed: Option<PathBuf>,
}

impl ActiveIndex {
    /// Starts empty index files for the segment at `log_path` (replacing any there).
    pub fn create(fs: &dyn FileSystem, log_path: &Path, base_offset: u64) -> Result<Self> {
        Ok(Self {
            clock: EntryClock::new(base_offset),
            offsets: EntryFile::open(fs, log_path, Kind::Offset, true)?,
            times: EntryFile::open(fs, log_path, Kind::Time, true)?,
            sync_failed: None,
        })
    }

    /// Continues the index files of the segment at `log_path` from a checkpointed state.
    /// `None` if the files do not hold the entries the state describes (then the caller
    /// rebuilds them with [`ActiveIndex::create`]).
    pub fn resume(
        fs: &dyn FileSystem,
        log_path: &Path,
        base_offset: u64,
        state: &IndexState,
    ) -> Result<Option<Self>> {
        let mut offsets = EntryFile::open(fs, log_path, Kind::Offset, false)?;
        let mut times = EntryFile::open(fs, log_path, Kind::Time, false)?;
        if !offsets.adopt_prefix(state.offset_entries, state.offset_crc)?
            || !times.adopt_prefix(state.time_entries, state.time_crc)?
        {
            return Ok(None);
        }
        let clock = EntryClock {
            base_offset,
            has_entries: state.offset_entries > 0,
            last_time_entry: state.last_time_entry,
            bytes_since_entry: state.bytes_since_entry,
            next_offset: state.next_offset,
            max_timestamp: state.max_timestamp,
        };
        Ok(Some(Self { clock, offsets, times, sync_failed: None }))
    }

    pub fn next_offset(&self) -> u64 {
        self.clock.next_offset
    }

    pub fn max_timestamp(&self) -> i64 {
        self.clock.max_timestamp
    }

    /// Accounts for a batch written at `position`. Never fails: entries that cannot be written
    /// yet stay in memory.
    pub fn on_batch(&mut self, header: &BatchHeader, position: u64, interval_bytes: u32) {
        let new = self.clock.on_batch(header, position, interval_bytes);
        if let Some(entry) = new.offset {
            self.offsets.push(&entry);
        }
        if let Some(entry) = new.time {
            self.times.push(&entry);
        }
    }

    /// File position of the last indexed batch starting at or before `offset` (0 if none).
    pub fn position_for(&self, offset: u64) -> Result<u64> {
        Ok(self.entry_for(offset)?.map_or(0, |(_, position)| position))
    }

    /// The last entry at or before `offset`, as (the batch's base offset, its position).
    pub fn entry_for(&self, offset: u64) -> Result<Option<(u64, u64)>> {
        let base = self.clock.base_offset;
        let relative = offset.saturating_sub(base).min(u64::from(u32::MAX)) as i64;
        let entry = self
            .offsets
            .last_where(|key| key <= relative)
            .map_err(Error::io("read", &self.offsets.path))?;
        Ok(entry.map(|e| (base + u64::from(u32_at(&e, 0)), u64::from(u32_at(&e, 4)))))
    }

    /// File position from which a scan finds the first record with a timestamp >= `timestamp`.
    pub fn position_for_time(&self, timestamp: i64) -> Result<u64> {
        let entry = self
            .times
            .last_where(|key| key < timestamp)
            .map_err(Error::io("read", &self.times.path))?;
        match entry {
            None => Ok(0),
            Some(e) => self.position_for(self.clock.base_offset + u64::from(u32_at(&e, 8))),
        }
    }

    /// The newest offset entry as (relative offset, position), if any.
    pub fn last_entry(&self) -> Result<Option<(u32, u32)>> {
        let entry =
            self.offsets.last_where(|_| true).map_err(Error::io("read", &self.offsets.path))?;
        Ok(entry.map(|e| (u32_at(&e, 0), u32_at(&e, 4))))
    }

    /// Writes every pending entry and returns the state a checkpoint records.
    pub fn checkpoint_state(&mut self) -> Result<IndexState> {
        if let Some(path) = &self.sync_failed {
            return Err(Error::Poisoned { path: path.clone(), op: "fsync" });
        }
        self.offsets.flush()?;
        self.times.flush()?;
        Ok(IndexState {
            offset_entries: self.offsets.entries(),
            offset_crc: self.offsets.crc.clone().finalize(),
            time_entries: self.times.entries(),
            time_crc: self.times.crc.clone().finalize(),
            last_time_entry: self.clock.last_time_entry,
            bytes_since_entry: self.clock.bytes_since_entry,
            next_offset: self.clock.next_offset,
            max_timestamp: self.clock.max_timestamp,
        })
    }

    /// Notes that an fsync of the file at `path` failed (see `sync_failed`).
    pub fn mark_sync_failed(&mut self, path: PathBuf) {
        self.sync_failed.get_or_insert(path);
    }

    /// Handles on both files, to fsync them without holding the index.
    pub fn file_handles(&self) -> Result<[(VFile, PathBuf); 2]> {
        let dup = |f: &EntryFile| {
            f.file.try_clone().map(|h| (h, f.path.clone())).map_err(Error::io("reopen", &f.path))
        };
        Ok([dup(&self.offsets)?, dup(&self.times)?])
    }

    /// Completes both files for a sealed segment of `log_len` bytes: the pending entries, the
    /// header (from which a reopened log maps them), an fsync.
    pub fn finish(&mut self, log_len: u64) -> Result<()> {
        let clock = self.clock.clone();
        self.offsets.finish(&clock, log_len)?;
        self.times.finish(&clock, log_len)
    }

    /// Bytes of entries held in memory (pending writes and the summary), for tests.
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        self.offsets.pending.len()
            + self.times.pending.len()
            + (self.offsets.summary.len() + self.times.summary.len()) * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexBuilder, SealedIndex};
    use crate::vfs::OsFs;

    fn header(base_offset: u64, batch_len: u32, max_timestamp: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_len,
            leader_epoch: 0,
            crc: 0,
            attributes: 0,
            last_offset_delta: 2,
            first_timestamp: max_timestamp,
            max_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: 3,
        }
    }

    /// The file-backed index answers every lookup as the in-memory builder does, across flushes
    /// and blocks, and once finished is exactly the files the builder writes.
    #[test]
    fn matches_the_in_memory_builder_and_finishes_into_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        let (active_path, built_path) = (dir.path().join("a.log"), dir.path().join("b.log"));
        let base = 1000;
        let mut active = ActiveIndex::create(&OsFs, &active_path, base).unwrap();
        let mut built = IndexBuilder::new(base);
        let mut position = 0u64;
        let mut offset = base;
        // ~3000 batches: many blocks, flushes, and a pending tail.
        for i in 0..3000u64 {
            let h = header(offset, 100 + (i % 7) as u32 * 30, (i as i64 / 3) * 10);
            active.on_batch(&h, position, 256);
            built.on_batch(&h, position, 256);
            position += u64::from(h.batch_len);
            offset = h.next_offset();
        }
        let sealed = built.clone().into_sealed();
        let view = sealed.view();
        for probe in (0..offset + 5).step_by(7) {
            assert_eq!(active.position_for(probe).unwrap(), view.position_for(probe), "{probe}");
        }
        for t in (-5..10_100).step_by(13) {
            assert_eq!(active.position_for_time(t).unwrap(), view.position_for_time(t), "{t}");
        }
        assert!(active.heap_bytes() < 2 * FLUSH_BYTES + 1024, "{}", active.heap_bytes());
        active.finish(position).unwrap();
        built.write_files(&OsFs, &built_path, position).unwrap();
        for ext in [INDEX_EXT, TIME_INDEX_EXT] {
            assert_eq!(
                std::fs::read(active_path.with_extension(ext)).unwrap(),
                std::fs::read(built_path.with_extension(ext)).unwrap()
            );
        }
        assert!(SealedIndex::load(&OsFs, &active_path, base, position).is_some());
    }

    #[test]
    fn resumes_from_a_checkpointed_prefix_and_refuses_one_that_does_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let mut index = ActiveIndex::create(&OsFs, &path, 0).unwrap();
        let mut position = 0;
        for i in 0..500u64 {
            index.on_batch(&header(i * 3, 5000, i as i64), position, 4096);
            position += 5000;
        }
        let state = index.checkpoint_state().unwrap();
        let probe = index.position_for(700).unwrap();
        // More entries after the checkpoint: resuming drops them.
        for i in 500..600u64 {
            index.on_batch(&header(i * 3, 5000, i as i64), position, 4096);
            position += 5000;
        }
        index.checkpoint_state().unwrap();
        drop(index);
        let resumed = ActiveIndex::resume(&OsFs, &path, 0, &state).unwrap().unwrap();
        assert_eq!(resumed.position_for(700).unwrap(), probe);
        assert_eq!(resumed.position_for(1_000_000).unwrap(), 499 * 5000);
        let state_again = {
            let mut r = resumed;
            r.checkpoint_state().unwrap()
        };
        assert_eq!(state_again, state);
        let bad = IndexState { offset_crc: state.offset_crc ^ 1, ..state };
        assert!(ActiveIndex::resume(&OsFs, &path, 0, &bad).unwrap().is_none());
        let long = IndexState { offset_entries: state.offset_entries + 1, ..state };
        assert!(ActiveIndex::resume(&OsFs, &path, 0, &long).unwrap().is_none());
        // A segment nothing was indexed in yet: its files are empty, and that is its state.
        let fresh = dir.path().join("t.log");
        drop(ActiveIndex::create(&OsFs, &fresh, 77).unwrap());
        let empty =
            ActiveIndex::resume(&OsFs, &fresh, 77, &IndexState::empty(77)).unwrap().unwrap();
        assert_eq!(empty.position_for(80).unwrap(), 0);
    }
}
