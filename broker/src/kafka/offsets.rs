//! Committed offsets for Kafka clients: OffsetCommit (checked against the classic group's
//! membership and generation here, then written by the broker's coordinator to
//! `__consumer_offsets`) and OffsetFetch, both as the connection's principal: READ (commit) or
//! DESCRIBE (fetch) on the group, else GROUP_AUTHORIZATION_FAILED; the same on each topic,
//! else TOPIC_AUTHORIZATION_FAILED for its partitions.

use std::collections::BTreeMap;
use std::time::Instant;

use eddy_protocol::v1::{self, request, response};
use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::*;

use super::authz::check;
use super::classic::{Refusal, State};
use super::codes::of_wire;
use super::data::{as_caller, error_code, name};
use super::groups::{ClassicGroups, refusal_code, text};
use crate::security::acl::{Operation, ResourceType};
use crate::security::acls::Access;

impl ClassicGroups {
    pub async fn commit(&self, access: &Access, r: OffsetCommitRequest) -> OffsetCommitResponse {
        let group_id = r.group_id.0.to_string();
        let generation = r.generation_id_or_member_epoch;
        let allowed = check(access, Operation::Read, ResourceType::Group, &group_id);
        // A member of a generation, or (generation -1, no member id) a client committing
        // for a group it does not consume in, which only an empty group accepts.
        // A member the classic group does not know is a member of eddy's coordinator (a KIP-848
        // consumer): it commits with its member epoch, which the coordinator checks.
        let mut native_member = false;
        let check = self.with_group(&group_id, |g| {
            if generation < 0 && r.member_id.is_empty() {
                return if g.members.is_empty() { Ok(()) } else { Err(Refusal::UnknownMember) };
            }
            if g.members.is_empty() && !r.member_id.is_empty() {
                native_member = true;
                return Ok(());
            }
            g.touch(r.member_id.as_str(), generation, Instant::now())?;
            if g.state == State::CompletingRebalance {
                return Err(Refusal::RebalanceInProgress);
            }
            Ok(())
        });
        let answer = |code: &dyn Fn(&str, i32) -> i16| {
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code(t.name.0.as_str(), p.partition_index))
                        })
                        .collect();
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
            OffsetCommitResponse::default().with_topics(topics)
        };
        if let Err(code) = allowed {
            return answer(&|_, _| code);
        }
        if let Err(refusal) = check {
            return answer(&|_, _| refusal_code(refusal));
        }
        let topics = r
            .topics
            .iter()
            .map(|t| v1::OffsetCommitTopic {
                topic: t.name.0.to_string(),
                partitions: t
                    .partitions
                    .iter()
                    .filter(|p| p.partition_index >= 0 && p.committed_offset >= 0)
                    .map(|p| v1::OffsetCommitPartition {
                        partition: p.partition_index as u32,
                        offset: p.committed_offset as u64,
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect();
        let (member_id, member_epoch) =
            if native_member { (r.member_id.to_string(), generation) } else { (String::new(), -1) };
        let request = v1::OffsetCommitRequest { group_id, member_id, member_epoch, topics };
        match as_caller(&self.broker, access, request::Body::OffsetCommit(request)).await {
            Ok(Some(response::Body::OffsetCommit(c))) => answer(&|topic, partition| {
                let result = c.topics.iter().find(|t| t.topic == topic).and_then(|t| {
                    t.partitions.iter().find(|p| i64::from(p.partition) == i64::from(partition))
                });
                match result {
                    Some(p) => of_wire(p.error.as_ref()),
                    None => K::InvalidCommitOffsetSize.code(),
                }
            }),
            Ok(_) => answer(&|_, _| K::UnknownServerError.code()),
            Err(e) => {
                let code = error_code(&e);
                answer(&|_, _| code)
            }
        }
    }

    pub async fn fetch_offsets(
        &self,
        access: &Access,
        r: OffsetFetchRequest,
    ) -> OffsetFetchResponse {
        if let Err(code) =
            check(access, Operation::Describe, ResourceType::Group, r.group_id.0.as_str())
        {
            return OffsetFetchResponse::default().with_error_code(code);
        }
        let describable =
            |t: &str| check(access, Operation::Describe, ResourceType::Topic, t).is_ok();
        let partitions: Vec<v1::TopicPartitions> = r
            .topics
            .as_ref()
            .map(|topics| {
                topics
                    .iter()
                    .filter(|t| describable(t.name.0.as_str()))
                    .map(|t| v1::TopicPartitions {
                        topic: t.name.0.to_string(),
                        partitions: t
                            .partition_indexes
                            .iter()
                            .filter_map(|p| u32::try_from(*p).ok())
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Named topics all refused: nothing to ask (an empty list would ask for every one).
        let nothing_left = r.topics.is_some() && partitions.is_empty();
        let request = v1::OffsetFetchRequest { group_id: r.group_id.0.to_string(), partitions };
        let asked = if nothing_left {
            Ok(Some(response::Body::OffsetFetch(v1::OffsetFetchResponse::default())))
        } else {
            as_caller(&self.broker, access, request::Body::OffsetFetch(request)).await
        };
        let committed = match asked {
            Ok(Some(response::Body::OffsetFetch(f))) => f.offsets,
            Ok(_) => {
                return OffsetFetchResponse::default()
                    .with_error_code(K::UnknownServerError.code());
            }
            Err(e) => return OffsetFetchResponse::default().with_error_code(error_code(&e)),
        };
        let mut by_topic: BTreeMap<String, Vec<OffsetFetchResponsePartition>> = BTreeMap::new();
        for c in committed {
            by_topic.entry(c.topic.clone()).or_default().push(
                OffsetFetchResponsePartition::default()
                    .with_partition_index(c.partition as i32)
                    .with_committed_offset(c.offset.map_or(-1, |o| o as i64))
                    .with_committed_leader_epoch(-1)
                    .with_metadata(Some(text(c.metadata))),
            );
        }
        if let Some(topics) = &r.topics {
            complete(&mut by_topic, topics, &describable);
        }
        let topics = by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                OffsetFetchResponseTopic::default()
                    .with_name(name(&topic))
                    .with_partitions(partitions)
            })
            .collect();
        OffsetFetchResponse::default().with_topics(topics)
    }
}

/// Asked-for partitions of topics that do not exist are answered as never committed; those of
/// topics the principal may not describe, refused (TOPIC_AUTHORIZATION_FAILED).
fn complete(
    by_topic: &mut BTreeMap<String, Vec<OffsetFetchResponsePartition>>,
    topics: &[offset_fetch_request::OffsetFetchRequestTopic],
    describable: &dyn Fn(&str) -> bool,
) {
    for t in topics {
        let refused = !describable(t.name.0.as_str());
        let entry = by_topic.entry(t.name.0.to_string()).or_default();
        for p in &t.partition_indexes {
            if !entry.iter().any(|x| x.partition_index == *p) {
                let code = if refused { K::TopicAuthorizationFailed.code() } else { 0 };
                entry.push(
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(-1)
                        .with_committed_leader_epoch(-1)
                        .with_metadata(Some(text("")))
                        .with_error_code(code),
                );
            }
        }
    }
}
