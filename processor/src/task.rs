//! A [`Task`]: one partition of one sub-topology, processing its input and writing its outputs.
//!
//! A poll reads input, pushes each record through the task's graph (filling the output buffers
//! of [`Cx`]), then appends the outputs — step journal first, then each output partition in
//! topic/partition order — and every `snapshot_every_records` input records writes a snapshot.
//!
//! **Order of input.** With one source the task reads its partition in offset order. With
//! several (co-partitioned sources: joins, tables) it merges them by event time: the next record
//! is the buffered head with the smallest `(timestamp, source index)`. Which heads are buffered
//! depends on what had been appended when the task read, so each run of records taken from one
//! source is first recorded in the step journal (`<processor>-<version>-<sub>-steps`, partition =
//! task partition) and, on restart, the journal is followed before anything new is decided. That
//! makes the processing order — and so every output and every table — a function of the logs.
//!
//! **Restart.** Open loads the snapshot (if any), asks `recovery` for the highest output
//! position already in each output partition, and re-processes the input after the snapshot;
//! [`Cx::emit_to`] drops outputs at or below those positions. See `docs/processors.md`.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use eddy_storage::{BatchBuilder, Header, Record};

use crate::context::{CurrentInput, Cx, ORIGIN_HEADER, OutRec, TaskMetrics};
use crate::definition::{ProcessorDef, TaskId};
use crate::error::{Error, Result};
use crate::graph::{ChunkNode, Down, Rec, SharedChunkNode};
use crate::input::{Chunk, Input, Origins};
use crate::log_access::{LogAccess, WaitFor};
use crate::position::{POSITION_HEADER, writer_id};
use crate::recovery::Step;
use crate::snapshot;
use crate::state::StateOp;
use crate::table::{TableRegistry, TableStore};

mod snapshots;

/// A poll of a chunk operator takes up to this many times `poll_max_records`. Each poll ends
/// with a flush (every key changed since the last is written to the table and changelog) and,
/// when due, a snapshot; both cost about the same whatever the poll read (they scale with the
/// keys, not the records), so a catching-up chunk operator, which folds millions of records a
/// second, polls long: 3.2 M records by default, a fraction of a second at replay speed.
const CHUNK_POLLS: u64 = 16;

/// How a task reads, writes and snapshots.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// Snapshots go under `<state_dir>/<processor>-<version>/`.
    pub state_dir: PathBuf,
    /// Bytes asked of one read of an input partition.
    pub read_max_bytes: usize,
    /// Input records a poll processes at most (a whole chunk is always finished).
    pub poll_max_records: u64,
    /// A snapshot is written after at least this many input records since the last one.
    pub snapshot_every_records: u64,
    /// Output batches are cut at about this size.
    pub batch_max_bytes: usize,
    /// A source partition heard nothing from (no record, no frontier hint) for this long is
    /// *idle*: left out of the watermarks until it is heard from again (docs/processors.md,
    /// "Idle partitions"). `None` (the default): a silent partition holds windows open, and
    /// results never depend on the wall clock.
    pub idle_timeout: Option<std::time::Duration>,
    /// Threads a chunk operator may use for one chunk (the task's own and helpers it starts
    /// per chunk): the replay path of a fused aggregate. Default: 2, or 1 on a one-core
    /// machine.
    pub chunk_threads: usize,
    /// Bytes asked of one read for a chunk operator (more than `read_max_bytes`: a chunk
    /// operator's per-chunk costs, such as starting a helper thread, are spread over more
    /// records).
    pub chunk_read_bytes: usize,
    /// The file system snapshots are written to (the operating system's; a simulated one in
    /// power-loss tests, `eddy_storage::vfs::sim`).
    pub fs: eddy_storage::vfs::Fs,
}

impl TaskConfig {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            read_max_bytes: 1 << 20,
            poll_max_records: 200_000,
            snapshot_every_records: 500_000,
            batch_max_bytes: 1 << 20,
            idle_timeout: None,
            chunk_threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
            chunk_read_bytes: 4 << 20,
            fs: eddy_storage::vfs::os(),
        }
    }
}

/// Size of a task's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSize {
    pub table_keys: u64,
    /// Bytes of the tables' keys and values (JSON-encoded).
    pub table_bytes: u64,
    /// Entries held by operators (accumulators of open windows, join buffers, dedupe keys).
    pub operator_entries: u64,
}

struct Journal {
    topic: Arc<str>,
    /// Steps recorded before a restart and not yet replayed, with their journal offsets.
    replay: VecDeque<(u64, Step)>,
    /// Steps taken but not yet appended.
    pending: Vec<Step>,
    /// Journal offset up to which the task's state reflects the steps (what a snapshot
    /// records; during a replay it trails the journal's end).
    pos: u64,
}

type Raw = Option<Bytes>;

/// One task. Not `Send`: it is created and polled on one thread.
pub struct Task {
    id: TaskId,
    def: Arc<ProcessorDef>,
    logs: Arc<dyn LogAccess>,
    config: TaskConfig,
    inputs: Vec<Input>,
    roots: Vec<Option<Down<Raw, Raw>>>,
    /// Per input, the chunk operator that is its only reader, if any (`graph::ChunkNode`).
    chunks: Vec<Option<SharedChunkNode>>,
    cx: Cx,
    n: u64,
    state_ops: Vec<(u32, Rc<RefCell<dyn StateOp>>)>,
    tables: BTreeMap<String, Arc<TableStore>>,
    outputs: Vec<(Arc<str>, u32)>,
    journal: Option<Journal>,
    since_snapshot: u64,
    snapshot_path: PathBuf,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").field("id", &self.id).field("n", &self.n).finish()
    }
}

impl Task {
    pub(crate) fn open(
        def: Arc<ProcessorDef>,
        logs: Arc<dyn LogAccess>,
        id: TaskId,
        config: TaskConfig,
        registry: &TableRegistry,
    ) -> Result<Task> {
        let mut w = def.wire(id.subtopology, id.partition)?;
        let mut chunk_roots = w.chunk_roots();
        let mut inputs = Vec::new();
        let mut roots = Vec::new();
        let mut chunks = Vec::new();
        let mut origins = BTreeMap::new();
        let partitions = |t: &str| logs.partition_count(t).map_err(Error::from);
        for &source in &w.sources {
            let topic: Arc<str> = Arc::from(def.sources[source].as_str());
            let start = logs.start_offset(&topic, id.partition)?;
            let repartitioned = def.repartition_sources.contains_key(&*topic);
            let origin = crate::context::origin_of(&topic, id.partition);
            let carries =
                if repartitioned { Origins::Headers(origin) } else { Origins::Own(origin) };
            inputs.push(Input::new(topic, id.partition, start, carries));
            roots.push(w.roots.remove(&source));
            chunks.push(chunk_roots.remove(&source));
            let carried = def.origins(source, Some(id.partition), &partitions, 0)?;
            origins.insert(source, carried.into_iter().collect::<Vec<u64>>());
        }
        let writer = writer_id(&def.name, def.version, id.subtopology, id.partition);
        let dead_letter = def.dead_letter.as_deref().map(Arc::from);
        let mut cx = Cx::new(writer, id.partition, dead_letter);
        cx.origins = Arc::new(origins);
        cx.idle_after = config.idle_timeout;
        let mut outputs = Vec::new();
        for topic in &w.output_topics {
            let count = logs.partition_count(topic)?;
            let topic: Arc<str> = Arc::from(topic.as_str());
            cx.partition_counts.insert(topic.clone(), count);
            if def.is_changelog(&topic) {
                outputs.push((topic, id.partition));
            } else {
                outputs.extend((0..count).map(|p| (topic.clone(), p)));
            }
        }
        let journal = def.journal_topic(id.subtopology).map(|t| Journal {
            topic: Arc::from(t),
            replay: VecDeque::new(),
            pending: Vec::new(),
            pos: 0,
        });
        let snapshot_path =
            snapshot::path(&config.state_dir, &def.name, def.version, id.subtopology, id.partition);
        let mut task = Task {
            id,
            def,
            logs,
            config,
            inputs,
            roots,
            chunks,
            cx,
            n: 0,
            state_ops: std::mem::take(&mut w.state_ops),
            tables: w.tables.into_iter().collect(),
            outputs,
            journal,
            since_snapshot: 0,
            snapshot_path,
        };
        task.recover()?;
        for (name, store) in &task.tables {
            registry.register(name, store.clone());
        }
        Ok(task)
    }

    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Input records processed since offset zero.
    pub fn position(&self) -> u64 {
        self.n
    }

    pub fn metrics(&self) -> TaskMetrics {
        self.cx.metrics
    }

    pub fn state_size(&self) -> StateSize {
        let mut size = StateSize::default();
        for store in self.tables.values() {
            let (keys, bytes) = store.size();
            size.table_keys += keys;
            size.table_bytes += bytes;
        }
        size.operator_entries = self.state_ops.iter().map(|(_, op)| op.borrow().entries()).sum();
        size
    }

    /// Next offset to read of each input partition.
    pub fn input_positions(&self) -> Vec<(String, u32, u64)> {
        self.inputs.iter().map(|i| (i.topic.to_string(), i.partition, i.next)).collect()
    }

    /// Whether every input partition has been read to its current end.
    pub fn caught_up(&self) -> Result<bool> {
        if self.journal.as_ref().is_some_and(|j| !j.replay.is_empty()) {
            return Ok(false);
        }
        for input in &self.inputs {
            if input.head().is_some()
                || input.next < self.logs.end_offset(&input.topic, input.partition)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The input partitions and positions to wait on for new data.
    pub fn wait_interests(&self) -> Vec<WaitFor<'_>> {
        self.inputs
            .iter()
            .map(|i| WaitFor { topic: &i.topic, partition: i.partition, offset: i.next })
            .collect()
    }

    /// Processes what input is available, up to about `poll_max_records` records,
    /// appends the outputs, and snapshots when due. Returns the number of input records
    /// processed (0: nothing new).
    pub fn poll(&mut self) -> Result<u64> {
        let processed = if self.journal.as_ref().is_some_and(|j| !j.replay.is_empty()) {
            self.replay_steps()?
        } else if self.inputs.len() == 1 {
            self.poll_single()?
        } else {
            self.poll_merged()?
        };
        self.flush()?;
        if self.since_snapshot >= self.config.snapshot_every_records.max(1) {
            self.snapshot()?;
        }
        Ok(processed)
    }

    /// Reads chunks until `poll_max_records` are processed or the input is exhausted: a
    /// catching-up task flushes (and its aggregates write each changed key) once per poll,
    /// not once per chunk.
    fn poll_single(&mut self) -> Result<u64> {
        // A chunk operator needs no per-record bookkeeping but a dead letter's (which needs
        // each record's bytes at hand) and an origin from headers.
        if let (Some(chunk), None, Some(origin)) =
            (self.chunks[0].clone(), &self.cx.dead_letter, self.inputs[0].own_origin())
        {
            return self.poll_chunks(&chunk, origin);
        }
        let mut count = 0;
        while count < self.config.poll_max_records.max(1)
            && self.inputs[0].fill(&*self.logs, self.config.read_max_bytes)?
        {
            while let Some(rec) = self.inputs[0].pop() {
                self.process(0, rec);
                count += 1;
            }
        }
        Ok(count)
    }

    /// [`poll_single`](Self::poll_single) for a chunk operator: each chunk read is decoded in
    /// place and handed over whole.
    fn poll_chunks(&mut self, node: &RefCell<dyn ChunkNode>, origin: u64) -> Result<u64> {
        let mut count = 0;
        let mut areas = Vec::new();
        // A chunk operator costs little per record: longer polls write fewer table changes
        // (one per changed key per poll) and bigger reads start fewer helper threads.
        let max_records = self.config.poll_max_records.max(1).saturating_mul(CHUNK_POLLS);
        let max_bytes = self.config.chunk_read_bytes;
        let threads = self.config.chunk_threads;
        // The next chunk, read while the operator works on this one (reading is a copy or a
        // checksum of the whole chunk, which would otherwise leave the other core idle).
        let mut ahead: Option<Bytes> = None;
        while count < max_records {
            let bytes = match ahead.take() {
                Some(bytes) => bytes,
                None => self.inputs[0].read(&*self.logs, max_bytes)?,
            };
            if !self.inputs[0].take_chunk(&bytes, &mut areas)? {
                break;
            }
            self.cx.origin = origin;
            self.cx.heard_from(origin);
            let input = &self.inputs[0];
            let chunk = Chunk { input, areas: &areas, from: input.next };
            let (logs, cx, n) = (&*self.logs, &mut self.cx, self.n);
            // A chunk shorter than a whole read reached the log's end: nothing to read ahead.
            let k = if threads > 1 && bytes.len() >= max_bytes / 2 {
                std::thread::scope(|s| {
                    let next = s.spawn(|| input.read_after_chunk(logs, max_bytes));
                    let k = node.borrow_mut().push_chunk(&chunk, n, threads, cx);
                    // A failed read ahead is read again, and its error reported, by the next
                    // round (or the next poll).
                    ahead = next.join().ok().and_then(|read| read.ok());
                    k
                })?
            } else {
                node.borrow_mut().push_chunk(&chunk, n, threads, cx)?
            };
            self.inputs[0].finish_chunk();
            self.n += k;
            self.since_snapshot += k;
            self.cx.metrics.records_in += k;
            self.cx.metrics.chunked += k;
            count += k;
        }
        Ok(count)
    }

    fn poll_merged(&mut self) -> Result<u64> {
        let mut count = 0;
        while count < self.config.poll_max_records {
            let mut heads: Vec<(i64, usize)> = Vec::new();
            for (i, input) in self.inputs.iter_mut().enumerate() {
                if input.fill(&*self.logs, self.config.read_max_bytes)?
                    && let Some(h) = input.head()
                {
                    heads.push((h.ts, i));
                }
            }
            heads.sort_unstable();
            let Some(&(_, i)) = heads.first() else { break };
            let bound = heads.get(1).copied();
            while let Some(h) = self.inputs[i].head() {
                if bound.is_some_and(|b| (h.ts, i) >= b) {
                    break;
                }
                let Some(rec) = self.inputs[i].pop() else { break };
                self.process(i, rec);
                count += 1;
            }
            self.record_step(i);
        }
        Ok(count)
    }

    fn record_step(&mut self, input: usize) {
        let end = self.inputs[input].next;
        let Some(journal) = &mut self.journal else { return };
        match journal.pending.last_mut() {
            Some(last) if last.input == input as u32 => last.end = end,
            _ => journal.pending.push(Step { input: input as u32, end }),
        }
    }

    /// Follows the journal: the steps the task took before it restarted.
    fn replay_steps(&mut self) -> Result<u64> {
        let mut count = 0;
        while count < self.config.poll_max_records {
            let Some(journal) = &mut self.journal else { break };
            let Some((offset, step)) = journal.replay.pop_front() else { break };
            journal.pos = offset + 1;
            let i = step.input as usize;
            let topic = self.def.journal_topic(self.id.subtopology).unwrap_or_default();
            let partition = self.id.partition;
            let missing =
                || Error::CorruptJournal { topic: topic.clone(), partition, offset: step.end };
            if i >= self.inputs.len() {
                return Err(missing());
            }
            while self.inputs[i].next < step.end {
                if !self.inputs[i].fill(&*self.logs, self.config.read_max_bytes)? {
                    return Err(missing());
                }
                while let Some(h) = self.inputs[i].head() {
                    if h.offset >= step.end {
                        break;
                    }
                    let Some(rec) = self.inputs[i].pop() else { break };
                    self.process(i, rec);
                    count += 1;
                }
                if self.inputs[i].head().is_some_and(|h| h.offset >= step.end) {
                    break;
                }
            }
        }
        Ok(count)
    }

    fn process(&mut self, input: usize, rec: crate::input::Pending) {
        if let Some((origin, frontier)) = rec.hint {
            // A frontier hint from an upstream task: no record to process, no output.
            self.cx.hint(origin, frontier);
            self.cx.heard_from(origin);
            return;
        }
        self.cx.origin = rec.origin;
        self.cx.input_offset = rec.offset;
        self.cx.heard_from(rec.origin);
        self.cx.begin(self.n);
        // Only a dead letter needs the input record again; without a dead-letter topic the
        // per-record clones (reference counts) are skipped.
        if self.cx.dead_letter.is_some() {
            self.cx.current = Some(CurrentInput {
                topic: self.inputs[input].topic.clone(),
                offset: rec.offset,
                ts: rec.ts,
                key: rec.key.clone(),
                value: rec.value.clone(),
            });
        }
        if let Some(root) = &mut self.roots[input] {
            root.push(Rec { key: rec.key, value: rec.value, ts: rec.ts }, &mut self.cx);
        }
        self.n += 1;
        self.since_snapshot += 1;
        self.cx.metrics.records_in += 1;
    }

    /// Appends the journal's new steps, then every buffered output (with the table changes
    /// operators cached since the last flush).
    fn flush(&mut self) -> Result<()> {
        for (_, op) in &self.state_ops {
            op.borrow_mut().flush(&mut self.cx);
        }
        if let Some(journal) = &mut self.journal
            && !journal.pending.is_empty()
        {
            let mut builder = BatchBuilder::new();
            for step in journal.pending.drain(..) {
                let value = step.encode();
                builder.push(Record { timestamp: 0, key: None, value: Some(&value), headers: &[] });
            }
            let topic = journal.topic.clone();
            let batch = builder.build_valid().map_err(|fault| self.bad_batch(&topic, fault))?;
            let appended = self.logs.append(&topic, self.id.partition, &batch)?;
            if let Some(journal) = &mut self.journal {
                journal.pos = appended.last_offset + 1;
            }
        }
        let out = std::mem::take(&mut self.cx.out);
        for ((topic, partition), records) in out {
            self.append_records(&topic, partition, &records)?;
        }
        Ok(())
    }

    fn append_records(&self, topic: &Arc<str>, partition: u32, records: &[OutRec]) -> Result<()> {
        let mut builder = BatchBuilder::new();
        for rec in records {
            let pos = rec.pos.encode();
            let origin = rec.origin.map(u64::to_be_bytes);
            // The position, and the origin of a repartitioned record, without a heap
            // allocation per record; only records with extra headers (dead letters, frontier
            // hints) build a list.
            let fixed = [
                Header { key: POSITION_HEADER, value: Some(&pos) },
                Header { key: ORIGIN_HEADER.as_bytes(), value: origin.as_ref().map(|o| &o[..]) },
            ];
            let fixed = &fixed[..if origin.is_some() { 2 } else { 1 }];
            let mut extra = Vec::new();
            let headers = if rec.headers.is_empty() {
                fixed
            } else {
                extra.extend_from_slice(fixed);
                extra.extend(
                    rec.headers.iter().map(|(k, v)| Header { key: k.as_bytes(), value: Some(v) }),
                );
                &extra
            };
            builder.push(Record {
                timestamp: rec.ts,
                key: rec.key.as_deref(),
                value: rec.value.as_deref(),
                headers,
            });
            if builder.len_bytes() >= self.config.batch_max_bytes {
                let full = std::mem::take(&mut builder);
                self.append_batch(topic, partition, full)?;
            }
        }
        if !builder.is_empty() {
            self.append_batch(topic, partition, builder)?;
        }
        Ok(())
    }

    fn append_batch(&self, topic: &Arc<str>, partition: u32, builder: BatchBuilder) -> Result<()> {
        let batch = builder.build_valid().map_err(|fault| self.bad_batch(topic, fault))?;
        self.logs.append(topic, partition, &batch)?;
        Ok(())
    }

    fn bad_batch(&self, topic: &str, fault: eddy_storage::BatchError) -> Error {
        Error::BadBatch { topic: topic.to_owned(), partition: self.id.partition, offset: 0, fault }
    }
}
