//! The ACL model, Kafka's (so Kafka's tools and admin clients map onto it 1:1): a binding
//! allows or denies one principal (`User:NAME`, or `User:*` for all), from one host (or `*`),
//! one operation on the resources one pattern names (`LITERAL`: that name, `*` being every
//! resource of the type; `PREFIXED`: every name starting with it).
//!
//! The decision ([`decide`]) is Kafka's `AclAuthorizer`'s: among the bindings that apply to the
//! principal, host and resource, a DENY of the operation (or of ALL) refuses; otherwise an
//! ALLOW of it, of ALL, or of an operation implying it (READ, WRITE, DELETE and ALTER imply
//! DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS) allows; no binding refuses.
//!
//! Resource types are Kafka's (TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID) and eddy's PROCESSOR
//! (processors and SQL catalog names) and CONNECTOR. Invariant: a stored binding has passed
//! [`AclBinding::validate`] — its operation is one its resource type has, its principal and
//! host parse, its names are bounded.

use std::net::IpAddr;

use eddy_protocol::v1;
use serde::{Deserialize, Serialize};

use super::Principal;
use crate::error::BrokerError;

mod filter;

pub use filter::{AclFilter, PatternFilter};

/// The one cluster resource's name (Kafka's).
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The principal of a binding for every principal.
pub const ANY_PRINCIPAL: &str = "User:*";
/// The host of a binding from every host.
pub const ANY_HOST: &str = "*";
/// Longest resource name, principal or host a binding may hold.
const MAX_NAME: usize = 1024;

/// What a principal does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl Operation {
    /// Every operation a binding may name.
    pub const EVERY: [Operation; 11] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
    ];

    /// Kafka's name (`READ`, `DESCRIBE_CONFIGS`).
    pub fn name(self) -> &'static str {
        match self {
            Operation::All => "ALL",
            Operation::Read => "READ",
            Operation::Write => "WRITE",
            Operation::Create => "CREATE",
            Operation::Delete => "DELETE",
            Operation::Alter => "ALTER",
            Operation::Describe => "DESCRIBE",
            Operation::ClusterAction => "CLUSTER_ACTION",
            Operation::DescribeConfigs => "DESCRIBE_CONFIGS",
            Operation::AlterConfigs => "ALTER_CONFIGS",
            Operation::IdempotentWrite => "IDEMPOTENT_WRITE",
        }
    }

    /// An operation from its name, any case, `-` or `_` between words.
    pub fn parse(text: &str) -> Option<Operation> {
        let wanted = text.trim().to_ascii_uppercase().replace('-', "_");
        Operation::EVERY.into_iter().find(|op| op.name() == wanted)
    }

    /// Kafka's code (`AclOperation`), which is also the native protocol's.
    pub fn code(self) -> i8 {
        match self {
            Operation::All => 2,
            Operation::Read => 3,
            Operation::Write => 4,
            Operation::Create => 5,
            Operation::Delete => 6,
            Operation::Alter => 7,
            Operation::Describe => 8,
            Operation::ClusterAction => 9,
            Operation::DescribeConfigs => 10,
            Operation::AlterConfigs => 11,
            Operation::IdempotentWrite => 12,
        }
    }

    pub fn from_code(code: i8) -> Option<Operation> {
        Operation::EVERY.into_iter().find(|op| op.code() == code)
    }

    /// Whether an ALLOW of `self` allows `wanted` (Kafka's implications).
    pub fn allows(self, wanted: Operation) -> bool {
        self == Operation::All
            || self == wanted
            || (wanted == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
            || (wanted == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }

    /// Whether a DENY of `self` refuses `wanted` (no implications: a DENY of READ leaves
    /// DESCRIBE to the other bindings, as in Kafka).
    pub fn denies(self, wanted: Operation) -> bool {
        self == Operation::All || self == wanted
    }
}

/// What kind of thing a binding names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    /// eddy's: a processor, SQL persistent query or SQL catalog name (stream, table).
    Processor,
    /// eddy's: a connector.
    Connector,
}

impl ResourceType {
    pub const EVERY: [ResourceType; 6] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
        ResourceType::Processor,
        ResourceType::Connector,
    ];

    /// The name messages use ("User:bob may not WRITE topic orders-eu").
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::Cluster => "cluster",
            ResourceType::TransactionalId => "transactional-id",
            ResourceType::Processor => "processor",
            ResourceType::Connector => "connector",
        }
    }

    /// The type whose [`name`](Self::name) (or Kafka's upper-case name) is `text`.
    pub fn parse(text: &str) -> Option<ResourceType> {
        let wanted = text.trim().to_ascii_lowercase().replace('_', "-");
        ResourceType::EVERY.into_iter().find(|t| t.name() == wanted)
    }

    /// The operations a binding of this type may name besides ALL (Kafka's lists; eddy's
    /// types: PROCESSOR CREATE = deploy, DELETE = drop, READ = query, DESCRIBE = list and
    /// status, ALTER = rollback and replay; CONNECTOR CREATE, DELETE, ALTER = pause and
    /// resume, DESCRIBE).
    pub fn operations(self) -> &'static [Operation] {
        use Operation as O;
        match self {
            ResourceType::Topic => &[
                O::Read,
                O::Write,
                O::Create,
                O::Delete,
                O::Alter,
                O::Describe,
                O::DescribeConfigs,
                O::AlterConfigs,
            ],
            ResourceType::Group => &[O::Read, O::Describe, O::Delete],
            ResourceType::Cluster => &[
                O::Create,
                O::ClusterAction,
                O::DescribeConfigs,
                O::AlterConfigs,
                O::IdempotentWrite,
                O::Alter,
                O::Describe,
            ],
            ResourceType::TransactionalId => &[O::Describe, O::Write],
            ResourceType::Processor => &[O::Create, O::Delete, O::Read, O::Describe, O::Alter],
            ResourceType::Connector => &[O::Create, O::Delete, O::Alter, O::Describe],
        }
    }

    /// The native protocol's code (Kafka's `ResourceType` for Kafka's types).
    pub fn code(self) -> i32 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
            ResourceType::Processor => 20,
            ResourceType::Connector => 21,
        }
    }

    pub fn from_code(code: i32) -> Option<ResourceType> {
        ResourceType::EVERY.into_iter().find(|t| t.code() == code)
    }

    /// Kafka's code, for the types Kafka has.
    pub fn kafka_code(self) -> Option<i8> {
        match self {
            ResourceType::Processor | ResourceType::Connector => None,
            other => i8::try_from(other.code()).ok(),
        }
    }
}

/// How a binding's resource name names resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatternType {
    Literal,
    Prefixed,
}

impl PatternType {
    pub fn name(self) -> &'static str {
        match self {
            PatternType::Literal => "LITERAL",
            PatternType::Prefixed => "PREFIXED",
        }
    }

    /// Kafka's code (`PatternType`), which is also the native protocol's.
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Permission {
    Allow,
    Deny,
}

impl Permission {
    pub fn name(self) -> &'static str {
        match self {
            Permission::Allow => "ALLOW",
            Permission::Deny => "DENY",
        }
    }

    /// Kafka's code (`AclPermissionType`), which is also the native protocol's.
    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }
}

/// One ACL. Field order is the sort order of listings (resource first, as Kafka's tools).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Why a request was refused: who, what, on which resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub principal: String,
    pub operation: Operation,
    pub resource_type: ResourceType,
    pub resource: String,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (p, op, t) = (&self.principal, self.operation.name(), self.resource_type.name());
        write!(f, "{p} may not {op} {t} {}", self.resource)
    }
}

impl From<Denied> for BrokerError {
    fn from(d: Denied) -> Self {
        BrokerError::Unauthorized {
            principal: d.principal,
            operation: d.operation.name(),
            resource_type: d.resource_type.name(),
            resource: d.resource,
        }
    }
}

fn invalid(why: String) -> BrokerError {
    BrokerError::InvalidAcl(why)
}

/// `principal` is `User:NAME` (or `User:*`) with a name of printable characters.
fn check_principal(principal: &str) -> Result<(), BrokerError> {
    let ok = principal.len() <= MAX_NAME
        && principal.strip_prefix("User:").is_some_and(|n| {
            !n.is_empty() && n.chars().all(|c| !c.is_control() && !c.is_whitespace())
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("principal {principal:?}: write User:NAME, or User:* for every user")))
    }
}

fn check_host(host: &str) -> Result<(), BrokerError> {
    if host == ANY_HOST || host.parse::<IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(invalid(format!("host {host:?}: write * or an IP address")))
    }
}

/// The address as a binding compares it (an IPv4-mapped IPv6 address is its IPv4 address).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether a binding for `binding` (a principal as written) applies to `principal`.
fn principal_matches(binding: &str, principal: &Principal) -> bool {
    if binding == ANY_PRINCIPAL {
        return true;
    }
    match principal {
        Principal::User(name) => binding.strip_prefix("User:") == Some(name),
        Principal::Anonymous => binding == "User:ANONYMOUS",
        Principal::Internal => false,
    }
}

impl AclBinding {
    /// Refuses a binding that could never apply or that names what its type does not have.
    pub fn validate(&self) -> Result<(), BrokerError> {
        check_principal(&self.principal)?;
        check_host(&self.host)?;
        let (kind, name) = (self.resource_type, &self.resource_name);
        if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(invalid(format!("{} name {name:?}: 1 to {MAX_NAME} bytes", kind.name())));
        }
        if kind == ResourceType::Cluster
            && (name != CLUSTER_NAME || self.pattern != PatternType::Literal)
        {
            return Err(invalid(format!("the cluster resource is LITERAL {CLUSTER_NAME:?}")));
        }
        if self.operation != Operation::All && !kind.operations().contains(&self.operation) {
            let valid: Vec<&str> = kind.operations().iter().map(|o| o.name()).collect();
            return Err(invalid(format!(
                "{} has no operation {} (it has ALL, {})",
                kind.name(),
                self.operation.name(),
                valid.join(", ")
            )));
        }
        Ok(())
    }

    /// Whether this binding's pattern names resource `name` of type `kind`.
    pub fn names(&self, kind: ResourceType, name: &str) -> bool {
        self.resource_type == kind
            && match self.pattern {
                PatternType::Literal => self.resource_name == name || self.resource_name == "*",
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }

    /// Whether this binding applies to `principal` connecting from `host` (`None`: a caller
    /// without an address, such as a processor, which only `*` bindings apply to).
    pub fn applies_to(&self, principal: &Principal, host: Option<IpAddr>) -> bool {
        principal_matches(&self.principal, principal)
            && (self.host == ANY_HOST
                || host.is_some_and(|h| {
                    self.host.parse::<IpAddr>().is_ok_and(|b| canonical(b) == canonical(h))
                }))
    }

    /// One line for people: `User:alice ALLOW READ topic orders- (PREFIXED) from *`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} {} {} {} ({}) from {}",
            self.principal,
            self.permission.name(),
            self.operation.name(),
            self.resource_type.name(),
            self.resource_name,
            self.pattern.name(),
            self.host
        )
    }

    /// The binding a wire binding describes, checked.
    pub fn from_wire(b: &v1::AclBinding) -> Result<AclBinding, BrokerError> {
        let field = |what: &str, value: i32| invalid(format!("{what} {value} in a binding"));
        let operation = i8::try_from(b.operation)
            .ok()
            .and_then(Operation::from_code)
            .ok_or_else(|| field("operation", b.operation))?;
        let permission = match v1::AclPermission::try_from(b.permission) {
            Ok(v1::AclPermission::Allow) => Permission::Allow,
            Ok(v1::AclPermission::Deny) => Permission::Deny,
            _ => return Err(field("permission", b.permission)),
        };
        let resource_type = ResourceType::from_code(b.resource_type)
            .ok_or_else(|| field("resource type", b.resource_type))?;
        let pattern = match v1::AclPatternType::try_from(b.pattern) {
            Ok(v1::AclPatternType::Literal) => PatternType::Literal,
            Ok(v1::AclPatternType::Prefixed) => PatternType::Prefixed,
            _ => return Err(field("pattern type", b.pattern)),
        };
        let binding = AclBinding {
            resource_type,
            resource_name: b.resource_name.clone(),
            pattern,
            principal: b.principal.clone(),
            host: if b.host.is_empty() { ANY_HOST.to_string() } else { b.host.clone() },
            operation,
            permission,
        };
        binding.validate()?;
        Ok(binding)
    }

    pub fn to_wire(&self) -> v1::AclBinding {
        v1::AclBinding {
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: i32::from(self.operation.code()),
            permission: i32::from(self.permission.code()),
            resource_type: self.resource_type.code(),
            pattern: i32::from(self.pattern.code()),
            resource_name: self.resource_name.clone(),
        }
    }
}

/// Kafka's decision for `principal` from `host` doing `op` to resource `name` of type `kind`,
/// over `bindings` (ACLs enabled; super users and the broker itself are decided before).
pub fn decide<'a>(
    bindings: impl IntoIterator<Item = &'a AclBinding>,
    principal: &Principal,
    host: Option<IpAddr>,
    op: Operation,
    kind: ResourceType,
    name: &str,
) -> bool {
    let mut allowed = false;
    for b in bindings {
        if !b.names(kind, name) || !b.applies_to(principal, host) {
            continue;
        }
        match b.permission {
            Permission::Deny if b.operation.denies(op) => return false,
            Permission::Allow if b.operation.allows(op) => allowed = true,
            _ => {}
        }
    }
    allowed
}

/// Whether `principal` may `op` some resource of type `kind` (Kafka's check of WRITE on any
/// topic for an idempotent producer, KIP-679): an ALLOW applies to it, and no DENY of every
/// such resource (`LITERAL *`, or `PREFIXED` by nothing) does.
pub fn decide_any<'a>(
    bindings: impl IntoIterator<Item = &'a AclBinding> + Clone,
    principal: &Principal,
    host: Option<IpAddr>,
    op: Operation,
    kind: ResourceType,
) -> bool {
    let applies = |b: &&AclBinding| b.resource_type == kind && b.applies_to(principal, host);
    let denied_everywhere = bindings.clone().into_iter().filter(applies).any(|b| {
        b.permission == Permission::Deny
            && b.operation.denies(op)
            && match b.pattern {
                PatternType::Literal => b.resource_name == "*",
                PatternType::Prefixed => b.resource_name.is_empty(),
            }
    });
    !denied_everywhere
        && bindings
            .into_iter()
            .filter(applies)
            .any(|b| b.permission == Permission::Allow && b.operation.allows(op))
}

/// The broker's ACL settings (`[acl]` in the configuration file).
///
/// ```toml
/// [acl]
/// enabled = true                 # default false: every principal may do everything
/// super_users = ["admin"]        # user names (or User:NAME) with every right
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AclSettings {
    pub enabled: bool,
    pub super_users: Vec<String>,
}

impl AclSettings {
    /// The super users as principals (`admin` and `User:admin` are the same one).
    pub fn super_principals(&self) -> Vec<String> {
        self.super_users
            .iter()
            .map(|u| u.trim())
            .filter(|u| !u.is_empty())
            .map(|u| if u.starts_with("User:") { u.to_string() } else { format!("User:{u}") })
            .collect()
    }
}

impl Principal {
    /// The principal a processor or connector owner was stored as (`None`: the broker's own).
    pub fn from_owner(owner: Option<&str>) -> Principal {
        match owner {
            None => Principal::Internal,
            Some("User:ANONYMOUS") => Principal::Anonymous,
            Some(text) => Principal::user(text.strip_prefix("User:").unwrap_or(text)),
        }
    }

    /// How an owner is stored: `User:NAME`, or `None` for the broker itself.
    pub fn owner(&self) -> Option<String> {
        match self {
            Principal::Internal => None,
            other => Some(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
