//! The typed builder: [`ProcessorBuilder`] → [`Stream`]s and [`Table`]s → [`Processor`].
//!
//! Building records *definitions* only; nothing runs until a task wires them (see `graph.rs`).
//! The builder also works out which sources share tasks: sources joined with each other (and a
//! table with the streams that look it up) form one sub-topology whose tasks read partition `p`
//! of each of them. A repartition starts a new sub-topology from an internal topic.
//!
//! Operator ids are handed out in the order the builder calls are made, so the same builder code
//! gives the same ids, which is what lets a snapshot find its operators again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use std::cell::RefCell;
use std::rc::Rc;

use crate::aggregator::{Aggregator, StateData};
use crate::codec::Codec;
use crate::definition::{ProcessorDef, SubTopology, TableInfo, Terminal};
use crate::error::{Error, Result};
use crate::graph::{Def, Discard, Down, Shared, Wiring, attach};
use crate::ops::raw_aggregate::{Extract, RawAggregate};
use crate::processor::Processor;
use crate::table::TableStore;

/// Anything that flows between operators.
pub trait Data: Clone + 'static {}
impl<T: Clone + 'static> Data for T {}

type Raw = Option<Bytes>;

pub(crate) struct BuildState {
    pub name: String,
    pub version: u32,
    next_id: u32,
    /// Source topics by source index.
    pub sources: Vec<String>,
    raw: HashMap<String, (usize, Arc<Def<Raw, Raw>>)>,
    /// Union-find over source indexes: sources that must share tasks.
    parent: Vec<usize>,
    pub terminals: Vec<(usize, Terminal)>,
    pub tables: BTreeMap<String, (usize, String)>,
    /// Repartition topics to create: (topic, partitions).
    pub internal: Vec<(String, u32)>,
    /// The sources (indices) of the stream each repartition topic is written from.
    pub repartition_sources: BTreeMap<String, Vec<usize>>,
    /// Sources read as streams, and sources read as tables (event time follows the first).
    stream_sources: BTreeSet<usize>,
    table_sources: BTreeSet<usize>,
    pub dead_letter: Option<String>,
}

impl BuildState {
    fn next_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi] = lo;
        }
    }

    fn raw_source(&mut self, topic: &str) -> (usize, Arc<Def<Raw, Raw>>) {
        if let Some(found) = self.raw.get(topic) {
            return found.clone();
        }
        let index = self.sources.len();
        self.sources.push(topic.to_owned());
        self.parent.push(index);
        let def = Arc::new(Def {
            id: self.next_id(),
            wire: Box::new(move |w: &mut Wiring, down: Down<Raw, Raw>| {
                w.roots.insert(index, down);
                Ok(())
            }),
        });
        self.raw.insert(topic.to_owned(), (index, def.clone()));
        (index, def)
    }

    fn prefix(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

/// Starts a processor definition.
#[derive(Clone)]
pub struct ProcessorBuilder {
    state: Arc<Mutex<BuildState>>,
}

impl std::fmt::Debug for ProcessorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("ProcessorBuilder")
            .field("name", &s.name)
            .field("version", &s.version)
            .finish()
    }
}

fn lock(state: &Mutex<BuildState>) -> MutexGuard<'_, BuildState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn add_internal_topic(state: &Mutex<BuildState>, topic: &str, partitions: u32) {
    lock(state).internal.push((topic.to_owned(), partitions));
}

impl ProcessorBuilder {
    pub(crate) fn from_state(state: Arc<Mutex<BuildState>>) -> Self {
        Self { state }
    }

    /// A processor called `name` at `version`. Its internal topics, snapshots and output
    /// positions are all named after both, so version N+1 starts from scratch beside version N.
    pub fn new(name: &str, version: u32) -> Self {
        Self {
            state: Arc::new(Mutex::new(BuildState {
                name: name.to_owned(),
                version,
                next_id: 0,
                sources: Vec::new(),
                raw: HashMap::new(),
                parent: Vec::new(),
                terminals: Vec::new(),
                tables: BTreeMap::new(),
                internal: Vec::new(),
                repartition_sources: BTreeMap::new(),
                stream_sources: BTreeSet::new(),
                table_sources: BTreeSet::new(),
                dead_letter: None,
            })),
        }
    }

    /// Records read from `topic`, decoded with `key` and `value`.
    pub fn stream<K: Data, V: Data>(
        &self,
        topic: &str,
        key: impl Codec<K>,
        value: impl Codec<V>,
    ) -> Stream<K, V> {
        let (key, value): (Arc<dyn Codec<K>>, Arc<dyn Codec<V>>) = (Arc::new(key), Arc::new(value));
        let mut s = lock(&self.state);
        let (index, raw) = s.raw_source(topic);
        s.stream_sources.insert(index);
        let id = s.next_id();
        drop(s);
        let def = Def {
            id,
            wire: Box::new(move |w: &mut Wiring, down: Down<K, V>| {
                let node =
                    crate::ops::stateless::Decode { key: key.clone(), value: value.clone(), down };
                attach(&raw, w, Box::new(node))
            }),
        };
        Stream { state: self.state.clone(), def: Arc::new(def), sources: vec![index] }
    }

    /// `topic` read as a table named `name`: a record sets its key, a null value deletes it.
    /// Streams that look this table up share its tasks, so `topic` must be co-partitioned with
    /// them (same partition count, same key → partition mapping).
    pub fn table<K: StateData, V: StateData>(
        &self,
        name: &str,
        topic: &str,
        key: impl Codec<K>,
        value: impl Codec<V>,
    ) -> Result<Table<K, V>> {
        let (key, value): (Arc<dyn Codec<K>>, Arc<dyn Codec<V>>) = (Arc::new(key), Arc::new(value));
        let (index, raw) = {
            let mut s = lock(&self.state);
            let (index, raw) = s.raw_source(topic);
            s.table_sources.insert(index);
            (index, raw)
        };
        let stream: Stream<Raw, Raw> =
            Stream { state: self.state.clone(), def: raw, sources: vec![index] };
        stream.materialize(name, move |store, down| {
            Box::new(crate::ops::aggregate::TopicTable {
                key: key.clone(),
                value: value.clone(),
                store,
                down,
            })
        })
    }

    /// Aggregates `topic`'s records by the key `extract` reads from each record's bytes into
    /// table `name`: the table, changelog and snapshots of `stream` → `select_key` →
    /// `aggregate`, computed a chunk of log records at a time when nothing else in the task
    /// reads `topic` (the replay path; see `Extract`). The table's updates are every new
    /// result, keyed by the key decoded from its state encoding.
    pub fn aggregate_raw<K: StateData, E: Extract, A: Aggregator<E::Value>>(
        &self,
        topic: &str,
        name: &str,
        extract: E,
        agg: A,
    ) -> Result<Table<K, A::Out>>
    where
        E::Value: Send + Sync,
        A::Acc: Send,
    {
        let (extract, agg) = (Arc::new(extract), Arc::new(agg));
        let (index, raw) = {
            let mut s = lock(&self.state);
            let (index, raw) = s.raw_source(topic);
            s.stream_sources.insert(index);
            (index, raw)
        };
        let raw_id = raw.id;
        let stream: Stream<Raw, Raw> =
            Stream { state: self.state.clone(), def: raw, sources: vec![index] };
        stream.materialize_stateful(name, move |store, down, w, op| {
            let node = Rc::new(RefCell::new(RawAggregate::<K, E, A>::new(
                extract.clone(),
                agg.clone(),
                store,
                down,
            )));
            w.state_ops.push((op, node.clone()));
            w.chunk_candidates.push((index, raw_id, node.clone()));
            Ok(Box::new(Shared(node)))
        })
    }

    /// Records that cannot be decoded, and records too late for their window, are copied to
    /// `topic` with headers `eddy-error` (why) and `eddy-origin` (topic/partition/offset).
    pub fn dead_letter(&self, topic: &str) -> &Self {
        lock(&self.state).dead_letter = Some(topic.to_owned());
        self
    }

    /// Finishes the definition.
    pub fn build(self) -> Result<Processor> {
        let mut s = lock(&self.state);
        if s.terminals.is_empty() {
            return Err(Error::Definition {
                reason: "a processor needs at least one sink or table",
            });
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..s.sources.len() {
            let root = s.find(i);
            groups.entry(root).or_default().push(i);
        }
        let subtopologies: Vec<SubTopology> = groups
            .into_values()
            .map(|sources| SubTopology { sources: sources.into_iter().collect() })
            .collect();
        let sub_of = |source: usize| subtopologies.iter().position(|t| t.sources.contains(&source));
        let mut terminals: Vec<Vec<Terminal>> = vec![Vec::new(); subtopologies.len()];
        for (source, t) in s.terminals.drain(..) {
            if let Some(sub) = sub_of(source) {
                terminals[sub].push(t);
            }
        }
        let mut tables = BTreeMap::new();
        for (name, (_, changelog)) in &s.tables {
            tables.insert(name.clone(), TableInfo { changelog: changelog.clone() });
        }
        Ok(Processor::new(ProcessorDef {
            name: s.name.clone(),
            version: s.version,
            sources: s.sources.clone(),
            subtopologies,
            terminals,
            tables,
            internal: s.internal.clone(),
            repartition_sources: s.repartition_sources.clone(),
            table_only: s.table_sources.difference(&s.stream_sources).copied().collect(),
            dead_letter: s.dead_letter.clone(),
        }))
    }
}

/// A stream of keyed records.
pub struct Stream<K, V> {
    pub(crate) state: Arc<Mutex<BuildState>>,
    pub(crate) def: Arc<Def<K, V>>,
    pub(crate) sources: Vec<usize>,
}

impl<K, V> Clone for Stream<K, V> {
    fn clone(&self) -> Self {
        Self { state: self.state.clone(), def: self.def.clone(), sources: self.sources.clone() }
    }
}

impl<K, V> std::fmt::Debug for Stream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.def.id).field("sources", &self.sources).finish()
    }
}

/// A table: a key → value map kept by the tasks, changelogged to a compacted topic, readable
/// while the processor runs; also a stream of its updates ([`Table::changes`]).
pub struct Table<K, V> {
    pub(crate) name: String,
    pub(crate) updates: Stream<K, V>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Self { name: self.name.clone(), updates: self.updates.clone() }
    }
}

impl<K, V> std::fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("name", &self.name).finish()
    }
}

impl<K: Data, V: Data> Table<K, V> {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table's updates as a stream (for windowed aggregates with `Emit::Final`, only the
    /// final result of each window). Deletions are not in it.
    pub fn changes(&self) -> Stream<K, V> {
        self.updates.clone()
    }
}

impl<K: Data, V: Data> Stream<K, V> {
    pub(crate) fn derive<K2: Data, V2: Data>(
        &self,
        wire: impl Fn(&mut Wiring, Down<K2, V2>) -> Result<()> + Send + Sync + 'static,
    ) -> Stream<K2, V2> {
        let id = lock(&self.state).next_id();
        Stream {
            state: self.state.clone(),
            def: Arc::new(Def { id, wire: Box::new(wire) }),
            sources: self.sources.clone(),
        }
    }

    pub(crate) fn op_id(&self) -> u32 {
        lock(&self.state).next_id()
    }

    pub(crate) fn prefix(&self) -> String {
        lock(&self.state).prefix()
    }

    /// Registers a sink: a node wired into every task of this stream's sub-topology.
    pub(crate) fn terminal(
        &self,
        wire: impl Fn(&mut Wiring) -> Result<()> + Send + Sync + 'static,
    ) {
        let first = self.sources.first().copied().unwrap_or(0);
        let mut s = lock(&self.state);
        for &other in self.sources.iter().skip(1) {
            s.union(first, other);
        }
        s.terminals.push((first, Terminal { wire: Arc::new(wire) }));
    }

    /// Joins the sub-topologies of two streams (they will share tasks).
    pub(crate) fn co_partition(&self, other: &[usize]) -> Vec<usize> {
        let mut s = lock(&self.state);
        let mut all: BTreeSet<usize> = self.sources.iter().copied().collect();
        all.extend(other.iter().copied());
        let all: Vec<usize> = all.into_iter().collect();
        for pair in all.windows(2) {
            s.union(pair[0], pair[1]);
        }
        all
    }

    /// Appends every record to `topic` (created if missing, with one partition per task),
    /// partitioned by the encoded key as the client partitioner does.
    pub fn to(&self, topic: &str, key: impl Codec<K>, value: impl Codec<V>) {
        self.sink(topic, key, value, false);
    }

    /// A sink into `topic`; into a repartition topic (`repartition`) it carries each record's
    /// origin and broadcasts frontier hints (see `ops::stateless::Sink`).
    pub(crate) fn sink(
        &self,
        topic: &str,
        key: impl Codec<K>,
        value: impl Codec<V>,
        repartition: bool,
    ) {
        if repartition {
            lock(&self.state).repartition_sources.insert(topic.to_owned(), self.sources.clone());
        }
        let (key, value): (Arc<dyn Codec<K>>, Arc<dyn Codec<V>>) = (Arc::new(key), Arc::new(value));
        let topic: Arc<str> = Arc::from(topic);
        let def = self.def.clone();
        self.terminal(move |w| {
            w.output_topics.insert(topic.to_string());
            let sink = crate::ops::stateless::Sink {
                topic: topic.clone(),
                key: key.clone(),
                value: value.clone(),
                repartition,
                _types: std::marker::PhantomData,
            };
            attach(&def, w, Box::new(sink))
        });
    }

    /// Registers table `name` fed by a node `make(store, downstream)` wired onto this stream:
    /// in each task, `make` gets that task's [`TableStore`] and the table's downstream (its
    /// updates stream) and returns the node this stream pushes into. The node writes the store
    /// and pushes what it wants the table's updates to carry. Part of the operator API
    /// (`operator_api`).
    pub fn materialize<K2: Data, V2: Data>(
        &self,
        name: &str,
        make: impl Fn(Arc<TableStore>, Down<K2, V2>) -> Down<K, V> + Send + Sync + 'static,
    ) -> Result<Table<K2, V2>> {
        self.materialize_stateful(name, move |store, down, _w, _id| Ok(make(store, down)))
    }

    /// Like [`materialize`](Self::materialize) for a node that also registers state.
    pub(crate) fn materialize_stateful<K2: Data, V2: Data>(
        &self,
        name: &str,
        make: impl Fn(Arc<TableStore>, Down<K2, V2>, &mut Wiring, u32) -> Result<Down<K, V>>
        + Send
        + Sync
        + 'static,
    ) -> Result<Table<K2, V2>> {
        let changelog = format!("{}-{name}-changelog", self.prefix());
        {
            let mut s = lock(&self.state);
            if s.tables.contains_key(name) {
                return Err(Error::DuplicateTable { name: name.to_owned() });
            }
            let first = self.sources.first().copied().unwrap_or(0);
            s.tables.insert(name.to_owned(), (first, changelog.clone()));
        }
        let op = self.op_id();
        let parent = self.def.clone();
        let table_name = name.to_owned();
        let changelog: Arc<str> = Arc::from(changelog);
        let updates = self.derive(move |w: &mut Wiring, down: Down<K2, V2>| {
            let store = Arc::new(TableStore::new(w.partition, changelog.clone()));
            w.tables.insert(table_name.clone(), store.clone());
            w.output_topics.insert(changelog.to_string());
            let node = make(store, down, w, op)?;
            attach(&parent, w, node)
        });
        let table = Table { name: name.to_owned(), updates };
        // A table exists in every task even when nothing reads its updates.
        let def = table.updates.def.clone();
        table.updates.terminal(move |w| attach(&def, w, Box::new(Discard)));
        Ok(table)
    }

    /// This stream read as a table named `name`: each record sets its key.
    pub fn to_table(&self, name: &str) -> Result<Table<K, V>>
    where
        K: StateData,
        V: StateData,
    {
        self.materialize(name, |store, down| {
            Box::new(crate::ops::aggregate::Upsert { store, down })
        })
    }
}
