//! Processors and connectors run with the rights of the principal that deployed them (their
//! owner): [`check_rights`] refuses a start the owner could not do itself, and [`OwnedLogs`]
//! checks every read, append and topic creation while it runs, so a right removed later stops
//! the processor's task (or fails the connector) at its next read or append, naming what was
//! refused — the same "User:bob may not READ topic orders-eu" a request gets.
//!
//! A processor's own internal topics (changelogs, repartition and journal topics, named after
//! it and its version) are its state, not data its owner reads or writes: they are not checked.
//! Owners run without an address, so only ACLs for host `*` apply to them.

use std::collections::BTreeSet;
use std::time::Instant;

use bytes::Bytes;
use eddy_processor::{Appended, LogAccess, LogError, WaitFor};
use eddy_storage::ValidBatch;

use super::logs::BrokerLogs;
use crate::error::BrokerError;
use crate::security::acl::{Operation, ResourceType};
use crate::security::acls::Access;
use crate::topics::Topics;

/// Whether `access` may read every one of `inputs` and write every one of `outputs` (and
/// create those that do not exist yet).
pub fn check_rights(
    access: &Access,
    topics: &Topics,
    inputs: &[String],
    outputs: &[String],
) -> Result<(), BrokerError> {
    if !access.restricted() {
        return Ok(());
    }
    for topic in inputs {
        access.check(Operation::Read, ResourceType::Topic, topic)?;
    }
    for topic in outputs {
        access.check(Operation::Write, ResourceType::Topic, topic)?;
        if topics.get(topic).is_err() {
            access.check_create_topic(topic)?;
        }
    }
    Ok(())
}

/// [`BrokerLogs`] as one owner may use them.
#[derive(Debug)]
pub struct OwnedLogs {
    logs: BrokerLogs,
    access: Access,
    /// Topics that are the processor's own state (never checked).
    own: BTreeSet<String>,
}

impl OwnedLogs {
    pub fn new(logs: BrokerLogs, access: Access, own: impl IntoIterator<Item = String>) -> Self {
        Self { logs, access, own: own.into_iter().collect() }
    }

    fn check(&self, op: Operation, topic: &str, partition: u32) -> Result<(), LogError> {
        if self.own.contains(topic) {
            return Ok(());
        }
        self.access.check(op, ResourceType::Topic, topic).map_err(|e| LogError::Backend {
            topic: topic.to_string(),
            partition,
            source: Box::new(e),
        })
    }
}

impl LogAccess for OwnedLogs {
    fn partition_count(&self, topic: &str) -> Result<u32, LogError> {
        self.check(Operation::Describe, topic, 0)?;
        self.logs.partition_count(topic)
    }

    fn create_topic(&self, topic: &str, partitions: u32, compacted: bool) -> Result<(), LogError> {
        if !self.own.contains(topic) && self.logs.partition_count(topic).is_err() {
            self.access.check_create_topic(topic).map_err(|e| LogError::Backend {
                topic: topic.to_string(),
                partition: 0,
                source: Box::new(e),
            })?;
        }
        self.logs.create_topic(topic, partitions, compacted)
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
    ) -> Result<Bytes, LogError> {
        self.check(Operation::Read, topic, partition)?;
        self.logs.read(topic, partition, from, max_bytes)
    }

    fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.check(Operation::Describe, topic, partition)?;
        self.logs.start_offset(topic, partition)
    }

    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.check(Operation::Describe, topic, partition)?;
        self.logs.end_offset(topic, partition)
    }

    fn append(
        &self,
        topic: &str,
        partition: u32,
        batch: &ValidBatch,
    ) -> Result<Appended, LogError> {
        self.check(Operation::Write, topic, partition)?;
        self.logs.append(topic, partition, batch)
    }

    fn flush(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        self.check(Operation::Write, topic, partition)?;
        self.logs.flush(topic, partition)
    }

    /// Waiting reveals nothing but that some partition moved; the read that follows is checked.
    fn wait_for_data(&self, interests: &[WaitFor<'_>], deadline: Instant) -> bool {
        self.logs.wait_for_data(interests, deadline)
    }
}
