//! Sparse offset and time indexes for one segment.
//!
//! Both are arrays of fixed-size little-endian entries in `.index`/`.timeindex` files, behind a
//! header that names the log length they describe. The active segment appends its entries to
//! the files as it goes (`active_index`), with the header left zero; sealing writes the header,
//! and sealed segments map the files read-only when first used. A file that is missing, of
//! another length, or fails its checksum is rebuilt from the segment ([`IndexBuilder`], which
//! also builds compaction's output). The rule for when a batch gets entries is
//! [`EntryClock`]'s, shared by both builders.
//!
//! ```text
//! index file header (40 bytes)
//!  0 magic [4] "EIDX" (offset index) or "ETIX" (time index)
//!  4 version u8 = 1, then 3 zero bytes
//!  8 log_len u64        size of the .log file these entries describe
//! 16 next_offset u64    offset after the segment's last batch
//! 24 max_timestamp i64  largest record timestamp in the segment (i64::MIN if empty)
//! 32 entry_count u32
//! 36 crc u32            CRC-32 of bytes 0..36 and all entries
//! offset entry (8 bytes): relative_offset u32 | position u32
//! time entry (12 bytes):  timestamp i64 | relative_offset u32
//! ```
//!
//! A time entry `(t, r)` says every record before relative offset `r` has a timestamp <= `t`.

use std::path::Path;

use bytes::Bytes;

use crate::batch::BatchHeader;
use crate::batch::header::{le_u32_at as u32_at, le_u64_at as u64_at};
use crate::error::Result;
use crate::files::replace_file;
use crate::vfs::{FileSystem, OpenMode};

pub const HEADER_LEN: usize = 40;
pub const OFFSET_ENTRY_LEN: usize = 8;
pub const TIME_ENTRY_LEN: usize = 12;
pub const VERSION: u8 = 1;
pub const OFFSET_MAGIC: [u8; 4] = *b"EIDX";
pub const TIME_MAGIC: [u8; 4] = *b"ETIX";
pub const CRC_AT: usize = 36;
const _: () = assert!(CRC_AT + 4 == HEADER_LEN);

/// When a batch gets index entries, and the segment summary the entries end with: the rule both
/// the in-memory [`IndexBuilder`] and the file-backed active index follow.
#[derive(Debug, Clone)]
pub struct EntryClock {
    pub base_offset: u64,
    pub has_entries: bool,
    pub last_time_entry: i64,
    pub bytes_since_entry: u64,
    /// Offset after the last batch accounted for.
    pub next_offset: u64,
    /// Largest record timestamp so far (`i64::MIN` before the first batch).
    pub max_timestamp: i64,
}

/// The entries one batch adds, encoded.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewEntries {
    pub offset: Option<[u8; OFFSET_ENTRY_LEN]>,
    pub time: Option<[u8; TIME_ENTRY_LEN]>,
}

impl EntryClock {
    pub fn new(base_offset: u64) -> Self {
        Self {
            base_offset,
            has_entries: false,
            last_time_entry: i64::MIN,
            bytes_since_entry: 0,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
        }
    }

    /// Accounts for a batch written at `position` (its header carries its real base offset) and
    /// returns the entries it gets: an offset entry at the first batch and then at the first
    /// batch after every `interval_bytes`, a time entry with it when the timestamp grew.
    pub fn on_batch(
        &mut self,
        header: &BatchHeader,
        position: u64,
        interval_bytes: u32,
    ) -> NewEntries {
        let mut new = NewEntries::default();
        if !self.has_entries || self.bytes_since_entry >= u64::from(interval_bytes) {
            let relative = (header.base_offset - self.base_offset) as u32;
            let mut entry = [0u8; OFFSET_ENTRY_LEN];
            entry[..4].copy_from_slice(&relative.to_le_bytes());
            entry[4..].copy_from_slice(&(position as u32).to_le_bytes());
            new.offset = Some(entry);
            if self.max_timestamp > self.last_time_entry {
                let mut entry = [0u8; TIME_ENTRY_LEN];
                entry[..8].copy_from_slice(&self.max_timestamp.to_le_bytes());
                entry[8..].copy_from_slice(&relative.to_le_bytes());
                new.time = Some(entry);
                self.last_time_entry = self.max_timestamp;
            }
            self.has_entries = true;
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += u64::from(header.batch_len);
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.next_offset = header.next_offset();
        new
    }

    /// The first 36 bytes of an index file's header (all but the checksum).
    pub fn header(&self, magic: [u8; 4], log_len: u64, entry_count: u64) -> [u8; CRC_AT] {
        let mut head = [0u8; CRC_AT];
        head[..4].copy_from_slice(&magic);
        head[4] = VERSION;
        head[8..16].copy_from_slice(&log_len.to_le_bytes());
        head[16..24].copy_from_slice(&self.next_offset.to_le_bytes());
        head[24..32].copy_from_slice(&self.max_timestamp.to_le_bytes());
        head[32..36].copy_from_slice(&(entry_count as u32).to_le_bytes());
        head
    }
}

/// Index entries built in memory (when rebuilding a sealed segment's index or compacting one),
/// plus the segment summary they end with.
#[derive(Debug, Clone)]
pub struct IndexBuilder {
    clock: EntryClock,
    offsets: Vec<u8>,
    times: Vec<u8>,
}

impl IndexBuilder {
    pub fn new(base_offset: u64) -> Self {
        Self { clock: EntryClock::new(base_offset), offsets: Vec::new(), times: Vec::new() }
    }

    /// Accounts for a batch written at `position` (its header carries its real base offset).
    pub fn on_batch(&mut self, header: &BatchHeader, position: u64, interval_bytes: u32) {
        let new = self.clock.on_batch(header, position, interval_bytes);
        if let Some(entry) = new.offset {
            self.offsets.extend_from_slice(&entry);
        }
        if let Some(entry) = new.time {
            self.times.extend_from_slice(&entry);
        }
    }

    /// Writes both index files for a segment whose log is `log_len` bytes (no directory fsync).
    pub fn write_files(&self, fs: &dyn FileSystem, log_path: &Path, log_len: u64) -> Result<()> {
        for (magic, entries, entry_len, ext) in [
            (OFFSET_MAGIC, &self.offsets, OFFSET_ENTRY_LEN, crate::files::INDEX_EXT),
            (TIME_MAGIC, &self.times, TIME_ENTRY_LEN, crate::files::TIME_INDEX_EXT),
        ] {
            let head = self.clock.header(magic, log_len, (entries.len() / entry_len) as u64);
            let mut buf = Vec::with_capacity(HEADER_LEN + entries.len());
            buf.extend_from_slice(&head);
            let mut crc = crc32fast::Hasher::new();
            crc.update(&buf);
            crc.update(entries);
            buf.extend_from_slice(&crc.finalize().to_le_bytes());
            buf.extend_from_slice(entries);
            replace_file(fs, &log_path.with_extension(ext), &buf)?;
        }
        Ok(())
    }

    /// Freezes the entries into a [`SealedIndex`] without touching disk.
    pub fn into_sealed(self) -> SealedIndex {
        SealedIndex {
            base_offset: self.clock.base_offset,
            offsets: Bytes::from(self.offsets),
            times: Bytes::from(self.times),
            next_offset: self.clock.next_offset,
            max_timestamp: self.clock.max_timestamp,
        }
    }
}

/// The index of a sealed segment: entries from a mapped file or a rebuild.
#[derive(Debug, Clone)]
pub struct SealedIndex {
    base_offset: u64,
    offsets: Bytes,
    times: Bytes,
    /// Offset after the segment's last batch.
    pub next_offset: u64,
    pub max_timestamp: i64,
}

impl SealedIndex {
    /// Maps and checks the index files of the segment at `log_path`; `None` if either is
    /// missing, describes another log length, or fails its checks.
    pub fn load(
        fs: &dyn FileSystem,
        log_path: &Path,
        base_offset: u64,
        log_len: u64,
    ) -> Option<SealedIndex> {
        let (offsets, next_offset, max_timestamp) = load_file(
            fs,
            &log_path.with_extension(crate::files::INDEX_EXT),
            OFFSET_MAGIC,
            OFFSET_ENTRY_LEN,
            log_len,
        )?;
        let (times, next_t, max_t) = load_file(
            fs,
            &log_path.with_extension(crate::files::TIME_INDEX_EXT),
            TIME_MAGIC,
            TIME_ENTRY_LEN,
            log_len,
        )?;
        if (next_t, max_t) != (next_offset, max_timestamp) {
            return None;
        }
        Some(SealedIndex { base_offset, offsets, times, next_offset, max_timestamp })
    }

    pub fn view(&self) -> IndexView<'_> {
        IndexView { base_offset: self.base_offset, offsets: &self.offsets, times: &self.times }
    }
}

fn load_file(
    fs: &dyn FileSystem,
    path: &Path,
    magic: [u8; 4],
    entry_len: usize,
    log_len: u64,
) -> Option<(Bytes, u64, i64)> {
    let file = fs.open(path, OpenMode::READ).ok()?;
    let len = file.size().ok()?;
    if len < HEADER_LEN as u64 {
        return None;
    }
    let bytes = file.map(len, false).ok()?;
    let head = &bytes[..HEADER_LEN];
    if head[..4] != magic || head[4] != VERSION || u64_at(head, 8) != log_len {
        return None;
    }
    let count = u64::from(u32_at(head, 32));
    if count * entry_len as u64 != len - HEADER_LEN as u64 {
        return None;
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[..CRC_AT]);
    crc.update(&bytes[HEADER_LEN..]);
    if crc.finalize() != u32_at(head, CRC_AT) {
        return None;
    }
    Some((bytes.slice(HEADER_LEN..), u64_at(head, 16), u64_at(head, 24) as i64))
}

/// Lookups over encoded entries, shared by active and sealed segments.
#[derive(Debug, Clone, Copy)]
pub struct IndexView<'a> {
    base_offset: u64,
    offsets: &'a [u8],
    times: &'a [u8],
}

impl IndexView<'_> {
    /// File position of the last indexed batch starting at or before `offset` (0 if none).
    pub fn position_for(&self, offset: u64) -> u64 {
        self.entry_for(offset).map_or(0, |(_, position)| position)
    }

    /// The last entry at or before `offset`, as (the batch's base offset, its position).
    pub fn entry_for(&self, offset: u64) -> Option<(u64, u64)> {
        let relative = offset.saturating_sub(self.base_offset).min(u64::from(u32::MAX)) as u32;
        let n = self.offsets.len() / OFFSET_ENTRY_LEN;
        let after = partition_point(n, |i| u32_at(self.offsets, i * OFFSET_ENTRY_LEN) <= relative);
        let at = after.checked_sub(1)? * OFFSET_ENTRY_LEN;
        let base = self.base_offset + u64::from(u32_at(self.offsets, at));
        Some((base, u64::from(u32_at(self.offsets, at + 4))))
    }

    /// File position from which a scan finds the first record with a timestamp >= `timestamp`:
    /// every record before it is older.
    pub fn position_for_time(&self, timestamp: i64) -> u64 {
        let n = self.times.len() / TIME_ENTRY_LEN;
        let after =
            partition_point(n, |i| (u64_at(self.times, i * TIME_ENTRY_LEN) as i64) < timestamp);
        match after {
            0 => 0,
            i => {
                let relative = u32_at(self.times, (i - 1) * TIME_ENTRY_LEN + 8);
                self.position_for(self.base_offset + u64::from(relative))
            }
        }
    }
}

/// Index of the first element for which `pred` is false, given it is true then false.
pub fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) { lo = mid + 1 } else { hi = mid }
    }
    lo
}
