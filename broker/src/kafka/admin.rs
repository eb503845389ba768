//! Topic administration for Kafka clients: CreateTopics, DeleteTopics, CreatePartitions,
//! DescribeConfigs and DescribeCluster, over the broker's topics.
//!
//! Topic configs use Kafka's names. Those eddy keeps per topic are `cleanup.policy`,
//! `retention.ms`, `retention.bytes` and `segment.bytes`; the ones whose only meaningful value
//! on one node is fixed (`min.insync.replicas` 1, `compression.type` producer,
//! `message.timestamp.type` CreateTime) are accepted at that value; anything else is refused
//! with INVALID_CONFIG naming it, as Kafka refuses a config it does not know.
//!
//! ACLs as Kafka's: CreateTopics needs CREATE on the cluster or the topic, DeleteTopics
//! DELETE, CreatePartitions ALTER, DescribeConfigs DESCRIBE_CONFIGS on the topic (or the
//! cluster, for the broker's configs); a refused topic is answered TOPIC_AUTHORIZATION_FAILED
//! (the cluster: CLUSTER_AUTHORIZATION_FAILED), the others are done. DescribeCluster needs
//! nothing; its authorized operations are the principal's.

use eddy_protocol::v1;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::authz::{check, cluster_operations};
use super::data::error_code;
use super::{Context, NODE_ID};
use crate::security::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::security::acls::Access;
use crate::topic::{CleanupSetting, TopicSettings};

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Kafka topic configs onto eddy's topic config; `Err` names the first that cannot be kept.
fn topic_config(
    partitions: i32,
    configs: &[CreatableTopicConfig],
) -> Result<v1::TopicConfig, String> {
    let mut c = v1::TopicConfig {
        partitions: (partitions != -1).then_some(partitions.max(0) as u32),
        ..Default::default()
    };
    for entry in configs {
        let key = entry.name.as_str();
        let value = entry.value.as_ref().map(|v| v.as_str()).unwrap_or_default();
        let bad = || format!("{key}={value:?} is not a value eddy accepts");
        match key {
            "cleanup.policy" => {
                let policy = match value {
                    "delete" => v1::CleanupPolicy::Delete,
                    "compact" => v1::CleanupPolicy::Compact,
                    _ => {
                        return Err(format!(
                            "{key}={value:?}: eddy keeps \"delete\" or \"compact\""
                        ));
                    }
                };
                c.cleanup = Some(policy as i32);
            }
            "retention.ms" => c.retention_ms = Some(value.parse().map_err(|_| bad())?),
            "retention.bytes" => {
                let bytes: i64 = value.parse().map_err(|_| bad())?;
                c.retention_bytes = u64::try_from(bytes).ok();
            }
            "segment.bytes" => c.segment_bytes = Some(value.parse().map_err(|_| bad())?),
            "min.insync.replicas" if value == "1" => {}
            "compression.type" if value == "producer" => {}
            "message.timestamp.type" if value == "CreateTime" => {}
            _ => return Err(format!("topic config {key}={value:?} is not supported by eddy")),
        }
    }
    Ok(c)
}

pub(super) fn create_topics(
    cx: &Context,
    access: &Access,
    r: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let topics =
        r.topics.iter().map(|t| create_one(cx, access, t, r.validate_only, version)).collect();
    CreateTopicsResponse::default().with_topics(topics)
}

/// Creates (or, with `validate_only`, checks) one topic of a CreateTopics request.
fn create_one(
    cx: &Context,
    access: &Access,
    t: &CreatableTopic,
    validate_only: bool,
    version: i16,
) -> CreatableTopicResult {
    let answer = CreatableTopicResult::default()
        .with_name(t.name.clone())
        .with_num_partitions(-1)
        .with_replication_factor(-1);
    let fail = |code: ResponseError, message: String| {
        answer.clone().with_error_code(code.code()).with_error_message(Some(text(message)))
    };
    if let Err(e) = access.check_create_topic(t.name.0.as_str()) {
        return fail(ResponseError::TopicAuthorizationFailed, e.to_string());
    }
    if t.replication_factor != -1 && t.replication_factor != 1 {
        let message =
            format!("replication factor {} on a one-broker cluster", t.replication_factor);
        return fail(ResponseError::InvalidReplicationFactor, message);
    }
    if !t.assignments.is_empty() {
        let message = "eddy places every partition on its one broker".to_string();
        return fail(ResponseError::InvalidReplicaAssignment, message);
    }
    if t.num_partitions == 0 || t.num_partitions < -1 {
        return fail(ResponseError::InvalidPartitions, format!("{} partitions", t.num_partitions));
    }
    let config = match topic_config(t.num_partitions, &t.configs) {
        Ok(c) => c,
        Err(message) => return fail(ResponseError::InvalidConfig, message),
    };
    let topic = t.name.0.as_str();
    let created = if validate_only {
        crate::topic::validate_name(topic)
            .and_then(|()| {
                TopicSettings::resolve(Some(&config), &cx.broker.config().topic_defaults)
            })
            .and_then(|s| match cx.broker.topic(topic) {
                Ok(_) => Err(crate::error::BrokerError::TopicExists(topic.to_string())),
                Err(_) => Ok(s),
            })
    } else {
        cx.broker.create_topic(topic, Some(&config)).map(|t| t.settings.clone())
    };
    match created {
        // The created topic's partitions and configs are answered from v5.
        Ok(_) if version < 5 => answer,
        Ok(settings) => created_answer(cx, access, answer, topic, &settings),
        Err(e) => {
            answer.with_error_code(error_code(&e)).with_error_message(Some(text(e.to_string())))
        }
    }
}

/// A created topic's answer (v5+): its partitions, and its configs to a principal that may
/// describe them (else TOPIC_AUTHORIZATION_FAILED in their place, as Kafka).
fn created_answer(
    cx: &Context,
    access: &Access,
    answer: CreatableTopicResult,
    topic: &str,
    settings: &TopicSettings,
) -> CreatableTopicResult {
    let answer = answer.with_num_partitions(settings.partitions as i32).with_replication_factor(1);
    if check(access, Operation::DescribeConfigs, ResourceType::Topic, topic).is_err() {
        return answer.with_topic_config_error_code(ResponseError::TopicAuthorizationFailed.code());
    }
    let configs = describe(settings, cx.broker.config().limits.max_batch_bytes)
        .into_iter()
        .map(|(k, v)| {
            CreatableTopicConfigs::default()
                .with_name(text(k))
                .with_value(Some(text(v)))
                .with_config_source(5)
        })
        .collect();
    answer.with_configs(Some(configs))
}

pub(super) fn delete_topics(
    cx: &Context,
    access: &Access,
    r: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let responses = r
        .topic_names
        .iter()
        .map(|t| {
            let answer = DeletableTopicResult::default().with_name(Some(t.clone()));
            let topic = t.0.as_str();
            let deleted =
                if let Err(e) = access.check(Operation::Delete, ResourceType::Topic, topic) {
                    Err(e)
                } else if crate::topic::is_internal(topic) {
                    Err(crate::error::BrokerError::InternalTopic(topic.to_string()))
                } else {
                    cx.broker.delete_topic(topic)
                };
            match deleted {
                Ok(()) => answer,
                // Error messages exist from v5.
                Err(e) if version < 5 => answer.with_error_code(error_code(&e)),
                Err(e) => answer
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(text(e.to_string()))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(super) fn create_partitions(
    cx: &Context,
    access: &Access,
    r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let results = r
        .topics
        .iter()
        .map(|t| {
            let answer = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let allowed = access.check(Operation::Alter, ResourceType::Topic, t.name.0.as_str());
            let outcome = match allowed.and_then(|()| cx.broker.topic(t.name.0.as_str())) {
                Err(e) => Err((error_code(&e), e.to_string())),
                Ok(topic) => {
                    let have = topic.partitions.len() as i32;
                    if t.count < have {
                        Err((
                            ResponseError::InvalidPartitions.code(),
                            format!(
                                "topic has {have} partitions; a count of {} would remove some",
                                t.count
                            ),
                        ))
                    } else if t.count == have {
                        Err((
                            ResponseError::InvalidPartitions.code(),
                            format!("topic already has {have} partitions"),
                        ))
                    } else if r.validate_only {
                        Ok(())
                    } else {
                        cx.broker
                            .add_partitions(t.name.0.as_str(), t.count as u32)
                            .map(drop)
                            .map_err(|e| {
                                // A processor reads the topic: Kafka's nearest refusal is a policy.
                                let code = match e {
                                    crate::error::BrokerError::SourceInUse { .. } => {
                                        ResponseError::PolicyViolation.code()
                                    }
                                    _ => error_code(&e),
                                };
                                (code, e.to_string())
                            })
                    }
                }
            };
            match outcome {
                Ok(()) => answer,
                Err((code, message)) => {
                    answer.with_error_code(code).with_error_message(Some(text(message)))
                }
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

/// A topic's settings under Kafka's config names.
fn describe(s: &TopicSettings, max_batch_bytes: u32) -> Vec<(&'static str, String)> {
    let cleanup = match s.cleanup {
        CleanupSetting::Delete => "delete",
        CleanupSetting::Compact => "compact",
    };
    vec![
        ("cleanup.policy", cleanup.into()),
        ("retention.ms", s.retention_ms.unwrap_or(-1).to_string()),
        ("retention.bytes", s.retention_bytes.map_or(-1, |b| b as i64).to_string()),
        ("segment.bytes", s.segment_bytes.to_string()),
        ("max.message.bytes", max_batch_bytes.to_string()),
        ("min.insync.replicas", "1".into()),
        ("compression.type", "producer".into()),
        ("message.timestamp.type", "CreateTime".into()),
    ]
}

/// Kafka's resource types in DescribeConfigs.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

pub(super) fn describe_configs(
    cx: &Context,
    access: &Access,
    r: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let max_batch = cx.broker.config().limits.max_batch_bytes;
    let results = r
        .resources
        .iter()
        .map(|res| {
            let answer = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let allowed = match res.resource_type {
                TOPIC => access.check(
                    Operation::DescribeConfigs,
                    ResourceType::Topic,
                    res.resource_name.as_str(),
                ),
                _ => access.check(Operation::DescribeConfigs, ResourceType::Cluster, CLUSTER_NAME),
            };
            if let Err(e) = allowed {
                return answer
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(text(e.to_string())));
            }
            let (configs, source) = match res.resource_type {
                TOPIC => match cx.broker.topic(res.resource_name.as_str()) {
                    Ok(t) => (describe(&t.settings, max_batch), 1),
                    Err(e) => {
                        return answer
                            .with_error_code(error_code(&e))
                            .with_error_message(Some(text(e.to_string())));
                    }
                },
                BROKER => (describe(&cx.broker.config().topic_defaults, max_batch), 5),
                other => {
                    return answer
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(text(format!(
                            "resource type {other} is not described by eddy"
                        ))));
                }
            };
            let wanted = |k: &str| {
                res.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|w| w.as_str() == k))
            };
            let configs = configs
                .into_iter()
                .filter(|(k, _)| wanted(k))
                .map(|(k, v)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(text(k))
                        .with_value(Some(text(v)))
                        .with_config_source(source)
                        .with_read_only(res.resource_type == BROKER)
                })
                .collect();
            answer.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

pub(super) fn describe_cluster(
    cx: &Context,
    access: &Access,
    r: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let ops =
        if r.include_cluster_authorized_operations { cluster_operations(access) } else { i32::MIN };
    DescribeClusterResponse::default()
        .with_cluster_authorized_operations(ops)
        .with_cluster_id(text(cx.cluster_id.clone()))
        .with_controller_id(BrokerId(NODE_ID))
        .with_brokers(vec![
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(NODE_ID))
                .with_host(text(cx.advertised.host.clone()))
                .with_port(cx.advertised.port),
        ])
}
