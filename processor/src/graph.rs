//! The dataflow graph, instantiated once per task.
//!
//! The builder describes a processor as a DAG of stream definitions ([`Def`]); each task turns it
//! into a graph of push-based [`Node`]s on its own thread. A definition knows how to connect one
//! downstream node to itself (`wire`); [`attach`] memoises that per task, so a stream feeding two
//! operators becomes one [`Fanout`] with two outputs, never two copies of the upstream operators
//! (which would double their state and their outputs).
//!
//! Invariants: within a task every node is created once; pushes run on the task's thread only
//! (nodes use `Rc<RefCell<_>>`, so a task graph is deliberately not `Send`); the graph is a DAG,
//! so a `RefCell` is never borrowed twice at once.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use crate::context::Cx;
use crate::error::Result;
use crate::input::Chunk;
use crate::state::StateOp;
use crate::table::TableStore;
use bytes::Bytes;

/// A record between operators: typed key and value, and its event time.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec<K, V> {
    pub key: K,
    pub value: V,
    /// Event time in ms: the log record's timestamp unless an operator replaced it.
    pub ts: i64,
}

/// One operator instance in a task: takes records, pushes results downstream. Part of the
/// operator API (`operator_api`).
///
/// A node runs on its task's thread only, one record at a time, in the task's processing order;
/// everything it pushes or writes while handling a record belongs to that record (see [`Cx`]).
pub trait Node<K, V> {
    /// Handles one record: pushes zero or more records downstream (`down.push(rec, cx)`),
    /// writes state, or sets the record aside ([`Cx::set_aside`]).
    fn push(&mut self, rec: Rec<K, V>, cx: &mut Cx);

    /// True for a node that drops everything (`Discard`): a fan-out need not copy records for
    /// it. Operators outside this crate keep the default.
    fn discards(&self) -> bool {
        false
    }

    /// True when every record pushed here is dropped, through any fan-outs: an operator whose
    /// results nothing reads may skip making them. (Unlike [`discards`](Self::discards), which
    /// wiring uses to drop a `Discard` output, this looks through fan-outs that may still gain
    /// consumers while a task is wired, so it is only asked once records flow.)
    fn drops_all(&self) -> bool {
        self.discards()
    }
}

/// An operator that takes a source's records a chunk at a time, as they are in the log: the
/// task's fast path for a source nothing else in the task reads (`raw_aggregate`). It must
/// leave exactly what pushing the records one by one would.
pub(crate) trait ChunkNode {
    /// Handles the new records of `chunk` (in offset order; the first has input position `n`),
    /// on at most `threads` threads (this one and helpers it starts and joins). Returns how
    /// many records it handled; fails only on a batch that does not decode.
    fn push_chunk(&mut self, chunk: &Chunk<'_>, n: u64, threads: usize, cx: &mut Cx)
    -> Result<u64>;
}

/// A chunk operator, held by the task as well as by its source's fan-out.
pub(crate) type SharedChunkNode = Rc<RefCell<dyn ChunkNode>>;

/// The node downstream of an operator: where it pushes its results.
pub type Down<K, V> = Box<dyn Node<K, V>>;

/// A stream with several consumers: each gets every record, in the order they were attached.
pub(crate) struct Fanout<K, V> {
    outs: Vec<Down<K, V>>,
}

impl<K: Clone, V: Clone> Node<K, V> for Fanout<K, V> {
    fn push(&mut self, rec: Rec<K, V>, cx: &mut Cx) {
        if let Some((last, rest)) = self.outs.split_last_mut() {
            for out in rest {
                out.push(rec.clone(), cx);
            }
            last.push(rec, cx);
        }
    }

    fn drops_all(&self) -> bool {
        self.outs.iter().all(|out| out.drops_all())
    }
}

/// A node owned by `Rc<RefCell<_>>` (a fan-out, or an operator with two inputs or with state
/// the task snapshots).
pub(crate) struct Shared<T>(pub Rc<RefCell<T>>);

impl<K, V, T: Node<K, V>> Node<K, V> for Shared<T> {
    fn push(&mut self, rec: Rec<K, V>, cx: &mut Cx) {
        self.0.borrow_mut().push(rec, cx);
    }

    fn drops_all(&self) -> bool {
        self.0.borrow().drops_all()
    }
}

/// Connects a downstream node to a stream in one task's wiring.
pub(crate) type WireFn<K, V> = dyn Fn(&mut Wiring, Down<K, V>) -> Result<()> + Send + Sync;

/// One stream definition: an id, the sources it depends on, and how to wire it.
pub(crate) struct Def<K, V> {
    pub id: u32,
    pub wire: Box<WireFn<K, V>>,
}

/// Connects `down` to the stream `def` in this task, creating the stream's nodes (and those of
/// everything upstream) the first time it is asked.
pub(crate) fn attach<K: Clone + 'static, V: Clone + 'static>(
    def: &Arc<Def<K, V>>,
    w: &mut Wiring,
    down: Down<K, V>,
) -> Result<()> {
    if let Some(existing) = w.fanouts.get(&def.id)
        && let Some(f) = existing.downcast_ref::<Rc<RefCell<Fanout<K, V>>>>()
    {
        // A `Discard` only keeps a stream wired (a table nothing reads); once a real consumer
        // is attached it would cost every record a copy.
        let mut f = f.borrow_mut();
        if !down.discards() || f.outs.is_empty() {
            f.outs.retain(|out| !out.discards());
            f.outs.push(down);
        }
        return Ok(());
    }
    let fanout = Rc::new(RefCell::new(Fanout { outs: vec![down] }));
    w.fanouts.insert(def.id, Box::new(fanout.clone()));
    (def.wire)(w, Box::new(Shared(fanout)))
}

type Raw = Option<Bytes>;

/// What one task's graph is made of, collected while wiring.
pub(crate) struct Wiring {
    /// The task's partition (every source partition it reads has this number).
    pub partition: u32,
    /// Sources this task reads, by source index.
    pub sources: BTreeSet<usize>,
    pub roots: HashMap<usize, Down<Raw, Raw>>,
    pub fanouts: HashMap<u32, Box<dyn Any>>,
    /// Stateful operators by operator id, for snapshots.
    pub state_ops: Vec<(u32, Rc<RefCell<dyn StateOp>>)>,
    pub tables: HashMap<String, Arc<TableStore>>,
    /// Topics this task may append to (sinks, changelogs, repartition topics).
    pub output_topics: BTreeSet<String>,
    /// Chunk operators by source index, each with the id of its source's raw stream: used as
    /// the source's chunk root when they are its only reader (see [`Wiring::chunk_roots`]).
    pub chunk_candidates: Vec<(usize, u32, SharedChunkNode)>,
}

impl Wiring {
    pub fn new(partition: u32, sources: BTreeSet<usize>) -> Self {
        Self {
            partition,
            sources,
            roots: HashMap::new(),
            fanouts: HashMap::new(),
            state_ops: Vec::new(),
            tables: HashMap::new(),
            output_topics: BTreeSet::new(),
            chunk_candidates: Vec::new(),
        }
    }

    /// The chunk operators that are the only reader of their source in this task, by source
    /// index: the task hands them whole chunks instead of pushing records through the root.
    pub fn chunk_roots(&mut self) -> HashMap<usize, SharedChunkNode> {
        let mut roots = HashMap::new();
        for (source, raw, node) in std::mem::take(&mut self.chunk_candidates) {
            let sole = self
                .fanouts
                .get(&raw)
                .and_then(|f| f.downcast_ref::<Rc<RefCell<Fanout<Raw, Raw>>>>())
                .is_some_and(|f| f.borrow().outs.len() == 1);
            if sole {
                roots.insert(source, node);
            }
        }
        roots
    }
}

/// Drops every record (used to force a definition to be instantiated).
pub(crate) struct Discard;

impl<K, V> Node<K, V> for Discard {
    fn push(&mut self, _: Rec<K, V>, _: &mut Cx) {}

    fn discards(&self) -> bool {
        true
    }
}
