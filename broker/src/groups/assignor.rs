//! Assignors: pure functions from a group's members, their subscriptions and the topics'
//! partition counts to a target assignment.
//!
//! Invariants, for every assignor and every input:
//! - each partition of each subscribed topic goes to exactly one member subscribed to it;
//! - members subscribed to the same topics get counts that differ by at most one
//!   (for `sticky` and `round-robin`; `range` balances per topic, as Kafka's does);
//! - the result depends only on the input (members are taken in id order), so a restarted
//!   broker computes the same target.
//!
//! `sticky` also starts from the previous target and moves only what balance requires: a
//! member joining takes partitions from the most loaded members; a member leaving spreads its
//! partitions over the least loaded. Everything else stays where it is.

use std::collections::{BTreeMap, BTreeSet};

/// A topic partition.
pub type Tp = (String, u32);

/// Member id to the partitions it should own.
pub type Target = BTreeMap<String, BTreeSet<Tp>>;

/// The assignment strategies a group may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Assignor {
    Sticky,
    Range,
    RoundRobin,
}

impl Assignor {
    pub const ALL: [Assignor; 3] = [Assignor::Sticky, Assignor::Range, Assignor::RoundRobin];

    pub fn name(self) -> &'static str {
        match self {
            Assignor::Sticky => "sticky",
            Assignor::Range => "range",
            Assignor::RoundRobin => "round-robin",
        }
    }

    pub fn parse(name: &str) -> Option<Assignor> {
        Assignor::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Computes the target. `previous` is what the group was converging to (or owned), used
    /// by `sticky` only.
    pub fn assign(
        self,
        members: &BTreeMap<String, BTreeSet<String>>,
        partitions: &BTreeMap<String, u32>,
        previous: &Target,
    ) -> Target {
        match self {
            Assignor::Range => range(members, partitions),
            Assignor::RoundRobin => round_robin(members, partitions),
            Assignor::Sticky => sticky(members, partitions, previous),
        }
    }
}

fn empty_target(members: &BTreeMap<String, BTreeSet<String>>) -> Target {
    members.keys().map(|m| (m.clone(), BTreeSet::new())).collect()
}

fn subscribers<'a>(
    members: &'a BTreeMap<String, BTreeSet<String>>,
    topic: &str,
) -> Vec<&'a String> {
    members.iter().filter(|(_, subs)| subs.contains(topic)).map(|(m, _)| m).collect()
}

/// Per topic, contiguous ranges over the subscribers in id order; the first `count % n` get
/// one more.
fn range(
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
) -> Target {
    let mut target = empty_target(members);
    for (topic, &count) in partitions {
        let subs = subscribers(members, topic);
        if subs.is_empty() {
            continue;
        }
        let n = subs.len() as u32;
        let (base, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, member) in subs.into_iter().enumerate() {
            let take = base + u32::from((i as u32) < extra);
            let set = target.entry(member.clone()).or_default();
            for p in next..next + take {
                set.insert((topic.clone(), p));
            }
            next += take;
        }
    }
    target
}

/// Every partition in (topic, partition) order, dealt to the subscribers in turn.
fn round_robin(
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
) -> Target {
    let mut target = empty_target(members);
    let ids: Vec<&String> = members.keys().collect();
    if ids.is_empty() {
        return target;
    }
    let mut turn = 0usize;
    for (topic, &count) in partitions {
        for p in 0..count {
            // The next member in the rotation that subscribes to the topic.
            for step in 0..ids.len() {
                let member = ids[(turn + step) % ids.len()];
                if members[member].contains(topic) {
                    target.entry(member.clone()).or_default().insert((topic.clone(), p));
                    turn = (turn + step + 1) % ids.len();
                    break;
                }
            }
        }
    }
    target
}

/// Keeps every previous placement that is still valid, gives the rest to the least loaded
/// eligible member, then moves single partitions from the most to the least loaded member
/// until no eligible move narrows the gap.
fn sticky(
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
    previous: &Target,
) -> Target {
    let mut target = empty_target(members);
    let valid = |tp: &Tp, member: &str| {
        partitions.get(&tp.0).is_some_and(|&n| tp.1 < n)
            && members.get(member).is_some_and(|subs| subs.contains(&tp.0))
    };
    let mut placed: BTreeSet<Tp> = BTreeSet::new();
    for (member, tps) in previous {
        for tp in tps {
            if valid(tp, member) && placed.insert(tp.clone()) {
                target.entry(member.clone()).or_default().insert(tp.clone());
            }
        }
    }
    for (topic, &count) in partitions {
        for p in 0..count {
            let tp = (topic.clone(), p);
            if placed.contains(&tp) {
                continue;
            }
            let least = subscribers(members, topic)
                .into_iter()
                .min_by_key(|m| (target.get(*m).map_or(0, BTreeSet::len), (*m).clone()));
            if let Some(member) = least {
                target.entry(member.clone()).or_default().insert(tp.clone());
                placed.insert(tp);
            }
        }
    }
    // Each move lowers the sum of squared counts, so this ends; the bound is a backstop.
    let total: usize = target.values().map(BTreeSet::len).sum();
    for _ in 0..=total * members.len().max(1) {
        if !move_one(members, &mut target) {
            break;
        }
    }
    target
}

/// Moves one partition from a member to one holding at least two fewer that may take it,
/// preferring the most loaded giver and least loaded taker. `false` when no such move exists.
fn move_one(members: &BTreeMap<String, BTreeSet<String>>, target: &mut Target) -> bool {
    let mut by_load: Vec<(usize, String)> =
        target.iter().map(|(m, tps)| (tps.len(), m.clone())).collect();
    by_load.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for (giver_load, giver) in &by_load {
        for (taker_load, taker) in by_load.iter().rev() {
            if taker_load + 1 >= *giver_load {
                break;
            }
            let subs = &members[taker];
            // The highest partition the taker may own: moving from the end keeps the giver's
            // low partitions where they were.
            let candidate = target[giver].iter().rev().find(|tp| subs.contains(&tp.0)).cloned();
            if let Some(tp) = candidate {
                target.entry(giver.clone()).or_default().remove(&tp);
                target.entry(taker.clone()).or_default().insert(tp);
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn members(list: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        list.iter()
            .map(|(m, subs)| (m.to_string(), subs.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn counts(target: &Target) -> Vec<usize> {
        target.values().map(BTreeSet::len).collect()
    }

    #[test]
    fn range_and_round_robin_split_like_kafka() {
        let m = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let parts = BTreeMap::from([("t".to_string(), 7)]);
        let r = Assignor::Range.assign(&m, &parts, &Target::new());
        let set = |ps: &[u32]| ps.iter().map(|p| ("t".to_string(), *p)).collect::<BTreeSet<_>>();
        assert_eq!(r["a"], set(&[0, 1, 2]));
        assert_eq!(r["b"], set(&[3, 4]));
        assert_eq!(r["c"], set(&[5, 6]));
        let rr = Assignor::RoundRobin.assign(&m, &parts, &Target::new());
        assert_eq!(rr["a"], set(&[0, 3, 6]));
        assert_eq!(rr["b"], set(&[1, 4]));
        assert_eq!(rr["c"], set(&[2, 5]));
    }

    #[test]
    fn sticky_join_moves_only_what_balance_needs() {
        let parts = BTreeMap::from([("t".to_string(), 6)]);
        let three = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let before = Assignor::Sticky.assign(&three, &parts, &Target::new());
        assert_eq!(counts(&before), vec![2, 2, 2]);
        let four = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"]), ("d", &["t"])]);
        let after = Assignor::Sticky.assign(&four, &parts, &before);
        let mut sizes = counts(&after);
        sizes.sort_unstable();
        assert_eq!(sizes, vec![1, 1, 2, 2]);
        let moved: usize =
            before.iter().map(|(m, tps)| tps.difference(&after[m]).count()).sum::<usize>();
        assert_eq!(moved, 1, "{before:?} -> {after:?}");
        // One leaves: only its partitions move.
        let mut three_again = four.clone();
        three_again.remove("b");
        let after_leave = Assignor::Sticky.assign(&three_again, &parts, &after);
        for m in ["a", "c", "d"] {
            assert!(after[m].is_subset(&after_leave[m]), "{m} lost a partition");
        }
        assert_eq!(counts(&after_leave), vec![2, 2, 2]);
    }

    fn arb_group()
    -> impl Strategy<Value = (BTreeMap<String, BTreeSet<String>>, BTreeMap<String, u32>)> {
        let topics = prop::collection::btree_map("[a-c]", 1u32..9, 1..4);
        topics.prop_flat_map(|parts| {
            let names: Vec<String> = parts.keys().cloned().collect();
            let member = prop::sample::subsequence(names.clone(), 1..=names.len())
                .prop_map(|s| s.into_iter().collect::<BTreeSet<_>>());
            (prop::collection::btree_map("m[0-9]{1,2}", member, 0..7), Just(parts))
        })
    }

    proptest! {
        #[test]
        fn every_partition_has_exactly_one_eligible_owner(
            (group, parts) in arb_group(),
            (prev_group, _) in arb_group(),
        ) {
            let previous = Assignor::RoundRobin.assign(&prev_group, &parts, &Target::new());
            for assignor in Assignor::ALL {
                let target = assignor.assign(&group, &parts, &previous);
                let mut seen = BTreeSet::new();
                for (member, tps) in &target {
                    for tp in tps {
                        prop_assert!(group[member].contains(&tp.0));
                        prop_assert!(seen.insert(tp.clone()), "{tp:?} twice");
                    }
                }
                for (topic, &n) in &parts {
                    let subscribed = group.values().any(|s| s.contains(topic));
                    for p in 0..n {
                        prop_assert_eq!(seen.contains(&(topic.clone(), p)), subscribed);
                    }
                }
                // Members with the same subscriptions differ by at most one: always for sticky;
                // for round-robin when every member subscribes alike; for range (which balances
                // per topic, as Kafka's does) when there is a single topic.
                let alike = group.values().all(|s| Some(s) == group.values().next());
                let balanced = match assignor {
                    Assignor::Sticky => true,
                    Assignor::RoundRobin => alike,
                    Assignor::Range => parts.len() == 1,
                };
                if balanced {
                    for (a, sa) in &group {
                        for (b, sb) in &group {
                            if sa == sb {
                                let (la, lb) = (target[a].len(), target[b].len());
                                prop_assert!(la.abs_diff(lb) <= 1, "{assignor:?} {a}:{la} {b}:{lb}");
                            }
                        }
                    }
                }
            }
        }

        #[test]
        fn sticky_keeps_a_balanced_previous_target(
            (group, parts) in arb_group(),
        ) {
            let first = Assignor::Sticky.assign(&group, &parts, &Target::new());
            let again = Assignor::Sticky.assign(&group, &parts, &first);
            prop_assert_eq!(first, again);
        }
    }
}
