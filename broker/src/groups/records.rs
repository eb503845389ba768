//! The records the coordinator keeps in `__consumer_offsets`, and the replay that rebuilds
//! every group from them at startup.
//!
//! Keys and values are JSON (readable with `eddy consume __consumer_offsets`). A key is
//! serialised from a struct, so the same key always has the same bytes — which is what
//! compaction compares. A null value (tombstone) deletes the key:
//!
//! | key                                              | value                                  |
//! |--------------------------------------------------|----------------------------------------|
//! | `{"type":"group","group":G}`                     | `{"epoch":N}`                          |
//! | `{"type":"member","group":G,"member":M}`         | the member's state ([`MemberState`])   |
//! | `{"type":"offset","group":G,"topic":T,"partition":P}` | `{"offset","metadata","commit_time_ms"}` |
//!
//! Replay applies records in offset order, so the last write of a key wins, exactly as it
//! does after compaction.

use std::collections::BTreeMap;
use std::time::Instant;

use eddy_storage::{BatchBuilder, Log, Record, ValidBatch};
use serde::{Deserialize, Serialize};

use super::state::{Committed, Group, Member, MemberState};
use crate::error::BrokerError;

/// The internal topic holding every group's state.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Batches written by the coordinator stay well below any sane `max_batch_bytes`.
const MAX_WRITE_BATCH: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Key {
    Group { group: String },
    Member { group: String, member: String },
    Offset { group: String, topic: String, partition: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupValue {
    pub epoch: u64,
}

/// One record to write: a key and its new value (`None` deletes it).
pub type Write = (Key, Option<Vec<u8>>);

pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail (no maps with non-string keys, no I/O).
    serde_json::to_vec(value).unwrap_or_default()
}

/// The records that bring the log up to date with `group`'s dirty parts.
pub fn dirty_writes(group: &Group) -> Vec<Write> {
    let mut writes = Vec::new();
    if group.dirty {
        let value = to_json(&GroupValue { epoch: group.epoch });
        writes.push((Key::Group { group: group.id.clone() }, Some(value)));
    }
    for id in &group.dirty_members {
        let key = Key::Member { group: group.id.clone(), member: id.clone() };
        writes.push((key, group.members.get(id).map(|m| to_json(&m.to_state()))));
    }
    writes
}

/// Appends `writes` (in order) without waiting for an fsync; returns the offset the log must
/// be durable through before the caller acknowledges, or `None` if there was nothing to write.
pub fn append(log: &Log, writes: &[Write], now_ms: i64) -> Result<Option<u64>, BrokerError> {
    let mut last = None;
    let mut builder = BatchBuilder::new();
    let storage =
        |source| BrokerError::Storage { topic: OFFSETS_TOPIC.into(), partition: 0, source };
    let mut flush = |builder: BatchBuilder| -> Result<(), BrokerError> {
        let batch: ValidBatch = builder.build_valid().map_err(|e| storage(e.into()))?;
        let info = log.append_valid_unsynced(&batch).map_err(storage)?;
        last = Some(info.last_offset + 1);
        Ok(())
    };
    for (key, value) in writes {
        let key = to_json(key);
        builder.push(Record {
            timestamp: now_ms,
            key: Some(&key),
            value: value.as_deref(),
            headers: &[],
        });
        if builder.len_bytes() >= MAX_WRITE_BATCH {
            flush(std::mem::take(&mut builder))?;
        }
    }
    if !builder.is_empty() {
        flush(builder)?;
    }
    Ok(last)
}

/// Rebuilds every group from the log. Records that do not parse are skipped with a warning
/// (they cannot come from this broker; they are never fatal).
pub fn replay(log: &Log, now: Instant) -> Result<BTreeMap<String, Group>, BrokerError> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut members: BTreeMap<(String, String), MemberState> = BTreeMap::new();
    let mut records = 0u64;
    crate::internal::for_each_record(log, OFFSETS_TOPIC, |offset, key, value| {
        records += 1;
        apply(&mut groups, &mut members, key, value, offset);
    })?;
    for ((group, id), state) in members {
        if let Some(g) = groups.get_mut(&group) {
            g.members.insert(id, Member::from_state(state, now));
        }
    }
    for g in groups.values_mut() {
        g.dirty = false;
        g.dirty_members.clear();
        g.resolve_conflicts();
    }
    tracing::info!(groups = groups.len(), records, "consumer groups rebuilt from {OFFSETS_TOPIC}");
    Ok(groups)
}

fn apply(
    groups: &mut BTreeMap<String, Group>,
    members: &mut BTreeMap<(String, String), MemberState>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    offset: u64,
) {
    let Some(key) = key.and_then(|k| serde_json::from_slice::<Key>(k).ok()) else {
        tracing::warn!(offset, "skipping a record of {OFFSETS_TOPIC} whose key does not parse");
        return;
    };
    let bad_value = || {
        tracing::warn!(offset, "skipping a record of {OFFSETS_TOPIC} whose value does not parse")
    };
    match (key, value) {
        (Key::Group { group }, None) => {
            groups.remove(&group);
            members.retain(|(g, _), _| *g != group);
        }
        (Key::Group { group }, Some(v)) => match serde_json::from_slice::<GroupValue>(v) {
            Ok(v) => {
                groups.entry(group.clone()).or_insert_with(|| Group::new(&group)).epoch = v.epoch
            }
            Err(_) => bad_value(),
        },
        (Key::Member { group, member }, None) => {
            members.remove(&(group, member));
        }
        (Key::Member { group, member }, Some(v)) => {
            match serde_json::from_slice::<MemberState>(v) {
                Ok(state) => {
                    groups.entry(group.clone()).or_insert_with(|| Group::new(&group));
                    members.insert((group, member), state);
                }
                Err(_) => bad_value(),
            }
        }
        (Key::Offset { group, topic, partition }, None) => {
            if let Some(g) = groups.get_mut(&group) {
                g.offsets.remove(&(topic, partition));
            }
        }
        (Key::Offset { group, topic, partition }, Some(v)) => {
            match serde_json::from_slice::<Committed>(v) {
                Ok(c) => {
                    groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group))
                        .offsets
                        .insert((topic, partition), c);
                }
                Err(_) => bad_value(),
            }
        }
    }
}
