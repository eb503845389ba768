//! Property tests of event time per origin (docs/processors.md, "Event time, watermarks,
//! lateness"): random keyed records over 1–4 source partitions, each partition out of order by
//! at most a bound (≤ grace) *within itself* but shifted in event time against the others by up
//! to 4 s (far more than the grace), produced in random interleavings and batch sizes while the
//! tasks are opened by hand and polled in a random order, each with its own random
//! `poll_max_records` and `read_max_bytes`. Then:
//!
//! - windowed aggregates behind a repartition (tumbling, hopping, session, and a tumbling
//!   `Emit::Final`) equal a reference computed over the whole input, in the tables and in
//!   their changelogs, and nothing is late;
//! - with a few records injected far behind their own partition's frontier — behind an earlier
//!   record of the same key, so of the same downstream task, by more than grace plus a window —
//!   exactly those are counted late and dead-lettered (once per windowed operator), however
//!   the repartition topic interleaved, and the aggregates equal the reference over the others;
//! - a windowed inner join of two co-partitioned topics emits exactly the pairs of on-time
//!   records within the window, each once, with and without injected late records.
//!
//! Injected records are either hours behind (before every record of the input) or just past
//! the bound (grace plus a window, inside the event-time range of the other partitions, which
//! may still hold windows of that time open). Sessions are only aggregated in the first case:
//! a session's horizon is its gap, not the window size, so a record "grace plus a window"
//! behind can be on time for a session (`t + 1 + gap` past the bound). That sessions held open
//! by another partition do not take a record late in its own partition is checked in
//! `watermarks_sessions.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use common::Rng;
use eddy_processor::{
    Count, Emit, JoinWindow, Json, LocalLogs, LogAccess, Processor, ProcessorBuilder, Stream, Sum,
    TableRegistry, Task, TaskConfig, TaskMetrics, Windowed, Windows, partition_for_key,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::de::DeserializeOwned;

/// Source keys are `0..KEYS`; behind the repartition, `new_key` folds them onto 5 keys.
const KEYS: u32 = 8;
/// Every on-time record is at or after this event time.
const BASE: i64 = 1_000_000;
/// How far behind "far behind" is.
const HOURS: i64 = 3 * 3_600_000;
/// Records per case at most (all partitions; injected records come on top, at most 4).
const MAX_RECORDS: usize = 288;

fn new_key(k: u32) -> u32 {
    (k * 3 + 1) % 5
}

/// One input record: its key, event time, id (unique in the case, the record's value), and
/// whether it was injected behind its partition's frontier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ev {
    key: u32,
    ts: i64,
    id: i64,
    injected: bool,
}

fn record(e: &Ev) -> common::In {
    (Some(e.key.to_string().into_bytes()), Some(e.id.to_string().into_bytes()), e.ts)
}

/// Raw records of one partition (or topic): (key, step ×5 ms from the record before, jitter).
type RawRecords = Vec<(u32, i64, u16)>;
/// A raw injection: (partition, insertion point, earlier record whose key it takes, extra).
type RawInjection = (u8, u16, u16, u16);

/// Event times that grow by random steps from `start`, each moved back by a jitter of at most
/// `bound`: so a record is at most `bound` behind the largest one before it.
fn timed(start: i64, raw: &[(u32, i64, u16)], bound: i64, id: &mut i64) -> Vec<Ev> {
    let mut base = start;
    raw.iter()
        .map(|&(key, step, jitter)| {
            base += 5 * step;
            *id += 1;
            let ts = base - 5 * (i64::from(jitter) % (bound / 5 + 1));
            Ev { key, ts, id: *id, injected: false }
        })
        .collect()
}

/// Inserts records behind an earlier on-time record of the same partition and key: at
/// `earlier.ts - behind(extra)`, never first in their partition.
fn inject(parts: &mut [Vec<Ev>], raw: &[RawInjection], behind: impl Fn(u16) -> i64, id: &mut i64) {
    for &(p, at, earlier, extra) in raw {
        let part = &mut parts[usize::from(p) % parts.len()];
        if part.is_empty() {
            continue;
        }
        let at = 1 + usize::from(at) % part.len();
        let on_time: Vec<usize> = (0..at).filter(|&j| !part[j].injected).collect();
        let e = part[on_time[usize::from(earlier) % on_time.len()]];
        *id += 1;
        part.insert(at, Ev { key: e.key, ts: e.ts - behind(extra), id: *id, injected: true });
    }
}

/// How the tasks are driven.
#[derive(Debug, Clone)]
struct Schedule {
    /// (what, a, b): 0, 1: produce `b % 48 + 1` more records of input `a` in batches of
    /// `a / 16 % 8 + 1`; 2: poll task `a` `b % 3 + 1` times; 3: poll every task once, from `a`.
    steps: Vec<(u8, u8, u8)>,
    /// (poll_max_records, read_max_bytes) of each task (cycled).
    configs: Vec<(u64, usize)>,
    /// Orders what follows the steps: the rest produced in random chunks between random polls,
    /// then every task polled in a random order until all are caught up.
    seed: u64,
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        prop::collection::vec((0u8..4, any::<u8>(), any::<u8>()), 0..48),
        prop::collection::vec((1u64..=64, 200usize..4000), 1..=8),
        any::<u64>(),
    )
        .prop_map(|(steps, configs, seed)| Schedule { steps, configs, seed })
}

/// One input partition as it is produced.
struct Feed {
    topic: &'static str,
    partition: u32,
    records: Vec<common::In>,
    next: usize,
}

fn produce(logs: &dyn LogAccess, feed: &mut Feed, count: usize, batch: usize) {
    let end = (feed.next + count).min(feed.records.len());
    common::produce(logs, feed.topic, feed.partition, &feed.records[feed.next..end], batch);
    feed.next = end;
}

fn shuffle(v: &mut [usize], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

/// Opens every task of `processor`, then produces `feeds` and polls the tasks as `sched` says
/// until everything is produced and every task is caught up. Returns the tables and each
/// task's counters.
fn drive(
    processor: &Processor,
    dir: &Path,
    logs: &Arc<LocalLogs>,
    feeds: &mut [Feed],
    sched: &Schedule,
) -> (Arc<TableRegistry>, Vec<TaskMetrics>) {
    let ids = processor.prepare(&**logs).unwrap();
    let registry = TableRegistry::new();
    let dyn_logs: Arc<dyn LogAccess> = logs.clone();
    let mut tasks: Vec<Task> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (records, bytes) = sched.configs[i % sched.configs.len()];
            let mut config = TaskConfig::new(dir.join("state"));
            config.poll_max_records = records;
            config.read_max_bytes = bytes;
            processor.open_task(dyn_logs.clone(), *id, config, &registry).unwrap()
        })
        .collect();
    let n = tasks.len();
    for &(what, a, b) in &sched.steps {
        let (a, b) = (usize::from(a), usize::from(b));
        match what {
            0 | 1 => {
                let len = feeds.len();
                produce(&**logs, &mut feeds[a % len], b % 48 + 1, a / 16 % 8 + 1);
            }
            2 => {
                for _ in 0..b % 3 + 1 {
                    tasks[a % n].poll().unwrap();
                }
            }
            _ => {
                for i in 0..n {
                    tasks[(a + i) % n].poll().unwrap();
                }
            }
        }
    }
    let mut rng = Rng(sched.seed);
    loop {
        let left: Vec<usize> =
            (0..feeds.len()).filter(|&i| feeds[i].next < feeds[i].records.len()).collect();
        if left.is_empty() {
            break;
        }
        let f = left[rng.below(left.len() as u64) as usize];
        let (count, batch) = (rng.below(64) as usize + 1, rng.below(12) as usize + 1);
        produce(&**logs, &mut feeds[f], count, batch);
        for _ in 0..rng.below(3) {
            tasks[rng.below(n as u64) as usize].poll().unwrap();
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    for _ in 0..100_000 {
        shuffle(&mut order, &mut rng);
        let mut progressed = false;
        for &i in &order {
            progressed |= tasks[i].poll().unwrap() > 0;
        }
        if !progressed && tasks.iter().all(|t| t.caught_up().unwrap()) {
            return (registry, tasks.iter().map(Task::metrics).collect());
        }
    }
    panic!("the tasks did not catch up in 100,000 rounds of polls");
}

/// A window as (key, start, end).
type W = (u32, i64, i64);

fn flat(w: Windowed<u32>) -> W {
    (w.key, w.start, w.end)
}

/// A windowed table as the registry holds it, and as the latest value per key of its
/// changelog.
fn windowed_table<V: DeserializeOwned>(
    processor: &Processor,
    registry: &Arc<TableRegistry>,
    logs: &dyn LogAccess,
    name: &str,
) -> (BTreeMap<W, V>, BTreeMap<W, V>) {
    let table = registry
        .reader::<Windowed<u32>, V>(name)
        .unwrap()
        .scan()
        .into_iter()
        .map(|(w, v)| (flat(w), v))
        .collect();
    let changelog = processor.changelog_topic(name).unwrap();
    let latest = common::latest_by_key(&common::read_topic(logs, &changelog))
        .into_iter()
        .map(|(k, v)| {
            let w: Windowed<u32> = serde_json::from_slice(&k).unwrap();
            (flat(w), serde_json::from_slice(&v).unwrap())
        })
        .collect();
    (table, latest)
}

/// Sums `late` over the tasks; the ids (values) of the dead letters, sorted.
fn late_and_dead_letters(logs: &dyn LogAccess, metrics: &[TaskMetrics]) -> (u64, Vec<i64>) {
    let late = metrics.iter().map(|m| m.late).sum();
    let mut dead: Vec<i64> = if logs.partition_count("late").is_ok() {
        common::read_topic(logs, "late")
            .iter()
            .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
            .collect()
    } else {
        Vec::new()
    };
    dead.sort_unstable();
    (late, dead)
}

/// Each injected id `times` times, sorted.
fn injected_ids<'a>(evs: impl Iterator<Item = &'a Ev>, times: usize) -> Vec<i64> {
    let mut ids: Vec<i64> =
        evs.filter(|e| e.injected).flat_map(|e| std::iter::repeat_n(e.id, times)).collect();
    ids.sort_unstable();
    ids
}

/// What the generator promises, checked: in its own partition, each on-time record is at most
/// `bound` behind the largest on-time event time before it, each injected one more than
/// `behind` behind it.
fn check_input(parts: &[Vec<Ev>], bound: i64, behind: i64) -> Result<(), TestCaseError> {
    for part in parts {
        let mut max = i64::MIN;
        for e in part {
            if e.injected {
                prop_assert!(e.ts < max - behind, "injected {:?} is not behind {}", e, max);
            } else {
                prop_assert!(e.ts >= max.saturating_sub(bound), "{:?} is behind {}", e, max);
                max = max.max(e.ts);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Windowed aggregates behind a repartition.

#[derive(Debug, Clone, Copy)]
struct Shape {
    grace: i64,
    /// How far behind its partition's frontier an on-time record may be (≤ grace).
    bound: i64,
    size: i64,
    hop: i64,
    advance: i64,
    gap: i64,
}

fn shape() -> impl Strategy<Value = Shape> {
    (2i64..=40, any::<u16>(), 4i64..=40, 4i64..=60, 0i64..4, 0i64..=20).prop_map(
        |(g, bound, size, hop, per, gap)| Shape {
            grace: 5 * g,
            // Up to the grace itself: a record exactly `grace` behind is on time.
            bound: 5 * (i64::from(bound) % (g + 1)),
            size: 5 * size,
            hop: 5 * hop,
            // 1 to 4 windows per record, the advance not always dividing the size.
            advance: 5 * (hop / (per + 1)).max(1),
            gap: 5 * gap,
        },
    )
}

#[derive(Debug, Clone)]
struct CaseA {
    shape: Shape,
    /// Each source partition's records, in offset order.
    parts: Vec<Vec<Ev>>,
    /// Partitions of the repartition topic (downstream tasks).
    downstream: u32,
    /// Injected records are hours behind (else just more than grace plus a window).
    far: bool,
    sched: Schedule,
}

fn case_a(injections: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = CaseA> {
    (1usize..=4)
        .prop_flat_map(move |n| {
            let records = (0u32..KEYS, 0i64..=6, any::<u16>());
            (
                shape(),
                // Per partition: its event-time shift (×5 ms) and its records.
                prop::collection::vec(
                    (0i64..=800, prop::collection::vec(records, 0..=MAX_RECORDS / n)),
                    n,
                ),
                1u32..=4,
                prop::collection::vec(any::<RawInjection>(), injections.clone()),
                any::<bool>(),
                schedule(),
            )
        })
        .prop_map(|(shape, raw, downstream, injections, far, sched)| {
            let mut id = 0;
            let mut parts: Vec<Vec<Ev>> = raw
                .iter()
                .map(|(shift, recs)| timed(BASE + 5 * shift, recs, shape.bound, &mut id))
                .collect();
            let window = shape.size.max(shape.hop);
            let behind = |extra: u16| {
                if far {
                    HOURS + i64::from(extra)
                } else {
                    shape.grace + window + 5 * (i64::from(extra) % 100)
                }
            };
            inject(&mut parts, &injections, behind, &mut id);
            CaseA { shape, parts, downstream, far, sched }
        })
}

struct OutA {
    tumbling: (BTreeMap<W, u64>, BTreeMap<W, u64>),
    hopping: (BTreeMap<W, i64>, BTreeMap<W, i64>),
    sessions: Option<(BTreeMap<W, u64>, BTreeMap<W, u64>)>,
    final_table: (BTreeMap<W, u64>, BTreeMap<W, u64>),
    finals: Vec<(W, u64)>,
    late: u64,
    dead: Vec<i64>,
    records_in: u64,
}

/// `in` (N partitions) → key := new_key(key) → repartition (M partitions) → tumbling count,
/// hopping sum of ids, session count (optional), tumbling count with `Emit::Final` to `finals`.
fn run_a(case: &CaseA, sessions: bool) -> OutA {
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    logs.create_topic("in", case.parts.len() as u32, false).unwrap();
    let s = case.shape;
    let b = ProcessorBuilder::new("wm", 1);
    b.dead_letter("late");
    let input: Stream<u32, i64> = b.stream("in", Json, Json);
    let by_key = input.select_key(|k, _| new_key(*k)).repartition("by-key", case.downstream);
    by_key
        .window(Windows::tumbling(s.size).grace(s.grace))
        .aggregate("tumbling", Count, Emit::Changes)
        .unwrap();
    by_key
        .window(Windows::hopping(s.hop, s.advance).grace(s.grace))
        .aggregate("hopping", Sum::new(|v: &i64| *v), Emit::Changes)
        .unwrap();
    if sessions {
        by_key
            .window(Windows::session(s.gap).grace(s.grace))
            .aggregate("sessions", Count, Emit::Changes)
            .unwrap();
    }
    by_key
        .window(Windows::tumbling(s.size).grace(s.grace))
        .aggregate("tumbling-final", Count, Emit::Final)
        .unwrap()
        .changes()
        .to("finals", Json, Json);
    let processor = b.build().unwrap();

    let mut feeds: Vec<Feed> = case
        .parts
        .iter()
        .enumerate()
        .map(|(p, evs)| Feed {
            topic: "in",
            partition: p as u32,
            records: evs.iter().map(record).collect(),
            next: 0,
        })
        .collect();
    let (registry, metrics) = drive(&processor, dir.path(), &logs, &mut feeds, &case.sched);
    let finals = common::read_topic(&*logs, "finals")
        .iter()
        .map(|r| {
            let w: Windowed<u32> = serde_json::from_slice(r.key.as_deref().unwrap()).unwrap();
            (flat(w), serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
        })
        .collect();
    let (late, dead) = late_and_dead_letters(&*logs, &metrics);
    OutA {
        tumbling: windowed_table(&processor, &registry, &*logs, "tumbling"),
        hopping: windowed_table(&processor, &registry, &*logs, "hopping"),
        sessions: sessions.then(|| windowed_table(&processor, &registry, &*logs, "sessions")),
        final_table: windowed_table(&processor, &registry, &*logs, "tumbling-final"),
        finals,
        late,
        dead,
        records_in: metrics.iter().map(|m| m.records_in).sum(),
    }
}

/// Count per (new key, tumbling window).
fn tumbling_reference(evs: &[Ev], size: i64) -> BTreeMap<W, u64> {
    let mut out = BTreeMap::new();
    for e in evs {
        let start = e.ts.div_euclid(size) * size;
        *out.entry((new_key(e.key), start, start + size)).or_default() += 1;
    }
    out
}

/// Sum of ids per (new key, hopping window): every `[k·advance, k·advance + size)` holding ts.
fn hopping_reference(evs: &[Ev], size: i64, advance: i64) -> BTreeMap<W, i64> {
    let mut out = BTreeMap::new();
    for e in evs {
        let mut k = (e.ts - size).div_euclid(advance);
        while k * advance <= e.ts {
            let start = k * advance;
            if start + size > e.ts {
                *out.entry((new_key(e.key), start, start + size)).or_default() += e.id;
            }
            k += 1;
        }
    }
    out
}

/// Count per (new key, session): each key's sorted times, split where two neighbours are more
/// than `gap` apart; a session is `[first, last + 1)`.
fn session_reference(evs: &[Ev], gap: i64) -> BTreeMap<W, u64> {
    let mut by_key: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for e in evs {
        by_key.entry(new_key(e.key)).or_default().push(e.ts);
    }
    let mut out = BTreeMap::new();
    for (k, mut times) in by_key {
        times.sort_unstable();
        let (mut start, mut last, mut count) = (times[0], times[0], 0);
        for &t in &times {
            if t - last > gap {
                out.insert((k, start, last + 1), count);
                (start, count) = (t, 0);
            }
            last = t;
            count += 1;
        }
        out.insert((k, start, last + 1), count);
    }
    out
}

fn check_a(case: &CaseA, sessions: bool) -> Result<(), TestCaseError> {
    let s = case.shape;
    check_input(&case.parts, s.bound, s.grace + s.size.max(s.hop) - 1)?;
    let out = run_a(case, sessions);
    let all: Vec<Ev> = case.parts.iter().flatten().copied().collect();
    let on_time: Vec<Ev> = all.iter().filter(|e| !e.injected).copied().collect();

    let tumbling = tumbling_reference(&on_time, s.size);
    prop_assert_eq!(&out.tumbling.0, &tumbling, "tumbling table");
    prop_assert_eq!(&out.tumbling.1, &tumbling, "tumbling changelog");
    prop_assert_eq!(&out.final_table.0, &tumbling, "Emit::Final table");
    prop_assert_eq!(&out.final_table.1, &tumbling, "Emit::Final changelog");
    let hopping = hopping_reference(&on_time, s.hop, s.advance);
    prop_assert_eq!(&out.hopping.0, &hopping, "hopping table");
    prop_assert_eq!(&out.hopping.1, &hopping, "hopping changelog");
    if let Some((table, changelog)) = &out.sessions {
        let sessions = session_reference(&on_time, s.gap);
        prop_assert_eq!(table, &sessions, "session table");
        prop_assert_eq!(changelog, &sessions, "session changelog");
    }
    // A window is final once, with its whole count (which windows the watermark passed
    // depends on how the repartition topic interleaved, so only these are checked).
    let mut emitted = BTreeSet::new();
    for (w, count) in &out.finals {
        prop_assert!(emitted.insert(*w), "window {:?} emitted as final twice", w);
        prop_assert_eq!(Some(count), tumbling.get(w), "final count of {:?}", w);
    }
    // Exactly the injected records are late, once per windowed operator, and dead-lettered.
    let operators = 3 + usize::from(sessions);
    let want = injected_ids(all.iter(), operators);
    prop_assert_eq!(out.late, want.len() as u64, "records counted late");
    prop_assert_eq!(out.dead, want, "ids of the dead letters");
    prop_assert_eq!(out.records_in, 2 * all.len() as u64, "each record read once per stage");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A windowed stream–stream join of two co-partitioned topics.

#[derive(Debug, Clone)]
struct CaseB {
    bound: i64,
    window: JoinWindow,
    /// Records of `left` and `right` by partition, in offset order.
    left: Vec<Vec<Ev>>,
    right: Vec<Vec<Ev>>,
    sched: Schedule,
}

/// Keys of the join (few, so that pairs are many).
const JOIN_KEYS: u32 = 5;

fn case_b() -> impl Strategy<Value = CaseB> {
    let records = || prop::collection::vec((0u32..JOIN_KEYS, 0i64..=6, any::<u16>()), 0..=150);
    (
        (1u32..=4, 2i64..=40, any::<u16>(), 0i64..=20, 0i64..=20),
        // Per partition: a shift (×5 ms) for both topics, and one more of 0–50 ms for each.
        prop::collection::vec((0i64..=800, 0i64..=10, 0i64..=10), 4),
        (records(), records()),
        prop::collection::vec(any::<RawInjection>(), 0..=4),
        any::<bool>(),
        schedule(),
    )
        .prop_map(|((n, g, bound, before, after), shifts, (l, r), injections, far, sched)| {
            let grace = 5 * g;
            let bound = 5 * (i64::from(bound) % (g + 1));
            let window = JoinWindow { before_ms: 5 * before, after_ms: 5 * after, grace_ms: grace };
            let mut id = 0;
            // Each topic is one sequence (so within `bound` in every partition), split by key
            // as the client partitioner does, each partition then shifted by its own delay.
            let mut split = |raw: &RawRecords, side: usize| {
                let evs = timed(0, raw, bound, &mut id);
                let mut parts = vec![Vec::new(); n as usize];
                for e in evs {
                    let p = partition_for_key(e.key.to_string().as_bytes(), n) as usize;
                    let (shift, l, r) = shifts[p];
                    let ts = BASE + 5 * (shift + if side == 0 { l } else { r }) + e.ts;
                    parts[p].push(Ev { ts, ..e });
                }
                parts
            };
            let (mut left, mut right) = (split(&l, 0), split(&r, 1));
            let behind = |extra: u16| {
                if far { HOURS + i64::from(extra) } else { grace + 1 + i64::from(extra) % 500 }
            };
            let (left_inj, right_inj) = injections.split_at(injections.len() / 2);
            inject(&mut left, left_inj, behind, &mut id);
            inject(&mut right, right_inj, behind, &mut id);
            CaseB { bound, window, left, right, sched }
        })
}

/// (key, left id, right id, output timestamp)
type Pair = (u32, i64, i64, i64);

fn check_b(case: &CaseB) -> Result<(), TestCaseError> {
    check_input(&case.left, case.bound, case.window.grace_ms)?;
    check_input(&case.right, case.bound, case.window.grace_ms)?;
    let n = case.left.len() as u32;
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    logs.create_topic("left", n, false).unwrap();
    logs.create_topic("right", n, false).unwrap();
    let b = ProcessorBuilder::new("pairs", 1);
    b.dead_letter("late");
    let l: Stream<u32, i64> = b.stream("left", Json, Json);
    let r: Stream<u32, i64> = b.stream("right", Json, Json);
    l.join(&r, case.window, |_, a, b| (*a, *b)).to("pairs", Json, Json);
    let processor = b.build().unwrap();

    let mut feeds: Vec<Feed> = Vec::new();
    for (topic, parts) in [("left", &case.left), ("right", &case.right)] {
        for (p, evs) in parts.iter().enumerate() {
            let records = evs.iter().map(record).collect();
            feeds.push(Feed { topic, partition: p as u32, records, next: 0 });
        }
    }
    let (_, metrics) = drive(&processor, dir.path(), &logs, &mut feeds, &case.sched);

    let mut got: Vec<Pair> = common::read_topic(&*logs, "pairs")
        .iter()
        .map(|r| {
            let key: u32 = serde_json::from_slice(r.key.as_deref().unwrap()).unwrap();
            let (a, b): (i64, i64) = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            (key, a, b, r.ts)
        })
        .collect();
    got.sort_unstable();
    let w = case.window;
    let mut want: Vec<Pair> = Vec::new();
    for le in case.left.iter().flatten().filter(|e| !e.injected) {
        for re in case.right.iter().flatten().filter(|e| !e.injected) {
            if le.key == re.key && le.ts - w.before_ms <= re.ts && re.ts <= le.ts + w.after_ms {
                want.push((le.key, le.id, re.id, le.ts.max(re.ts)));
            }
        }
    }
    want.sort_unstable();
    prop_assert_eq!(got, want, "pairs");
    let all = case.left.iter().chain(&case.right).flatten();
    let want_dead = injected_ids(all.clone(), 1);
    let (late, dead) = late_and_dead_letters(&*logs, &metrics);
    prop_assert_eq!(late, want_dead.len() as u64, "records counted late");
    prop_assert_eq!(dead, want_dead, "ids of the dead letters");
    let records_in: u64 = metrics.iter().map(|m| m.records_in).sum();
    prop_assert_eq!(records_in, all.count() as u64, "each record read once");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn windows_behind_a_repartition_equal_the_reference_and_nothing_is_late(
        case in case_a(0..=0),
    ) {
        check_a(&case, case.far)?;
    }

    #[test]
    fn exactly_the_records_far_behind_their_own_partition_are_late(case in case_a(1..=4)) {
        // Sessions only with records hours behind (see the module's comment).
        check_a(&case, case.far)?;
    }

    #[test]
    fn a_join_of_co_partitioned_topics_emits_exactly_the_on_time_pairs(case in case_b()) {
        check_b(&case)?;
    }
}
