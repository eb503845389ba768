//! A built [`Processor`]: the handle on its definition (`definition.rs`), the topics it needs,
//! and its tasks.
//!
//! `prepare` creates what the processor writes (changelogs, repartition topics, sinks, the
//! dead-letter topic, step journals) and checks that sources sharing tasks are co-partitioned;
//! it returns the tasks, one per partition of each sub-topology.

use std::sync::Arc;

use crate::definition::{ProcessorDef, TaskId};
use crate::error::{Error, Result};
use crate::log_access::LogAccess;
use crate::table::TableRegistry;
use crate::task::{Task, TaskConfig};

/// A processor definition, ready to run. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Processor {
    pub(crate) def: Arc<ProcessorDef>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("name", &self.def.name)
            .field("version", &self.def.version)
            .field("sources", &self.def.sources)
            .field("tables", &self.def.tables.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Processor {
    pub(crate) fn new(def: ProcessorDef) -> Self {
        Self { def: Arc::new(def) }
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    pub fn version(&self) -> u32 {
        self.def.version
    }

    /// The topics it reads that it does not own (its inputs, without repartition topics).
    pub fn source_topics(&self) -> Vec<String> {
        let internal = self.internal_topics();
        let mut topics: Vec<String> =
            self.def.sources.iter().filter(|t| !internal.contains(t)).cloned().collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// Table names.
    pub fn tables(&self) -> Vec<String> {
        self.def.tables.keys().cloned().collect()
    }

    /// The changelog topic of table `name`.
    pub fn changelog_topic(&self, name: &str) -> Option<String> {
        self.def.tables.get(name).map(|t| t.changelog.clone())
    }

    /// The topics this processor owns: its tables' changelogs, its repartition topics and its
    /// step journals (not the output topics it writes with `to`, which belong to their
    /// readers). Removing a processor's version removes exactly these.
    pub fn internal_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> =
            self.def.tables.values().map(|t| t.changelog.clone()).collect();
        topics.extend(self.def.internal.iter().map(|(t, _)| t.clone()));
        topics.extend(
            (0..self.def.subtopologies.len() as u32).filter_map(|sub| self.def.journal_topic(sub)),
        );
        topics.sort();
        topics.dedup();
        topics
    }

    /// Creates the topics the processor writes and returns its tasks.
    pub fn prepare(&self, logs: &dyn LogAccess) -> Result<Vec<TaskId>> {
        for (topic, partitions) in &self.def.internal {
            logs.create_topic(topic, *partitions, false)?;
        }
        let mut tasks = Vec::new();
        for sub in 0..self.def.subtopologies.len() as u32 {
            let count = self.partitions_of(sub, logs)?;
            let w = self.def.wire(sub, 0)?;
            for topic in &w.output_topics {
                if self.def.is_changelog(topic) {
                    logs.create_topic(topic, count, true)?;
                } else if logs.partition_count(topic).is_err() {
                    logs.create_topic(topic, count, false)?;
                }
            }
            if let Some(journal) = self.def.journal_topic(sub) {
                logs.create_topic(&journal, count, false)?;
            }
            tasks.extend((0..count).map(|partition| TaskId { subtopology: sub, partition }));
        }
        Ok(tasks)
    }

    /// Opens one task on the calling thread (for embedding a task in your own scheduler, and for
    /// tests that stop a task at a chosen point). Call [`prepare`](Self::prepare) first.
    pub fn open_task(
        &self,
        logs: Arc<dyn LogAccess>,
        id: TaskId,
        config: TaskConfig,
        registry: &TableRegistry,
    ) -> Result<Task> {
        Task::open(self.def.clone(), logs, id, config, registry)
    }

    /// Where task `id` keeps its snapshot under `state_dir` (`TaskConfig::state_dir`): an
    /// embedding scheduler that moves tasks between machines ships this file.
    pub fn snapshot_path(&self, state_dir: &std::path::Path, id: TaskId) -> std::path::PathBuf {
        crate::snapshot::path(
            state_dir,
            &self.def.name,
            self.def.version,
            id.subtopology,
            id.partition,
        )
    }

    /// The partition count shared by a sub-topology's sources.
    fn partitions_of(&self, sub: u32, logs: &dyn LogAccess) -> Result<u32> {
        let mut first: Option<(&str, u32)> = None;
        let topology = &self.def.subtopologies[sub as usize];
        for &source in &topology.sources {
            let topic = &self.def.sources[source];
            let count = logs.partition_count(topic)?;
            match first {
                None => first = Some((topic, count)),
                Some((t, c)) if c != count => {
                    return Err(Error::NotCoPartitioned {
                        first: t.to_owned(),
                        first_partitions: c,
                        second: topic.clone(),
                        second_partitions: count,
                    });
                }
                Some(_) => {}
            }
        }
        Ok(first.map_or(0, |(_, c)| c))
    }
}
