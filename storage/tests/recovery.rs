//! Recovery and corruption: torn tails, flipped bytes in sealed segments, lost or garbled
//! indexes, the directory lock, that opening never scans sealed segments, and that it reads
//! only what follows the recovery point (falling back to the whole active segment when the
//! checkpoint does not hold). Crashes with a seal pending are in the crate's unit tests
//! (`seal::tests`), which can hold the sealer.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use common::{Rec, batch, read_all, small_config, values};
use eddy_storage::{BatchError, Error, Log, LogConfig};

fn segment_paths(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut paths: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    paths.sort();
    paths
}

/// Appends `batches` batches of 5 records and returns the model.
fn fill(log: &Log, batches: usize) -> Vec<(u64, Rec)> {
    let mut model = Vec::new();
    for i in 0..batches {
        let records = values(5, 1000 * i as i64, 40);
        let info = log.append(&batch(&records)).unwrap();
        for (j, r) in records.into_iter().enumerate() {
            model.push((info.base_offset + j as u64, r));
        }
    }
    model
}

#[test]
fn torn_tail_is_cut_at_the_last_whole_batch_at_every_length() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_bytes: 1 << 20, ..small_config() };
    let (model, batch_ends) = {
        let log = Log::open(dir.path(), config.clone()).unwrap();
        let model = fill(&log, 6);
        // Record where each batch ends in the file.
        let mut ends = Vec::new();
        let bytes = log.read(0, usize::MAX).unwrap();
        let mut pos = 0u64;
        for b in eddy_storage::Batches::new(&bytes) {
            let b = b.unwrap();
            pos += b.as_bytes().len() as u64;
            ends.push((pos, b.last_offset() + 1));
        }
        (model, ends)
    };
    let active = segment_paths(dir.path(), "log").pop().unwrap();
    let original = fs::read(&active).unwrap();
    // Seeded sweep over cut points, including every batch boundary and its neighbours.
    let mut cuts: Vec<u64> = batch_ends.iter().flat_map(|(e, _)| [e - 1, *e, e + 1]).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        cuts.push(x % original.len() as u64);
    }
    for cut in cuts.into_iter().filter(|c| *c <= original.len() as u64) {
        fs::write(&active, &original[..cut as usize]).unwrap();
        let log = Log::open(dir.path(), config.clone()).unwrap();
        let (whole_len, next) =
            batch_ends.iter().rev().find(|(end, _)| *end <= cut).copied().unwrap_or((0, 0));
        assert_eq!(log.next_offset(), next, "cut at {cut}");
        assert_eq!(log.stats().recovery_truncated_bytes, cut - whole_len, "cut at {cut}");
        // From the recovery point written when the log was created.
        assert_eq!(log.stats().recovery_full_scans, 0, "cut at {cut}");
        assert_eq!(fs::metadata(&active).unwrap().len(), whole_len);
        assert_eq!(read_all(&log, 0, 1000), model[..next as usize].to_vec());
        // Appends continue right after the last whole batch.
        let info = log.append(&batch(&values(2, 0, 3))).unwrap();
        assert_eq!(info.base_offset, next);
    }
}

#[test]
fn flipped_byte_in_sealed_segment_is_a_typed_error_and_earlier_records_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let model = {
        let log = Log::open(dir.path(), small_config()).unwrap();
        fill(&log, 40)
    };
    let logs = segment_paths(dir.path(), "log");
    assert!(logs.len() > 3, "expected several segments, got {}", logs.len());
    let victim = &logs[1];
    let mut bytes = fs::read(victim).unwrap();
    // Flip a byte inside the third batch's records (past its header).
    let third_batch_at = {
        let log = Log::open(dir.path(), small_config()).unwrap();
        let first_offset_in_victim: u64 =
            victim.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let chunk = log.read(first_offset_in_victim, usize::MAX).unwrap();
        let lens: Vec<usize> =
            eddy_storage::Batches::new(&chunk).map(|b| b.unwrap().as_bytes().len()).collect();
        lens[0] + lens[1]
    };
    bytes[third_batch_at + 80] ^= 0x01;
    fs::write(victim, &bytes).unwrap();

    let log = Log::open(dir.path(), small_config()).unwrap();
    let victim_base: u64 = victim.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    // Everything before the bad batch reads back.
    let good_end = victim_base + 10;
    let before: Vec<_> = read_all_until(&log, good_end);
    assert_eq!(before, model[..good_end as usize].to_vec());
    // Reading the bad batch itself is a Corrupt error naming the file and byte position.
    match log.read(good_end, 1 << 20) {
        Err(Error::Corrupt { path, position, fault: BatchError::Checksum { .. } }) => {
            assert_eq!(&path, victim);
            assert_eq!(position, third_batch_at as u64);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // The error is stable: asking again gives it again; it is never skipped.
    assert!(matches!(log.read(good_end + 2, 1 << 20), Err(Error::Corrupt { .. })));
    // Later segments are unaffected.
    let later: u64 = logs[2].file_stem().unwrap().to_str().unwrap().parse().unwrap();
    assert_eq!(read_all(&log, later, 1 << 20), model[later as usize..].to_vec());
}

fn read_all_until(log: &Log, end: u64) -> Vec<(u64, Rec)> {
    let mut out = Vec::new();
    let mut next = 0;
    while next < end {
        let bytes = log.read(next, 300).unwrap();
        for b in eddy_storage::Batches::new(&bytes) {
            let b = b.unwrap();
            for r in b.records().unwrap().iter() {
                let r = r.unwrap();
                out.push((r.offset, common::owned(&r)));
            }
            next = b.last_offset() + 1;
        }
    }
    out
}

#[test]
fn missing_or_garbled_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let model = {
        let log = Log::open(dir.path(), small_config()).unwrap();
        fill(&log, 40)
    };
    let indexes = segment_paths(dir.path(), "index");
    let times = segment_paths(dir.path(), "timeindex");
    assert!(indexes.len() >= 3);
    fs::remove_file(&indexes[0]).unwrap();
    let mut garbled = fs::read(&indexes[1]).unwrap();
    let last = garbled.len() - 1;
    garbled[last] ^= 0xff;
    fs::write(&indexes[1], garbled).unwrap();
    OpenOptions::new().write(true).open(&times[2]).unwrap().set_len(7).unwrap();

    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(read_all(&log, 0, 500), model);
    for (offset, rec) in model.iter().step_by(3) {
        let found = log.offset_for_timestamp(rec.timestamp).unwrap().unwrap();
        assert!(found.offset <= *offset, "timestamp {} found {}", rec.timestamp, found.offset);
    }
    assert_eq!(log.stats().index_rebuilds, 3);
    drop(log);
    // Rebuilt indexes were saved: the next open loads them without rebuilding.
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(read_all(&log, 0, 500), model);
    assert_eq!(log.stats().index_rebuilds, 0);
}

#[test]
fn open_does_not_read_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_bytes: 1024, ..small_config() };
    let model = {
        let log = Log::open(dir.path(), config.clone()).unwrap();
        let model = fill(&log, 300);
        assert!(log.segment_count() > 90, "segments: {}", log.segment_count());
        model
    };
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.stats().index_loads, 0, "open touched sealed segments");
    assert_eq!(log.next_offset(), model.len() as u64);
    // A read loads just the segments it needs.
    let mid = model.len() as u64 / 2;
    log.read(mid, 100).unwrap();
    assert!(log.stats().index_loads <= 2, "loads: {}", log.stats().index_loads);
}

#[test]
fn second_open_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    match Log::open(dir.path(), LogConfig::default()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(log);
    Log::open(dir.path(), LogConfig::default()).unwrap();
}

#[test]
fn leftover_temporary_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let model = {
        let log = Log::open(dir.path(), small_config()).unwrap();
        fill(&log, 10)
    };
    fs::write(dir.path().join("00000000000000000000.cleaned"), b"half a compaction").unwrap();
    fs::write(dir.path().join("00000000000000000000.index.tmp"), b"half an index").unwrap();
    fs::write(dir.path().join("00000000000000999999.index"), b"orphan").unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(read_all(&log, 0, 1 << 20), model);
    assert!(!dir.path().join("00000000000000000000.cleaned").exists());
    assert!(!dir.path().join("00000000000000000000.index.tmp").exists());
    assert!(!dir.path().join("00000000000000999999.index").exists());
}

#[test]
fn segments_roll_by_event_time_span() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_ms: 1_000, ..LogConfig::default() };
    let log = Log::open(dir.path(), config).unwrap();
    for ts in [0, 400, 999, 1_000, 1_500, 2_100, 2_200] {
        log.append(&batch(&values(1, ts, 10))).unwrap();
    }
    // Segments start at ts 0, 1_000 (1_000 - 0 >= 1_000) and 2_100 (2_100 - 1_000 >= 1_000).
    assert_eq!(log.segment_count(), 3);
    assert_eq!(log.stats().rolls, 2);
    let bases: Vec<String> = segment_paths(dir.path(), "log")
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().trim_start_matches('0').to_string())
        .collect();
    assert_eq!(bases, vec!["", "3", "5"]);
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever bytes the segment files hold, open and reads answer with data or a typed
        /// error; they never panic, and the active segment ends at a whole batch.
        #[test]
        fn garbage_segments_never_panic(sealed in proptest::collection::vec(any::<u8>(), 0..600),
                                        active in proptest::collection::vec(any::<u8>(), 0..600),
                                        keep_valid_prefix in any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let mut sealed_bytes = Vec::new();
            if keep_valid_prefix {
                sealed_bytes.extend(batch(&values(3, 0, 20)));
            }
            sealed_bytes.extend(&sealed);
            fs::write(dir.path().join("00000000000000000000.log"), &sealed_bytes).unwrap();
            fs::write(dir.path().join("00000000000000000100.log"), &active).unwrap();
            let log = Log::open(dir.path(), LogConfig::default()).unwrap();
            prop_assert_eq!(log.stats().recovery_full_scans, 1);
            prop_assert!(log.next_offset() >= 100);
            for from in [0u64, 1, 2, 3, 50, 99, 100] {
                match log.read(from, 4096) {
                    Ok(bytes) => {
                        for b in eddy_storage::Batches::new(&bytes) {
                            prop_assert!(b.is_ok(), "a read served a bad batch");
                        }
                    }
                    Err(Error::Corrupt { .. } | Error::OffsetOutOfRange { .. }) => {}
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }
            let _ = log.offset_for_timestamp(5);
            // Appends continue after whatever survived in the active segment.
            let next = log.next_offset();
            prop_assert_eq!(log.append(&batch(&values(1, 0, 1))).unwrap().base_offset, next);
        }
    }
}

#[test]
fn a_whole_batch_of_an_unknown_format_refuses_the_open_and_is_not_cut() {
    use eddy_storage::batch::header::MAGIC;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_bytes: 1 << 20, ..small_config() };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    let model = fill(&log, 3);
    drop(log);
    // The last batch as a newer build would write it: another magic (which the checksum does
    // not cover, so the checksum still holds).
    let path = segment_paths(dir.path(), "log").pop().unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let last = {
        let mut at = 0usize;
        let mut last = 0usize;
        while at < bytes.len() {
            last = at;
            let len = u32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
            at += len + 12;
        }
        last
    };
    let set_version = |bytes: &mut Vec<u8>, version: u8| {
        bytes[last + MAGIC] = version;
        fs::write(&path, &*bytes).unwrap();
    };
    set_version(&mut bytes, 3);

    let err = Log::open(dir.path(), config.clone()).unwrap_err();
    match &err {
        Error::UnreadableBatch { position, fault, .. } => {
            assert_eq!(*position, last as u64);
            assert_eq!(*fault, BatchError::UnsupportedVersion { found: 3, supported: 2 });
        }
        other => panic!("expected UnreadableBatch, got {other:?}"),
    }
    assert!(err.to_string().contains("nothing was cut"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), bytes, "the segment was changed");
    // Put back as it was, the log opens with every record.
    set_version(&mut bytes, 2);
    let log = Log::open(dir.path(), config.clone()).unwrap();
    assert_eq!(read_all(&log, 0, 1 << 20), model);
    drop(log);

    // An unknown magic whose checksum fails is a torn tail, not another format: it is cut.
    let last_len = bytes.len() - last;
    bytes[last + MAGIC] = 3;
    let end = bytes.len() - 1;
    bytes[end] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), (bytes.len() - last_len) as u64);
    let survivors = read_all(&log, 0, 1 << 20);
    assert_eq!(survivors[..], model[..survivors.len()]);
    assert!(survivors.len() < model.len());
}

/// The stored bytes of every batch, in order.
fn stored_batches(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut next = log.start_offset();
    while next < log.next_offset() {
        let bytes = log.read(next, 1 << 20).unwrap();
        for b in eddy_storage::Batches::new(&bytes) {
            let b = b.unwrap();
            out.push(b.as_bytes().to_vec());
            next = b.last_offset() + 1;
        }
    }
    out
}

/// A log with one large active segment: `before` batches, a checkpoint, `after` more, then a
/// crash (the handle dropped without a flush: under `flush = os` nothing more is fsynced or
/// checkpointed). Returns the stored batches and the active segment's length at the checkpoint.
fn crash_after_checkpoint(dir: &Path, before: usize, after: usize) -> (Vec<Vec<u8>>, u64) {
    let log = Log::open(dir, big_active()).unwrap();
    fill(&log, before);
    log.checkpoint().unwrap();
    let checkpointed = fs::metadata(segment_paths(dir, "log").pop().unwrap()).unwrap().len();
    fill(&log, after);
    let stored = stored_batches(&log);
    drop(log);
    (stored, checkpointed)
}

fn big_active() -> LogConfig {
    LogConfig { segment_bytes: 1 << 30, ..small_config() }
}

fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join("recovery-point.checkpoint")
}

#[test]
fn a_torn_batch_after_the_recovery_point_is_cut_and_only_the_tail_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, checkpointed) = crash_after_checkpoint(dir.path(), 200, 30);
    let active = segment_paths(dir.path(), "log").pop().unwrap();
    let len = fs::metadata(&active).unwrap().len();
    // The last batch is torn: half of it reached the disk.
    let last = batches.last().unwrap().len() as u64;
    let torn_at = len - last / 2;
    OpenOptions::new().write(true).open(&active).unwrap().set_len(torn_at).unwrap();

    let log = Log::open(dir.path(), big_active()).unwrap();
    assert_eq!(log.stats().recovery_full_scans, 0);
    assert_eq!(log.stats().recovery_scanned_bytes, torn_at - checkpointed);
    assert_eq!(log.stats().recovery_truncated_bytes, torn_at - (len - last));
    assert_eq!(stored_batches(&log), batches[..batches.len() - 1].to_vec());
    assert_eq!(fs::metadata(&active).unwrap().len(), len - last);
    // The offsets below the recovery point were durable; what follows is, after a flush.
    assert!(log.durable_offset() > 0 && log.durable_offset() < log.next_offset());
    let next = log.next_offset();
    assert_eq!(log.append(&batch(&values(2, 0, 3))).unwrap().base_offset, next);
    log.flush().unwrap();
    assert_eq!(log.durable_offset(), log.next_offset());
}

#[test]
fn open_after_a_crash_does_not_read_below_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, checkpointed) = crash_after_checkpoint(dir.path(), 300, 5);
    let active = segment_paths(dir.path(), "log").pop().unwrap();
    let len = fs::metadata(&active).unwrap().len();
    assert!(checkpointed > 10 * (len - checkpointed), "the test wants a long prefix");
    let log = Log::open(dir.path(), big_active()).unwrap();
    assert_eq!(log.stats().recovery_full_scans, 0);
    assert_eq!(log.stats().recovery_scanned_bytes, len - checkpointed);
    assert_eq!(log.stats().recovery_truncated_bytes, 0);
    assert_eq!(stored_batches(&log), batches);
    // Lookups below the recovery point use the index entries the checkpoint vouched for.
    for (offset, rec) in read_all(&log, 0, 1 << 20).iter().step_by(37) {
        let found = log.offset_for_timestamp(rec.timestamp).unwrap().unwrap();
        assert!(found.offset <= *offset);
        assert_eq!(read_all(&log, *offset, 1).first().map(|(o, _)| *o), Some(*offset));
    }
    drop(log);
    // A clean close leaves nothing to read at the next open.
    Log::open(dir.path(), big_active()).unwrap().close().unwrap();
    let log = Log::open(dir.path(), big_active()).unwrap();
    assert_eq!(log.stats().recovery_scanned_bytes, 0);
    assert_eq!(stored_batches(&log), batches);
}

#[test]
fn a_corrupt_checkpoint_falls_back_to_checking_the_whole_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, _) = crash_after_checkpoint(dir.path(), 100, 10);
    let mut bytes = fs::read(checkpoint_path(dir.path())).unwrap();
    bytes[30] ^= 0x04;
    fs::write(checkpoint_path(dir.path()), &bytes).unwrap();
    let active = segment_paths(dir.path(), "log").pop().unwrap();
    let len = fs::metadata(&active).unwrap().len();

    let log = Log::open(dir.path(), big_active()).unwrap();
    assert_eq!(log.stats().recovery_full_scans, 1);
    assert_eq!(log.stats().recovery_scanned_bytes, len);
    assert_eq!(stored_batches(&log), batches);
    drop(log);
    // A missing one, too.
    fs::remove_file(checkpoint_path(dir.path())).unwrap();
    let log = Log::open(dir.path(), big_active()).unwrap();
    assert_eq!(log.stats().recovery_full_scans, 1);
    assert_eq!(log.stats().recovery_scanned_bytes, len);
    assert_eq!(stored_batches(&log), batches);
}

#[test]
fn a_checkpoint_past_the_end_of_its_segment_falls_back_without_losing_data() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, _) = crash_after_checkpoint(dir.path(), 100, 10);
    // Something outside eddy cut the active segment to its first 50 batches, below the
    // recovery point.
    let active = segment_paths(dir.path(), "log").pop().unwrap();
    let kept: u64 = batches[..50].iter().map(|b| b.len() as u64).sum();
    OpenOptions::new().write(true).open(&active).unwrap().set_len(kept).unwrap();

    let log = Log::open(dir.path(), big_active()).unwrap();
    assert_eq!(log.stats().recovery_full_scans, 1);
    assert_eq!(log.stats().recovery_scanned_bytes, kept);
    assert_eq!(log.stats().recovery_truncated_bytes, 0);
    assert_eq!(stored_batches(&log), batches[..50].to_vec());
    let next = log.next_offset();
    assert_eq!(log.append(&batch(&values(1, 0, 3))).unwrap().base_offset, next);
}

#[test]
fn a_checkpoint_whose_index_entries_are_gone_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, _) = crash_after_checkpoint(dir.path(), 100, 10);
    let index = segment_paths(dir.path(), "index").pop().unwrap();
    OpenOptions::new().write(true).open(&index).unwrap().set_len(50).unwrap();
    let active = segment_paths(dir.path(), "log").pop().unwrap();
    let log = Log::open(dir.path(), big_active()).unwrap();
    assert_eq!(log.stats().recovery_full_scans, 1);
    assert_eq!(log.stats().recovery_scanned_bytes, fs::metadata(&active).unwrap().len());
    assert_eq!(stored_batches(&log), batches);
}

#[test]
fn a_recovery_point_at_a_segment_start_is_used() {
    let dir = tempfile::tempdir().unwrap();
    // A new log starts with a recovery point at offset 0; rolls move it to each new segment.
    let model = {
        let log = Log::open(dir.path(), small_config()).unwrap();
        fill(&log, 3)
    };
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.stats().recovery_full_scans, 0);
    assert_eq!(read_all(&log, 0, 1 << 20), model);
    let more = fill(&log, 40);
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.stats().recovery_full_scans, 0);
    let active = segment_paths(dir.path(), "log").pop().unwrap();
    assert_eq!(log.stats().recovery_scanned_bytes, fs::metadata(&active).unwrap().len());
    let all: Vec<_> = model.into_iter().chain(more).collect();
    assert_eq!(read_all(&log, 0, 1 << 20).len(), all.len());
}
