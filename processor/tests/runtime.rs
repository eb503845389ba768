//! The threaded runtime and the table read side: tasks on a bounded pool, `wait_caught_up`,
//! live tables (get, range, scan, subscribe, size), a clean stop and a resume from the final
//! snapshot, dedupe against a reference, and the step journal following live arrival order.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use common::Rng;
use eddy_processor::{
    Count, Json, Latest, LogAccess, ProcessorBuilder, RuntimeConfig, SubscriptionError, TaskConfig,
    Utf8,
};

const WAIT: Duration = Duration::from_secs(60);

fn words(i: u64) -> String {
    format!("w{:03}", i * 7 % 50)
}

#[test]
fn tables_are_readable_and_subscribable_while_the_processor_runs() {
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    logs.create_topic("words", 3, false).unwrap();
    let b = ProcessorBuilder::new("wc", 1);
    let words_stream = b.stream::<String, String>("words", Utf8, Utf8);
    words_stream.aggregate("counts", Count).unwrap();
    words_stream.aggregate("last", Latest).unwrap();
    let processor = b.build().unwrap();
    let mut config = RuntimeConfig::new(dir.path().join("state"));
    config.threads = 2;
    let running = processor.start(logs.clone(), config.clone()).unwrap();
    assert_eq!(running.tasks().len(), 3);
    let counts = running.table::<String, u64>("counts").unwrap();
    let changes = counts.subscribe();

    let produce = |from: u64, to: u64| {
        for i in from..to {
            let w = words(i);
            let p = eddy_processor::partition_for_key(w.as_bytes(), 3);
            let value = format!("v{i}").into_bytes();
            common::produce(
                &*logs,
                "words",
                p,
                &[(Some(w.into_bytes()), Some(value), i as i64)],
                1,
            );
        }
    };
    produce(0, 500);
    running.wait_caught_up(WAIT).unwrap();

    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..500 {
        *expected.entry(words(i)).or_default() += 1;
    }
    assert_eq!(counts.scan(), expected.clone().into_iter().collect::<Vec<_>>());
    assert_eq!(counts.get(&"w007".to_owned()).unwrap(), Some(expected["w007"]));
    assert_eq!(counts.get(&"nope".to_owned()).unwrap(), None);
    let range =
        counts.range(Bound::Included(&"w010".to_owned()), Bound::Excluded(&"w020".to_owned()));
    let want: Vec<_> = expected
        .range("w010".to_owned().."w020".to_owned())
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(range, want);
    assert_eq!(counts.size().0, 50);
    let latest = running.table::<String, String>("last").unwrap();
    assert_eq!(latest.get(&words(499)).unwrap(), Some("v499".to_owned()));

    // The changes arrived on the subscription in each key's order (an aggregate writes a key
    // once per flush, so a change may carry several records' worth), ending at the table.
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    while seen != expected {
        let c = changes.recv_timeout(WAIT).unwrap();
        let before = seen.insert(c.key.clone(), c.value.unwrap()).unwrap_or(0);
        assert!(c.value > Some(before), "{}: {:?} after {before}", c.key, c.value);
    }
    assert_eq!(changes.recv_timeout(Duration::from_millis(1)), Err(SubscriptionError::Timeout));

    let status = running.status();
    assert_eq!(status.values().map(|s| s.metrics.records_in).sum::<u64>(), 500);
    assert_eq!(status.values().map(|s| s.state.table_keys).sum::<u64>(), 100);
    running.stop().unwrap();

    // Restart from the final snapshots: nothing is re-processed, more input continues.
    let running = processor.start(logs.clone(), config).unwrap();
    let status = running.status();
    assert_eq!(status.values().map(|s| s.position).sum::<u64>(), 500);
    assert_eq!(status.values().map(|s| s.metrics.records_in).sum::<u64>(), 0);
    produce(500, 600);
    running.wait_caught_up(WAIT).unwrap();
    for i in 500..600 {
        *expected.entry(words(i)).or_default() += 1;
    }
    let counts = running.table::<String, u64>("counts").unwrap();
    assert_eq!(counts.scan(), expected.clone().into_iter().collect::<Vec<_>>());
    running.stop().unwrap();

    // The changelog holds each flushed change once: every key's values only grow, and the
    // latest ones are the table.
    let changelog = common::read_topic(&*logs, &processor.changelog_topic("counts").unwrap());
    let mut last: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for r in &changelog {
        let v: u64 = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
        let before = last.insert(r.key.clone().unwrap(), v).unwrap_or(0);
        assert!(v > before, "a change written twice");
    }
    let want: BTreeMap<Vec<u8>, u64> =
        expected.iter().map(|(k, v)| (serde_json::to_vec(k).unwrap(), *v)).collect();
    assert_eq!(last, want);
}

#[test]
fn dedupe_keeps_a_key_once_per_window() {
    let mut rng = Rng(common::seed(51));
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    logs.create_topic("events", 1, false).unwrap();
    const WINDOW: i64 = 20;
    const GRACE: i64 = 15;
    let mut input = Vec::new();
    let mut max = 0i64;
    for _ in 0..2_000 {
        let ts = (max + rng.below(30) as i64 - 20).max(0);
        max = max.max(ts);
        input.push((format!("k{}", rng.below(10)), ts));
    }
    let records: Vec<common::In> = input
        .iter()
        .map(|(k, ts)| (Some(k.clone().into_bytes()), Some(b"1".to_vec()), *ts))
        .collect();
    common::produce(&*logs, "events", 0, &records, 13);
    let b = ProcessorBuilder::new("dedupe", 1);
    b.stream::<String, u32>("events", Utf8, Json).dedupe(WINDOW, GRACE).to("unique", Utf8, Json);
    let processor = b.build().unwrap();
    let (_, metrics) =
        common::run_to_end(&processor, logs.clone(), &TaskConfig::new(dir.path().join("state")));

    // Reference: keep a record unless it is late or a kept record of its key is < WINDOW away.
    let mut kept: Vec<(String, i64)> = Vec::new();
    let (mut max, mut late, mut dups) = (i64::MIN, 0, 0);
    for (k, ts) in &input {
        max = max.max(*ts);
        if *ts < max - GRACE {
            late += 1;
        } else if kept.iter().any(|(kk, t)| kk == k && (ts - t).abs() < WINDOW) {
            dups += 1;
        } else {
            kept.push((k.clone(), *ts));
        }
    }
    let got: Vec<(String, i64)> = common::read_topic(&*logs, "unique")
        .into_iter()
        .map(|r| (String::from_utf8(r.key.unwrap()).unwrap(), r.ts))
        .collect();
    assert!(late > 0 && dups > 100);
    assert_eq!(got, kept);
    assert_eq!(metrics[0].late, late);
    assert_eq!(metrics[0].duplicates, dups);
}

/// With input arriving while the task runs, which source a merge takes next depends on timing;
/// the journal records it, and a task restarted from an early snapshot follows the journal, so
/// its outputs match what the journal says happened.
#[test]
fn the_journal_replays_the_order_live_arrival_chose() {
    let mut rng = Rng(common::seed(61));
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    logs.create_topic("prices", 1, false).unwrap();
    logs.create_topic("trades", 1, false).unwrap();
    let b = ProcessorBuilder::new("live", 1);
    let prices = b.table::<String, i64>("prices", "prices", Utf8, Json).unwrap();
    b.stream::<String, i64>("trades", Utf8, Json)
        .left_join_table(&prices, |_, qty, price| qty * price.copied().unwrap_or(-1))
        .to("valued", Utf8, Json);
    let processor = b.build().unwrap();
    processor.prepare(&*logs).unwrap();
    let id = eddy_processor::TaskId { subtopology: 0, partition: 0 };
    let mut config = TaskConfig::new(dir.path().join("state"));
    config.snapshot_every_records = 1_000_000;

    // Produce in bursts between polls; trade timestamps run behind price timestamps, so with
    // everything present a merge would order them differently than live arrival did.
    let registry = eddy_processor::TableRegistry::new();
    let access: Arc<dyn LogAccess> = logs.clone();
    let mut task = processor.open_task(access.clone(), id, config.clone(), &registry).unwrap();
    task.snapshot().unwrap();
    let mut t = 0i64;
    for _ in 0..60 {
        for _ in 0..rng.below(5) {
            t += 1;
            let price = (rng.below(100) as i64 + 1).to_string().into_bytes();
            common::produce(
                &*logs,
                "prices",
                0,
                &[(Some(b"X".to_vec()), Some(price), t + 1000)],
                1,
            );
        }
        for _ in 0..rng.below(5) {
            t += 1;
            let qty = (rng.below(10) as i64).to_string().into_bytes();
            common::produce(&*logs, "trades", 0, &[(Some(b"X".to_vec()), Some(qty), t)], 1);
        }
        task.poll().unwrap();
    }
    common::poll_to_end(std::slice::from_mut(&mut task));
    let live = common::read_all(&*logs, "valued", 0);
    drop(task);

    // Expected from the journal: follow its steps over the two inputs.
    let steps = common::read_all(&*logs, "live-1-0-steps", 0);
    let inputs = [common::read_all(&*logs, "prices", 0), common::read_all(&*logs, "trades", 0)];
    let mut cursor = [0usize, 0usize];
    let mut price: Option<i64> = None;
    let mut expected = Vec::new();
    for s in &steps {
        let v = s.value.as_ref().unwrap();
        let input = u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
        let end = u64::from_le_bytes(v[4..].try_into().unwrap());
        while cursor[input] < inputs[input].len() && inputs[input][cursor[input]].offset < end {
            let r = &inputs[input][cursor[input]];
            let n: i64 = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
            if input == 0 {
                price = Some(n);
            } else {
                expected.push(n * price.unwrap_or(-1));
            }
            cursor[input] += 1;
        }
    }
    let values = |v: &[common::Out]| -> Vec<i64> {
        v.iter().map(|r| serde_json::from_slice(r.value.as_ref().unwrap()).unwrap()).collect()
    };
    assert_eq!(values(&live), expected);

    // A merge over the complete input would have given something else.
    let mut merged = Vec::new();
    let (mut i, mut j, mut p) = (0, 0, None::<i64>);
    while i < inputs[0].len() || j < inputs[1].len() {
        let take_price =
            j >= inputs[1].len() || (i < inputs[0].len() && inputs[0][i].ts <= inputs[1][j].ts);
        if take_price {
            p = serde_json::from_slice(inputs[0][i].value.as_ref().unwrap()).ok();
            i += 1;
        } else {
            let q: i64 = serde_json::from_slice(inputs[1][j].value.as_ref().unwrap()).unwrap();
            merged.push(q * p.unwrap_or(-1));
            j += 1;
        }
    }
    assert_ne!(merged, expected, "live arrival happened to match the merge; change the seed");

    // Restart from the snapshot taken before anything ran: the replay follows the journal and
    // every output is recognised as already written.
    let mut task = processor.open_task(access, id, config, &registry).unwrap();
    common::poll_to_end(std::slice::from_mut(&mut task));
    let changelog = common::read_all(&*logs, "live-1-prices-changelog", 0).len();
    assert_eq!(task.metrics().suppressed as usize, live.len() + changelog);
    assert_eq!(task.metrics().records_out, 0);
    assert_eq!(common::read_all(&*logs, "valued", 0), live);
}

/// A runtime aborted with no snapshot at all restarts from offset zero; recovery finds every
/// output already written, so nothing is written twice.
#[test]
fn an_aborted_runtime_without_snapshots_replays_from_zero_and_writes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    logs.create_topic("words", 2, false).unwrap();
    for i in 0..600 {
        let w = words(i);
        let p = eddy_processor::partition_for_key(w.as_bytes(), 2);
        common::produce(
            &*logs,
            "words",
            p,
            &[(Some(w.into_bytes()), Some(b"x".to_vec()), i as i64)],
            1,
        );
    }
    let b = ProcessorBuilder::new("abort", 1);
    let counts =
        b.stream::<String, String>("words", Utf8, Utf8).aggregate("counts", Count).unwrap();
    counts.changes().to("counts-out", Utf8, Json);
    let processor = b.build().unwrap();
    let mut config = RuntimeConfig::new(dir.path().join("state"));
    config.task.snapshot_every_records = u64::MAX;
    let running = processor.start(logs.clone(), config.clone()).unwrap();
    running.wait_caught_up(WAIT).unwrap();
    running.abort().unwrap();
    assert!(!dir.path().join("state/abort-1").exists(), "no snapshot was written");
    let before = common::read_topic(&*logs, "counts-out");
    assert_eq!(before.len(), 600);

    let running = processor.start(logs.clone(), config).unwrap();
    running.wait_caught_up(WAIT).unwrap();
    let status = running.status();
    assert_eq!(status.values().map(|s| s.metrics.records_in).sum::<u64>(), 600);
    assert_eq!(status.values().map(|s| s.metrics.records_out).sum::<u64>(), 0);
    // Every output and every changelog record was recognised as written.
    let changelog = common::read_topic(&*logs, &processor.changelog_topic("counts").unwrap());
    assert_eq!(
        status.values().map(|s| s.metrics.suppressed).sum::<u64>(),
        600 + changelog.len() as u64
    );
    let table = running.table::<String, u64>("counts").unwrap();
    assert_eq!(table.get(&words(0)).unwrap(), Some(12));
    running.stop().unwrap();
    assert_eq!(common::read_topic(&*logs, "counts-out"), before);
}

/// A panic in user code stops the worker's tasks and is reported, instead of stalling.
#[test]
fn a_panicking_closure_is_reported_as_a_task_failure() {
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    logs.create_topic("numbers", 1, false).unwrap();
    let records: Vec<common::In> =
        (0..10).map(|i| (None, Some(i.to_string().into_bytes()), i)).collect();
    common::produce(&*logs, "numbers", 0, &records, 3);
    let b = ProcessorBuilder::new("panics", 1);
    b.stream::<(), i64>("numbers", eddy_processor::Ignore, Json)
        .map_values(|_, v| if v == 7 { panic!("seven") } else { v })
        .to("out", Json, Json);
    let running =
        b.build().unwrap().start(logs, RuntimeConfig::new(dir.path().join("state"))).unwrap();
    let err = running.wait_caught_up(WAIT).unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    assert!(running.stop().is_err());
}

/// Copies of [`Tally`] made so far (by any test of this file: only the one below makes them).
static TALLY_CLONES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// An aggregate result that counts its copies.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Tally(u64);

impl Clone for Tally {
    fn clone(&self) -> Self {
        TALLY_CLONES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Tally(self.0)
    }
}

struct CountTally;

impl eddy_processor::Aggregator<String> for CountTally {
    type Acc = u64;
    type Out = Tally;
    fn init(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: &String, _: i64) {
        *acc += 1;
    }
    fn merge(&self, into: &mut u64, other: u64) {
        *into += other;
    }
    fn result(&self, acc: &u64) -> Tally {
        Tally(*acc)
    }
}

#[test]
fn a_table_with_one_reader_hands_it_each_change_without_copying_it() {
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    logs.create_topic("words", 1, false).unwrap();
    let b = ProcessorBuilder::new("tally", 1);
    let table = b.stream::<String, String>("words", Utf8, Utf8).aggregate("tallies", CountTally);
    // The table is kept wired for its readers even when nothing consumes its changes; here its
    // changes also go to a topic, and that one consumer gets each change as it was made.
    table.unwrap().changes().to("tallies-out", Utf8, Json);
    let processor = b.build().unwrap();
    let records: Vec<_> =
        (0..200u64).map(|i| (Some(words(i).into_bytes()), Some(b"x".to_vec()), i as i64)).collect();
    common::produce(&*logs, "words", 0, &records, 50);
    let running =
        processor.start(logs.clone(), RuntimeConfig::new(dir.path().join("state"))).unwrap();
    running.wait_caught_up(WAIT).unwrap();

    let out = common::read_all(&*logs, "tallies-out", 0);
    assert_eq!(out.len(), 200, "every change reaches the topic");
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (i, rec) in out.iter().enumerate() {
        let key = String::from_utf8(rec.key.clone().unwrap()).unwrap();
        assert_eq!(key, words(i as u64));
        let n = seen.entry(key).or_default();
        *n += 1;
        assert_eq!(rec.value.as_deref(), Some(n.to_string().as_bytes()), "change {i}");
    }
    assert_eq!(TALLY_CLONES.load(std::sync::atomic::Ordering::Relaxed), 0);
    let tallies = running.table::<String, u64>("tallies").unwrap();
    assert_eq!(tallies.scan(), seen.into_iter().collect::<Vec<_>>());
    running.stop().unwrap();
}
