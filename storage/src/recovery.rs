//! Opening a log: the directory scan, and checking everything after the recovery point.
//!
//! The recovery-point checkpoint (`checkpoint`) names a segment and a position below which every
//! byte was fsynced, with the state the log had there. Open validates it against the files it
//! names, opens every segment below it by name and size alone (their indexes load on first
//! use), and checks batch by batch (`scan`) only what follows: the rest of its segment and every
//! later one — sealed segments whose background seal had not finished, then the active segment.
//! Open time therefore grows with neither the number of sealed segments nor the size of the
//! part of the active segment below the recovery point.
//!
//! At the first batch that fails, the segment is cut there (a torn tail from a crash mid-write)
//! with a log line saying how much was cut, and any later segments are deleted: none of their
//! offsets was ever reported durable, since the durable offset is a prefix and the cut segment
//! was not fsynced. The segment cut becomes the active one. Segments checked whole before the
//! last are handed to the sealer as if just rolled, so they are fsynced and finished.
//!
//! A checkpoint that is missing, damaged, or does not match the files (its segment gone,
//! its position past the segment's end, its index entries not in the index files) is reported
//! with a warning and recovery falls back to checking the whole active segment, trusting every
//! sealed one (the files of a log whose checkpoint holds never need this; it is the path for
//! logs written before checkpoints existed or damaged by hand). Producer state then comes from
//! the active segment's `.producers` snapshot, or is rebuilt from every sealed segment.
//!
//! Nothing past the recovery point is assumed durable: the durable offset starts there and the
//! next flush fsyncs the rest.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use crate::active_index::ActiveIndex;
use crate::batch::{BatchHeader, HEADER_LEN};
use crate::checkpoint::{Checkpoint, Loaded};
use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::files::{self, CLEANED_EXT, INDEX_EXT, LOG_EXT, PRODUCERS_EXT, TIME_INDEX_EXT, TMP_EXT};
use crate::lock::DirLock;
use crate::log::Writer;
use crate::producer::ProducerTable;
use crate::scan::{Carried, TailFault, scan_segment};
use crate::seal::SealJob;
use crate::segment::{ActiveSegment, SealedSegment};
use crate::stats::Stats;
use crate::sync::SegmentSync;
use crate::txn::AbortedTxn;
use crate::txn::index::{self as txn_index, TxnState};
use crate::vfs::{FileHandle, Fs, OpenMode, VFile};

/// What open hands the log.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub lock: DirLock,
    pub writer: Writer,
    /// Every segment but the active one, oldest first.
    pub sealed: Vec<Arc<SealedSegment>>,
    /// Seals for the sealed segments checked here (not known to be fsynced).
    pub jobs: Vec<SealJob>,
    pub stats: Stats,
    /// Offsets below this are known to be on stable storage.
    pub durable: u64,
    /// The checkpoint on disk, as [`Checkpoint::order`].
    pub recovery_point: (u64, u64),
    /// Aborted transactions: the index's entries below where checking started, and those
    /// the check found after it.
    pub txns: TxnState,
}

/// Where checking starts, and the log's state there.
#[derive(Debug)]
struct Start {
    /// Index in the segment list of the first segment to check.
    first: usize,
    position: u64,
    /// The index of that segment, as of `position`.
    index: ActiveIndex,
    producers: ProducerTable,
    first_timestamp: Option<i64>,
    durable: u64,
    recovery_point: (u64, u64),
    /// No usable checkpoint: the whole active segment is checked.
    full_scan: bool,
}

pub(crate) fn open(fs: &Fs, dir: &Path, config: &LogConfig) -> Result<Recovered> {
    config.validate()?;
    files::create_dir_durable_on(&**fs, dir)?;
    let lock = DirLock::acquire_on(&**fs, dir)?;
    let mut bases = scan_directory(fs, dir)?;
    let fresh = bases.is_empty();
    if fresh {
        let path = files::segment_file(dir, 0, LOG_EXT);
        fs.open(&path, OpenMode::CREATE_EMPTY).map_err(Error::io("create", &path))?;
        ActiveIndex::create(&**fs, &path, 0)?;
        // Also makes the new files' directory entries durable.
        Checkpoint::segment_start(0, ProducerTable::default().encode()).write(&**fs, dir)?;
        bases.push(0);
    }
    let interval = config.index_interval_bytes;
    let (start, mut sealed) = match checkpointed_start(fs, dir, &bases, fresh)? {
        Some(start) => {
            let sealed = open_sealed(fs, dir, &bases[..start.first], interval)?;
            (start, sealed)
        }
        None => {
            let sealed = open_sealed(fs, dir, &bases[..bases.len() - 1], interval)?;
            (fallback_start(fs, dir, &bases, &sealed)?, sealed)
        }
    };
    let (durable, recovery_point) = (start.durable, start.recovery_point);
    let start_full = start.full_scan;
    let stats = Stats::default();
    stats.recovery_full_scans.store(u64::from(start.full_scan), Ordering::Relaxed);
    // Entries at or past where checking starts are found again by the check.
    let (aborted, whole) = aborted_below(fs, dir, &bases[..=start.first], &start)?;
    let kept = aborted.len();
    let mut check =
        Check { fs, dir, bases: bases.clone(), interval, stats: &stats, jobs: Vec::new(), aborted };
    let writer = check.run(start, &mut sealed)?;
    let (jobs, aborted) = (check.jobs, check.aborted);
    let unchanged = whole && aborted.len() == kept;
    let txns = TxnState::open(fs, dir, aborted, unchanged, writer.producers.first_unstable())?;
    tracing::debug!(log = %dir.display(), sealed = sealed.len(), unfinished = jobs.len(), durable, kept, full_scan = start_full, "opened log");
    Ok(Recovered { lock, writer, sealed, jobs, stats, durable, recovery_point, txns })
}

/// The aborted transactions below where checking starts: the index's, or, if it is damaged,
/// those the log's batches say (with whatever whole entries the file still has), and whether
/// the file holds exactly them.
fn aborted_below(
    fs: &Fs,
    dir: &Path,
    bases: &[u64],
    start: &Start,
) -> Result<(Vec<AbortedTxn>, bool)> {
    let loaded = txn_index::load(fs, dir, start.durable)?;
    let Some(at) = loaded.damage else { return Ok((loaded.entries, loaded.whole)) };
    tracing::warn!(file = %dir.join(txn_index::FILE_NAME).display(), position = at, "aborted-transaction index damaged; rebuilding it from the log");
    let rebuilt = crate::txn::replay::aborted_below(fs, dir, bases, start.position, start.durable)?;
    let mut by_marker: std::collections::BTreeMap<u64, AbortedTxn> =
        loaded.entries.into_iter().map(|e| (e.last_offset, e)).collect();
    by_marker.extend(rebuilt.into_iter().map(|e| (e.last_offset, e)));
    Ok((by_marker.into_values().collect(), false))
}

fn open_sealed(
    fs: &Fs,
    dir: &Path,
    bases: &[u64],
    interval: u32,
) -> Result<Vec<Arc<SealedSegment>>> {
    bases
        .iter()
        .map(|&base| {
            let path = files::segment_file(dir, base, LOG_EXT);
            let len = fs.file_len(&path).map_err(Error::io("stat", &path))?;
            Ok(Arc::new(SealedSegment::open(fs, base, path, len, interval)?))
        })
        .collect()
}

/// The start the checkpoint gives, or `None` (with a warning saying why) if there is no usable
/// one.
fn checkpointed_start(fs: &Fs, dir: &Path, bases: &[u64], fresh: bool) -> Result<Option<Start>> {
    let reason = match Checkpoint::load(&**fs, dir)? {
        Loaded::Found(checkpoint) => match start_at(fs, dir, bases, &checkpoint)? {
            Ok(start) => return Ok(Some(start)),
            Err(reason) => reason,
        },
        Loaded::Invalid(reason) => reason,
        Loaded::Missing if fresh => return Ok(None),
        Loaded::Missing => "there is none",
    };
    tracing::warn!(
        log = %dir.display(),
        reason,
        "recovery point checkpoint unusable; checking the whole active segment"
    );
    Ok(None)
}

/// Validates `checkpoint` against the files it names; the reason it does not hold otherwise.
fn start_at(
    fs: &Fs,
    dir: &Path,
    bases: &[u64],
    checkpoint: &Checkpoint,
) -> Result<Result<Start, &'static str>> {
    let base = checkpoint.segment_base;
    let Ok(first) = bases.binary_search(&base) else {
        return Ok(Err("its segment is gone"));
    };
    let path = files::segment_file(dir, base, LOG_EXT);
    let len = fs.file_len(&path).map_err(Error::io("stat", &path))?;
    let offset = checkpoint.offset();
    if checkpoint.position > len {
        return Ok(Err("it points past the end of its segment"));
    }
    if offset < base || offset - base > u64::from(u32::MAX) {
        return Ok(Err("its offset is outside its segment"));
    }
    // A position past the start is the end of a batch, and the first batch always has an
    // index entry.
    if (checkpoint.position == 0) != (checkpoint.index.offset_entries == 0)
        || (checkpoint.position == 0) != (offset == base)
    {
        return Ok(Err("its position, offset and index entries disagree"));
    }
    let Ok(Some(producers)) = ProducerTable::from_snapshot(&checkpoint.producers) else {
        return Ok(Err("its producer state is unreadable"));
    };
    let Some(index) = ActiveIndex::resume(&**fs, &path, base, &checkpoint.index)? else {
        return Ok(Err("its segment's index files do not hold the entries it counts"));
    };
    if let Some((relative, position)) = index.last_entry()?
        && !batch_is_at(
            fs,
            &path,
            u64::from(position),
            base + u64::from(relative),
            checkpoint.position,
        )?
    {
        return Ok(Err("its segment does not hold the batches its index names"));
    }
    Ok(Ok(Start {
        first,
        position: checkpoint.position,
        index,
        producers,
        first_timestamp: checkpoint.first_timestamp,
        durable: offset,
        recovery_point: checkpoint.order(),
        full_scan: false,
    }))
}

/// Whether the segment at `path` has a batch with base offset `offset` at `position`, ending by
/// `end`: the checkpointed index describes this file, not another.
fn batch_is_at(fs: &Fs, path: &Path, position: u64, offset: u64, end: u64) -> Result<bool> {
    if position + HEADER_LEN as u64 > end {
        return Ok(false);
    }
    let file = fs.open(path, OpenMode::READ).map_err(Error::io("open", path))?;
    let mut head = [0u8; HEADER_LEN];
    file.read_exact_at(&mut head, position).map_err(Error::io("read", path))?;
    Ok(BatchHeader::parse(&head)
        .is_ok_and(|h| h.base_offset == offset && position + u64::from(h.batch_len) <= end))
}

/// Without a checkpoint: check the whole active segment, with the producer state of its
/// snapshot or rebuilt from the sealed segments, which are trusted as before checkpoints. A
/// checkpoint at the active segment's start is written, so the next open need not do this.
fn fallback_start(
    fs: &Fs,
    dir: &Path,
    bases: &[u64],
    sealed: &[Arc<SealedSegment>],
) -> Result<Start> {
    let first = bases.len() - 1;
    let base = bases[first];
    let path = files::segment_file(dir, base, LOG_EXT);
    let snapshot = files::segment_file(dir, base, PRODUCERS_EXT);
    let producers = match ProducerTable::load(&**fs, &snapshot)? {
        Some(table) => table,
        None => rebuild_producers(sealed)?,
    };
    let index = ActiveIndex::create(&**fs, &path, base)?;
    let checkpoint = Checkpoint::segment_start(base, producers.encode());
    if let Err(e) = checkpoint.write(&**fs, dir) {
        tracing::warn!(log = %dir.display(), error = %e, "could not write the recovery point");
    }
    Ok(Start {
        first,
        position: 0,
        index,
        producers,
        first_timestamp: None,
        durable: base,
        recovery_point: checkpoint.order(),
        full_scan: true,
    })
}

/// A segment checked whole, not the last: sealed, but not known to be fsynced.
struct Unfinished {
    base: u64,
    path: PathBuf,
    file: VFile,
    len: u64,
    /// Bytes known durable (those below the recovery point).
    synced: u64,
    index: ActiveIndex,
}

/// The check of every segment from the start on.
struct Check<'a> {
    fs: &'a Fs,
    dir: &'a Path,
    bases: Vec<u64>,
    interval: u32,
    stats: &'a Stats,
    jobs: Vec<SealJob>,
    /// Aborted transactions, to which the check adds those it finds.
    aborted: Vec<AbortedTxn>,
}

impl Check<'_> {
    /// Checks from `start` to the end, appending the sealed segments it passes to `sealed`, and
    /// returns the writer for the segment it stops in.
    fn run(&mut self, start: Start, sealed: &mut Vec<Arc<SealedSegment>>) -> Result<Writer> {
        let Start {
            mut first, mut position, mut index, mut producers, mut first_timestamp, ..
        } = start;
        loop {
            let base = self.bases[first];
            let path = files::segment_file(self.dir, base, LOG_EXT);
            let file =
                self.fs.open(&path, OpenMode::READ_WRITE).map_err(Error::io("open", &path))?;
            let carried = Carried {
                index: &mut index,
                producers: &mut producers,
                first_timestamp: &mut first_timestamp,
                aborted: &mut self.aborted,
            };
            let scan = scan_segment(&*file, &path, position, self.interval, carried)?;
            self.stats
                .recovery_scanned_bytes
                .fetch_add(scan.file_len - position, Ordering::Relaxed);
            let next = self.next_base(first, index.next_offset())?;
            let fault = match (scan.fault, next) {
                (Some(fault), _) => Some(fault),
                (None, Some(found)) if found != index.next_offset() => {
                    Some(TailFault::SegmentGap { expected: index.next_offset(), found })
                }
                (None, _) => None,
            };
            if let Some(fault) = &fault {
                tracing::debug!(segment = %path.display(), position = scan.valid_len, reason = %fault, "the check stopped");
                self.cut(&*file, &path, scan.valid_len, scan.file_len, fault)?;
                self.delete_after(first)?;
            }
            let synced = position;
            if fault.is_some() || next.is_none() {
                // Appends write at the file cursor (one writev per batch): it must sit at the
                // recovered end.
                file.seek_to(scan.valid_len).map_err(Error::io("seek", &path))?;
                let active = ActiveSegment::new(base, path, file, scan.valid_len, synced, index)?;
                return Ok(Writer {
                    active: Arc::new(active),
                    position: scan.valid_len,
                    first_timestamp,
                    producers,
                });
            }
            // A sealed segment whose seal had not finished: finish it now, like a roll would.
            let next_base = index.next_offset();
            let next_path = files::segment_file(self.dir, next_base, LOG_EXT);
            let next_index = ActiveIndex::create(&**self.fs, &next_path, next_base)?;
            let unfinished = Unfinished {
                base,
                path,
                file,
                len: scan.valid_len,
                synced,
                index: std::mem::replace(&mut index, next_index),
            };
            sealed.push(self.seal_later(unfinished, &producers)?);
            first += 1;
            position = 0;
            first_timestamp = None;
        }
    }

    /// Publishes a checked segment as unfinished and queues its seal, as a roll does.
    fn seal_later(
        &mut self,
        u: Unfinished,
        producers: &ProducerTable,
    ) -> Result<Arc<SealedSegment>> {
        let index = Arc::new(RwLock::new(u.index));
        let handle = u.file.try_clone().map_err(Error::io("reopen", &u.path))?;
        let segment = Arc::new(SealedSegment::unfinished(
            self.fs,
            u.base,
            u.path.clone(),
            u.file,
            u.len,
            self.interval,
            index.clone(),
        ));
        let next_base = index.read().unwrap_or_else(|p| p.into_inner()).next_offset();
        self.jobs.push(SealJob {
            segment: segment.clone(),
            sync: Arc::new(SegmentSync::new(handle, u.path, u.synced)),
            index,
            len: u.len,
            next_base,
            producers: producers.encode(),
        });
        Ok(segment)
    }

    /// Cuts a torn tail off the segment at `path`.
    fn cut(
        &self,
        file: &dyn FileHandle,
        path: &Path,
        at: u64,
        len: u64,
        fault: &TailFault,
    ) -> Result<()> {
        if at == len {
            return Ok(());
        }
        tracing::warn!(
            segment = %path.display(),
            position = at,
            truncated_bytes = len - at,
            reason = %fault,
            "truncating torn tail"
        );
        file.set_len(at).map_err(Error::io("truncate", path))?;
        file.sync_all().map_err(Error::io("fsync", path))?;
        self.stats.recovery_truncated_bytes.fetch_add(len - at, Ordering::Relaxed);
        Ok(())
    }

    /// The base of the segment after the one at `index`, which ends at `expected`. An empty
    /// segment starting before that is what a roll that failed (or crashed) after creating its
    /// file left: it holds nothing, and is removed rather than taken for a gap (which would cut
    /// every segment after it, acknowledged ones included).
    fn next_base(&mut self, index: usize, expected: u64) -> Result<Option<u64>> {
        while let Some(&found) = self.bases.get(index + 1) {
            let path = files::segment_file(self.dir, found, LOG_EXT);
            let empty = self.fs.file_len(&path).map_err(Error::io("stat", &path))? == 0;
            if found >= expected || !empty {
                return Ok(Some(found));
            }
            tracing::warn!(segment = %path.display(), expected, "removing the empty segment of a failed roll");
            for path in segment_files(self.dir, found) {
                match self.fs.remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("delete", &path)(e)),
                }
            }
            files::sync_dir(&**self.fs, self.dir)?;
            self.bases.remove(index + 1);
        }
        Ok(None)
    }

    /// Deletes every segment after the one at `index` (its tail was torn, so none of theirs was
    /// ever durable), with their index files and producer snapshots.
    fn delete_after(&self, index: usize) -> Result<()> {
        let doomed = &self.bases[index + 1..];
        if doomed.is_empty() {
            return Ok(());
        }
        let mut bytes = 0;
        for &base in doomed {
            let log = files::segment_file(self.dir, base, LOG_EXT);
            bytes += self.fs.file_len(&log).unwrap_or(0);
            let producers = files::segment_file(self.dir, base, PRODUCERS_EXT);
            for path in segment_files(self.dir, base).iter().chain([&producers]) {
                match self.fs.remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("delete", path)(e)),
                }
            }
        }
        files::sync_dir(&**self.fs, self.dir)?;
        tracing::warn!(
            log = %self.dir.display(),
            segments = doomed.len(),
            bytes,
            "deleted the segments after a torn one"
        );
        self.stats.recovery_truncated_bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }
}

/// Lists segment base offsets in order, and removes what a crash can leave behind: temporary
/// files, unfinished compaction output, and index files whose log is gone.
fn scan_directory(fs: &Fs, dir: &Path) -> Result<Vec<u64>> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for name in fs.read_dir(dir).map_err(Error::io("list", dir))? {
        let path = dir.join(&name);
        if name.ends_with(&format!(".{TMP_EXT}")) || name.ends_with(&format!(".{CLEANED_EXT}")) {
            fs.remove_file(&path).map_err(Error::io("remove leftover", &path))?;
            continue;
        }
        match files::parse_segment_name(&name) {
            Some((base, LOG_EXT)) => logs.push(base),
            Some((base, INDEX_EXT | TIME_INDEX_EXT)) => indexes.push((base, path)),
            _ => {}
        }
    }
    logs.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            fs.remove_file(&path).map_err(Error::io("remove orphan index", &path))?;
        }
    }
    Ok(logs)
}

/// Rebuilds producer state from every batch header of the sealed segments (only when the
/// snapshot is missing or damaged).
fn rebuild_producers(sealed: &[Arc<SealedSegment>]) -> Result<ProducerTable> {
    let mut table = ProducerTable::default();
    if sealed.is_empty() {
        return Ok(table);
    }
    tracing::warn!(segments = sealed.len(), "producer snapshot missing; rebuilding from the log");
    for segment in sealed {
        // A damaged segment must not stop the log from opening: take what precedes the damage
        // (reads that reach it report it).
        let (headers, fault) = segment.headers();
        for header in headers.iter().filter(|h| h.is_idempotent()) {
            // Markers here end transactions; which were aborted is the index's to remember.
            table.record(header);
        }
        if let Some(e) = fault {
            tracing::warn!(error = %e, "producer state rebuilt only up to a damaged batch");
        }
    }
    Ok(table)
}

/// Paths of every file that belongs to the segment at `base`.
pub(crate) fn segment_files(dir: &Path, base: u64) -> [PathBuf; 3] {
    [
        files::segment_file(dir, base, LOG_EXT),
        files::segment_file(dir, base, INDEX_EXT),
        files::segment_file(dir, base, TIME_INDEX_EXT),
    ]
}
