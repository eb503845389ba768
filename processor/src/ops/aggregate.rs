//! Aggregate by key into a table, and tables fed straight from a topic or a stream.
//!
//! **Change cache.** An aggregate updates its accumulator and sends the new result downstream
//! for every record, but writes the table (store, changelog, subscribers) once per key per
//! task flush — at the end of each poll, before a snapshot, or when `MAX_CACHED_KEYS` keys
//! are waiting — as Kafka Streams' record cache does. A key's cached change keeps the output
//! position of the last record that changed it (reserved when that record was processed), and
//! a flush writes the changes in position order, so recovery's "highest position written"
//! still tells exactly which changes exist. Between flushes readers see the table as of the
//! last flush; the changelog holds every flushed state of each key once, and its latest value
//! per key always equals the table. A table that a stream–table join of the same task reads
//! is written through on every record instead, so the join sees each change at once. A cached
//! result is encoded when it is written: one that JSON cannot hold (a map with non-string keys)
//! is then counted as a decode error and logged, where a written-through one sets its record
//! aside.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashMap;
use hashbrown::hash_map::RawEntryMut;
use serde::Serialize;

use crate::aggregator::{Aggregator, StateData};

use crate::codec::{Codec, state_bytes};
use crate::context::Cx;
use crate::error::RecordError;
use crate::graph::{Down, Node, Rec};
use crate::position::Position;
use crate::state::{StateOp, load_map, put_bytes};
use crate::table::TableStore;

/// Keys with cached changes after which an aggregate flushes them without waiting for the
/// task: bounds the memory of a long poll.
pub(crate) const MAX_CACHED_KEYS: usize = 65_536;

/// One key's accumulator and its cached change.
pub(crate) struct Slot<Acc> {
    acc: Acc,
    /// Position and event time of the last record whose change is not yet in the table.
    cached: Option<(Position, i64)>,
}

/// The accumulators of an unwindowed aggregate by the key's state encoding, and which keys
/// have a cached change: shared by [`Aggregate`] and the chunk-at-a-time
/// `raw_aggregate::RawAggregate`, so both keep the same state, write the same changes and
/// snapshot the same bytes.
///
/// Keys are split over *lanes* by bits of their hash (one lane for `Aggregate`; sixteen for
/// `RawAggregate`, whose lanes are dealt to two threads that fold them at once). Which lane holds a key changes
/// nothing outside: snapshots list every lane's keys in key order, and a flush writes every
/// lane's changes in position order.
pub(crate) struct Accs<Acc> {
    lanes: Vec<Lane<Acc>>,
    /// One hasher for every lane, so a key's hash (and so its lane) is the same in all.
    hasher: foldhash::fast::RandomState,
}

/// The lane of a key with this hash among `lanes`: by bits 48–55, which hashbrown's tables use
/// for neither the bucket (the low bits, up to a table of 2^48 buckets) nor the tag (the top
/// seven), so every lane's table stays evenly spread.
pub(crate) fn lane_for(hash: u64, lanes: usize) -> usize {
    usize::from((hash >> 48) as u8) % lanes.max(1)
}

/// One lane's keys.
pub(crate) struct Lane<Acc> {
    /// A hash map for speed (hashbrown's, so that a key is hashed once per record, even when
    /// it is new); snapshots sort it.
    map: HashMap<Box<[u8]>, Slot<Acc>, foldhash::fast::RandomState>,
    /// Keys with a cached change, each once.
    cached: Vec<Box<[u8]>>,
}

impl<Acc> Lane<Acc> {
    /// Folds one record into `key`'s accumulator (made by `init` for a new key) with `fold`;
    /// with `change`, caches the change at that position and event time, to be written to the
    /// table at the next flush. `hash` is [`Accs::hash`]`(key)`.
    pub fn add(
        &mut self,
        hash: u64,
        key: &[u8],
        init: impl FnOnce() -> Acc,
        fold: impl FnOnce(&mut Acc),
        change: Option<(Position, i64)>,
    ) -> &Acc {
        let slot = match self.map.raw_entry_mut().from_key_hashed_nocheck(hash, key) {
            RawEntryMut::Occupied(o) => o.into_mut(),
            RawEntryMut::Vacant(v) => {
                v.insert_hashed_nocheck(hash, key.into(), Slot { acc: init(), cached: None }).1
            }
        };
        fold(&mut slot.acc);
        if let Some(change) = change {
            if slot.cached.is_none() {
                self.cached.push(key.into());
            }
            slot.cached = Some(change);
        }
        &slot.acc
    }
}

impl<Acc: StateData> Accs<Acc> {
    pub fn new(lanes: usize) -> Self {
        let hasher = foldhash::fast::RandomState::default();
        let lane = || Lane { map: HashMap::with_hasher(hasher), cached: Vec::new() };
        Self { lanes: (0..lanes.max(1)).map(|_| lane()).collect(), hasher }
    }

    /// The hash [`Lane::add`] wants for `key`.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The hasher of [`hash`](Self::hash), for hashing keys on another thread.
    pub fn hasher(&self) -> foldhash::fast::RandomState {
        self.hasher
    }

    /// The lane of a key with this hash: [`lane_for`] of this many lanes.
    pub fn lane_of(&self, hash: u64) -> usize {
        lane_for(hash, self.lanes.len())
    }

    pub fn lanes_mut(&mut self) -> &mut [Lane<Acc>] {
        &mut self.lanes
    }

    /// [`Lane::add`] in the key's lane.
    pub fn add(
        &mut self,
        hash: u64,
        key: &[u8],
        init: impl FnOnce() -> Acc,
        fold: impl FnOnce(&mut Acc),
        change: Option<(Position, i64)>,
    ) -> &Acc {
        let lane = self.lane_of(hash);
        self.lanes[lane].add(hash, key, init, fold, change)
    }

    /// Keys with a change not yet written.
    pub fn waiting(&self) -> usize {
        self.lanes.iter().map(|l| l.cached.len()).sum()
    }

    /// Writes every cached change to `store`, in position order.
    pub fn flush<Out: Serialize>(
        &mut self,
        result: impl Fn(&Acc) -> Out,
        store: &TableStore,
        cx: &mut Cx,
    ) {
        let mut changes = Vec::with_capacity(self.waiting());
        for lane in &mut self.lanes {
            for key in lane.cached.drain(..) {
                if let Some(slot) = lane.map.get_mut(&key)
                    && let Some((pos, ts)) = slot.cached.take()
                {
                    // The accumulator has not changed since the change was cached: its result
                    // now is the result then.
                    match state_bytes(&result(&slot.acc)) {
                        Ok(value) => changes.push((pos, ts, key, value)),
                        Err(e) => {
                            cx.metrics.decode_errors += 1;
                            tracing::warn!(error = %e, "an aggregate result JSON cannot hold is not written to the table");
                        }
                    }
                }
            }
        }
        changes.sort_unstable_by_key(|c| c.0.order());
        for (pos, ts, key, value) in changes {
            store.put_at(key.into_vec(), Some(value), ts, pos, cx);
        }
    }

    /// The framing of `state::save_map`, in key order.
    pub fn save(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let mut slots: Vec<(&Box<[u8]>, &Slot<Acc>)> =
            self.lanes.iter().flat_map(|l| l.map.iter()).collect();
        slots.sort_unstable_by_key(|(k, _)| *k);
        out.extend_from_slice(&(slots.len() as u64).to_le_bytes());
        for (key, slot) in slots {
            put_bytes(out, key);
            put_bytes(out, &serde_json::to_vec(&slot.acc)?);
        }
        Ok(())
    }

    pub fn load(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
        let accs: BTreeMap<Vec<u8>, Acc> = load_map(&mut bytes)?;
        for lane in &mut self.lanes {
            lane.map.clear();
            lane.cached.clear();
        }
        for (key, acc) in accs {
            let hash = self.hash(&key);
            let lane = self.lane_of(hash);
            let slot = Slot { acc, cached: None };
            self.lanes[lane].map.insert(key.into_boxed_slice(), slot);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.lanes.iter().map(|l| l.map.len()).sum()
    }
}

/// `aggregate(table, aggregator)` on a keyed stream: one accumulator per key; every record
/// updates the table and sends the new result downstream.
pub(crate) struct Aggregate<K, V, A: Aggregator<V>> {
    pub agg: Arc<A>,
    pub accs: Accs<A::Acc>,
    /// The current record's key encoding (reused).
    pub key_buf: Vec<u8>,
    pub store: Arc<TableStore>,
    pub down: Down<K, A::Out>,
    pub _v: std::marker::PhantomData<fn(V)>,
}

impl<K, V, A: Aggregator<V>> Aggregate<K, V, A> {
    pub fn new(agg: Arc<A>, store: Arc<TableStore>, down: Down<K, A::Out>) -> Self {
        Self {
            agg,
            accs: Accs::new(1),
            key_buf: Vec::new(),
            store,
            down,
            _v: std::marker::PhantomData,
        }
    }
}

impl<K: StateData, V, A: Aggregator<V>> Node<K, V> for Aggregate<K, V, A> {
    fn push(&mut self, rec: Rec<K, V>, cx: &mut Cx) {
        self.key_buf.clear();
        if let Err(e) = serde_json::to_writer(&mut self.key_buf, &rec.key) {
            return cx.set_aside(&RecordError::State(e.to_string()));
        }
        let (agg, key) = (&self.agg, &self.key_buf[..]);
        // A table a join of this task reads is written through; others cache the change.
        let through = self.store.read_inside();
        let change = (!through).then(|| (cx.reserve(), rec.ts));
        let acc = self.accs.add(
            self.accs.hash(key),
            key,
            || agg.init_keyed(key),
            |acc| agg.add(acc, &rec.value, rec.ts),
            change,
        );
        let out = agg.result(acc);
        if through {
            match state_bytes(&out) {
                Ok(v) => self.store.put(self.key_buf.clone(), Some(v), rec.ts, cx),
                Err(e) => return cx.set_aside(&RecordError::State(e.to_string())),
            }
        } else if self.accs.waiting() >= MAX_CACHED_KEYS {
            self.flush(cx);
        }
        self.down.push(Rec { key: rec.key, value: out, ts: rec.ts }, cx);
    }
}

impl<K, V, A: Aggregator<V>> StateOp for Aggregate<K, V, A> {
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

/// A stream read as a table: each record sets its key (the table's only state is the store).
pub(crate) struct Upsert<K, V> {
    pub store: Arc<TableStore>,
    pub down: Down<K, V>,
}

impl<K: StateData, V: StateData> Node<K, V> for Upsert<K, V> {
    fn push(&mut self, rec: Rec<K, V>, cx: &mut Cx) {
        let Some(kb) = super::key_bytes(&rec.key, cx) else { return };
        match state_bytes(&rec.value) {
            Ok(v) => self.store.put(kb, Some(v), rec.ts, cx),
            Err(e) => return cx.set_aside(&RecordError::State(e.to_string())),
        }
        self.down.push(rec, cx);
    }
}

/// A topic read as a table (a changelog): a record sets its key, a null value deletes it.
pub(crate) struct TopicTable<K, V> {
    pub key: Arc<dyn Codec<K>>,
    pub value: Arc<dyn Codec<V>>,
    pub store: Arc<TableStore>,
    pub down: Down<K, V>,
}

impl<K: StateData, V: StateData> Node<Option<Bytes>, Option<Bytes>> for TopicTable<K, V> {
    fn push(&mut self, rec: Rec<Option<Bytes>, Option<Bytes>>, cx: &mut Cx) {
        let key = match self.key.decode(rec.key.as_deref()) {
            Ok(k) => k,
            Err(e) => return cx.set_aside(&RecordError::Key(e)),
        };
        let Some(kb) = super::key_bytes(&key, cx) else { return };
        let Some(raw) = rec.value.as_deref() else {
            return self.store.put(kb, None, rec.ts, cx);
        };
        let value = match self.value.decode(Some(raw)) {
            Ok(v) => v,
            Err(e) => return cx.set_aside(&RecordError::Value(e)),
        };
        match state_bytes(&value) {
            Ok(v) => self.store.put(kb, Some(v), rec.ts, cx),
            Err(e) => return cx.set_aside(&RecordError::State(e.to_string())),
        }
        self.down.push(Rec { key, value, ts: rec.ts }, cx);
    }
}
