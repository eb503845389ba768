//! [`Cx`]: what an operator may touch while it handles one input record — the output buffers,
//! the record's position, the counters and the dead-letter topic.
//!
//! Every output (sink record, changelog record, dead letter) gets the *position* of the input
//! record that caused it: `(n, index)`, where `n` counts the input records this task has
//! processed since offset zero and `index` counts the outputs of that one record. Because
//! processing is deterministic, re-processing after a crash produces the same outputs at the same
//! positions, and [`Cx::emit`] drops those at or below what recovery found already written to
//! that partition (see `recovery.rs`).
//!
//! Cx also knows where the current record comes from — its *origin*, the source partition it
//! was read from, carried through repartition topics in the `eddy-origin` header — and the
//! frontier hints upstream tasks broadcast, which event-time operators use for their
//! watermarks (`state::Clock`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::RecordError;
use crate::position::Position;

/// Header of a record in a repartition topic: the origin (8 bytes, big-endian) of the record.
pub(crate) const ORIGIN_HEADER: &str = "eddy-origin";
/// Header of a frontier hint in a repartition topic (a record with no key and no value): the
/// origin (8 bytes) and its frontier (8 bytes, big-endian event time).
pub(crate) const HINT_HEADER: &str = "eddy-frontier";

/// A source partition, as event time tracks it: FNV-1a (32-bit) of the topic name in the high
/// half, the partition in the low half. Stable across processes and versions.
pub(crate) fn origin_of(topic: &str, partition: u32) -> u64 {
    let mut h: u32 = 0x811c_9dc5;
    for b in topic.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (u64::from(h) << 32) | u64::from(partition)
}

/// One buffered output record.
#[derive(Debug, Clone)]
pub(crate) struct OutRec {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub ts: i64,
    pub pos: Position,
    /// The origin a repartitioned record carries (written as the `eddy-origin` header).
    pub origin: Option<u64>,
    /// Extra headers (a dead letter's reason and source, a frontier hint).
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

/// The input record being processed.
#[derive(Debug, Clone)]
pub(crate) struct CurrentInput {
    pub topic: Arc<str>,
    pub offset: u64,
    pub ts: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

/// Counters a task keeps (all since it was opened).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    pub records_in: u64,
    /// Of `records_in`, those handed to a chunk operator a chunk at a time (the replay path
    /// of a fused aggregate).
    pub chunked: u64,
    pub records_out: u64,
    /// Outputs recovery found already written, so they were not written again.
    pub suppressed: u64,
    /// Records whose key or value did not decode.
    pub decode_errors: u64,
    /// Records that arrived after their window (or join/dedupe horizon) had closed.
    pub late: u64,
    /// Records dropped by a dedupe operator.
    pub duplicates: u64,
    pub dead_lettered: u64,
}

/// The per-task context operators write into. Part of the operator API (`operator_api`): an
/// operator outside this crate only passes it on (to `down.push`, `TableStore::put`) and sets
/// records aside with [`Cx::set_aside`]; the output buffers and positions stay the task's.
pub struct Cx {
    pub(crate) writer_id: u64,
    pub(crate) partition: u32,
    /// Position of the input record being processed.
    n: u64,
    next_index: u32,
    /// Input record being processed, so a dead letter carries its origin and original bytes
    /// (kept only when there is a dead-letter topic).
    pub(crate) current: Option<CurrentInput>,
    pub(crate) out: BTreeMap<(Arc<str>, u32), Vec<OutRec>>,
    /// Highest position already in each output partition (from recovery).
    pub(crate) suppress: HashMap<(Arc<str>, u32), Position>,
    pub(crate) partition_counts: HashMap<Arc<str>, u32>,
    pub(crate) dead_letter: Option<Arc<str>>,
    pub(crate) metrics: TaskMetrics,
    /// Origin of the input record being processed.
    pub(crate) origin: u64,
    /// Offset of the input record being processed, in its source partition.
    pub(crate) input_offset: u64,
    /// Frontier hints received from upstream tasks, by origin (the largest of each).
    pub(crate) hints: BTreeMap<u64, i64>,
    /// The origins each source of this task's sub-topology carries, by source index.
    pub(crate) origins: Arc<BTreeMap<usize, Vec<u64>>>,
    /// With an idle timeout: when each origin was last heard from (a record or a hint), and
    /// when the task opened (for origins never heard from).
    pub(crate) idle_after: Option<Duration>,
    pub(crate) heard: BTreeMap<u64, Instant>,
    pub(crate) opened: Instant,
}

impl std::fmt::Debug for Cx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cx")
            .field("writer_id", &self.writer_id)
            .field("partition", &self.partition)
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

impl Cx {
    pub(crate) fn new(writer_id: u64, partition: u32, dead_letter: Option<Arc<str>>) -> Self {
        Self {
            writer_id,
            partition,
            n: 0,
            next_index: 0,
            current: None,
            out: BTreeMap::new(),
            suppress: HashMap::new(),
            partition_counts: HashMap::new(),
            dead_letter,
            metrics: TaskMetrics::default(),
            origin: 0,
            input_offset: 0,
            hints: BTreeMap::new(),
            origins: Arc::new(BTreeMap::new()),
            idle_after: None,
            heard: BTreeMap::new(),
            opened: Instant::now(),
        }
    }

    /// Notes that `origin` was heard from now (only kept with an idle timeout).
    pub(crate) fn heard_from(&mut self, origin: u64) {
        if self.idle_after.is_some() {
            self.heard.insert(origin, Instant::now());
        }
    }

    /// Whether `origin` has been silent for longer than the idle timeout (never, without one).
    pub(crate) fn is_idle(&self, origin: u64) -> bool {
        self.idle_after
            .is_some_and(|after| self.heard.get(&origin).unwrap_or(&self.opened).elapsed() > after)
    }

    /// The origins whose records can reach an operator fed by `sources` (source indices).
    pub(crate) fn expected(&self, sources: &[usize]) -> Vec<u64> {
        let mut all: Vec<u64> =
            sources.iter().filter_map(|s| self.origins.get(s)).flatten().copied().collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Takes a frontier hint of `origin` (kept if it raises what is known).
    pub(crate) fn hint(&mut self, origin: u64, frontier: i64) {
        let known = self.hints.entry(origin).or_insert(frontier);
        *known = (*known).max(frontier);
    }

    /// Starts the input record at position `n`.
    pub(crate) fn begin(&mut self, n: u64) {
        self.n = n;
        self.next_index = 0;
    }

    /// Buffers an output to `topic`/`partition`, unless recovery found it already written.
    pub(crate) fn emit_to(
        &mut self,
        topic: &Arc<str>,
        partition: u32,
        key: Option<Bytes>,
        value: Option<Bytes>,
        ts: i64,
        headers: Vec<(&'static str, Vec<u8>)>,
    ) {
        let pos = self.reserve();
        self.emit_at(topic, partition, OutRec { key, value, ts, pos, origin: None, headers });
    }

    /// The position of the current input record's next output, taken now by an operator that
    /// writes the output later (a table's cached change, written when the task flushes).
    pub(crate) fn reserve(&mut self) -> Position {
        let pos = Position { writer: self.writer_id, n: self.n, index: self.next_index };
        self.next_index += 1;
        pos
    }

    /// The position [`reserve`](Self::reserve) gives first while the input record at position
    /// `n` is processed: for an operator that handles a chunk of records without starting each.
    pub(crate) fn first_position(&self, n: u64) -> Position {
        Position { writer: self.writer_id, n, index: 0 }
    }

    /// Buffers an output at its position (see [`reserve`](Self::reserve)), unless recovery
    /// found it already written. Outputs must reach a partition in increasing position order.
    pub(crate) fn emit_at(&mut self, topic: &Arc<str>, partition: u32, rec: OutRec) {
        let pos = rec.pos;
        let tp = (topic.clone(), partition);
        if let Some(written) = self.suppress.get(&tp) {
            if pos.order() <= written.order() {
                self.metrics.suppressed += 1;
                return;
            }
            // Past the recovered position every later output of this partition is new.
            self.suppress.remove(&tp);
        }
        self.metrics.records_out += 1;
        self.out.entry(tp).or_default().push(rec);
    }

    /// Buffers an output to a keyed topic: the partition is chosen from the key bytes as the
    /// client's default partitioner does (murmur2), a null key stays on the task's partition.
    /// Returns the partition.
    pub(crate) fn emit_keyed(
        &mut self,
        topic: &Arc<str>,
        key: Option<Bytes>,
        value: Option<Bytes>,
        ts: i64,
        origin: Option<u64>,
    ) -> u32 {
        let count = self.partition_count(topic);
        let partition = match &key {
            Some(k) => crate::position::partition_for_key(k, count),
            None => self.partition % count,
        };
        let pos = self.reserve();
        let rec = OutRec { key, value, ts, pos, origin, headers: Vec::new() };
        self.emit_at(topic, partition, rec);
        partition
    }

    /// Partitions of an output topic (1 if unknown).
    pub(crate) fn partition_count(&self, topic: &Arc<str>) -> u32 {
        self.partition_counts.get(topic).copied().unwrap_or(1).max(1)
    }

    /// The partition of the task, which is the partition of every record it reads (a task's
    /// sources are co-partitioned).
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The offset of the input record being processed, in its source partition (SQL's
    /// `ROWOFFSET`).
    pub fn input_offset(&self) -> u64 {
        self.input_offset
    }

    /// The position `n` of the input record being processed (input records since offset
    /// zero): a deterministic clock for what a task does every so many records.
    pub(crate) fn input_position(&self) -> u64 {
        self.n
    }

    /// Sets the current input record aside: counted, and sent to the dead-letter topic (with
    /// its original key and value) if the processor has one. What an operator does with a
    /// record it cannot handle (a value that fails to evaluate, state that cannot be encoded);
    /// processing goes on with the next record.
    pub fn set_aside(&mut self, error: &RecordError) {
        match error {
            RecordError::Key(_) | RecordError::Value(_) | RecordError::State(_) => {
                self.metrics.decode_errors += 1
            }
            RecordError::TooLate { .. } => self.metrics.late += 1,
        }
        tracing::debug!(%error, "record set aside");
        let (Some(topic), Some(input)) = (self.dead_letter.clone(), self.current.clone()) else {
            return;
        };
        self.metrics.dead_lettered += 1;
        let origin = format!("{}/{}/{}", input.topic, self.partition, input.offset);
        let headers = vec![
            ("eddy-error", error.kind().as_bytes().to_vec()),
            ("eddy-origin", origin.into_bytes()),
        ];
        let count = self.partition_counts.get(&topic).copied().unwrap_or(1).max(1);
        let partition = self.partition % count;
        self.emit_to(&topic, partition, input.key, input.value, input.ts, headers);
    }
}
