//! Consumer group fencing against a real `eddy serve`, in raw group requests over
//! `eddy_client::Connection`: every refusal comes with its exact error code and a message that
//! names what is wrong.
//!
//! - A member that stops heartbeating is expelled once its session ends; its partitions move to
//!   the member that is still there, and the expelled member's late commit and fetch are refused
//!   (`UNKNOWN_MEMBER_ID`) without changing the committed offsets. A wrong heartbeat epoch is
//!   `FENCED_MEMBER_EPOCH`; an epoch from before a partition was granted is
//!   `STALE_MEMBER_EPOCH`.
//! - Two members sharing a topic may each commit only their own partition (`NOT_ASSIGNED` per
//!   partition); reset and delete of a group with members are `GROUP_NOT_EMPTY` (also through
//!   the CLI); once the members have left, reset (earliest, latest, offset, timestamp) and
//!   delete work.
//! - The internal offsets topic cannot be produced to, deleted or imitated, and malformed group
//!   requests are refused, while the broker keeps serving.
//!
//! The only waits are heartbeats at the interval the broker answers with (the protocol's own
//! pace), bounded by a deadline.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_client::{
    Admin, ClientError, Connection, ConnectionOptions, ErrorCode, GroupReset, Producer,
    ProducerConfig, ProducerRecord, TopicConfig, Transport,
};
use eddy_protocol::v1::{self, request, response};
use eddy_tests::broker::{BrokerProcess, eddy_binary};
use eddy_tests::raw_client::{big_batch, produce_request};

const TOPIC: &str = "t";
const GROUP: &str = "g";
const PARTITIONS: u32 = 2;
/// Records per partition; record `i` has timestamp `BASE_TS + i * 1000`.
const RECORDS: u64 = 10;
const BASE_TS: i64 = 1_700_000_000_000;
/// The session timeout of the member that goes silent.
const SHORT_SESSION_MS: u32 = 1000;
/// A session no step of a test outlasts.
const LONG_SESSION_MS: u32 = 60_000;
/// Longest wait for a hand-over of partitions.
const MOVE_LIMIT: Duration = Duration::from_secs(15);
const CLI_LIMIT: Duration = Duration::from_secs(30);

fn start_broker(dir: &Path) -> BrokerProcess {
    BrokerProcess::start(
        dir,
        &[
            ("EDDY_GROUP_MIN_SESSION_TIMEOUT_MS", "200"),
            ("EDDY_GROUP_HEARTBEAT_INTERVAL_MS", "100"),
        ],
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn connect(broker: &BrokerProcess) -> Arc<Connection> {
    let addr = broker.addr().to_string();
    Arc::new(Connection::connect(&addr, ConnectionOptions::default()).await.unwrap())
}

/// One request; a request-level refusal is `Err`, a transport failure fails the test.
async fn call(conn: &Connection, body: request::Body) -> Result<response::Body, v1::Error> {
    match conn.call(body).await {
        Ok(body) => Ok(body),
        Err(ClientError::Broker(e)) => Err(e),
        Err(other) => panic!("transport failure: {other}"),
    }
}

macro_rules! body {
    ($result:expr, $variant:ident) => {
        $result.map(|b| match b {
            response::Body::$variant(inner) => inner,
            other => panic!("expected a {} answer, got {other:?}", stringify!($variant)),
        })
    };
}

/// Asserts the code, and that the message is one line holding each of `words`.
fn assert_error(e: &v1::Error, code: ErrorCode, words: &[&str]) {
    assert_eq!(e.error_code(), code, "{e}");
    assert!(!e.message.contains('\n'), "message is not one line: {e}");
    for word in words {
        assert!(e.message.contains(word), "{code:?}: message lacks {word:?}: {:?}", e.message);
    }
}

fn broker_error(e: ClientError) -> v1::Error {
    match e {
        ClientError::Broker(e) => e,
        other => panic!("expected a broker refusal, got {other}"),
    }
}

/// Creates the topic (records kept forever) and writes `RECORDS` to each partition.
async fn create_topic(conn: &Arc<Connection>) {
    let config = TopicConfig {
        partitions: Some(PARTITIONS),
        retention_ms: Some(-1),
        ..TopicConfig::default()
    };
    Admin::new(conn.clone()).create_topic(TOPIC, config).await.unwrap();
    let producer = Producer::new(conn.clone(), ProducerConfig::default()).unwrap();
    for p in 0..PARTITIONS {
        for i in 0..RECORDS {
            let record =
                ProducerRecord::value(format!("{p}-{i}")).with_timestamp(BASE_TS + i as i64 * 1000);
            producer.send_and_wait(TOPIC, Some(p), record).await.unwrap();
        }
    }
    producer.close().await.unwrap();
}

fn heartbeat_request(
    id: &str,
    epoch: i32,
    owned: &[u32],
    session_ms: u32,
) -> v1::GroupHeartbeatRequest {
    let owned = if owned.is_empty() {
        Vec::new()
    } else {
        vec![v1::TopicPartitions { topic: TOPIC.into(), partitions: owned.to_vec() }]
    };
    v1::GroupHeartbeatRequest {
        group_id: GROUP.into(),
        member_id: id.into(),
        member_epoch: epoch,
        subscribed_topics: vec![TOPIC.into()],
        session_timeout_ms: session_ms,
        owned,
        ..Default::default()
    }
}

async fn heartbeat(
    conn: &Connection,
    r: v1::GroupHeartbeatRequest,
) -> Result<v1::GroupHeartbeatResponse, v1::Error> {
    body!(call(conn, request::Body::GroupHeartbeat(r)).await, GroupHeartbeat)
}

/// A well-behaved member: each heartbeat reports what the last answer assigned, which releases
/// whatever that answer revoked.
#[derive(Debug, Clone)]
struct Member {
    id: String,
    epoch: i32,
    owned: Vec<u32>,
    interval: Duration,
    session_ms: u32,
}

impl Member {
    async fn join(conn: &Connection, client_id: &str, session_ms: u32) -> Member {
        let mut r = heartbeat_request("", 0, &[], session_ms);
        r.client_id = client_id.into();
        let mut m = Member {
            id: String::new(),
            epoch: 0,
            owned: Vec::new(),
            interval: Duration::ZERO,
            session_ms,
        };
        m.apply(heartbeat(conn, r).await.unwrap());
        assert_eq!(m.epoch, if m.owned.is_empty() { 1 } else { 2 }, "{m:?}");
        m
    }

    fn apply(&mut self, r: v1::GroupHeartbeatResponse) {
        assert_eq!(r.session_timeout_ms, self.session_ms, "the session asked for is in force");
        self.id = r.member_id;
        self.epoch = r.member_epoch;
        self.owned = r.assignment.iter().flat_map(|t| t.partitions.iter().copied()).collect();
        self.interval = Duration::from_millis(r.heartbeat_interval_ms.into());
    }

    async fn beat(&mut self, conn: &Connection) {
        let r = heartbeat_request(&self.id, self.epoch, &self.owned, self.session_ms);
        let answer = heartbeat(conn, r).await;
        self.apply(answer.unwrap_or_else(|e| panic!("heartbeat of {}: {e}", self.id)));
    }

    async fn leave(&self, conn: &Connection) {
        let r = heartbeat(conn, heartbeat_request(&self.id, -1, &[], 0)).await.unwrap();
        assert_eq!(r.member_epoch, -1, "a leave answers epoch -1");
    }

    fn at(&self, epoch: i32) -> v1::GroupMemberRef {
        v1::GroupMemberRef {
            group_id: GROUP.into(),
            member_id: self.id.clone(),
            member_epoch: epoch,
        }
    }
}

/// Commits `offsets` as `member` at `epoch`; per-partition outcomes (`None`: committed).
async fn commit(
    conn: &Connection,
    member: &str,
    epoch: i32,
    offsets: &[(u32, u64)],
) -> Result<BTreeMap<u32, Option<v1::Error>>, v1::Error> {
    let partitions = offsets
        .iter()
        .map(|&(partition, offset)| v1::OffsetCommitPartition {
            partition,
            offset,
            metadata: String::new(),
        })
        .collect();
    let r = v1::OffsetCommitRequest {
        group_id: GROUP.into(),
        member_id: member.into(),
        member_epoch: epoch,
        topics: vec![v1::OffsetCommitTopic { topic: TOPIC.into(), partitions }],
    };
    let answer = body!(call(conn, request::Body::OffsetCommit(r)).await, OffsetCommit)?;
    Ok(answer
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .map(|p| (p.partition, p.error))
        .collect())
}

/// The group's committed offsets in the topic.
async fn committed(conn: &Connection) -> BTreeMap<u32, u64> {
    let r = v1::OffsetFetchRequest { group_id: GROUP.into(), partitions: vec![] };
    let answer = body!(call(conn, request::Body::OffsetFetch(r)).await, OffsetFetch).unwrap();
    answer
        .offsets
        .iter()
        .filter(|c| c.topic == TOPIC)
        .map(|c| (c.partition, c.offset.unwrap()))
        .collect()
}

/// A fetch of `partitions` from offset 0 as `member`.
async fn fetch_as(
    conn: &Connection,
    member: v1::GroupMemberRef,
    partitions: &[u32],
) -> Result<v1::FetchResponse, v1::Error> {
    let partitions =
        partitions.iter().map(|&p| v1::FetchPartition { partition: p, offset: 0, max_bytes: 0 });
    let r = v1::FetchRequest {
        isolation: 0,
        member: Some(member),
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 0,
        topics: vec![v1::FetchTopic { topic: TOPIC.into(), partitions: partitions.collect() }],
    };
    body!(call(conn, request::Body::Fetch(r)).await, Fetch)
}

/// Runs `eddy --broker ADDR ARGS...` to completion.
async fn cli(broker: &BrokerProcess, args: &[&str]) -> std::process::Output {
    let child = tokio::process::Command::new(eddy_binary())
        .arg("--broker")
        .arg(broker.addr().to_string())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(CLI_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("eddy {args:?} still running after {CLI_LIMIT:?}"))
        .unwrap()
}

/// The one stderr line of a command that failed.
fn failure_line(args: &[&str], output: &std::process::Output) -> String {
    assert!(!output.status.success(), "eddy {args:?} succeeded: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "eddy {args:?}: stderr is not one line: {stderr:?}");
    assert!(stderr.starts_with("eddy: "), "eddy {args:?}: {stderr:?}");
    stderr
}

#[test]
fn a_silent_member_is_expelled_and_its_late_commit_and_fetch_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    runtime().block_on(async {
        let conn = connect(&broker).await;
        create_topic(&conn).await;

        // A joins alone and owns both partitions at once.
        let mut a = Member::join(&conn, "a", SHORT_SESSION_MS).await;
        assert_eq!(a.owned, [0, 1], "{a:?}");

        // A heartbeat with an epoch the member never had is fenced.
        let wrong = a.epoch + 7;
        let e = heartbeat(&conn, heartbeat_request(&a.id, wrong, &a.owned, SHORT_SESSION_MS))
            .await
            .unwrap_err();
        let sent = format!("sent epoch {wrong}");
        let current = format!("its epoch is {}", a.epoch);
        assert_error(&e, ErrorCode::FencedMemberEpoch, &[&a.id, &sent, &current, "rejoin"]);

        // A heartbeats a last time, then reads and commits its partitions. (The clock starts
        // before the heartbeat is sent, so it cannot start after the broker's.)
        let a_last_heartbeat = Instant::now();
        a.beat(&conn).await;
        assert_eq!(a.owned, [0, 1], "{a:?}");
        let fetched = fetch_as(&conn, a.at(a.epoch), &a.owned).await.unwrap();
        for p in fetched.topics.iter().flat_map(|t| &t.partitions) {
            assert!(p.error.is_none() && !p.records.is_empty(), "A's fetch: {p:?}");
        }
        let outcome = commit(&conn, &a.id, a.epoch, &[(0, 3), (1, 3)]).await.unwrap();
        assert!(outcome.values().all(Option::is_none), "A's commit: {outcome:?}");
        assert_eq!(committed(&conn).await, BTreeMap::from([(0, 3), (1, 3)]));

        // A goes silent. B joins and heartbeats at the pace the broker asks for; it gets the
        // partitions only once A's session has ended.
        let mut b = Member::join(&conn, "b", LONG_SESSION_MS).await;
        assert!(b.owned.is_empty(), "A still owns everything: {b:?}");
        let b_epoch_before_grant = b.epoch;
        let deadline = Instant::now() + MOVE_LIMIT;
        while b.owned != [0, 1] {
            assert!(Instant::now() < deadline, "B never got both partitions: {b:?}");
            tokio::time::sleep(b.interval).await;
            b.beat(&conn).await;
        }
        let silent = a_last_heartbeat.elapsed();
        assert!(
            silent >= Duration::from_millis(SHORT_SESSION_MS.into()),
            "A's partitions moved after {silent:?} of silence, before its session ended"
        );
        assert!(b.epoch > b_epoch_before_grant, "a grant raises the epoch: {b:?}");

        // The zombie's commit, fetch and heartbeat are refused: it is no longer a member.
        let expelled: &[&str] = &[&a.id, GROUP, "expelled"];
        let e = commit(&conn, &a.id, a.epoch, &[(0, 7), (1, 7)]).await.unwrap_err();
        assert_error(&e, ErrorCode::UnknownMemberId, expelled);
        let e = fetch_as(&conn, a.at(a.epoch), &[0, 1]).await.unwrap_err();
        assert_error(&e, ErrorCode::UnknownMemberId, expelled);
        let e = heartbeat(&conn, heartbeat_request(&a.id, a.epoch, &a.owned, SHORT_SESSION_MS))
            .await
            .unwrap_err();
        assert_error(&e, ErrorCode::UnknownMemberId, expelled);
        // Nothing of the late commit was stored.
        assert_eq!(committed(&conn).await, BTreeMap::from([(0, 3), (1, 3)]));

        // B's epoch from before the grant is stale for the granted partitions, for commits
        // (per partition) and fetches (the whole request).
        let outcome = commit(&conn, &b.id, b_epoch_before_grant, &[(0, 5), (1, 5)]).await.unwrap();
        let stale = format!("epoch {b_epoch_before_grant} is stale");
        for p in 0..PARTITIONS {
            let e = outcome[&p].as_ref().unwrap_or_else(|| panic!("stale commit of {p} accepted"));
            let tp = format!("{TOPIC}-{p}");
            assert_error(e, ErrorCode::StaleMemberEpoch, &[&b.id, &stale, &tp, "grant"]);
        }
        let e = fetch_as(&conn, b.at(b_epoch_before_grant), &[0]).await.unwrap_err();
        assert_error(&e, ErrorCode::StaleMemberEpoch, &[&b.id, &stale]);
        assert_eq!(committed(&conn).await, BTreeMap::from([(0, 3), (1, 3)]));

        // At its current epoch B commits and reads.
        let outcome = commit(&conn, &b.id, b.epoch, &[(0, 5), (1, 5)]).await.unwrap();
        assert!(outcome.values().all(Option::is_none), "B's commit: {outcome:?}");
        assert_eq!(committed(&conn).await, BTreeMap::from([(0, 5), (1, 5)]));
        fetch_as(&conn, b.at(b.epoch), &[0, 1]).await.unwrap();
        b.leave(&conn).await;
    });
}

#[test]
fn members_commit_only_their_own_partitions_and_an_active_group_is_not_reset_or_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    runtime().block_on(async {
        let conn = connect(&broker).await;
        let admin = Admin::new(conn.clone());
        create_topic(&conn).await;

        // B owns both partitions; C joins, and B hands one over.
        let mut b = Member::join(&conn, "b", LONG_SESSION_MS).await;
        let mut c = Member::join(&conn, "c", LONG_SESSION_MS).await;
        let deadline = Instant::now() + MOVE_LIMIT;
        while b.owned.len() != 1 || c.owned.len() != 1 {
            assert!(Instant::now() < deadline, "no hand-over: {b:?} {c:?}");
            tokio::time::sleep(b.interval.min(c.interval)).await;
            b.beat(&conn).await;
            c.beat(&conn).await;
        }
        let (mine, theirs) = (b.owned[0], c.owned[0]);
        assert_ne!(mine, theirs);

        // B's commit of both: its own partition is stored, the other refused on its own.
        let outcome = commit(&conn, &b.id, b.epoch, &[(mine, 2), (theirs, 2)]).await.unwrap();
        assert!(outcome[&mine].is_none(), "B's own partition: {outcome:?}");
        let e = outcome[&theirs].as_ref().expect("a commit of C's partition by B was accepted");
        let tp = format!("{TOPIC}-{theirs}");
        assert_error(e, ErrorCode::NotAssigned, &[&b.id, "does not own", &tp]);
        let outcome = commit(&conn, &c.id, c.epoch, &[(theirs, 4)]).await.unwrap();
        assert!(outcome[&theirs].is_none(), "C's own partition: {outcome:?}");
        let before = BTreeMap::from([(mine, 2), (theirs, 4)]);
        assert_eq!(committed(&conn).await, before);

        // Reset and delete need an empty group: refused, by the API and by the CLI.
        let not_empty: &[&str] = &[GROUP, "2 active member", "needs an empty group"];
        let e = admin.reset_group_offsets(GROUP, TOPIC, GroupReset::Earliest).await.unwrap_err();
        assert_error(&broker_error(e), ErrorCode::GroupNotEmpty, not_empty);
        let e = admin.delete_group(GROUP).await.unwrap_err();
        assert_error(&broker_error(e), ErrorCode::GroupNotEmpty, not_empty);
        for args in [
            &["group", "reset", GROUP, "--topic", TOPIC, "--to", "earliest"][..],
            &["group", "delete", GROUP][..],
        ] {
            let line = failure_line(args, &cli(&broker, args).await);
            for word in ["GROUP_NOT_EMPTY", "active member", "empty group"] {
                assert!(line.contains(word), "eddy {args:?}: {line:?} lacks {word:?}");
            }
        }
        assert_eq!(committed(&conn).await, before, "a refused reset changed offsets");
        let listed = admin.list_groups().await.unwrap();
        assert!(listed.iter().any(|g| g.group_id == GROUP && g.members == 2), "{listed:?}");

        // Once both have left, reset works for every kind of target.
        b.leave(&conn).await;
        c.leave(&conn).await;
        let at_4000 = format!("@{}", BASE_TS + 3500);
        for (to, want) in [("earliest", 0), ("latest", RECORDS), ("6", 6), (at_4000.as_str(), 4)] {
            let args = ["group", "reset", GROUP, "--topic", TOPIC, "--to", to];
            let output = cli(&broker, &args).await;
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "eddy {args:?}: {stderr}");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(stdout.contains("offsets reset"), "eddy {args:?}: {stdout}");
            let all = (0..PARTITIONS).map(|p| (p, want)).collect();
            assert_eq!(committed(&conn).await, all, "after --to {to}");
        }
        let offsets = admin.reset_group_offsets(GROUP, TOPIC, GroupReset::Offset(1)).await.unwrap();
        assert!(offsets.iter().all(|c| c.offset == Some(1)), "{offsets:?}");

        // Delete works; the group is gone.
        admin.delete_group(GROUP).await.unwrap();
        let e = admin.describe_group(GROUP).await.unwrap_err();
        assert_error(&broker_error(e), ErrorCode::UnknownGroup, &["unknown group", GROUP]);
        assert!(committed(&conn).await.is_empty(), "a deleted group's offsets remain");
        assert!(admin.list_groups().await.unwrap().iter().all(|g| g.group_id != GROUP));
    });
}

#[test]
fn internal_topic_and_malformed_group_requests_are_refused_and_the_broker_keeps_serving() {
    const INTERNAL: &str = "__consumer_offsets";
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start_broker(dir.path());
    runtime().block_on(async {
        let conn = connect(&broker).await;
        let admin = Admin::new(conn.clone());
        create_topic(&conn).await;

        // The offsets topic is listed and readable, but cannot be written or deleted.
        assert!(admin.list_topics().await.unwrap().iter().any(|t| t == INTERNAL));
        let produce = produce_request(v1::Acks::Written, INTERNAL, 0, big_batch(64));
        let answer = body!(call(&conn, produce).await, Produce).unwrap();
        let result = answer.topics.iter().flat_map(|t| &t.partitions).next().unwrap();
        let e = result.error.as_ref().expect("a produce to the offsets topic was accepted");
        assert_error(e, ErrorCode::InternalTopic, &[INTERNAL, "internal", "not written"]);
        let e = admin.delete_topic(INTERNAL).await.unwrap_err();
        assert_error(&broker_error(e), ErrorCode::InternalTopic, &[INTERNAL, "internal"]);
        // Nor can another internal-looking topic be made.
        let e = admin.create_topic("__x", TopicConfig::default()).await.unwrap_err();
        assert_error(&broker_error(e), ErrorCode::InvalidConfig, &["__x", "reserved", "internal"]);

        // Malformed group requests.
        let mut r = heartbeat_request("", 0, &[], LONG_SESSION_MS);
        r.group_id = String::new();
        let e = heartbeat(&conn, r).await.unwrap_err();
        assert_error(&e, ErrorCode::InvalidGroupId, &["group id", "empty"]);
        let mut r = heartbeat_request("", 0, &[], LONG_SESSION_MS);
        r.assignor = "fancy".into();
        let e = heartbeat(&conn, r).await.unwrap_err();
        assert_error(&e, ErrorCode::UnsupportedAssignor, &["fancy", "sticky", "range"]);
        let e = heartbeat(&conn, heartbeat_request("", 3, &[], LONG_SESSION_MS)).await.unwrap_err();
        assert_error(&e, ErrorCode::MalformedRequest, &["member_id", "member_epoch"]);
        let e = commit(&conn, "nobody", 1, &[(0, 1)]).await.unwrap_err();
        assert_error(&e, ErrorCode::UnknownMemberId, &["nobody", GROUP]);
        // None of them created the group.
        assert!(admin.list_groups().await.unwrap().is_empty());

        // The broker still serves, on the same connection: a member joins, commits and reads,
        // and the commit is a record in the offsets topic.
        let m = Member::join(&conn, "after", LONG_SESSION_MS).await;
        assert_eq!(m.owned, [0, 1]);
        let outcome = commit(&conn, &m.id, m.epoch, &[(0, 1)]).await.unwrap();
        assert!(outcome.values().all(Option::is_none), "{outcome:?}");
        fetch_as(&conn, m.at(m.epoch), &[0, 1]).await.unwrap();
        let described = admin.describe_group(GROUP).await.unwrap();
        assert_eq!(described.members.len(), 1, "{described:?}");
        let offsets = admin.describe_topic(INTERNAL).await.unwrap();
        assert!(offsets.partitions[0].next_offset > 0, "{offsets:?}");
        m.leave(&conn).await;
    });
    assert!(broker.is_running(), "the broker exited");
    let status = broker.terminate();
    assert!(status.success(), "broker exit after SIGTERM: {status:?}");
}
