//! Bit rot: every single-bit flip in a sealed segment, its offset and time indexes, the
//! producer snapshot, the recovery-point checkpoint and aborted.txnindex is detected (a typed
//! error naming the file and position) or repaired from the log — never served. Small files
//! are flipped at every bit; large ones at `SAMPLED` bits chosen by a seed that is printed
//! (`EDDY_SEED` repeats it).

#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers; the seed is printed

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::{Rec, batch, producer_batch};
use eddy_storage::txn::{ControlType, Marker};
use eddy_storage::vfs::sim::{SimFs, SimRng};
use eddy_storage::{BatchBuilder, Batches, Error, Flush, Log, LogConfig, Record, ValidBatch};

/// Bits flipped in a file larger than `SAMPLED` bits.
const SAMPLED: u64 = 3000;

fn dir() -> PathBuf {
    PathBuf::from("/data/topics/t/0")
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 200,
        flush: Flush::Always,
        ..LogConfig::default()
    }
}

fn rec(i: u64) -> Rec {
    Rec::kv(
        1_700_000_000_000 + i as i64 * 10,
        &format!("k{i}"),
        Some(&format!("v{i:05}-{}", "y".repeat(40))),
    )
}

/// A log of three sealed segments and an active one: plain, idempotent and transactional
/// batches, one aborted transaction. Closed (every index and snapshot written).
fn build() -> SimFs {
    let sim = SimFs::new();
    let log = Log::open_on(sim.fs(), dir(), config()).unwrap();
    let mut seq = 0;
    for i in 0..60u64 {
        match i % 3 {
            0 => log.append(&batch(&[rec(i)])).unwrap(),
            1 => {
                seq += 1;
                log.append(&producer_batch(&[rec(i)], Some((5, 0, seq - 1)))).unwrap()
            }
            _ => log.append(&batch(&[rec(i), rec(i + 1000)])).unwrap(),
        };
        if i == 10 {
            let r = rec(500);
            let mut b = BatchBuilder::new().producer(8, 0, 0).transactional();
            b.push(Record {
                timestamp: r.timestamp,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                headers: &[],
            });
            log.append_valid(&ValidBatch::check_transactional(b.build()).unwrap()).unwrap();
            let marker = Marker {
                producer_id: 8,
                producer_epoch: 0,
                kind: ControlType::Abort,
                coordinator_epoch: 0,
                timestamp: 1,
            };
            log.append_marker(&marker).unwrap();
        }
    }
    assert!(log.segment_count() >= 4, "{} segments", log.segment_count());
    log.close().unwrap();
    sim
}

/// What a reader can see: every batch by its base offset, the aborted transactions, and the
/// producer's state (whether its last batch is recognised as a retry).
#[derive(Debug, PartialEq)]
struct View {
    batches: Vec<(u64, Bytes)>,
    aborted: Vec<(i64, u64, u64)>,
}

fn view(log: &Log, bases: &[u64]) -> Result<View, (u64, Error)> {
    let mut batches = Vec::new();
    for &base in bases {
        let bytes = log.read(base, 1).map_err(|e| (base, e))?;
        let first = Batches::new(&bytes).next().unwrap().unwrap();
        batches.push((base, Bytes::copy_from_slice(first.as_bytes())));
    }
    let aborted = log
        .aborted_txns(0, log.next_offset())
        .iter()
        .map(|a| (a.producer_id, a.first_offset, a.last_offset))
        .collect();
    Ok(View { batches, aborted })
}

fn bases(log: &Log) -> Vec<u64> {
    let mut out = Vec::new();
    let mut next = log.start_offset();
    while next < log.next_offset() {
        let bytes = log.read(next, usize::MAX).unwrap();
        for b in Batches::new(&bytes) {
            let b = b.unwrap();
            out.push(b.base_offset());
            next = b.last_offset() + 1;
        }
    }
    out
}

/// Whether an error names `path` (a typed error about the flipped file).
fn names(e: &Error, path: &Path) -> bool {
    match e {
        Error::Corrupt { path: p, .. } | Error::UnsupportedFileVersion { path: p, .. } => p == path,
        Error::UnreadableBatch { path: p, .. } => p == path,
        _ => false,
    }
}

/// Every bit of a file of `bits` bits, or `SAMPLED` of them chosen by a seed (printed;
/// `EDDY_SEED` sets it).
fn bits_to_flip(name: &str, bits: u64) -> (Vec<u64>, u64) {
    let seed = std::env::var("EDDY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    if bits <= SAMPLED {
        return ((0..bits).collect(), seed);
    }
    eprintln!("{name}: {SAMPLED} of {bits} bits, seed {seed} (EDDY_SEED to repeat)");
    let mut rng = SimRng::new(seed);
    ((0..SAMPLED).map(|_| rng.below(bits)).collect(), seed)
}

/// Flips bits of the file `name` (every bit, or `SAMPLED` of them) and checks each outcome.
fn flip_each_bit(name: &str, before_open: impl Fn(&SimFs)) {
    let pristine = build();
    let path = dir().join(name);
    let original = pristine.contents(&path).unwrap_or_else(|| panic!("no {name}"));
    let (reference, bases) = {
        let image = pristine.fork();
        before_open(&image);
        let log = Log::open_on(image.fs(), dir(), config()).unwrap();
        let bases = bases(&log);
        (view(&log, &bases).unwrap(), bases)
    };
    let (positions, seed) = bits_to_flip(name, original.len() as u64 * 8);
    let (mut same, mut detected) = (0, 0);
    for bit in positions {
        let image = pristine.fork();
        let mut bytes = original.clone();
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
        image.set_contents(&path, &bytes).unwrap();
        before_open(&image);
        let what = format!("{name} bit {bit} (seed {seed})");
        let log = match Log::open_on(image.fs(), dir(), config()) {
            Ok(log) => log,
            Err(e) => {
                assert!(names(&e, &path), "{what}: open failed without naming the file: {e}");
                detected += 1;
                continue;
            }
        };
        match view(&log, &bases) {
            Ok(v) => {
                if v != reference {
                    let diff: Vec<_> = v
                        .batches
                        .iter()
                        .zip(&reference.batches)
                        .filter(|(a, b)| a != b)
                        .map(|(a, b)| {
                            (
                                a.0,
                                a.1.len(),
                                b.1.len(),
                                a.1.iter().zip(b.1.iter()).position(|(x, y)| x != y),
                            )
                        })
                        .collect();
                    panic!(
                        "{what}: served something else: batches at {diff:?} differ; aborted {:?} against {:?}",
                        v.aborted, reference.aborted
                    );
                }
                same += 1;
            }
            Err((base, e)) => {
                assert!(
                    names(&e, &path),
                    "{what}: read at {base} failed without naming the file: {e}"
                );
                detected += 1;
            }
        }
    }
    eprintln!("{name}: {same} flips repaired or harmless, {detected} detected");
}

#[test]
fn every_bit_flip_in_a_sealed_segment_is_detected_never_served() {
    flip_each_bit("00000000000000000000.log", |_| {});
}

#[test]
fn every_bit_flip_in_an_offset_index_is_repaired_from_the_log() {
    flip_each_bit("00000000000000000000.index", |_| {});
}

#[test]
fn every_bit_flip_in_a_time_index_is_repaired_from_the_log() {
    flip_each_bit("00000000000000000000.timeindex", |_| {});
}

#[test]
fn every_bit_flip_in_the_checkpoint_is_detected_and_repaired() {
    flip_each_bit("recovery-point.checkpoint", |_| {});
}

#[test]
fn every_bit_flip_in_a_producer_snapshot_is_detected_or_repaired() {
    // The snapshot is what an open without a usable checkpoint loads: remove the checkpoint.
    let sim = build();
    let name = sim.files(&dir()).into_iter().filter(|n| n.ends_with(".producers")).max().unwrap();
    flip_each_bit(&name, |image| {
        image.set_contents(&dir().join("recovery-point.checkpoint"), b"").unwrap();
    });
}

#[test]
fn every_bit_flip_in_the_aborted_transaction_index_is_detected_or_repaired() {
    flip_each_bit("aborted.txnindex", |_| {});
}
