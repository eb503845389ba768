//! Every native request kind against the ACLs, on an embedded broker with ACLs on: for each
//! row of the table, a principal without the rights gets exactly the documented refusal
//! (AUTHORIZATION_FAILED naming the principal, operation and resource; per partition inside
//! produce, fetch, list offsets, offset commit and metadata answers; left out of listings),
//! then the same principal, granted exactly the rights the row names, gets through.
//!
//! Also the decision matrix: for every resource type and every operation it has, a binding
//! allowing that operation allows it (and what Kafka says it implies) and nothing else; DENY
//! wins over ALLOW; a super user needs no binding.
#![allow(clippy::unwrap_used)]

mod acl_fixture;

use acl_fixture::*;
use eddy_broker::security::acl::{
    AclBinding, CLUSTER_NAME, Operation as O, PatternType, Permission, ResourceType as T,
};
use eddy_protocol::v1::{self, request, response};

/// What a principal without a row's rights gets.
enum Refused {
    /// Nothing: the request needs no right.
    Open,
    /// The whole request: AUTHORIZATION_FAILED, "<principal> <this>".
    Whole(&'static str),
    /// Inside the answer (a partition, a topic, a statement): an error "<principal> <this>".
    Inside(&'static str),
    /// Left out of the listing: this name.
    Hidden(&'static str),
}

struct Row {
    kind: &'static str,
    request: request::Body,
    /// Granted before the refused attempt (a row about its second check).
    given: Vec<(O, T, &'static str)>,
    /// The rights that let it through.
    needs: Vec<(O, T, &'static str)>,
    refused: Refused,
    /// With the rights, a refusal that is not about rights (nothing to roll back to).
    allowed_code: Option<v1::ErrorCode>,
}

fn row(
    kind: &'static str,
    request: request::Body,
    needs: Vec<(O, T, &'static str)>,
    refused: Refused,
) -> Row {
    Row { kind, request, given: vec![], needs, refused, allowed_code: None }
}

fn rows(f: &Fixture) -> Vec<Row> {
    use request::Body as Rq;
    let name = |n: &str| n.to_string();
    let new_spec = spec("p-new", 1, PROC_IN, "p-new-table", "p-new-out");
    let new_sink = file_sink("new-c", &f.dir.path().join("new-c.jsonl"));
    vec![
        row(
            "ApiVersions",
            Rq::ApiVersions(v1::ApiVersionsRequest {
                min_version: 1,
                max_version: 1,
                client_name: name("t"),
            }),
            vec![],
            Refused::Open,
        ),
        row(
            "Metadata (named)",
            Rq::Metadata(v1::MetadataRequest { topics: vec![name(ORDERS_EU)] }),
            vec![(O::Describe, T::Topic, ORDERS_EU)],
            Refused::Inside("may not DESCRIBE topic orders-eu"),
        ),
        row(
            "Metadata (all)",
            Rq::Metadata(v1::MetadataRequest { topics: vec![] }),
            vec![(O::Describe, T::Topic, ORDERS_EU)],
            Refused::Hidden(ORDERS_EU),
        ),
        row(
            "CreateTopic",
            Rq::CreateTopic(v1::CreateTopicRequest { name: name("made"), config: None }),
            vec![(O::Create, T::Topic, "made")],
            Refused::Whole("may not CREATE topic made"),
        ),
        row(
            "CreateTopic (cluster)",
            Rq::CreateTopic(v1::CreateTopicRequest { name: name("made-2"), config: None }),
            vec![(O::Create, T::Cluster, CLUSTER_NAME)],
            Refused::Whole("may not CREATE topic made-2"),
        ),
        row(
            "DeleteTopic",
            Rq::DeleteTopic(v1::DeleteTopicRequest { name: name("doomed") }),
            vec![(O::Delete, T::Topic, "doomed")],
            Refused::Whole("may not DELETE topic doomed"),
        ),
        row(
            "ListTopics",
            Rq::ListTopics(v1::ListTopicsRequest {}),
            vec![(O::Describe, T::Topic, PAYMENTS)],
            Refused::Hidden(PAYMENTS),
        ),
        row(
            "DescribeTopic",
            Rq::DescribeTopic(v1::DescribeTopicRequest { name: name(ORDERS_EU) }),
            vec![(O::Describe, T::Topic, ORDERS_EU)],
            Refused::Whole("may not DESCRIBE topic orders-eu"),
        ),
        row(
            "Produce",
            produce(ORDERS_EU, &["x"]),
            vec![(O::Write, T::Topic, ORDERS_EU)],
            Refused::Inside("may not WRITE topic orders-eu"),
        ),
        row(
            "Fetch",
            fetch(ORDERS_EU),
            vec![(O::Read, T::Topic, ORDERS_EU)],
            Refused::Inside("may not READ topic orders-eu"),
        ),
        row(
            "ListOffsets",
            Rq::ListOffsets(v1::ListOffsetsRequest {
                topics: vec![v1::ListOffsetsTopic {
                    topic: name(ORDERS_EU),
                    partitions: vec![v1::ListOffsetsPartition {
                        partition: 0,
                        spec: 0,
                        timestamp_ms: 0,
                    }],
                }],
                isolation: 0,
            }),
            vec![(O::Describe, T::Topic, ORDERS_EU)],
            Refused::Inside("may not DESCRIBE topic orders-eu"),
        ),
        row(
            "InitProducer",
            Rq::InitProducer(v1::InitProducerRequest {}),
            vec![(O::IdempotentWrite, T::Cluster, CLUSTER_NAME)],
            Refused::Whole("may not IDEMPOTENT_WRITE cluster kafka-cluster"),
        ),
        row(
            "GroupHeartbeat",
            Rq::GroupHeartbeat(v1::GroupHeartbeatRequest {
                group_id: name("g-hb"),
                subscribed_topics: vec![name(ORDERS_EU)],
                ..Default::default()
            }),
            vec![(O::Read, T::Group, "g-hb"), (O::Describe, T::Topic, ORDERS_EU)],
            Refused::Whole("may not READ group g-hb"),
        ),
        Row {
            given: vec![(O::Read, T::Group, "g-hb2")],
            ..row(
                "GroupHeartbeat (topic)",
                Rq::GroupHeartbeat(v1::GroupHeartbeatRequest {
                    group_id: name("g-hb2"),
                    subscribed_topics: vec![name(PAYMENTS)],
                    ..Default::default()
                }),
                vec![(O::Describe, T::Topic, PAYMENTS)],
                Refused::Whole("may not DESCRIBE topic payments"),
            )
        },
        row(
            "OffsetCommit",
            commit("g-commit", ORDERS_EU, 2),
            vec![(O::Read, T::Group, "g-commit"), (O::Read, T::Topic, ORDERS_EU)],
            Refused::Whole("may not READ group g-commit"),
        ),
        Row {
            given: vec![(O::Read, T::Group, "g-commit2")],
            ..row(
                "OffsetCommit (topic)",
                commit("g-commit2", ORDERS_EU, 2),
                vec![(O::Read, T::Topic, ORDERS_EU)],
                Refused::Inside("may not READ topic orders-eu"),
            )
        },
        row(
            "OffsetFetch",
            Rq::OffsetFetch(v1::OffsetFetchRequest { group_id: name(GROUP), partitions: vec![] }),
            vec![(O::Describe, T::Group, GROUP)],
            Refused::Whole("may not DESCRIBE group g"),
        ),
        Row {
            given: vec![(O::Describe, T::Group, GROUP)],
            ..row(
                "OffsetFetch (topics)",
                Rq::OffsetFetch(v1::OffsetFetchRequest {
                    group_id: name(GROUP),
                    partitions: vec![],
                }),
                vec![(O::Describe, T::Topic, ORDERS_EU)],
                Refused::Hidden(ORDERS_EU),
            )
        },
        row(
            "ListGroups",
            Rq::ListGroups(v1::ListGroupsRequest {}),
            vec![(O::Describe, T::Group, GROUP)],
            Refused::Hidden(GROUP),
        ),
        row(
            "DescribeGroup",
            Rq::DescribeGroup(v1::DescribeGroupRequest { group_id: name(GROUP) }),
            vec![(O::Describe, T::Group, GROUP)],
            Refused::Whole("may not DESCRIBE group g"),
        ),
        Row {
            given: vec![(O::Describe, T::Group, GROUP)],
            ..row(
                "DescribeGroup (offsets)",
                Rq::DescribeGroup(v1::DescribeGroupRequest { group_id: name(GROUP) }),
                vec![(O::Describe, T::Topic, ORDERS_EU)],
                Refused::Hidden(ORDERS_EU),
            )
        },
        row(
            "ResetGroupOffsets",
            Rq::ResetGroupOffsets(v1::ResetGroupOffsetsRequest {
                group_id: name(GROUP),
                topic: name(ORDERS_EU),
                to: Some(v1::reset_group_offsets_request::To::Earliest(true)),
            }),
            vec![(O::Read, T::Group, GROUP), (O::Read, T::Topic, ORDERS_EU)],
            Refused::Whole("may not READ group g"),
        ),
        row(
            "DeleteGroup",
            Rq::DeleteGroup(v1::DeleteGroupRequest { group_id: name("g-delete") }),
            vec![(O::Delete, T::Group, "g-delete")],
            Refused::Whole("may not DELETE group g-delete"),
        ),
        row(
            "DeployProcessor",
            Rq::DeployProcessor(v1::DeployProcessorRequest { spec: new_spec.clone() }),
            vec![
                (O::Create, T::Processor, "p-new"),
                (O::Read, T::Topic, PROC_IN),
                (O::Write, T::Topic, "p-new-out"),
                (O::Create, T::Topic, "p-new-out"),
            ],
            Refused::Whole("may not CREATE processor p-new"),
        ),
        Row {
            given: vec![(O::Create, T::Processor, "p-new2")],
            ..row(
                "DeployProcessor (input)",
                Rq::DeployProcessor(v1::DeployProcessorRequest {
                    spec: spec("p-new2", 1, PROC_IN, "t2", "p-new2-out"),
                }),
                vec![
                    (O::Read, T::Topic, PROC_IN),
                    (O::Write, T::Topic, "p-new2-out"),
                    (O::Create, T::Topic, "p-new2-out"),
                ],
                Refused::Whole("may not READ topic proc-in"),
            )
        },
        row(
            "ListProcessors",
            Rq::ListProcessors(v1::ListProcessorsRequest {}),
            vec![(O::Describe, T::Processor, VIEWS)],
            Refused::Hidden(VIEWS),
        ),
        row(
            "ProcessorStatus",
            Rq::ProcessorStatus(v1::ProcessorStatusRequest { name: name(VIEWS) }),
            vec![(O::Describe, T::Processor, VIEWS)],
            Refused::Whole("may not DESCRIBE processor views"),
        ),
        Row {
            allowed_code: Some(v1::ErrorCode::NoRetiredVersion),
            ..row(
                "RollbackProcessor",
                Rq::RollbackProcessor(v1::RollbackProcessorRequest { name: name(VIEWS) }),
                vec![(O::Alter, T::Processor, VIEWS)],
                Refused::Whole("may not ALTER processor views"),
            )
        },
        row(
            "ReplayProcessor",
            Rq::ReplayProcessor(v1::ReplayProcessorRequest { name: name("doomed-proc") }),
            vec![(O::Alter, T::Processor, "doomed-proc")],
            Refused::Whole("may not ALTER processor doomed-proc"),
        ),
        row(
            "QueryTable",
            query(VIEWS_TABLE, "\"a\""),
            vec![(O::Read, T::Processor, VIEWS)],
            Refused::Whole("may not READ processor views"),
        ),
        row(
            "QueryTable (processor/table)",
            query("views/views-table", "\"a\""),
            vec![(O::Read, T::Processor, VIEWS)],
            Refused::Whole("may not READ processor views"),
        ),
        row(
            "Sql (per statement)",
            sql("INSERT INTO orders VALUES ('k', 'v');"),
            vec![(O::Write, T::Topic, ORDERS_EU)],
            Refused::Inside("may not WRITE topic orders-eu"),
        ),
        row(
            "CreateConnector",
            new_sink,
            vec![(O::Create, T::Connector, "new-c"), (O::Read, T::Topic, ORDERS_EU)],
            Refused::Whole("may not CREATE connector new-c"),
        ),
        row(
            "ListConnectors",
            Rq::ListConnectors(v1::ListConnectorsRequest {}),
            vec![(O::Describe, T::Connector, SINK)],
            Refused::Hidden(SINK),
        ),
        row(
            "ConnectorStatus",
            Rq::ConnectorStatus(v1::ConnectorStatusRequest { name: name(SINK) }),
            vec![(O::Describe, T::Connector, SINK)],
            Refused::Whole("may not DESCRIBE connector sink-c"),
        ),
        row(
            "PauseConnector",
            Rq::PauseConnector(v1::PauseConnectorRequest { name: name(SINK), paused: true }),
            vec![(O::Alter, T::Connector, SINK)],
            Refused::Whole("may not ALTER connector sink-c"),
        ),
        row(
            "DropConnector",
            Rq::DropConnector(v1::DropConnectorRequest { name: name("doomed-c") }),
            vec![(O::Delete, T::Connector, "doomed-c")],
            Refused::Whole("may not DELETE connector doomed-c"),
        ),
        row(
            "DropProcessor",
            Rq::DropProcessor(v1::DropProcessorRequest { name: name("doomed-proc") }),
            vec![(O::Delete, T::Processor, "doomed-proc")],
            Refused::Whole("may not DELETE processor doomed-proc"),
        ),
        row(
            "CreateAcls",
            Rq::CreateAcls(v1::CreateAclsRequest {
                bindings: vec![binding("someone", O::Read, T::Topic, "x").to_wire()],
            }),
            vec![(O::Alter, T::Cluster, CLUSTER_NAME)],
            Refused::Whole("may not ALTER cluster kafka-cluster"),
        ),
        row(
            "ListAcls",
            Rq::ListAcls(v1::ListAclsRequest { filter: None }),
            vec![(O::Describe, T::Cluster, CLUSTER_NAME)],
            Refused::Whole("may not DESCRIBE cluster kafka-cluster"),
        ),
        row(
            "DeleteAcls",
            Rq::DeleteAcls(v1::DeleteAclsRequest {
                filter: Some(v1::AclFilter {
                    principal: Some(name("User:someone")),
                    ..Default::default()
                }),
            }),
            vec![(O::Alter, T::Cluster, CLUSTER_NAME)],
            Refused::Whole("may not ALTER cluster kafka-cluster"),
        ),
        // Users, in this order: created, its password changed, listed, deleted.
        row(
            "CreateUser",
            Rq::CreateUser(v1::CreateUserRequest {
                name: name("dave"),
                password: name("dave's password"),
                mechanisms: vec![],
                iterations: 0,
            }),
            vec![(O::Alter, T::Cluster, CLUSTER_NAME)],
            Refused::Whole("may not ALTER cluster kafka-cluster"),
        ),
        row(
            "AlterUser",
            Rq::AlterUser(v1::AlterUserRequest {
                name: name("dave"),
                password: name("dave's new password"),
            }),
            vec![(O::Alter, T::Cluster, CLUSTER_NAME)],
            Refused::Whole("may not ALTER cluster kafka-cluster"),
        ),
        row(
            "ListUsers",
            Rq::ListUsers(v1::ListUsersRequest {}),
            vec![(O::Describe, T::Cluster, CLUSTER_NAME)],
            Refused::Whole("may not DESCRIBE cluster kafka-cluster"),
        ),
        row(
            "DeleteUser",
            Rq::DeleteUser(v1::DeleteUserRequest { name: name("dave") }),
            vec![(O::Alter, T::Cluster, CLUSTER_NAME)],
            Refused::Whole("may not ALTER cluster kafka-cluster"),
        ),
    ]
}

fn grants(who: &str, rights: &[(O, T, &str)]) -> Vec<AclBinding> {
    rights.iter().map(|(op, kind, name)| binding(who, *op, *kind, name)).collect()
}

/// Checks one refused attempt of `row` by `who`.
fn check_refused(
    row: &Row,
    who: &str,
    outcome: &Result<Option<response::Body>, eddy_broker::BrokerError>,
) {
    let kind = row.kind;
    match &row.refused {
        Refused::Open => assert!(outcome.is_ok(), "{kind}: {outcome:?}"),
        Refused::Whole(what) => {
            let e = outcome
                .as_ref()
                .err()
                .unwrap_or_else(|| panic!("{kind}: not refused: {outcome:?}"));
            assert_eq!(e.code(), v1::ErrorCode::AuthorizationFailed, "{kind}: {e}");
            assert_eq!(e.to_string(), format!("User:{who} {what}"), "{kind}");
        }
        Refused::Inside(what) => {
            let answer =
                outcome.as_ref().unwrap_or_else(|e| panic!("{kind}: {e}")).clone().unwrap();
            let errors = errors_inside(&answer);
            assert!(!errors.is_empty(), "{kind}: no refusal inside {answer:?}");
            for e in errors {
                assert!(e.message.contains(&format!("User:{who} {what}")), "{kind}: {e:?}");
                if !matches!(answer, response::Body::Sql(_)) {
                    assert_eq!(e.error_code(), v1::ErrorCode::AuthorizationFailed, "{kind}: {e:?}");
                }
            }
        }
        Refused::Hidden(hidden) => {
            let answer =
                outcome.as_ref().unwrap_or_else(|e| panic!("{kind}: {e}")).clone().unwrap();
            assert!(
                !listed(&answer).iter().any(|n| n == hidden),
                "{kind}: {hidden} listed: {answer:?}"
            );
        }
    }
}

fn check_allowed(row: &Row, outcome: &Result<Option<response::Body>, eddy_broker::BrokerError>) {
    let kind = row.kind;
    match (outcome, row.allowed_code) {
        (Err(e), Some(code)) => assert_eq!(e.code(), code, "{kind}: {e}"),
        (Err(e), None) => panic!("{kind}: refused with the rights: {e}"),
        (Ok(answer), _) => {
            let answer = answer.clone().unwrap();
            assert!(errors_inside(&answer).is_empty(), "{kind}: {answer:?}");
            if let Refused::Hidden(name) = row.refused
                && !name.is_empty()
            {
                assert!(
                    listed(&answer).iter().any(|n| n == name),
                    "{kind}: {name} not listed: {answer:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_kind_is_refused_without_its_right_and_served_with_it() {
    let f = Fixture::new().await;
    let rows = rows(&f);
    // Every kind has a row: a new request kind fails this test until it has one.
    let covered: std::collections::BTreeSet<usize> =
        rows.iter().map(|r| eddy_broker::metrics::native_api(&r.request)).collect();
    // SASL's requests are answered by the listener before any right applies (authenticating
    // needs none); tests/tests/security_sasl.rs covers them.
    let listener_only = ["sasl_handshake", "sasl_authenticate"];
    let missing: Vec<&str> = (0..eddy_broker::metrics::NATIVE_APIS.len())
        .filter(|i| !covered.contains(i))
        .map(|i| eddy_broker::metrics::NATIVE_APIS[i])
        .filter(|n| !listener_only.contains(n))
        .collect();
    assert!(missing.is_empty(), "request kinds without a row: {missing:?}");
    for (i, row) in rows.iter().enumerate() {
        let who = format!("case-{i}");
        f.grant(&grants(&who, &row.given)).await;
        let refused = f.call(&user(&who), row.request.clone()).await;
        check_refused(row, &who, &refused);
        f.grant(&grants(&who, &row.needs)).await;
        let allowed = f.call(&user(&who), row.request.clone()).await;
        check_allowed(row, &allowed);
        println!("{:<30} refused without {:?}, served with them", row.kind, row.needs);
    }
    // The owner of what a principal created is that principal.
    let status = f
        .internal(request::Body::ProcessorStatus(v1::ProcessorStatusRequest {
            name: "p-new".into(),
        }))
        .await;
    let response::Body::ProcessorStatus(s) = status else { panic!("{status:?}") };
    assert!(s.processor.unwrap().owner.starts_with("User:case-"));
    let status = f
        .internal(request::Body::ConnectorStatus(v1::ConnectorStatusRequest {
            name: "new-c".into(),
        }))
        .await;
    let response::Body::ConnectorStatus(c) = status else { panic!("{status:?}") };
    assert!(c.connector.unwrap().owner.starts_with("User:case-"));
    f.broker.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_of_every_resource_type_allows_itself_and_what_it_implies() {
    let f = Fixture::new().await;
    let acls = f.broker.acls().clone();
    for kind in T::EVERY {
        let name = if kind == T::Cluster { CLUSTER_NAME } else { "r" };
        for &granted in kind.operations() {
            let who = format!("m-{}-{}", kind.name(), granted.name());
            acls.create(&[binding(&who, granted, kind, name)]).unwrap();
            for &asked in kind.operations() {
                let implied = asked == granted
                    || (asked == O::Describe
                        && matches!(granted, O::Read | O::Write | O::Delete | O::Alter))
                    || (asked == O::DescribeConfigs && granted == O::AlterConfigs);
                let got = acls.authorize(&user(&who), None, asked, kind, name);
                assert_eq!(got.is_ok(), implied, "{who} asking {}: {got:?}", asked.name());
                if let Err(d) = got {
                    assert_eq!(
                        d.to_string(),
                        format!("User:{who} may not {} {} {name}", asked.name(), kind.name())
                    );
                }
                // Another resource of the type is not covered by a literal binding.
                if kind != T::Cluster {
                    assert!(acls.authorize(&user(&who), None, asked, kind, "other").is_err());
                }
            }
        }
        // ALL allows every operation; a DENY of one takes it away again.
        let who = format!("all-{}", kind.name());
        acls.create(&[binding(&who, O::All, kind, name)]).unwrap();
        for &op in kind.operations() {
            assert!(acls.authorize(&user(&who), None, op, kind, name).is_ok());
        }
        let op = kind.operations()[0];
        acls.create(&[AclBinding {
            permission: Permission::Deny,
            ..binding(&who, op, kind, name)
        }])
        .unwrap();
        assert!(acls.authorize(&user(&who), None, op, kind, name).is_err(), "DENY wins");
        assert!(acls.authorize(&user(&who), None, kind.operations()[1], kind, name).is_ok());
    }
    // Prefixed and wildcard names; User:*; super users; the broker itself.
    acls.create(&[AclBinding {
        pattern: PatternType::Prefixed,
        ..binding("p", O::Read, T::Topic, "orders-")
    }])
    .unwrap();
    assert!(acls.authorize(&user("p"), None, O::Read, T::Topic, "orders-eu").is_ok());
    assert!(acls.authorize(&user("p"), None, O::Read, T::Topic, "order").is_err());
    acls.create(&[AclBinding {
        principal: "User:*".into(),
        ..binding("_", O::Describe, T::Group, "*")
    }])
    .unwrap();
    assert!(acls.authorize(&user("anyone"), None, O::Describe, T::Group, "any-group").is_ok());
    assert!(
        acls.authorize(
            &eddy_broker::security::Principal::Anonymous,
            None,
            O::Describe,
            T::Group,
            "x"
        )
        .is_ok()
    );
    assert!(acls.authorize(&user("anyone"), None, O::Read, T::Group, "any-group").is_err());
    for op in O::EVERY {
        assert!(acls.authorize(&user("admin"), None, op, T::Topic, "anything").is_ok());
        assert!(
            acls.authorize(
                &eddy_broker::security::Principal::Internal,
                None,
                op,
                T::Cluster,
                CLUSTER_NAME
            )
            .is_ok()
        );
    }
    f.broker.close().unwrap();
}
