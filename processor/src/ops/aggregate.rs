//! Aggregate by key into a table, and tables fed straight from a topic or a stream.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::aggregator::{Aggregator, StateData};
use crate::codec::{Codec, state_bytes};
use crate::context::Cx;
use crate::error::RecordError;
use crate::graph::{Down, Node, Rec};
use crate::state::{StateOp, load_map, save_map};
use crate::table::TableStore;

/// `aggregate(table, aggregator)` on a keyed stream: one accumulator per key; every record
/// updates the table and sends the new result downstream.
pub(crate) struct Aggregate<K, V, A: Aggregator<V>> {
    pub agg: Arc<A>,
    pub accs: BTreeMap<Vec<u8>, A::Acc>,
    pub store: Arc<TableStore>,
    pub down: Down<K, A::Out>,
    pub _v: std::marker::PhantomData<fn(V)>,
}

impl<K: StateData, V, A: Aggregator<V>> Node<K, V> for Aggregate<K, V, A> {
    fn push(&mut self, rec: Rec<K, V>, cx: &mut Cx) {
        let Some(kb) = super::key_bytes(&rec.key, cx) else { return };
        let acc = self.accs.entry(kb.clone()).or_insert_with(|| self.agg.init());
        self.agg.add(acc, &rec.value, rec.ts);
        let out = self.agg.result(acc);
        match state_bytes(&out) {
            Ok(v) => self.store.put(kb, Some(v), rec.ts, cx),
            Err(e) => return cx.set_aside(&RecordError::State(e.to_string())),
        }
        self.down.push(Rec { key: rec.key, value: out, ts: rec.ts }, cx);
    }
}

impl<K, V, A: Aggregator<V>> StateOp for Aggregate<K, V, A> {
    fn save(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        save_map(&self.accs, out)
    }

    fn load(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
        self.accs = load_map(&mut bytes)?;
        Ok(())
    }

    fn entries(&self) -> u64 {
        self.accs.len() as u64
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
