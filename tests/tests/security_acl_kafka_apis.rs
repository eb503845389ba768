//! The Kafka listener's "authorized operations" fields answer the principal's real rights, and
//! Kafka's ACL APIs (DescribeAcls, CreateAcls, DeleteAcls) manage the same bindings as
//! `eddy acl` — Kafka's resource types only: eddy's PROCESSOR and CONNECTOR bindings are
//! neither shown to nor removed by Kafka clients. In process, through
//! `eddy_broker::kafka::KafkaHandler`, on an embedded broker with ACLs on.
#![allow(clippy::unwrap_used)]

mod acl_fixture;

use acl_fixture::kafka::*;
use acl_fixture::*;
use eddy_broker::security::acl::{Operation as O, ResourceType as T};
use eddy_protocol::v1::{self, request, response};
use eddy_tests::kafka_wire::text;
use kafka_protocol::messages::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_operations_are_the_principals_and_kafka_acl_apis_share_eddys_bindings() {
    let f = Fixture::new().await;
    let kafka = Kafka::new(&f);
    let ops = user("ops");
    f.grant(&[
        binding("ops", O::Read, T::Topic, ORDERS_EU),
        binding("ops", O::Describe, T::Group, GROUP),
    ])
    .await;
    let t = metadata_request::MetadataRequestTopic::default().with_name(Some(topic(ORDERS_EU)));
    let asked = MetadataRequest::default()
        .with_topics(Some(vec![t]))
        .with_include_topic_authorized_operations(true);
    let answer: MetadataResponse = kafka.call(&ops, ApiKey::Metadata, 12, &asked).await;
    assert_eq!(
        answer.topics[0].topic_authorized_operations,
        (1 << 3) | (1 << 8),
        "READ and the DESCRIBE it implies"
    );
    let cluster =
        DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    let answer: DescribeClusterResponse =
        kafka.call(&ops, ApiKey::DescribeCluster, 1, &cluster).await;
    assert_eq!(answer.cluster_authorized_operations, 0);
    let answer: DescribeClusterResponse =
        kafka.call(&user("admin"), ApiKey::DescribeCluster, 1, &cluster).await;
    let every: i32 = T::Cluster.operations().iter().map(|o| 1 << o.code()).sum();
    assert_eq!(answer.cluster_authorized_operations, every);
    let groups = DescribeGroupsRequest::default()
        .with_groups(vec![group(GROUP)])
        .with_include_authorized_operations(true);
    let answer: DescribeGroupsResponse = kafka.call(&ops, ApiKey::DescribeGroups, 5, &groups).await;
    assert_eq!(answer.groups[0].authorized_operations, 1 << 8);

    // Kafka's ACL APIs and eddy's list the same bindings (Kafka's types only over Kafka).
    let admin = user("admin");
    let created: CreateAclsResponse =
        kafka.call(&admin, ApiKey::CreateAcls, 3, &acl_creation()).await;
    assert_eq!(created.results[0].error_code, 0, "{created:?}");
    f.grant(&[binding("someone", O::Read, T::Processor, VIEWS)]).await;
    let listed =
        f.call(&admin, request::Body::ListAcls(v1::ListAclsRequest { filter: None })).await;
    let response::Body::ListAcls(l) = listed.unwrap().unwrap() else { panic!() };
    assert!(
        l.bindings.iter().any(|b| b.principal == "User:someone" && b.resource_name == "x"),
        "{l:?}"
    );
    let any = DescribeAclsRequest::default()
        .with_resource_type_filter(1)
        .with_resource_name_filter(None)
        .with_host_filter(None)
        .with_pattern_type_filter(1)
        .with_principal_filter(Some(text("User:someone")))
        .with_operation(1)
        .with_permission_type(1);
    let described: DescribeAclsResponse = kafka.call(&admin, ApiKey::DescribeAcls, 3, &any).await;
    assert_eq!(described.resources.len(), 1, "the processor binding is eddy's own: {described:?}");
    assert_eq!(described.resources[0].resource_name.as_str(), "x");
    let filter = delete_acls_request::DeleteAclsFilter::default()
        .with_resource_type_filter(1)
        .with_resource_name_filter(None)
        .with_host_filter(None)
        .with_pattern_type_filter(1)
        .with_principal_filter(Some(text("User:someone")))
        .with_operation(1)
        .with_permission_type(1);
    let deleted: DeleteAclsResponse = kafka
        .call(
            &admin,
            ApiKey::DeleteAcls,
            3,
            &DeleteAclsRequest::default().with_filters(vec![filter]),
        )
        .await;
    assert_eq!(deleted.filter_results[0].matching_acls.len(), 1, "{deleted:?}");
    let left = f.broker.acls().list(&eddy_broker::security::acl::AclFilter {
        principal: Some("User:someone".into()),
        ..Default::default()
    });
    assert_eq!(left.len(), 1, "the processor binding stays: {left:?}");
    assert_eq!(left[0].resource_type, T::Processor);
    // An invalid binding is refused by itself.
    let mut bad = acl_creation();
    bad.creations[0].operation = 12;
    let created: CreateAclsResponse = kafka.call(&admin, ApiKey::CreateAcls, 3, &bad).await;
    assert_eq!(created.results[0].error_code, 42, "INVALID_REQUEST: {created:?}");
    assert!(
        created.results[0]
            .error_message
            .as_ref()
            .unwrap()
            .contains("topic has no operation IDEMPOTENT_WRITE")
    );
    f.broker.close().unwrap();
}
