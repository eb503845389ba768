//! Flush policies: group commit under `Always`, the background flusher under `Interval`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{batch, values};
use eddy_storage::{Flush, Log, LogConfig};

#[test]
fn concurrent_appenders_at_flush_always_share_fsyncs() {
    const THREADS: usize = 8;
    const APPENDS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        Log::open(dir.path(), LogConfig { flush: Flush::Always, ..LogConfig::default() }).unwrap(),
    );
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (log, start) = (log.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for i in 0..APPENDS {
                    let info =
                        log.append(&batch(&values(2, (t * APPENDS + i) as i64, 50))).unwrap();
                    // Every acknowledged append is durable when append returns.
                    assert!(log.durable_offset() > info.last_offset);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = log.stats();
    assert_eq!(stats.appends, (THREADS * APPENDS) as u64);
    assert_eq!(log.next_offset(), (THREADS * APPENDS * 2) as u64);
    // With eight appenders waiting on each fsync, a round covers several appends.
    assert!(
        stats.fsyncs * 2 <= stats.appends,
        "{} fsyncs for {} appends: group commit did not share fsyncs",
        stats.fsyncs,
        stats.appends
    );
}

#[test]
fn flush_os_does_not_fsync_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for i in 0..50 {
        log.append(&batch(&values(2, i, 10))).unwrap();
    }
    assert_eq!(log.stats().fsyncs, 0);
    assert!(log.durable_offset() < log.next_offset());
    log.flush().unwrap();
    assert_eq!(log.stats().fsyncs, 1);
    assert_eq!(log.durable_offset(), log.next_offset());
}

#[test]
fn interval_flusher_makes_appends_durable_without_a_caller_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        LogConfig { flush: Flush::Interval(Duration::from_millis(20)), ..LogConfig::default() };
    let log = Log::open(dir.path(), config).unwrap();
    let info = log.append(&batch(&values(3, 0, 10))).unwrap();
    assert!(
        log.wait_durable(info.last_offset + 1, Duration::from_secs(10)),
        "flusher never synced"
    );
    assert!(log.stats().fsyncs >= 1);
}
