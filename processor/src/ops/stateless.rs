//! Stateless operators: one record in, zero or more out, nothing remembered.
//!
//! Invariant: a record that does not decode (or whose key or value does not encode at a sink)
//! is set aside through [`Cx::set_aside`], counted and dead-lettered, never fatal to the task.

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::Codec;
use crate::context::{Cx, HINT_HEADER};
use crate::error::RecordError;
use crate::graph::{Down, Node, Rec};

/// A node made of a closure: `f(record, cx, downstream)`.
pub(crate) struct FnNode<K2, V2, F> {
    pub f: F,
    pub down: Down<K2, V2>,
}

impl<K, V, K2, V2, F> Node<K, V> for FnNode<K2, V2, F>
where
    F: FnMut(Rec<K, V>, &mut Cx, &mut Down<K2, V2>),
{
    fn push(&mut self, rec: Rec<K, V>, cx: &mut Cx) {
        (self.f)(rec, cx, &mut self.down)
    }
}

/// Decodes a source record; one that does not decode is set aside.
pub(crate) struct Decode<K, V> {
    pub key: Arc<dyn Codec<K>>,
    pub value: Arc<dyn Codec<V>>,
    pub down: Down<K, V>,
}

impl<K: 'static, V: 'static> Node<Option<Bytes>, Option<Bytes>> for Decode<K, V> {
    fn push(&mut self, rec: Rec<Option<Bytes>, Option<Bytes>>, cx: &mut Cx) {
        let key = match self.key.decode(rec.key.as_deref()) {
            Ok(k) => k,
            Err(e) => return cx.set_aside(&RecordError::Key(e)),
        };
        let value = match self.value.decode_bytes(rec.value.as_ref()) {
            Ok(v) => v,
            Err(e) => return cx.set_aside(&RecordError::Value(e)),
        };
        self.down.push(Rec { key, value, ts: rec.ts }, cx);
    }
}

/// A repartition sink broadcasts its origin's frontier to the topic's other partitions after
/// every this many input records of its task (counted by input position, so the hints fall at
/// the same places on every run).
pub(crate) const HINT_EVERY: u64 = 128;

/// Encodes records into a topic, partitioned by the encoded key.
///
/// Into a repartition topic it also carries event time across: each record gets the origin of
/// the input record it came from (`eddy-origin`), and every [`HINT_EVERY`] input records the
/// other partitions get a frontier hint (`eddy-frontier`: the origin and this record's event
/// time, no key, no value), so a downstream task hears of every upstream origin's progress
/// even when no record of that origin is routed to it.
pub(crate) struct Sink<K, V> {
    pub topic: Arc<str>,
    pub key: Arc<dyn Codec<K>>,
    pub value: Arc<dyn Codec<V>>,
    pub repartition: bool,
    pub _types: PhantomData<fn(K, V)>,
}

impl<K: 'static, V: 'static> Node<K, V> for Sink<K, V> {
    fn push(&mut self, rec: Rec<K, V>, cx: &mut Cx) {
        let encoded = self
            .key
            .encode_owned(rec.key)
            .and_then(|k| Ok((k, self.value.encode_owned(rec.value)?)));
        let (key, value) = match encoded {
            Ok((key, value)) => (key.map(Bytes::from), value.map(Bytes::from)),
            Err(e) => return cx.set_aside(&RecordError::State(e)),
        };
        if !self.repartition {
            cx.emit_keyed(&self.topic, key, value, rec.ts, None);
            return;
        }
        let written = cx.emit_keyed(&self.topic, key, value, rec.ts, Some(cx.origin));
        if cx.input_position().is_multiple_of(HINT_EVERY) {
            let mut hint = cx.origin.to_be_bytes().to_vec();
            hint.extend_from_slice(&rec.ts.to_be_bytes());
            for p in (0..cx.partition_count(&self.topic)).filter(|p| *p != written) {
                cx.emit_to(&self.topic, p, None, None, rec.ts, vec![(HINT_HEADER, hint.clone())]);
            }
        }
    }
}
