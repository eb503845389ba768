//! The operator methods of [`Stream`]: stateless transforms, aggregates, windows, joins, dedupe
//! and repartitioning. Each adds a definition; `ops/` holds the nodes they wire.
//!
//! Invariants: a method only records a definition (nothing runs until a task wires it); each
//! stateful operator takes its operator id when the method is called, so the same calls in the
//! same order give the same ids; operators that combine streams (joins) put their sources in
//! one sub-topology, so they share tasks.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use crate::aggregator::{Aggregator, StateData};
use crate::builder::{Data, ProcessorBuilder, Stream, Table};
use crate::codec::Json;
use crate::error::Result;
use crate::graph::{Discard, Down, Rec, Shared, Wiring, attach};
use crate::ops::aggregate::Aggregate;
use crate::ops::dedupe::Dedupe;
use crate::ops::join::{JoinLeft, JoinRight, JoinWindow, Outer, StreamJoin, TableJoin};
use crate::ops::stateless::FnNode;
use crate::ops::window::{Emit, WindowAggregate, Windowed, Windows};

impl<K: Data, V: Data> Stream<K, V> {
    /// A node made of a closure `f(record, cx, downstream)`, run for each record: it pushes
    /// any number of records downstream (`down.push(rec, cx)`) or sets the record aside
    /// (`Cx::set_aside`). The most general stateless operator, and part of the operator API
    /// (`operator_api`); `f` must be deterministic (no clock, no randomness), as every
    /// operator.
    pub fn then<K2: Data, V2: Data>(
        &self,
        f: impl Fn(Rec<K, V>, &mut crate::context::Cx, &mut Down<K2, V2>)
        + Clone
        + Send
        + Sync
        + 'static,
    ) -> Stream<K2, V2> {
        let parent = self.def.clone();
        self.derive(move |w: &mut Wiring, down: Down<K2, V2>| {
            attach(&parent, w, Box::new(FnNode { f: f.clone(), down }))
        })
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(&self, f: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Stream<K, V> {
        let f = Arc::new(f);
        self.then(move |rec, cx, down| {
            if f(&rec.key, &rec.value) {
                down.push(rec, cx)
            }
        })
    }

    /// Replaces each value.
    pub fn map_values<V2: Data>(
        &self,
        f: impl Fn(&K, V) -> V2 + Send + Sync + 'static,
    ) -> Stream<K, V2> {
        let f = Arc::new(f);
        self.then(move |rec: Rec<K, V>, cx, down| {
            let value = f(&rec.key, rec.value);
            down.push(Rec { key: rec.key, value, ts: rec.ts }, cx)
        })
    }

    /// Replaces each key and value.
    pub fn map<K2: Data, V2: Data>(
        &self,
        f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> Stream<K2, V2> {
        let f = Arc::new(f);
        self.then(move |rec: Rec<K, V>, cx, down| {
            let (key, value) = f(rec.key, rec.value);
            down.push(Rec { key, value, ts: rec.ts }, cx)
        })
    }

    /// Zero or more records per record, in the order returned.
    pub fn flat_map<K2: Data, V2: Data, I: IntoIterator<Item = (K2, V2)>>(
        &self,
        f: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> Stream<K2, V2> {
        let f = Arc::new(f);
        self.then(move |rec: Rec<K, V>, cx, down| {
            for (key, value) in f(rec.key, rec.value) {
                down.push(Rec { key, value, ts: rec.ts }, cx)
            }
        })
    }

    /// Re-keys each record. Aggregating or joining on the new key afterwards is correct only if
    /// records of one new key all reach one task: with a single input partition, or after
    /// [`repartition`](Self::repartition).
    pub fn select_key<K2: Data>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> Stream<K2, V> {
        let f = Arc::new(f);
        self.then(move |rec: Rec<K, V>, cx, down| {
            let key = f(&rec.key, &rec.value);
            down.push(Rec { key, value: rec.value, ts: rec.ts }, cx)
        })
    }

    /// Sets each record's event time (by default the log record's timestamp) from its key,
    /// value and current timestamp, e.g. a field of the value.
    pub fn event_time(
        &self,
        f: impl Fn(&K, &V, i64) -> i64 + Send + Sync + 'static,
    ) -> Stream<K, V> {
        let f = Arc::new(f);
        self.then(move |mut rec: Rec<K, V>, cx, down| {
            rec.ts = f(&rec.key, &rec.value, rec.ts);
            down.push(rec, cx)
        })
    }

    /// Aggregates by key into table `name`; the table's updates are every new result.
    pub fn aggregate<A: Aggregator<V>>(&self, name: &str, agg: A) -> Result<Table<K, A::Out>>
    where
        K: StateData,
    {
        let agg = Arc::new(agg);
        self.materialize_stateful(name, move |store, down, w, op| {
            let node = Rc::new(RefCell::new(Aggregate::new(agg.clone(), store, down)));
            w.state_ops.push((op, node.clone()));
            Ok(Box::new(Shared(node)))
        })
    }

    /// Groups records into event-time windows for [`WindowedStream::aggregate`].
    pub fn window(&self, windows: Windows) -> WindowedStream<K, V> {
        WindowedStream { stream: self.clone(), windows }
    }

    /// Enriches each record with the value of its key in `table` (co-partitioned with this
    /// stream); records without a match are dropped.
    pub fn join_table<T: StateData, R: Data>(
        &self,
        table: &Table<K, T>,
        f: impl Fn(&K, &V, &T) -> R + Send + Sync + 'static,
    ) -> Stream<K, R>
    where
        K: StateData,
    {
        self.lookup(table, move |k: &K, v: &V, t: Option<&T>| t.map(|t| f(k, v, t)))
    }

    /// Like [`join_table`](Self::join_table), keeping records without a match (`None`).
    pub fn left_join_table<T: StateData, R: Data>(
        &self,
        table: &Table<K, T>,
        f: impl Fn(&K, &V, Option<&T>) -> R + Send + Sync + 'static,
    ) -> Stream<K, R>
    where
        K: StateData,
    {
        self.lookup(table, move |k: &K, v: &V, t: Option<&T>| Some(f(k, v, t)))
    }

    fn lookup<T: StateData, R: Data>(
        &self,
        table: &Table<K, T>,
        f: impl Fn(&K, &V, Option<&T>) -> Option<R> + Send + Sync + 'static,
    ) -> Stream<K, R>
    where
        K: StateData,
    {
        let f = Arc::new(f);
        let parent = self.def.clone();
        let table_def = table.updates.def.clone();
        let name = table.name.clone();
        let mut joined = self.derive(move |w: &mut Wiring, down: Down<K, R>| {
            if !w.tables.contains_key(&name) {
                attach(&table_def, w, Box::new(Discard))?;
            }
            let store = w.tables.get(&name).cloned().ok_or(crate::Error::Definition {
                reason: "a joined table is not wired in the stream's task",
            })?;
            store.mark_read_inside();
            let node = TableJoin { store, f: f.clone(), down, _types: PhantomData };
            attach(&parent, w, Box::new(node))
        });
        joined.sources = self.co_partition(&table.updates.sources);
        joined
    }

    /// Inner join with `other` on the key, for records at most `window` apart in event time.
    pub fn join<R: StateData, O: Data>(
        &self,
        other: &Stream<K, R>,
        window: JoinWindow,
        f: impl Fn(&K, &V, &R) -> O + Send + Sync + 'static,
    ) -> Stream<K, O>
    where
        K: StateData,
        V: StateData,
    {
        self.join_with(other, window, Outer::default(), move |k, l, r| Some(f(k, l?, r?)))
    }

    /// Like [`join`](Self::join), and each record of this stream that matched nothing is emitted
    /// once, with `None`, when its window has closed (the watermark passed `t + after`).
    pub fn left_join<R: StateData, O: Data>(
        &self,
        other: &Stream<K, R>,
        window: JoinWindow,
        f: impl Fn(&K, &V, Option<&R>) -> O + Send + Sync + 'static,
    ) -> Stream<K, O>
    where
        K: StateData,
        V: StateData,
    {
        let outer = Outer { left: true, right: false };
        self.join_with(other, window, outer, move |k, l, r| Some(f(k, l?, r)))
    }

    /// Like [`left_join`](Self::left_join) on both sides: unmatched records of either stream
    /// are emitted once, with `None` for the other, when their window has closed.
    pub fn outer_join<R: StateData, O: Data>(
        &self,
        other: &Stream<K, R>,
        window: JoinWindow,
        f: impl Fn(&K, Option<&V>, Option<&R>) -> O + Send + Sync + 'static,
    ) -> Stream<K, O>
    where
        K: StateData,
        V: StateData,
    {
        let outer = Outer { left: true, right: true };
        self.join_with(other, window, outer, move |k, l, r| Some(f(k, l, r)))
    }

    /// The windowed join with the unmatched records of the `outer` sides ([`join`](Self::join),
    /// [`left_join`](Self::left_join) and [`outer_join`](Self::outer_join) are its three
    /// usual forms); `f` gets `None` for a side without a record and returns `None` to emit
    /// nothing. Part of the operator API (`operator_api`).
    pub fn join_with<R: StateData, O: Data>(
        &self,
        other: &Stream<K, R>,
        window: JoinWindow,
        outer: Outer,
        f: impl Fn(&K, Option<&V>, Option<&R>) -> Option<O> + Send + Sync + 'static,
    ) -> Stream<K, O>
    where
        K: StateData,
        V: StateData,
    {
        let f = Arc::new(f);
        let (left, right) = (self.def.clone(), other.def.clone());
        let op = self.op_id();
        let mut sources: Vec<usize> = self.sources.iter().chain(&other.sources).copied().collect();
        sources.sort_unstable();
        sources.dedup();
        let mut joined = self.derive(move |w: &mut Wiring, down: Down<K, O>| {
            let node = Rc::new(RefCell::new(StreamJoin::new(
                window,
                outer,
                f.clone(),
                down,
                sources.clone(),
            )));
            w.state_ops.push((op, node.clone()));
            attach(&left, w, Box::new(JoinLeft(node.clone())))?;
            attach(&right, w, Box::new(JoinRight(node)))
        });
        joined.sources = self.co_partition(&other.sources);
        joined
    }

    /// Drops records whose key was kept less than `window_ms` of event time before or after;
    /// records more than `grace_ms` behind the largest event time seen from their own source
    /// partition are set aside as late.
    pub fn dedupe(&self, window_ms: i64, grace_ms: i64) -> Stream<K, V>
    where
        K: StateData,
    {
        let parent = self.def.clone();
        let op = self.op_id();
        let sources = self.sources.clone();
        self.derive(move |w: &mut Wiring, down: Down<K, V>| {
            let node =
                Rc::new(RefCell::new(Dedupe::new(window_ms, grace_ms, down, sources.clone())));
            w.state_ops.push((op, node.clone()));
            attach(&parent, w, Box::new(Shared(node)))
        })
    }

    /// Writes the stream to an internal topic `<processor>-<version>-<name>-repartition` with
    /// `partitions` partitions, partitioned by key, and reads it back: after this, records of one
    /// key are in one task. Starts a new sub-topology.
    pub fn repartition(&self, name: &str, partitions: u32) -> Stream<K, V>
    where
        K: StateData,
        V: StateData,
    {
        let topic = format!("{}-{name}-repartition", self.prefix());
        self.sink(&topic, Json, Json, true);
        crate::builder::add_internal_topic(&self.state, &topic, partitions.max(1));
        ProcessorBuilder::from_state(self.state.clone()).stream(&topic, Json, Json)
    }
}

/// A stream grouped into windows, ready to aggregate.
#[derive(Debug, Clone)]
pub struct WindowedStream<K, V> {
    stream: Stream<K, V>,
    windows: Windows,
}

impl<K: StateData, V: Data> WindowedStream<K, V> {
    /// Aggregates each key's records per window into table `name`, keyed by [`Windowed`]. The
    /// table's updates are every change or, with [`Emit::Final`], each window's result once.
    pub fn aggregate<A: Aggregator<V>>(
        &self,
        name: &str,
        agg: A,
        emit: Emit,
    ) -> Result<Table<Windowed<K>, A::Out>> {
        let agg = Arc::new(agg);
        let windows = self.windows;
        let sources = self.stream.sources.clone();
        self.stream.materialize_stateful(name, move |store, down, w, op| {
            let node = Rc::new(RefCell::new(WindowAggregate::new(
                windows,
                emit,
                agg.clone(),
                store,
                down,
                sources.clone(),
            )));
            w.state_ops.push((op, node.clone()));
            Ok(Box::new(Shared(node)))
        })
    }
}
