//! A processor's definition as the builder leaves it ([`ProcessorDef`]): its sources, the
//! sub-topologies that share tasks, the sinks to wire into each, its tables and internal
//! topics; and [`TaskId`], one partition of one sub-topology.
//!
//! Invariants: a definition is immutable once built (tasks share it behind an `Arc`); wiring
//! a sub-topology for a partition is a pure function of the definition, so every task of it,
//! and every restart of a task, gets the same graph with the same operator ids.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::Wiring;

pub(crate) type TerminalFn = dyn Fn(&mut Wiring) -> Result<()> + Send + Sync;

/// Wires one sink (and everything upstream of it) into a task.
#[derive(Clone)]
pub(crate) struct Terminal {
    pub wire: Arc<TerminalFn>,
}

/// Sources that share tasks.
#[derive(Debug, Clone)]
pub(crate) struct SubTopology {
    pub sources: BTreeSet<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct TableInfo {
    pub changelog: String,
}

pub(crate) struct ProcessorDef {
    pub name: String,
    pub version: u32,
    pub sources: Vec<String>,
    pub subtopologies: Vec<SubTopology>,
    /// Sinks by sub-topology.
    pub terminals: Vec<Vec<Terminal>>,
    pub tables: BTreeMap<String, TableInfo>,
    pub internal: Vec<(String, u32)>,
    /// The sources (indices) of the stream each repartition topic is written from.
    pub repartition_sources: BTreeMap<String, Vec<usize>>,
    /// Sources read only as tables: their records set table rows and carry no event time.
    pub table_only: BTreeSet<usize>,
    pub dead_letter: Option<String>,
}

impl ProcessorDef {
    pub fn prefix(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    /// The step journal of a sub-topology that reads more than one source.
    pub fn journal_topic(&self, sub: u32) -> Option<String> {
        let t = self.subtopologies.get(sub as usize)?;
        (t.sources.len() > 1).then(|| format!("{}-{sub}-steps", self.prefix()))
    }

    /// Builds the graph of sub-topology `sub` for `partition`.
    pub fn wire(&self, sub: u32, partition: u32) -> Result<Wiring> {
        let topology = self
            .subtopologies
            .get(sub as usize)
            .ok_or(Error::Definition { reason: "no such sub-topology" })?;
        let mut w = Wiring::new(partition, topology.sources.clone());
        for t in self.terminals.get(sub as usize).into_iter().flatten() {
            (t.wire)(&mut w)?;
        }
        if let Some(dlq) = &self.dead_letter {
            w.output_topics.insert(dlq.clone());
        }
        Ok(w)
    }

    /// The origins (see `context::origin_of`) that source `source` carries into a task of
    /// `partition` (`None`: into any task — every partition): an outside topic carries its own
    /// partition; a repartition topic carries every origin of the stream written into it.
    /// `partitions` gives an outside topic's partition count.
    pub fn origins(
        &self,
        source: usize,
        partition: Option<u32>,
        partitions: &dyn Fn(&str) -> Result<u32>,
        depth: usize,
    ) -> Result<BTreeSet<u64>> {
        let topic =
            self.sources.get(source).ok_or(Error::Definition { reason: "no such source" })?;
        let mut out = BTreeSet::new();
        if self.table_only.contains(&source) {
            return Ok(out);
        }
        match self.repartition_sources.get(topic) {
            // A cycle cannot be built; the depth only guards against a corrupt definition.
            Some(_) if depth > self.sources.len() => {
                return Err(Error::Definition { reason: "repartition topics form a cycle" });
            }
            Some(upstream) => {
                for s in upstream {
                    out.extend(self.origins(*s, None, partitions, depth + 1)?);
                }
            }
            None => match partition {
                Some(p) => {
                    out.insert(crate::context::origin_of(topic, p));
                }
                None => {
                    for p in 0..partitions(topic)? {
                        out.insert(crate::context::origin_of(topic, p));
                    }
                }
            },
        }
        Ok(out)
    }

    pub fn is_changelog(&self, topic: &str) -> bool {
        self.tables.values().any(|t| t.changelog == topic)
    }
}

/// A task: one partition of one sub-topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub subtopology: u32,
    pub partition: u32,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}
