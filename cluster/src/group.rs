//! Membership in the processor's consumer group: which task partitions this instance runs.
//!
//! Instances of one processor version join the Kafka consumer group
//! `eddy-<processor>-v<version>` subscribed to the processor's first source topic; the group's
//! assignment of that topic's partitions is the assignment of tasks (every task of partition p,
//! of every sub-topology, runs where partition p is assigned). No record is consumed through
//! the group: assigned partitions are paused at once, the tasks read through `KafkaLogs`.
//! Each member's `client.id` is `eddy@<its query address>`, so the group's description
//! (DescribeGroups) says where every partition's tables are served.
//!
//! Invariants:
//! - The eager protocol (librdkafka's `range` assignor): every member gives up its partitions
//!   (the [`Assignments::revoked`] callback returns only once their tasks stopped and published
//!   their snapshots) before the group hands any out again, so a partition's tasks never run
//!   in two live instances at once. A member that stops answering is removed after
//!   `session.timeout.ms`; a paused, not dead, member is fenced by its partitions'
//!   transactional ids ([`transactional_id`]), which their new owner registers before it
//!   restores them.
//! - Callbacks run on the thread calling [`Member::poll`].

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};

use crate::config::ClusterConfig;
use crate::error::{ClusterError, kafka};

/// A member whose heartbeats stop is removed from the group after this long.
pub const SESSION_TIMEOUT_MS: u32 = 6_000;

/// What the instance does when the group hands out or takes back partitions.
pub trait Assignments: Send + Sync {
    /// Partitions given to this instance: start their tasks.
    fn assigned(&self, partitions: Vec<u32>);
    /// Partitions taken back: stop their tasks (a final snapshot, published) before returning.
    fn revoked(&self, partitions: Vec<u32>);
}

/// The group id of a processor version's instances.
pub fn group_id(processor: &str, version: u32) -> String {
    format!("eddy-{processor}-v{version}")
}

/// The `transactional.id` of task partition `partition`'s producer: the same on every
/// instance, so the instance that takes the partition fences the one that had it.
pub fn transactional_id(processor: &str, version: u32, partition: u32) -> String {
    format!("eddy-{processor}-v{version}-p{partition}")
}

/// The `client.id` of an instance serving queries at `query_addr`.
pub fn client_id(query_addr: &str) -> String {
    format!("eddy@{query_addr}")
}

/// The query address in a member's `client.id`.
pub fn query_addr_of(client_id: &str) -> Option<&str> {
    client_id.strip_prefix("eddy@")
}

struct GroupContext {
    topic: String,
    handler: Arc<dyn Assignments>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions = partitions_of(tpl, &self.topic);
            tracing::info!(?partitions, "partitions revoked");
            self.handler.revoked(partitions);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // The tasks read through their own consumers; this one only holds the assignment.
            if let Err(error) = consumer.pause(tpl) {
                tracing::warn!(%error, "pausing the group's partitions");
            }
            let partitions = partitions_of(tpl, &self.topic);
            tracing::info!(?partitions, "partitions assigned");
            self.handler.assigned(partitions);
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<u32> {
    let mut out: Vec<u32> = tpl
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .filter_map(|e| u32::try_from(e.partition()).ok())
        .collect();
    out.sort_unstable();
    out
}

/// This instance's membership.
pub struct Member {
    consumer: BaseConsumer<GroupContext>,
    topic: String,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl Member {
    /// Joins `group` subscribed to `topic`; assignments reach `handler` from [`poll`](Self::poll).
    pub fn join(
        config: &ClusterConfig,
        group: &str,
        topic: &str,
        query_addr: &str,
        handler: Arc<dyn Assignments>,
    ) -> Result<Member, ClusterError> {
        let context = GroupContext { topic: topic.to_owned(), handler };
        let consumer: BaseConsumer<GroupContext> = config
            .client(&client_id(query_addr))
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .set("partition.assignment.strategy", "range")
            .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
            .set("heartbeat.interval.ms", "500")
            .set("allow.auto.create.topics", "false")
            .create_with_context(context)
            .map_err(|source| ClusterError::Client { what: "group member", source })?;
        consumer.subscribe(&[topic]).map_err(kafka("subscribe to", topic, 0))?;
        Ok(Member { consumer, topic: topic.to_owned() })
    }

    /// Serves the group's events (rebalances run their callbacks here) for up to `timeout`.
    pub fn poll(&self, timeout: Duration) {
        match self.consumer.poll(timeout) {
            None | Some(Ok(_)) => {}
            Some(Err(error)) => tracing::warn!(%error, topic = %self.topic, "group member"),
        }
    }

    /// Leaves the group: the partitions are revoked (their tasks stop) and the others are told
    /// to rebalance at once rather than after the session timeout.
    pub fn leave(self) {
        if let Err(error) = self.consumer.unsubscribe_and_wait() {
            tracing::warn!(%error, "leaving the group");
        }
    }
}

trait Unsubscribe {
    fn unsubscribe_and_wait(&self) -> Result<(), ClusterError>;
}

impl Unsubscribe for BaseConsumer<GroupContext> {
    /// Unsubscribes, then serves events until the revocation has run (bounded).
    fn unsubscribe_and_wait(&self) -> Result<(), ClusterError> {
        self.unsubscribe();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let assigned = self.assignment().map_err(kafka("read the assignment of", "", 0))?;
            if assigned.count() == 0 {
                return Ok(());
            }
            let _ = self.poll(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// The query address of the member of a group (`members`, from DescribeGroups) that has
/// `partition` of `topic` assigned, if any.
pub fn owner(members: &[(String, Vec<u8>)], topic: &str, partition: u32) -> Option<String> {
    members.iter().find_map(|(client_id, assignment)| {
        let addr = query_addr_of(client_id)?;
        let owned = assigned_partitions(assignment, topic)?;
        owned.contains(&partition).then(|| addr.to_owned())
    })
}

/// The partitions of `topic` in a member's assignment (Kafka's ConsumerProtocol Assignment:
/// version i16, topics [name string, partitions [i32]], user data bytes), or `None` when the
/// bytes do not decode.
pub fn assigned_partitions(assignment: &[u8], topic: &str) -> Option<Vec<u32>> {
    let mut r = Wire(assignment);
    let _version = r.i16()?;
    let topics = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = usize::try_from(r.i16()?).ok()?;
        let name = r.take(len)?;
        let count = r.i32()?;
        for _ in 0..count.max(0) {
            let p = u32::try_from(r.i32()?).ok()?;
            if name == topic.as_bytes() {
                out.push(p);
            }
        }
    }
    Some(out)
}

/// A reader of big-endian Kafka wire fields over a slice.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_decodes_and_truncations_do_not() {
        let mut bytes = vec![0, 0, 0, 0, 0, 2];
        for (name, parts) in [("other", vec![9i32]), ("access", vec![1, 4])] {
            bytes.extend_from_slice(&(name.len() as i16).to_be_bytes());
            bytes.extend_from_slice(name.as_bytes());
            bytes.extend_from_slice(&(parts.len() as i32).to_be_bytes());
            for p in parts {
                bytes.extend_from_slice(&p.to_be_bytes());
            }
        }
        bytes.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(assigned_partitions(&bytes, "access"), Some(vec![1, 4]));
        assert_eq!(assigned_partitions(&bytes, "none"), Some(vec![]));
        for cut in 1..bytes.len() - 4 {
            assert_eq!(assigned_partitions(&bytes[..cut], "access"), None, "cut at {cut}");
        }
    }
}
