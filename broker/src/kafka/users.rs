//! SCRAM credentials through Kafka's admin APIs (KIP-554): DescribeUserScramCredentials and
//! AlterUserScramCredentials, over the broker's user registry (`__users`), so Kafka's admin
//! clients (`AdminClient.alter_user_scram_credentials`, `kafka-configs.sh`) manage eddy's users.
//!
//! A Kafka client sends the salted password (the client runs PBKDF2), never the password; the
//! registry keeps only StoredKey and ServerKey derived from it. Mechanisms are Kafka's numbers:
//! 1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512. Errors are Kafka's: an unknown mechanism is
//! `UNSUPPORTED_SASL_MECHANISM`, a credential that does not exist `RESOURCE_NOT_FOUND`, the same
//! credential twice in one request `DUPLICATE_RESOURCE`, iterations outside 4096..=16384 or an
//! empty name `UNACCEPTABLE_CREDENTIAL`.

use std::collections::{BTreeMap, BTreeSet};

use eddy_client::sasl::Scram;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use super::authz::check;
use crate::error::BrokerError;
use crate::security::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::security::acls::Access;

/// Kafka's number for a SCRAM mechanism.
fn kafka_number(scram: Scram) -> i8 {
    match scram {
        Scram::Sha256 => 1,
        Scram::Sha512 => 2,
    }
}

fn of_kafka(mechanism: i8) -> Option<Scram> {
    match mechanism {
        1 => Some(Scram::Sha256),
        2 => Some(Scram::Sha512),
        _ => None,
    }
}

fn text(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}

pub(super) fn describe(
    cx: &Context,
    access: &Access,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    // Kafka's rule: DESCRIBE on the cluster, else the whole request is refused.
    if let Err(code) = check(access, Operation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(code)
            .with_error_message(text("describing users needs DESCRIBE on the cluster"));
    }
    let all = cx.broker.users().list();
    let wanted: Vec<String> = match request.users {
        Some(users) if !users.is_empty() => users.iter().map(|u| u.name.to_string()).collect(),
        _ => all.iter().map(|u| u.name.clone()).collect(),
    };
    let mut seen = BTreeSet::new();
    let results = wanted
        .into_iter()
        .map(|name| {
            let result = DescribeUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(name.clone()));
            if !seen.insert(name.clone()) {
                return result
                    .with_error_code(ResponseError::DuplicateResource.code())
                    .with_error_message(text(format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {name}"
                    )));
            }
            let Some(user) = all.iter().find(|u| u.name == name) else {
                return result.with_error_code(ResponseError::ResourceNotFound.code()).with_error_message(
                    text(format!("Attempt to describe a user credential that does not exist: {name}")),
                );
            };
            let infos = user
                .credentials
                .iter()
                .filter_map(|c| {
                    let scram = c.mechanism.parse::<crate::security::Mechanism>().ok()?.scram()?;
                    let iterations = i32::try_from(c.iterations).ok()?;
                    Some(
                        CredentialInfo::default()
                            .with_mechanism(kafka_number(scram))
                            .with_iterations(iterations),
                    )
                })
                .collect();
            result.with_credential_infos(infos)
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// One change a request asks for.
enum Change {
    Delete(i8),
    Upsert { mechanism: i8, iterations: i32, salt: bytes::Bytes, salted: bytes::Bytes },
}

impl Change {
    fn mechanism(&self) -> i8 {
        match self {
            Change::Delete(m) | Change::Upsert { mechanism: m, .. } => *m,
        }
    }
}

pub(super) async fn alter(
    cx: &Context,
    access: &Access,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Kafka's rule: ALTER on the cluster, else every user's change is refused.
    if let Err(code) = check(access, Operation::Alter, ResourceType::Cluster, CLUSTER_NAME) {
        let names: BTreeSet<String> = request
            .deletions
            .iter()
            .map(|d| d.name.to_string())
            .chain(request.upsertions.iter().map(|u| u.name.to_string()))
            .collect();
        let results = names
            .into_iter()
            .map(|name| {
                AlterUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(name))
                    .with_error_code(code)
                    .with_error_message(text("changing users needs ALTER on the cluster"))
            })
            .collect();
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    // Each user's changes, users in the order they first appear.
    let mut order = Vec::new();
    let mut changes: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    let mut add = |name: String, change: Change| {
        if !changes.contains_key(&name) {
            order.push(name.clone());
        }
        changes.entry(name).or_default().push(change);
    };
    for d in request.deletions {
        add(d.name.to_string(), Change::Delete(d.mechanism));
    }
    for u in request.upsertions {
        let change = Change::Upsert {
            mechanism: u.mechanism,
            iterations: u.iterations,
            salt: u.salt,
            salted: u.salted_password,
        };
        add(u.name.to_string(), change);
    }
    let mut results = Vec::with_capacity(order.len());
    for name in order {
        let outcome = alter_user(cx, &name, changes.remove(&name).unwrap_or_default()).await;
        let mut result =
            AlterUserScramCredentialsResult::default().with_user(StrBytes::from_string(name));
        if let Err((code, message)) = outcome {
            result = result.with_error_code(code.code()).with_error_message(text(message));
        }
        results.push(result);
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// Applies one user's changes in order, stopping at the first refusal.
async fn alter_user(
    cx: &Context,
    name: &str,
    changes: Vec<Change>,
) -> Result<(), (ResponseError, String)> {
    let mechanisms: BTreeSet<i8> = changes.iter().map(Change::mechanism).collect();
    if mechanisms.len() != changes.len() {
        return Err((
            ResponseError::DuplicateResource,
            format!("A user credential cannot be altered twice in the same request: {name}"),
        ));
    }
    if name.is_empty() {
        return Err((ResponseError::UnacceptableCredential, "Username must not be empty".into()));
    }
    let users = cx.broker.users();
    for change in changes {
        let mechanism = change.mechanism();
        let scram = of_kafka(mechanism).ok_or_else(|| {
            (
                ResponseError::UnsupportedSaslMechanism,
                format!("Unknown SCRAM mechanism {mechanism}"),
            )
        })?;
        let done = match change {
            Change::Delete(_) => users.delete_scram(name, scram).await.map_err(|e| match e {
                BrokerError::UnknownUser(_) => (
                    ResponseError::ResourceNotFound,
                    format!("Attempt to delete a user credential that does not exist: {name}"),
                ),
                other => (ResponseError::UnknownServerError, other.to_string()),
            }),
            Change::Upsert { iterations, salt, salted, .. } => {
                let iterations = u32::try_from(iterations).unwrap_or(0);
                let set = users.upsert_salted(name, scram, salt.to_vec(), iterations, &salted);
                set.await.map_err(|e| match e {
                    BrokerError::InvalidUser { reason, .. } => {
                        (ResponseError::UnacceptableCredential, format!("{name}: {reason}"))
                    }
                    other => (ResponseError::UnknownServerError, other.to_string()),
                })
            }
        };
        done?;
    }
    Ok(())
}
