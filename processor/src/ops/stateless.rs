//! Stateless operators: one record in, zero or more out, nothing remembered.
//!
//! Invariant: a record that does not decode (or whose key or value does not encode at a sink)
//! is set aside through [`Cx::set_aside`], counted and dead-lettered, never fatal to the task.

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::Codec;
use crate::context::Cx;
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

/// Encodes records into a topic, partitioned by the encoded key.
pub(crate) struct Sink<K, V> {
    pub topic: Arc<str>,
    pub key: Arc<dyn Codec<K>>,
    pub value: Arc<dyn Codec<V>>,
    pub _types: PhantomData<fn(K, V)>,
}

impl<K: 'static, V: 'static> Node<K, V> for Sink<K, V> {
    fn push(&mut self, rec: Rec<K, V>, cx: &mut Cx) {
        let encoded = self
            .key
            .encode_owned(rec.key)
            .and_then(|k| Ok((k, self.value.encode_owned(rec.value)?)));
        match encoded {
            Ok((key, value)) => {
                cx.emit_keyed(&self.topic, key.map(Bytes::from), value.map(Bytes::from), rec.ts)
            }
            Err(e) => cx.set_aside(&RecordError::State(e)),
        }
    }
}
