//! The ACL model's rules, one at a time.
#![allow(clippy::unwrap_used)]

use super::*;

fn binding(
    principal: &str,
    op: Operation,
    perm: Permission,
    pattern: PatternType,
    name: &str,
) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: name.into(),
        pattern,
        principal: principal.into(),
        host: ANY_HOST.into(),
        operation: op,
        permission: perm,
    }
}

#[test]
fn prefixed_read_implies_describe_and_nothing_else() {
    let acls =
        [binding("User:bob", Operation::Read, Permission::Allow, PatternType::Prefixed, "orders-")];
    let bob = Principal::user("bob");
    let may = |op, name| decide(&acls, &bob, None, op, ResourceType::Topic, name);
    assert!(may(Operation::Read, "orders-eu"));
    assert!(may(Operation::Describe, "orders-eu"));
    assert!(!may(Operation::Write, "orders-eu"));
    assert!(!may(Operation::Read, "payments"));
    assert!(!may(Operation::Delete, "orders-eu"));
    assert!(!decide(
        &acls,
        &Principal::user("carol"),
        None,
        Operation::Read,
        ResourceType::Topic,
        "orders-eu"
    ));
}

#[test]
fn deny_wins_and_wildcards_apply() {
    let acls = [
        binding("User:*", Operation::All, Permission::Allow, PatternType::Literal, "*"),
        binding("User:bob", Operation::Write, Permission::Deny, PatternType::Literal, "orders-eu"),
    ];
    let bob = Principal::user("bob");
    assert!(!decide(&acls, &bob, None, Operation::Write, ResourceType::Topic, "orders-eu"));
    assert!(decide(&acls, &bob, None, Operation::Read, ResourceType::Topic, "orders-eu"));
    assert!(decide(&acls, &Principal::Anonymous, None, Operation::Write, ResourceType::Topic, "x"));
    assert!(!decide(&acls, &bob, None, Operation::Read, ResourceType::Group, "x"));
}

#[test]
fn hosts_match_by_address() {
    let mut b = binding("User:bob", Operation::Read, Permission::Allow, PatternType::Literal, "t");
    b.host = "10.0.0.1".into();
    let bob = Principal::user("bob");
    let from =
        |h: &str| decide([&b], &bob, h.parse().ok(), Operation::Read, ResourceType::Topic, "t");
    assert!(from("10.0.0.1"));
    assert!(from("::ffff:10.0.0.1"));
    assert!(!from("10.0.0.2"));
    assert!(!decide([&b], &bob, None, Operation::Read, ResourceType::Topic, "t"));
}

#[test]
fn bindings_are_validated() {
    let ok = binding("User:bob", Operation::Read, Permission::Allow, PatternType::Literal, "t");
    assert!(ok.validate().is_ok());
    let mut b = ok.clone();
    b.principal = "bob".into();
    assert!(b.validate().is_err());
    let mut b = ok.clone();
    b.host = "somewhere".into();
    assert!(b.validate().is_err());
    let mut b = ok.clone();
    b.operation = Operation::IdempotentWrite;
    let e = b.validate().unwrap_err().to_string();
    assert!(e.contains("topic has no operation IDEMPOTENT_WRITE"), "{e}");
    let mut b = ok;
    b.resource_type = ResourceType::Cluster;
    b.operation = Operation::Alter;
    assert!(b.validate().is_err(), "the cluster is named kafka-cluster");
    b.resource_name = CLUSTER_NAME.into();
    assert!(b.validate().is_ok());
}

#[test]
fn filters_match_as_kafka() {
    let b =
        binding("User:bob", Operation::Read, Permission::Allow, PatternType::Prefixed, "orders-");
    let f = |pattern, name: &str| AclFilter {
        pattern,
        resource_name: Some(name.into()),
        ..AclFilter::default()
    };
    assert!(f(PatternFilter::Match, "orders-eu").matches(&b));
    assert!(!f(PatternFilter::Any, "orders-eu").matches(&b));
    assert!(f(PatternFilter::Any, "orders-").matches(&b));
    assert!(!f(PatternFilter::Exact(PatternType::Literal), "orders-").matches(&b));
    assert!(AclFilter::default().matches(&b));
    let wire = f(PatternFilter::Match, "x").to_wire();
    assert_eq!(AclFilter::from_wire(&wire).unwrap(), f(PatternFilter::Match, "x"));
    assert_eq!(AclBinding::from_wire(&b.to_wire()).unwrap(), b);
}

#[test]
fn owners_round_trip() {
    for p in [Principal::user("alice"), Principal::Anonymous, Principal::Internal] {
        assert_eq!(Principal::from_owner(p.owner().as_deref()), p);
    }
}
