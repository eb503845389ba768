//! Kafka classic groups and eddy's native groups on one broker: a group has members of one
//! protocol or the other, never both (INCONSISTENT_GROUP_PROTOCOL, both ways); a Kafka group's
//! committed offsets are eddy's — `DescribeGroup` shows them with their lag, and
//! `ResetGroupOffsets` moves them for the Kafka members to resume from.

use bytes::Bytes;
use eddy_protocol::ErrorCode;
use eddy_protocol::v1::{self, request, response};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::generate::batch_for_seed;
use eddy_tests::kafka_wire::{KafkaConnection, text};
use eddy_tests::raw_client::{RawClient, error_code};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;

const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;

fn native_join(client: &mut RawClient, group: &str) -> v1::Response {
    client.call(request::Body::GroupHeartbeat(v1::GroupHeartbeatRequest {
        group_id: group.to_string(),
        member_epoch: 0,
        subscribed_topics: vec!["t".to_string()],
        session_timeout_ms: 10_000,
        ..Default::default()
    }))
}

/// JoinGroup v3 (no KIP-394 round trip) and SyncGroup as the only member, which leads.
fn kafka_join_and_sync(kafka: &mut KafkaConnection, group: &str) -> (String, i32) {
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(Bytes::from_static(b"m")),
        ]);
    let joined: JoinGroupResponse = kafka.call(ApiKey::JoinGroup, 3, &join);
    assert_eq!(joined.error_code, 0, "{joined:?}");
    assert_eq!(joined.leader, joined.member_id, "the only member leads");
    let assignment = sync_group_request::SyncGroupRequestAssignment::default()
        .with_member_id(joined.member_id.clone())
        .with_assignment(Bytes::from_static(b"all of t"));
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone())
        .with_assignments(vec![assignment]);
    let synced: SyncGroupResponse = kafka.call(ApiKey::SyncGroup, 3, &sync);
    assert_eq!(synced.error_code, 0, "{synced:?}");
    assert_eq!(&synced.assignment[..], b"all of t");
    (joined.member_id.to_string(), joined.generation_id)
}

#[test]
fn kafka_and_eddy_members_never_share_a_group_and_share_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut native = RawClient::connect(broker.addr());
    native.create_topic("t", 2);
    for p in 0..2 {
        for k in 0..3 {
            native.produce_ok("t", p, Bytes::from(batch_for_seed(u64::from(p) * 10 + k)));
        }
    }
    let mut kafka = KafkaConnection::connect(broker.kafka_addr());

    // A group with an eddy member refuses a Kafka member.
    let first = native_join(&mut native, "by-eddy");
    assert_eq!(error_code(&first), None, "{first:?}");
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(text("by-eddy")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(text("range"))]);
    let refused: JoinGroupResponse = kafka.call(ApiKey::JoinGroup, 3, &join);
    assert_eq!(refused.error_code, INCONSISTENT_GROUP_PROTOCOL, "{refused:?}");

    // A group with a Kafka member refuses an eddy member.
    let (member, generation) = kafka_join_and_sync(&mut kafka, "by-kafka");
    let refused = native_join(&mut native, "by-kafka");
    assert_eq!(error_code(&refused), Some(ErrorCode::InconsistentGroupProtocol), "{refused:?}");

    // The Kafka member commits; eddy sees the offsets with their lag.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(text("by-kafka")))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(text(&member))
        .with_topics(vec![
            OffsetCommitRequestTopic::default().with_name(TopicName(text("t"))).with_partitions(
                vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(2),
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(1)
                        .with_committed_offset(1),
                ],
            ),
        ]);
    let committed: OffsetCommitResponse = kafka.call(ApiKey::OffsetCommit, 7, &commit);
    let codes: Vec<i16> = committed.topics[0].partitions.iter().map(|p| p.error_code).collect();
    assert_eq!(codes, [0, 0], "{committed:?}");
    let describe = |native: &mut RawClient| {
        let body = native.call_ok(request::Body::DescribeGroup(v1::DescribeGroupRequest {
            group_id: "by-kafka".into(),
        }));
        let response::Body::DescribeGroup(d) = body else { panic!("{body:?}") };
        let mut offsets: Vec<(u32, Option<u64>, u64)> =
            d.offsets.iter().map(|o| (o.partition, o.committed, o.lag)).collect();
        offsets.sort();
        offsets
    };
    let end = native.next_offset("t", 0);
    let end1 = native.next_offset("t", 1);
    assert_eq!(describe(&mut native), [(0, Some(2), end - 2), (1, Some(1), end1 - 1)]);

    // Reset is refused while the Kafka member is in; after it leaves, the reset moves the
    // offsets the Kafka clients read, and the group takes eddy members again.
    let reset = |native: &mut RawClient| {
        native.call(request::Body::ResetGroupOffsets(v1::ResetGroupOffsetsRequest {
            group_id: "by-kafka".into(),
            topic: "t".into(),
            to: Some(v1::reset_group_offsets_request::To::Earliest(true)),
        }))
    };
    let busy = reset(&mut native);
    assert_eq!(error_code(&busy), Some(ErrorCode::GroupNotEmpty), "{busy:?}");
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(text("by-kafka")))
        .with_member_id(text(&member));
    let left: LeaveGroupResponse = kafka.call(ApiKey::LeaveGroup, 1, &leave);
    assert_eq!(left.error_code, 0, "{left:?}");
    let reset_answer = reset(&mut native);
    assert_eq!(error_code(&reset_answer), None, "{reset_answer:?}");
    let fetch = OffsetFetchRequest::default().with_group_id(GroupId(text("by-kafka"))).with_topics(
        Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(text("t")))
                .with_partition_indexes(vec![0, 1]),
        ]),
    );
    let fetched: OffsetFetchResponse = kafka.call(ApiKey::OffsetFetch, 5, &fetch);
    let mut offsets: Vec<(i32, i64)> = fetched.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    offsets.sort();
    assert_eq!(offsets, [(0, 0), (1, 0)], "{fetched:?}");
    let welcome = native_join(&mut native, "by-kafka");
    assert_eq!(error_code(&welcome), None, "{welcome:?}");
}
