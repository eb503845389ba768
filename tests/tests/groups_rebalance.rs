//! Consumer group rebalancing against the real broker, with members as real processes:
//! 3 members share 6 partitions 2 each; a 4th joining moves exactly one partition (nobody
//! else's is revoked); a member leaving hands over only its own; a SIGSTOPped member is
//! expelled after its session timeout, its partitions move, and when it wakes it learns it
//! lost them and joins again.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use eddy_tests::broker::BrokerProcess;
use eddy_tests::members::{Members, coverage, describe_group};
use eddy_tests::raw_client::RawClient;

const SESSION_MS: u64 = 2000;
const HEARTBEAT_MS: u64 = 200;

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn all_six() -> BTreeSet<u32> {
    (0..6).collect()
}

#[test]
fn only_partitions_that_must_move_are_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(
        dir.path(),
        &[
            ("EDDY_GROUP_MIN_SESSION_TIMEOUT_MS", "200"),
            ("EDDY_GROUP_HEARTBEAT_INTERVAL_MS", &HEARTBEAT_MS.to_string()),
        ],
    );
    let mut client = RawClient::connect(broker.addr());
    client.create_topic("t", 6);
    let binary = Path::new(env!("CARGO_BIN_EXE_eddy-group-member"));
    let mut g = Members::new(binary, &broker.addr().to_string(), "g", "t", SESSION_MS);

    // Three members: two partitions each.
    for _ in 0..3 {
        g.spawn(None, deadline());
    }
    g.wait_for(deadline(), |m| coverage(m, &[0, 1, 2]) == (vec![2, 2, 2], all_six(), false));

    // A fourth joins: exactly one partition moves, from one of the three to it.
    g.clear_logs();
    let before: Vec<BTreeSet<u32>> = g.all.iter().map(|m| m.owned.clone()).collect();
    g.spawn(None, deadline());
    g.wait_for(deadline(), |m| coverage(m, &[0, 1, 2, 3]) == (vec![1, 1, 2, 2], all_six(), false));
    let revoked: Vec<u32> = g.all.iter().flat_map(|m| m.revoked.clone()).collect();
    assert_eq!(revoked.len(), 1, "only one partition may move: {revoked:?}");
    assert_eq!(g.all[3].owned, BTreeSet::from([revoked[0]]));
    for (i, old) in before.iter().enumerate() {
        let kept: BTreeSet<u32> = old.iter().copied().filter(|p| *p != revoked[0]).collect();
        assert_eq!(g.all[i].owned, kept, "member {i} lost more than it had to");
    }
    assert!(g.all.iter().all(|m| m.lost.is_empty()));

    // Member 1 leaves (SIGTERM → leave): only its partitions move; nobody else gives any up.
    g.clear_logs();
    let before: Vec<BTreeSet<u32>> = g.all.iter().map(|m| m.owned.clone()).collect();
    g.all[1].signal(libc::SIGTERM);
    g.wait_for(deadline(), |m| m[1].left);
    g.wait_for(deadline(), |m| coverage(m, &[0, 2, 3]) == (vec![2, 2, 2], all_six(), false));
    for i in [0, 2, 3] {
        assert!(g.all[i].revoked.is_empty(), "member {i} gave up {:?}", g.all[i].revoked);
        assert!(g.all[i].owned.is_superset(&before[i]));
    }

    // Member 2 is stopped: after its session times out its partitions move to 0 and 3.
    g.clear_logs();
    let stopped_owned = g.all[2].owned.clone();
    let stopped_id = g.all[2].id.clone();
    let before: Vec<BTreeSet<u32>> = g.all.iter().map(|m| m.owned.clone()).collect();
    g.all[2].signal(libc::SIGSTOP);
    let stopped_at = Instant::now();
    g.wait_for(deadline(), |m| coverage(m, &[0, 3]) == (vec![3, 3], all_six(), false));
    let took = stopped_at.elapsed();
    // Its last heartbeat was at most one interval before the stop; it cannot be expelled
    // before its session has run out.
    assert!(
        took >= Duration::from_millis(SESSION_MS - 2 * HEARTBEAT_MS),
        "partitions moved after {took:?}, before the {SESSION_MS} ms session timeout"
    );
    for i in [0, 3] {
        assert!(g.all[i].revoked.is_empty());
        assert!(g.all[i].owned.is_superset(&before[i]));
    }
    let d = describe_group(&mut client, "g");
    assert!(d.members.iter().all(|m| m.member_id != stopped_id), "{d:?}");
    assert_eq!(d.members.len(), 2);

    // When it wakes it is told its partitions are gone (no hand-over), and joins again.
    g.all[2].signal(libc::SIGCONT);
    g.wait_for(deadline(), |m| !m[2].lost.is_empty());
    assert_eq!(g.all[2].lost.iter().copied().collect::<BTreeSet<_>>(), stopped_owned);
    g.wait_for(deadline(), |m| coverage(m, &[0, 2, 3]) == (vec![2, 2, 2], all_six(), false));
    let d = describe_group(&mut client, "g");
    assert_eq!(d.members.len(), 3);
    assert_eq!(d.state, "stable");
    assert_eq!(d.assignor, "sticky");
}
