//! The ACL scenario and the rules around it, on an embedded broker with ACLs on:
//!
//! - bob, with READ on the `orders-` prefix, reads `orders-eu` but cannot write it, cannot read
//!   `payments`, cannot delete topics, cannot deploy a processor or query its tables; with the
//!   rights he can, and what he deploys is his (its owner) and runs with his rights;
//! - every SQL statement needs what docs/security.md says (table in `broker/src/sql/access.rs`);
//! - DENY wins over ALLOW, `User:*` applies to everyone (the anonymous principal included),
//!   host bindings apply to their address only, super users need no binding;
//! - ACLs and owners survive a restart; a right removed later stops a running processor at its
//!   next read and keeps it from starting again, and fails a running connector.
#![allow(clippy::unwrap_used)]

mod acl_fixture;

use std::time::{Duration, Instant};

use acl_fixture::*;
use eddy_broker::security::Principal;
use eddy_broker::security::acl::{
    AclBinding, CLUSTER_NAME, Operation as O, PatternType, Permission, ResourceType as T,
};
use eddy_protocol::v1::{self, request, response};

fn refusal(outcome: Result<Option<response::Body>, eddy_broker::BrokerError>) -> String {
    match outcome {
        Err(e) => {
            assert_eq!(e.code(), v1::ErrorCode::AuthorizationFailed, "{e}");
            e.to_string()
        }
        Ok(Some(answer)) => {
            let errors = errors_inside(&answer);
            assert_eq!(errors.len(), 1, "{answer:?}");
            errors[0].message.clone()
        }
        Ok(None) => panic!("no answer"),
    }
}

fn prefixed(principal: &str, op: O, kind: T, prefix: &str) -> AclBinding {
    AclBinding { pattern: PatternType::Prefixed, ..binding(principal, op, kind, prefix) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_reads_orders_by_prefix_and_nothing_more_until_granted() {
    let f = Fixture::new().await;
    let bob = user("bob");
    f.grant(&[prefixed("bob", O::Read, T::Topic, "orders-")]).await;

    let read = f.call(&bob, fetch(ORDERS_EU)).await.unwrap().unwrap();
    assert!(errors_inside(&read).is_empty(), "{read:?}");
    let response::Body::Fetch(fetched) = read else { panic!() };
    assert!(!fetched.topics[0].partitions[0].records.is_empty(), "bob reads orders-eu's records");

    let write = f.call(&bob, produce(ORDERS_EU, &["x"])).await;
    assert_eq!(refusal(write), "User:bob may not WRITE topic orders-eu");
    let other = f.call(&bob, fetch(PAYMENTS)).await;
    assert_eq!(refusal(other), "User:bob may not READ topic payments");
    let delete = request::Body::DeleteTopic(v1::DeleteTopicRequest { name: ORDERS_EU.into() });
    assert_eq!(refusal(f.call(&bob, delete).await), "User:bob may not DELETE topic orders-eu");
    let deploy = || {
        let spec = spec("bob-counts", 1, ORDERS_EU, "bob-table", "bob-out");
        request::Body::DeployProcessor(v1::DeployProcessorRequest { spec })
    };
    assert_eq!(
        refusal(f.call(&bob, deploy()).await),
        "User:bob may not CREATE processor bob-counts"
    );
    let ask = || query(VIEWS_TABLE, "\"a\"");
    assert_eq!(refusal(f.call(&bob, ask()).await), "User:bob may not READ processor views");
    let sql_pull = sql("DESCRIBE orders;");
    assert!(
        refusal(f.call(&bob, sql_pull).await)
            .starts_with("User:bob may not DESCRIBE processor ORDERS")
    );

    // With the rights: the processor is his, and so is what it may touch.
    f.grant(&[binding("bob", O::Create, T::Processor, "bob-counts")]).await;
    assert_eq!(refusal(f.call(&bob, deploy()).await), "User:bob may not WRITE topic bob-out");
    f.grant(&[
        binding("bob", O::Write, T::Topic, "bob-out"),
        binding("bob", O::Create, T::Topic, "bob-out"),
    ])
    .await;
    let deployed = f.call(&bob, deploy()).await.unwrap().unwrap();
    let response::Body::DeployProcessor(d) = deployed else { panic!("{deployed:?}") };
    assert_eq!(d.processor.unwrap().owner, "User:bob");
    f.grant(&[binding("bob", O::Read, T::Processor, VIEWS)]).await;
    let asked = f.call(&bob, ask()).await.unwrap().unwrap();
    let response::Body::QueryTable(q) = asked else { panic!("{asked:?}") };
    assert_eq!(q.rows.len(), 1);
    // Still no delete, and still nothing of payments.
    let delete = request::Body::DeleteTopic(v1::DeleteTopicRequest { name: ORDERS_EU.into() });
    assert_eq!(refusal(f.call(&bob, delete).await), "User:bob may not DELETE topic orders-eu");
    f.broker.close().unwrap();
}

/// (operation, resource type, resource name) granted together.
type Rights = Vec<(O, T, &'static str)>;

/// Runs `text` as `who`; the last result's error message, if any.
async fn statement(f: &Fixture, who: &str, text: &str) -> Option<String> {
    let answer = f.call(&user(who), sql(text)).await.unwrap().unwrap();
    errors_inside(&answer).pop().map(|e| e.message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sql_statement_needs_its_rights() {
    let f = Fixture::new().await;
    let sink_path = f.dir.path().join("sql-c.jsonl");
    let create_sink = format!(
        "CREATE SINK CONNECTOR sqlc WITH ('connector.class' = 'FileStreamSinkConnector', 'file' = '{}', 'topics' = 'orders-eu');",
        sink_path.display()
    );
    // (statement, rights it needs, the refusal without them), in an order that builds on itself.
    let rows: Vec<(&str, Rights, &str)> = vec![
        (
            "CREATE STREAM clicks (id VARCHAR KEY, page VARCHAR) WITH (kafka_topic='orders-eu');",
            vec![(O::Create, T::Processor, "CLICKS"), (O::Read, T::Topic, ORDERS_EU)],
            "may not CREATE processor CLICKS",
        ),
        (
            "CREATE TABLE counts AS SELECT item, COUNT(*) AS n FROM orders GROUP BY item EMIT CHANGES;",
            vec![
                (O::Create, T::Processor, "COUNTS"),
                (O::Read, T::Topic, ORDERS_EU),
                (O::Write, T::Topic, "COUNTS"),
                (O::Create, T::Topic, "COUNTS"),
            ],
            "may not CREATE processor COUNTS",
        ),
        (
            "SELECT * FROM counts WHERE item = 'a';",
            vec![(O::Read, T::Processor, "COUNTS")],
            "may not READ processor COUNTS",
        ),
        (
            "INSERT INTO orders VALUES ('k', 'v');",
            vec![(O::Write, T::Topic, ORDERS_EU)],
            "may not WRITE topic orders-eu",
        ),
        (
            "DESCRIBE orders;",
            vec![(O::Describe, T::Processor, "ORDERS")],
            "may not DESCRIBE processor ORDERS",
        ),
        (
            "TERMINATE CTAS_COUNTS;",
            vec![(O::Delete, T::Processor, "COUNTS")],
            "may not DELETE processor COUNTS",
        ),
        (
            "DROP STREAM clicks;",
            vec![(O::Delete, T::Processor, "CLICKS")],
            "may not DELETE processor CLICKS",
        ),
        (
            create_sink.as_str(),
            vec![(O::Create, T::Connector, "SQLC"), (O::Read, T::Topic, ORDERS_EU)],
            "may not CREATE connector SQLC",
        ),
        (
            "DESCRIBE CONNECTOR sqlc;",
            vec![(O::Describe, T::Connector, "SQLC")],
            "may not DESCRIBE connector SQLC",
        ),
        (
            "DROP CONNECTOR sqlc;",
            vec![(O::Delete, T::Connector, "SQLC")],
            "may not DELETE connector SQLC",
        ),
    ];
    for (i, (text, needs, refused)) in rows.iter().enumerate() {
        let who = format!("sql-{i}");
        let error = statement(&f, &who, text).await;
        let error = error.unwrap_or_else(|| panic!("{text}: ran without rights"));
        assert!(error.starts_with(&format!("User:{who} {refused}")), "{text}: {error}");
        let bindings: Vec<AclBinding> =
            needs.iter().map(|(o, k, n)| binding(&who, *o, *k, n)).collect();
        f.grant(&bindings).await;
        assert_eq!(statement(&f, &who, text).await, None, "{text}: refused with the rights");
        println!("{text:<70} needs {needs:?}");
    }
    // Listings show what may be described; push queries need READ too.
    let shown = f.call(&user("lister"), sql("SHOW STREAMS;")).await.unwrap().unwrap();
    let response::Body::Sql(s) = &shown else { panic!() };
    let Some(v1::sql_result::Result::Rows(rows)) = &s.results[0].result else { panic!("{s:?}") };
    assert!(rows.rows.is_empty(), "{rows:?}");
    f.grant(&[binding("lister", O::Describe, T::Processor, ORDERS_STREAM)]).await;
    let shown = f.call(&user("lister"), sql("SHOW STREAMS;")).await.unwrap().unwrap();
    let response::Body::Sql(s) = &shown else { panic!() };
    let Some(v1::sql_result::Result::Rows(rows)) = &s.results[0].result else { panic!("{s:?}") };
    assert_eq!(rows.rows.len(), 1, "{rows:?}");
    let push = sql("SELECT * FROM orders EMIT CHANGES;");
    let answer = f.call(&user("pusher"), push.clone()).await.unwrap().unwrap();
    let message = errors_inside(&answer).pop().unwrap().message;
    assert_eq!(message, "User:pusher may not READ processor ORDERS");
    f.grant(&[
        binding("pusher", O::Read, T::Processor, ORDERS_STREAM),
        binding("pusher", O::Read, T::Topic, ORDERS_EU),
    ])
    .await;
    let answer = f.call(&user("pusher"), push).await.unwrap().unwrap();
    assert!(errors_inside(&answer).is_empty(), "{answer:?}");
    f.broker.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_wins_wildcards_hosts_and_super_users() {
    let f = Fixture::new().await;
    let bob = user("bob");
    f.grant(&[
        binding("bob", O::All, T::Topic, "*"),
        AclBinding {
            permission: Permission::Deny,
            ..binding("bob", O::Write, T::Topic, ORDERS_EU)
        },
    ])
    .await;
    assert_eq!(
        refusal(f.call(&bob, produce(ORDERS_EU, &["x"])).await),
        "User:bob may not WRITE topic orders-eu"
    );
    let wrote = f.call(&bob, produce(PAYMENTS, &["x"])).await.unwrap().unwrap();
    assert!(errors_inside(&wrote).is_empty(), "{wrote:?}");
    let read = f.call(&bob, fetch(ORDERS_EU)).await.unwrap().unwrap();
    assert!(errors_inside(&read).is_empty(), "a DENY of WRITE leaves READ: {read:?}");

    // User:* is every principal, the anonymous one included; without it, nothing.
    let anonymous = Principal::Anonymous;
    assert_eq!(
        refusal(f.call(&anonymous, fetch(PAYMENTS)).await),
        "User:ANONYMOUS may not READ topic payments"
    );
    f.grant(&[AclBinding {
        principal: "User:*".into(),
        ..binding("_", O::Read, T::Topic, PAYMENTS)
    }])
    .await;
    let read = f.call(&anonymous, fetch(PAYMENTS)).await.unwrap().unwrap();
    assert!(errors_inside(&read).is_empty(), "{read:?}");

    // A host binding applies to connections from that address only.
    f.grant(&[AclBinding {
        host: "10.1.2.3".into(),
        ..binding("carol", O::Read, T::Topic, ORDERS_EU)
    }])
    .await;
    let carol = user("carol");
    let from = |ip: Option<&str>| {
        let ip = ip.map(|i| i.parse().unwrap());
        f.broker.handle_from(&carol, ip, fetch(ORDERS_EU), Default::default())
    };
    assert!(errors_inside(&from(Some("10.1.2.3")).await.unwrap().unwrap()).is_empty());
    assert_eq!(refusal(from(Some("10.1.2.4")).await), "User:carol may not READ topic orders-eu");
    assert_eq!(refusal(from(None).await), "User:carol may not READ topic orders-eu");

    // The super user needs no binding.
    let admin = user("admin");
    let delete = request::Body::DeleteTopic(v1::DeleteTopicRequest { name: "doomed".into() });
    assert!(f.call(&admin, delete).await.is_ok());
    let listed =
        f.call(&admin, request::Body::ListAcls(v1::ListAclsRequest { filter: None })).await;
    let response::Body::ListAcls(l) = listed.unwrap().unwrap() else { panic!() };
    assert_eq!(l.bindings.len(), 4, "{l:?}");
    // Removing works by filter and answers what it removed.
    let filter = v1::AclFilter { principal: Some("User:bob".into()), ..Default::default() };
    let removed = f
        .call(&admin, request::Body::DeleteAcls(v1::DeleteAclsRequest { filter: Some(filter) }))
        .await;
    let response::Body::DeleteAcls(d) = removed.unwrap().unwrap() else { panic!() };
    assert_eq!(d.deleted.len(), 2);
    assert_eq!(
        refusal(f.call(&bob, fetch(ORDERS_EU)).await),
        "User:bob may not READ topic orders-eu"
    );
    f.broker.close().unwrap();
}

/// Waits (up to 30 s) until `status` of the processor or connector says `what`.
async fn wait_status(f: &Fixture, body: impl Fn() -> request::Body, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = format!("{:?}", f.internal(body()).await);
        if text.contains(what) {
            return text;
        }
        assert!(Instant::now() < deadline, "never {what}: {text}");
        // A status costs little; what is awaited is a thread noticing, with no event to wait on.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_and_owners_survive_a_restart_and_rights_removed_later_stop_what_ran_with_them() {
    let f = Fixture::new().await;
    let (bob, carol) = (user("bob"), user("carol"));
    f.grant(&[
        binding("bob", O::Create, T::Processor, "bob-counts"),
        binding("bob", O::Read, T::Topic, PROC_IN),
        binding("bob", O::Write, T::Topic, "bob-out"),
        binding("bob", O::Create, T::Topic, "bob-out"),
        binding("carol", O::Create, T::Connector, "carol-c"),
        binding("carol", O::Read, T::Topic, ORDERS_EU),
    ])
    .await;
    let spec = spec("bob-counts", 1, PROC_IN, "bob-table", "bob-out");
    f.call(&bob, request::Body::DeployProcessor(v1::DeployProcessorRequest { spec }))
        .await
        .unwrap();
    let sink = file_sink("carol-c", &f.dir.path().join("carol.jsonl"));
    f.call(&carol, sink).await.unwrap();
    f.broker.close().unwrap();
    let Fixture { dir, broker } = f;
    drop(broker);

    let f = Fixture::reopen(dir);
    let status =
        || request::Body::ProcessorStatus(v1::ProcessorStatusRequest { name: "bob-counts".into() });
    let text = wait_status(&f, status, "state: \"running\"").await;
    assert!(text.contains("owner: \"User:bob\""), "{text}");
    let connector =
        || request::Body::ConnectorStatus(v1::ConnectorStatusRequest { name: "carol-c".into() });
    let text = wait_status(&f, connector, "RUNNING").await;
    assert!(text.contains("owner: \"User:carol\""), "{text}");
    // The bindings came back: bob may still read proc-in, not payments.
    assert!(errors_inside(&f.call(&bob, fetch(PROC_IN)).await.unwrap().unwrap()).is_empty());
    assert_eq!(
        refusal(f.call(&bob, fetch(PAYMENTS)).await),
        "User:bob may not READ topic payments"
    );

    // Rights removed: the running processor fails at its next read, naming the refusal ...
    let revoke = |who: &str, topic: &str| {
        let filter = v1::AclFilter {
            principal: Some(format!("User:{who}")),
            resource_name: Some(topic.into()),
            operation: O::Read.code().into(),
            ..Default::default()
        };
        request::Body::DeleteAcls(v1::DeleteAclsRequest { filter: Some(filter) })
    };
    f.call(&user("admin"), revoke("bob", PROC_IN)).await.unwrap();
    f.internal(produce(PROC_IN, &["c"])).await;
    wait_status(&f, status, "User:bob may not READ topic proc-in").await;
    // ... the connector too ...
    f.call(&user("admin"), revoke("carol", ORDERS_EU)).await.unwrap();
    f.internal(produce(ORDERS_EU, &["d"])).await;
    // (its next look at the topic: the end offset it reads first needs DESCRIBE, READ's)
    wait_status(&f, connector, "User:carol may not DESCRIBE topic orders-eu").await;
    f.broker.close().unwrap();
    let Fixture { dir, broker } = f;
    drop(broker);

    // ... and after a restart the processor does not start (the broker itself does).
    let f = Fixture::reopen(dir);
    let text = wait_status(&f, status, "state: \"failed\"").await;
    assert!(text.contains("User:bob may not READ topic proc-in"), "{text}");
    let acls =
        f.call(&user("admin"), request::Body::ListAcls(v1::ListAclsRequest { filter: None })).await;
    let response::Body::ListAcls(l) = acls.unwrap().unwrap() else { panic!() };
    assert_eq!(l.bindings.len(), 4, "what was removed stays removed: {l:?}");
    assert!(
        f.broker.acls().authorize(&user("x"), None, O::Alter, T::Cluster, CLUSTER_NAME).is_err()
    );
    f.broker.close().unwrap();
}
