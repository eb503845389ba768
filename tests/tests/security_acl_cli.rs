//! ACLs on the real `eddy` binary, over the network, before authentication exists: every
//! connection is `User:ANONYMOUS`, so the anonymous principal is the one the ACLs decide for.
//!
//! 1. A broker with `EDDY_ACL_ENABLED=true` and `EDDY_ACL_SUPER_USERS=ANONYMOUS` (so the CLI
//!    may manage ACLs): `eddy acl add | list | remove` round trip, outputs line for line; an
//!    invalid binding is refused by the CLI with the reason.
//! 2. The same data directory without the super user: the bindings survived the restart and
//!    decide. READ on the `orders-` prefix lets `eddy consume orders-eu` and kcat read it;
//!    writing it, reading `payments`, deleting a topic and listing ACLs are refused with the
//!    documented errors (eddy's `AUTHORIZATION_FAILED` messages; kcat's "Broker: Topic
//!    authorization failed"); `eddy topic list` and kcat's metadata show `orders-eu` only.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use eddy_tests::broker::BrokerProcess;
use eddy_tests::cli::{eddy_fails, eddy_ok};
use eddy_tests::kafka_clients::{kcat_command, merge_stderr, run_to_end};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn eddy_acl_manages_bindings_that_decide_for_eddys_cli_and_kafka_clients() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let records = dir.path().join("records");
    std::fs::write(&records, "a\nb\n").unwrap();
    let records = records.to_str().unwrap();

    let mut broker = BrokerProcess::start(
        &data,
        &[("EDDY_ACL_ENABLED", "true"), ("EDDY_ACL_SUPER_USERS", "ANONYMOUS")],
    );
    for topic in ["orders-eu", "payments"] {
        eddy_ok(&broker, &["topic", "create", topic]);
        eddy_ok(&broker, &["produce", topic, records]);
    }
    let line = "User:ANONYMOUS ALLOW READ topic orders- (PREFIXED) from *";
    let added = eddy_ok(
        &broker,
        &[
            "acl",
            "add",
            "--allow",
            "User:ANONYMOUS",
            "--operation",
            "read",
            "--topic",
            "orders-",
            "--prefix",
        ],
    );
    assert_eq!(added, [format!("added {line}"), "1 new, 0 already there".to_string()]);
    let added = eddy_ok(
        &broker,
        &["acl", "add", "--deny", "bob", "--operation", "write,delete", "--topic", "payments"],
    );
    assert_eq!(added.last().unwrap(), "2 new, 0 already there");
    let all = eddy_ok(&broker, &["acl", "list"]);
    assert_eq!(
        all,
        [
            line.to_string(),
            "User:bob DENY WRITE topic payments (LITERAL) from *".to_string(),
            "User:bob DENY DELETE topic payments (LITERAL) from *".to_string(),
        ]
    );
    assert_eq!(eddy_ok(&broker, &["acl", "list", "--topic", "orders-eu", "--match"]), [line]);
    assert!(eddy_ok(&broker, &["acl", "list", "--principal", "User:carol"]).is_empty());
    let removed = eddy_ok(&broker, &["acl", "remove", "--principal", "bob"]);
    assert_eq!(removed.last().unwrap(), "2 removed", "{removed:?}");
    assert_eq!(eddy_ok(&broker, &["acl", "list"]), [line]);
    let refused = eddy_fails(
        &broker,
        &["acl", "add", "--allow", "bob", "--operation", "idempotent-write", "--topic", "t"],
    );
    assert!(
        refused.starts_with(
            "eddy: invalid ACL: topic has no operation IDEMPOTENT_WRITE (it has ALL, READ"
        ),
        "{refused}"
    );
    assert!(eddy_fails(&broker, &["acl", "remove"]).contains("acl remove needs a filter"));
    broker.terminate();

    let broker = BrokerProcess::start(&data, &[("EDDY_ACL_ENABLED", "true")]);
    let read = eddy_ok(&broker, &["consume", "orders-eu"]);
    assert_eq!(read, ["a", "b"]);
    let denied = |args: &[&str], what: &str| {
        let e = eddy_fails(&broker, args);
        assert!(
            e.contains(&format!("AUTHORIZATION_FAILED: User:ANONYMOUS may not {what}")),
            "{args:?}: {e}"
        );
    };
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on a topic first.
    denied(&["produce", "orders-eu", records], "IDEMPOTENT_WRITE cluster kafka-cluster");
    denied(&["consume", "payments"], "DESCRIBE topic payments");
    denied(&["topic", "delete", "orders-eu"], "DELETE topic orders-eu");
    denied(&["acl", "list"], "DESCRIBE cluster kafka-cluster");
    assert_eq!(eddy_ok(&broker, &["topic", "list"]), ["orders-eu"]);

    let bootstrap = broker.kafka_addr().to_string();
    let mut metadata = kcat_command(&bootstrap);
    metadata.args(["-L", "-J"]);
    let listed: serde_json::Value =
        serde_json::from_slice(run_to_end(metadata, LIMIT).ok()).unwrap();
    let topics: Vec<&str> =
        listed["topics"].as_array().unwrap().iter().map(|t| t["topic"].as_str().unwrap()).collect();
    assert_eq!(topics, ["orders-eu"]);
    let mut consume = kcat_command(&bootstrap);
    consume.args(["-C", "-t", "orders-eu", "-e", "-q"]);
    assert_eq!(run_to_end(consume, LIMIT).ok(), b"a\nb\n");
    let mut produce = kcat_command(&bootstrap);
    produce.args(["-P", "-t", "orders-eu", records]);
    let refused = run_to_end(merge_stderr(&produce), LIMIT);
    assert!(!refused.status.success());
    let out = String::from_utf8_lossy(&refused.stdout);
    assert!(out.contains("Broker: Topic authorization failed"), "{out}");
    let mut other = kcat_command(&bootstrap);
    other.args(["-C", "-t", "payments", "-e"]);
    let refused = run_to_end(merge_stderr(&other), LIMIT);
    assert!(!refused.status.success());
    let out = String::from_utf8_lossy(&refused.stdout);
    assert!(out.contains("Topic payments error: Broker: Topic authorization failed"), "{out}");
}
