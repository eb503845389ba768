//! A keyed aggregate computed straight from a source's records as they are in the log, a chunk
//! at a time: the replay path of the commonest derived table (a count, sum, ... per key of a
//! topic) without a node graph between the log and the accumulators.
//!
//! An [`Extract`] reads the group key (already in its state encoding), the value to fold and the
//! event time from a record's bytes; [`RawAggregate`] folds them into the same accumulators,
//! cached changes and snapshot bytes as `aggregate::Aggregate` keeps for the equivalent graph
//! (`stream` → `select_key` → `aggregate`), so the table, its changelog (records and positions)
//! and its snapshots are byte for byte the same whichever path ran.
//!
//! When it is its source's only reader in a task, the task hands it whole chunks
//! ([`ChunkNode`]); records are then decoded once, in place, and each costs one extract, one hash
//! and one map probe. Otherwise (another operator reads the same source, or the processor has a
//! dead-letter topic, which needs each record's bytes at hand) it is an ordinary node. When
//! something reads the table's changes, each record also pushes its new result downstream, as
//! the graph does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::aggregator::{Aggregator, StateData};
use crate::codec::{from_state_bytes, state_bytes};
use crate::context::Cx;
use crate::error::{RecordError, Result};
use crate::graph::{ChunkNode, Down, Node, Rec};
use crate::input::Chunk;
use std::hash::BuildHasher;

use crate::ops::aggregate::{Accs, Lane, MAX_CACHED_KEYS, lane_for};
use crate::position::Position;
use crate::state::StateOp;
use crate::table::TableStore;

/// Reads what a keyed aggregate needs from a source record, as it is in the log.
///
/// Must be deterministic (a function of the record alone), as every operator is.
pub trait Extract: Send + Sync + 'static {
    /// What the aggregator folds (`()` for a count).
    type Value;

    /// Appends the record's group key, in its state encoding (the JSON of the key, as
    /// [`Stream::aggregate`](crate::Stream::aggregate) keys its tables), to `out` (which may
    /// hold other records' keys before it: leave them as they are), and returns the value to fold and the record's event time (`ts` is the log
    /// record's timestamp). `Ok(None)` leaves the record out, as a filter would; an error sets
    /// it aside.
    fn extract(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        ts: i64,
        out: &mut Vec<u8>,
    ) -> Result<Option<(Self::Value, i64)>, RecordError>;
}

/// The fused operator: extract, then aggregate by key into a table.
pub(crate) struct RawAggregate<K, E: Extract, A: Aggregator<E::Value>> {
    pub extract: Arc<E>,
    pub agg: Arc<A>,
    pub accs: Accs<A::Acc>,
    /// The current record's key encoding (reused).
    pub key_buf: Vec<u8>,
    pub store: Arc<TableStore>,
    /// The table's changes, as `K` (decoded from the key's encoding when something reads them).
    pub down: Down<K, A::Out>,
    /// Pass one's buffers, one per piece of a chunk, kept between chunks.
    runs: Vec<Extracted<E::Value>>,
}

/// Lanes of a `RawAggregate`'s accumulators: more than the two threads that fold a chunk, so
/// that each chunk's lanes can be dealt to the threads by how many records they hold — a few
/// keys often hold a large share of the records (the commonest URL of an access log ~15 %), and
/// two fixed halves of the keys would leave one thread folding much longer than the other.
const LANES: usize = 16;

/// A chunk smaller than this (bytes of records) is done on the task's thread alone: a helper
/// thread would cost more to start than it saves.
const PARALLEL_MIN_BYTES: usize = 256 << 10;

impl<K: StateData, E: Extract, A: Aggregator<E::Value>> RawAggregate<K, E, A> {
    pub fn new(
        extract: Arc<E>,
        agg: Arc<A>,
        store: Arc<TableStore>,
        down: Down<K, A::Out>,
    ) -> Self {
        Self {
            extract,
            agg,
            accs: Accs::new(LANES),
            key_buf: Vec::new(),
            store,
            down,
            runs: Vec::new(),
        }
    }

    /// One record, as the graph would handle it: the change cached (or written through) at
    /// the record's position, the new result pushed downstream.
    fn one(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, ts: i64, cx: &mut Cx) {
        self.key_buf.clear();
        let (v, ts) = match self.extract.extract(key, value, ts, &mut self.key_buf) {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(e) => return cx.set_aside(&e),
        };
        let (agg, key) = (&self.agg, &self.key_buf[..]);
        let through = self.store.read_inside();
        let change = (!through).then(|| (cx.reserve(), ts));
        let acc = self.accs.add(
            self.accs.hash(key),
            key,
            || agg.init_keyed(key),
            |acc| agg.add(acc, &v, ts),
            change,
        );
        let out = agg.result(acc);
        if through {
            match state_bytes(&out) {
                Ok(bytes) => self.store.put(self.key_buf.clone(), Some(bytes), ts, cx),
                Err(e) => return cx.set_aside(&RecordError::State(e.to_string())),
            }
        } else if self.accs.waiting() >= MAX_CACHED_KEYS {
            self.flush(cx);
        }
        if !self.down.drops_all() {
            match from_state_bytes::<K>(&self.key_buf) {
                Ok(k) => self.down.push(Rec { key: k, value: out, ts }, cx),
                Err(e) => cx.set_aside(&RecordError::State(e)),
            }
        }
    }
}

impl<K: StateData, E: Extract, A: Aggregator<E::Value>> Node<Option<Bytes>, Option<Bytes>>
    for RawAggregate<K, E, A>
{
    fn push(&mut self, rec: Rec<Option<Bytes>, Option<Bytes>>, cx: &mut Cx) {
        self.one(rec.key.as_deref(), rec.value.as_deref(), rec.ts, cx);
    }
}

/// What pass one made of a run of a chunk's batches.
struct Extracted<V> {
    /// The records' key encodings, one after another.
    arena: Vec<u8>,
    /// The records to fold, by the lane of their key, each lane's in record order.
    lanes: Vec<Vec<Item<V>>>,
    /// Records set aside, by index in the run.
    errors: Vec<(usize, RecordError)>,
    /// New records in the run, and the offset of the last.
    count: u64,
    last_offset: Option<u64>,
}

impl<V> Default for Extracted<V> {
    fn default() -> Self {
        Self {
            arena: Vec::new(),
            lanes: Vec::new(),
            errors: Vec::new(),
            count: 0,
            last_offset: None,
        }
    }
}

/// One record to fold.
struct Item<V> {
    /// Index in the run.
    index: usize,
    hash: u64,
    /// Range of the key's encoding in the arena.
    key: (usize, usize),
    value: V,
    ts: i64,
}

impl<V> Extracted<V> {
    /// Pass one over the batches `areas` of `chunk`: decode, extract and hash each new record,
    /// sorting them into `lanes` lanes.
    fn fill<E: Extract<Value = V>>(
        &mut self,
        (extract, hasher): (&E, &foldhash::fast::RandomState),
        lanes: usize,
        chunk: &Chunk<'_>,
        areas: std::ops::Range<usize>,
    ) -> Result<()> {
        self.arena.clear();
        self.lanes.resize_with(lanes, Vec::new);
        self.lanes.iter_mut().for_each(Vec::clear);
        self.errors.clear();
        self.last_offset = None;
        let mut index = 0;
        self.count = chunk.records(areas, |rec| {
            // The key is written straight into the arena (taken back if the record is left
            // out or set aside).
            let at = self.arena.len();
            match extract.extract(rec.key, rec.value, rec.timestamp, &mut self.arena) {
                Ok(Some((value, ts))) => {
                    let hash = hasher.hash_one(self.arena.get(at..).unwrap_or_default());
                    let item = Item { index, hash, key: (at, self.arena.len()), value, ts };
                    if let Some(lane) = self.lanes.get_mut(lane_for(hash, lanes)) {
                        lane.push(item);
                    }
                }
                Ok(None) => self.arena.truncate(at),
                Err(e) => {
                    self.arena.truncate(at);
                    self.errors.push((index, e));
                }
            }
            self.last_offset = Some(rec.offset);
            index += 1;
        })?;
        Ok(())
    }

    /// Records of lane `lane` to fold.
    fn in_lane(&self, lane: usize) -> &[Item<V>] {
        self.lanes.get(lane).map_or(&[], Vec::as_slice)
    }
}

/// Pass two for one lane: folds, in chunk order, the records of `runs` whose key is in lane
/// `index`, caching each change at its record's position (each run with its first record's).
fn fold_lane<V, A: Aggregator<V>>(
    agg: &A,
    lane: &mut Lane<A::Acc>,
    index: usize,
    runs: &[(&Extracted<V>, Position)],
) {
    for (run, base) in runs {
        for item in run.in_lane(index) {
            let key = &run.arena[item.key.0..item.key.1];
            let pos = Position { n: base.n + item.index as u64, ..*base };
            lane.add(
                item.hash,
                key,
                || agg.init_keyed(key),
                |acc| agg.add(acc, &item.value, item.ts),
                Some((pos, item.ts)),
            );
        }
    }
}

impl<K: StateData, E: Extract, A: Aggregator<E::Value>> ChunkNode for RawAggregate<K, E, A>
where
    E::Value: Send + Sync,
    A::Acc: Send,
{
    fn push_chunk(
        &mut self,
        chunk: &Chunk<'_>,
        n: u64,
        threads: usize,
        cx: &mut Cx,
    ) -> Result<u64> {
        if self.store.read_inside() || !self.down.drops_all() {
            let mut i = 0;
            return chunk.records(0..chunk.areas.len(), |rec| {
                cx.begin(n + i);
                cx.input_offset = rec.offset;
                self.one(rec.key, rec.value, rec.timestamp, cx);
                i += 1;
            });
        }
        // Nothing reads the changes and the table is cached: each record's only output is its
        // cached change, at the first position of the record. Pass one decodes, extracts and
        // hashes every record of a piece of the chunk's batches; pass two folds each lane's
        // records. With a helper thread, the two threads take the pieces, then the lanes
        // (largest first), one at a time until none is left: a thread slowed by anything else
        // on the machine leaves more of the work to the other instead of holding it up.
        let (extract, agg, hasher) = (&*self.extract, &*self.agg, self.accs.hasher());
        let bytes: usize = chunk.areas.iter().map(|(_, a)| a.len()).sum();
        let parallel = threads > 1 && bytes >= PARALLEL_MIN_BYTES;
        let pieces = chunk.pieces(if parallel { PIECES } else { 1 });
        let lanes = self.accs.lanes_mut();
        let count = lanes.len();
        let mut runs = std::mem::take(&mut self.runs);
        runs.resize_with(pieces.len(), Extracted::default);
        let runs: Vec<Mutex<Extracted<E::Value>>> = runs.into_iter().map(Mutex::new).collect();
        let next = AtomicUsize::new(0);
        let pass_one = || -> Result<()> {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let (Some(range), Some(run)) = (pieces.get(i), runs.get(i)) else { return Ok(()) };
                lock(run).fill((extract, &hasher), count, chunk, range.clone())?;
            }
        };
        both(parallel, pass_one, |a, b| a.and(b))?;
        let runs: Vec<Extracted<E::Value>> = runs
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
            .collect();
        let first = cx.first_position(n);
        let mut based = Vec::with_capacity(runs.len());
        let mut at = n;
        for run in &runs {
            based.push((run, Position { n: at, ..first }));
            at += run.count;
        }
        let order = by_size(&based, count);
        let lanes: Vec<Mutex<&mut Lane<A::Acc>>> = lanes.iter_mut().map(Mutex::new).collect();
        let next = AtomicUsize::new(0);
        let pass_two = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((index, lane)) = order.get(i).and_then(|&l| Some((l, lanes.get(l)?))) else {
                return;
            };
            fold_lane(agg, &mut lock(lane), index, &based);
        };
        both(parallel, pass_two, |(), ()| ());
        drop(lanes);
        let total = at - n;
        for (run, base) in &based {
            for (index, e) in &run.errors {
                cx.begin(base.n + *index as u64);
                cx.set_aside(e);
            }
        }
        if let Some(last) = runs.iter().rev().find_map(|run| run.last_offset) {
            cx.begin(n + total - 1);
            cx.input_offset = last;
        }
        drop(based);
        self.runs = runs;
        if self.accs.waiting() >= MAX_CACHED_KEYS {
            self.flush(cx);
        }
        Ok(total)
    }
}

/// Pieces of a chunk pass one cuts it into when two threads share it: enough that the two
/// finish about together, few enough that each is thousands of records.
const PIECES: usize = 8;

/// Runs `work` on this thread and, when `parallel`, on a helper thread too; `merge` combines
/// the two results.
fn both<T: Send>(parallel: bool, work: impl Fn() -> T + Sync, merge: impl FnOnce(T, T) -> T) -> T {
    if !parallel {
        return work();
    }
    std::thread::scope(|s| {
        let helper = s.spawn(&work);
        let mine = work();
        merge(join(helper), mine)
    })
}

/// A lock whose holder cannot have panicked midway (a panic in pass one or two is re-raised
/// on the task's thread before anything reads what it held).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The lanes in the order pass two takes them: by how many records of `runs` each holds,
/// largest first (the last ones taken are the smallest, so the threads end about together).
fn by_size<V>(runs: &[(&Extracted<V>, Position)], lanes: usize) -> Vec<usize> {
    let size = |lane| runs.iter().map(|(run, _)| run.in_lane(lane).len()).sum::<usize>();
    let mut order: Vec<(usize, usize)> = (0..lanes).map(|lane| (size(lane), lane)).collect();
    order.sort_unstable_by(|a, b| b.cmp(a));
    order.into_iter().map(|(_, lane)| lane).collect()
}

/// Waits for a helper thread; its panic is this thread's.
fn join<T>(helper: std::thread::ScopedJoinHandle<'_, T>) -> T {
    match helper.join() {
        Ok(t) => t,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

impl<K, E: Extract, A: Aggregator<E::Value>> StateOp for RawAggregate<K, E, A> {
    fn save(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        self.accs.save(out)
    }

    fn load(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        self.accs.load(bytes)
    }

    fn entries(&self) -> u64 {
        self.accs.len() as u64
    }

    fn flush(&mut self, cx: &mut Cx) {
        let agg = &self.agg;
        self.accs.flush(|acc| agg.result(acc), &self.store, cx);
    }
}
