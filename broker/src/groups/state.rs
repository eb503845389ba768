//! One consumer group's membership, target assignment and committed offsets, and the rules
//! that move partitions between members. Pure: time comes in as an argument, topic sizes as a
//! lookup, and every change is recorded in `dirty` for the coordinator to persist.
//!
//! Invariants:
//! - A partition is owned by at most one member at any time. A partition leaves a member's
//!   `owned` only when the member reports it released (or leaves, or is expelled), and is
//!   granted only when no member owns it.
//! - `revoking ⊆ owned`: revoked partitions stay owned — the member may still commit them —
//!   until released.
//! - A member's epoch rises whenever it is granted partitions; each owned partition remembers
//!   the epoch it was granted at, so a request made before the grant is recognisably stale.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::assignor::{Assignor, Target, Tp};
use crate::error::BrokerError;

/// How the coordinator times members, resolved from the broker configuration.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub default_session_ms: u32,
    pub min_session_ms: u32,
    pub max_session_ms: u32,
    pub heartbeat_interval_ms: u32,
    pub default_rebalance_ms: u32,
}

/// While a member has partitions to release or to receive, it is asked to heartbeat this
/// often, so a move completes in a few round trips rather than a few heartbeat intervals.
pub const RECONCILE_HEARTBEAT_MS: u32 = 50;

/// A member as persisted (everything but its timers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    pub client_id: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub subscriptions: BTreeSet<String>,
    pub assignor: Option<String>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    /// Owned partitions and the epoch each was granted at.
    pub owned: Vec<(String, u32, i32)>,
    pub revoking: Vec<(String, u32)>,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub client_id: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub subscriptions: BTreeSet<String>,
    pub assignor: Option<Assignor>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub owned: BTreeMap<Tp, i32>,
    pub revoking: BTreeSet<Tp>,
    /// Expelled when no heartbeat arrives by then.
    pub session_deadline: Instant,
    /// Expelled when revoked partitions are still held then.
    pub revoke_deadline: Option<Instant>,
}

impl Member {
    pub fn to_state(&self) -> MemberState {
        MemberState {
            client_id: self.client_id.clone(),
            epoch: self.epoch,
            previous_epoch: self.previous_epoch,
            subscriptions: self.subscriptions.clone(),
            assignor: self.assignor.map(|a| a.name().to_string()),
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            owned: self.owned.iter().map(|((t, p), e)| (t.clone(), *p, *e)).collect(),
            revoking: self.revoking.iter().cloned().collect(),
        }
    }

    /// A member read back at startup: its timers start now.
    pub fn from_state(s: MemberState, now: Instant) -> Member {
        let owned: BTreeMap<Tp, i32> = s.owned.into_iter().map(|(t, p, e)| ((t, p), e)).collect();
        let revoking: BTreeSet<Tp> =
            s.revoking.into_iter().filter(|tp| owned.contains_key(tp)).collect();
        Member {
            client_id: s.client_id,
            epoch: s.epoch,
            previous_epoch: s.previous_epoch,
            subscriptions: s.subscriptions,
            assignor: s.assignor.as_deref().and_then(Assignor::parse),
            session_timeout_ms: s.session_timeout_ms,
            rebalance_timeout_ms: s.rebalance_timeout_ms,
            session_deadline: now + ms(s.session_timeout_ms),
            revoke_deadline: (!revoking.is_empty()).then(|| now + ms(s.rebalance_timeout_ms)),
            owned,
            revoking,
        }
    }

    /// Owned partitions the member may keep.
    pub fn assigned(&self) -> BTreeSet<Tp> {
        self.owned.keys().filter(|tp| !self.revoking.contains(*tp)).cloned().collect()
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: u64,
    pub metadata: String,
    pub commit_time_ms: i64,
}

/// What a heartbeat asks.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub subscriptions: BTreeSet<String>,
    pub assignor: Option<Assignor>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub owned: BTreeSet<Tp>,
    pub client_id: String,
}

/// What a heartbeat gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: u32,
    pub session_timeout_ms: u32,
    pub assignment: BTreeSet<Tp>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    /// Bumped on every membership or subscription change.
    pub epoch: u64,
    pub members: BTreeMap<String, Member>,
    pub offsets: BTreeMap<Tp, Committed>,
    target: Target,
    /// The partition counts the target was computed for; `None` forces a recomputation.
    target_for: Option<BTreeMap<String, u32>>,
    /// Members changed since the coordinator last persisted (present: write; absent: delete).
    pub dirty_members: BTreeSet<String>,
    /// The group record itself changed (created, epoch bumped).
    pub dirty: bool,
}

impl Group {
    pub fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            epoch: 0,
            members: BTreeMap::new(),
            offsets: BTreeMap::new(),
            target: Target::new(),
            target_for: None,
            dirty_members: BTreeSet::new(),
            dirty: true,
        }
    }

    /// The assignor most members name (sticky if none do; ties go to the first in
    /// sticky, range, round-robin order).
    pub fn assignor(&self) -> Assignor {
        let mut votes: BTreeMap<Assignor, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.assignor {
                *votes.entry(a).or_default() += 1;
            }
        }
        let best = votes.values().copied().max().unwrap_or(0);
        Assignor::ALL
            .into_iter()
            .find(|a| votes.get(a).copied().unwrap_or(0) == best && best > 0)
            .unwrap_or(Assignor::Sticky)
    }

    fn membership_changed(&mut self) {
        self.epoch += 1;
        self.dirty = true;
        self.target_for = None;
    }

    /// Expels members whose session ended or who held revoked partitions too long; their
    /// partitions are free at once. Returns the expelled ids.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.session_deadline <= now || m.revoke_deadline.is_some_and(|d| d <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            if let Some(m) = self.members.remove(id) {
                let why = if m.session_deadline <= now {
                    "session timed out"
                } else {
                    "did not release revoked partitions in time"
                };
                tracing::info!(group = %self.id, member = %id, reason = why, "member expelled");
            }
            self.dirty_members.insert(id.clone());
        }
        if !expired.is_empty() {
            self.membership_changed();
        }
        expired
    }

    /// Recomputes the target when the membership, the subscriptions or the subscribed topics'
    /// partition counts changed since it was computed.
    pub fn refresh_target(&mut self, partitions: &dyn Fn(&str) -> Option<u32>) {
        let topics: BTreeSet<&String> =
            self.members.values().flat_map(|m| m.subscriptions.iter()).collect();
        let counts: BTreeMap<String, u32> =
            topics.into_iter().filter_map(|t| Some((t.clone(), partitions(t)?))).collect();
        if self.target_for.as_ref() == Some(&counts) {
            return;
        }
        let subs: BTreeMap<String, BTreeSet<String>> =
            self.members.iter().map(|(id, m)| (id.clone(), m.subscriptions.clone())).collect();
        // Sticky starts from what the group was converging to, or, for a member the target
        // does not know yet (after a restart), from what it owns.
        let previous: Target = self
            .members
            .iter()
            .map(|(id, m)| {
                let prev = self
                    .target
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| m.owned.keys().cloned().collect());
                (id.clone(), prev)
            })
            .collect();
        self.target = self.assignor().assign(&subs, &counts, &previous);
        self.target_for = Some(counts);
    }

    /// Handles one heartbeat at `now`.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        now: Instant,
        timing: &Timing,
        partitions: &dyn Fn(&str) -> Option<u32>,
        new_member_id: impl FnOnce() -> String,
    ) -> Result<HeartbeatReply, BrokerError> {
        self.expire(now);
        let session_ms = if hb.session_timeout_ms == 0 {
            timing.default_session_ms
        } else {
            hb.session_timeout_ms.clamp(timing.min_session_ms, timing.max_session_ms)
        };
        let rebalance_ms = if hb.rebalance_timeout_ms == 0 {
            timing.default_rebalance_ms
        } else {
            hb.rebalance_timeout_ms
        };
        let id = match hb.member_epoch {
            -1 => return Ok(self.leave(&hb.member_id)),
            0 => {
                let id =
                    if hb.member_id.is_empty() { new_member_id() } else { hb.member_id.clone() };
                // A fenced member joining again under its old id starts from nothing; what it
                // owned is free.
                self.members.remove(&id);
                self.members.insert(
                    id.clone(),
                    Member {
                        client_id: hb.client_id.clone(),
                        epoch: 1,
                        previous_epoch: 0,
                        subscriptions: hb.subscriptions.clone(),
                        assignor: hb.assignor,
                        session_timeout_ms: session_ms,
                        rebalance_timeout_ms: rebalance_ms,
                        owned: BTreeMap::new(),
                        revoking: BTreeSet::new(),
                        session_deadline: now + ms(session_ms),
                        revoke_deadline: None,
                    },
                );
                tracing::info!(group = %self.id, member = %id, "member joined");
                self.membership_changed();
                id
            }
            epoch => {
                let Some(m) = self.members.get_mut(&hb.member_id) else {
                    return Err(self.unknown_member(&hb.member_id));
                };
                if epoch != m.epoch && epoch != m.previous_epoch {
                    return Err(BrokerError::FencedEpoch {
                        group: self.id.clone(),
                        member: hb.member_id.clone(),
                        sent: epoch,
                        current: m.epoch,
                    });
                }
                m.session_deadline = now + ms(session_ms);
                let changed = m.subscriptions != hb.subscriptions || m.assignor != hb.assignor;
                if changed {
                    m.subscriptions = hb.subscriptions.clone();
                    m.assignor = hb.assignor;
                }
                if m.session_timeout_ms != session_ms
                    || m.rebalance_timeout_ms != rebalance_ms
                    || m.client_id != hb.client_id
                {
                    m.session_timeout_ms = session_ms;
                    m.rebalance_timeout_ms = rebalance_ms;
                    m.client_id = hb.client_id.clone();
                    self.dirty_members.insert(hb.member_id.clone());
                }
                if changed {
                    self.membership_changed();
                }
                hb.member_id.clone()
            }
        };
        self.refresh_target(partitions);
        Ok(self.reconcile(&id, &hb.owned, now, timing))
    }

    /// Moves `id` one step toward its target: takes back what it released, revokes what it
    /// must give up, grants what is free.
    fn reconcile(
        &mut self,
        id: &str,
        reported: &BTreeSet<Tp>,
        now: Instant,
        timing: &Timing,
    ) -> HeartbeatReply {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let held_elsewhere: BTreeSet<Tp> = self
            .members
            .iter()
            .filter(|(other, _)| other.as_str() != id)
            .flat_map(|(_, m)| m.owned.keys().cloned())
            .collect();
        let group = self.id.clone();
        let Some(m) = self.members.get_mut(id) else {
            // Unreachable: the caller just inserted or found the member.
            return HeartbeatReply {
                member_id: id.to_string(),
                member_epoch: -1,
                heartbeat_interval_ms: timing.heartbeat_interval_ms,
                session_timeout_ms: 0,
                assignment: BTreeSet::new(),
            };
        };
        let before = m.to_state();
        let released: Vec<Tp> =
            m.revoking.iter().filter(|tp| !reported.contains(*tp)).cloned().collect();
        for tp in released {
            m.revoking.remove(&tp);
            m.owned.remove(&tp);
            tracing::debug!(%group, member = %id, topic = %tp.0, partition = tp.1, "partition released");
        }
        m.revoking = m.owned.keys().filter(|tp| !target.contains(*tp)).cloned().collect();
        m.revoke_deadline = match (m.revoking.is_empty(), m.revoke_deadline) {
            (true, _) => None,
            (false, Some(d)) => Some(d),
            (false, None) => Some(now + ms(m.rebalance_timeout_ms)),
        };
        let grants: Vec<Tp> = target
            .iter()
            .filter(|tp| !m.owned.contains_key(*tp) && !held_elsewhere.contains(*tp))
            .cloned()
            .collect();
        if !grants.is_empty() {
            m.previous_epoch = m.epoch;
            m.epoch += 1;
            for tp in grants {
                m.owned.insert(tp, m.epoch);
            }
        }
        let waiting = !m.revoking.is_empty() || target.iter().any(|tp| !m.owned.contains_key(tp));
        let cap = (m.session_timeout_ms / 3).max(1);
        let interval = if waiting {
            RECONCILE_HEARTBEAT_MS.min(cap)
        } else {
            timing.heartbeat_interval_ms.min(cap)
        };
        if m.to_state() != before {
            self.dirty_members.insert(id.to_string());
        }
        HeartbeatReply {
            member_id: id.to_string(),
            member_epoch: m.epoch,
            heartbeat_interval_ms: interval,
            session_timeout_ms: m.session_timeout_ms,
            assignment: m.assigned(),
        }
    }

    fn leave(&mut self, id: &str) -> HeartbeatReply {
        if self.members.remove(id).is_some() {
            tracing::info!(group = %self.id, member = %id, "member left");
            self.dirty_members.insert(id.to_string());
            self.membership_changed();
        }
        HeartbeatReply {
            member_id: id.to_string(),
            member_epoch: -1,
            heartbeat_interval_ms: 0,
            session_timeout_ms: 0,
            assignment: BTreeSet::new(),
        }
    }

    fn unknown_member(&self, member: &str) -> BrokerError {
        BrokerError::UnknownMember { group: self.id.clone(), member: member.to_string() }
    }

    /// May `member` at `epoch` commit or fetch `tp`? An empty member id (a consumer outside
    /// the membership) may, while the group has no members.
    pub fn check_owner(&self, member: &str, epoch: i32, tp: &Tp) -> Result<(), BrokerError> {
        if member.is_empty() {
            if self.members.is_empty() {
                return Ok(());
            }
            return Err(BrokerError::GroupNotEmpty {
                group: self.id.clone(),
                members: self.members.len(),
                what: "a commit from outside the membership",
            });
        }
        let m = self.members.get(member).ok_or_else(|| self.unknown_member(member))?;
        let stale = |reason| BrokerError::StaleEpoch {
            group: self.id.clone(),
            member: member.to_string(),
            sent: epoch,
            topic: tp.0.clone(),
            partition: tp.1,
            reason,
        };
        if epoch > m.epoch {
            return Err(stale("newer than the member's epoch"));
        }
        match m.owned.get(tp) {
            None => Err(BrokerError::NotAssigned {
                group: self.id.clone(),
                member: member.to_string(),
                topic: tp.0.clone(),
                partition: tp.1,
            }),
            Some(&granted) if granted > epoch => Err(stale("older than the partition's grant")),
            Some(_) => Ok(()),
        }
    }

    /// Would a heartbeat from `id` change what it owns (a partition to release, or one to
    /// take that nobody holds)? Also true when the target is out of date.
    pub fn needs_heartbeat(&self, id: &str) -> bool {
        let Some(m) = self.members.get(id) else { return true };
        if self.target_for.is_none() || !m.revoking.is_empty() {
            return true;
        }
        let empty = BTreeSet::new();
        let target = self.target.get(id).unwrap_or(&empty);
        if m.owned.keys().any(|tp| !target.contains(tp)) {
            return true;
        }
        target.iter().any(|tp| !m.owned.contains_key(tp) && self.owner(tp).is_none())
    }

    /// "empty", "stable" or "reconciling".
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            return "empty";
        }
        let settled = self.members.iter().all(|(id, m)| {
            m.revoking.is_empty()
                && self.target.get(id).is_none_or(|t| t.iter().all(|tp| m.owned.contains_key(tp)))
        });
        if settled && self.target_for.is_some() { "stable" } else { "reconciling" }
    }

    /// Target partitions `id` does not own yet.
    pub fn pending(&self, id: &str) -> BTreeSet<Tp> {
        let Some(m) = self.members.get(id) else { return BTreeSet::new() };
        self.target
            .get(id)
            .map(|t| t.iter().filter(|tp| !m.owned.contains_key(*tp)).cloned().collect())
            .unwrap_or_default()
    }

    /// The member owning `tp`, if any.
    pub fn owner(&self, tp: &Tp) -> Option<&str> {
        self.members.iter().find(|(_, m)| m.owned.contains_key(tp)).map(|(id, _)| id.as_str())
    }

    /// After replaying persisted members: a partition two members claim (possible only if a
    /// write was lost) is taken from both, so neither reads it until it is granted afresh.
    pub fn resolve_conflicts(&mut self) {
        let mut claims: BTreeMap<Tp, usize> = BTreeMap::new();
        for m in self.members.values() {
            for tp in m.owned.keys() {
                *claims.entry(tp.clone()).or_default() += 1;
            }
        }
        for (tp, n) in claims.into_iter().filter(|(_, n)| *n > 1) {
            tracing::warn!(group = %self.id, topic = %tp.0, partition = tp.1, claimants = n, "partition claimed by several members; taken from all");
            for (id, m) in &mut self.members {
                if m.owned.remove(&tp).is_some() {
                    m.revoking.remove(&tp);
                    self.dirty_members.insert(id.clone());
                }
            }
        }
    }
}

fn ms(v: u32) -> Duration {
    Duration::from_millis(u64::from(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        default_session_ms: 3000,
        min_session_ms: 100,
        max_session_ms: 60_000,
        heartbeat_interval_ms: 1000,
        default_rebalance_ms: 5000,
    };

    fn six(t: &str) -> Option<u32> {
        (t == "t").then_some(6)
    }

    fn hb(id: &str, epoch: i32, owned: &BTreeSet<Tp>) -> Heartbeat {
        Heartbeat {
            member_id: id.to_string(),
            member_epoch: epoch,
            subscriptions: BTreeSet::from(["t".to_string()]),
            assignor: None,
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            owned: owned.clone(),
            client_id: String::new(),
        }
    }

    /// Heartbeats every member (which releases what it was told to) until nothing changes.
    fn settle(
        g: &mut Group,
        now: Instant,
        owned: &mut BTreeMap<String, (i32, BTreeSet<Tp>)>,
        revoked: &mut BTreeMap<String, BTreeSet<Tp>>,
    ) {
        for _ in 0..10 {
            let mut changed = false;
            for (id, (epoch, held)) in owned.iter_mut() {
                let r = g
                    .heartbeat(hb(id, *epoch, held), now, &TIMING, &six, || unreachable!())
                    .unwrap();
                for tp in held.difference(&r.assignment) {
                    revoked.entry(id.clone()).or_default().insert(tp.clone());
                }
                if r.assignment != *held || r.member_epoch != *epoch {
                    changed = true;
                }
                *held = r.assignment;
                *epoch = r.member_epoch;
            }
            if !changed {
                return;
            }
        }
        panic!("did not settle");
    }

    #[test]
    fn join_moves_one_partition_and_no_partition_has_two_owners() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let mut owned = BTreeMap::new();
        for name in ["a", "b", "c"] {
            let r = g
                .heartbeat(hb("", 0, &BTreeSet::new()), now, &TIMING, &six, || name.to_string())
                .unwrap();
            owned.insert(name.to_string(), (r.member_epoch, r.assignment));
        }
        let mut revoked = BTreeMap::new();
        settle(&mut g, now, &mut owned, &mut revoked);
        assert!(owned.values().all(|(_, s)| s.len() == 2), "{owned:?}");
        revoked.clear();
        let r = g
            .heartbeat(hb("", 0, &BTreeSet::new()), now, &TIMING, &six, || "d".to_string())
            .unwrap();
        assert!(r.assignment.is_empty(), "nothing is free yet");
        owned.insert("d".into(), (r.member_epoch, r.assignment));
        settle(&mut g, now, &mut owned, &mut revoked);
        let total: usize = revoked.values().map(BTreeSet::len).sum();
        assert_eq!(total, 1, "{revoked:?}");
        assert_eq!(owned["d"].1.len(), 1);
        assert_eq!(g.state(), "stable");
        let mut all = BTreeSet::new();
        for (_, s) in owned.values() {
            for tp in s {
                assert!(all.insert(tp.clone()));
            }
        }
        assert_eq!(all.len(), 6);
    }

    #[test]
    fn expired_member_is_fenced_and_its_partitions_move() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let a =
            g.heartbeat(hb("", 0, &BTreeSet::new()), now, &TIMING, &six, || "a".into()).unwrap();
        assert_eq!(a.assignment.len(), 6);
        let tp = ("t".to_string(), 0);
        g.check_owner("a", a.member_epoch, &tp).unwrap();
        let b =
            g.heartbeat(hb("", 0, &BTreeSet::new()), now, &TIMING, &six, || "b".into()).unwrap();
        assert!(b.assignment.is_empty());
        // a goes silent; b keeps heartbeating past a's session.
        let mid = now + Duration::from_millis(2000);
        let r = g
            .heartbeat(
                hb("b", b.member_epoch, &BTreeSet::new()),
                mid,
                &TIMING,
                &six,
                || unreachable!(),
            )
            .unwrap();
        assert!(r.assignment.is_empty(), "a still holds everything");
        let later = now + Duration::from_millis(3001);
        let mut b_owned = BTreeSet::new();
        let mut epoch = b.member_epoch;
        for _ in 0..3 {
            let r = g
                .heartbeat(hb("b", epoch, &b_owned), later, &TIMING, &six, || unreachable!())
                .unwrap();
            b_owned = r.assignment;
            epoch = r.member_epoch;
        }
        assert_eq!(b_owned.len(), 6);
        assert!(matches!(
            g.check_owner("a", a.member_epoch, &tp),
            Err(BrokerError::UnknownMember { .. })
        ));
        assert!(matches!(
            g.heartbeat(
                hb("a", a.member_epoch, &a.assignment),
                later,
                &TIMING,
                &six,
                || unreachable!()
            ),
            Err(BrokerError::UnknownMember { .. })
        ));
        // An epoch from before b's grant is stale.
        assert!(matches!(
            g.check_owner("b", b.member_epoch, &tp),
            Err(BrokerError::StaleEpoch { .. })
        ));
        g.check_owner("b", epoch, &tp).unwrap();
    }
}
