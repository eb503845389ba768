//! Topics: names, stored configuration, and the conversions between the wire's `TopicConfig`
//! and the storage's `LogConfig`.
//!
//! A topic lives in `DATA/topics/NAME/`: `topic.json` holds its configuration (replaced
//! atomically), and each partition is a log directory `DATA/topics/NAME/P/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use eddy_protocol::v1;
use eddy_storage::{Cleanup, Flush, LogConfig};
use serde::{Deserialize, Serialize};

use crate::error::BrokerError;

/// Longest topic name (as in Kafka, so names fit in file names with room for suffixes).
pub const MAX_NAME_LEN: usize = 249;
/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 4096;

/// A topic's configuration as stored in `topic.json`, every value resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicSettings {
    pub partitions: u32,
    /// `None`: keep forever.
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
    pub segment_bytes: u64,
    pub cleanup: CleanupSetting,
    pub flush: FlushSetting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CleanupSetting {
    Delete,
    Compact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushSetting {
    Always,
    Os,
    Interval { ms: u32 },
}

impl Default for TopicSettings {
    fn default() -> Self {
        let log = LogConfig::default();
        Self {
            partitions: 1,
            retention_ms: log.retention_ms,
            retention_bytes: None,
            segment_bytes: log.segment_bytes,
            cleanup: CleanupSetting::Delete,
            flush: FlushSetting::Os,
        }
    }
}

impl TopicSettings {
    /// `defaults` overridden by whatever `wire` sets.
    pub fn resolve(
        wire: Option<&v1::TopicConfig>,
        defaults: &TopicSettings,
    ) -> Result<Self, BrokerError> {
        let mut s = defaults.clone();
        let Some(w) = wire else { return Ok(s) };
        if let Some(p) = w.partitions {
            s.partitions = p;
        }
        if let Some(ms) = w.retention_ms {
            s.retention_ms = (ms >= 0).then_some(ms);
        }
        if let Some(b) = w.retention_bytes {
            s.retention_bytes = Some(b);
        }
        if let Some(b) = w.segment_bytes {
            s.segment_bytes = b;
        }
        if let Some(c) = w.cleanup {
            s.cleanup = match v1::CleanupPolicy::try_from(c) {
                Ok(v1::CleanupPolicy::Delete) => CleanupSetting::Delete,
                Ok(v1::CleanupPolicy::Compact) => CleanupSetting::Compact,
                Err(_) => return Err(invalid("cleanup", format!("unknown policy {c}"))),
            };
        }
        if let Some(f) = &w.flush {
            s.flush = match f.policy {
                Some(v1::flush_policy::Policy::Always(_)) => FlushSetting::Always,
                Some(v1::flush_policy::Policy::Os(_)) | None => FlushSetting::Os,
                Some(v1::flush_policy::Policy::IntervalMs(0)) => {
                    return Err(invalid("flush", "interval must be positive".into()));
                }
                Some(v1::flush_policy::Policy::IntervalMs(ms)) => FlushSetting::Interval { ms },
            };
        }
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), BrokerError> {
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err(invalid("partitions", format!("must be between 1 and {MAX_PARTITIONS}")));
        }
        self.log_config().validate().map_err(|e| match e {
            eddy_storage::Error::InvalidConfig { field, reason } => invalid(field, reason.into()),
            other => invalid("config", other.to_string()),
        })
    }

    /// The storage configuration of each of the topic's partitions.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            flush: match self.flush {
                FlushSetting::Always => Flush::Always,
                FlushSetting::Os => Flush::Os,
                FlushSetting::Interval { ms } => {
                    Flush::Interval(Duration::from_millis(u64::from(ms)))
                }
            },
            cleanup: match self.cleanup {
                CleanupSetting::Delete => Cleanup::Delete,
                CleanupSetting::Compact => Cleanup::Compact,
            },
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            ..LogConfig::default()
        }
    }

    /// The configuration as the wire carries it, every field set.
    pub fn to_wire(&self) -> v1::TopicConfig {
        v1::TopicConfig {
            partitions: Some(self.partitions),
            retention_ms: Some(self.retention_ms.unwrap_or(-1)),
            retention_bytes: self.retention_bytes,
            segment_bytes: Some(self.segment_bytes),
            cleanup: Some(match self.cleanup {
                CleanupSetting::Delete => v1::CleanupPolicy::Delete as i32,
                CleanupSetting::Compact => v1::CleanupPolicy::Compact as i32,
            }),
            flush: Some(v1::FlushPolicy {
                policy: Some(match self.flush {
                    FlushSetting::Always => v1::flush_policy::Policy::Always(true),
                    FlushSetting::Os => v1::flush_policy::Policy::Os(true),
                    FlushSetting::Interval { ms } => v1::flush_policy::Policy::IntervalMs(ms),
                }),
            }),
        }
    }
}

fn invalid(field: &'static str, reason: String) -> BrokerError {
    BrokerError::InvalidConfig { field, reason }
}

/// Kafka's rules: 1 to 249 characters from `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), BrokerError> {
    let bad = |reason| Err(BrokerError::InvalidTopicName { name: name.to_string(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are reserved");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Internal topics belong to the broker: clients read them but never write or delete them.
pub fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

/// Internal topics no client may read, list or delete (they hold credentials: a salt and a
/// StoredKey are enough for an offline guess at a password). The broker's services open them
/// directly; to every request they do not exist.
const SECRET_TOPICS: &[&str] = &["__users"];

/// Whether `name` is a [secret](SECRET_TOPICS) internal topic.
pub fn is_secret(name: &str) -> bool {
    SECRET_TOPICS.contains(&name)
}

pub fn topic_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("topics").join(name)
}

pub fn partition_dir(topic_dir: &Path, partition: u32) -> PathBuf {
    topic_dir.join(partition.to_string())
}

pub const SETTINGS_FILE: &str = "topic.json";
