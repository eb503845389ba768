//! The ACLs on the Kafka listener: Kafka's error code for each refused resource type, the
//! "authorized operations" bit sets, and the checks of the group membership requests.
//!
//! Each API is checked as a Kafka broker checks it (docs/security.md has the table): per topic
//! with `TOPIC_AUTHORIZATION_FAILED` (29) inside the answer where the API has per-topic
//! errors, `GROUP_AUTHORIZATION_FAILED` (30), `CLUSTER_AUTHORIZATION_FAILED` (31) and
//! `TRANSACTIONAL_ID_AUTHORIZATION_FAILED` (53) for the others. Produce, Fetch, ListOffsets,
//! OffsetCommit, OffsetFetch, ConsumerGroupHeartbeat and DeleteGroups go through the broker's
//! own requests as the connection's principal, so the native checks (`crate::guard`) apply
//! and their refusals are translated here.

use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::*;

use crate::error::BrokerError;
use crate::security::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::security::acls::Access;

/// Kafka's refusal code for a resource type.
pub(super) fn refusal(kind: ResourceType) -> i16 {
    match kind {
        ResourceType::Topic => K::TopicAuthorizationFailed,
        ResourceType::Group => K::GroupAuthorizationFailed,
        ResourceType::TransactionalId => K::TransactionalIdAuthorizationFailed,
        // eddy's own types never reach the Kafka listener's requests.
        ResourceType::Cluster | ResourceType::Processor | ResourceType::Connector => {
            K::ClusterAuthorizationFailed
        }
    }
    .code()
}

/// The Kafka code of an `Unauthorized` broker error (by the type of what was refused).
pub(super) fn refusal_of(e: &BrokerError) -> Option<i16> {
    match e {
        BrokerError::Unauthorized { resource_type, .. } => Some(
            ResourceType::parse(resource_type)
                .map_or(K::ClusterAuthorizationFailed.code(), refusal),
        ),
        _ => None,
    }
}

/// `Ok` when `access` may `op` resource `name` of type `kind`, else Kafka's code for it.
pub(super) fn check(
    access: &Access,
    op: Operation,
    kind: ResourceType,
    name: &str,
) -> Result<(), i16> {
    if access.allows(op, kind, name) { Ok(()) } else { Err(refusal(kind)) }
}

/// Kafka's "authorized operations" field: bit `1 << code` for each operation allowed on the
/// resource (every operation of its type when ACLs do not restrict the principal).
pub(super) fn operations(access: &Access, kind: ResourceType, name: &str) -> i32 {
    access.operations(kind, name).iter().fold(0, |bits, op| bits | (1 << op.code()))
}

/// The cluster's authorized operations.
pub(super) fn cluster_operations(access: &Access) -> i32 {
    operations(access, ResourceType::Cluster, CLUSTER_NAME)
}

/// READ on the group a membership request (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) names.
pub(super) fn group_read(access: &Access, group: &GroupId) -> Result<(), i16> {
    check(access, Operation::Read, ResourceType::Group, group.0.as_str())
}

pub(super) fn join_refused(code: i16) -> JoinGroupResponse {
    JoinGroupResponse::default().with_error_code(code).with_generation_id(-1)
}

pub(super) fn sync_refused(code: i16) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code)
}

pub(super) fn heartbeat_refused(code: i16) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(code)
}

pub(super) fn leave_refused(code: i16) -> LeaveGroupResponse {
    LeaveGroupResponse::default().with_error_code(code)
}

/// FindCoordinator needs DESCRIBE on the group (key type 0) or transactional id (1) it names;
/// `Err` with the code for the first key refused.
pub(super) fn find_coordinator(access: &Access, key_type: i8, key: &str) -> Result<(), i16> {
    match key_type {
        0 => check(access, Operation::Describe, ResourceType::Group, key),
        1 => check(access, Operation::Describe, ResourceType::TransactionalId, key),
        _ => Ok(()),
    }
}

/// InitProducerId: WRITE on the transactional id, or for an idempotent producer
/// IDEMPOTENT_WRITE on the cluster or WRITE on some topic (KIP-679).
pub(super) fn init_producer(access: &Access, transactional_id: Option<&str>) -> Result<(), i16> {
    match transactional_id {
        Some(id) => check(access, Operation::Write, ResourceType::TransactionalId, id),
        None if access.allows(Operation::IdempotentWrite, ResourceType::Cluster, CLUSTER_NAME)
            || access.allows_any(Operation::Write, ResourceType::Topic) =>
        {
            Ok(())
        }
        None => Err(K::ClusterAuthorizationFailed.code()),
    }
}
