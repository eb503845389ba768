//! Retention: deleting the oldest whole segments by age and by total size.
//!
//! Only a prefix of segments is ever deleted, so the log stays contiguous from its new start
//! offset. Age is judged by a segment's newest record timestamp against `now_ms`, which the
//! caller passes in (the broker passes the wall clock; tests pass what they need). If the active
//! segment itself has expired it is sealed first, as Kafka does, so an idle topic still empties.
//! A pass waits for the background seals queued before it, and never deletes a segment the
//! sealer or an open after a crash could still read (`Inner::may_clean`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::config::Cleanup;
use crate::error::{Error, Result};
use crate::log::{Log, Segments};
use crate::recovery::segment_files;
use crate::segment::SealedSegment;

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    /// The log start offset after the pass.
    pub start_offset: u64,
}

impl Log {
    /// Deletes sealed segments past `retention_ms` (by their newest record) or beyond
    /// `retention_bytes` (oldest first, while the rest still exceeds the limit). A no-op unless
    /// the cleanup policy is [`Cleanup::Delete`].
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport> {
        let inner = &self.inner;
        let _maintenance = inner.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let config = &inner.config;
        if config.cleanup != Cleanup::Delete {
            return Ok(RetentionReport { start_offset: self.start_offset(), ..Default::default() });
        }
        let cutoff = config.retention_ms.map(|ms| now_ms.saturating_sub(ms));
        if let Some(cutoff) = cutoff {
            self.roll_if_expired(cutoff)?;
        }
        // Segments rolled so far, by this pass or by appends, become deletable once sealed.
        inner.sealer.wait_for_queued();

        let segments = inner.segments();
        let mut total: u64 = segments.sealed.iter().map(|s| s.len).sum::<u64>()
            + segments.active.visible_len.load(Ordering::Acquire);
        let mut doomed = 0;
        for segment in &segments.sealed {
            if !inner.may_clean(segment) {
                break;
            }
            let expired = match cutoff {
                Some(cutoff) => segment.index(&inner.stats)?.max_timestamp() < cutoff,
                None => false,
            };
            let oversized =
                config.retention_bytes.is_some_and(|limit| total - segment.len >= limit);
            if !(expired || oversized) {
                break;
            }
            total -= segment.len;
            doomed += 1;
        }
        if doomed == 0 {
            return Ok(RetentionReport { start_offset: self.start_offset(), ..Default::default() });
        }
        let deleted = self.drop_prefix(doomed)?;
        let bytes_deleted = deleted.iter().map(|s| s.len).sum();
        for segment in &deleted {
            for path in segment_files(&inner.dir, segment.base_offset) {
                match inner.fs.remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("delete", &path)(e)),
                }
            }
        }
        crate::files::sync_dir(&*inner.fs, &inner.dir)?;
        let start_offset = self.start_offset();
        // Aborted transactions whose marker went with the segments are of no use to anyone —
        // once the deletions are durable: trimmed before, a power loss could bring segments
        // back whose aborted transactions the index no longer names.
        if let Err(e) = inner.txns.trim(start_offset) {
            tracing::warn!(log = %inner.dir.display(), error = %e, "could not trim the aborted-transaction index; retried at the next pass");
        }
        tracing::info!(log = %inner.dir.display(), segments = deleted.len(), bytes_deleted, start_offset, "retention deleted segments");
        Ok(RetentionReport { segments_deleted: deleted.len(), bytes_deleted, start_offset })
    }

    /// Seals the active segment if it holds records and all of them are older than `cutoff`.
    fn roll_if_expired(&self, cutoff: i64) -> Result<()> {
        let inner = &self.inner;
        let mut writer = inner.lock_writer()?;
        let expired = writer.position > 0 && writer.active.max_timestamp() < cutoff;
        if expired {
            inner.roll(&mut writer)?;
        }
        Ok(())
    }

    /// Removes the first `count` sealed segments from the reader-visible list and moves the
    /// start offset; returns them for deletion. Readers that already hold one keep reading it.
    fn drop_prefix(&self, count: usize) -> Result<Vec<Arc<SealedSegment>>> {
        let inner = &self.inner;
        // The writer lock orders this against a concurrent roll publishing a new list.
        let _writer = inner.lock_writer()?;
        let segments = inner.segments();
        let deleted = segments.sealed[..count].to_vec();
        let sealed = segments.sealed[count..].to_vec();
        let start = sealed.first().map_or(segments.active.base_offset, |s| s.base_offset);
        inner.set_segments(Segments { sealed, active: segments.active.clone() });
        inner.start_offset.store(start, Ordering::Release);
        Ok(deleted)
    }
}
