//! The broker's topics as a processor sees them ([`LogAccess`]): reads and appends go straight
//! to the partition logs, and every append — a producer's or a processor's — bumps a counter
//! that processor threads wait on, so a processor wakes on new input without polling.
//!
//! Invariants:
//! - `wait_for_data` never misses an append between its look at the partitions and its wait
//!   ([`Topics::wait_until`] keeps that).
//! - Processors and SQL read committed data only: a read ends below the partition's last
//!   stable offset, `end_offset` is that offset, and transaction markers and the batches of
//!   aborted transactions come back as empty batches with the same offsets (as compaction
//!   leaves them), so positions move past them and no control record is ever decoded.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use eddy_processor::{Appended, LogAccess, LogError, WaitFor};
use eddy_protocol::v1;
use eddy_storage::{Log, ValidBatch};

use crate::error::BrokerError;
use crate::topic::CleanupSetting;
use crate::topics::{Topic, Topics};

/// [`LogAccess`] over a broker's topics.
#[derive(Debug, Clone)]
pub struct BrokerLogs {
    topics: Arc<Topics>,
}

impl BrokerLogs {
    pub fn new(topics: Arc<Topics>) -> Self {
        Self { topics }
    }

    fn log(&self, topic: &str, partition: u32) -> Result<Arc<Log>, LogError> {
        let t = self.topics.get(topic).map_err(to_log_error)?;
        t.partition(partition).cloned().map_err(to_log_error)
    }
}

fn to_log_error(e: BrokerError) -> LogError {
    match e {
        BrokerError::UnknownTopic(topic) => LogError::UnknownTopic { topic },
        BrokerError::UnknownPartition { topic, partition } => {
            LogError::UnknownPartition { topic, partition }
        }
        BrokerError::InvalidTopicName { name, reason } => {
            LogError::InvalidTopic { topic: name, reason }
        }
        BrokerError::Storage { topic, partition, source } => {
            LogError::Storage { topic, partition, source }
        }
        other => LogError::Io {
            op: "use the broker's topics",
            path: std::path::PathBuf::new(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

fn storage(topic: &str, partition: u32) -> impl FnOnce(eddy_storage::Error) -> LogError {
    let topic = topic.to_owned();
    move |source| LogError::Storage { topic, partition, source }
}

impl LogAccess for BrokerLogs {
    fn partition_count(&self, topic: &str) -> Result<u32, LogError> {
        Ok(self.topics.get(topic).map_err(to_log_error)?.partitions.len() as u32)
    }

    fn create_topic(&self, topic: &str, partitions: u32, compacted: bool) -> Result<(), LogError> {
        let mismatch = |t: &Topic| LogError::TopicMismatch {
            topic: topic.to_owned(),
            existing: t.partitions.len() as u32,
            compacted: t.settings.cleanup == CleanupSetting::Compact,
        };
        if let Ok(t) = self.topics.get(topic) {
            return if t.partitions.len() as u32 == partitions {
                Ok(())
            } else {
                Err(mismatch(&t))
            };
        }
        let cleanup =
            if compacted { v1::CleanupPolicy::Compact } else { v1::CleanupPolicy::Delete };
        let config = v1::TopicConfig {
            partitions: Some(partitions),
            // A processor's topics are its state and its history: kept until it is dropped.
            retention_ms: Some(-1),
            cleanup: Some(cleanup as i32),
            ..v1::TopicConfig::default()
        };
        match self.topics.create(topic, Some(&config)) {
            Ok(_) => Ok(()),
            // Created meanwhile by another task of the same processor.
            Err(BrokerError::TopicExists(_)) => {
                let t = self.topics.get(topic).map_err(to_log_error)?;
                if t.partitions.len() as u32 == partitions { Ok(()) } else { Err(mismatch(&t)) }
            }
            Err(e) => Err(to_log_error(e)),
        }
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
    ) -> Result<Bytes, LogError> {
        let log = self.log(topic, partition)?;
        let (bytes, lso) =
            log.read_committed(from, max_bytes).map_err(storage(topic, partition))?;
        Ok(eddy_storage::txn::committed_view(&bytes, &log.aborted_txns(from, lso)))
    }

    fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        Ok(self.log(topic, partition)?.start_offset())
    }

    /// The last stable offset: what a committed reader can read up to.
    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        Ok(self.log(topic, partition)?.last_stable_offset())
    }

    fn append(
        &self,
        topic: &str,
        partition: u32,
        batch: &ValidBatch,
    ) -> Result<Appended, LogError> {
        let info =
            self.log(topic, partition)?.append_valid(batch).map_err(storage(topic, partition))?;
        self.topics.appended();
        Ok(Appended { base_offset: info.base_offset, last_offset: info.last_offset })
    }

    fn flush(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        self.log(topic, partition)?.flush().map_err(storage(topic, partition))
    }

    fn wait_for_data(&self, interests: &[WaitFor<'_>], deadline: Instant) -> bool {
        self.topics.wait_until(deadline, || {
            interests.iter().any(|w| {
                self.log(w.topic, w.partition).is_ok_and(|log| log.last_stable_offset() > w.offset)
            })
        })
    }
}
