//! The data path for Kafka clients: Metadata, Produce, Fetch, ListOffsets and InitProducerId,
//! translated onto the broker's own requests (the batch bytes pass through untouched: eddy
//! stores Kafka's RecordBatch v2 as it is), run as the connection's principal: a refused
//! topic's partitions are answered TOPIC_AUTHORIZATION_FAILED, and Metadata lists only the
//! topics the principal may DESCRIBE.

use eddy_protocol::v1::{self, request, response};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::authz::{cluster_operations, operations, refusal};
use super::codes::{kafka_code, of_wire};
use super::consumer_group::topic_id;
use super::{Context, NODE_ID};
use crate::error::BrokerError;
use crate::security::acl::{Operation, ResourceType};
use crate::security::acls::Access;
use uuid::Uuid;

pub(super) fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub(super) fn error_code(e: &BrokerError) -> i16 {
    super::authz::refusal_of(e).unwrap_or_else(|| kafka_code(e.code()))
}

/// `body` run on the broker as `access`'s principal from its address.
pub(super) async fn as_caller(
    broker: &crate::broker::Broker,
    access: &Access,
    body: request::Body,
) -> Result<Option<response::Body>, BrokerError> {
    let turn = crate::data::AppendTurn::default();
    broker.handle_from(access.principal(), access.host(), body, turn).await
}

fn broker_entry(cx: &Context) -> MetadataResponseBroker {
    MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(StrBytes::from_string(cx.advertised.host.clone()))
        .with_port(cx.advertised.port)
}

/// Stands for a topic asked for by an id no topic has ('#' cannot start a topic name, so no
/// real topic is ever taken for it).
const UNKNOWN_ID_PREFIX: &str = "#unknown-topic-id:";

pub(super) fn metadata(
    cx: &Context,
    access: &Access,
    r: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // A null list (or, before v1, an empty one) asks for every topic.
    let wanted: Option<Vec<String>> = match r.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        // From v10 a topic may be asked for by id (KIP-848 consumers do); an id no topic has
        // is answered under its own name, unknown.
        Some(t) => Some(
            t.into_iter()
                .filter_map(|t| match t.name {
                    Some(n) => Some(n.0.to_string()),
                    None if !t.topic_id.is_nil() => {
                        let known =
                            cx.broker.topic_names().into_iter().find(|n| topic_id(n) == t.topic_id);
                        // Never auto-created: an id names a topic that exists or existed.
                        Some(known.unwrap_or_else(|| format!("{UNKNOWN_ID_PREFIX}{}", t.topic_id)))
                    }
                    None => None,
                })
                .collect(),
        ),
    };
    // Kafka's default (`auto.create.topics.enable`): a topic a client asks for by name is
    // created with the broker's defaults; before v4 the request could not say no.
    let auto_create = version < 4 || r.allow_auto_topic_creation;
    // Topic operations exist from v8, cluster operations in v8-10 only.
    let topic_ops = version >= 8 && r.include_topic_authorized_operations;
    let cluster_ops = ((8..=10).contains(&version) && r.include_cluster_authorized_operations)
        .then(|| cluster_operations(access));
    let describable = |t: &String| access.allows(Operation::Describe, ResourceType::Topic, t);
    // Every topic: those the principal may describe. Named ones it may not: refused.
    let names = match &wanted {
        Some(names) => names.clone(),
        None => cx.broker.topic_names().into_iter().filter(describable).collect(),
    };
    // Named topics may be created (`auto_create`); listed ones exist.
    let create = auto_create && wanted.is_some();
    let topics = names
        .into_iter()
        .map(|t| topic_entry(cx, access, &t, version, create, topic_ops))
        .collect();
    MetadataResponse::default()
        .with_brokers(vec![broker_entry(cx)])
        .with_cluster_id(Some(StrBytes::from_string(cx.cluster_id.clone())))
        .with_controller_id(BrokerId(NODE_ID))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_ops.unwrap_or(i32::MIN))
}

/// One topic's Metadata entry, as `access` may see it: refused (TOPIC_AUTHORIZATION_FAILED)
/// unless it may DESCRIBE it; created when `create` and it may create it (otherwise unknown,
/// as Kafka answers); its authorized operations when `ops`.
fn topic_entry(
    cx: &Context,
    access: &Access,
    topic_name: &str,
    version: i16,
    create: bool,
    ops: bool,
) -> MetadataResponseTopic {
    let entry = MetadataResponseTopic::default()
        .with_name(Some(name(topic_name)))
        .with_topic_id(if version >= 10 { topic_id(topic_name) } else { Uuid::nil() })
        .with_is_internal(crate::topic::is_internal(topic_name));
    if !access.allows(Operation::Describe, ResourceType::Topic, topic_name) {
        return entry
            .with_error_code(refusal(ResourceType::Topic))
            .with_topic_authorized_operations(i32::MIN);
    }
    let mut topic = cx.broker.topic(topic_name);
    let by_unknown_id = topic_name.starts_with(UNKNOWN_ID_PREFIX);
    if topic.is_err() && create && !by_unknown_id && access.check_create_topic(topic_name).is_ok() {
        topic = match cx.broker.create_topic(topic_name, None) {
            Err(BrokerError::TopicExists(_)) => cx.broker.topic(topic_name),
            other => other,
        };
    }
    let ops = if ops { operations(access, ResourceType::Topic, topic_name) } else { i32::MIN };
    let entry = entry.with_topic_authorized_operations(ops);
    match topic {
        Ok(t) => entry.with_partitions(
            (0..t.partitions.len() as i32)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(NODE_ID))
                        .with_leader_epoch(0)
                        .with_replica_nodes(vec![BrokerId(NODE_ID)])
                        .with_isr_nodes(vec![BrokerId(NODE_ID)])
                })
                .collect(),
        ),
        Err(e) => entry.with_error_code(error_code(&e)),
    }
}

/// Kafka's acks as eddy's: 0 none, 1 written, all (-1) on disk — with one broker, "every
/// in-sync replica has it" can only mean the one copy is durable.
fn acks(acks: i16) -> Option<v1::Acks> {
    match acks {
        0 => Some(v1::Acks::None),
        1 => Some(v1::Acks::Written),
        -1 => Some(v1::Acks::Durable),
        _ => None,
    }
}

pub(super) async fn produce(
    cx: &Context,
    access: &Access,
    r: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let results = match acks(r.acks) {
        None => Err(ResponseError::InvalidRequiredAcks.code()),
        Some(ack) => match super::txn::check_produce(cx, access, &r).await {
            Err(code) => Err(code),
            // The guard (if any) is held until the batches are appended.
            Ok(guard) => {
                let native = native_produce(&r, ack);
                let done = if guard.is_some() {
                    cx.broker
                        .produce_transactional(access, native)
                        .await
                        .map(|p| p.map(response::Body::Produce))
                } else {
                    as_caller(&cx.broker, access, request::Body::Produce(native)).await
                };
                drop(guard);
                match done {
                    Ok(Some(response::Body::Produce(p))) => Ok(p),
                    Ok(_) => Err(ResponseError::UnknownServerError.code()),
                    Err(e) => Err(error_code(&e)),
                }
            }
        },
    };
    // acks 0: the producer is owed no answer, whatever happened.
    if r.acks == 0 {
        return None;
    }
    let responses = r
        .topic_data
        .iter()
        .map(|t| {
            let found =
                results.as_ref().map(|p| p.topics.iter().find(|x| x.topic == t.name.0.as_str()));
            let partition_responses = t
                .partition_data
                .iter()
                .map(|p| {
                    let result = found.map(|f| {
                        f.and_then(|f| {
                            f.partitions
                                .iter()
                                .find(|x| i64::from(x.partition) == i64::from(p.index))
                        })
                    });
                    partition_answer(p.index, result.map_err(|code| *code), version)
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(partition_responses)
        })
        .collect();
    Some(ProduceResponse::default().with_responses(responses))
}

/// The broker's own produce request for a Kafka one. A negative partition index is left out
/// (it is then answered UNKNOWN_TOPIC_OR_PARTITION); the batch bytes are shared, not copied.
fn native_produce(r: &ProduceRequest, acks: v1::Acks) -> v1::ProduceRequest {
    let topics = r
        .topic_data
        .iter()
        .map(|t| v1::ProduceTopic {
            topic: t.name.0.to_string(),
            partitions: t
                .partition_data
                .iter()
                .filter_map(|p| {
                    let partition = u32::try_from(p.index).ok()?;
                    Some(v1::ProducePartition {
                        partition,
                        batch: p.records.clone().unwrap_or_default(),
                    })
                })
                .collect(),
        })
        .collect();
    v1::ProduceRequest { acks: acks as i32, topics }
}

/// One partition's produce answer: the request-wide refusal, the broker's result, or (no
/// result for it) unknown.
fn partition_answer(
    index: i32,
    result: Result<Option<&v1::ProducePartitionResult>, i16>,
    version: i16,
) -> PartitionProduceResponse {
    let answer = PartitionProduceResponse::default()
        .with_index(index)
        .with_log_append_time_ms(-1)
        .with_base_offset(-1);
    match result {
        Err(code) => answer.with_error_code(code),
        Ok(None) => answer.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
        Ok(Some(x)) => match &x.error {
            None => answer.with_base_offset(x.base_offset as i64),
            Some(e) => {
                let code = produce_code(kafka_code(e.code()), version);
                // Error messages exist from v8.
                let message = (version >= 8).then(|| StrBytes::from_string(e.message.clone()));
                answer.with_error_code(code).with_error_message(message)
            }
        },
    }
}

/// INVALID_RECORD exists from Produce v8; older clients know CORRUPT_MESSAGE.
fn produce_code(code: i16, version: i16) -> i16 {
    if code == ResponseError::InvalidRecord.code() && version < 8 {
        ResponseError::CorruptMessage.code()
    } else {
        code
    }
}

pub(super) async fn fetch(cx: &Context, access: &Access, r: FetchRequest) -> FetchResponse {
    // No fetch sessions (KIP-227): session id 0 in the answer tells the client none was
    // created, and it keeps sending full fetches. An incremental fetch of a session that
    // never existed gets FETCH_SESSION_ID_NOT_FOUND, on which clients start over.
    if r.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let topics = r
        .topics
        .iter()
        .map(|t| v1::FetchTopic {
            topic: t.topic.0.to_string(),
            partitions: t
                .partitions
                .iter()
                .map(|p| v1::FetchPartition {
                    partition: u32::try_from(p.partition).unwrap_or(u32::MAX),
                    offset: u64::try_from(p.fetch_offset).unwrap_or(u64::MAX),
                    max_bytes: u32::try_from(p.partition_max_bytes).unwrap_or(0),
                })
                .collect(),
        })
        .collect();
    let read_committed = r.isolation_level == 1;
    let isolation = if read_committed {
        v1::IsolationLevel::ReadCommitted
    } else {
        v1::IsolationLevel::ReadUncommitted
    };
    let request = v1::FetchRequest {
        isolation: isolation as i32,
        member: None,
        max_wait_ms: u32::try_from(r.max_wait_ms).unwrap_or(0),
        min_bytes: u32::try_from(r.min_bytes).unwrap_or(0),
        max_bytes: u32::try_from(r.max_bytes).unwrap_or(0),
        topics,
    };
    let answer = match as_caller(&cx.broker, access, request::Body::Fetch(request)).await {
        Ok(Some(response::Body::Fetch(f))) => f,
        Ok(_) => return FetchResponse::default().with_error_code(-1),
        Err(e) => return FetchResponse::default().with_error_code(error_code(&e)),
    };
    let responses = answer
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let code = of_wire(p.error.as_ref());
                    let (hw, lso, start) = if code == 0 {
                        let (hw, lso) = (p.high_watermark as i64, p.last_stable_offset as i64);
                        (hw, lso, p.log_start_offset as i64)
                    } else {
                        (-1, -1, -1)
                    };
                    // Kafka: the list under read_committed (empty if none), null otherwise.
                    let aborted = read_committed.then(|| {
                        p.aborted
                            .iter()
                            .map(|a| {
                                fetch_response::AbortedTransaction::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_first_offset(a.first_offset as i64)
                            })
                            .collect()
                    });
                    PartitionData::default()
                        .with_partition_index(p.partition as i32)
                        .with_error_code(code)
                        .with_high_watermark(hw)
                        .with_last_stable_offset(lso)
                        .with_log_start_offset(start)
                        .with_aborted_transactions(aborted)
                        .with_preferred_read_replica(BrokerId(-1))
                        .with_records(Some(p.records))
                })
                .collect();
            FetchableTopicResponse::default().with_topic(name(&t.topic)).with_partitions(partitions)
        })
        .collect();
    FetchResponse::default().with_responses(responses)
}

/// Kafka's special timestamps in ListOffsets.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// What a Kafka ListOffsets timestamp asks for in eddy's terms; `None` for a query eddy does
/// not serve (such as -3, the max-timestamp offset of v7, which is not advertised).
fn offset_spec(at: i64) -> Option<(v1::OffsetSpec, i64)> {
    match at {
        LATEST => Some((v1::OffsetSpec::Latest, 0)),
        EARLIEST => Some((v1::OffsetSpec::Earliest, 0)),
        ts if ts >= 0 => Some((v1::OffsetSpec::ByTimestamp, ts)),
        _ => None,
    }
}

pub(super) async fn list_offsets(
    cx: &Context,
    access: &Access,
    r: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let topics = r
        .topics
        .iter()
        .map(|t| v1::ListOffsetsTopic {
            topic: t.name.0.to_string(),
            partitions: t
                .partitions
                .iter()
                .filter_map(|p| {
                    let (spec, timestamp_ms) = offset_spec(p.timestamp)?;
                    let partition = u32::try_from(p.partition_index).ok()?;
                    Some(v1::ListOffsetsPartition { partition, spec: spec as i32, timestamp_ms })
                })
                .collect(),
        })
        .collect();
    // isolation_level exists from v2; read_committed's latest is the last stable offset.
    let isolation = if r.isolation_level == 1 {
        v1::IsolationLevel::ReadCommitted
    } else {
        v1::IsolationLevel::ReadUncommitted
    };
    let request =
        request::Body::ListOffsets(v1::ListOffsetsRequest { topics, isolation: isolation as i32 });
    let answer = match as_caller(&cx.broker, access, request).await {
        Ok(Some(response::Body::ListOffsets(l))) => Ok(l),
        Ok(_) => Err(ResponseError::UnknownServerError.code()),
        Err(e) => Err(error_code(&e)),
    };
    let topics = r
        .topics
        .iter()
        .map(|t| {
            let found =
                answer.as_ref().map(|a| a.topics.iter().find(|x| x.topic == t.name.0.as_str()));
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let result = found.map_err(|code| *code).map(|f| {
                        f.and_then(|f| {
                            f.partitions
                                .iter()
                                .find(|x| i64::from(x.partition) == i64::from(p.partition_index))
                        })
                    });
                    offset_answer(p, result, version)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// One partition's ListOffsets answer from the broker's result for it.
fn offset_answer(
    p: &ListOffsetsPartition,
    result: Result<Option<&v1::ListOffsetsPartitionResult>, i16>,
    version: i16,
) -> ListOffsetsPartitionResponse {
    let entry = ListOffsetsPartitionResponse::default()
        .with_partition_index(p.partition_index)
        .with_timestamp(-1)
        .with_offset(-1);
    match result {
        Err(code) => entry.with_error_code(code),
        Ok(None) if offset_spec(p.timestamp).is_none() => {
            entry.with_error_code(ResponseError::InvalidRequest.code())
        }
        Ok(None) => entry.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
        Ok(Some(x)) if x.error.is_some() => entry.with_error_code(of_wire(x.error.as_ref())),
        // Kafka: no record at or after the time answers offset -1.
        Ok(Some(x)) if p.timestamp >= 0 && !x.found => entry,
        Ok(Some(x)) => {
            let ts = if p.timestamp >= 0 { x.timestamp_ms } else { -1 };
            let entry = entry.with_offset(x.offset as i64).with_timestamp(ts);
            // The leader epoch field exists from v4.
            if version >= 4 { entry.with_leader_epoch(0) } else { entry }
        }
    }
}
