//! Every Kafka API the listener serves against the ACLs, in process: the Kafka listener's
//! dispatch (`eddy_broker::kafka::KafkaHandler`, what each connection runs) over an embedded
//! broker with ACLs on, each request encoded and each answer decoded with `kafka-protocol`.
//! For every row a principal without the rights gets Kafka's code for the refused resource —
//! TOPIC_AUTHORIZATION_FAILED (29), GROUP_AUTHORIZATION_FAILED (30),
//! CLUSTER_AUTHORIZATION_FAILED (31), TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53), or the topic
//! left out of a listing — and, granted exactly the rights the row names, gets through. Also a
//! transaction end to end, the "authorized operations" fields and Kafka's ACL APIs are
//! in security_acl_kafka_apis.rs.
//!
//! (End-to-end runs with real Kafka clients need authentication, which comes with the SASL
//! work: a Kafka client is anonymous until then.)
#![allow(clippy::unwrap_used)]

mod acl_fixture;

use std::collections::BTreeSet;

use acl_fixture::kafka::*;
use acl_fixture::*;
use bytes::Bytes;
use eddy_broker::security::acl::{CLUSTER_NAME, Operation as O, ResourceType as T};
use eddy_tests::kafka_wire::{frame, text};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, HeaderVersion};

/// A listing that leaves the row's resource out.
const HIDDEN: i16 = -100;
/// One API and what it needs.
struct Row {
    name: &'static str,
    key: ApiKey,
    version: i16,
    request: Vec<u8>,
    /// The code this row is about, from the answer.
    code: fn(Bytes, i16) -> i16,
    given: Vec<(O, T, &'static str)>,
    needs: Vec<(O, T, &'static str)>,
    refused: i16,
    allowed: i16,
}

fn row<Q: Encodable + HeaderVersion>(
    name: &'static str,
    key: ApiKey,
    version: i16,
    request: Q,
    code: fn(Bytes, i16) -> i16,
    needs: Vec<(O, T, &'static str)>,
    (refused, allowed): (i16, i16),
) -> Row {
    let request = frame(key, version, 7, &request);
    Row { name, key, version, request, code, given: vec![], needs, refused, allowed }
}
fn rows() -> Vec<Row> {
    let api_versions = ApiVersionsRequest::default()
        .with_client_software_name(text("t"))
        .with_client_software_version(text("1"));
    let named = |n: &str, create: bool| {
        let t = metadata_request::MetadataRequestTopic::default().with_name(Some(topic(n)));
        MetadataRequest::default().with_topics(Some(vec![t])).with_allow_auto_topic_creation(create)
    };
    let offsets = {
        let p = list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1);
        let t = list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic(ORDERS_EU))
            .with_partitions(vec![p]);
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![t])
    };
    let fetch_offsets = |named: bool| {
        let topics = named.then(|| {
            vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic(ORDERS_EU))
                    .with_partition_indexes(vec![0]),
            ]
        });
        OffsetFetchRequest::default().with_group_id(group(GROUP)).with_topics(topics)
    };
    let coordinator = |kind: i8, key: &str| {
        FindCoordinatorRequest::default().with_key_type(kind).with_key(text(key))
    };
    let sync = SyncGroupRequest::default()
        .with_group_id(group("ks"))
        .with_generation_id(1)
        .with_member_id(text("m"));
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(group("kh"))
        .with_generation_id(1)
        .with_member_id(text("m"));
    let leave = LeaveGroupRequest::default().with_group_id(group("kl")).with_members(vec![
        leave_group_request::MemberIdentity::default().with_member_id(text("m")),
    ]);
    let creatable = create_topics_request::CreatableTopic::default()
        .with_name(topic("k-made"))
        .with_num_partitions(1)
        .with_replication_factor(1);
    let partitions = create_partitions_request::CreatePartitionsTopic::default()
        .with_name(topic(PAYMENTS))
        .with_count(2);
    let init = |id: Option<&str>| {
        InitProducerIdRequest::default()
            .with_transactional_id(id.map(|i| TransactionalId(text(i))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let consumer_heartbeat = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group("kc"))
        .with_member_id(text(""))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(10_000)
        .with_subscribed_topic_names(Some(vec![topic(ORDERS_EU)]));
    let any_acls = DescribeAclsRequest::default()
        .with_resource_type_filter(1)
        .with_resource_name_filter(None)
        .with_host_filter(None)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1);
    let delete_acls = DeleteAclsRequest::default().with_filters(vec![
        delete_acls_request::DeleteAclsFilter::default()
            .with_resource_type_filter(1)
            .with_resource_name_filter(None)
            .with_host_filter(None)
            .with_pattern_type_filter(1)
            .with_principal_filter(Some(text("User:someone")))
            .with_operation(1)
            .with_permission_type(1),
    ]);
    let (d, c) = ((29, 0), (30, 0));
    vec![
        row(
            "ApiVersions",
            ApiKey::ApiVersions,
            3,
            api_versions,
            |b, v| decode::<ApiVersionsResponse>(b, v).error_code,
            vec![],
            (0, 0),
        ),
        row(
            "Metadata (named)",
            ApiKey::Metadata,
            12,
            named(ORDERS_EU, false),
            |b, v| decode::<MetadataResponse>(b, v).topics[0].error_code,
            vec![(O::Describe, T::Topic, ORDERS_EU)],
            d,
        ),
        row(
            "Metadata (all)",
            ApiKey::Metadata,
            12,
            MetadataRequest::default().with_topics(None),
            |b, v| {
                let m = decode::<MetadataResponse>(b, v);
                if m.topics
                    .iter()
                    .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == ORDERS_EU))
                {
                    0
                } else {
                    HIDDEN
                }
            },
            vec![(O::Describe, T::Topic, ORDERS_EU)],
            (HIDDEN, 0),
        ),
        row(
            "Metadata (auto-create)",
            ApiKey::Metadata,
            12,
            named("auto-made", true),
            |b, v| decode::<MetadataResponse>(b, v).topics[0].error_code,
            vec![(O::Describe, T::Topic, "auto-made"), (O::Create, T::Topic, "auto-made")],
            d,
        ),
        row(
            "Produce",
            ApiKey::Produce,
            9,
            produce_request(ORDERS_EU),
            |b, v| decode::<ProduceResponse>(b, v).responses[0].partition_responses[0].error_code,
            vec![(O::Write, T::Topic, ORDERS_EU)],
            d,
        ),
        row(
            "Fetch",
            ApiKey::Fetch,
            12,
            fetch_request(ORDERS_EU),
            |b, v| decode::<FetchResponse>(b, v).responses[0].partitions[0].error_code,
            vec![(O::Read, T::Topic, ORDERS_EU)],
            d,
        ),
        row(
            "ListOffsets",
            ApiKey::ListOffsets,
            6,
            offsets,
            |b, v| decode::<ListOffsetsResponse>(b, v).topics[0].partitions[0].error_code,
            vec![(O::Describe, T::Topic, ORDERS_EU)],
            d,
        ),
        row(
            "OffsetCommit",
            ApiKey::OffsetCommit,
            8,
            commit_request("kg", ORDERS_EU),
            |b, v| decode::<OffsetCommitResponse>(b, v).topics[0].partitions[0].error_code,
            vec![(O::Read, T::Group, "kg"), (O::Read, T::Topic, ORDERS_EU)],
            c,
        ),
        Row {
            given: vec![(O::Read, T::Group, "kg2")],
            ..row(
                "OffsetCommit (topic)",
                ApiKey::OffsetCommit,
                8,
                commit_request("kg2", ORDERS_EU),
                |b, v| decode::<OffsetCommitResponse>(b, v).topics[0].partitions[0].error_code,
                vec![(O::Read, T::Topic, ORDERS_EU)],
                d,
            )
        },
        row(
            "OffsetFetch",
            ApiKey::OffsetFetch,
            7,
            fetch_offsets(false),
            |b, v| decode::<OffsetFetchResponse>(b, v).error_code,
            vec![(O::Describe, T::Group, GROUP)],
            c,
        ),
        Row {
            given: vec![(O::Describe, T::Group, GROUP)],
            ..row(
                "OffsetFetch (topic)",
                ApiKey::OffsetFetch,
                7,
                fetch_offsets(true),
                |b, v| decode::<OffsetFetchResponse>(b, v).topics[0].partitions[0].error_code,
                vec![(O::Describe, T::Topic, ORDERS_EU)],
                d,
            )
        },
        row(
            "FindCoordinator (group)",
            ApiKey::FindCoordinator,
            3,
            coordinator(0, GROUP),
            |b, v| decode::<FindCoordinatorResponse>(b, v).error_code,
            vec![(O::Describe, T::Group, GROUP)],
            c,
        ),
        row(
            "FindCoordinator (transaction)",
            ApiKey::FindCoordinator,
            3,
            coordinator(1, "tx-k"),
            |b, v| decode::<FindCoordinatorResponse>(b, v).error_code,
            vec![(O::Describe, T::TransactionalId, "tx-k")],
            (53, 0),
        ),
        row(
            "JoinGroup",
            ApiKey::JoinGroup,
            3,
            join_request("kj"),
            |b, v| decode::<JoinGroupResponse>(b, v).error_code,
            vec![(O::Read, T::Group, "kj")],
            c,
        ),
        row(
            "SyncGroup",
            ApiKey::SyncGroup,
            3,
            sync,
            |b, v| decode::<SyncGroupResponse>(b, v).error_code,
            vec![(O::Read, T::Group, "ks")],
            (30, 25),
        ),
        row(
            "Heartbeat",
            ApiKey::Heartbeat,
            3,
            heartbeat,
            |b, v| decode::<HeartbeatResponse>(b, v).error_code,
            vec![(O::Read, T::Group, "kh")],
            (30, 25),
        ),
        row(
            "LeaveGroup",
            ApiKey::LeaveGroup,
            3,
            leave,
            |b, v| decode::<LeaveGroupResponse>(b, v).error_code,
            vec![(O::Read, T::Group, "kl")],
            c,
        ),
        row(
            "DescribeGroups",
            ApiKey::DescribeGroups,
            5,
            DescribeGroupsRequest::default().with_groups(vec![group(GROUP)]),
            |b, v| decode::<DescribeGroupsResponse>(b, v).groups[0].error_code,
            vec![(O::Describe, T::Group, GROUP)],
            c,
        ),
        row(
            "ListGroups",
            ApiKey::ListGroups,
            4,
            ListGroupsRequest::default(),
            |b, v| {
                if decode::<ListGroupsResponse>(b, v)
                    .groups
                    .iter()
                    .any(|g| g.group_id.0.as_str() == GROUP)
                {
                    0
                } else {
                    HIDDEN
                }
            },
            vec![(O::Describe, T::Group, GROUP)],
            (HIDDEN, 0),
        ),
        row(
            "DeleteGroups",
            ApiKey::DeleteGroups,
            2,
            DeleteGroupsRequest::default().with_groups_names(vec![group("g-delete")]),
            |b, v| decode::<DeleteGroupsResponse>(b, v).results[0].error_code,
            vec![(O::Delete, T::Group, "g-delete")],
            c,
        ),
        row(
            "CreateTopics",
            ApiKey::CreateTopics,
            7,
            CreateTopicsRequest::default().with_topics(vec![creatable]).with_timeout_ms(5000),
            |b, v| decode::<CreateTopicsResponse>(b, v).topics[0].error_code,
            vec![(O::Create, T::Topic, "k-made")],
            d,
        ),
        row(
            "DeleteTopics",
            ApiKey::DeleteTopics,
            5,
            DeleteTopicsRequest::default()
                .with_topic_names(vec![topic("doomed")])
                .with_timeout_ms(5000),
            |b, v| decode::<DeleteTopicsResponse>(b, v).responses[0].error_code,
            vec![(O::Delete, T::Topic, "doomed")],
            d,
        ),
        row(
            "CreatePartitions",
            ApiKey::CreatePartitions,
            3,
            CreatePartitionsRequest::default().with_topics(vec![partitions]).with_timeout_ms(5000),
            |b, v| decode::<CreatePartitionsResponse>(b, v).results[0].error_code,
            vec![(O::Alter, T::Topic, PAYMENTS)],
            d,
        ),
        row(
            "DescribeConfigs (topic)",
            ApiKey::DescribeConfigs,
            4,
            describe_configs_request(2, ORDERS_EU),
            |b, v| decode::<DescribeConfigsResponse>(b, v).results[0].error_code,
            vec![(O::DescribeConfigs, T::Topic, ORDERS_EU)],
            d,
        ),
        row(
            "DescribeConfigs (broker)",
            ApiKey::DescribeConfigs,
            4,
            describe_configs_request(4, "0"),
            |b, v| decode::<DescribeConfigsResponse>(b, v).results[0].error_code,
            vec![(O::DescribeConfigs, T::Cluster, CLUSTER_NAME)],
            (31, 0),
        ),
        row(
            "DescribeCluster",
            ApiKey::DescribeCluster,
            1,
            DescribeClusterRequest::default(),
            |b, v| decode::<DescribeClusterResponse>(b, v).error_code,
            vec![],
            (0, 0),
        ),
        row(
            "InitProducerId (idempotent)",
            ApiKey::InitProducerId,
            4,
            init(None),
            |b, v| decode::<InitProducerIdResponse>(b, v).error_code,
            vec![(O::IdempotentWrite, T::Cluster, CLUSTER_NAME)],
            (31, 0),
        ),
        row(
            "InitProducerId (transactional)",
            ApiKey::InitProducerId,
            4,
            init(Some("tx-k")),
            |b, v| decode::<InitProducerIdResponse>(b, v).error_code,
            vec![(O::Write, T::TransactionalId, "tx-k")],
            (53, 0),
        ),
        row(
            "ConsumerGroupHeartbeat",
            ApiKey::ConsumerGroupHeartbeat,
            0,
            consumer_heartbeat,
            |b, v| decode::<ConsumerGroupHeartbeatResponse>(b, v).error_code,
            vec![(O::Read, T::Group, "kc"), (O::Describe, T::Topic, ORDERS_EU)],
            c,
        ),
        row(
            "DescribeAcls",
            ApiKey::DescribeAcls,
            3,
            any_acls,
            |b, v| decode::<DescribeAclsResponse>(b, v).error_code,
            vec![(O::Describe, T::Cluster, CLUSTER_NAME)],
            (31, 0),
        ),
        row(
            "CreateAcls",
            ApiKey::CreateAcls,
            3,
            acl_creation(),
            |b, v| decode::<CreateAclsResponse>(b, v).results[0].error_code,
            vec![(O::Alter, T::Cluster, CLUSTER_NAME)],
            (31, 0),
        ),
        row(
            "DeleteAcls",
            ApiKey::DeleteAcls,
            3,
            delete_acls,
            |b, v| decode::<DeleteAclsResponse>(b, v).filter_results[0].error_code,
            vec![(O::Alter, T::Cluster, CLUSTER_NAME)],
            (31, 0),
        ),
        row(
            "DescribeUserScramCredentials",
            ApiKey::DescribeUserScramCredentials,
            0,
            DescribeUserScramCredentialsRequest::default(),
            |b, v| decode::<DescribeUserScramCredentialsResponse>(b, v).error_code,
            vec![(O::Describe, T::Cluster, CLUSTER_NAME)],
            (31, 0),
        ),
        row(
            "AlterUserScramCredentials",
            ApiKey::AlterUserScramCredentials,
            0,
            scram_upsertion(),
            |b, v| decode::<AlterUserScramCredentialsResponse>(b, v).results[0].error_code,
            vec![(O::Alter, T::Cluster, CLUSTER_NAME)],
            (31, 0),
        ),
    ]
}

/// Creates user `carol` with a SCRAM-SHA-256 credential (a client-salted password).
fn scram_upsertion() -> AlterUserScramCredentialsRequest {
    let upsertion = alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
        .with_name(text("carol"))
        .with_mechanism(1)
        .with_iterations(4096)
        .with_salt(Bytes::from_static(b"0123456789abcdef"))
        .with_salted_password(Bytes::from(vec![7u8; 32]));
    AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion])
}

fn bindings(who: &str, rights: &[(O, T, &str)]) -> Vec<eddy_broker::security::acl::AclBinding> {
    rights.iter().map(|(op, kind, name)| binding(who, *op, *kind, name)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kafka_api_answers_kafkas_refusal_without_its_right_and_serves_with_it() {
    let f = Fixture::new().await;
    let kafka = Kafka::new(&f);
    let mut seen = BTreeSet::new();
    for (i, row) in rows().into_iter().enumerate() {
        let who = format!("k-{i}");
        f.grant(&bindings(&who, &row.given)).await;
        let refused = (row.code)(kafka.raw(&user(&who), &row.request).await, row.version);
        assert_eq!(refused, row.refused, "{}: without {:?}", row.name, row.needs);
        f.grant(&bindings(&who, &row.needs)).await;
        let allowed = (row.code)(kafka.raw(&user(&who), &row.request).await, row.version);
        assert_eq!(allowed, row.allowed, "{}: with {:?}", row.name, row.needs);
        println!("{:<32} {refused:>4} without {:?}, {allowed} with them", row.name, row.needs);
        seen.insert(row.key as i16);
    }
    transaction(&f, &kafka, &mut seen).await;
    // Answered by the listener before a request reaches the handler, and before any right
    // applies (authenticating needs none): tests/tests/security_sasl_kafka.rs covers them.
    seen.extend([ApiKey::SaslHandshake as i16, ApiKey::SaslAuthenticate as i16]);
    let served: BTreeSet<i16> =
        eddy_broker::kafka::supported_versions().iter().map(|(k, _, _)| *k).collect();
    let missing: Vec<_> = served.difference(&seen).collect();
    assert!(missing.is_empty(), "APIs served but not checked here: {missing:?}");
    f.broker.close().unwrap();
}

/// A transaction through every transactional API, each refused until its right is granted.
async fn transaction(f: &Fixture, kafka: &Kafka, seen: &mut BTreeSet<i16>) {
    let txer = user("txer");
    let id = || TransactionalId(text("tx-flow"));
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(id()))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let answer: InitProducerIdResponse = kafka.call(&txer, ApiKey::InitProducerId, 4, &init).await;
    assert_eq!(answer.error_code, 53);
    f.grant(&[binding("txer", O::Write, T::TransactionalId, "tx-flow")]).await;
    let answer: InitProducerIdResponse = kafka.call(&txer, ApiKey::InitProducerId, 4, &init).await;
    assert_eq!(answer.error_code, 0, "{answer:?}");
    let (pid, epoch) = (answer.producer_id, answer.producer_epoch);

    let t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
        .with_name(topic(ORDERS_EU))
        .with_partitions(vec![0]);
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(id())
        .with_v3_and_below_producer_id(pid)
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![t]);
    let code = |a: &AddPartitionsToTxnResponse| {
        a.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
    };
    let answer: AddPartitionsToTxnResponse =
        kafka.call(&txer, ApiKey::AddPartitionsToTxn, 3, &add).await;
    assert_eq!(code(&answer), 29);
    f.grant(&[binding("txer", O::Write, T::Topic, ORDERS_EU)]).await;
    let answer: AddPartitionsToTxnResponse =
        kafka.call(&txer, ApiKey::AddPartitionsToTxn, 3, &add).await;
    assert_eq!(code(&answer), 0, "{answer:?}");

    let offsets = AddOffsetsToTxnRequest::default()
        .with_transactional_id(id())
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_group_id(group("g-tx"));
    let answer: AddOffsetsToTxnResponse =
        kafka.call(&txer, ApiKey::AddOffsetsToTxn, 3, &offsets).await;
    assert_eq!(answer.error_code, 30);
    f.grant(&[binding("txer", O::Read, T::Group, "g-tx")]).await;
    let answer: AddOffsetsToTxnResponse =
        kafka.call(&txer, ApiKey::AddOffsetsToTxn, 3, &offsets).await;
    assert_eq!(answer.error_code, 0, "{answer:?}");

    let p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
        .with_committed_offset(1);
    let t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
        .with_name(topic(ORDERS_EU))
        .with_partitions(vec![p]);
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(id())
        .with_group_id(group("g-tx"))
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_topics(vec![t]);
    let code = |a: &TxnOffsetCommitResponse| a.topics[0].partitions[0].error_code;
    let answer: TxnOffsetCommitResponse =
        kafka.call(&txer, ApiKey::TxnOffsetCommit, 3, &commit).await;
    assert_eq!(code(&answer), 29, "READ on the topic too");
    f.grant(&[binding("txer", O::Read, T::Topic, ORDERS_EU)]).await;
    let answer: TxnOffsetCommitResponse =
        kafka.call(&txer, ApiKey::TxnOffsetCommit, 3, &commit).await;
    assert_eq!(code(&answer), 0, "{answer:?}");

    let end = EndTxnRequest::default()
        .with_transactional_id(id())
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_committed(true);
    let answer: EndTxnResponse = kafka.call(&user("intruder"), ApiKey::EndTxn, 3, &end).await;
    assert_eq!(answer.error_code, 53);
    let answer: EndTxnResponse = kafka.call(&txer, ApiKey::EndTxn, 3, &end).await;
    assert_eq!(answer.error_code, 0, "{answer:?}");
    seen.extend(
        [
            ApiKey::AddPartitionsToTxn,
            ApiKey::AddOffsetsToTxn,
            ApiKey::TxnOffsetCommit,
            ApiKey::EndTxn,
        ]
        .map(|k| k as i16),
    );
}
