//! Sealing in the background, with the sealer held: what a roll leaves pending, what a flush
//! must do about it, and what a crash with a seal pending leaves for the next open.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::batch::Batches;
use crate::config::{Flush, LogConfig};
use crate::error::Error;
use crate::files::{self, LOG_EXT};
use crate::index::SealedIndex;
use crate::{BatchBuilder, Log, Record};

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig { segment_bytes, index_interval_bytes: 256, flush: Flush::Os, ..LogConfig::default() }
}

/// A batch of five ~100-byte records (about 600 bytes).
fn batch(i: u64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for r in 0..5u64 {
        let value = vec![b'a' + ((i + r) % 26) as u8; 100];
        let key = format!("k{i}-{r}");
        b.push(Record {
            timestamp: (i * 10 + r) as i64,
            key: Some(key.as_bytes()),
            value: Some(&value),
            headers: &[],
        });
    }
    b.finish()
}

/// Every batch of the log as stored, in order.
fn stored(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut next = log.start_offset();
    while next < log.next_offset() {
        let bytes = log.read(next, 1 << 20).unwrap();
        for b in Batches::new(&bytes) {
            let b = b.unwrap();
            out.push(b.as_bytes().to_vec());
            next = b.last_offset() + 1;
        }
    }
    out
}

/// What a crash leaves (the files as the page cache holds them), in a new directory.
fn copy_files(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != files::LOCK_FILE) {
            fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

fn log_len(dir: &Path, base: u64) -> u64 {
    fs::metadata(files::segment_file(dir, base, LOG_EXT)).unwrap().len()
}

/// Appends batches until `n` segments exist (the last active), then `extra` more.
/// Appends `n` batches numbered from `*from` on.
fn append_n(log: &Log, n: u64, from: &mut u64) {
    for _ in 0..n {
        log.append(&batch(*from)).unwrap();
        *from += 1;
    }
}

fn fill_to_segments(log: &Log, n: usize, extra: u64, from: &mut u64) {
    while log.segment_count() < n {
        log.append(&batch(*from)).unwrap();
        *from += 1;
    }
    append_n(log, extra, from);
}

#[test]
fn a_roll_fsyncs_nothing_and_appends_continue_while_the_seal_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config(4096)).unwrap();
    log.inner.sealer.pause(true);
    let mut i = 0;
    fill_to_segments(&log, 4, 3, &mut i);
    assert_eq!(log.stats().rolls, 3);
    assert_eq!(log.stats().fsyncs, 0, "a roll fsynced on the append path");
    assert_eq!(log.inner.sealer.pending().len(), 3);
    // Readers find every record in the unfinished segments.
    assert_eq!(stored(&log).len() as u64, i);
    assert!(log.inner.segments().sealed.iter().all(|s| !s.is_finished()));
    assert_eq!(log.durable_offset(), 0);
    log.inner.sealer.pause(false);
}

#[test]
fn sync_through_fsyncs_the_pending_sealed_segment_before_reporting_offsets_durable() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config(4096)).unwrap();
    log.inner.sealer.pause(true);
    let mut i = 0;
    fill_to_segments(&log, 2, 2, &mut i);
    let end = log.next_offset();
    let pending = log.inner.sealer.pending();
    let job = pending.first().unwrap();
    assert!(!job.sync.is_synced(job.len));
    // Nothing forces the pending seal, so nothing becomes durable.
    assert!(!log.wait_durable(end, Duration::from_millis(20)));
    assert_eq!(log.durable_offset(), 0);

    log.sync_through(end).unwrap();
    assert!(job.sync.is_synced(job.len), "the sealed segment was not fsynced first");
    assert_eq!(log.durable_offset(), end);
    assert_eq!(log.inner.sealer.pending().len(), 1, "the seal itself is still pending");

    log.inner.sealer.pause(false);
    log.inner.sealer.wait_for_queued();
    assert!(log.inner.sealer.pending().is_empty());
}

#[test]
fn the_sealer_finishes_segments_and_their_indexes_leave_the_heap() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config(4096)).unwrap();
    let mut i = 0;
    fill_to_segments(&log, 5, 1, &mut i);
    log.inner.sealer.wait_for_queued();
    let segments = log.inner.segments();
    assert_eq!(segments.sealed.len(), 4);
    for s in &segments.sealed {
        assert!(s.is_finished(), "segment {} still unfinished", s.base_offset);
        assert!(SealedIndex::load(&crate::vfs::OsFs, &s.path, s.base_offset, s.len).is_some());
    }
    // Sealed segments are durable up to the active one without any flush.
    assert!(log.wait_durable(segments.active.base_offset, Duration::from_secs(10)));
    // Lookups load the index files.
    let before = log.stats().index_loads;
    assert_eq!(stored(&log).len() as u64, i);
    assert_eq!(log.stats().index_loads - before, 4);
    assert_eq!(log.stats().index_rebuilds, 0);
}

#[test]
fn a_crash_with_a_seal_pending_checks_the_unsynced_segment_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config(64 << 10)).unwrap();
    log.inner.sealer.pause(true);
    let mut i = 0;
    append_n(&log, 20, &mut i);
    log.checkpoint().unwrap();
    let checkpointed = log_len(dir.path(), 0);
    append_n(&log, 20, &mut i);
    log.roll().unwrap();
    let second = log.next_offset();
    append_n(&log, 10, &mut i);
    let before = stored(&log);
    copy_files(dir.path(), crashed.path());
    log.inner.sealer.pause(false);
    drop(log);

    let log = Log::open(crashed.path(), config(64 << 10)).unwrap();
    assert_eq!(log.stats().recovery_full_scans, 0);
    let expect = log_len(crashed.path(), 0) - checkpointed + log_len(crashed.path(), second);
    assert_eq!(log.stats().recovery_scanned_bytes, expect, "scanned more or less than the tail");
    assert_eq!(log.stats().recovery_truncated_bytes, 0);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(stored(&log), before);
    // Below the recovery point only; the unsynced segment is sealed again in the background.
    assert!(log.durable_offset() < second);
    assert!(log.wait_durable(second, Duration::from_secs(10)));
    log.inner.sealer.wait_for_queued();
    let first = &log.inner.segments().sealed[0];
    assert!(first.is_finished());
    assert!(SealedIndex::load(&crate::vfs::OsFs, &first.path, 0, first.len).is_some());
    let next = log.next_offset();
    assert_eq!(log.append(&batch(i)).unwrap().base_offset, next);
}

#[test]
fn a_torn_unsynced_sealed_segment_is_cut_and_the_segments_after_it_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config(64 << 10)).unwrap();
    log.inner.sealer.pause(true);
    let mut i = 0;
    append_n(&log, 10, &mut i);
    log.checkpoint().unwrap();
    append_n(&log, 10, &mut i);
    log.roll().unwrap();
    let second = log.next_offset();
    append_n(&log, 5, &mut i);
    let before = stored(&log);
    copy_files(dir.path(), crashed.path());
    log.inner.sealer.pause(false);
    drop(log);

    // The first segment's last batch lost its second half: it was never fsynced.
    let first = files::segment_file(crashed.path(), 0, LOG_EXT);
    let len = fs::metadata(&first).unwrap().len();
    let last_batch = before[19].len() as u64;
    let cut_to = len - last_batch / 2;
    fs::OpenOptions::new().write(true).open(&first).unwrap().set_len(cut_to).unwrap();
    let second_len = log_len(crashed.path(), second);

    let log = Log::open(crashed.path(), config(64 << 10)).unwrap();
    assert_eq!(log.stats().recovery_full_scans, 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.stats().recovery_truncated_bytes, (cut_to - (len - last_batch)) + second_len);
    assert_eq!(stored(&log), before[..19].to_vec(), "not every record below the tear survived");
    assert!(!files::segment_file(crashed.path(), second, LOG_EXT).exists());
    assert_eq!(log.append(&batch(i)).unwrap().base_offset, 19 * 5);
}

#[test]
fn a_failed_background_fsync_poisons_the_log_and_fails_durable_waits() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config(4096)).unwrap();
    log.inner.sealer.pause(true);
    let mut i = 0;
    fill_to_segments(&log, 2, 1, &mut i);
    let end = log.next_offset();
    log.inner.sealer.pending()[0].sync.fail_next.store(true, std::sync::atomic::Ordering::Release);
    log.inner.sealer.pause(false);
    log.inner.sealer.wait_for_queued();

    assert!(matches!(log.append(&batch(i)), Err(Error::Poisoned { op: "fsync", .. })));
    assert!(matches!(log.sync_through(end), Err(Error::Poisoned { .. })));
    // Fails at once rather than timing out.
    assert!(!log.wait_durable(end, Duration::from_secs(60)));
    assert_eq!(log.durable_offset(), 0);
    assert!(log.checkpoint().is_err());
}
