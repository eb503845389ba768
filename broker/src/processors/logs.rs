//! The broker's topics as a processor sees them ([`LogAccess`]): reads and appends go straight
//! to the partition logs, and every append — a producer's or a processor's — bumps a counter
//! that processor threads wait on, so a processor wakes on new input without polling.
//!
//! Invariant: `wait_for_data` reads the counter before it looks at the partitions, and waits
//! only while the counter is unchanged, so an append between the look and the wait is never
//! missed.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use bytes::Bytes;
use eddy_processor::{Appended, LogAccess, LogError, WaitFor};
use eddy_protocol::v1;
use eddy_storage::{Log, ValidBatch};

use crate::broker::Broker;
use crate::error::BrokerError;

/// Appends seen so far, for processor threads to wait on.
#[derive(Debug, Default)]
pub struct AppendSignal {
    count: Mutex<u64>,
    changed: Condvar,
}

impl AppendSignal {
    pub fn bump(&self) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.changed.notify_all();
    }
}

/// [`LogAccess`] over a broker's topics.
#[derive(Debug, Clone)]
pub struct BrokerLogs {
    broker: Broker,
}

impl BrokerLogs {
    pub fn new(broker: Broker) -> Self {
        Self { broker }
    }

    fn log(&self, topic: &str, partition: u32) -> Result<Arc<Log>, LogError> {
        let t = self.broker.topic(topic).map_err(to_log_error)?;
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
        Ok(self.broker.topic(topic).map_err(to_log_error)?.partitions.len() as u32)
    }

    fn create_topic(&self, topic: &str, partitions: u32, compacted: bool) -> Result<(), LogError> {
        let mismatch = |t: &crate::broker::Topic| LogError::TopicMismatch {
            topic: topic.to_owned(),
            existing: t.partitions.len() as u32,
            compacted: t.settings.cleanup == crate::topic::CleanupSetting::Compact,
        };
        if let Ok(t) = self.broker.topic(topic) {
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
        match self.broker.create_topic(topic, Some(&config)) {
            Ok(_) => Ok(()),
            // Created meanwhile by another task of the same processor.
            Err(BrokerError::TopicExists(_)) => {
                let t = self.broker.topic(topic).map_err(to_log_error)?;
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
        self.log(topic, partition)?.read(from, max_bytes).map_err(storage(topic, partition))
    }

    fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        Ok(self.log(topic, partition)?.start_offset())
    }

    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        Ok(self.log(topic, partition)?.next_offset())
    }

    fn append(
        &self,
        topic: &str,
        partition: u32,
        batch: &ValidBatch,
    ) -> Result<Appended, LogError> {
        let info =
            self.log(topic, partition)?.append_valid(batch).map_err(storage(topic, partition))?;
        self.broker.appended();
        Ok(Appended { base_offset: info.base_offset, last_offset: info.last_offset })
    }

    fn flush(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        self.log(topic, partition)?.flush().map_err(storage(topic, partition))
    }

    fn wait_for_data(&self, interests: &[WaitFor<'_>], deadline: Instant) -> bool {
        let signal = &self.broker.inner.append_signal;
        let mut seen = signal.count.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let before = *seen;
            let arrived = interests.iter().any(|w| {
                self.log(w.topic, w.partition).is_ok_and(|log| log.next_offset() > w.offset)
            });
            if arrived {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || self.broker.is_shutting_down() {
                return false;
            }
            while *seen == before {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                seen = signal.changed.wait_timeout(seen, left).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
    }
}
