//! KIP-848's consumer group protocol for Kafka clients (`group.protocol=consumer`):
//! ConsumerGroupHeartbeat served by eddy's own broker-side coordinator, which has that shape
//! already (member epochs, assignment computed by the broker, revoke before reassign). A
//! member of this protocol is an eddy member like any other: it shares groups with
//! `eddy consume --group` members, and commits with its member epoch.
//!
//! Kafka names topics by id in this protocol; eddy's topic ids are derived from the names
//! (see [`topic_id`]). A heartbeat may leave its subscription or owned partitions out when
//! they did not change; the last ones sent are kept per member, as the coordinator needs them
//! on every heartbeat.

use std::collections::BTreeMap;
use std::sync::Mutex;

use eddy_protocol::v1::{self, request, response};
use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::*;
use uuid::Uuid;

use super::data::{as_caller, error_code};
use super::groups::{Caller, text};
use crate::broker::Broker;
use crate::security::acls::Access;

/// A topic's id: a UUID derived from its name (FNV-1a over 128 bits, with the version and
/// variant bits of a UUID v8, "custom"). Stable across restarts; unlike Kafka's, a topic
/// deleted and created again gets the same id.
pub fn topic_id(name: &str) -> Uuid {
    let hash = super::fnv1a_128(name.as_bytes());
    let bits = (hash & !(0xF << 76) & !(0x3 << 62)) | (0x8 << 76) | (0x2 << 62);
    Uuid::from_u128(bits)
}

/// What a member last sent that a later heartbeat may leave out.
#[derive(Debug, Clone, Default)]
struct Remembered {
    subscriptions: Vec<String>,
    assignor: String,
    owned: Vec<v1::TopicPartitions>,
}

/// The KIP-848 side of the Kafka listener.
#[derive(Debug)]
pub(crate) struct ConsumerGroups {
    broker: Broker,
    members: Mutex<BTreeMap<(String, String), Remembered>>,
}

impl ConsumerGroups {
    pub fn new(broker: Broker) -> ConsumerGroups {
        ConsumerGroups { broker, members: Mutex::new(BTreeMap::new()) }
    }

    /// The topic name for `id`, among the broker's topics.
    fn topic_name(&self, id: &Uuid) -> Option<String> {
        self.broker.topic_names().into_iter().find(|n| topic_id(n) == *id)
    }

    /// One heartbeat, as `access`'s: the broker's own heartbeat checks READ on the group and
    /// DESCRIBE on every subscribed topic.
    pub async fn heartbeat(
        &self,
        access: &Access,
        r: ConsumerGroupHeartbeatRequest,
        caller: &Caller,
    ) -> ConsumerGroupHeartbeatResponse {
        let group = r.group_id.0.to_string();
        let key = (group.clone(), r.member_id.to_string());
        let remembered = {
            let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
            let entry = members.entry(key.clone()).or_default();
            if let Some(topics) = &r.subscribed_topic_names {
                entry.subscriptions = topics.iter().map(|t| t.0.to_string()).collect();
            }
            if let Some(assignor) = &r.server_assignor {
                // KIP-848's "uniform" assignor is a sticky one; "range" is range.
                entry.assignor = match assignor.as_str() {
                    "uniform" => "sticky".to_string(),
                    other => other.to_string(),
                };
            }
            if let Some(owned) = &r.topic_partitions {
                entry.owned = owned
                    .iter()
                    .filter_map(|tp| {
                        Some(v1::TopicPartitions {
                            topic: self.topic_name(&tp.topic_id)?,
                            partitions: tp
                                .partitions
                                .iter()
                                .filter_map(|p| u32::try_from(*p).ok())
                                .collect(),
                        })
                    })
                    .collect();
            }
            entry.clone()
        };
        let request = v1::GroupHeartbeatRequest {
            group_id: group,
            member_id: r.member_id.to_string(),
            member_epoch: r.member_epoch,
            subscribed_topics: remembered.subscriptions,
            assignor: remembered.assignor,
            session_timeout_ms: 0,
            rebalance_timeout_ms: u32::try_from(r.rebalance_timeout_ms).unwrap_or(0),
            owned: remembered.owned,
            client_id: caller.client_id.clone(),
        };
        let answer = as_caller(&self.broker, access, request::Body::GroupHeartbeat(request)).await;
        if r.member_epoch == -1 {
            self.members.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        }
        match answer {
            Ok(Some(response::Body::GroupHeartbeat(h))) => {
                if h.member_id != key.1 {
                    // The broker chose the id (v0): remember what was sent under it.
                    let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(state) = members.remove(&key) {
                        members.insert((key.0.clone(), h.member_id.clone()), state);
                    }
                }
                let assignment = h
                    .assignment
                    .iter()
                    .map(|tp| {
                        TopicPartitions::default()
                            .with_topic_id(topic_id(&tp.topic))
                            .with_partitions(tp.partitions.iter().map(|p| *p as i32).collect())
                    })
                    .collect();
                ConsumerGroupHeartbeatResponse::default()
                    .with_member_id(Some(text(h.member_id)))
                    .with_member_epoch(h.member_epoch)
                    .with_heartbeat_interval_ms(h.heartbeat_interval_ms as i32)
                    .with_assignment(Some(Assignment::default().with_topic_partitions(assignment)))
            }
            Ok(_) => ConsumerGroupHeartbeatResponse::default()
                .with_error_code(K::UnknownServerError.code()),
            Err(e) => ConsumerGroupHeartbeatResponse::default()
                .with_error_code(error_code(&e))
                .with_error_message(Some(text(e.to_string()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_are_stable_distinct_uuids() {
        let a = topic_id("orders");
        assert_eq!(a, topic_id("orders"));
        assert_ne!(a, topic_id("order"));
        assert_eq!(a.get_version_num(), 8);
        assert_ne!(a, Uuid::nil());
    }
}
