//! Authorization of native requests, in one place: [`admit`] decides, for every request kind,
//! which operations on which resources it needs, before the request runs; [`finish`] trims the
//! answer. Requests reach each service's check through `crate::service` (an exhaustive `match`:
//! a new kind does not compile without a service), and a kind its service's check does not
//! name is refused, never let through.
//!
//! Three shapes, as Kafka's:
//! - A request about one resource (create or delete a topic, a group, a processor, a
//!   connector; the ACL requests on the cluster) is refused whole with `AUTHORIZATION_FAILED`
//!   naming the principal, the operation and the resource.
//! - A request with per-topic parts (produce, fetch, list offsets, offset commit, metadata
//!   naming topics) runs on the topics allowed; each refused topic's partitions are answered
//!   with `AUTHORIZATION_FAILED` in the body, as a missing topic would be.
//! - A listing (list topics, metadata of every topic, groups, processors, connectors, committed
//!   offsets) leaves out what the principal may not DESCRIBE.
//!
//! SQL is checked per statement by the SQL service (`crate::sql`), and what processors and
//! connectors touch when they run by the registries (the owner's rights).

use eddy_protocol::v1::{self, request, response};

use crate::error::BrokerError;
use crate::processors::Processors;
use crate::processors::definition::Definition;
use crate::security::acl::{CLUSTER_NAME, Operation as O, ResourceType as T};
use crate::security::acls::Access;
use crate::service::{Service, service};

/// A request after its check: run `body` (what is left of the request), then [`finish`] the
/// answer with `patch`.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub body: request::Body,
    pub patch: Patch,
}

/// What [`finish`] does to an answer.
#[derive(Debug)]
pub(crate) enum Patch {
    None,
    /// Answers for the topics taken out of the request, added to the answer.
    Produce(Vec<v1::ProduceTopicResult>),
    Fetch(Vec<v1::FetchTopicResult>),
    ListOffsets(Vec<v1::ListOffsetsTopicResult>),
    OffsetCommit(Vec<v1::OffsetCommitTopicResult>),
    Metadata(Vec<v1::TopicMetadata>),
    /// Keep only the entries the principal may DESCRIBE.
    Describable,
}

fn run(body: request::Body) -> Result<Admitted, BrokerError> {
    Ok(Admitted { body, patch: Patch::None })
}

fn run_patched(body: request::Body, patch: Patch) -> Result<Admitted, BrokerError> {
    Ok(Admitted { body, patch })
}

/// Checks `body` for `access`; `Err(Unauthorized)` when it is refused whole.
pub(crate) fn admit(
    access: &Access,
    processors: &Processors,
    body: request::Body,
) -> Result<Admitted, BrokerError> {
    if !access.restricted() {
        return run(body);
    }
    // Each service's check looks at every kind of its own exhaustively.
    match service(&body) {
        Service::Data => data(access, body),
        Service::Groups => groups(access, body),
        Service::Processing => processing(access, processors, body),
        Service::Connectors | Service::Acls | Service::Users => admin(access, body),
        // The connection's listener answers these before the broker sees them; a principal
        // needs no right to authenticate.
        Service::Sasl => run(body),
    }
}

/// A request handed to the check of another kind: refused (`admit` routes exhaustively, so
/// this is a bug, and a check never passes a request it did not look at).
fn misrouted() -> Result<Admitted, BrokerError> {
    Err(BrokerError::Malformed("a request routed to the wrong check"))
}

/// Topics, produce, fetch and the handshake.
fn data(access: &Access, body: request::Body) -> Result<Admitted, BrokerError> {
    use request::Body as Rq;
    match body {
        Rq::ApiVersions(_) => run(body),
        Rq::Metadata(r) => metadata(access, r),
        Rq::CreateTopic(ref r) => access.check_create_topic(&r.name).and_then(|()| run(body)),
        Rq::DeleteTopic(ref r) => {
            access.check(O::Delete, T::Topic, &r.name).and_then(|()| run(body))
        }
        Rq::ListTopics(_) => run_patched(body, Patch::Describable),
        Rq::DescribeTopic(ref r) => {
            access.check(O::Describe, T::Topic, &r.name).and_then(|()| run(body))
        }
        Rq::Produce(r) => Ok(produce(access, r)),
        Rq::Fetch(r) => Ok(fetch(access, r)),
        Rq::ListOffsets(r) => Ok(list_offsets(access, r)),
        // Kafka's rule (KIP-679): IDEMPOTENT_WRITE on the cluster, or WRITE on a topic.
        Rq::InitProducer(_) if access.allows_any(O::Write, T::Topic) => run(body),
        Rq::InitProducer(_) => {
            access.check(O::IdempotentWrite, T::Cluster, CLUSTER_NAME).and_then(|()| run(body))
        }
        _ => misrouted(),
    }
}

/// Consumer groups.
fn groups(access: &Access, body: request::Body) -> Result<Admitted, BrokerError> {
    use request::Body as Rq;
    match body {
        Rq::GroupHeartbeat(ref r) => {
            access.check(O::Read, T::Group, &r.group_id)?;
            for topic in &r.subscribed_topics {
                access.check(O::Describe, T::Topic, topic)?;
            }
            run(body)
        }
        Rq::OffsetCommit(r) => {
            access.check(O::Read, T::Group, &r.group_id)?;
            Ok(offset_commit(access, r))
        }
        Rq::OffsetFetch(ref r) => {
            access.check(O::Describe, T::Group, &r.group_id)?;
            for t in &r.partitions {
                access.check(O::Describe, T::Topic, &t.topic)?;
            }
            run_patched(body, Patch::Describable)
        }
        Rq::ListGroups(_) if access.allows(O::Describe, T::Cluster, CLUSTER_NAME) => run(body),
        Rq::ListGroups(_) => run_patched(body, Patch::Describable),
        // Its committed offsets and lag: of the topics the principal may describe.
        Rq::DescribeGroup(ref r) => {
            access.check(O::Describe, T::Group, &r.group_id)?;
            run_patched(body, Patch::Describable)
        }
        Rq::ResetGroupOffsets(ref r) => {
            access.check(O::Read, T::Group, &r.group_id)?;
            access.check(O::Read, T::Topic, &r.topic).and_then(|()| run(body))
        }
        Rq::DeleteGroup(ref r) => {
            access.check(O::Delete, T::Group, &r.group_id).and_then(|()| run(body))
        }
        _ => misrouted(),
    }
}

/// Processors, table queries and SQL.
fn processing(
    access: &Access,
    processors: &Processors,
    body: request::Body,
) -> Result<Admitted, BrokerError> {
    use request::Body as Rq;
    let (op, name) = match &body {
        // The topics it reads and writes are checked as its owner's by the registry; a spec
        // that does not parse is refused there (INVALID_PROCESSOR_SPEC) with nothing started.
        Rq::DeployProcessor(r) => match Definition::parse(&r.spec) {
            Ok(def) => (O::Create, def.name().to_string()),
            Err(_) => return run(body),
        },
        Rq::ListProcessors(_) => return run_patched(body, Patch::Describable),
        Rq::ProcessorStatus(r) => (O::Describe, r.name.clone()),
        Rq::RollbackProcessor(r) => (O::Alter, r.name.clone()),
        Rq::ReplayProcessor(r) => (O::Alter, r.name.clone()),
        // A table that no processor, or several, serve is refused by the query itself.
        Rq::QueryTable(r) => match processors.table_processor(&r.table) {
            Some(p) => (O::Read, p),
            None => return run(body),
        },
        Rq::DropProcessor(r) => (O::Delete, r.name.clone()),
        // Per statement, by the SQL service.
        Rq::Sql(_) => return run(body),
        _ => return misrouted(),
    };
    access.check(op, T::Processor, &name).and_then(|()| run(body))
}

/// Connectors and ACLs.
fn admin(access: &Access, body: request::Body) -> Result<Admitted, BrokerError> {
    use request::Body as Rq;
    let (op, kind, name) = match &body {
        Rq::CreateConnector(r) => (O::Create, T::Connector, r.name.as_str()),
        Rq::ListConnectors(_) => return run_patched(body, Patch::Describable),
        Rq::ConnectorStatus(r) => (O::Describe, T::Connector, r.name.as_str()),
        Rq::DropConnector(r) => (O::Delete, T::Connector, r.name.as_str()),
        Rq::PauseConnector(r) => (O::Alter, T::Connector, r.name.as_str()),
        Rq::CreateAcls(_) | Rq::DeleteAcls(_) => (O::Alter, T::Cluster, CLUSTER_NAME),
        Rq::ListAcls(_) => (O::Describe, T::Cluster, CLUSTER_NAME),
        // Users, as Kafka's AlterUserScramCredentials / DescribeUserScramCredentials.
        Rq::CreateUser(_) | Rq::AlterUser(_) | Rq::DeleteUser(_) => {
            (O::Alter, T::Cluster, CLUSTER_NAME)
        }
        Rq::ListUsers(_) => (O::Describe, T::Cluster, CLUSTER_NAME),
        _ => return misrouted(),
    };
    access.check(op, kind, name)?;
    run(body)
}

/// The refusal of `op` on `topic`, as a wire error.
fn refusal(access: &Access, op: O, topic: &str) -> Option<v1::Error> {
    access.check(op, T::Topic, topic).err().map(|e| e.to_wire())
}

fn metadata(access: &Access, r: v1::MetadataRequest) -> Result<Admitted, BrokerError> {
    if r.topics.is_empty() {
        return run_patched(request::Body::Metadata(r), Patch::Describable);
    }
    // The request runs whole (an empty list would ask for every topic); the refused topics'
    // entries are replaced in the answer.
    let denied = r
        .topics
        .iter()
        .filter_map(|name| {
            let error = refusal(access, O::Describe, name)?;
            Some(v1::TopicMetadata { name: name.clone(), error: Some(error), partitions: vec![] })
        })
        .collect();
    run_patched(request::Body::Metadata(r), Patch::Metadata(denied))
}

/// Takes the topics `op` is refused on out of `topics`, and answers each with `refused` (its
/// partitions with the wire error): a per-topic request runs on what is left.
fn take_refused<Topic, Answer>(
    access: &Access,
    op: O,
    topics: &mut Vec<Topic>,
    name: impl Fn(&Topic) -> &str,
    refused: impl Fn(&Topic, v1::Error) -> Answer,
) -> Vec<Answer> {
    let mut denied = Vec::new();
    topics.retain(|t| match refusal(access, op, name(t)) {
        None => true,
        Some(error) => {
            denied.push(refused(t, error));
            false
        }
    });
    denied
}

fn produce(access: &Access, mut r: v1::ProduceRequest) -> Admitted {
    let denied = take_refused(
        access,
        O::Write,
        &mut r.topics,
        |t| &t.topic,
        |t, error| {
            let partitions = t.partitions.iter().map(|p| v1::ProducePartitionResult {
                partition: p.partition,
                error: Some(error.clone()),
                ..Default::default()
            });
            v1::ProduceTopicResult { topic: t.topic.clone(), partitions: partitions.collect() }
        },
    );
    Admitted { body: request::Body::Produce(r), patch: Patch::Produce(denied) }
}

fn fetch(access: &Access, mut r: v1::FetchRequest) -> Admitted {
    let denied = take_refused(
        access,
        O::Read,
        &mut r.topics,
        |t| &t.topic,
        |t, error| {
            let partitions = t.partitions.iter().map(|p| v1::FetchPartitionResult {
                partition: p.partition,
                error: Some(error.clone()),
                ..Default::default()
            });
            v1::FetchTopicResult { topic: t.topic.clone(), partitions: partitions.collect() }
        },
    );
    Admitted { body: request::Body::Fetch(r), patch: Patch::Fetch(denied) }
}

fn list_offsets(access: &Access, mut r: v1::ListOffsetsRequest) -> Admitted {
    let denied = take_refused(
        access,
        O::Describe,
        &mut r.topics,
        |t| &t.topic,
        |t, error| {
            let partitions = t.partitions.iter().map(|p| v1::ListOffsetsPartitionResult {
                partition: p.partition,
                error: Some(error.clone()),
                ..Default::default()
            });
            v1::ListOffsetsTopicResult { topic: t.topic.clone(), partitions: partitions.collect() }
        },
    );
    Admitted { body: request::Body::ListOffsets(r), patch: Patch::ListOffsets(denied) }
}

fn offset_commit(access: &Access, mut r: v1::OffsetCommitRequest) -> Admitted {
    let denied = take_refused(
        access,
        O::Read,
        &mut r.topics,
        |t| &t.topic,
        |t, error| {
            let partitions = t.partitions.iter().map(|p| v1::OffsetCommitPartitionResult {
                partition: p.partition,
                error: Some(error.clone()),
            });
            v1::OffsetCommitTopicResult { topic: t.topic.clone(), partitions: partitions.collect() }
        },
    );
    Admitted { body: request::Body::OffsetCommit(r), patch: Patch::OffsetCommit(denied) }
}

/// `answer` with the refused parts added and what may not be described left out.
pub(crate) fn finish(access: &Access, patch: Patch, answer: response::Body) -> response::Body {
    use response::Body as Rs;
    let seen = |kind: T, name: &str| access.allows(O::Describe, kind, name);
    match (patch, answer) {
        (Patch::None, answer) => answer,
        (Patch::Produce(denied), Rs::Produce(mut p)) => {
            p.topics.extend(denied);
            Rs::Produce(p)
        }
        (Patch::Fetch(denied), Rs::Fetch(mut f)) => {
            f.topics.extend(denied);
            Rs::Fetch(f)
        }
        (Patch::ListOffsets(denied), Rs::ListOffsets(mut l)) => {
            l.topics.extend(denied);
            Rs::ListOffsets(l)
        }
        (Patch::OffsetCommit(denied), Rs::OffsetCommit(mut c)) => {
            c.topics.extend(denied);
            Rs::OffsetCommit(c)
        }
        (Patch::Metadata(denied), Rs::Metadata(mut m)) => {
            for entry in &mut m.topics {
                if let Some(d) = denied.iter().find(|d| d.name == entry.name) {
                    *entry = d.clone();
                }
            }
            Rs::Metadata(m)
        }
        (Patch::Describable, Rs::Metadata(mut m)) => {
            m.topics.retain(|t| seen(T::Topic, &t.name));
            Rs::Metadata(m)
        }
        (Patch::Describable, Rs::ListTopics(mut l)) => {
            l.names.retain(|t| seen(T::Topic, t));
            Rs::ListTopics(l)
        }
        (Patch::Describable, Rs::OffsetFetch(mut f)) => {
            f.offsets.retain(|o| seen(T::Topic, &o.topic));
            Rs::OffsetFetch(f)
        }
        (Patch::Describable, Rs::DescribeGroup(mut d)) => {
            d.offsets.retain(|o| seen(T::Topic, &o.topic));
            Rs::DescribeGroup(d)
        }
        (Patch::Describable, Rs::ListGroups(mut l)) => {
            l.groups.retain(|g| seen(T::Group, &g.group_id));
            Rs::ListGroups(l)
        }
        (Patch::Describable, Rs::ListProcessors(mut l)) => {
            l.processors.retain(|p| seen(T::Processor, &p.name));
            Rs::ListProcessors(l)
        }
        (Patch::Describable, Rs::ListConnectors(mut l)) => {
            l.connectors.retain(|c| seen(T::Connector, &c.name));
            Rs::ListConnectors(l)
        }
        // A patch for another answer kind cannot happen (admit pairs them); the answer stands.
        (_, answer) => answer,
    }
}
