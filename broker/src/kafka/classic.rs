//! One Kafka classic consumer group (the JoinGroup/SyncGroup protocol): members, rounds and
//! generations, as a state machine over explicit time, with no I/O — the handlers in `groups`
//! drive it and wait on it.
//!
//! The rules are Kafka's group coordinator's:
//! - A join starts a round (PreparingRebalance); the round completes when every member has
//!   rejoined, or at its deadline (the largest rebalance timeout), dropping whoever did not.
//!   A round that starts an empty group waits `initial_delay` first, so members starting
//!   together land in one generation.
//! - Completing a round bumps the generation, picks the protocol every member supports (the
//!   first-listed one most members prefer) and a leader (the old one if still there), and
//!   moves to CompletingRebalance; the leader's SyncGroup carries every member's assignment
//!   and makes the group Stable.
//! - A member silent for its session timeout is removed (not while it waits in a join), and
//!   the others are sent into a new round: their next heartbeat says REBALANCE_IN_PROGRESS.
//!
//! Invariants: `generation` only grows; in CompletingRebalance and Stable every member took
//! part in the round that made `generation`; `leader` is a member whenever there are members.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Kafka's group states, as DescribeGroups and ListGroups name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    pub client_id: String,
    pub client_host: String,
    pub instance_id: Option<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_seen: Instant,
    /// Waiting in a JoinGroup for the current round (not expired meanwhile).
    pub joining: bool,
}

/// What a completed round handed out; join waiters answer from it.
#[derive(Debug, Clone)]
pub struct Round {
    pub generation: i32,
    pub protocol: String,
    pub leader: String,
    /// Every member of the round with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// Why a request was refused, as Kafka's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownMember,
    IllegalGeneration,
    RebalanceInProgress,
    InconsistentProtocol,
}

#[derive(Debug)]
pub struct Group {
    pub state: State,
    pub generation: i32,
    pub protocol_type: String,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pub pending: BTreeSet<String>,
    pub last_round: Option<Round>,
    round_start: Instant,
    round_deadline: Instant,
    initial: bool,
}

impl Group {
    pub fn new(now: Instant) -> Group {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            members: BTreeMap::new(),
            pending: BTreeSet::new(),
            last_round: None,
            round_start: now,
            round_deadline: now,
            initial: false,
        }
    }

    pub fn leader(&self) -> Option<&str> {
        self.last_round
            .as_ref()
            .map(|r| r.leader.as_str())
            .filter(|l| self.members.contains_key(*l))
    }

    pub fn protocol(&self) -> Option<&str> {
        match self.state {
            State::CompletingRebalance | State::Stable => {
                self.last_round.as_ref().map(|r| r.protocol.as_str())
            }
            _ => None,
        }
    }

    /// Whether a member with `protocol_type` and `protocols` can join at all.
    pub fn compatible(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type == protocol_type
            && protocols.iter().any(|(name, _)| {
                self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// Adds or updates `id` as joining and (re)starts the round if one is not running.
    pub fn join(
        &mut self,
        id: &str,
        member: Member,
        protocol_type: &str,
        now: Instant,
        initial_delay: Duration,
    ) {
        self.pending.remove(id);
        self.protocol_type = protocol_type.to_string();
        let fresh = !self.members.contains_key(id);
        self.members.insert(id.to_string(), Member { joining: true, ..member });
        if self.state != State::PreparingRebalance {
            self.begin_round(now, initial_delay);
        } else if fresh && self.initial {
            // New members during the initial delay extend it (up to the rebalance timeout).
            let limit = self.round_start + self.max_rebalance_timeout();
            self.round_deadline = (now + initial_delay).min(limit).max(self.round_deadline);
        }
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default()
    }

    fn begin_round(&mut self, now: Instant, initial_delay: Duration) {
        self.initial = self.state == State::Empty;
        self.state = State::PreparingRebalance;
        self.round_start = now;
        self.round_deadline =
            if self.initial { now + initial_delay } else { now + self.max_rebalance_timeout() };
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
        }
    }

    /// When a waiting join should look again (the round's deadline).
    pub fn deadline(&self) -> Instant {
        self.round_deadline
    }

    /// Completes the running round if it is due: everyone rejoined (and an initial delay is
    /// over), or the deadline passed. Returns whether it completed.
    pub fn complete_if_due(&mut self, now: Instant) -> bool {
        if self.state != State::PreparingRebalance {
            return false;
        }
        let all_in = self.members.values().all(|m| m.joining);
        let due = now >= self.round_deadline || (all_in && !self.initial);
        if !due {
            return false;
        }
        self.members.retain(|_, m| m.joining);
        if self.members.is_empty() {
            self.state = State::Empty;
            self.last_round = None;
            return true;
        }
        self.generation += 1;
        let protocol = self.choose_protocol();
        let leader = match self.leader() {
            Some(l) => l.to_string(),
            None => self.members.keys().next().cloned().unwrap_or_default(),
        };
        let members = self
            .members
            .iter()
            .map(|(id, m)| {
                let metadata =
                    m.protocols.iter().find(|(n, _)| *n == protocol).map(|(_, d)| d.clone());
                (id.clone(), m.instance_id.clone(), metadata.unwrap_or_default())
            })
            .collect();
        for m in self.members.values_mut() {
            m.joining = false;
            m.last_seen = now;
        }
        self.last_round = Some(Round { generation: self.generation, protocol, leader, members });
        self.state = State::CompletingRebalance;
        true
    }

    /// The protocol every member supports that most members list first (ties: the earliest in
    /// the leader-to-be's list), as Kafka's vote does.
    fn choose_protocol(&self) -> String {
        let Some(first) = self.members.values().next() else { return String::new() };
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| self.members.values().all(|m| m.protocols.iter().any(|(x, _)| x == *n)))
            .collect();
        let votes = |name: &String| {
            self.members
                .values()
                .filter(|m| {
                    m.protocols.iter().map(|(n, _)| n).find(|n| candidates.contains(n))
                        == Some(name)
                })
                .count()
        };
        let mut best: Option<(&String, usize)> = None;
        for c in &candidates {
            let v = votes(c);
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((c, v));
            }
        }
        best.map(|(n, _)| n.clone()).unwrap_or_default()
    }

    /// Checks that `id` is a member of `generation` and marks it seen.
    pub fn touch(&mut self, id: &str, generation: i32, now: Instant) -> Result<(), Refusal> {
        let Some(m) = self.members.get_mut(id) else { return Err(Refusal::UnknownMember) };
        m.last_seen = now;
        if generation != self.generation {
            return Err(Refusal::IllegalGeneration);
        }
        Ok(())
    }

    /// A heartbeat: NONE while the member is current; REBALANCE_IN_PROGRESS once a new round
    /// started, so it rejoins.
    pub fn heartbeat(&mut self, id: &str, generation: i32, now: Instant) -> Result<(), Refusal> {
        self.touch(id, generation, now)?;
        if self.state == State::PreparingRebalance {
            return Err(Refusal::RebalanceInProgress);
        }
        Ok(())
    }

    /// The leader's SyncGroup: every member's assignment (absent ones get none).
    pub fn assign(&mut self, assignments: &BTreeMap<String, Bytes>) {
        for (id, m) in self.members.iter_mut() {
            m.assignment = assignments.get(id).cloned().unwrap_or_default();
        }
        self.state = State::Stable;
    }

    /// Removes members silent for their session timeout; the rest rebalance.
    pub fn expire(&mut self, now: Instant, initial_delay: Duration) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !m.joining && now.duration_since(m.last_seen) > m.session_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.remove(id, now, initial_delay);
        }
        gone
    }

    /// Removes a member (a LeaveGroup or an expiry); the others rebalance.
    pub fn remove(&mut self, id: &str, now: Instant, initial_delay: Duration) -> bool {
        if self.members.remove(id).is_none() {
            return false;
        }
        if self.members.is_empty() {
            self.state = State::Empty;
            self.last_round = None;
        } else if self.state != State::PreparingRebalance {
            self.begin_round(now, initial_delay);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_millis(100);

    fn member(now: Instant, protocols: &[&str]) -> Member {
        Member {
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            instance_id: None,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(p.to_string())))
                .collect(),
            assignment: Bytes::new(),
            last_seen: now,
            joining: true,
        }
    }

    #[test]
    fn first_round_waits_the_initial_delay_then_one_generation_holds_everyone() {
        let t0 = Instant::now();
        let mut g = Group::new(t0);
        g.join("a", member(t0, &["range", "roundrobin"]), "consumer", t0, DELAY);
        g.join("b", member(t0, &["roundrobin", "range"]), "consumer", t0 + DELAY / 2, DELAY);
        assert!(!g.complete_if_due(t0 + DELAY / 2), "the initial delay is not over");
        assert!(g.complete_if_due(t0 + DELAY * 2));
        let round = g.last_round.clone().unwrap();
        assert_eq!((round.generation, round.members.len()), (1, 2));
        assert_eq!(g.state, State::CompletingRebalance);
        assert!(round.protocol == "range" || round.protocol == "roundrobin");
        let mut assignments = BTreeMap::new();
        assignments.insert("a".to_string(), Bytes::from_static(b"A"));
        g.assign(&assignments);
        assert_eq!(g.state, State::Stable);
        assert_eq!(g.members["b"].assignment, Bytes::new());
    }

    #[test]
    fn a_silent_member_expires_and_the_rest_are_told_to_rejoin() {
        let t0 = Instant::now();
        let mut g = Group::new(t0);
        g.join("a", member(t0, &["range"]), "consumer", t0, DELAY);
        g.join("b", member(t0, &["range"]), "consumer", t0, DELAY);
        assert!(g.complete_if_due(t0 + DELAY));
        g.assign(&BTreeMap::new());
        let later = t0 + DELAY + Duration::from_secs(8);
        assert_eq!(g.heartbeat("a", 1, later), Ok(()));
        let expired = g.expire(t0 + DELAY + Duration::from_secs(11), DELAY);
        assert_eq!(expired, vec!["b".to_string()]);
        assert_eq!(
            g.heartbeat("a", 1, t0 + Duration::from_secs(12)),
            Err(Refusal::RebalanceInProgress)
        );
        g.join("a", member(t0, &["range"]), "consumer", t0 + Duration::from_secs(12), DELAY);
        assert!(g.complete_if_due(t0 + Duration::from_secs(12)), "everyone rejoined");
        assert_eq!(g.generation, 2);
        assert_eq!(
            g.heartbeat("a", 1, t0 + Duration::from_secs(12)),
            Err(Refusal::IllegalGeneration)
        );
    }

    #[test]
    fn members_that_do_not_rejoin_by_the_deadline_are_dropped() {
        let t0 = Instant::now();
        let mut g = Group::new(t0);
        g.join("a", member(t0, &["range"]), "consumer", t0, DELAY);
        g.join("b", member(t0, &["range"]), "consumer", t0, DELAY);
        assert!(g.complete_if_due(t0 + DELAY));
        g.join("a", member(t0, &["range"]), "consumer", t0 + DELAY, DELAY);
        assert!(!g.complete_if_due(t0 + DELAY * 2), "b may still rejoin");
        assert!(g.complete_if_due(t0 + DELAY + Duration::from_secs(31)));
        assert_eq!(g.members.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(g.last_round.as_ref().unwrap().leader, "a");
    }

    #[test]
    fn incompatible_protocols_are_refused() {
        let t0 = Instant::now();
        let mut g = Group::new(t0);
        let a = member(t0, &["range"]);
        assert!(g.compatible("consumer", &a.protocols));
        g.join("a", a, "consumer", t0, DELAY);
        assert!(!g.compatible("consumer", &member(t0, &["sticky"]).protocols));
        assert!(!g.compatible("connect", &member(t0, &["range"]).protocols));
        assert!(!g.compatible("consumer", &[]));
    }
}
