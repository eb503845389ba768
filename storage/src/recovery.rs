//! Opening a log: the directory scan and the recovery of the active segment.
//!
//! Sealed segments were fsynced before they were sealed, so they are opened by name and size
//! alone; their indexes load on first use. Open time therefore does not grow with the number of
//! sealed segments. The active segment (the last one) is read batch by batch: each header
//! checksum, length, body checksum and offset is checked, and the file is cut at the first batch
//! that fails — a torn tail from a crash mid-write — with a log line saying how much was cut.
//! A batch whose header checksum holds but whose version, compression or attributes this build
//! does not know was written whole by another build: open refuses (`UnreadableBatch`) and cuts
//! nothing.
//! Producer state is loaded from the snapshot taken when the active segment was started and the
//! active segment's batches are replayed over it.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::batch::{BatchError, BatchHeader, HEADER_LEN, header};
use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::files::{self, CLEANED_EXT, INDEX_EXT, LOG_EXT, PRODUCERS_EXT, TIME_INDEX_EXT, TMP_EXT};
use crate::index::IndexBuilder;
use crate::lock::DirLock;
use crate::log::{Inner, Writer};
use crate::producer::ProducerTable;
use crate::segment::{ActiveSegment, SealedSegment};
use crate::stats::Stats;

/// Bytes read at a time while checking the active segment.
const SCAN_CHUNK_BYTES: u64 = 4 << 20;

pub(crate) fn open(dir: &Path, config: LogConfig) -> Result<Inner> {
    config.validate()?;
    fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    let lock = DirLock::acquire(dir)?;
    let mut bases = scan_directory(dir)?;
    if bases.is_empty() {
        File::create(files::segment_file(dir, 0, LOG_EXT)).map_err(Error::io("create", dir))?;
        files::sync_dir(dir)?;
        bases.push(0);
    }
    let stats = Stats::default();
    let interval = config.index_interval_bytes;
    let active_base = bases.pop().unwrap_or_default();
    let mut sealed = Vec::with_capacity(bases.len());
    for base in bases {
        let path = files::segment_file(dir, base, LOG_EXT);
        let len = fs::metadata(&path).map_err(Error::io("stat", &path))?.len();
        sealed.push(Arc::new(SealedSegment::open(base, path, len, interval)?));
    }

    let path = files::segment_file(dir, active_base, LOG_EXT);
    let file =
        File::options().read(true).write(true).open(&path).map_err(Error::io("open", &path))?;
    let scan = scan_active(&file, &path, active_base, interval)?;
    // Appends write at the file cursor (one writev per batch): it must sit at the recovered end.
    (&file).seek(SeekFrom::Start(scan.valid_len)).map_err(Error::io("seek", &path))?;
    stats.recovery_truncated_bytes.store(scan.truncated_bytes, Ordering::Relaxed);

    let mut producers =
        match ProducerTable::load(&files::segment_file(dir, active_base, PRODUCERS_EXT))? {
            Some(table) => table,
            None => rebuild_producers(&sealed)?,
        };
    for header in &scan.idempotent {
        producers.record(header);
    }
    let first_timestamp = scan.first_timestamp;
    let active = Arc::new(ActiveSegment::new(active_base, path, file, scan.valid_len, scan.index));
    let writer = Writer { active, position: scan.valid_len, first_timestamp, producers };
    tracing::debug!(log = %dir.display(), sealed = sealed.len(), "opened log");
    Ok(Inner::new(dir.to_path_buf(), config, lock, writer, sealed, stats))
}

/// Lists segment base offsets in order, and removes what a crash can leave behind: temporary
/// files, unfinished compaction output, and index files whose log is gone.
fn scan_directory(dir: &Path) -> Result<Vec<u64>> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io("list", dir))? {
        let entry = entry.map_err(Error::io("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.ends_with(&format!(".{TMP_EXT}")) || name.ends_with(&format!(".{CLEANED_EXT}")) {
            fs::remove_file(&path).map_err(Error::io("remove leftover", &path))?;
            continue;
        }
        match files::parse_segment_name(name) {
            Some((base, LOG_EXT)) => logs.push(base),
            Some((base, INDEX_EXT | TIME_INDEX_EXT)) => indexes.push((base, path)),
            _ => {}
        }
    }
    logs.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            fs::remove_file(&path).map_err(Error::io("remove orphan index", &path))?;
        }
    }
    Ok(logs)
}

struct ActiveScan {
    valid_len: u64,
    truncated_bytes: u64,
    index: IndexBuilder,
    idempotent: Vec<BatchHeader>,
    first_timestamp: Option<i64>,
}

/// Why the scan of the active segment stopped before the end of the file.
#[derive(Debug, thiserror::Error)]
enum TailFault {
    #[error("{0}")]
    Batch(BatchError),
    #[error("batch has base offset {found}, expected {expected}")]
    OffsetGap { expected: u64, found: u64 },
}

fn scan_active(file: &File, path: &Path, base_offset: u64, interval: u32) -> Result<ActiveScan> {
    let len = file.metadata().map_err(Error::io("stat", path))?.len();
    let mut index = IndexBuilder::new(base_offset);
    let mut idempotent = Vec::new();
    let mut first_timestamp = None;
    let mut window = Window { file, path, start: 0, buf: Vec::new() };
    let mut position = 0u64;
    let mut fault = None;
    while position < len {
        if len - position < HEADER_LEN as u64 {
            let available = len - position;
            fault = Some(TailFault::Batch(BatchError::Truncated {
                needed: HEADER_LEN as u64,
                available,
            }));
            break;
        }
        let head = window.get(position, HEADER_LEN as u64, len)?;
        let header = match BatchHeader::parse(head) {
            Ok(h) => h,
            // If the checksum holds over the length the header claims, the batch was written
            // whole: not a torn tail but a format this build cannot read. Cutting it would lose
            // acknowledged data.
            Err(
                e @ (BatchError::UnsupportedVersion { .. }
                | BatchError::UnsupportedCompression { .. }
                | BatchError::UnknownAttributes { .. }),
            ) => {
                let (claimed_len, stored_crc) = raw_len_and_crc(head);
                if claimed_len >= HEADER_LEN as u64
                    && claimed_len <= len - position
                    && window.crc_holds(position, claimed_len, stored_crc, len)?
                {
                    let path = path.to_path_buf();
                    return Err(Error::UnreadableBatch { path, position, fault: e });
                }
                fault = Some(TailFault::Batch(e));
                break;
            }
            Err(e) => {
                fault = Some(TailFault::Batch(e));
                break;
            }
        };
        if header.base_offset != index.next_offset {
            fault = Some(TailFault::OffsetGap {
                expected: index.next_offset,
                found: header.base_offset,
            });
            break;
        }
        let batch_len = u64::from(header.batch_len);
        if position + batch_len > len {
            fault = Some(TailFault::Batch(BatchError::Truncated {
                needed: batch_len,
                available: len - position,
            }));
            break;
        }
        if !window.crc_holds(position, batch_len, header.crc, len)? {
            // Recomputed for the message only; a torn tail is the common case here.
            fault = Some(TailFault::Batch(BatchError::Checksum {
                stored: header.crc,
                computed: window.crc(position, batch_len, len)?,
            }));
            break;
        }
        index.on_batch(&header, position, interval);
        first_timestamp.get_or_insert(header.max_timestamp);
        if header.is_idempotent() {
            idempotent.push(header);
        }
        position += batch_len;
    }
    let truncated_bytes = len - position;
    if let Some(fault) = fault {
        tracing::warn!(
            segment = %path.display(),
            position,
            truncated_bytes,
            reason = %fault,
            "truncating torn tail of the active segment"
        );
        file.set_len(position).map_err(Error::io("truncate", path))?;
        file.sync_all().map_err(Error::io("fsync", path))?;
    }
    Ok(ActiveScan { valid_len: position, truncated_bytes, index, idempotent, first_timestamp })
}

/// A read-ahead window over the active segment, so small batches cost no syscall each.
struct Window<'a> {
    file: &'a File,
    path: &'a Path,
    start: u64,
    buf: Vec<u8>,
}

impl Window<'_> {
    /// `len` bytes at `position`; the caller has checked they lie within the file's `file_len`.
    fn get(&mut self, position: u64, len: u64, file_len: u64) -> Result<&[u8]> {
        let have = position >= self.start && position + len <= self.start + self.buf.len() as u64;
        if !have {
            let want = len.max(SCAN_CHUNK_BYTES).min(file_len - position);
            self.buf.resize(want as usize, 0);
            self.file
                .read_exact_at(&mut self.buf, position)
                .map_err(Error::io("read", self.path))?;
            self.start = position;
        }
        let at = (position - self.start) as usize;
        Ok(&self.buf[at..at + len as usize])
    }
}

impl Window<'_> {
    /// The CRC-32C of a batch's checksummed bytes (attributes to end) at `position`, read in
    /// chunks, so a length read from a damaged header never sizes an allocation.
    fn crc(&mut self, position: u64, batch_len: u64, file_len: u64) -> Result<u32> {
        let mut crc = 0u32;
        let mut at = position + header::ATTRIBUTES as u64;
        let end = position + batch_len;
        while at < end {
            let take = (end - at).min(SCAN_CHUNK_BYTES);
            crc = crc32c::crc32c_append(crc, self.get(at, take, file_len)?);
            at += take;
        }
        Ok(crc)
    }

    fn crc_holds(
        &mut self,
        position: u64,
        batch_len: u64,
        stored: u32,
        file_len: u64,
    ) -> Result<bool> {
        Ok(self.crc(position, batch_len, file_len)? == stored)
    }
}

/// The whole-batch length and stored checksum a header claims, read without any other check.
fn raw_len_and_crc(head: &[u8]) -> (u64, u32) {
    let field = header::u32_at(head, header::BATCH_LENGTH) as i32;
    let len = u64::try_from(i64::from(field) + header::LENGTH_FIELD_END as i64).unwrap_or(0);
    (len, header::u32_at(head, header::CRC))
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
