//! The group coordinator: consumer group membership driven by heartbeats, incremental
//! partition moves, and committed offsets — all kept in the compacted internal topic
//! `__consumer_offsets` and rebuilt from it at startup (broker state is itself a log).
//!
//! - [`assignor`]: target assignments (sticky, range, round-robin).
//! - [`state`]: one group's rules — join, leave, expiry, revoke-then-grant, fencing.
//! - [`records`]: what is written to the internal topic, and the replay.
//!
//! Invariants:
//! - Every change to a group is appended to the log under the coordinator's lock, so the log
//!   holds changes in the order they happened; the caller waits for durability (when the
//!   topic's flush policy asks for it) after the lock is released, so concurrent commits share
//!   fsyncs.
//! - A commit is applied in memory only once its record is appended: an acknowledged commit
//!   is in the log, and one that failed to append changed nothing.
//! - A membership change that failed to append stays marked dirty and is written with the
//!   next change of that group.
//! - Sessions are checked whenever a group is touched (heartbeat, commit, fetch, describe,
//!   list), so an expired member is fenced before any of its requests is served, without a
//!   timer thread.

pub mod assignor;
pub(crate) mod handle;
pub mod records;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use eddy_protocol::v1;
use eddy_storage::Log;

use self::assignor::{Assignor, Tp};
use self::records::{Key, Write, to_json};
use self::state::{Committed, Group, Heartbeat, Timing};
use crate::clock::now_ms;
use crate::error::BrokerError;

/// Longest group id accepted.
pub const MAX_GROUP_ID_LEN: usize = 255;

/// Answers about the topics the coordinator needs from the broker.
pub trait TopicView {
    /// Partition count of a topic, if it exists.
    fn partitions(&self, topic: &str) -> Option<u32>;
    /// (log start, high watermark) of a partition, if it exists.
    fn offsets(&self, topic: &str, partition: u32) -> Option<(u64, u64)>;
}

#[derive(Debug)]
pub struct Coordinator {
    groups: Mutex<BTreeMap<String, Group>>,
    /// Woken whenever a group's membership or ownership changes, so parked member fetches can
    /// tell their members to heartbeat at once.
    pub changed: tokio::sync::Notify,
    log: Arc<Log>,
    timing: Timing,
    next_member: AtomicU64,
    /// Groups whose members are Kafka clients of the classic protocol (membership kept by the
    /// Kafka listener), with how many members each has; eddy members may not join them.
    classic: Mutex<BTreeMap<String, usize>>,
}

impl Coordinator {
    /// Rebuilds every group from `log` (the internal topic's only partition).
    pub fn open(log: Arc<Log>, timing: Timing) -> Result<Coordinator, BrokerError> {
        let groups = records::replay(&log, Instant::now())?;
        Ok(Coordinator {
            groups: Mutex::new(groups),
            changed: tokio::sync::Notify::new(),
            log,
            timing,
            next_member: AtomicU64::new(0),
            classic: Mutex::new(BTreeMap::new()),
        })
    }

    /// The internal topic's log, for waiting on durability.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn member_id(&self, client_id: &str) -> String {
        let n = self.next_member.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let prefix = if client_id.is_empty() { "member" } else { client_id };
        let prefix: String = prefix.chars().filter(|c| !c.is_control()).take(64).collect();
        format!("{prefix}-{nanos:x}-{n}")
    }

    /// Writes `group`'s dirty parts and `extra`; clears the dirty marks once written.
    fn persist(&self, group: &mut Group, extra: &[Write]) -> Result<Option<u64>, BrokerError> {
        let membership = group.dirty || !group.dirty_members.is_empty();
        let mut writes = records::dirty_writes(group);
        writes.extend_from_slice(extra);
        let upto = records::append(&self.log, &writes, now_ms())?;
        group.dirty = false;
        group.dirty_members.clear();
        if membership {
            self.changed.notify_waiters();
        }
        Ok(upto)
    }

    /// Persists whatever expiry changed in `group`; a failure is logged, and the change stays
    /// dirty for the next write.
    fn persist_quietly(&self, group: &mut Group) -> Option<u64> {
        if !group.dirty && group.dirty_members.is_empty() {
            return None;
        }
        match self.persist(group, &[]) {
            Ok(upto) => upto,
            Err(e) => {
                tracing::warn!(group = %group.id, error = %e, "could not persist group change; retried with the next one");
                None
            }
        }
    }

    pub fn heartbeat(
        &self,
        r: &v1::GroupHeartbeatRequest,
        topics: &dyn TopicView,
    ) -> Result<(v1::GroupHeartbeatResponse, Option<u64>), BrokerError> {
        validate_group_id(&r.group_id)?;
        let assignor = match r.assignor.as_str() {
            "" => None,
            name => Some(
                Assignor::parse(name)
                    .ok_or_else(|| BrokerError::UnsupportedAssignor(name.to_string()))?,
            ),
        };
        if r.member_epoch < -1 {
            return Err(BrokerError::Malformed("member_epoch below -1"));
        }
        if r.member_epoch != 0 && r.member_id.is_empty() {
            return Err(BrokerError::Malformed("member_id is required unless member_epoch is 0"));
        }
        let hb = Heartbeat {
            member_id: r.member_id.clone(),
            member_epoch: r.member_epoch,
            subscriptions: r.subscribed_topics.iter().cloned().collect(),
            assignor,
            session_timeout_ms: r.session_timeout_ms,
            rebalance_timeout_ms: r.rebalance_timeout_ms,
            owned: flatten(&r.owned),
            client_id: r.client_id.clone(),
        };
        if let Some(&members) =
            self.classic.lock().unwrap_or_else(|p| p.into_inner()).get(&r.group_id)
        {
            return Err(BrokerError::InconsistentGroupProtocol {
                group: r.group_id.clone(),
                members,
                protocol: "Kafka classic",
            });
        }
        let mut groups = self.lock();
        if r.member_epoch != 0 && !groups.contains_key(&r.group_id) {
            return Err(BrokerError::UnknownMember {
                group: r.group_id.clone(),
                member: r.member_id.clone(),
            });
        }
        let group = groups.entry(r.group_id.clone()).or_insert_with(|| Group::new(&r.group_id));
        let partitions = |t: &str| topics.partitions(t);
        let reply = group.heartbeat(hb, Instant::now(), &self.timing, &partitions, || {
            self.member_id(&r.client_id)
        });
        // Whatever happened (an expiry, a join) is persisted even when the reply is an error.
        let upto = self.persist(group, &[]);
        let reply = reply?;
        let upto = upto?;
        Ok((
            v1::GroupHeartbeatResponse {
                member_id: reply.member_id,
                member_epoch: reply.member_epoch,
                heartbeat_interval_ms: reply.heartbeat_interval_ms,
                session_timeout_ms: reply.session_timeout_ms,
                assignment: group_tps(&reply.assignment),
            },
            upto,
        ))
    }

    /// Records that `group` has `members` Kafka classic members (0: none any more). Refused
    /// while the group has eddy members: the two protocols cannot share a group.
    pub fn set_classic_members(&self, group: &str, members: usize) -> Result<(), BrokerError> {
        let groups = self.lock();
        let mut classic = self.classic.lock().unwrap_or_else(|p| p.into_inner());
        if members == 0 {
            classic.remove(group);
            return Ok(());
        }
        let native = groups.get(group).map_or(0, |g| g.members.len());
        if native > 0 {
            return Err(BrokerError::InconsistentGroupProtocol {
                group: group.to_string(),
                members: native,
                protocol: "eddy",
            });
        }
        classic.insert(group.to_string(), members);
        Ok(())
    }

    /// Kafka classic members of group `id` (see [`set_classic_members`](Self::set_classic_members)).
    fn classic_members(&self, id: &str) -> usize {
        self.classic.lock().unwrap_or_else(|p| p.into_inner()).get(id).copied().unwrap_or(0)
    }

    /// Commits offsets; per-partition refusals (not owned, stale epoch, unknown partition) go
    /// in the answer, a refusal of the member itself fails the request.
    pub fn commit(
        &self,
        r: &v1::OffsetCommitRequest,
        topics: &dyn TopicView,
    ) -> Result<(v1::OffsetCommitResponse, Option<u64>), BrokerError> {
        validate_group_id(&r.group_id)?;
        let mut groups = self.lock();
        if !r.member_id.is_empty() && !groups.contains_key(&r.group_id) {
            return Err(BrokerError::UnknownMember {
                group: r.group_id.clone(),
                member: r.member_id.clone(),
            });
        }
        let group = groups.entry(r.group_id.clone()).or_insert_with(|| Group::new(&r.group_id));
        group.expire(Instant::now());
        if !r.member_id.is_empty() && !group.members.contains_key(&r.member_id) {
            self.persist_quietly(group);
            return Err(BrokerError::UnknownMember {
                group: r.group_id.clone(),
                member: r.member_id.clone(),
            });
        }
        if r.member_id.is_empty() && !group.members.is_empty() {
            return Err(BrokerError::GroupNotEmpty {
                group: r.group_id.clone(),
                members: group.members.len(),
                what: "a commit from outside the membership",
            });
        }
        let now = now_ms();
        let mut writes = Vec::new();
        let mut accepted = Vec::new();
        let mut results = Vec::with_capacity(r.topics.len());
        for t in &r.topics {
            let count = topics.partitions(&t.topic);
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let tp = (t.topic.clone(), p.partition);
                let check = match count {
                    None => Err(BrokerError::UnknownTopic(t.topic.clone())),
                    Some(n) if p.partition >= n => Err(BrokerError::UnknownPartition {
                        topic: t.topic.clone(),
                        partition: p.partition,
                    }),
                    Some(_) => group.check_owner(&r.member_id, r.member_epoch, &tp),
                };
                let error = match check {
                    Ok(()) => {
                        let c = Committed {
                            offset: p.offset,
                            metadata: p.metadata.clone(),
                            commit_time_ms: now,
                        };
                        writes.push((offset_key(&r.group_id, &tp), Some(to_json(&c))));
                        accepted.push((tp, c));
                        None
                    }
                    Err(e) => Some(e.to_wire()),
                };
                partitions.push(v1::OffsetCommitPartitionResult { partition: p.partition, error });
            }
            results.push(v1::OffsetCommitTopicResult { topic: t.topic.clone(), partitions });
        }
        let upto = self.persist(group, &writes)?;
        group.offsets.extend(accepted);
        Ok((v1::OffsetCommitResponse { topics: results }, upto))
    }

    /// Commits the offsets a transaction carried (Kafka's TxnOffsetCommit), as it commits:
    /// with no member or epoch check (the transaction coordinator checked the producer, and
    /// a transaction commits whoever consumes the group now). Each is `(topic, partition,
    /// offset, metadata)`.
    pub fn commit_for_transaction(
        &self,
        group_id: &str,
        offsets: &[(String, u32, u64, String)],
    ) -> Result<Option<u64>, BrokerError> {
        validate_group_id(group_id)?;
        let mut groups = self.lock();
        let group = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id));
        let now = now_ms();
        let mut writes = Vec::with_capacity(offsets.len());
        let mut accepted = Vec::with_capacity(offsets.len());
        for (topic, partition, offset, metadata) in offsets {
            let tp = (topic.clone(), *partition);
            let c = Committed { offset: *offset, metadata: metadata.clone(), commit_time_ms: now };
            writes.push((offset_key(group_id, &tp), Some(to_json(&c))));
            accepted.push((tp, c));
        }
        let upto = self.persist(group, &writes)?;
        group.offsets.extend(accepted);
        Ok(upto)
    }

    pub fn fetch_offsets(
        &self,
        r: &v1::OffsetFetchRequest,
    ) -> Result<v1::OffsetFetchResponse, BrokerError> {
        validate_group_id(&r.group_id)?;
        let groups = self.lock();
        let group = groups.get(&r.group_id);
        let offsets = if r.partitions.is_empty() {
            group
                .map(|g| g.offsets.iter().map(|(tp, c)| committed_wire(tp, Some(c))).collect())
                .unwrap_or_default()
        } else {
            flatten(&r.partitions)
                .iter()
                .map(|tp| committed_wire(tp, group.and_then(|g| g.offsets.get(tp))))
                .collect()
        };
        Ok(v1::OffsetFetchResponse { offsets })
    }

    /// Checks that a member's fetch reads only partitions it owns at its epoch.
    pub fn check_fetch(
        &self,
        m: &v1::GroupMemberRef,
        tps: &[Tp],
    ) -> Result<Option<u64>, BrokerError> {
        validate_group_id(&m.group_id)?;
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(&m.group_id) else {
            return Err(BrokerError::UnknownMember {
                group: m.group_id.clone(),
                member: m.member_id.clone(),
            });
        };
        group.expire(Instant::now());
        let upto = self.persist_quietly(group);
        if m.member_id.is_empty() {
            return Err(BrokerError::Malformed("a group member's fetch needs its member_id"));
        }
        for tp in tps {
            group.check_owner(&m.member_id, m.member_epoch, tp)?;
        }
        Ok(upto)
    }

    /// Should this member heartbeat now rather than at its interval?
    pub fn needs_heartbeat(&self, m: &v1::GroupMemberRef) -> bool {
        self.lock().get(&m.group_id).is_none_or(|g| g.needs_heartbeat(&m.member_id))
    }

    /// Expires members in every group, then lists them.
    pub fn list(&self) -> (v1::ListGroupsResponse, Option<u64>) {
        let mut groups = self.lock();
        let mut upto = None;
        let now = Instant::now();
        for g in groups.values_mut() {
            g.expire(now);
            upto = upto.max(self.persist_quietly(g));
        }
        let groups = groups
            .values()
            .map(|g| v1::GroupListing {
                group_id: g.id.clone(),
                state: g.state().to_string(),
                members: g.members.len() as u32,
            })
            .collect();
        (v1::ListGroupsResponse { groups }, upto)
    }

    pub fn describe(
        &self,
        id: &str,
        topics: &dyn TopicView,
    ) -> Result<(v1::DescribeGroupResponse, Option<u64>), BrokerError> {
        validate_group_id(id)?;
        let mut groups = self.lock();
        let group = groups.get_mut(id).ok_or_else(|| BrokerError::UnknownGroup(id.to_string()))?;
        group.expire(Instant::now());
        let upto = self.persist_quietly(group);
        group.refresh_target(&|t| topics.partitions(t));
        let members = group
            .members
            .iter()
            .map(|(mid, m)| v1::GroupMemberDescription {
                member_id: mid.clone(),
                client_id: m.client_id.clone(),
                member_epoch: m.epoch,
                subscribed_topics: m.subscriptions.iter().cloned().collect(),
                assigned: group_tps(&m.assigned()),
                revoking: group_tps(&m.revoking),
                pending: group_tps(&group.pending(mid)),
                session_timeout_ms: m.session_timeout_ms,
            })
            .collect();
        // Every committed partition, and every partition of a topic the group has committed
        // in or subscribes to: a partition the group never committed still counts toward its
        // lag, even once the group has no members to say what it subscribes to.
        let mut tps: BTreeSet<Tp> = group.offsets.keys().cloned().collect();
        let read: BTreeSet<&String> = group
            .offsets
            .keys()
            .map(|(topic, _)| topic)
            .chain(group.members.values().flat_map(|m| m.subscriptions.iter()))
            .collect();
        for topic in read {
            for p in 0..topics.partitions(topic).unwrap_or(0) {
                tps.insert((topic.clone(), p));
            }
        }
        let offsets = tps
            .into_iter()
            .map(|tp| {
                let committed = group.offsets.get(&tp);
                let (start, end) = topics.offsets(&tp.0, tp.1).unwrap_or((0, 0));
                let from = committed.map_or(start, |c| c.offset);
                v1::PartitionLag {
                    committed: committed.map(|c| c.offset),
                    end_offset: end,
                    lag: end.saturating_sub(from),
                    metadata: committed.map(|c| c.metadata.clone()).unwrap_or_default(),
                    owner: group.owner(&tp).unwrap_or_default().to_string(),
                    topic: tp.0,
                    partition: tp.1,
                }
            })
            .collect();
        Ok((
            v1::DescribeGroupResponse {
                group_id: group.id.clone(),
                state: group.state().to_string(),
                group_epoch: group.epoch,
                assignor: group.assignor().name().to_string(),
                members,
                offsets,
            },
            upto,
        ))
    }

    /// Sets the committed offsets of `topic`'s partitions (already resolved by the caller).
    /// Refused while the group has members.
    pub fn reset(
        &self,
        id: &str,
        topic: &str,
        offsets: &[(u32, u64)],
    ) -> Result<(v1::ResetGroupOffsetsResponse, Option<u64>), BrokerError> {
        validate_group_id(id)?;
        let mut groups = self.lock();
        let group = groups.entry(id.to_string()).or_insert_with(|| Group::new(id));
        group.expire(Instant::now());
        let members = group.members.len() + self.classic_members(id);
        if members > 0 {
            self.persist_quietly(group);
            return Err(BrokerError::GroupNotEmpty {
                group: id.to_string(),
                members,
                what: "an offset reset",
            });
        }
        let now = now_ms();
        let committed: Vec<(Tp, Committed)> = offsets
            .iter()
            .map(|&(p, offset)| {
                (
                    (topic.to_string(), p),
                    Committed { offset, metadata: String::new(), commit_time_ms: now },
                )
            })
            .collect();
        let writes: Vec<Write> =
            committed.iter().map(|(tp, c)| (offset_key(id, tp), Some(to_json(c)))).collect();
        let upto = self.persist(group, &writes)?;
        let response = v1::ResetGroupOffsetsResponse {
            offsets: committed.iter().map(|(tp, c)| committed_wire(tp, Some(c))).collect(),
        };
        group.offsets.extend(committed);
        Ok((response, upto))
    }

    /// Deletes an empty group and its offsets.
    pub fn delete(&self, id: &str) -> Result<Option<u64>, BrokerError> {
        validate_group_id(id)?;
        let mut groups = self.lock();
        let group = groups.get_mut(id).ok_or_else(|| BrokerError::UnknownGroup(id.to_string()))?;
        group.expire(Instant::now());
        let members = group.members.len() + self.classic_members(id);
        if members > 0 {
            self.persist_quietly(group);
            return Err(BrokerError::GroupNotEmpty {
                group: id.to_string(),
                members,
                what: "deleting it",
            });
        }
        let mut writes: Vec<Write> =
            group.offsets.keys().map(|tp| (offset_key(id, tp), None)).collect();
        // Members expelled just now, then the group record last: replay drops everything
        // of a group whose record is deleted.
        writes.extend(
            group
                .dirty_members
                .iter()
                .map(|m| (Key::Member { group: id.to_string(), member: m.clone() }, None)),
        );
        writes.push((Key::Group { group: id.to_string() }, None));
        let upto = records::append(&self.log, &writes, now_ms())?;
        groups.remove(id);
        tracing::info!(group = id, "group deleted");
        Ok(upto)
    }
}

fn offset_key(group: &str, tp: &Tp) -> Key {
    Key::Offset { group: group.to_string(), topic: tp.0.clone(), partition: tp.1 }
}

fn committed_wire(tp: &Tp, c: Option<&Committed>) -> v1::CommittedOffset {
    v1::CommittedOffset {
        topic: tp.0.clone(),
        partition: tp.1,
        offset: c.map(|c| c.offset),
        metadata: c.map(|c| c.metadata.clone()).unwrap_or_default(),
        commit_time_ms: c.map_or(0, |c| c.commit_time_ms),
    }
}

pub fn flatten(list: &[v1::TopicPartitions]) -> BTreeSet<Tp> {
    list.iter().flat_map(|t| t.partitions.iter().map(|p| (t.topic.clone(), *p))).collect()
}

pub fn group_tps(tps: &BTreeSet<Tp>) -> Vec<v1::TopicPartitions> {
    v1::TopicPartitions::group(tps.iter().map(|(t, p)| (t.as_str(), *p)))
}

pub fn validate_group_id(id: &str) -> Result<(), BrokerError> {
    let bad =
        |reason| Err(BrokerError::InvalidGroupId { id: id.chars().take(300).collect(), reason });
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > MAX_GROUP_ID_LEN {
        return bad("longer than 255 bytes");
    }
    if id.chars().any(char::is_control) {
        return bad("control characters are not allowed");
    }
    Ok(())
}
