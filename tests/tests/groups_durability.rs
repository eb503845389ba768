//! Committed offsets and group membership are kept in `__consumer_offsets` (flush policy
//! `always`, the default) and rebuilt from it when the broker starts: after a SIGKILL with
//! commits in flight every acknowledged commit is there (an unacknowledged one may be too), and
//! the member keeps its id, epoch and partitions — its next heartbeat is accepted as if
//! nothing happened. After a SIGTERM the last commit is there exactly.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use eddy_protocol::v1::{self, request, response};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::env_u64;
use eddy_tests::generate::Rng;
use eddy_tests::members::describe_group;
use eddy_tests::raw_client::RawClient;

const PARTITIONS: u32 = 4;
const CYCLES: usize = 5;
const ENV: &[(&str, &str)] = &[("EDDY_GROUP_MIN_SESSION_TIMEOUT_MS", "200")];

fn heartbeat(
    client: &mut RawClient,
    id: &str,
    epoch: i32,
    owned: bool,
) -> v1::GroupHeartbeatResponse {
    let owned = if owned {
        vec![v1::TopicPartitions { topic: "t".into(), partitions: (0..PARTITIONS).collect() }]
    } else {
        vec![]
    };
    let body = request::Body::GroupHeartbeat(v1::GroupHeartbeatRequest {
        group_id: "g".into(),
        member_id: id.into(),
        member_epoch: epoch,
        subscribed_topics: vec!["t".into()],
        // Long enough to outlive every restart of the test.
        session_timeout_ms: 120_000,
        owned,
        ..Default::default()
    });
    match client.call_ok(body) {
        response::Body::GroupHeartbeat(r) => r,
        other => panic!("unexpected answer {other:?}"),
    }
}

fn commit(id: &str, epoch: i32, offset: u64) -> request::Body {
    request::Body::OffsetCommit(v1::OffsetCommitRequest {
        group_id: "g".into(),
        member_id: id.into(),
        member_epoch: epoch,
        topics: vec![v1::OffsetCommitTopic {
            topic: "t".into(),
            partitions: (0..PARTITIONS)
                .map(|partition| v1::OffsetCommitPartition {
                    partition,
                    offset: offset + u64::from(partition),
                    metadata: format!("commit {offset}"),
                })
                .collect(),
        }],
    })
}

fn commit_ok(client: &mut RawClient, id: &str, epoch: i32, offset: u64) {
    let response::Body::OffsetCommit(r) = client.call_ok(commit(id, epoch, offset)) else {
        panic!("not a commit answer")
    };
    for p in r.topics.iter().flat_map(|t| &t.partitions) {
        assert!(p.error.is_none(), "commit {offset} refused: {p:?}");
    }
}

/// The committed offset of each partition, less the partition number (so all are equal when
/// one commit landed whole).
fn committed(client: &mut RawClient) -> Vec<u64> {
    let body = request::Body::OffsetFetch(v1::OffsetFetchRequest {
        group_id: "g".into(),
        partitions: vec![],
    });
    let response::Body::OffsetFetch(r) = client.call_ok(body) else { panic!("not offsets") };
    assert_eq!(r.offsets.len(), PARTITIONS as usize, "{r:?}");
    r.offsets.iter().map(|c| c.offset.unwrap() - u64::from(c.partition)).collect()
}

fn start(dir: &Path) -> (BrokerProcess, RawClient) {
    let broker = BrokerProcess::start(dir, ENV);
    let client = RawClient::connect(broker.addr());
    (broker, client)
}

#[test]
fn acknowledged_commits_and_membership_survive_kill9_and_restart() {
    let mut rng = Rng::new(env_u64("EDDY_TEST_SEED").unwrap_or(0x0edd_d00d));
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, mut client) = start(dir.path());
    client.create_topic("t", PARTITIONS);
    let joined = heartbeat(&mut client, "", 0, false);
    let (id, epoch) = (joined.member_id.clone(), joined.member_epoch);
    let all: Vec<u32> = (0..PARTITIONS).collect();
    assert_eq!(joined.assignment[0].partitions, all, "a lone member owns every partition");

    let mut sent = 0u64;
    for cycle in 0..CYCLES {
        for _ in 0..10 + rng.below(40) {
            sent += 1;
            commit_ok(&mut client, &id, epoch, sent);
        }
        let acked = sent;
        // Commits still in flight when the broker dies.
        for _ in 0..rng.below(4) {
            sent += 1;
            client.send_body(commit(&id, epoch, sent)).unwrap();
        }
        broker.kill9();
        (broker, client) = start(dir.path());

        let offsets = committed(&mut client);
        for (p, &c) in offsets.iter().enumerate() {
            assert!(
                (acked..=sent).contains(&c),
                "cycle {cycle}: partition {p} has commit {c}; acknowledged {acked}, sent {sent}"
            );
        }
        let d = describe_group(&mut client, "g");
        assert_eq!(d.members.len(), 1, "{d:?}");
        let m = &d.members[0];
        assert_eq!((m.member_id.as_str(), m.member_epoch), (id.as_str(), epoch));
        assert_eq!(m.assigned[0].partitions, all);
        assert_eq!(d.state, "stable");
        let again = heartbeat(&mut client, &id, epoch, true);
        assert_eq!(
            (again.member_epoch, again.assignment[0].partitions.clone()),
            (epoch, all.clone())
        );
        // Later commits carry on from whatever landed.
        sent = sent.max(offsets.iter().copied().max().unwrap_or(0));
    }

    // A clean stop keeps exactly the last commit.
    sent += 1;
    commit_ok(&mut client, &id, epoch, sent);
    assert!(broker.terminate().success());
    let (_broker, mut client) = start(dir.path());
    assert_eq!(committed(&mut client), vec![sent; PARTITIONS as usize]);
    let d = describe_group(&mut client, "g");
    assert!(d.offsets.iter().all(|o| o.metadata == format!("commit {sent}")), "{d:?}");
}
