//! `eddy acl add | list | remove` (docs/security.md, "Authorization").
//!
//! ```text
//! eddy acl add --allow|--deny User:NAME --operation read[,write...]
//!              (--topic|--group|--processor|--connector|--transactional-id NAME [--prefix]
//!               | --cluster) [--host H]
//! eddy acl list   [--principal User:NAME | --allow|--deny User:NAME] [--operation OP,...]
//!                 [--topic|... NAME [--prefix|--match] | --cluster] [--host H]
//! eddy acl remove (the same filters as list; at least one)
//! ```
//!
//! A principal written without a type (`alice`) is `User:alice`. `add` makes one binding per
//! principal and operation; `list` and `remove` with several operations apply one filter per
//! operation. Arguments are parsed into an [`AclArgs`] before anything connects.

use anyhow::{Context, Result, bail};
use eddy_broker::security::acl::{
    ANY_HOST, AclBinding, AclFilter, CLUSTER_NAME, Operation, PatternFilter, PatternType,
    Permission, ResourceType,
};
use eddy_client::Admin;
use eddy_protocol::v1;

use super::{Output, connect};

/// What `eddy acl ACTION ...` asked for, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclArgs {
    /// `--allow P` / `--deny P`.
    pub grants: Vec<(Permission, String)>,
    /// `--principal P` (list and remove).
    pub principal: Option<String>,
    pub operations: Vec<Operation>,
    pub resource: Option<(ResourceType, String)>,
    pub pattern: PatternFilter,
    pub host: Option<String>,
}

/// `alice` is `User:alice`; `User:alice` and `User:*` stay.
fn principal(text: &str) -> String {
    if text.starts_with("User:") { text.to_string() } else { format!("User:{text}") }
}

fn operations(text: &str) -> Result<Vec<Operation>> {
    text.split(',')
        .filter(|o| !o.trim().is_empty())
        .map(|o| {
            Operation::parse(o).with_context(|| {
                let all: Vec<&str> = Operation::EVERY.iter().map(|o| o.name()).collect();
                format!("unknown operation {o:?} (one of {})", all.join(", ").to_lowercase())
            })
        })
        .collect()
}

/// Parses the flags after the action (`add`: bindings must be complete; `list`/`remove`:
/// every flag is a filter).
pub fn parse(parser: &mut lexopt::Parser, adding: bool) -> Result<AclArgs> {
    use lexopt::prelude::*;
    let mut a = AclArgs::default();
    let set_resource = |a: &mut AclArgs, kind: ResourceType, name: String| {
        if a.resource.is_some() {
            bail!(
                "name one resource (--topic, --group, --processor, --connector, --transactional-id or --cluster)"
            );
        }
        a.resource = Some((kind, name));
        Ok(())
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long(flag @ ("allow" | "deny")) => {
                let (permission, flag) = if flag == "allow" {
                    (Permission::Allow, "--allow")
                } else {
                    (Permission::Deny, "--deny")
                };
                let who = parser.value().with_context(|| format!("{flag} needs User:NAME"))?;
                a.grants.push((permission, principal(&who.string()?)));
            }
            Long("principal") if !adding => {
                a.principal = Some(principal(&parser.value()?.string()?))
            }
            Long("operation") => a.operations.extend(operations(&parser.value()?.string()?)?),
            Long(kind @ ("topic" | "group" | "processor" | "connector" | "transactional-id")) => {
                let kind = ResourceType::parse(kind).context("a resource type")?;
                let name = parser.value()?.string()?;
                set_resource(&mut a, kind, name)?;
            }
            Long("cluster") => set_resource(&mut a, ResourceType::Cluster, CLUSTER_NAME.into())?,
            Long("prefix") => a.pattern = PatternFilter::Exact(PatternType::Prefixed),
            Long("match") if !adding => a.pattern = PatternFilter::Match,
            Long("host") => a.host = Some(parser.value()?.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(a)
}

impl AclArgs {
    /// The bindings `add` creates: every principal × every operation.
    pub fn bindings(&self) -> Result<Vec<AclBinding>> {
        if self.grants.is_empty() {
            bail!("acl add needs --allow User:NAME or --deny User:NAME");
        }
        if self.operations.is_empty() {
            bail!("acl add needs --operation OP[,OP...]");
        }
        let Some((kind, name)) = self.resource.clone() else {
            bail!(
                "acl add needs a resource: --topic, --group, --processor, --connector, --transactional-id NAME or --cluster"
            );
        };
        let pattern = match self.pattern {
            PatternFilter::Exact(PatternType::Prefixed) => PatternType::Prefixed,
            _ => PatternType::Literal,
        };
        let mut out = Vec::new();
        for (permission, who) in &self.grants {
            for operation in &self.operations {
                let b = AclBinding {
                    resource_type: kind,
                    resource_name: name.clone(),
                    pattern,
                    principal: who.clone(),
                    host: self.host.clone().unwrap_or_else(|| ANY_HOST.to_string()),
                    operation: *operation,
                    permission: *permission,
                };
                b.validate()?;
                out.push(b);
            }
        }
        Ok(out)
    }

    /// The filters `list` and `remove` apply (their union): one per operation and grant.
    pub fn filters(&self) -> Vec<AclFilter> {
        let base = AclFilter {
            principal: self.principal.clone(),
            host: self.host.clone(),
            resource_type: self.resource.as_ref().map(|(k, _)| *k),
            resource_name: self.resource.as_ref().map(|(_, n)| n.clone()),
            pattern: match (&self.resource, self.pattern) {
                // `--topic NAME` alone is that literal resource.
                (Some(_), PatternFilter::Any) => PatternFilter::Exact(PatternType::Literal),
                (_, p) => p,
            },
            ..AclFilter::default()
        };
        let grants: Vec<AclFilter> = if self.grants.is_empty() {
            vec![base]
        } else {
            self.grants
                .iter()
                .map(|(permission, who)| AclFilter {
                    permission: Some(*permission),
                    principal: Some(who.clone()),
                    ..base.clone()
                })
                .collect()
        };
        if self.operations.is_empty() {
            return grants;
        }
        grants
            .iter()
            .flat_map(|g| {
                self.operations.iter().map(|op| AclFilter { operation: Some(*op), ..g.clone() })
            })
            .collect()
    }

    /// Whether any filter flag was given (`remove` refuses to remove everything by accident).
    fn filters_anything(&self) -> bool {
        *self != AclArgs::default()
    }
}

fn line(b: &v1::AclBinding) -> String {
    AclBinding::from_wire(b).map_or_else(|e| format!("{b:?} ({e})"), |b| b.describe())
}

pub async fn run(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    use lexopt::prelude::*;
    let Some(Value(action)) = parser.next()? else {
        bail!("acl needs an action: add, list or remove")
    };
    let admin = || async { Ok::<_, anyhow::Error>(Admin::new(connect(broker).await?)) };
    match action.string()?.as_str() {
        "add" => {
            let bindings = parse(parser, true)?.bindings()?;
            let wire: Vec<v1::AclBinding> = bindings.iter().map(AclBinding::to_wire).collect();
            let created = admin().await?.create_acls(wire).await?;
            for b in &bindings {
                out.line(format!("added {}", b.describe()).as_bytes())?;
            }
            let existed = bindings.len() as u32 - created.min(bindings.len() as u32);
            out.line(format!("{created} new, {existed} already there").as_bytes())
        }
        "list" => {
            let filters = parse(parser, false)?.filters();
            let admin = admin().await?;
            let mut all = Vec::new();
            for f in filters {
                all.extend(admin.list_acls(f.to_wire()).await?);
            }
            all.dedup();
            for b in &all {
                out.line(line(b).as_bytes())?;
            }
            Ok(())
        }
        "remove" => {
            let args = parse(parser, false)?;
            if !args.filters_anything() {
                bail!("acl remove needs a filter (--principal, --topic, --operation, ...)");
            }
            let admin = admin().await?;
            let mut removed = 0;
            for f in args.filters() {
                for b in admin.delete_acls(f.to_wire()).await? {
                    out.line(format!("removed {}", line(&b)).as_bytes())?;
                    removed += 1;
                }
            }
            out.line(format!("{removed} removed").as_bytes())
        }
        other => bail!("unknown acl action {other:?} (add, list, remove)"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args(list: &[&str], adding: bool) -> Result<AclArgs> {
        parse(&mut lexopt::Parser::from_args(list.iter().copied()), adding)
    }

    #[test]
    fn add_makes_one_binding_per_principal_and_operation() {
        let a = args(
            &["--allow", "bob", "--operation", "read,describe", "--topic", "orders-", "--prefix"],
            true,
        )
        .unwrap();
        let b = a.bindings().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].describe(), "User:bob ALLOW READ topic orders- (PREFIXED) from *");
        assert_eq!(b[1].operation, Operation::Describe);
        let a = args(
            &["--deny", "User:eve", "--operation", "all", "--cluster", "--host", "10.0.0.9"],
            true,
        )
        .unwrap();
        let b = a.bindings().unwrap();
        assert_eq!(
            b[0].describe(),
            "User:eve DENY ALL cluster kafka-cluster (LITERAL) from 10.0.0.9"
        );
    }

    #[test]
    fn add_refuses_what_cannot_be_a_binding() {
        let e = |list: &[&str]| {
            args(list, true).and_then(|a| a.bindings().map(drop)).unwrap_err().to_string()
        };
        assert!(e(&["--operation", "read", "--topic", "t"]).contains("--allow User:NAME"));
        assert!(e(&["--allow", "bob", "--topic", "t"]).contains("--operation"));
        assert!(e(&["--allow", "bob", "--operation", "read"]).contains("needs a resource"));
        assert!(
            e(&["--allow", "bob", "--operation", "reed", "--topic", "t"])
                .contains("unknown operation \"reed\"")
        );
        assert!(
            e(&["--allow", "bob", "--operation", "read", "--topic", "t", "--group", "g"])
                .contains("name one resource")
        );
        assert!(
            e(&["--allow", "bob", "--operation", "idempotent-write", "--topic", "t"])
                .contains("topic has no operation IDEMPOTENT_WRITE")
        );
        assert!(
            e(&["--allow", "bob", "--operation", "read", "--topic", "t", "--host", "nowhere"])
                .contains("host")
        );
        assert!(
            e(&["--allow", "bob", "--operation", "read", "--topic", "t", "--match"])
                .contains("'--match'")
        );
        assert!(e(&["--allow"]).contains("--allow needs User:NAME"));
    }

    #[test]
    fn list_and_remove_filters() {
        let a = args(&["--topic", "orders-eu", "--match"], false).unwrap();
        let f = a.filters();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].pattern, PatternFilter::Match);
        assert_eq!(f[0].resource_type, Some(ResourceType::Topic));
        let a = args(&["--allow", "bob", "--operation", "read,write"], false).unwrap();
        let f = a.filters();
        assert_eq!(f.len(), 2);
        assert!(f.iter().all(|f| f.permission == Some(Permission::Allow)
            && f.principal.as_deref() == Some("User:bob")));
        assert_eq!(f[1].operation, Some(Operation::Write));
        let a = args(&["--group", "g"], false).unwrap();
        assert_eq!(a.filters()[0].pattern, PatternFilter::Exact(PatternType::Literal));
        assert!(args(&[], false).unwrap().filters() == vec![AclFilter::default()]);
        assert!(!args(&[], false).unwrap().filters_anything());
        assert!(args(&["--deny", "User:eve"], false).unwrap().filters_anything());
    }
}
