//! The append/read contract: offsets, bounds, refusals of bad input, idempotent producers.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::{Rec, batch, producer_batch, read_all, small_config, values};
use eddy_storage::{BatchBuilder, BatchError, Cleanup, Error, Log, LogConfig, Record, ValidBatch};

#[test]
fn reads_outside_the_log_are_offset_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(log.read(0, 100).unwrap().is_empty());
    log.append(&batch(&values(3, 0, 10))).unwrap();
    assert!(
        log.read(3, 100).unwrap().is_empty(),
        "reading at the end waits for more, it is not an error"
    );
    match log.read(4, 100) {
        Err(Error::OffsetOutOfRange { requested: 4, start: 0, end: 3 }) => {}
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
}

#[test]
fn bad_batches_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { max_batch_bytes: 2000, ..LogConfig::default() };
    let log = Log::open(dir.path(), config).unwrap();
    let good = batch(&values(3, 0, 10));
    log.append(&good).unwrap();

    let mut flipped = good.clone();
    flipped[70] ^= 0x10;
    assert!(matches!(log.append(&flipped), Err(Error::InvalidBatch(BatchError::Checksum { .. }))));
    assert!(matches!(
        log.append(&good[..40]),
        Err(Error::InvalidBatch(BatchError::Truncated { .. }))
    ));
    assert!(matches!(log.append(&[]), Err(Error::InvalidBatch(BatchError::Truncated { .. }))));
    match log.append(&batch(&values(3, 0, 1000))) {
        Err(Error::BatchTooLarge { max: 2000, .. }) => {}
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    assert_eq!(log.next_offset(), 3);
    assert_eq!(log.size_bytes(), good.len() as u64);
    assert_eq!(read_all(&log, 0, 1 << 20).len(), 3);
}

#[test]
fn valid_batches_append_like_checked_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let bytes = batch(&values(4, 10, 20));
    let checked = ValidBatch::check(bytes.clone().into()).unwrap();
    assert_eq!(log.append_valid(&checked).unwrap().base_offset, 0);
    let mut builder = BatchBuilder::new();
    builder.push(Record { timestamp: 5, key: None, value: Some(b"v"), headers: &[] });
    assert_eq!(log.append_valid(&builder.build_valid().unwrap()).unwrap().base_offset, 4);
    assert_eq!(read_all(&log, 0, 1 << 20).len(), 5);
    assert!(matches!(
        ValidBatch::check(bytes[..50].to_vec().into()),
        Err(BatchError::Truncated { .. })
    ));

    let compacted = tempfile::tempdir().unwrap();
    let log = Log::open(
        compacted.path(),
        LogConfig { cleanup: Cleanup::Compact, ..LogConfig::default() },
    )
    .unwrap();
    let mut builder = BatchBuilder::new();
    builder.push(Record { timestamp: 5, key: None, value: Some(b"v"), headers: &[] });
    assert!(matches!(
        log.append_valid(&builder.build_valid().unwrap()),
        Err(Error::MissingKey { index: 0 })
    ));
}

#[test]
fn compacted_logs_refuse_null_keys() {
    let dir = tempfile::tempdir().unwrap();
    let log =
        Log::open(dir.path(), LogConfig { cleanup: Cleanup::Compact, ..LogConfig::default() })
            .unwrap();
    let records = vec![Rec::kv(1, "a", Some("x")), Rec { key: None, ..Rec::kv(2, "", Some("y")) }];
    match log.append(&batch(&records)) {
        Err(Error::MissingKey { index: 1 }) => {}
        other => panic!("expected MissingKey, got {other:?}"),
    }
    assert_eq!(log.next_offset(), 0);
}

#[test]
fn idempotent_retries_are_answered_with_the_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    log.append(&batch(&values(2, 0, 5))).unwrap();
    let first = producer_batch(&values(3, 0, 5), Some((77, 0, 0)));
    let a = log.append(&first).unwrap();
    assert_eq!((a.base_offset, a.last_offset, a.duplicate), (2, 4, false));
    let retry = log.append(&first).unwrap();
    assert_eq!((retry.base_offset, retry.last_offset, retry.duplicate), (2, 4, true));
    assert_eq!(log.next_offset(), 5, "a duplicate must not be written");

    // A gap in sequences is refused, an old epoch is fenced.
    let gap = producer_batch(&values(1, 0, 5), Some((77, 0, 9)));
    assert!(matches!(
        log.append(&gap),
        Err(Error::OutOfOrderSequence { producer_id: 77, expected: 3, got: 9, .. })
    ));
    let next = producer_batch(&values(1, 0, 5), Some((77, 0, 3)));
    assert_eq!(log.append(&next).unwrap().base_offset, 5);
    let new_epoch = producer_batch(&values(1, 0, 5), Some((77, 1, 0)));
    log.append(&new_epoch).unwrap();
    let zombie = producer_batch(&values(1, 0, 5), Some((77, 0, 4)));
    assert!(matches!(log.append(&zombie), Err(Error::ProducerFenced { current: 1, .. })));
    assert_eq!(log.stats().duplicates, 1);
}

#[test]
fn producer_state_survives_reopen_with_and_without_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut sent = Vec::new();
    {
        let log = Log::open(dir.path(), small_config()).unwrap();
        // Enough batches to roll several segments, so state spans sealed and active segments.
        for seq in 0..30 {
            let b = producer_batch(&values(4, seq as i64 * 10, 120), Some((5, 2, seq * 4)));
            let info = log.append(&b).unwrap();
            sent.push((b, info));
        }
        assert!(log.segment_count() > 3);
    }
    let check = |log: &Log| {
        // The last batch is recognised as a duplicate, with its original offsets.
        let (b, info) = sent.last().unwrap();
        let retry = log.append(b).unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (info.base_offset, info.last_offset));
        // A skipped sequence is still refused.
        let gap = producer_batch(&values(1, 0, 5), Some((5, 2, 500)));
        assert!(matches!(log.append(&gap), Err(Error::OutOfOrderSequence { expected: 120, .. })));
    };
    check(&Log::open(dir.path(), small_config()).unwrap());
    let remove = |ext: &str| {
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == ext) {
                std::fs::remove_file(path).unwrap();
            }
        }
    };
    // Without the recovery point: from the active segment's snapshot (and a new recovery
    // point is written at the active segment's start, with the state).
    remove("checkpoint");
    check(&Log::open(dir.path(), small_config()).unwrap());
    // Without snapshots: from that recovery point.
    remove("producers");
    check(&Log::open(dir.path(), small_config()).unwrap());
    // Without either: rebuilt from the log.
    remove("checkpoint");
    check(&Log::open(dir.path(), small_config()).unwrap());
}

#[test]
fn idempotence_is_exact_across_a_crash_after_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_bytes: 1 << 20, ..small_config() };
    let mut sent = Vec::new();
    {
        let log = Log::open(dir.path(), config.clone()).unwrap();
        for seq in 0..20 {
            let b = producer_batch(&values(2, seq as i64, 30), Some((7, 0, seq * 2)));
            sent.push((b.clone(), log.append(&b).unwrap()));
            if seq == 12 {
                log.checkpoint().unwrap();
            }
        }
        // Dropped without a flush: batches 13..20 are only past the recovery point.
    }
    let log = Log::open(dir.path(), config).unwrap();
    assert!(log.stats().recovery_scanned_bytes > 0);
    // Each of the last five batches (three of them after the recovery point) is a duplicate
    // with its original offsets; the next sequence is expected exactly.
    for (b, info) in &sent[15..] {
        let retry = log.append(b).unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (info.base_offset, info.last_offset));
    }
    let next = producer_batch(&values(1, 0, 5), Some((7, 0, 40)));
    assert!(!log.append(&next).unwrap().duplicate);
    let gap = producer_batch(&values(1, 0, 5), Some((7, 0, 50)));
    assert!(matches!(log.append(&gap), Err(Error::OutOfOrderSequence { expected: 41, .. })));
}
