//! The broker's ACLs: kept in the compacted internal topic `__acls`, cached in memory, and
//! asked through [`Acls::authorize`] (or an [`Access`], a principal and host bound to them).
//!
//! `__acls` holds one record per binding: key and value are the binding as JSON (so a binding
//! added twice is one record, and compaction keeps it once); removing a binding writes a
//! tombstone for its key. Opening the broker reads the topic to its end.
//!
//! Invariants:
//! - A binding's record (or tombstone) is fsynced before the cache changes, and the cache
//!   changes before the answer: every request checked after the answer — on any connection,
//!   already open or not — sees the change. Writers are serialized.
//! - With `enabled = false` every principal may do everything (eddy before ACLs); with it on,
//!   [`Principal::Internal`] (the broker's own work) and the super users may do everything,
//!   and anyone else what a binding allows (no binding: refused).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use eddy_protocol::v1;
use eddy_storage::Log;

use super::Principal;
use super::acl::{AclBinding, AclFilter, AclSettings, Denied, Operation, ResourceType};
use crate::error::BrokerError;
use crate::internal::{append_durable, for_each_record};

/// The internal topic holding the ACLs.
pub const ACLS_TOPIC: &str = "__acls";

/// The ACLs of one broker.
pub struct Acls {
    enabled: bool,
    super_users: Vec<String>,
    log: Arc<Log>,
    /// The bindings, swapped whole on a change: a check clones the `Arc` and reads without the
    /// lock.
    bindings: RwLock<Arc<BTreeSet<AclBinding>>>,
    /// Held by a writer from its first record to its cache swap.
    writing: Mutex<()>,
}

impl std::fmt::Debug for Acls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acls")
            .field("enabled", &self.enabled)
            .field("super_users", &self.super_users)
            .finish_non_exhaustive()
    }
}

fn key(b: &AclBinding) -> Vec<u8> {
    // A struct of plain fields always serializes.
    serde_json::to_vec(b).unwrap_or_default()
}

impl Acls {
    /// Reads `__acls` (partition 0 is `log`).
    pub fn open(log: Arc<Log>, settings: &AclSettings) -> Result<Acls, BrokerError> {
        let mut bindings = BTreeSet::new();
        for_each_record(&log, ACLS_TOPIC, |offset, key, value| {
            let Some(key) = key else { return };
            match serde_json::from_slice::<AclBinding>(key) {
                Ok(b) if value.is_some() => drop(bindings.insert(b)),
                Ok(b) => drop(bindings.remove(&b)),
                Err(e) => tracing::error!(offset, error = %e, "unreadable ACL record: skipped"),
            }
        })?;
        tracing::info!(enabled = settings.enabled, bindings = bindings.len(), "ACLs loaded");
        Ok(Acls {
            enabled: settings.enabled,
            super_users: settings.super_principals(),
            log,
            bindings: RwLock::new(Arc::new(bindings)),
            writing: Mutex::new(()),
        })
    }

    /// Whether ACLs are enforced at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn snapshot(&self) -> Arc<BTreeSet<AclBinding>> {
        self.bindings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether `principal` is decided without bindings: ACLs off, the broker itself, a super
    /// user.
    pub fn unrestricted(&self, principal: &Principal) -> bool {
        !self.enabled
            || match principal {
                Principal::Internal => true,
                Principal::User(name) => {
                    self.super_users.iter().any(|s| s.strip_prefix("User:") == Some(name))
                }
                Principal::Anonymous => self.super_users.iter().any(|s| s == "User:ANONYMOUS"),
            }
    }

    /// May `principal`, connecting from `host`, `op` resource `name` of type `kind`?
    pub fn authorize(
        &self,
        principal: &Principal,
        host: Option<IpAddr>,
        op: Operation,
        kind: ResourceType,
        name: &str,
    ) -> Result<(), Denied> {
        if self.unrestricted(principal)
            || super::acl::decide(self.snapshot().iter(), principal, host, op, kind, name)
        {
            return Ok(());
        }
        Err(Denied {
            principal: principal.to_string(),
            operation: op,
            resource_type: kind,
            resource: name.to_string(),
        })
    }

    /// May `principal` `op` some resource of type `kind`? (See [`super::acl::decide_any`].)
    pub fn authorize_any(
        &self,
        principal: &Principal,
        host: Option<IpAddr>,
        op: Operation,
        kind: ResourceType,
    ) -> bool {
        self.unrestricted(principal)
            || super::acl::decide_any(self.snapshot().iter(), principal, host, op, kind)
    }

    /// Adds `bindings` (each checked first; none is added if one is invalid); how many were
    /// new.
    pub fn create(&self, bindings: &[AclBinding]) -> Result<u32, BrokerError> {
        for b in bindings {
            b.validate()?;
        }
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (*self.snapshot()).clone();
        let mut created = 0;
        for b in bindings {
            if next.contains(b) {
                continue;
            }
            let k = key(b);
            append_durable(&self.log, ACLS_TOPIC, &k, Some(&k))?;
            next.insert(b.clone());
            created += 1;
            tracing::info!(acl = %b.describe(), "ACL added");
        }
        *self.bindings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(created)
    }

    /// The bindings `filter` matches, sorted.
    pub fn list(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.snapshot().iter().filter(|b| filter.matches(b)).cloned().collect()
    }

    /// Removes the bindings `filter` matches; returns them.
    pub fn delete(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, BrokerError> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (*self.snapshot()).clone();
        let doomed: Vec<AclBinding> = next.iter().filter(|b| filter.matches(b)).cloned().collect();
        let mut deleted = Vec::with_capacity(doomed.len());
        let mut failed = None;
        for b in doomed {
            if let Err(e) = append_durable(&self.log, ACLS_TOPIC, &key(&b), None) {
                failed = Some(e);
                break;
            }
            next.remove(&b);
            tracing::info!(acl = %b.describe(), "ACL removed");
            deleted.push(b);
        }
        // What was removed durably is removed now, even when a later tombstone failed.
        *self.bindings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        match failed {
            Some(e) => Err(e),
            None => Ok(deleted),
        }
    }

    /// `principal` from `host`, bound to these ACLs.
    pub fn access(self: &Arc<Self>, principal: Principal, host: Option<IpAddr>) -> Access {
        Access { acls: self.clone(), principal, host }
    }

    /// `CreateAcls`.
    pub fn serve_create(
        &self,
        r: &v1::CreateAclsRequest,
    ) -> Result<v1::CreateAclsResponse, BrokerError> {
        let bindings =
            r.bindings.iter().map(AclBinding::from_wire).collect::<Result<Vec<_>, _>>()?;
        Ok(v1::CreateAclsResponse { created: self.create(&bindings)? })
    }

    /// `ListAcls`.
    pub fn serve_list(&self, r: &v1::ListAclsRequest) -> Result<v1::ListAclsResponse, BrokerError> {
        let filter = AclFilter::from_wire(&r.filter.clone().unwrap_or_default())?;
        Ok(v1::ListAclsResponse {
            bindings: self.list(&filter).iter().map(AclBinding::to_wire).collect(),
        })
    }

    /// `DeleteAcls`.
    pub fn serve_delete(
        &self,
        r: &v1::DeleteAclsRequest,
    ) -> Result<v1::DeleteAclsResponse, BrokerError> {
        let filter = AclFilter::from_wire(&r.filter.clone().unwrap_or_default())?;
        let deleted = self.delete(&filter)?;
        Ok(v1::DeleteAclsResponse { deleted: deleted.iter().map(AclBinding::to_wire).collect() })
    }
}

/// A principal and the address it connects from, with the ACLs that decide what it may do:
/// what a request is checked as, and what a processor or connector runs as (no address).
#[derive(Debug, Clone)]
pub struct Access {
    acls: Arc<Acls>,
    principal: Principal,
    host: Option<IpAddr>,
}

impl Access {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn host(&self) -> Option<IpAddr> {
        self.host
    }

    /// The same ACLs, another principal (without an address).
    pub fn as_owner(&self, owner: Principal) -> Access {
        Access { acls: self.acls.clone(), principal: owner, host: None }
    }

    /// Whether checks can refuse anything (ACLs on, and not the broker or a super user).
    pub fn restricted(&self) -> bool {
        !self.acls.unrestricted(&self.principal)
    }

    /// `Err(Unauthorized)` naming the principal, operation and resource when refused.
    pub fn check(&self, op: Operation, kind: ResourceType, name: &str) -> Result<(), BrokerError> {
        self.acls.authorize(&self.principal, self.host, op, kind, name).map_err(BrokerError::from)
    }

    pub fn allows(&self, op: Operation, kind: ResourceType, name: &str) -> bool {
        self.acls.authorize(&self.principal, self.host, op, kind, name).is_ok()
    }

    /// Whether some resource of type `kind` may be `op`ed.
    pub fn allows_any(&self, op: Operation, kind: ResourceType) -> bool {
        self.acls.authorize_any(&self.principal, self.host, op, kind)
    }

    /// The operations allowed on resource `name` of type `kind` (Kafka's
    /// "authorized operations").
    pub fn operations(&self, kind: ResourceType, name: &str) -> Vec<Operation> {
        kind.operations().iter().copied().filter(|op| self.allows(*op, kind, name)).collect()
    }

    /// CREATE on topic `name`, or on the cluster (Kafka lets either create a topic).
    pub fn check_create_topic(&self, name: &str) -> Result<(), BrokerError> {
        if self.allows(Operation::Create, ResourceType::Cluster, super::acl::CLUSTER_NAME) {
            return Ok(());
        }
        self.check(Operation::Create, ResourceType::Topic, name)
    }
}
