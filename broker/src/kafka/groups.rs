//! Consumer groups for Kafka clients: FindCoordinator, the classic group protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup) and offsets (OffsetCommit, OffsetFetch), ListGroups,
//! DescribeGroups and DeleteGroups.
//!
//! Membership of classic groups lives here, in memory (as in Kafka, members rejoin after a
//! broker restart); committed offsets go to the broker's group coordinator and its
//! `__consumer_offsets` log, so `eddy group describe` and `eddy group reset` see and change
//! them, and they survive restarts. A group has either Kafka classic members or eddy native
//! members, never both: a JoinGroup to a group with native members is refused with
//! INCONSISTENT_GROUP_PROTOCOL.
//!
//! ACLs as Kafka's: membership and commits need READ on the group (checked in `api`), the
//! coordinator lookup, DescribeGroups and OffsetFetch DESCRIBE, DeleteGroups DELETE
//! (GROUP_AUTHORIZATION_FAILED); ListGroups lists the groups the principal may DESCRIBE (all
//! of them with DESCRIBE on the cluster).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_protocol::v1::{self, request, response};
use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::authz::{check, operations};
use super::classic::{Group, Member, Refusal, Round, State};
use super::data::error_code;
use super::{Context, NODE_ID};
use crate::broker::Broker;
use crate::security::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::security::acls::Access;

/// How long the first round of an empty group waits for more members (Kafka's
/// `group.initial.rebalance.delay.ms` is 3 s; members starting together arrive well within
/// this, and tests stay quick).
const INITIAL_REBALANCE_DELAY: Duration = Duration::from_millis(500);

pub(super) fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(super) fn refusal_code(r: Refusal) -> i16 {
    match r {
        Refusal::UnknownMember => K::UnknownMemberId.code(),
        Refusal::IllegalGeneration => K::IllegalGeneration.code(),
        Refusal::RebalanceInProgress => K::RebalanceInProgress.code(),
        Refusal::InconsistentProtocol => K::InconsistentGroupProtocol.code(),
    }
}

pub(super) fn find_coordinator(
    cx: &Context,
    access: &Access,
    r: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let answer = |key: &StrBytes| {
        // Key type 0 is a group, 1 a transactional id: this broker coordinates both.
        let code = match super::authz::find_coordinator(access, r.key_type, key.as_str()) {
            Err(refused) => refused,
            Ok(()) if matches!(r.key_type, 0 | 1) => 0,
            Ok(()) => K::CoordinatorNotAvailable.code(),
        };
        (key.clone(), code)
    };
    let host = text(cx.advertised.host.clone());
    if version >= 4 {
        let coordinators = r
            .coordinator_keys
            .iter()
            .map(|k| {
                let (key, code) = answer(k);
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(if code == 0 { NODE_ID } else { -1 }))
                    .with_host(host.clone())
                    .with_port(cx.advertised.port)
                    .with_error_code(code)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (_, code) = answer(&r.key);
    FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_node_id(BrokerId(if code == 0 { NODE_ID } else { -1 }))
        .with_host(host)
        .with_port(cx.advertised.port)
}

/// Who sent a request: the client id from its header and the peer's address, as
/// DescribeGroups shows members.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub client_id: String,
    pub host: String,
}

/// The classic groups of the Kafka listener.
#[derive(Debug)]
pub(crate) struct ClassicGroups {
    pub(super) broker: Broker,
    groups: Mutex<BTreeMap<String, Group>>,
    /// Woken on every change of any group, so waiting joins and syncs look again.
    changed: tokio::sync::Notify,
    next_member: AtomicU64,
    /// This run's start time in nanoseconds, part of every member id it hands out.
    boot: u128,
}

impl ClassicGroups {
    pub fn new(broker: Broker) -> ClassicGroups {
        ClassicGroups {
            broker,
            groups: Mutex::new(BTreeMap::new()),
            changed: tokio::sync::Notify::new(),
            next_member: AtomicU64::new(0),
            boot: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on group `id` after expiring its silent members; wakes waiters if it changed.
    pub(super) fn with_group<R>(&self, id: &str, f: impl FnOnce(&mut Group) -> R) -> R {
        let now = Instant::now();
        let mut groups = self.lock();
        let group = groups.entry(id.to_string()).or_insert_with(|| Group::new(now));
        let expired = group.expire(now, INITIAL_REBALANCE_DELAY);
        if !expired.is_empty() {
            tracing::info!(group = id, members = ?expired, "kafka group members expired");
        }
        let out = f(group);
        // Only ever lowers the count or keeps it (joins claim their place first), which the
        // coordinator accepts.
        let _ = self.broker.set_classic_group_members(id, group.members.len());
        if group.members.is_empty() && group.pending.is_empty() && group.state == State::Empty {
            groups.remove(id);
        }
        drop(groups);
        self.changed.notify_waiters();
        out
    }

    fn session_bounds(&self) -> (i32, i32) {
        let g = &self.broker.config().groups;
        (g.min_session_timeout_ms as i32, g.max_session_timeout_ms as i32)
    }

    pub async fn join(
        &self,
        r: JoinGroupRequest,
        version: i16,
        caller: &Caller,
    ) -> JoinGroupResponse {
        let fail = |code: i16, member_id: String| {
            JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1)
                .with_member_id(text(member_id))
        };
        let (member_id, from_generation) = match self.enter(&r, version, caller) {
            Ok(entered) => entered,
            Err((code, member_id)) => return fail(code, member_id),
        };
        let group_id = r.group_id.0.as_str();
        let round = match self.await_round(group_id, &member_id, from_generation).await {
            Ok(round) => round,
            Err(code) => return fail(code, member_id),
        };
        // The leader gets every member's metadata to compute the assignment from.
        let members = if round.leader == member_id {
            round
                .members
                .iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(text(id.clone()))
                        .with_group_instance_id(instance.clone().map(text))
                        .with_metadata(metadata.clone())
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse::default()
            .with_generation_id(round.generation)
            .with_protocol_type(Some(r.protocol_type.clone()))
            .with_protocol_name(Some(text(round.protocol)))
            .with_leader(text(round.leader))
            .with_member_id(text(member_id))
            .with_members(members)
    }

    /// Checks a JoinGroup and adds its member to the group's round: the member id and the
    /// generation the round started from, or the refusal and the member id to answer with.
    fn enter(
        &self,
        r: &JoinGroupRequest,
        version: i16,
        caller: &Caller,
    ) -> Result<(String, i32), (i16, String)> {
        let group_id = r.group_id.0.to_string();
        let mut member_id = r.member_id.to_string();
        if group_id.is_empty() {
            return Err((K::InvalidGroupId.code(), member_id));
        }
        let (min, max) = self.session_bounds();
        if r.session_timeout_ms < min || r.session_timeout_ms > max {
            return Err((K::InvalidSessionTimeout.code(), member_id));
        }
        let protocols: Vec<(String, Bytes)> =
            r.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect();
        let now = Instant::now();
        let entered = self.with_group(&group_id, |g| {
            if !g.compatible(r.protocol_type.as_str(), &protocols) {
                return Err(K::InconsistentGroupProtocol.code());
            }
            if member_id.is_empty() {
                member_id = self.new_member_id(&caller.client_id);
                if version >= 4 {
                    // KIP-394: hand out the id first; the member rejoins with it.
                    g.pending.insert(member_id.clone());
                    return Err(K::MemberIdRequired.code());
                }
            } else if !g.members.contains_key(&member_id) && !g.pending.contains(&member_id) {
                return Err(K::UnknownMemberId.code());
            }
            // Claim the group for Kafka members before joining: refused if eddy members are in.
            let count = g.members.len() + usize::from(!g.members.contains_key(&member_id));
            if self.broker.set_classic_group_members(&group_id, count).is_err() {
                return Err(K::InconsistentGroupProtocol.code());
            }
            let rebalance =
                if version == 0 { r.session_timeout_ms } else { r.rebalance_timeout_ms };
            let member = Member {
                client_id: caller.client_id.clone(),
                client_host: caller.host.clone(),
                instance_id: r.group_instance_id.as_ref().map(|s| s.to_string()),
                session_timeout: Duration::from_millis(r.session_timeout_ms.max(0) as u64),
                rebalance_timeout: Duration::from_millis(rebalance.max(0) as u64),
                protocols,
                assignment: Bytes::new(),
                last_seen: now,
                joining: true,
            };
            g.join(&member_id, member, r.protocol_type.as_str(), now, INITIAL_REBALANCE_DELAY);
            Ok(g.generation)
        });
        match entered {
            Ok(generation) => Ok((member_id, generation)),
            Err(code) => Err((code, member_id)),
        }
    }

    /// A member id no earlier run of this broker handed out: the client id, this run's boot
    /// stamp and a counter (Kafka uses the client id and a UUID).
    fn new_member_id(&self, client_id: &str) -> String {
        let n = self.next_member.fetch_add(1, Ordering::Relaxed);
        let client = if client_id.is_empty() { "consumer" } else { client_id };
        format!("{client}-{:x}-{n}", self.boot)
    }

    /// Waits until the round `member_id` joined completes (every member rejoined, or the
    /// deadline passed), whichever waiter notices completing it.
    async fn await_round(
        &self,
        group_id: &str,
        member_id: &str,
        from_generation: i32,
    ) -> Result<Round, i16> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (outcome, deadline) = {
                let mut groups = self.lock();
                let Some(g) = groups.get_mut(group_id) else {
                    return Err(K::UnknownMemberId.code());
                };
                let completed = g.complete_if_due(Instant::now());
                let outcome = match &g.last_round {
                    _ if !g.members.contains_key(member_id) => Some(Err(K::UnknownMemberId.code())),
                    Some(round)
                        if round.generation > from_generation
                            && round.members.iter().any(|(m, _, _)| m == member_id) =>
                    {
                        Some(Ok(round.clone()))
                    }
                    _ => None,
                };
                let deadline = g.deadline();
                drop(groups);
                if completed {
                    self.changed.notify_waiters();
                }
                (outcome, deadline)
            };
            if let Some(outcome) = outcome {
                return outcome;
            }
            let wake = tokio::time::Instant::from_std(
                deadline.max(Instant::now()) + Duration::from_millis(1),
            );
            let _ = tokio::time::timeout_at(wake, notified).await;
        }
    }

    pub async fn sync(&self, r: SyncGroupRequest) -> SyncGroupResponse {
        let group_id = r.group_id.0.to_string();
        let member_id = r.member_id.to_string();
        let assignments: BTreeMap<String, Bytes> =
            r.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
        let first = self.with_group(&group_id, |g| {
            g.touch(&member_id, r.generation_id, Instant::now())?;
            if g.state == State::PreparingRebalance {
                return Err(Refusal::RebalanceInProgress);
            }
            let protocol = g.protocol().map(str::to_string);
            if r.protocol_name.as_ref().is_some_and(|p| Some(p.as_str()) != protocol.as_deref()) {
                return Err(Refusal::InconsistentProtocol);
            }
            if g.state == State::CompletingRebalance && g.leader() == Some(member_id.as_str()) {
                g.assign(&assignments);
            }
            Ok(protocol)
        });
        let protocol = match first {
            Ok(p) => p,
            Err(refusal) => {
                return SyncGroupResponse::default().with_error_code(refusal_code(refusal));
            }
        };
        let session =
            Duration::from_millis(u64::from(self.broker.config().groups.max_session_timeout_ms));
        let deadline = tokio::time::Instant::now() + session;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let state = {
                let groups = self.lock();
                groups.get(&group_id).map(|g| {
                    let member = g.members.get(&member_id);
                    match (g.state, member) {
                        (_, None) => Err(Refusal::UnknownMember),
                        _ if g.generation != r.generation_id => Err(Refusal::RebalanceInProgress),
                        (State::Stable, Some(m)) => Ok(Some(m.assignment.clone())),
                        (State::CompletingRebalance, Some(_)) => Ok(None),
                        _ => Err(Refusal::RebalanceInProgress),
                    }
                })
            };
            match state {
                None => {
                    return SyncGroupResponse::default().with_error_code(K::UnknownMemberId.code());
                }
                Some(Err(refusal)) => {
                    return SyncGroupResponse::default().with_error_code(refusal_code(refusal));
                }
                Some(Ok(Some(assignment))) => {
                    return SyncGroupResponse::default()
                        .with_protocol_type(r.protocol_type.clone())
                        .with_protocol_name(protocol.map(text))
                        .with_assignment(assignment);
                }
                Some(Ok(None)) => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return SyncGroupResponse::default().with_error_code(K::RebalanceInProgress.code());
            }
        }
    }

    pub fn heartbeat(&self, r: HeartbeatRequest) -> HeartbeatResponse {
        let outcome = self.with_group(r.group_id.0.as_str(), |g| {
            g.heartbeat(r.member_id.as_str(), r.generation_id, Instant::now())
        });
        HeartbeatResponse::default().with_error_code(outcome.err().map_or(0, refusal_code))
    }

    pub fn leave(&self, r: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let ids: Vec<String> = if version >= 3 {
            r.members.iter().map(|m| m.member_id.to_string()).collect()
        } else {
            vec![r.member_id.to_string()]
        };
        let removed: Vec<bool> = self.with_group(r.group_id.0.as_str(), |g| {
            ids.iter().map(|id| g.remove(id, Instant::now(), INITIAL_REBALANCE_DELAY)).collect()
        });
        let code = |gone: bool| if gone { 0 } else { K::UnknownMemberId.code() };
        if version >= 3 {
            let members = ids
                .iter()
                .zip(&removed)
                .map(|(id, gone)| {
                    MemberResponse::default()
                        .with_member_id(text(id.clone()))
                        .with_error_code(code(*gone))
                })
                .collect();
            LeaveGroupResponse::default().with_members(members)
        } else {
            LeaveGroupResponse::default()
                .with_error_code(code(removed.first().copied().unwrap_or(false)))
        }
    }

    /// Every group: classic ones with their state, and the coordinator's (native groups and
    /// groups that only have committed offsets).
    async fn all_groups(&self) -> BTreeMap<String, (String, &'static str)> {
        let mut out = BTreeMap::new();
        if let Ok(Some(response::Body::ListGroups(l))) =
            self.broker.handle(request::Body::ListGroups(v1::ListGroupsRequest {})).await
        {
            for g in l.groups {
                let state = if g.members == 0 { "Empty" } else { "Stable" };
                out.insert(g.group_id, ("consumer".to_string(), state));
            }
        }
        for (id, g) in self.lock().iter() {
            out.insert(id.clone(), (g.protocol_type.clone(), g.state.name()));
        }
        out
    }

    pub async fn list(&self, access: &Access, r: ListGroupsRequest) -> ListGroupsResponse {
        let all = access.allows(Operation::Describe, ResourceType::Cluster, CLUSTER_NAME);
        let groups = self
            .all_groups()
            .await
            .into_iter()
            .filter(|(id, (_, state))| {
                (all || access.allows(Operation::Describe, ResourceType::Group, id))
                    && (r.states_filter.is_empty()
                        || r.states_filter.iter().any(|s| s.as_str().eq_ignore_ascii_case(state)))
            })
            .map(|(id, (protocol_type, state))| {
                ListedGroup::default()
                    .with_group_id(GroupId(text(id)))
                    .with_protocol_type(text(protocol_type))
                    .with_group_state(text(state))
                    .with_group_type(text("classic"))
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }

    pub async fn describe(
        &self,
        access: &Access,
        r: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        // Authorized operations exist from v3, answered when asked for.
        let asked = version >= 3 && r.include_authorized_operations;
        let mut described = Vec::with_capacity(r.groups.len());
        for id in &r.groups {
            if let Err(code) =
                check(access, Operation::Describe, ResourceType::Group, id.0.as_str())
            {
                let refused = DescribedGroup::default().with_group_id(id.clone());
                described.push(refused.with_error_code(code));
                continue;
            }
            let ops = if asked {
                operations(access, ResourceType::Group, id.0.as_str())
            } else {
                i32::MIN
            };
            let classic = {
                let groups = self.lock();
                groups.get(id.0.as_str()).map(|g| {
                    let protocol = g.protocol().unwrap_or_default().to_string();
                    let members = g
                        .members
                        .iter()
                        .map(|(mid, m)| {
                            let metadata = m
                                .protocols
                                .iter()
                                .find(|(n, _)| *n == protocol)
                                .map(|(_, d)| d.clone())
                                .unwrap_or_default();
                            DescribedGroupMember::default()
                                .with_member_id(text(mid.clone()))
                                .with_group_instance_id(m.instance_id.clone().map(text))
                                .with_client_id(text(m.client_id.clone()))
                                .with_client_host(text(m.client_host.clone()))
                                .with_member_metadata(metadata)
                                .with_member_assignment(m.assignment.clone())
                        })
                        .collect();
                    DescribedGroup::default()
                        .with_group_id(id.clone())
                        .with_group_state(text(g.state.name()))
                        .with_protocol_type(text(g.protocol_type.clone()))
                        .with_protocol_data(text(protocol))
                        .with_members(members)
                })
            };
            let group = match classic {
                Some(g) => g,
                None => {
                    let known = self.all_groups().await.contains_key(id.0.as_str());
                    // Kafka describes a group it does not know as Dead, with no error.
                    let state = if known { "Empty" } else { "Dead" };
                    DescribedGroup::default()
                        .with_group_id(id.clone())
                        .with_group_state(text(state))
                        .with_protocol_type(text(if known { "consumer" } else { "" }))
                }
            };
            described.push(group.with_authorized_operations(ops));
        }
        DescribeGroupsResponse::default().with_groups(described)
    }

    pub async fn delete(&self, access: &Access, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(r.groups_names.len());
        for id in &r.groups_names {
            let busy = self.lock().get(id.0.as_str()).is_some_and(|g| !g.members.is_empty());
            let allowed = check(access, Operation::Delete, ResourceType::Group, id.0.as_str());
            let code = if let Err(refused) = allowed {
                refused
            } else if busy {
                K::NonEmptyGroup.code()
            } else {
                let request = v1::DeleteGroupRequest { group_id: id.0.to_string() };
                match self.broker.handle(request::Body::DeleteGroup(request)).await {
                    Ok(_) => 0,
                    Err(e) => error_code(&e),
                }
            };
            results.push(
                DeletableGroupResult::default().with_group_id(id.clone()).with_error_code(code),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }
}
