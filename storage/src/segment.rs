//! One segment: a `.log` file of batches and its indexes, in one of two states.
//!
//! - [`ActiveSegment`]: the one being appended. Readers see bytes up to `visible_len`, which the
//!   writer publishes after each complete batch, and read them with `pread` (the file is still
//!   growing, so it is not mapped). Its index is an [`ActiveIndex`], kept in its files.
//! - [`SealedSegment`]: immutable. Its log is memory-mapped on first read and served as `Bytes`
//!   slices. Until the background sealer has finished it (fsynced it and completed its index
//!   files) it is *unfinished* and keeps serving lookups from the index it had while active;
//!   the sealer then replaces it with a finished one, whose indexes are mapped from their files
//!   (or rebuilt) on first use, so opening a log costs nothing per sealed segment and no sealed
//!   segment's index lives on the heap. Every batch it serves has had its checksum verified
//!   once; `verified_upto` remembers the checked prefix so re-reads skip the work.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};

use bytes::Bytes;

use crate::active_index::ActiveIndex;
use crate::batch::{BatchError, BatchHeader, BatchView, HEADER_LEN};
use crate::error::{Error, Result};
use crate::index::{IndexBuilder, SealedIndex};
use crate::stats::Stats;
use crate::sync::SegmentSync;
use crate::vfs::{Fs, OpenMode, VFile};

/// The segment being appended.
#[derive(Debug)]
pub struct ActiveSegment {
    pub base_offset: u64,
    pub path: PathBuf,
    pub file: VFile,
    /// Bytes readers may see: always the end of a complete batch.
    pub visible_len: AtomicU64,
    /// Shared with the [`SealedSegment`] this becomes until the sealer has finished it.
    pub index: Arc<RwLock<ActiveIndex>>,
    /// Every fsync of this segment, now and once sealed, goes through this.
    pub sync: Arc<SegmentSync>,
}

/// A segment that is no longer written.
#[derive(Debug)]
pub struct SealedSegment {
    pub base_offset: u64,
    pub path: PathBuf,
    pub len: u64,
    index_interval_bytes: u32,
    fs: Fs,
    file: VFile,
    map: OnceLock<Bytes>,
    index: OnceLock<SealedIndex>,
    /// The index the segment had while active, until the sealer has finished its files.
    unfinished: Option<Arc<RwLock<ActiveIndex>>>,
    verified_upto: AtomicU64,
}

/// A sealed segment's index: mapped (or rebuilt), or still the one it had while active.
#[derive(Debug)]
pub enum IndexRef<'a> {
    Loaded(&'a SealedIndex),
    Unfinished(RwLockReadGuard<'a, ActiveIndex>),
}

impl IndexRef<'_> {
    /// Offset after the segment's last batch.
    pub fn next_offset(&self) -> u64 {
        match self {
            IndexRef::Loaded(i) => i.next_offset,
            IndexRef::Unfinished(i) => i.next_offset(),
        }
    }

    pub fn max_timestamp(&self) -> i64 {
        match self {
            IndexRef::Loaded(i) => i.max_timestamp,
            IndexRef::Unfinished(i) => i.max_timestamp(),
        }
    }

    /// The last entry at or before `offset`: (its batch's base offset, its position).
    fn entry_for(&self, offset: u64) -> Result<Option<(u64, u64)>> {
        match self {
            IndexRef::Loaded(i) => Ok(i.view().entry_for(offset)),
            IndexRef::Unfinished(i) => i.entry_for(offset),
        }
    }

    fn position_for_time(&self, timestamp: i64) -> Result<u64> {
        match self {
            IndexRef::Loaded(i) => Ok(i.view().position_for_time(timestamp)),
            IndexRef::Unfinished(i) => i.position_for_time(timestamp),
        }
    }
}

/// Whole batches read from one segment; `None` when it holds nothing at or after the offset.
pub type ReadOutcome = Option<Bytes>;

impl ActiveSegment {
    /// `synced_len` bytes of `file` are known to be on stable storage.
    pub fn new(
        base_offset: u64,
        path: PathBuf,
        file: VFile,
        len: u64,
        synced_len: u64,
        index: ActiveIndex,
    ) -> Result<Self> {
        let handle = file.try_clone().map_err(Error::io("reopen", &path))?;
        Ok(Self {
            base_offset,
            sync: Arc::new(SegmentSync::new(handle, path.clone(), synced_len)),
            path,
            file,
            visible_len: AtomicU64::new(len),
            index: Arc::new(RwLock::new(index)),
        })
    }

    fn read_index(&self) -> RwLockReadGuard<'_, ActiveIndex> {
        self.index.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> Result<()> {
        self.file.read_exact_at(buf, position).map_err(Error::io("read", &self.path))
    }

    fn header_at(&self, position: u64, visible: u64) -> Result<BatchHeader> {
        if position + HEADER_LEN as u64 > visible {
            return Err(corrupt(
                &self.path,
                position,
                BatchError::Truncated { needed: HEADER_LEN as u64, available: visible - position },
            ));
        }
        let mut head = [0u8; HEADER_LEN];
        self.read_exact_at(&mut head, position)?;
        BatchHeader::parse(&head).map_err(|e| corrupt(&self.path, position, e))
    }

    /// Whole batches from the one holding `from`, about `max_bytes` of them (at least one).
    /// `None` when the segment holds nothing at or after `from`.
    pub fn read(&self, from: u64, max_bytes: usize) -> Result<ReadOutcome> {
        let visible = self.visible_len.load(Ordering::Acquire);
        let mut position = self.read_index().position_for(from)?;
        let first = loop {
            if position >= visible {
                return Ok(None);
            }
            let header = self.header_at(position, visible)?;
            if header.last_offset() >= from {
                break header;
            }
            position += u64::from(header.batch_len);
        };
        let want = (max_bytes as u64).max(u64::from(first.batch_len)).min(visible - position);
        let mut buf = vec![0u8; want as usize];
        self.read_exact_at(&mut buf, position)?;
        let end = whole_batches_len(&buf);
        buf.truncate(end);
        Ok(Some(Bytes::from(buf)))
    }

    /// The first record at or after `timestamp` in this segment, as (offset, timestamp).
    pub fn find_time(&self, timestamp: i64) -> Result<Option<(u64, i64)>> {
        let visible = self.visible_len.load(Ordering::Acquire);
        let mut position = self.read_index().position_for_time(timestamp)?;
        while position < visible {
            let header = self.header_at(position, visible)?;
            if header.max_timestamp >= timestamp {
                let mut buf = vec![0u8; header.batch_len as usize];
                self.read_exact_at(&mut buf, position)?;
                return first_record_at_or_after(&self.path, position, &buf, timestamp);
            }
            position += u64::from(header.batch_len);
        }
        Ok(None)
    }

    pub fn max_timestamp(&self) -> i64 {
        self.read_index().max_timestamp()
    }
}

impl SealedSegment {
    pub fn open(
        fs: &Fs,
        base_offset: u64,
        path: PathBuf,
        len: u64,
        index_interval_bytes: u32,
    ) -> Result<Self> {
        let file = fs.open(&path, OpenMode::READ).map_err(Error::io("open", &path))?;
        Ok(Self::from_file(fs, base_offset, path, file, len, index_interval_bytes))
    }

    /// A finished segment whose index files are loaded on first use.
    pub fn from_file(
        fs: &Fs,
        base_offset: u64,
        path: PathBuf,
        file: VFile,
        len: u64,
        index_interval_bytes: u32,
    ) -> Self {
        Self {
            base_offset,
            path,
            len,
            index_interval_bytes,
            fs: fs.clone(),
            file,
            map: OnceLock::new(),
            index: OnceLock::new(),
            unfinished: None,
            verified_upto: AtomicU64::new(0),
        }
    }

    /// A segment just sealed (or found unsynced by recovery): its index is still the active
    /// one until the sealer has finished it.
    pub fn unfinished(
        fs: &Fs,
        base_offset: u64,
        path: PathBuf,
        file: VFile,
        len: u64,
        index_interval_bytes: u32,
        index: Arc<RwLock<ActiveIndex>>,
    ) -> Self {
        Self {
            unfinished: Some(index),
            ..Self::from_file(fs, base_offset, path, file, len, index_interval_bytes)
        }
    }

    /// The finished form of this segment: the same file, its index loaded from the files the
    /// sealer wrote, what was already verified carried over.
    pub fn finished(&self) -> Result<Self> {
        let file = self.file.try_clone().map_err(Error::io("reopen", &self.path))?;
        let next = Self::from_file(
            &self.fs,
            self.base_offset,
            self.path.clone(),
            file,
            self.len,
            self.index_interval_bytes,
        );
        next.verified_upto.store(self.verified_upto.load(Ordering::Acquire), Ordering::Release);
        Ok(next)
    }

    /// Whether the sealer has finished this segment (retention and compaction touch only those).
    pub fn is_finished(&self) -> bool {
        self.unfinished.is_none()
    }

    fn bytes(&self) -> Result<&Bytes> {
        if let Some(map) = self.map.get() {
            return Ok(map);
        }
        let map = self.file.map(self.len, true).map_err(Error::io("mmap", &self.path))?;
        Ok(self.map.get_or_init(|| map))
    }

    /// The segment's index: the active one if unfinished, else loaded from its files or rebuilt
    /// from the log if they are unusable.
    pub fn index(&self, stats: &Stats) -> Result<IndexRef<'_>> {
        if let Some(active) = &self.unfinished {
            return Ok(IndexRef::Unfinished(active.read().unwrap_or_else(|p| p.into_inner())));
        }
        if let Some(index) = self.index.get() {
            return Ok(IndexRef::Loaded(index));
        }
        stats.index_loads.fetch_add(1, Ordering::Relaxed);
        let index = match SealedIndex::load(&*self.fs, &self.path, self.base_offset, self.len) {
            Some(index) => index,
            None => self.rebuild_index(stats)?,
        };
        Ok(IndexRef::Loaded(self.index.get_or_init(|| index)))
    }

    fn rebuild_index(&self, stats: &Stats) -> Result<SealedIndex> {
        stats.index_rebuilds.fetch_add(1, Ordering::Relaxed);
        let data = self.bytes()?;
        let mut builder = IndexBuilder::new(self.base_offset);
        let mut position = 0u64;
        // Stop at the first bad header: reads that reach it report it.
        while position < self.len {
            let Ok(header) = BatchHeader::parse(&data[position as usize..]) else {
                break;
            };
            if position + u64::from(header.batch_len) > self.len {
                break;
            }
            builder.on_batch(&header, position, self.index_interval_bytes);
            position += u64::from(header.batch_len);
        }
        tracing::warn!(segment = %self.path.display(), "rebuilt missing or invalid index");
        if let Err(e) = builder.write_files(&*self.fs, &self.path, self.len) {
            // The rebuilt index still serves this process; the next open rebuilds again.
            tracing::warn!(segment = %self.path.display(), error = %e, "could not save rebuilt index");
        }
        Ok(builder.into_sealed())
    }

    fn header_at(&self, data: &[u8], position: u64) -> Result<BatchHeader> {
        let header = BatchHeader::parse(&data[position as usize..])
            .map_err(|e| corrupt(&self.path, position, e))?;
        let end = position + u64::from(header.batch_len);
        if end > self.len {
            return Err(corrupt(
                &self.path,
                position,
                BatchError::Truncated {
                    needed: u64::from(header.batch_len),
                    available: self.len - position,
                },
            ));
        }
        Ok(header)
    }

    /// Like [`ActiveSegment::read`], as a slice of the mapped file. Batches are checked against
    /// their checksum the first time they are served; a read stops before a bad batch, and fails
    /// with [`Error::Corrupt`] if that batch is the first one asked for.
    pub fn read(&self, from: u64, max_bytes: usize, stats: &Stats) -> Result<ReadOutcome> {
        let data = self.bytes()?;
        let (mut position, mut chain) = self.start_at(from, stats)?;
        loop {
            if position >= self.len {
                return Ok(None);
            }
            let header = self.header_at(data, position)?;
            chain.check(&header).map_err(|fault| corrupt(&self.path, position, fault))?;
            if header.last_offset() >= from {
                break;
            }
            position += u64::from(header.batch_len);
        }
        let start = position;
        let verified = self.verified_upto.load(Ordering::Acquire);
        // Where the last batch taken starts. An offset flipped upward shows only against the
        // batch after it: a batch is served once the next one's header agrees with it (or it
        // is the segment's last, checked against the segment's end).
        let mut last = start;
        while position < self.len {
            let header = match self.header_at(data, position) {
                Ok(h) => h,
                Err(e) if position == start => return Err(e),
                Err(_) => break,
            };
            if position > start
                && let Err(fault) = chain.check(&header)
            {
                // This batch or the one before is damaged: serve neither.
                if last == start {
                    return Err(corrupt(&self.path, start, fault));
                }
                position = last;
                break;
            }
            let end = position + u64::from(header.batch_len);
            if position > start && end - start > max_bytes as u64 {
                break;
            }
            if end > verified
                && let Err(fault) = header.verify_body(&data[position as usize..end as usize])
            {
                if position == start {
                    return Err(corrupt(&self.path, position, fault));
                }
                break;
            }
            last = position;
            position = end;
        }
        if start <= verified {
            self.verified_upto.fetch_max(position, Ordering::AcqRel);
        }
        Ok(Some(data.slice(start as usize..position as usize)))
    }

    pub fn find_time(&self, timestamp: i64, stats: &Stats) -> Result<Option<(u64, i64)>> {
        let data = self.bytes()?;
        let index = self.index(stats)?;
        let mut position = index.position_for_time(timestamp)?;
        let mut chain = OffsetChain::new(self.base_offset, index.next_offset());
        drop(index);
        while position < self.len {
            let header = self.header_at(data, position)?;
            chain.check(&header).map_err(|fault| corrupt(&self.path, position, fault))?;
            let end = position + u64::from(header.batch_len);
            if header.max_timestamp >= timestamp {
                let bytes = &data[position as usize..end as usize];
                header.verify_body(bytes).map_err(|fault| corrupt(&self.path, position, fault))?;
                // Its offsets are confirmed by the next batch's (see `read`).
                if end < self.len
                    && let Ok(next) = BatchHeader::parse(&data[end as usize..])
                {
                    chain.check(&next).map_err(|fault| corrupt(&self.path, position, fault))?;
                }
                return first_record_at_or_after(&self.path, position, bytes, timestamp);
            }
            position = end;
        }
        Ok(None)
    }

    /// Where a read of `from` starts walking (the last index entry at or before it), and the
    /// offset checks that walk makes.
    fn start_at(&self, from: u64, stats: &Stats) -> Result<(u64, OffsetChain)> {
        let index = self.index(stats)?;
        let mut chain = OffsetChain::new(self.base_offset, index.next_offset());
        let position = match index.entry_for(from)? {
            Some((base, position)) => {
                chain.exact = Some(base);
                position
            }
            None => 0,
        };
        Ok((position, chain))
    }

    /// Every batch header in order, and the error that stopped the walk early, if any.
    pub fn headers(&self) -> (Vec<BatchHeader>, Option<Error>) {
        let data = match self.bytes() {
            Ok(d) => d,
            Err(e) => return (Vec::new(), Some(e)),
        };
        let mut out = Vec::new();
        let mut position = 0u64;
        while position < self.len {
            match self.header_at(data, position) {
                Ok(header) => {
                    position += u64::from(header.batch_len);
                    out.push(header);
                }
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    /// Every batch in order, each checked; stops at the first bad one with its position.
    pub fn batches(&self, stats: &Stats) -> Result<Vec<(u64, Bytes)>> {
        let data = self.bytes()?;
        let mut chain = OffsetChain::new(self.base_offset, self.index(stats)?.next_offset());
        let mut out = Vec::new();
        let mut position = 0u64;
        while position < self.len {
            let header = self.header_at(data, position)?;
            chain.check(&header).map_err(|fault| corrupt(&self.path, position, fault))?;
            let end = position + u64::from(header.batch_len);
            header
                .verify_body(&data[position as usize..end as usize])
                .map_err(|e| corrupt(&self.path, position, e))?;
            out.push((position, data.slice(position as usize..end as usize)));
            position = end;
        }
        Ok(out)
    }
}

/// The checks a walk over a sealed segment's batches makes of the fields no checksum covers
/// (base offset, leader epoch), so that a flipped bit there is reported, not served: each
/// batch starts after the one before it (exactly where an index entry says, if the walk
/// started at one), ends before the segment's end, and has the leader epoch 0 the log writes.
/// Compacted segments have gaps, so "after" is all a walk can ask between index entries; on a
/// segment without gaps that catches every single flipped bit (an offset moved down overlaps
/// the batch before, one moved up overlaps the batch after, or passes the segment's end).
#[derive(Debug, Clone, Copy)]
struct OffsetChain {
    /// The next batch's base offset, if an index entry says it.
    exact: Option<u64>,
    /// The next batch's base offset is at least this.
    min: u64,
    /// Offset after the segment's last batch.
    end: u64,
}

impl OffsetChain {
    fn new(base: u64, end: u64) -> Self {
        Self { exact: None, min: base, end }
    }

    fn check(&mut self, h: &BatchHeader) -> Result<(), BatchError> {
        let found = h.base_offset;
        if let Some(expected) = self.exact.take()
            && found != expected
        {
            return Err(BatchError::OffsetMismatch { expected, found });
        }
        if found < self.min {
            return Err(BatchError::OffsetMismatch { expected: self.min, found });
        }
        if h.last_offset() >= self.end {
            return Err(BatchError::OffsetPastSegment {
                last: h.last_offset(),
                segment_end: self.end,
            });
        }
        if h.leader_epoch != 0 {
            return Err(BatchError::LeaderEpoch { found: h.leader_epoch });
        }
        self.min = h.last_offset() + 1;
        Ok(())
    }
}

/// Length of the longest prefix of `buf` made of whole batches (headers only are checked; the
/// first batch always counts, the caller sized `buf` to hold it).
fn whole_batches_len(buf: &[u8]) -> usize {
    let mut end = 0usize;
    while let Ok(header) = BatchHeader::parse(&buf[end..]) {
        let next = end + header.batch_len as usize;
        if next > buf.len() {
            break;
        }
        end = next;
    }
    end
}

fn first_record_at_or_after(
    path: &Path,
    position: u64,
    batch: &[u8],
    timestamp: i64,
) -> Result<Option<(u64, i64)>> {
    let view = BatchView::parse(batch).map_err(|e| corrupt(path, position, e))?;
    let records = view.records().map_err(|e| corrupt(path, position, e))?;
    for record in records.iter() {
        let record = record.map_err(|e| corrupt(path, position, e))?;
        if record.timestamp >= timestamp {
            return Ok(Some((record.offset, record.timestamp)));
        }
    }
    Ok(None)
}

pub fn corrupt(path: &Path, position: u64, fault: BatchError) -> Error {
    Error::Corrupt { path: path.to_path_buf(), position, fault }
}
