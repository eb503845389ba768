//! Power loss at chosen instants, on the simulated file system (`eddy_storage::vfs::sim`): each
//! test loses power just before a named file operation (or after a failed one), then reopens
//! the log on the image left by each of `IMAGES` seeds — which drop, keep, tear or reorder what
//! was not fsynced, and lose directory entries no directory fsync covered — and checks that
//! every batch acknowledged as durable is there, byte for byte, and nothing else is.
//!
//! The second half are the regression tests of what the crash checker (`crash_sim.rs`) found,
//! each named after its finding.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Rec, batch, owned, producer_batch};
use eddy_storage::txn::{ControlType, Marker};
use eddy_storage::vfs::sim::{Fault, FaultOp, SimFs};
use eddy_storage::{BatchBuilder, Batches, Cleanup, Error, Flush, Log, LogConfig, ValidBatch};

/// Crash images checked per crash point.
const IMAGES: u64 = 24;

fn dir() -> PathBuf {
    PathBuf::from("/data/topics/t/0")
}

fn config(flush: Flush) -> LogConfig {
    LogConfig { segment_bytes: 2048, index_interval_bytes: 128, flush, ..LogConfig::default() }
}

fn rec(i: u64) -> Rec {
    Rec::kv(
        1_700_000_000_000 + i as i64,
        &format!("k{}", i % 5),
        Some(&format!("value-{i:04}-{}", "x".repeat(60))),
    )
}

/// What a test wrote: the record at each offset, and how far it was acknowledged durable.
#[derive(Debug, Default)]
struct Written {
    records: Vec<Rec>,
    durable: u64,
}

impl Written {
    /// Appends record `records.len()` (one per batch); `durable`: and waits for durability.
    fn append(&mut self, log: &Log, durable: bool) -> eddy_storage::Result<()> {
        let r = rec(self.records.len() as u64);
        self.records.push(r.clone());
        let info = log.append(&batch(&[r]))?;
        assert_eq!(info.base_offset as usize, self.records.len() - 1);
        if durable {
            log.sync_through(info.last_offset + 1)?;
        }
        if durable || log.config().flush == Flush::Always {
            self.durable = info.last_offset + 1;
        }
        Ok(())
    }

    /// The reopened log holds every durable record, and only records written, contiguously.
    fn check(&self, log: &Log, what: &str) {
        let all = read_all(log);
        assert!(
            log.next_offset() >= self.durable,
            "{what}: end {} < durable {}",
            log.next_offset(),
            self.durable
        );
        for (i, (offset, r)) in all.iter().enumerate() {
            assert_eq!(*offset, i as u64, "{what}: offsets not contiguous");
            assert_eq!(
                Some(r),
                self.records.get(i),
                "{what}: record at {offset} was never written"
            );
        }
        assert_eq!(all.len() as u64, log.next_offset(), "{what}");
    }
}

fn read_all(log: &Log) -> Vec<(u64, Rec)> {
    let mut out = Vec::new();
    let mut next = log.start_offset();
    while next < log.next_offset() {
        let bytes = log.read(next, 1 << 20).unwrap();
        assert!(!bytes.is_empty(), "empty read at {next}");
        for b in Batches::new(&bytes) {
            let b = b.unwrap();
            for r in b.records().unwrap().iter() {
                let r = r.unwrap();
                out.push((r.offset, owned(&r)));
            }
            next = b.last_offset() + 1;
        }
    }
    out
}

/// Waits for the background sealer to reach the armed power loss.
fn wait_for_power_loss(sim: &SimFs, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sim.is_dead() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(sim.is_dead(), "the log never reached {what}");
}

/// Closes `log` (every seal finished, a checkpoint at its end) and opens it again.
fn reopened(log: Log, sim: &SimFs, config: &LogConfig) -> Log {
    log.close().unwrap();
    Log::open_on(sim.fs(), dir(), config.clone()).unwrap()
}

/// The image the armed power loss left (or one now, if it did not happen).
fn image(sim: &SimFs, seed: u64) -> SimFs {
    match sim.take_image() {
        Some((image, _)) => image,
        None => sim.crash(seed).0,
    }
}

/// Runs `scenario` on a fresh simulated disk with a power loss armed by `fault` (seeded
/// `seed`), and returns the image and what was written.
fn lose_power(
    config: &LogConfig,
    seed: u64,
    fault: impl Fn(u64) -> Fault,
    scenario: impl Fn(&Log, &mut Written, &SimFs),
) -> (SimFs, Written) {
    let sim = SimFs::new();
    let log = Log::open_on(sim.fs(), dir(), config.clone()).unwrap();
    let mut written = Written::default();
    sim.inject(fault(seed));
    scenario(&log, &mut written, &sim);
    let image = image(&sim, seed);
    drop(log);
    (image, written)
}

#[test]
fn a_crash_between_a_write_and_its_fsync_loses_no_acknowledged_batch() {
    for flush in [Flush::Always, Flush::Os] {
        for seed in 0..IMAGES {
            // Ten batches acknowledged durable, then power fails before the eleventh's fsync.
            let (image, written) = lose_power(
                &config(flush),
                seed,
                |s| Fault::power_loss(FaultOp::Fsync, ".log", 10, s),
                |log, w, _| {
                    for _ in 0..10 {
                        w.append(log, true).unwrap();
                    }
                    assert!(w.append(log, true).is_err(), "acknowledged past the power loss");
                },
            );
            let log = Log::open_on(image.fs(), dir(), config(flush)).unwrap();
            written.check(&log, &format!("{flush:?} seed {seed}"));
            assert!(log.next_offset() >= 10);
        }
    }
}

/// Appends until a roll, then a few more durable ones while the sealer finishes segment 0
/// (they stop at the power loss, which the sealer may reach first).
fn fill_past_a_roll(log: &Log, w: &mut Written) {
    while log.segment_count() < 2 {
        if w.append(log, false).is_err() {
            return;
        }
    }
    for _ in 0..3 {
        if w.append(log, true).is_err() {
            break;
        }
    }
}

#[test]
fn a_crash_between_a_seal_and_its_index_write_loses_nothing() {
    // Just after the sealed segment's fsync (the producer snapshot comes next, then the index
    // header), and between the index write and its fsync.
    let points: [(FaultOp, &str); 2] =
        [(FaultOp::Create, ".producers.tmp"), (FaultOp::Fsync, "00000000000000000000.index")];
    for (op, path) in points {
        for seed in 0..IMAGES {
            let config = config(Flush::Os);
            let (image, written) = lose_power(
                &config,
                seed,
                |s| Fault::power_loss(op, path, 0, s),
                |log, w, sim| {
                    fill_past_a_roll(log, w);
                    wait_for_power_loss(sim, path);
                },
            );
            let log = Log::open_on(image.fs(), dir(), config.clone()).unwrap();
            written.check(&log, &format!("{path} seed {seed}"));
            // Every offset is found through the (rebuilt or checked) index.
            for offset in 0..log.next_offset() {
                let bytes = log.read(offset, 1).unwrap();
                let first = Batches::new(&bytes).next().unwrap().unwrap();
                assert!(first.base_offset() <= offset && offset <= first.last_offset());
            }
        }
    }
}

fn compacted() -> LogConfig {
    LogConfig { cleanup: Cleanup::Compact, delete_retention_ms: 0, ..config(Flush::Always) }
}

#[test]
fn a_crash_during_compactions_rename_leaves_the_old_or_the_new_segment() {
    // Before the rename of `.cleaned` over the segment, and after it before the directory fsync.
    let points: [(FaultOp, &str); 2] = [(FaultOp::Rename, ".cleaned"), (FaultOp::SyncDir, "/data")];
    for (op, path) in points {
        for seed in 0..IMAGES {
            let sim = SimFs::new();
            let log = Log::open_on(sim.fs(), dir(), compacted()).unwrap();
            let mut written = Written::default();
            for _ in 0..60 {
                written.append(&log, false).unwrap();
            }
            log.roll().unwrap();
            let log = reopened(log, &sim, &compacted());
            sim.inject(Fault::power_loss(op, path, 0, seed));
            assert!(log.compact(i64::MAX / 2).is_err(), "compaction went past {path}");
            assert_eq!(sim.fired().len(), 1);
            drop(log);
            let image = image(&sim, seed);
            let log = Log::open_on(image.fs(), dir(), compacted()).unwrap();
            let all = read_all(&log);
            // Whichever version survived: each record is the one written at its offset, and
            // the newest record of every key is there.
            for (offset, r) in &all {
                assert_eq!(Some(r), written.records.get(*offset as usize), "seed {seed}");
            }
            for key in 0..5u64 {
                let newest = (0..60u64).rev().find(|i| i % 5 == key).unwrap();
                assert!(all.iter().any(|(o, _)| *o == newest), "{path} seed {seed}: key {key}");
            }
        }
    }
}

#[test]
fn a_crash_during_a_producer_snapshot_keeps_producer_state_exact() {
    for (op, path) in [(FaultOp::Fsync, ".producers.tmp"), (FaultOp::Rename, ".producers.tmp")] {
        for seed in 0..IMAGES {
            let config = config(Flush::Always);
            let sim = SimFs::new();
            let log = Log::open_on(sim.fs(), dir(), config.clone()).unwrap();
            sim.inject(Fault::power_loss(op, path, 0, seed));
            let mut batches = Vec::new();
            let mut seq = 0;
            while !sim.is_dead() && batches.len() < 200 {
                let b = producer_batch(&[rec(seq as u64)], Some((7, 0, seq)));
                if log.append(&b).is_ok() {
                    batches.push(b);
                    seq += 1;
                }
            }
            wait_for_power_loss(&sim, path);
            drop(log);
            let image = image(&sim, seed);
            let log = Log::open_on(image.fs(), dir(), config.clone()).unwrap();
            assert!(log.next_offset() as usize >= batches.len(), "{path} seed {seed}");
            // The last batch, retried, is a duplicate; the next sequence is accepted.
            let n = log.next_offset() as i32;
            let last = producer_batch(&[rec(n as u64 - 1)], Some((7, 0, n - 1)));
            let info = log.append(&last).unwrap();
            assert!(info.duplicate, "{path} seed {seed}: retry written again");
            let next = producer_batch(&[rec(n as u64)], Some((7, 0, n)));
            assert_eq!(log.append(&next).unwrap().base_offset, n as u64);
        }
    }
}

#[test]
fn a_crash_during_consumer_offset_commits_keeps_every_committed_offset() {
    // `__consumer_offsets`-like: compacted, `flush = os`, each commit fsynced before it is
    // acknowledged (the broker's `append_durable`); power fails at every operation in turn.
    let config = LogConfig { cleanup: Cleanup::Compact, ..config(Flush::Os) };
    for at in 1..120 {
        let sim = SimFs::new();
        let log = Log::open_on(sim.fs(), dir(), config.clone()).unwrap();
        sim.crash_after(at, at);
        let mut committed: Vec<(u64, Rec)> = Vec::new();
        for i in 0..40u64 {
            let r = rec(i);
            let Ok(info) = log.append(&batch(std::slice::from_ref(&r))) else { break };
            if log.sync_through(info.last_offset + 1).is_err() {
                break;
            }
            committed.push((info.base_offset, r));
        }
        drop(log);
        let image = image(&sim, at);
        let log = Log::open_on(image.fs(), dir(), config.clone()).unwrap();
        let all = read_all(&log);
        for (offset, r) in &committed {
            assert!(
                all.iter().any(|(o, p)| o == offset && p == r),
                "crash at op {at}: commit {offset} lost"
            );
        }
        assert!(all.len() <= committed.len() + 1, "crash at op {at}: records never written");
    }
}

#[test]
fn an_fsync_that_fails_once_then_succeeds_keeps_the_log_poisoned() {
    for seed in 0..IMAGES {
        let sim = SimFs::new();
        let config = config(Flush::Always);
        let log = Log::open_on(sim.fs(), dir(), config.clone()).unwrap();
        let mut written = Written::default();
        for _ in 0..5 {
            written.append(&log, true).unwrap();
        }
        // The next fsync fails (and, as Linux does, drops the pages it was to write); the
        // simulated disk then reports every later fsync as a success.
        sim.inject(Fault::once(FaultOp::Fsync, ".log"));
        assert!(written.append(&log, true).is_err());
        written.durable = 5;
        let durable = log.durable_offset();
        assert!(matches!(log.append(&batch(&[rec(99)])), Err(Error::Poisoned { .. })));
        assert!(log.sync_through(log.next_offset()).is_err());
        assert!(log.flush().is_err());
        assert!(log.checkpoint().is_err());
        assert!(!log.wait_durable(6, std::time::Duration::from_millis(10)));
        assert_eq!(log.durable_offset(), durable);
        drop(log);
        let (image, _) = sim.crash(seed);
        let log = Log::open_on(image.fs(), dir(), config.clone()).unwrap();
        written.check(&log, &format!("seed {seed}"));
        // The batch whose fsync failed never reached the disk.
        assert_eq!(log.next_offset(), 5, "seed {seed}");
        // Reopened, the log takes writes again.
        log.append(&batch(&[rec(5)])).unwrap();
    }
}

// ---- Regression tests of the checker's findings ----

#[test]
fn a_new_log_directory_survives_power_loss() {
    // Found: the directory of a new log was created but never fsynced in its parent, so a
    // power loss could take the whole partition, acknowledged batches and all.
    for seed in 0..IMAGES * 4 {
        let sim = SimFs::new();
        let log = Log::open_on(sim.fs(), dir(), config(Flush::Always)).unwrap();
        let mut written = Written::default();
        written.append(&log, true).unwrap();
        drop(log);
        let (image, _) = sim.crash(seed);
        let log = Log::open_on(image.fs(), dir(), config(Flush::Always)).unwrap();
        written.check(&log, &format!("seed {seed}"));
    }
}

#[test]
fn a_failed_roll_leaves_no_empty_segment_for_recovery_to_take_for_a_gap() {
    // Found: a roll that failed after creating the next segment's `.log` left it empty inside
    // the active segment's offsets; the next open took it for a gap and cut every segment
    // after it, acknowledged ones included (after a kill as after a power loss).
    for seed in 0..IMAGES {
        let sim = SimFs::new();
        let config = config(Flush::Always);
        let log = Log::open_on(sim.fs(), dir(), config.clone()).unwrap();
        let mut written = Written::default();
        // A roll (asked for, as retention or an operator does) fails creating its time index;
        // appends go on in segment 0; the next roll works, and power fails as the sealer
        // starts on segment 0 (so the recovery point is still in it and the next open checks it).
        for _ in 0..5 {
            written.append(&log, true).unwrap();
        }
        sim.inject(Fault::once(FaultOp::Create, ".timeindex"));
        assert!(log.roll().is_err());
        for _ in 0..5 {
            written.append(&log, true).unwrap();
        }
        sim.inject(Fault::power_loss(FaultOp::Create, ".producers.tmp", 0, seed));
        log.roll().unwrap();
        while !sim.is_dead() {
            if written.append(&log, true).is_err() {
                // Unless it was written and only its fsync failed, it is not in the log.
                written.records.truncate(log.next_offset() as usize);
            }
        }
        drop(log);
        let image = image(&sim, seed);
        let log = Log::open_on(image.fs(), dir(), config.clone()).unwrap();
        written.check(&log, &format!("seed {seed}"));
    }
}

fn txn_batch(producer: i64, seq: i32, r: &Rec) -> ValidBatch {
    let mut b = BatchBuilder::new().producer(producer, 0, seq).transactional();
    b.push(eddy_storage::Record {
        timestamp: r.timestamp,
        key: r.key.as_deref(),
        value: r.value.as_deref(),
        headers: &[],
    });
    ValidBatch::check_transactional(b.build()).unwrap()
}

fn abort(producer: i64) -> Marker {
    Marker {
        producer_id: producer,
        producer_epoch: 0,
        kind: ControlType::Abort,
        coordinator_epoch: 0,
        timestamp: 1,
    }
}

#[test]
fn retention_trims_the_aborted_index_only_once_its_deletions_are_durable() {
    // Found: retention rewrote aborted.txnindex without the transactions of the segments it
    // was deleting before the deletions were durable; a power loss brought the segments back
    // with their aborted transactions forgotten (read_committed readers saw aborted records).
    let config = LogConfig { retention_bytes: Some(1), ..config(Flush::Always) };
    for seed in 0..IMAGES {
        let sim = SimFs::new();
        let log = Log::open_on(sim.fs(), dir(), config.clone()).unwrap();
        log.append_valid(&txn_batch(9, 0, &rec(0))).unwrap();
        log.append_marker(&abort(9)).unwrap();
        log.roll().unwrap();
        log.append(&batch(&[rec(2)])).unwrap();
        let log = reopened(log, &sim, &config);
        // Power fails before the directory fsync that makes the deletions durable.
        sim.inject(Fault::power_loss(FaultOp::SyncDir, "/data", 0, seed));
        assert!(log.enforce_retention(0).is_err());
        assert_eq!(sim.fired().len(), 1);
        drop(log);
        let image = image(&sim, seed);
        let log = Log::open_on(image.fs(), dir(), config.clone()).unwrap();
        if log.start_offset() == 0 {
            let aborted = log.aborted_txns(0, log.next_offset());
            assert_eq!(aborted.len(), 1, "seed {seed}: the segment is back, its abort forgotten");
            assert_eq!((aborted[0].first_offset, aborted[0].last_offset), (0, 1));
        }
    }
}

#[test]
fn a_failed_fsync_of_the_aborted_index_is_never_trusted_again() {
    // Found (fsyncgate): after a failed fsync of aborted.txnindex a later one "succeeded" and a
    // checkpoint was written past an aborted transaction whose entry never reached the disk.
    for seed in 0..IMAGES {
        let sim = SimFs::new();
        let config = config(Flush::Always);
        let log = Log::open_on(sim.fs(), dir(), config.clone()).unwrap();
        log.append_valid(&txn_batch(9, 0, &rec(0))).unwrap();
        log.append_marker(&abort(9)).unwrap();
        sim.inject(Fault::once(FaultOp::Fsync, "aborted.txnindex"));
        assert!(log.checkpoint().is_err());
        log.append(&batch(&[rec(2)])).unwrap();
        assert!(log.checkpoint().is_err(), "a checkpoint trusted the fsync after a failed one");
        drop(log);
        let (image, _) = sim.crash(seed);
        let log = Log::open_on(image.fs(), dir(), config.clone()).unwrap();
        assert_eq!(log.aborted_txns(0, log.next_offset()).len(), 1, "seed {seed}");
    }
}

#[test]
fn a_failed_index_fsync_keeps_checkpoints_from_counting_its_entries() {
    // Found (fsyncgate): after a failed fsync of the active segment's index a checkpoint
    // counted entries a later "successful" fsync never wrote; the next open found the
    // checkpoint unusable and scanned the whole active segment.
    for seed in 0..IMAGES {
        let sim = SimFs::new();
        let config =
            LogConfig { segment_bytes: 1 << 20, index_interval_bytes: 1, ..config(Flush::Always) };
        let log = Log::open_on(sim.fs(), dir(), config.clone()).unwrap();
        let mut written = Written::default();
        for _ in 0..20 {
            written.append(&log, true).unwrap();
        }
        sim.inject(Fault::once(FaultOp::Fsync, ".index"));
        assert!(log.checkpoint().is_err());
        written.append(&log, true).unwrap();
        assert!(log.checkpoint().is_err(), "a checkpoint counted entries of a failed fsync");
        drop(log);
        let (image, _) = sim.crash(seed);
        let log = Log::open_on(image.fs(), dir(), config.clone()).unwrap();
        written.check(&log, &format!("seed {seed}"));
        assert_eq!(log.stats().recovery_full_scans, 0, "seed {seed}: checkpoint did not hold");
    }
}

#[test]
fn a_cut_back_append_is_fsynced_before_later_batches_are_acknowledged() {
    // Found: an append that failed half written was cut back, but the cut was never fsynced
    // when the segment was already synced to that length; a power loss brought the partial
    // batch back, recovery took it for a torn tail and deleted the next segment, whose
    // batches had been acknowledged durable.
    for seed in 0..IMAGES {
        let sim = SimFs::new();
        let config = config(Flush::Always);
        let log = Log::open_on(sim.fs(), dir(), config.clone()).unwrap();
        let mut written = Written::default();
        for _ in 0..5 {
            written.append(&log, true).unwrap();
        }
        let mut half = Fault::once(FaultOp::Write, ".log");
        half.partial = true;
        sim.inject(half);
        assert!(written.append(&log, true).is_err());
        written.records.pop();
        // Power fails as the sealer starts on segment 0, after batches in segment 1 were
        // acknowledged.
        sim.inject(Fault::power_loss(FaultOp::Create, ".producers.tmp", 0, seed));
        log.roll().unwrap();
        while !sim.is_dead() {
            if written.append(&log, true).is_err() {
                written.records.truncate(log.next_offset() as usize);
            }
        }
        drop(log);
        let image = image(&sim, seed);
        let log = Log::open_on(image.fs(), dir(), config.clone()).unwrap();
        written.check(&log, &format!("seed {seed}"));
    }
}

#[test]
fn compaction_never_lets_an_unsynced_record_supersede_a_durable_one() {
    // Found: compaction took the newest record of each key from every sealed segment, synced
    // or not; a record that then never reached the disk (its segment's fsync failed, or it
    // was rolled after compaction waited for the seals) had already removed the durable record
    // it superseded: after a power loss the key was gone.
    for seed in 0..IMAGES {
        let sim = SimFs::new();
        let log = Log::open_on(sim.fs(), dir(), compacted()).unwrap();
        let old = Rec::kv(1, "key", Some("durable"));
        log.append(&batch(std::slice::from_ref(&old))).unwrap();
        log.roll().unwrap();
        let log = reopened(log, &sim, &compacted());
        // The newer record's segment never reaches the disk: its fsync fails.
        let compacted_os = LogConfig { flush: Flush::Os, ..compacted() };
        drop(log);
        let log = Log::open_on(sim.fs(), dir(), compacted_os.clone()).unwrap();
        sim.inject(Fault::once(FaultOp::Fsync, ".log"));
        log.append(&batch(&[Rec::kv(2, "key", Some("newer"))])).unwrap();
        log.roll().unwrap();
        assert!(log.flush().is_err());
        let _ = log.compact(i64::MAX / 2);
        drop(log);
        let (image, _) = sim.crash(seed);
        let log = Log::open_on(image.fs(), dir(), compacted_os.clone()).unwrap();
        let all = read_all(&log);
        assert!(all.iter().any(|(_, r)| r.key == old.key), "seed {seed}: the key is gone: {all:?}");
    }
}

#[test]
fn no_recovery_point_is_written_past_a_segment_whose_fsync_failed() {
    // Found: after the background sealer's fsync of a rolled segment failed, it went on to
    // seal the next segments and wrote recovery points past the failed one; after a power
    // loss the open trusted every segment below the point, the failed one (whose pages the
    // failed fsync dropped) included: the log had a hole.
    for seed in 0..IMAGES {
        let sim = SimFs::new();
        let config = config(Flush::Os);
        let log = Log::open_on(sim.fs(), dir(), config.clone()).unwrap();
        let mut written = Written::default();
        sim.inject(Fault::once(FaultOp::Fsync, "00000000000000000000.log"));
        for _ in 0..3 {
            for _ in 0..4 {
                if written.append(&log, false).is_err() {
                    written.records.truncate(log.next_offset() as usize);
                }
            }
            let _ = log.roll();
        }
        drop(log);
        let (image, _) = sim.crash(seed);
        let log = Log::open_on(image.fs(), dir(), config.clone()).unwrap();
        written.check(&log, &format!("seed {seed}"));
    }
}

#[test]
fn compaction_keeps_each_producers_last_durable_batch() {
    // Found (by the soak): compaction kept the last batch of each idempotent producer — so its
    // state can be rebuilt from the log — counting batches that were not durable; the durable
    // batch before went, the later one was lost with power, and producer state rebuilt from
    // the log no longer knew the durable batch: its retry was appended a second time.
    for seed in 0..IMAGES {
        let sim = SimFs::new();
        let config = LogConfig { flush: Flush::Os, ..compacted() };
        let log = Log::open_on(sim.fs(), dir(), config.clone()).unwrap();
        let first = producer_batch(&[Rec::kv(1, "a", Some("p"))], Some((7, 0, 0)));
        log.append(&first).unwrap();
        // Another writer's durable record supersedes the producer's only record.
        log.append(&batch(&[Rec::kv(2, "a", Some("q"))])).unwrap();
        log.roll().unwrap();
        let log = reopened(log, &sim, &config);
        // The producer's next batch is in a segment whose fsync fails: never durable.
        sim.inject(Fault::once(FaultOp::Fsync, ".log"));
        log.append(&producer_batch(&[Rec::kv(3, "b", Some("p"))], Some((7, 0, 1)))).unwrap();
        log.roll().unwrap();
        assert!(log.flush().is_err());
        let _ = log.compact(i64::MAX / 2);
        drop(log);
        let (image, _) = sim.crash(seed);
        // Producer state rebuilt from the log: no checkpoint, no snapshots.
        let fs = image.fs();
        fs.remove_file(&dir().join("recovery-point.checkpoint")).unwrap();
        for name in image.files(&dir()).iter().filter(|n| n.ends_with(".producers")) {
            fs.remove_file(&dir().join(name)).unwrap();
        }
        let log = Log::open_on(image.fs(), dir(), config.clone()).unwrap();
        let info = log.append(&first).unwrap();
        assert!(info.duplicate, "seed {seed}: the durable batch's retry was written again");
    }
}

#[test]
fn a_trim_of_the_aborted_index_whose_directory_fsync_fails_writes_to_the_new_file() {
    // Found (by the soak): retention's rewrite of aborted.txnindex renamed the new file into
    // place, then its directory fsync failed; the log kept appending entries to the replaced
    // (unlinked) file, and a recovery point past the next ABORT marker made the next open rely
    // on an index that never held it: read_committed readers saw the aborted records.
    let config = LogConfig { retention_bytes: Some(1), ..config(Flush::Always) };
    for seed in 0..IMAGES {
        let sim = SimFs::new();
        let log = Log::open_on(sim.fs(), dir(), config.clone()).unwrap();
        log.append_valid(&txn_batch(9, 0, &rec(0))).unwrap();
        log.append_marker(&abort(9)).unwrap();
        log.roll().unwrap();
        log.append(&batch(&[rec(2)])).unwrap();
        let log = reopened(log, &sim, &config);
        // The second directory fsync of the pass is the trim's (the first, the deletions').
        sim.inject(Fault { skip: 1, ..Fault::once(FaultOp::SyncDir, "/data") });
        log.enforce_retention(0).unwrap();
        assert_eq!(sim.fired().len(), 1, "the trim's directory fsync was to fail");
        let start = log.next_offset();
        log.append_valid(&txn_batch(11, 0, &rec(3))).unwrap();
        log.append_marker(&abort(11)).unwrap();
        log.append(&batch(&[rec(5)])).unwrap();
        let _ = log.checkpoint();
        drop(log);
        let (image, _) = sim.crash(seed);
        let log = Log::open_on(image.fs(), dir(), config.clone()).unwrap();
        let aborted = log.aborted_txns(start, log.next_offset());
        assert_eq!(aborted.len(), 1, "seed {seed}: the new abort is forgotten");
        assert_eq!(aborted[0].producer_id, 11);
    }
}
