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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

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

/// `aggregate(table, aggregator)` on a keyed stream: one accumulator per key; every record
/// updates the table and sends the new result downstream.
pub(crate) struct Aggregate<K, V, A: Aggregator<V>> {
    pub agg: Arc<A>,
    /// By the key's state encoding. A hash map for speed; snapshots sort it.
    pub accs: HashMap<Box<[u8]>, Slot<A::Acc>, foldhash::fast::RandomState>,
    /// Keys with a cached change, each once.
    pub cached: Vec<Box<[u8]>>,
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
            accs: HashMap::default(),
            cached: Vec::new(),
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
        let slot = match self.accs.get_mut(&self.key_buf[..]) {
            Some(slot) => slot,
            None => {
                let slot = Slot { acc: self.agg.init_keyed(&self.key_buf), cached: None };
                self.accs.entry(self.key_buf.as_slice().into()).or_insert(slot)
            }
        };
        self.agg.add(&mut slot.acc, &rec.value, rec.ts);
        let out = self.agg.result(&slot.acc);
        if self.store.read_inside() {
            match state_bytes(&out) {
                Ok(v) => self.store.put(self.key_buf.clone(), Some(v), rec.ts, cx),
                Err(e) => return cx.set_aside(&RecordError::State(e.to_string())),
            }
        } else {
            if slot.cached.is_none() {
                self.cached.push(self.key_buf.as_slice().into());
            }
            slot.cached = Some((cx.reserve(), rec.ts));
            if self.cached.len() >= MAX_CACHED_KEYS {
                self.flush(cx);
            }
        }
        self.down.push(Rec { key: rec.key, value: out, ts: rec.ts }, cx);
    }
}

impl<K, V, A: Aggregator<V>> StateOp for Aggregate<K, V, A> {
    fn save(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        // The framing of `state::save_map`, in key order.
        let mut keys: Vec<&Box<[u8]>> = self.accs.keys().collect();
        keys.sort_unstable();
        out.extend_from_slice(&(keys.len() as u64).to_le_bytes());
        for key in keys {
            put_bytes(out, key);
            if let Some(slot) = self.accs.get(key) {
                put_bytes(out, &serde_json::to_vec(&slot.acc)?);
            }
        }
        Ok(())
    }

    fn load(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
        let accs: BTreeMap<Vec<u8>, A::Acc> = load_map(&mut bytes)?;
        self.accs = accs
            .into_iter()
            .map(|(k, acc)| (k.into_boxed_slice(), Slot { acc, cached: None }))
            .collect();
        self.cached.clear();
        Ok(())
    }

    fn entries(&self) -> u64 {
        self.accs.len() as u64
    }

    fn flush(&mut self, cx: &mut Cx) {
        let mut changes = Vec::with_capacity(self.cached.len());
        for key in self.cached.drain(..) {
            if let Some(slot) = self.accs.get_mut(&key)
                && let Some((pos, ts)) = slot.cached.take()
            {
                // The accumulator has not changed since the change was cached: its result now
                // is the result then.
                match state_bytes(&self.agg.result(&slot.acc)) {
                    Ok(value) => changes.push((pos, ts, key, value)),
                    Err(e) => {
                        cx.metrics.decode_errors += 1;
                        tracing::warn!(error = %e, "an aggregate result JSON cannot hold is not written to the table");
                    }
                }
            }
        }
        changes.sort_unstable_by_key(|c| c.0.order());
        for (pos, ts, key, value) in changes {
            self.store.put_at(key.into_vec(), Some(value), ts, pos, cx);
        }
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
