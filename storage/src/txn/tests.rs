use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::batch::{BatchBuilder, Batches};
use crate::{Error, Log, LogConfig};

fn config() -> LogConfig {
    // Small segments: rolls, seals and producer snapshots happen within a few appends.
    LogConfig { segment_bytes: 1024, ..LogConfig::default() }
}

fn plain(value: &[u8]) -> ValidBatch {
    let mut b = BatchBuilder::new();
    b.push(Record { timestamp: 1, key: Some(b"k"), value: Some(value), headers: &[] });
    b.build_valid().unwrap()
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, value: &[u8]) -> ValidBatch {
    let mut b = BatchBuilder::new().producer(pid, epoch, seq).transactional();
    b.push(Record { timestamp: 1, key: Some(b"k"), value: Some(value), headers: &[] });
    ValidBatch::check_transactional(b.build()).unwrap()
}

fn marker(pid: i64, epoch: i16, kind: ControlType) -> Marker {
    Marker { producer_id: pid, producer_epoch: epoch, kind, coordinator_epoch: 0, timestamp: 1 }
}

/// Every value a read_committed reader gets from offset 0, in order.
fn committed_values(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    loop {
        let (bytes, lso) = log.read_committed(from, 256).unwrap();
        if bytes.is_empty() {
            assert!(from >= lso, "an empty read below the LSO");
            return out;
        }
        let aborted = log.aborted_txns(from, lso);
        for batch in Batches::new(&bytes) {
            let batch = batch.unwrap();
            assert!(batch.base_offset() < lso, "a batch at or past the LSO was returned");
            if !is_hidden(batch.header(), &aborted) {
                for r in batch.records().unwrap().iter() {
                    let r = r.unwrap();
                    if r.offset >= from {
                        out.push(r.value.unwrap().to_vec());
                    }
                }
            }
            from = from.max(batch.last_offset() + 1);
        }
    }
}

#[test]
fn a_marker_is_a_control_batch_kafka_reads() {
    let batch = marker(7, 3, ControlType::Commit).batch();
    let view = BatchView::parse(batch.as_bytes()).unwrap();
    let h = view.header();
    assert!(h.is_control() && h.is_transactional());
    assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (7, 3, -1));
    let records = view.records().unwrap();
    let record = records.iter().next().unwrap().unwrap();
    assert_eq!(record.key, Some(&[0u8, 0, 0, 1][..]));
    assert_eq!(record.value, Some(&[0u8, 0, 0, 0, 0, 0][..]));
    assert_eq!(control_type(&view), Some(ControlType::Commit));
    let abort = marker(7, 3, ControlType::Abort).batch();
    assert_eq!(
        control_type(&BatchView::parse(abort.as_bytes()).unwrap()),
        Some(ControlType::Abort)
    );
}

#[test]
fn producers_may_not_send_control_batches_and_need_an_id_for_transactions() {
    let bytes = marker(1, 0, ControlType::Commit).batch().into_bytes();
    assert!(matches!(
        ValidBatch::check_transactional(bytes.clone()),
        Err(crate::BatchError::AttributeNotAllowed { attribute: "control" })
    ));
    let mut b = BatchBuilder::new().transactional();
    b.push(Record { timestamp: 1, key: None, value: Some(b"v"), headers: &[] });
    let no_id = b.build();
    assert!(ValidBatch::check(no_id.clone()).is_err());
    assert!(ValidBatch::check_transactional(no_id).is_err());
}

#[test]
fn lso_and_aborted_index_follow_markers_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    log.append_valid(&plain(b"p0")).unwrap();
    let first = log.append_valid(&txn_batch(1, 0, 0, b"t1")).unwrap();
    log.append_valid(&plain(b"p1")).unwrap();
    assert_eq!(log.last_stable_offset(), first.base_offset);
    log.append_valid(&txn_batch(2, 0, 0, b"t2")).unwrap();
    let abort = log.append_marker(&marker(1, 0, ControlType::Abort)).unwrap();
    // Producer 2's transaction is still open.
    assert_eq!(log.last_stable_offset(), 3);
    let end = log.append_marker(&marker(2, 0, ControlType::Commit)).unwrap();
    assert_eq!(log.last_stable_offset(), end.last_offset + 1);
    let expected = AbortedTxn {
        producer_id: 1,
        first_offset: first.base_offset,
        last_offset: abort.base_offset,
        last_stable_offset: 3,
    };
    assert_eq!(log.aborted_txns(0, 100), vec![expected]);
    assert_eq!(committed_values(&log), [&b"p0"[..], b"p1", b"t2"]);
    // An open transaction survives a reopen too.
    log.append_valid(&txn_batch(1, 0, 1, b"t3")).unwrap();
    let open_at = log.next_offset() - 1;
    drop(log);
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.aborted_txns(0, 100), vec![expected]);
    assert_eq!(log.last_stable_offset(), open_at);
    log.append_marker(&marker(1, 0, ControlType::Commit)).unwrap();
    assert_eq!(committed_values(&log), [&b"p0"[..], b"p1", b"t2", b"t3"]);
}

#[test]
fn a_newer_epoch_marker_fences_the_old_producer() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    log.append_valid(&txn_batch(5, 0, 0, b"a")).unwrap();
    log.append_marker(&marker(5, 1, ControlType::Abort)).unwrap();
    assert!(matches!(
        log.append_valid(&txn_batch(5, 0, 1, b"b")),
        Err(Error::ProducerFenced { current: 1, .. })
    ));
    assert!(matches!(
        log.append_marker(&marker(5, 0, ControlType::Commit)),
        Err(Error::ProducerFenced { .. })
    ));
    log.append_valid(&txn_batch(5, 1, 0, b"c")).unwrap();
    log.append_marker(&marker(5, 1, ControlType::Commit)).unwrap();
    assert_eq!(committed_values(&log), [b"c"]);
}

#[test]
fn committed_view_empties_markers_and_aborted_batches_keeping_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    log.append_valid(&txn_batch(1, 0, 0, b"gone")).unwrap();
    log.append_marker(&marker(1, 0, ControlType::Abort)).unwrap();
    log.append_valid(&plain(b"kept")).unwrap();
    let bytes = log.read(0, 1 << 20).unwrap();
    let view = committed_view(&bytes, &log.aborted_txns(0, 3));
    let batches: Vec<_> = Batches::new(&view).map(Result::unwrap).collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches.iter().map(|b| b.header().record_count).collect::<Vec<_>>(), [0, 0, 1]);
    assert_eq!(batches.iter().map(|b| b.base_offset()).collect::<Vec<_>>(), [0, 1, 2]);
    // Nothing hidden: the same bytes, not a copy.
    let plain_only = log.read(2, 1 << 20).unwrap();
    assert_eq!(committed_view(&plain_only, &[]).as_ptr(), plain_only.as_ptr());
}

#[test]
fn old_producer_snapshots_still_load() {
    let mut v1 = Vec::new();
    v1.extend_from_slice(b"EPRS");
    v1.extend_from_slice(&[1, 0, 0, 0]);
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&9i64.to_le_bytes());
    v1.extend_from_slice(&2i16.to_le_bytes());
    v1.push(0);
    let crc = crc32fast::hash(&v1);
    v1.extend_from_slice(&crc.to_le_bytes());
    let table = crate::producer::ProducerTable::from_snapshot(&v1).unwrap().unwrap();
    assert_eq!(table.first_unstable(), None);
}

#[derive(Debug, Clone)]
enum Op {
    Plain,
    Txn(usize),
    End(usize, bool),
    Reopen,
    Roll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Plain),
        5 => (0..3usize).prop_map(Op::Txn),
        3 => (0..3usize, any::<bool>()).prop_map(|(p, c)| Op::End(p, c)),
        1 => Just(Op::Reopen),
        1 => Just(Op::Roll),
    ]
}

/// What read_committed must return: the model of the partition.
#[derive(Default)]
struct Model {
    /// (offset, value, producer of an open or finished transaction, committed?)
    records: Vec<(u64, Vec<u8>, Option<usize>, bool)>,
    /// Open transaction of each producer: its first offset and its records' indexes.
    open: BTreeMap<usize, (u64, Vec<usize>)>,
    seq: [i32; 3],
}

impl Model {
    fn lso(&self, end: u64) -> u64 {
        self.open.values().map(|(first, _)| *first).min().unwrap_or(end).min(end)
    }

    fn committed_below(&self, lso: u64) -> Vec<Vec<u8>> {
        self.records.iter().filter(|r| r.0 < lso && r.3).map(|r| r.1.clone()).collect()
    }
}

fn apply(log: &Log, model: &mut Model, op: &Op, n: usize) {
    let value = format!("v{n}").into_bytes();
    match *op {
        Op::Plain => {
            let at = log.append_valid(&plain(&value)).unwrap().base_offset;
            model.records.push((at, value, None, true));
        }
        Op::Txn(p) => {
            let seq = model.seq[p];
            model.seq[p] += 1;
            let at = log.append_valid(&txn_batch(p as i64, 0, seq, &value)).unwrap().base_offset;
            model.records.push((at, value, Some(p), false));
            let open = model.open.entry(p).or_insert((at, Vec::new()));
            open.1.push(model.records.len() - 1);
        }
        Op::End(p, commit) => {
            let kind = if commit { ControlType::Commit } else { ControlType::Abort };
            log.append_marker(&marker(p as i64, 0, kind)).unwrap();
            if let Some((_, members)) = model.open.remove(&p) {
                for i in members {
                    model.records[i].3 = commit;
                }
            }
        }
        Op::Reopen | Op::Roll => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn read_committed_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config()).unwrap();
        let mut model = Model::default();
        for (n, op) in ops.iter().enumerate() {
            match op {
                Op::Reopen => {
                    drop(log);
                    log = Log::open(dir.path(), config()).unwrap();
                }
                Op::Roll => log.roll().unwrap(),
                _ => apply(&log, &mut model, op, n),
            }
            let lso = model.lso(log.next_offset());
            prop_assert_eq!(log.last_stable_offset(), lso);
        }
        let lso = log.last_stable_offset();
        prop_assert_eq!(committed_values(&log), model.committed_below(lso));
        // After every open transaction ends, everything committed is visible.
        let open: Vec<usize> = model.open.keys().copied().collect();
        for p in open {
            apply(&log, &mut model, &Op::End(p, true), 0);
        }
        prop_assert_eq!(log.last_stable_offset(), log.next_offset());
        prop_assert_eq!(committed_values(&log), model.committed_below(u64::MAX));
        drop(log);
        let log = Log::open(dir.path(), config()).unwrap();
        prop_assert_eq!(committed_values(&log), model.committed_below(u64::MAX));
    }
}

#[test]
fn a_skipped_batch_covers_its_offsets_with_no_records() {
    let bytes = skipped_batch(17, 20).unwrap();
    let batches: Vec<_> = Batches::new(&bytes).collect::<std::result::Result<_, _>>().unwrap();
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    assert_eq!((b.base_offset(), b.last_offset()), (17, 20));
    assert_eq!(b.header().record_count, 0);
    assert_eq!(b.records().unwrap().iter().count(), 0);
    b.header().verify_body(b.as_bytes()).unwrap();
    assert_eq!(skipped_batch(5, 5).map(|b| BatchHeader::parse(&b).unwrap().next_offset()), Some(6));
    assert!(skipped_batch(5, 4).is_none());
    assert!(skipped_batch(0, u64::from(u32::MAX) + 1).is_none());
}
