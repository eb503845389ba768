//! Filters over bindings: which ones a list or delete applies to (Kafka's
//! `AclBindingFilter`), and their wire form.

use eddy_protocol::v1;

use super::{AclBinding, Operation, PatternType, Permission, ResourceType, invalid};
use crate::error::BrokerError;

/// Which pattern types a filter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PatternFilter {
    /// Any pattern type; the name (if given) compared as written.
    #[default]
    Any,
    /// Every binding that applies to the named resource.
    Match,
    Exact(PatternType),
}

/// Which bindings a list or delete applies to (`None`: anything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
    pub resource_type: Option<ResourceType>,
    pub pattern: PatternFilter,
    pub resource_name: Option<String>,
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        let name_ok = match (&self.resource_name, self.pattern) {
            (None, PatternFilter::Any | PatternFilter::Match) => true,
            (None, PatternFilter::Exact(p)) => b.pattern == p,
            (Some(n), PatternFilter::Any) => &b.resource_name == n,
            (Some(n), PatternFilter::Exact(p)) => b.pattern == p && &b.resource_name == n,
            (Some(n), PatternFilter::Match) => b.names(b.resource_type, n),
        };
        name_ok
            && self.principal.as_ref().is_none_or(|p| &b.principal == p)
            && self.host.as_ref().is_none_or(|h| &b.host == h)
            && self.operation.is_none_or(|o| b.operation == o)
            && self.permission.is_none_or(|p| b.permission == p)
            && self.resource_type.is_none_or(|t| b.resource_type == t)
    }

    pub fn from_wire(f: &v1::AclFilter) -> Result<AclFilter, BrokerError> {
        let bad = |what: &str, value: i32| invalid(format!("{what} {value} in a filter"));
        let operation = match f.operation {
            0 => None,
            n => Some(
                i8::try_from(n)
                    .ok()
                    .and_then(Operation::from_code)
                    .ok_or_else(|| bad("operation", n))?,
            ),
        };
        let permission = match v1::AclPermission::try_from(f.permission) {
            Ok(v1::AclPermission::Any) => None,
            Ok(v1::AclPermission::Allow) => Some(Permission::Allow),
            Ok(v1::AclPermission::Deny) => Some(Permission::Deny),
            Err(_) => return Err(bad("permission", f.permission)),
        };
        let resource_type = match f.resource_type {
            0 => None,
            n => Some(ResourceType::from_code(n).ok_or_else(|| bad("resource type", n))?),
        };
        let pattern = match v1::AclPatternType::try_from(f.pattern) {
            Ok(v1::AclPatternType::Any) => PatternFilter::Any,
            Ok(v1::AclPatternType::Match) => PatternFilter::Match,
            Ok(v1::AclPatternType::Literal) => PatternFilter::Exact(PatternType::Literal),
            Ok(v1::AclPatternType::Prefixed) => PatternFilter::Exact(PatternType::Prefixed),
            Err(_) => return Err(bad("pattern type", f.pattern)),
        };
        Ok(AclFilter {
            principal: f.principal.clone(),
            host: f.host.clone(),
            operation,
            permission,
            resource_type,
            pattern,
            resource_name: f.resource_name.clone(),
        })
    }

    pub fn to_wire(&self) -> v1::AclFilter {
        let pattern = match self.pattern {
            PatternFilter::Any => v1::AclPatternType::Any as i32,
            PatternFilter::Match => v1::AclPatternType::Match as i32,
            PatternFilter::Exact(p) => i32::from(p.code()),
        };
        v1::AclFilter {
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: self.operation.map_or(0, |o| i32::from(o.code())),
            permission: self.permission.map_or(0, |p| i32::from(p.code())),
            resource_type: self.resource_type.map_or(0, ResourceType::code),
            pattern,
            resource_name: self.resource_name.clone(),
        }
    }
}
