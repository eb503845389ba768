//! A task's snapshots: writing one (after flushing every output to stable storage) and, on
//! open, loading the latest, learning which outputs were already written, and queueing the
//! journal's steps — what makes a restarted task go on exactly where it was.

use std::collections::BTreeMap;

use super::Task;
use crate::error::{Error, Result};
use crate::position::Position;
use crate::recovery;
use crate::snapshot::{self, Snapshot, SnapshotMeta};

impl Task {
    /// Writes a snapshot of the task as of now (outputs are flushed to stable storage first).
    pub fn snapshot(&mut self) -> Result<()> {
        self.flush()?;
        let mut outputs = Vec::new();
        for (topic, partition) in &self.outputs {
            self.logs.flush(topic, *partition)?;
            outputs.push((topic.to_string(), *partition, self.logs.end_offset(topic, *partition)?));
        }
        if let Some(journal) = &self.journal {
            self.logs.flush(&journal.topic, self.id.partition)?;
        }
        let journal_end = self.journal.as_ref().map(|j| j.pos);
        let mut ops = Vec::new();
        for (id, op) in &self.state_ops {
            let mut bytes = Vec::new();
            op.borrow()
                .save(&mut bytes)
                .map_err(|source| Error::EncodeState { op: *id, source })?;
            ops.push((*id, bytes));
        }
        let mut tables = Vec::new();
        for (name, store) in &self.tables {
            let mut bytes = Vec::new();
            store.save(&mut bytes).map_err(|source| Error::EncodeState { op: 0, source })?;
            tables.push((name.clone(), bytes));
        }
        let meta = SnapshotMeta {
            processor: self.def.name.clone(),
            version: self.def.version,
            subtopology: self.id.subtopology,
            partition: self.id.partition,
            n: self.n,
            inputs: self.inputs.iter().map(|i| (i.topic.to_string(), i.next)).collect(),
            journal_end,
            outputs,
            suppress: self
                .cx
                .suppress
                .iter()
                .map(|((t, p), pos)| (t.to_string(), *p, pos.n, pos.index))
                .collect(),
            hints: self.cx.hints.iter().map(|(o, f)| (*o, *f)).collect(),
        };
        let format = snapshot::VERSION;
        snapshot::write(
            &*self.config.fs,
            &self.snapshot_path,
            &Snapshot { meta, ops, tables, format },
        )?;
        self.since_snapshot = 0;
        tracing::debug!(task = %self.id, n = self.n, "snapshot written");
        Ok(())
    }

    /// Loads the snapshot, learns what was already written, and queues the journal's steps.
    pub(super) fn recover(&mut self) -> Result<()> {
        let snap = snapshot::read(&*self.config.fs, &self.snapshot_path)?;
        let mut output_from: BTreeMap<(String, u32), u64> = BTreeMap::new();
        let mut carried: BTreeMap<(String, u32), Position> = BTreeMap::new();
        let mut journal_from = 0;
        if let Some(snap) = snap {
            self.restore(&snap)?;
            output_from = snap.meta.outputs.iter().map(|(t, p, e)| ((t.clone(), *p), *e)).collect();
            carried = snap
                .meta
                .suppress
                .iter()
                .map(|(t, p, n, index)| {
                    ((t.clone(), *p), Position { writer: self.cx.writer_id, n: *n, index: *index })
                })
                .collect();
            journal_from = snap.meta.journal_end.unwrap_or(0);
        }
        for (topic, partition) in &self.outputs {
            let key = (topic.to_string(), *partition);
            let from = output_from.get(&key).copied().unwrap_or(0);
            let found =
                recovery::max_position(&*self.logs, topic, *partition, from, self.cx.writer_id)?;
            // Outputs after the snapshot's ends come later than any it carried.
            if let Some(pos) = found.or_else(|| carried.get(&key).copied()) {
                self.cx.suppress.insert((topic.clone(), *partition), pos);
            }
        }
        if let Some(journal) = &mut self.journal {
            let steps = recovery::read_journal(
                &*self.logs,
                &journal.topic,
                self.id.partition,
                journal_from,
            )?;
            journal.replay = steps.into();
            journal.pos = journal_from;
        }
        tracing::info!(
            task = %self.id,
            n = self.n,
            suppressing = self.cx.suppress.len(),
            replay_steps = self.journal.as_ref().map_or(0, |j| j.replay.len()),
            "task opened"
        );
        Ok(())
    }

    fn restore(&mut self, snap: &Snapshot) -> Result<()> {
        let mismatch =
            |reason| Error::SnapshotMismatch { path: self.snapshot_path.clone(), reason };
        let m = &snap.meta;
        if m.processor != self.def.name
            || m.version != self.def.version
            || m.subtopology != self.id.subtopology
            || m.partition != self.id.partition
        {
            return Err(mismatch("it belongs to another processor, version or task"));
        }
        for (topic, next) in &m.inputs {
            let input = self.inputs.iter_mut().find(|i| &*i.topic == topic.as_str());
            let Some(input) = input else { return Err(mismatch("an input topic is unknown")) };
            *input = input.at(*next);
        }
        for (id, bytes) in &snap.ops {
            let Some((_, op)) = self.state_ops.iter().find(|(i, _)| i == id) else {
                return Err(mismatch("an operator id is unknown"));
            };
            op.borrow_mut().load(bytes).map_err(|fault| Error::CorruptSnapshot {
                path: self.snapshot_path.clone(),
                fault,
            })?;
        }
        for (name, bytes) in &snap.tables {
            let Some(store) = self.tables.get(name) else {
                return Err(mismatch("a table is unknown"));
            };
            store.load(&mut bytes.as_slice(), snap.format >= 2).map_err(|fault| {
                Error::CorruptSnapshot { path: self.snapshot_path.clone(), fault }
            })?;
        }
        self.n = m.n;
        self.cx.hints = m.hints.iter().copied().collect();
        Ok(())
    }
}
