//! The group requests as the broker serves them: the coordinator decides under its lock, and
//! the answer waits here — off that lock — until the records are durable when the internal
//! topic's flush policy asks for it. The coordinator sees topics only as a [`TopicView`].

use eddy_protocol::v1::{self, reset_group_offsets_request::To};
use eddy_storage::Flush;

use super::{Coordinator, TopicView};
use crate::error::BrokerError;
use crate::topics::Topics;

impl TopicView for Topics {
    fn partitions(&self, topic: &str) -> Option<u32> {
        self.partition_count(topic)
    }

    fn offsets(&self, topic: &str, partition: u32) -> Option<(u64, u64)> {
        let t = self.get(topic).ok()?;
        let log = t.partitions.get(partition as usize)?;
        Some((log.start_offset(), log.next_offset()))
    }
}

impl Coordinator {
    /// Waits until the internal topic is durable through `upto`, if its policy is to flush
    /// on every append.
    async fn durable(&self, upto: Option<u64>) -> Result<(), BrokerError> {
        self.durable_if(upto, false).await
    }

    /// [`durable`](Self::durable), or fsynced whatever the policy when `always`.
    async fn durable_if(&self, upto: Option<u64>, always: bool) -> Result<(), BrokerError> {
        let Some(upto) = upto else { return Ok(()) };
        let log = self.log().clone();
        if log.config().flush != Flush::Always && !always {
            return Ok(());
        }
        let storage = |source| BrokerError::Storage {
            topic: super::records::OFFSETS_TOPIC.into(),
            partition: 0,
            source,
        };
        let dir = log.dir().to_path_buf();
        match tokio::task::spawn_blocking(move || log.sync_through(upto)).await {
            Ok(result) => result.map_err(storage),
            Err(join) => Err(BrokerError::Io {
                op: "fsync",
                path: dir,
                source: std::io::Error::other(join.to_string()),
            }),
        }
    }

    pub async fn serve_heartbeat(
        &self,
        topics: &Topics,
        r: &v1::GroupHeartbeatRequest,
    ) -> Result<v1::GroupHeartbeatResponse, BrokerError> {
        let (response, upto) = self.heartbeat(r, topics)?;
        self.durable(upto).await?;
        Ok(response)
    }

    pub async fn serve_commit(
        &self,
        topics: &Topics,
        r: &v1::OffsetCommitRequest,
    ) -> Result<v1::OffsetCommitResponse, BrokerError> {
        let (response, upto) = self.commit(r, topics)?;
        self.durable(upto).await?;
        Ok(response)
    }

    /// [`Coordinator::commit_for_transaction`], fsynced whatever the topic's policy: the
    /// transaction is recorded complete only after its offsets are on disk.
    pub async fn serve_commit_for_transaction(
        &self,
        group_id: &str,
        offsets: &[(String, u32, u64, String)],
    ) -> Result<(), BrokerError> {
        let upto = self.commit_for_transaction(group_id, offsets)?;
        self.durable_if(upto, true).await
    }

    pub async fn serve_list(&self) -> Result<v1::ListGroupsResponse, BrokerError> {
        let (response, upto) = self.list();
        self.durable(upto).await?;
        Ok(response)
    }

    pub async fn serve_describe(
        &self,
        topics: &Topics,
        id: &str,
    ) -> Result<v1::DescribeGroupResponse, BrokerError> {
        let (response, upto) = self.describe(id, topics)?;
        self.durable(upto).await?;
        Ok(response)
    }

    /// Resolves the target offsets of every partition of the topic, then commits them for the
    /// (empty) group.
    pub async fn serve_reset(
        &self,
        topics: &Topics,
        r: &v1::ResetGroupOffsetsRequest,
    ) -> Result<v1::ResetGroupOffsetsResponse, BrokerError> {
        let topic = topics.get(&r.topic)?;
        let to = r.to.ok_or(BrokerError::Malformed("reset needs a target offset"))?;
        let mut offsets = Vec::with_capacity(topic.partitions.len());
        for (p, log) in topic.partitions.iter().enumerate() {
            let storage = |source| BrokerError::Storage {
                topic: r.topic.clone(),
                partition: p as u32,
                source,
            };
            let offset = match to {
                To::Earliest(_) => log.start_offset(),
                To::Latest(_) => log.next_offset(),
                To::Offset(o) => o.clamp(log.start_offset(), log.next_offset()),
                To::TimestampMs(ts) => log
                    .offset_for_timestamp(ts)
                    .map_err(storage)?
                    .map_or_else(|| log.next_offset(), |found| found.offset),
            };
            offsets.push((p as u32, offset));
        }
        let (response, upto) = self.reset(&r.group_id, &r.topic, &offsets)?;
        self.durable(upto).await?;
        Ok(response)
    }

    pub async fn serve_delete(&self, id: &str) -> Result<(), BrokerError> {
        let upto = self.delete(id)?;
        self.durable(upto).await
    }

    /// Fencing for a group member's fetch: every partition it asks for must be its own.
    pub fn check_member_fetch(
        &self,
        member: &v1::GroupMemberRef,
        r: &v1::FetchRequest,
    ) -> Result<(), BrokerError> {
        let tps: Vec<(String, u32)> = r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.clone(), p.partition)))
            .collect();
        // Expiry writes, if any, need no fsync before the fetch is answered: they only remove.
        self.check_fetch(member, &tps).map(|_| ())
    }
}
