//! Kafka's ACL APIs — DescribeAcls (DESCRIBE on the cluster), CreateAcls and DeleteAcls
//! (ALTER on the cluster) — over the broker's ACLs, so `kafka-acls.sh` and admin clients
//! manage the same bindings as `eddy acl`. Kafka's codes are eddy's (`security::acl`), except
//! that Kafka says ANY with 1 where eddy's protocol says it with 0. Bindings of eddy's own
//! resource types (PROCESSOR, CONNECTOR) have no Kafka code: Kafka clients neither see nor
//! delete them (`eddy acl` does).

use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::Context;
use super::authz::check;
use crate::error::BrokerError;
use crate::security::acl::{
    AclBinding, AclFilter, CLUSTER_NAME, Operation, PatternFilter, PatternType, Permission,
    ResourceType,
};
use crate::security::acls::Access;

/// Kafka's ANY in a filter.
const ANY: i8 = 1;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn invalid(why: String) -> (i16, String) {
    (K::InvalidRequest.code(), why)
}

fn kafka_type(code: i8) -> Result<ResourceType, (i16, String)> {
    ResourceType::EVERY
        .into_iter()
        .find(|t| t.kafka_code() == Some(code))
        .ok_or_else(|| invalid(format!("eddy keeps no ACLs for Kafka resource type {code}")))
}

fn pattern(code: i8) -> Option<PatternType> {
    [PatternType::Literal, PatternType::Prefixed].into_iter().find(|p| p.code() == code)
}

fn permission_of(code: i8) -> Option<Permission> {
    [Permission::Allow, Permission::Deny].into_iter().find(|p| p.code() == code)
}

/// The filter a DescribeAcls or DeleteAcls filter is, over Kafka's resource types only.
struct KafkaFilter(AclFilter);

#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern_type: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission_type: i8,
) -> Result<KafkaFilter, (i16, String)> {
    let resource_type = if resource_type == ANY { None } else { Some(kafka_type(resource_type)?) };
    let pattern = match pattern_type {
        ANY => PatternFilter::Any,
        2 => PatternFilter::Match,
        p => PatternFilter::Exact(pattern(p).ok_or_else(|| invalid(format!("pattern type {p}")))?),
    };
    let operation = match operation {
        ANY => None,
        o => Some(Operation::from_code(o).ok_or_else(|| invalid(format!("operation {o}")))?),
    };
    let permission = match permission_type {
        ANY => None,
        p => Some(permission_of(p).ok_or_else(|| invalid(format!("permission {p}")))?),
    };
    let filter = AclFilter {
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation,
        permission,
        resource_type,
        pattern,
        resource_name: name.map(|n| n.to_string()),
    };
    Ok(KafkaFilter(filter))
}

impl KafkaFilter {
    fn matches(&self, b: &AclBinding) -> bool {
        b.resource_type.kafka_code().is_some() && self.0.matches(b)
    }
}

pub(super) fn describe(
    cx: &Context,
    access: &Access,
    r: DescribeAclsRequest,
) -> DescribeAclsResponse {
    if let Err(code) = check(access, Operation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
        return DescribeAclsResponse::default().with_error_code(code);
    }
    let f = filter(
        r.resource_type_filter,
        r.resource_name_filter.as_ref(),
        r.pattern_type_filter,
        r.principal_filter.as_ref(),
        r.host_filter.as_ref(),
        r.operation,
        r.permission_type,
    );
    let f = match f {
        Ok(f) => f,
        Err((code, message)) => {
            return DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(Some(text(&message)));
        }
    };
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    // Listed sorted by resource, so a resource's bindings are adjacent.
    for b in cx.broker.acls().list(&AclFilter::default()).iter().filter(|b| f.matches(b)) {
        let Some(kind) = b.resource_type.kafka_code() else { continue };
        let description = AclDescription::default()
            .with_principal(text(&b.principal))
            .with_host(text(&b.host))
            .with_operation(b.operation.code())
            .with_permission_type(b.permission.code());
        let same = resources.last_mut().filter(|r| {
            r.resource_type == kind
                && r.resource_name.as_str() == b.resource_name
                && r.pattern_type == b.pattern.code()
        });
        match same {
            Some(r) => r.acls.push(description),
            None => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(text(&b.resource_name))
                    .with_pattern_type(b.pattern.code())
                    .with_acls(vec![description]),
            ),
        }
    }
    DescribeAclsResponse::default().with_resources(resources)
}

/// The binding one AclCreation asks for.
fn binding(c: &create_acls_request::AclCreation) -> Result<AclBinding, (i16, String)> {
    let b = AclBinding {
        resource_type: kafka_type(c.resource_type)?,
        resource_name: c.resource_name.to_string(),
        pattern: pattern(c.resource_pattern_type)
            .ok_or_else(|| invalid(format!("pattern type {}", c.resource_pattern_type)))?,
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: Operation::from_code(c.operation)
            .ok_or_else(|| invalid(format!("operation {}", c.operation)))?,
        permission: permission_of(c.permission_type)
            .ok_or_else(|| invalid(format!("permission {}", c.permission_type)))?,
    };
    b.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(b)
}

fn creation_result(outcome: Result<(), (i16, String)>) -> AclCreationResult {
    match outcome {
        Ok(()) => AclCreationResult::default(),
        Err((code, message)) => AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(Some(text(&message))),
    }
}

pub(super) async fn create(
    cx: &Context,
    access: &Access,
    r: CreateAclsRequest,
) -> CreateAclsResponse {
    if let Err(code) = check(access, Operation::Alter, ResourceType::Cluster, CLUSTER_NAME) {
        let results =
            r.creations.iter().map(|_| creation_result(Err((code, String::new())))).collect();
        return CreateAclsResponse::default().with_results(results);
    }
    // Each creation stands alone (Kafka answers one result per creation).
    let parsed: Vec<Result<AclBinding, (i16, String)>> = r.creations.iter().map(binding).collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let acls = cx.broker.acls().clone();
    let stored = tokio::task::spawn_blocking(move || acls.create(&valid))
        .await
        .map_err(|e| BrokerError::TaskFailed { reason: e.to_string() })
        .and_then(|r| r);
    let stored = stored.map(drop).map_err(|e| (super::data::error_code(&e), e.to_string()));
    let results = parsed
        .into_iter()
        .map(|p| creation_result(p.map(drop).and_then(|()| stored.clone())))
        .collect();
    CreateAclsResponse::default().with_results(results)
}

fn matching(b: &AclBinding) -> Option<DeleteAclsMatchingAcl> {
    Some(
        DeleteAclsMatchingAcl::default()
            .with_resource_type(b.resource_type.kafka_code()?)
            .with_resource_name(text(&b.resource_name))
            .with_pattern_type(b.pattern.code())
            .with_principal(text(&b.principal))
            .with_host(text(&b.host))
            .with_operation(b.operation.code())
            .with_permission_type(b.permission.code()),
    )
}

fn filter_result(outcome: Result<Vec<AclBinding>, (i16, String)>) -> DeleteAclsFilterResult {
    match outcome {
        Ok(deleted) => DeleteAclsFilterResult::default()
            .with_matching_acls(deleted.iter().filter_map(matching).collect()),
        Err((code, message)) => DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(Some(text(&message))),
    }
}

fn delete_filter(f: &DeleteAclsFilter) -> Result<KafkaFilter, (i16, String)> {
    filter(
        f.resource_type_filter,
        f.resource_name_filter.as_ref(),
        f.pattern_type_filter,
        f.principal_filter.as_ref(),
        f.host_filter.as_ref(),
        f.operation,
        f.permission_type,
    )
}

pub(super) async fn delete(
    cx: &Context,
    access: &Access,
    r: DeleteAclsRequest,
) -> DeleteAclsResponse {
    if let Err(code) = check(access, Operation::Alter, ResourceType::Cluster, CLUSTER_NAME) {
        let results = r.filters.iter().map(|_| filter_result(Err((code, String::new())))).collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let mut results = Vec::with_capacity(r.filters.len());
    for f in &r.filters {
        let outcome = match delete_filter(f) {
            Err(e) => Err(e),
            Ok(kf) => {
                let acls = cx.broker.acls().clone();
                // Only Kafka's types: the filter is narrowed to the bindings it may see.
                let doomed: Vec<AclBinding> = acls
                    .list(&AclFilter::default())
                    .into_iter()
                    .filter(|b| kf.matches(b))
                    .collect();
                tokio::task::spawn_blocking(move || {
                    let mut deleted = Vec::new();
                    for b in doomed {
                        deleted.extend(acls.delete(&exactly(&b))?);
                    }
                    Ok(deleted)
                })
                .await
                .map_err(|e| BrokerError::TaskFailed { reason: e.to_string() })
                .and_then(|r| r)
                .map_err(|e: BrokerError| (super::data::error_code(&e), e.to_string()))
            }
        };
        results.push(filter_result(outcome));
    }
    DeleteAclsResponse::default().with_filter_results(results)
}

/// The filter that matches `b` and nothing else.
fn exactly(b: &AclBinding) -> AclFilter {
    AclFilter {
        principal: Some(b.principal.clone()),
        host: Some(b.host.clone()),
        operation: Some(b.operation),
        permission: Some(b.permission),
        resource_type: Some(b.resource_type),
        pattern: PatternFilter::Exact(b.pattern),
        resource_name: Some(b.resource_name.clone()),
    }
}
