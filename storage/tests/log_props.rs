//! Property tests: whatever is appended, across segment rolls and reopens, reads back
//! byte-identical with contiguous offsets, and seek-by-time finds the right record.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::{Rec, batch, read_all, small_config};
use eddy_storage::{Batches, Log};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Rec>),
    Reopen,
}

fn rec() -> impl Strategy<Value = Rec> {
    let bytes = |max| proptest::option::of(proptest::collection::vec(any::<u8>(), 0..max));
    (
        0i64..10_000,
        bytes(16),
        prop_oneof![4 => bytes(64), 1 => bytes(3000)],
        proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..6), bytes(6)), 0..5),
    )
        .prop_map(|(timestamp, key, value, headers)| Rec { timestamp, key, value, headers })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => proptest::collection::vec(rec(), 1..12).prop_map(Op::Append),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn appended_batches_read_back_identical(ops in proptest::collection::vec(op(), 1..40),
                                            max_bytes in 1usize..9000,
                                            probes in proptest::collection::vec(-10i64..10_010, 8)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config()).unwrap();
        let mut model: Vec<(u64, Rec)> = Vec::new();
        let mut appended: Vec<(u64, Vec<u8>)> = Vec::new();
        for op in ops {
            match op {
                Op::Append(records) => {
                    let bytes = batch(&records);
                    let info = log.append(&bytes).unwrap();
                    prop_assert_eq!(info.base_offset, model.len() as u64);
                    prop_assert_eq!(info.last_offset, info.base_offset + records.len() as u64 - 1);
                    for r in records {
                        model.push((model.len() as u64, r));
                    }
                    appended.push((info.base_offset, bytes));
                }
                Op::Reopen => {
                    drop(log);
                    log = Log::open(dir.path(), small_config()).unwrap();
                }
            }
        }
        prop_assert_eq!(log.next_offset(), model.len() as u64);
        prop_assert_eq!(read_all(&log, 0, max_bytes), model.clone());

        // Byte-identical batches: everything but the base offset and leader epoch the log
        // stamps is as appended.
        let mut stored = Vec::new();
        let mut next = 0;
        while next < log.next_offset() {
            let bytes = log.read(next, max_bytes).unwrap();
            for b in Batches::new(&bytes) {
                let b = b.unwrap();
                stored.push((b.base_offset(), b.as_bytes().to_vec()));
                next = b.last_offset() + 1;
            }
        }
        prop_assert_eq!(stored.len(), appended.len());
        for ((so, sb), (ao, ab)) in stored.iter().zip(&appended) {
            prop_assert_eq!(so, ao);
            let mut expected = ab.clone();
            eddy_storage::batch::stamp_position(&mut expected, *ao);
            prop_assert_eq!(sb, &expected);
        }

        // A read from any offset starts with the batch that holds it.
        for (offset, _) in model.iter().step_by(7) {
            let bytes = log.read(*offset, max_bytes).unwrap();
            let first = Batches::new(&bytes).next().unwrap().unwrap();
            prop_assert!(first.base_offset() <= *offset && *offset <= first.last_offset());
        }

        // Seek by time: the first record, in offset order, at or after the target.
        for target in probes {
            let expected = model.iter().find(|(_, r)| r.timestamp >= target).map(|(o, r)| (*o, r.timestamp));
            let found = log.offset_for_timestamp(target).unwrap().map(|t| (t.offset, t.timestamp));
            prop_assert_eq!(found, expected, "target {}", target);
        }
    }
}
