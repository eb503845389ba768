//! Retention and compaction, with exact expected survivors.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::{Rec, batch, read_all, values};
use eddy_storage::{Cleanup, Error, Log, LogConfig};

/// One batch per segment: each batch is sized to fill a 1 KiB segment on its own.
fn one_batch_per_segment() -> LogConfig {
    LogConfig { segment_bytes: 1024, retention_ms: None, ..LogConfig::default() }
}

/// Ten segments; segment i holds offsets [10i, 10i+10) with timestamps 1000i..1000i+9.
fn ten_segments(log: &Log) {
    for i in 0..10 {
        let info = log.append(&batch(&values(10, 1000 * i, 60))).unwrap();
        assert_eq!(info.base_offset, 10 * i as u64);
    }
    assert_eq!(log.segment_count(), 10);
}

#[test]
fn retention_by_age_deletes_exactly_the_expired_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_ms: Some(2_500), ..one_batch_per_segment() };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    ten_segments(&log);
    // now = 6_000, cutoff = 3_500: segments 0..=2 (newest record 2_009) are older; segment 3's
    // newest record is 3_009 < 3_500 too; segment 4's is 4_009.
    let report = log.enforce_retention(6_000).unwrap();
    assert_eq!(report.segments_deleted, 4);
    assert_eq!(report.start_offset, 40);
    assert_eq!(log.start_offset(), 40);
    match log.read(39, 100) {
        Err(Error::OffsetOutOfRange { requested: 39, start: 40, end: 100 }) => {}
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
    let survivors: Vec<u64> = read_all(&log, 40, 1 << 20).iter().map(|(o, _)| *o).collect();
    assert_eq!(survivors, (40..100).collect::<Vec<_>>());
    // The deletion is on disk: a reopen starts at 40 too.
    drop(log);
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.start_offset(), 40);
    assert_eq!(log.next_offset(), 100);
}

#[test]
fn retention_rolls_and_deletes_an_expired_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_ms: Some(100), ..one_batch_per_segment() };
    let log = Log::open(dir.path(), config).unwrap();
    ten_segments(&log);
    let report = log.enforce_retention(1_000_000).unwrap();
    assert_eq!(report.segments_deleted, 10);
    assert_eq!((log.start_offset(), log.next_offset()), (100, 100));
    assert_eq!(log.append(&batch(&values(1, 5, 1))).unwrap().base_offset, 100);
}

#[test]
fn retention_by_size_keeps_the_newest_segments_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), one_batch_per_segment()).unwrap();
    ten_segments(&log);
    let segment_len = log.size_bytes() / 10;
    drop(log);
    let config =
        LogConfig { retention_bytes: Some(segment_len * 4 + 1), ..one_batch_per_segment() };
    let log = Log::open(dir.path(), config).unwrap();
    // Keep deleting the oldest while what remains is still >= the limit: 10 -> 5 segments left
    // (5 segments = 5 * len >= limit, 4 would be < limit, so stop at 5).
    let report = log.enforce_retention(0).unwrap();
    assert_eq!(report.segments_deleted, 5);
    assert_eq!(report.bytes_deleted, segment_len * 5);
    assert_eq!(log.start_offset(), 50);
    assert_eq!(read_all(&log, 50, 1 << 20).len(), 50);
}

#[test]
fn retention_is_a_no_op_on_compacted_logs() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        LogConfig { cleanup: Cleanup::Compact, retention_ms: Some(1), ..one_batch_per_segment() };
    let log = Log::open(dir.path(), config).unwrap();
    ten_segments(&log);
    assert_eq!(log.enforce_retention(i64::MAX).unwrap().segments_deleted, 0);
}

#[test]
fn compaction_keeps_the_latest_per_key_with_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup: Cleanup::Compact,
        segment_bytes: 1024,
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    // Offsets and what they hold:
    //  0 a=1   1 b=1   2 c=1   | 3 a=2   4 b=(tombstone @t=50)  5 d=1
    //  6 a=3   7 c=(tombstone @t=5000)   | 8 e=1 (active segment)
    let pad = "x".repeat(300);
    let v = |s: &str| format!("{s}{pad}");
    let b1 = vec![
        Rec::kv(10, "a", Some(&v("a1"))),
        Rec::kv(11, "b", Some(&v("b1"))),
        Rec::kv(12, "c", Some(&v("c1"))),
    ];
    let b2 = vec![
        Rec::kv(20, "a", Some(&v("a2"))),
        Rec::kv(50, "b", None),
        Rec::kv(22, "d", Some(&v("d1"))),
    ];
    let b3 = vec![Rec::kv(30, "a", Some(&v("a3"))), Rec::kv(5000, "c", None)];
    let e1 = format!("e1{pad}{pad}");
    let b4 = vec![Rec::kv(40, "e", Some(&e1))];
    for b in [&b1, &b2, &b3, &b4] {
        log.append(&batch(b)).unwrap();
    }
    assert_eq!(log.segment_count(), 4, "one batch per segment, the last one active");

    // now = 2_000: tombstone b (t=50) is past delete retention, tombstone c (t=5000) is not.
    let report = log.compact(2_000).unwrap();
    assert_eq!(report.records_removed, 5, "a1 b1 c1 a2, and the expired tombstone of b");
    assert!(report.bytes_after < report.bytes_before);
    let expect = |log: &Log| {
        let got: Vec<(u64, Option<String>, Option<String>)> = read_all(log, 0, 1 << 20)
            .into_iter()
            .map(|(o, r)| {
                (
                    o,
                    r.key.map(|k| String::from_utf8(k).unwrap()),
                    r.value.map(|v| String::from_utf8(v).unwrap()),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (5, Some("d".into()), Some(v("d1"))),
                (6, Some("a".into()), Some(v("a3"))),
                (7, Some("c".into()), None),
                (8, Some("e".into()), Some(e1.clone())),
            ]
        );
    };
    expect(&log);
    // Offsets are preserved: reading from a removed offset starts at the next survivor.
    let from_removed = read_all(&log, 1, 1 << 20);
    assert_eq!(from_removed.first().map(|(o, _)| *o), Some(5));
    assert_eq!(log.next_offset(), 9);
    assert_eq!(log.append(&batch(&[Rec::kv(60, "f", Some("f1"))])).unwrap().base_offset, 9);

    // The compacted segments are what a reopen sees, indexes included.
    drop(log);
    let log = Log::open(dir.path(), config).unwrap();
    let after: Vec<u64> = read_all(&log, 0, 1 << 20).iter().map(|(o, _)| *o).collect();
    assert_eq!(after, vec![5, 6, 7, 8, 9]);
    assert_eq!(log.offset_for_timestamp(25).unwrap().map(|t| t.offset), Some(6));

    // A second pass once the remaining tombstone has expired removes it too.
    let report = log.compact(10_000).unwrap();
    assert_eq!(report.records_removed, 1);
    let after: Vec<u64> = read_all(&log, 0, 1 << 20).iter().map(|(o, _)| *o).collect();
    assert_eq!(after, vec![5, 6, 8, 9]);
}

#[test]
fn compaction_is_a_no_op_on_delete_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), one_batch_per_segment()).unwrap();
    ten_segments(&log);
    assert_eq!(log.compact(0).unwrap().segments_rewritten, 0);
}
