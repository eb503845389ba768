//! Compaction (`Cleanup::Compact`): sealed segments keep only the newest record of each key.
//!
//! A pass reads every sealed segment to find the newest offset per key, then rewrites each
//! segment that holds superseded records. Offsets are preserved: a rewritten batch keeps its base
//! offset, `last_offset_delta` and each surviving record's offset delta, so a consumer sees gaps,
//! never renumbering. A tombstone (null value) that is the newest for its key is kept until its
//! timestamp is `delete_retention_ms` older than `now_ms`, so consumers that are behind still see
//! the delete. A batch whose records all go is dropped, except the last batch of each idempotent
//! producer, which stays as an empty batch so producer state can still be rebuilt from the log.
//! The active segment is never touched, nor a sealed one the background sealer or an open after
//! a crash could still read (`Inner::may_clean`); a pass first waits for the seals queued before
//! it.
//!
//! Only durable records count: what lies at or past the durable offset never supersedes
//! anything, nor is it a producer's "last batch" (a power loss could take it, and with it what
//! it replaced).
//!
//! Transactions (as Kafka's cleaner): only what lies below the last stable offset is looked at
//! (a record of an open transaction never supersedes anything, and a segment holding one is
//! not rewritten); records of aborted transactions are removed and supersede nothing;
//! control batches (markers) are always kept, whole.
//!
//! Each rewrite goes to `{base}.cleaned`, is fsynced with fresh index files (mapped on first
//! use, like a reopened log's), and is renamed over the segment; a crash leaves the old segment or the new one, and open deletes a stray
//! `.cleaned`. Readers already holding the old segment keep reading its (unlinked) file.

use std::collections::HashMap;
use std::sync::Arc;

use crate::batch::header::ATTR_COMPRESSION_MASK;
use crate::batch::{
    BatchView, HEADER_LEN, Header, HeaderFields, Record, put_record, stamp_position, write_header,
};
use crate::config::Cleanup;
use crate::error::{Error, Result};
use crate::files::{self, CLEANED_EXT, LOG_EXT};
use crate::index::IndexBuilder;
use crate::log::{Log, Segments};
use crate::segment::{SealedSegment, corrupt};
use crate::stats::Stats;
use crate::txn::{AbortedTxn, is_aborted};
use crate::vfs::OpenMode;

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactionReport {
    pub segments_rewritten: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl Log {
    /// Runs one compaction pass over the sealed segments. A no-op unless the cleanup policy is
    /// [`Cleanup::Compact`].
    pub fn compact(&self, now_ms: i64) -> Result<CompactionReport> {
        let inner = &self.inner;
        let _maintenance = inner.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = CompactionReport::default();
        if inner.config.cleanup != Cleanup::Compact {
            return Ok(report);
        }
        // Segments rolled so far become rewritable once sealed.
        inner.sealer.wait_for_queued();
        let sealed = inner.segments().sealed.clone();
        // Only durable records may supersede: one that a power loss can still take (in a
        // segment rolled since the wait, or whose fsync failed) must not remove the durable
        // record it replaces.
        let stable = self.last_stable_offset().min(self.durable_offset());
        let plan = Plan::build(&sealed, stable, inner.txns.all(), &inner.stats)?;
        let tombstone_cutoff = now_ms.saturating_sub(inner.config.delete_retention_ms);
        let below_stable =
            |s: &SealedSegment| s.index(&inner.stats).is_ok_and(|i| i.next_offset() <= stable);
        for segment in sealed.iter().filter(|s| inner.may_clean(s) && below_stable(s)) {
            let Some(rewrite) = plan.rewrite(segment, tombstone_cutoff, &inner.stats)? else {
                continue;
            };
            report.segments_rewritten += 1;
            report.records_removed += rewrite.removed;
            report.bytes_before += segment.len;
            report.bytes_after += rewrite.bytes.len() as u64;
            self.replace_segment(segment, rewrite.bytes)?;
        }
        if report.segments_rewritten > 0 {
            tracing::info!(log = %inner.dir.display(), ?report, "compacted");
        }
        Ok(report)
    }

    /// Writes `bytes` as the new content of `old`'s segment and swaps it in.
    fn replace_segment(&self, old: &SealedSegment, bytes: Vec<u8>) -> Result<()> {
        let inner = &self.inner;
        let interval = inner.config.index_interval_bytes;
        let final_path = files::segment_file(&inner.dir, old.base_offset, LOG_EXT);
        let tmp_path = files::segment_file(&inner.dir, old.base_offset, CLEANED_EXT);
        let mut index = IndexBuilder::new(old.base_offset);
        let mut position = 0u64;
        for batch in crate::batch::Batches::new(&bytes) {
            let batch = batch.map_err(|e| corrupt(&tmp_path, position, e))?;
            index.on_batch(batch.header(), position, interval);
            position += u64::from(batch.header().batch_len);
        }
        let fs = &inner.fs;
        let file =
            fs.open(&tmp_path, OpenMode::CREATE_EMPTY).map_err(Error::io("create", &tmp_path))?;
        file.write_all(&bytes).map_err(Error::io("write", &tmp_path))?;
        file.sync_all().map_err(Error::io("fsync", &tmp_path))?;
        drop(file);
        // Index files first: until the rename they describe a length the old log does not
        // have, so a crash in between makes the next open rebuild them.
        index.write_files(&**fs, &final_path, bytes.len() as u64)?;
        fs.rename(&tmp_path, &final_path).map_err(Error::io("rename", &tmp_path))?;
        files::sync_dir(&**fs, &inner.dir)?;
        let file = fs.open(&final_path, OpenMode::READ).map_err(Error::io("open", &final_path))?;
        let new = SealedSegment::from_file(
            fs,
            old.base_offset,
            final_path,
            file,
            bytes.len() as u64,
            interval,
        );
        let _writer = inner.lock_writer()?;
        let segments = inner.segments();
        let mut sealed = segments.sealed.clone();
        if let Some(slot) = sealed.iter_mut().find(|s| s.base_offset == old.base_offset) {
            *slot = Arc::new(new);
        }
        inner.set_segments(Segments { sealed, active: segments.active.clone() });
        Ok(())
    }
}

/// Which record is newest for each key, and which batch is last for each producer.
struct Plan {
    latest: HashMap<Vec<u8>, u64>,
    last_batch_of_producer: HashMap<i64, u64>,
    aborted: Vec<AbortedTxn>,
}

struct Rewrite {
    bytes: Vec<u8>,
    removed: u64,
}

impl Plan {
    fn build(
        sealed: &[Arc<SealedSegment>],
        stable: u64,
        aborted: Vec<AbortedTxn>,
        stats: &Stats,
    ) -> Result<Self> {
        let mut latest = HashMap::new();
        let mut last_batch_of_producer = HashMap::new();
        for segment in sealed {
            for (position, bytes) in segment.batches(stats)? {
                let view =
                    BatchView::parse(&bytes).map_err(|e| corrupt(&segment.path, position, e))?;
                // The last durable batch: one a power loss could take must not let the
                // batch before it go (producer state rebuilt from the log would lose it).
                if view.header().is_idempotent() && view.base_offset() < stable {
                    last_batch_of_producer.insert(view.header().producer_id, view.base_offset());
                }
                let h = view.header();
                if h.base_offset >= stable || h.is_control() || is_aborted(h, &aborted) {
                    continue;
                }
                let records = view.records().map_err(|e| corrupt(&segment.path, position, e))?;
                for record in records.iter() {
                    let record = record.map_err(|e| corrupt(&segment.path, position, e))?;
                    // Compacted logs refuse null keys on append; one found here (written before
                    // the policy changed) is kept as is.
                    if let Some(key) = record.key {
                        latest.insert(key.to_vec(), record.offset);
                    }
                }
            }
        }
        Ok(Self { latest, last_batch_of_producer, aborted })
    }

    /// The segment's new bytes, or `None` if every record in it survives.
    fn rewrite(
        &self,
        segment: &SealedSegment,
        tombstone_cutoff: i64,
        stats: &Stats,
    ) -> Result<Option<Rewrite>> {
        let mut out = Vec::with_capacity(segment.len as usize);
        let mut removed = 0u64;
        for (position, bytes) in segment.batches(stats)? {
            let view = BatchView::parse(&bytes).map_err(|e| corrupt(&segment.path, position, e))?;
            let h = *view.header();
            if h.is_control() {
                out.extend_from_slice(view.as_bytes());
                continue;
            }
            let aborted = is_aborted(&h, &self.aborted);
            let start = out.len();
            out.resize(start + HEADER_LEN, 0);
            let mut kept = 0u32;
            let mut max_timestamp = i64::MIN;
            let records = view.records().map_err(|e| corrupt(&segment.path, position, e))?;
            for record in records.iter() {
                let r = record.map_err(|e| corrupt(&segment.path, position, e))?;
                let newest = r.key.is_none_or(|k| self.latest.get(k) == Some(&r.offset));
                let expired_tombstone = r.value.is_none() && r.timestamp < tombstone_cutoff;
                if aborted || !newest || expired_tombstone {
                    removed += 1;
                    continue;
                }
                let headers: Vec<Header<'_>> = r.headers().collect();
                let record = Record {
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: &headers,
                };
                put_record(&mut out, &record, r.timestamp_delta, u64::from(r.offset_delta));
                kept += 1;
                max_timestamp = max_timestamp.max(r.timestamp);
            }
            let keep_empty = h.is_idempotent()
                && self.last_batch_of_producer.get(&h.producer_id) == Some(&h.base_offset);
            if kept == 0 && !keep_empty {
                out.truncate(start);
                continue;
            }
            let fields = HeaderFields {
                // Kept records are written uncompressed (a compressed batch is decompressed to
                // filter it); the timestamp type stays.
                attributes: h.attributes & !ATTR_COMPRESSION_MASK,
                last_offset_delta: h.last_offset_delta,
                first_timestamp: h.first_timestamp,
                max_timestamp: if kept == 0 { h.first_timestamp } else { max_timestamp },
                producer_id: h.producer_id,
                producer_epoch: h.producer_epoch,
                base_sequence: h.base_sequence,
                record_count: kept,
            };
            write_header(&mut out[start..], &fields);
            stamp_position(&mut out[start..], h.base_offset);
        }
        Ok((removed > 0).then_some(Rewrite { bytes: out, removed }))
    }
}
