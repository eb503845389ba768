//! [`GroupConsumer`]: a consumer group member — subscribes to topics, heartbeats, receives the
//! partitions the broker assigns, reads them from the group's committed offsets, and commits.
//!
//! The broker owns the assignment (docs/protocol.md, "Consumer groups"). This side follows it:
//! - A partition missing from a heartbeat's assignment is revoked: the listener's
//!   `on_revoked` runs, auto-commit (when on) commits its position, the consumer stops reading
//!   it, and the next heartbeat — sent at once — reports it released.
//! - A partition new in the assignment is read from the group's committed offset, or from
//!   [`GroupConfig::start`] when the group has none; then `on_assigned` runs.
//! - `UNKNOWN_MEMBER_ID` / `FENCED_MEMBER_EPOCH` mean the broker gave our partitions away:
//!   `on_lost` runs, nothing is committed, and the member joins again.
//!
//! Heartbeats ride on [`GroupConsumer::poll`]: a poll never waits past the next heartbeat, so
//! a member that keeps polling keeps its session. Processing one poll's records must take less
//! than the session timeout (as with Kafka's `max.poll.interval.ms`).
//!
//! Positions: after a poll, a partition's position is past every record handed out. Manual
//! commits commit those positions, so "commit after processing" means: process what `poll`
//! returned, then [`GroupConsumer::commit_sync`], then poll again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use eddy_protocol::ErrorCode;
use eddy_protocol::v1::{self, request};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::admin::fetch_committed;
use crate::consumer::{ConsumedBatch, Consumer, ConsumerConfig, SeekTo};
use crate::{ClientError, Transport, expect_body};

/// A topic partition.
pub type TopicPartition = (String, u32);

/// How a [`GroupConsumer`] joins and behaves.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group: String,
    pub topics: Vec<String>,
    /// Shown by `eddy group describe`.
    pub client_id: String,
    /// `None`: the broker's default. The broker clamps it to its configured range.
    pub session_timeout: Option<Duration>,
    /// How long this member may hold a revoked partition. `None`: the broker's default.
    pub rebalance_timeout: Option<Duration>,
    /// "sticky" (the broker's default), "range" or "round-robin".
    pub assignor: Option<String>,
    /// Commit positions this often (and before giving up a partition). `None`: manual only.
    pub auto_commit: Option<Duration>,
    /// Where a partition starts when the group has committed nothing for it (and where it
    /// moves when the committed offset is no longer stored).
    pub start: SeekTo,
    /// Fetch settings (`start` and `reset_out_of_range` are taken from above).
    pub fetch: ConsumerConfig,
}

impl GroupConfig {
    pub fn new(group: &str, topics: &[&str]) -> Self {
        Self {
            group: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            client_id: String::new(),
            session_timeout: None,
            rebalance_timeout: None,
            assignor: None,
            auto_commit: Some(Duration::from_secs(5)),
            start: SeekTo::Earliest,
            fetch: ConsumerConfig::default(),
        }
    }
}

/// Called from inside [`GroupConsumer::poll`] when the assignment changes.
pub trait RebalanceListener: Send {
    /// Partitions newly owned, positioned at the group's committed offsets.
    fn on_assigned(&mut self, _partitions: &[TopicPartition]) {}
    /// Partitions being given up, before they are released (and, with auto-commit, after
    /// their positions are committed).
    fn on_revoked(&mut self, _partitions: &[TopicPartition]) {}
    /// Partitions taken away without a hand-over (this member was fenced or expelled); they
    /// may already be read elsewhere, so nothing was committed.
    fn on_lost(&mut self, partitions: &[TopicPartition]) {
        self.on_revoked(partitions);
    }
}

/// A listener that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoListener;

impl RebalanceListener for NoListener {}

/// A finished or running asynchronous commit; see [`GroupConsumer::commit_async`].
#[derive(Debug)]
pub struct CommitHandle(CommitTask);

impl CommitHandle {
    /// Waits for the commit's outcome.
    pub async fn wait(self) -> Result<(), ClientError> {
        self.0.await.map_err(|_| ClientError::UnexpectedResponse("commit task ended early"))?
    }
}

/// A member of a consumer group.
pub struct GroupConsumer<T: Transport> {
    transport: Arc<T>,
    consumer: Consumer<Arc<T>>,
    config: GroupConfig,
    listener: Box<dyn RebalanceListener>,
    member_id: String,
    epoch: i32,
    owned: BTreeSet<TopicPartition>,
    next_heartbeat: Instant,
    next_auto_commit: Option<Instant>,
    /// Last offset committed per partition, to skip commits that change nothing.
    committed: BTreeMap<TopicPartition, u64>,
    /// The latest asynchronous commit; the next commit waits for it, so commits land in order.
    in_flight: Option<CommitTask>,
}

impl<T: Transport> std::fmt::Debug for GroupConsumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group", &self.config.group)
            .field("member_id", &self.member_id)
            .field("epoch", &self.epoch)
            .field("owned", &self.owned)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> GroupConsumer<T> {
    /// Joins `config.group` (one heartbeat) and returns the member. Partitions arrive on the
    /// following polls.
    pub async fn subscribe(
        transport: T,
        config: GroupConfig,
        listener: impl RebalanceListener + 'static,
    ) -> Result<Self, ClientError> {
        if config.group.is_empty() || config.topics.is_empty() {
            return Err(ClientError::Config {
                field: "group",
                reason: "a group member needs a group id and at least one topic",
            });
        }
        let transport = Arc::new(transport);
        let mut fetch = config.fetch.clone();
        fetch.start = config.start;
        fetch.reset_out_of_range = Some(config.start);
        let now = Instant::now();
        let mut member = Self {
            consumer: Consumer::new(Arc::clone(&transport), fetch),
            transport,
            listener: Box::new(listener),
            member_id: String::new(),
            epoch: 0,
            owned: BTreeSet::new(),
            next_heartbeat: now,
            next_auto_commit: config.auto_commit.map(|d| now + d),
            committed: BTreeMap::new(),
            in_flight: None,
            config,
        };
        member.heartbeat().await?;
        Ok(member)
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn member_epoch(&self) -> i32 {
        self.epoch
    }

    /// The partitions this member owns, sorted.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.owned.iter().cloned().collect()
    }

    /// The next offset this member reads from an owned partition.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.consumer.position(topic, partition)
    }

    /// Moves an owned partition's position.
    pub async fn seek(
        &mut self,
        topic: &str,
        partition: u32,
        to: SeekTo,
    ) -> Result<u64, ClientError> {
        self.consumer.seek(topic, partition, to).await
    }

    /// Heartbeats when due, auto-commits when due, and fetches from the owned partitions,
    /// waiting up to `max_wait` (never past the next heartbeat).
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedBatch>, ClientError> {
        if Instant::now() >= self.next_heartbeat {
            self.heartbeat().await?;
        }
        if let Some(at) = self.next_auto_commit
            && Instant::now() >= at
        {
            self.commit_sync().await?;
            self.next_auto_commit = self.config.auto_commit.map(|d| Instant::now() + d);
        }
        let wait = max_wait.min(self.next_heartbeat.saturating_duration_since(Instant::now()));
        if self.owned.is_empty() {
            // Nothing to read until a heartbeat brings partitions.
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        }
        let polled = self.consumer.poll(wait).await;
        if self.consumer.take_heartbeat_hint() {
            self.next_heartbeat = Instant::now();
        }
        match polled {
            Ok(batches) => Ok(batches),
            Err(e) => match e.code() {
                Some(ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch) => {
                    self.lose_all().await;
                    Ok(Vec::new())
                }
                Some(ErrorCode::StaleMemberEpoch | ErrorCode::NotAssigned) => {
                    // Our view is behind the broker's: heartbeat now, read next poll.
                    self.next_heartbeat = Instant::now();
                    Ok(Vec::new())
                }
                _ => Err(e),
            },
        }
    }

    /// Commits the position of every owned partition (what `poll` has handed out) and waits
    /// for the broker's acknowledgement.
    pub async fn commit_sync(&mut self) -> Result<(), ClientError> {
        let offsets = self.positions(&self.owned.clone());
        self.commit_offsets(&offsets).await
    }

    /// Commits these offsets (each the next offset to read) and waits for them.
    pub async fn commit_offsets(
        &mut self,
        offsets: &[(String, u32, u64)],
    ) -> Result<(), ClientError> {
        if let Some(previous) = self.in_flight.take() {
            // Commits land in order: an older asynchronous commit may not overwrite this one.
            let _ = previous.await;
        }
        let fresh: Vec<(String, u32, u64)> = offsets
            .iter()
            .filter(|(t, p, o)| self.committed.get(&(t.clone(), *p)) != Some(o))
            .cloned()
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let outcome = commit(&*self.transport, self.commit_request(&fresh)).await;
        match outcome {
            Ok(()) => {
                for (t, p, o) in fresh {
                    self.committed.insert((t, p), o);
                }
                Ok(())
            }
            Err(e) if e.code() == Some(ErrorCode::StaleMemberEpoch) => {
                // Our epoch moved on at the broker: heartbeat, then retry what we still own.
                self.heartbeat().await?;
                let still: Vec<(String, u32, u64)> = fresh
                    .into_iter()
                    .filter(|(t, p, _)| self.owned.contains(&(t.clone(), *p)))
                    .collect();
                commit(&*self.transport, self.commit_request(&still)).await?;
                for (t, p, o) in still {
                    self.committed.insert((t, p), o);
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Starts committing every owned partition's position without waiting. Commits are sent
    /// in order; await the handle for the outcome, or drop it.
    pub fn commit_async(&mut self) -> CommitHandle {
        let offsets = self.positions(&self.owned.clone());
        let request = self.commit_request(&offsets);
        let previous = self.in_flight.take();
        let transport = Arc::clone(&self.transport);
        let task = tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            commit(&*transport, request).await
        });
        let (mine, theirs) = split_handle(task);
        self.in_flight = Some(theirs);
        CommitHandle(mine)
    }

    /// Leaves the group at once (its partitions move without waiting for the session
    /// timeout), committing first when auto-commit is on.
    pub async fn close(mut self) -> Result<(), ClientError> {
        if self.config.auto_commit.is_some() {
            self.commit_sync().await?;
        } else if let Some(previous) = self.in_flight.take() {
            let _ = previous.await;
        }
        let revoked: Vec<TopicPartition> = self.owned.iter().cloned().collect();
        if !revoked.is_empty() {
            self.listener.on_revoked(&revoked);
        }
        let request = v1::GroupHeartbeatRequest {
            group_id: self.config.group.clone(),
            member_id: self.member_id.clone(),
            member_epoch: -1,
            ..Default::default()
        };
        expect_body!(
            self.transport.call(request::Body::GroupHeartbeat(request)).await?,
            GroupHeartbeat
        )?;
        Ok(())
    }

    fn positions(&self, tps: &BTreeSet<TopicPartition>) -> Vec<(String, u32, u64)> {
        tps.iter()
            .filter_map(|(t, p)| Some((t.clone(), *p, self.consumer.position(t, *p)?)))
            .collect()
    }

    fn commit_request(&self, offsets: &[(String, u32, u64)]) -> v1::OffsetCommitRequest {
        let mut topics: Vec<v1::OffsetCommitTopic> = Vec::new();
        for (topic, partition, offset) in offsets {
            let p = v1::OffsetCommitPartition {
                partition: *partition,
                offset: *offset,
                metadata: String::new(),
            };
            match topics.iter_mut().find(|t| t.topic == *topic) {
                Some(t) => t.partitions.push(p),
                None => {
                    topics.push(v1::OffsetCommitTopic { topic: topic.clone(), partitions: vec![p] })
                }
            }
        }
        v1::OffsetCommitRequest {
            group_id: self.config.group.clone(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            topics,
        }
    }

    /// One heartbeat, then — if it revoked partitions — one more at once to report them
    /// released.
    async fn heartbeat(&mut self) -> Result<(), ClientError> {
        for _ in 0..2 {
            let released = self.heartbeat_once().await?;
            if !released {
                break;
            }
        }
        Ok(())
    }

    /// Returns whether partitions were released (so the broker should hear of it now).
    async fn heartbeat_once(&mut self) -> Result<bool, ClientError> {
        let c = &self.config;
        let request = v1::GroupHeartbeatRequest {
            group_id: c.group.clone(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            subscribed_topics: c.topics.clone(),
            assignor: c.assignor.clone().unwrap_or_default(),
            session_timeout_ms: millis(c.session_timeout),
            rebalance_timeout_ms: millis(c.rebalance_timeout),
            owned: to_wire(&self.owned),
            client_id: c.client_id.clone(),
        };
        let answer = self.transport.call(request::Body::GroupHeartbeat(request)).await;
        let response = match answer.and_then(|body| expect_body!(body, GroupHeartbeat)) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.code(),
                    Some(ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch)
                ) =>
            {
                tracing::warn!(group = %self.config.group, member = %self.member_id, error = %e, "fenced; joining again");
                self.lose_all().await;
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        self.member_id = response.member_id;
        self.epoch = response.member_epoch;
        let interval = Duration::from_millis(u64::from(response.heartbeat_interval_ms.max(1)));
        self.next_heartbeat = Instant::now() + interval;
        self.consumer.set_member(Some(v1::GroupMemberRef {
            group_id: self.config.group.clone(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
        }));
        let assignment: BTreeSet<TopicPartition> = response
            .assignment
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.clone(), *p)))
            .collect();
        let revoked: BTreeSet<TopicPartition> =
            self.owned.difference(&assignment).cloned().collect();
        let added: BTreeSet<TopicPartition> = assignment.difference(&self.owned).cloned().collect();
        if !revoked.is_empty() {
            let list: Vec<TopicPartition> = revoked.iter().cloned().collect();
            self.listener.on_revoked(&list);
            if self.config.auto_commit.is_some() {
                // Our epoch is current (we just heard it), so no stale-epoch retry is needed.
                if let Some(previous) = self.in_flight.take() {
                    let _ = previous.await;
                }
                let offsets = self.positions(&revoked);
                if let Err(e) = commit(&*self.transport, self.commit_request(&offsets)).await {
                    tracing::warn!(group = %self.config.group, error = %e, "commit before giving up partitions failed");
                }
            }
            for tp in &revoked {
                self.owned.remove(tp);
                self.committed.remove(tp);
            }
            self.apply_assignment();
        }
        if !added.is_empty() {
            let list: Vec<TopicPartition> = added.iter().cloned().collect();
            let committed = fetch_committed(&*self.transport, &self.config.group, &list).await?;
            self.owned.extend(added.iter().cloned());
            self.apply_assignment();
            for c in committed {
                if let Some(offset) = c.offset
                    && added.contains(&(c.topic.clone(), c.partition))
                {
                    self.consumer.seek(&c.topic, c.partition, SeekTo::Offset(offset)).await?;
                    self.committed.insert((c.topic, c.partition), offset);
                }
            }
            self.listener.on_assigned(&list);
        }
        Ok(!revoked.is_empty())
    }

    /// Makes the fetching consumer's assignment equal `owned`.
    fn apply_assignment(&mut self) {
        let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (t, p) in &self.owned {
            by_topic.entry(t).or_default().push(*p);
        }
        for (topic, _) in self.consumer.assignment() {
            if !by_topic.contains_key(topic.as_str()) {
                self.consumer.unassign(&topic);
            }
        }
        for (topic, partitions) in by_topic {
            self.consumer.assign(topic, partitions);
        }
    }

    /// Drops every partition without committing and arranges to join again.
    async fn lose_all(&mut self) {
        if let Some(previous) = self.in_flight.take() {
            let _ = previous.await;
        }
        let lost: Vec<TopicPartition> = self.owned.iter().cloned().collect();
        if !lost.is_empty() {
            self.listener.on_lost(&lost);
        }
        self.owned.clear();
        self.committed.clear();
        self.apply_assignment();
        self.consumer.set_member(None);
        self.epoch = 0;
        self.next_heartbeat = Instant::now();
    }
}

/// Two handles on one commit: the caller's and the next commit's (which waits for it).
type CommitTask = JoinHandle<Result<(), ClientError>>;

fn split_handle(task: CommitTask) -> (CommitTask, CommitTask) {
    let (tx, rx) = tokio::sync::watch::channel::<Option<Result<(), ClientError>>>(None);
    let waiter = tokio::spawn(async move {
        let outcome =
            task.await.unwrap_or(Err(ClientError::UnexpectedResponse("commit task ended early")));
        let _ = tx.send(Some(outcome.clone()));
        outcome
    });
    let follower = tokio::spawn(async move {
        let mut rx = rx;
        let _ = rx.wait_for(Option::is_some).await;
        Ok(())
    });
    (waiter, follower)
}

async fn commit<T: Transport>(
    transport: &T,
    request: v1::OffsetCommitRequest,
) -> Result<(), ClientError> {
    if request.topics.is_empty() {
        return Ok(());
    }
    let body = transport.call(request::Body::OffsetCommit(request)).await?;
    let response = expect_body!(body, OffsetCommit)?;
    for t in response.topics {
        for p in t.partitions {
            if let Some(error) = p.error
                && error.error_code() != ErrorCode::None
            {
                return Err(ClientError::Partition {
                    topic: t.topic,
                    partition: p.partition,
                    error,
                });
            }
        }
    }
    Ok(())
}

fn to_wire(tps: &BTreeSet<TopicPartition>) -> Vec<v1::TopicPartitions> {
    v1::TopicPartitions::group(tps.iter().map(|(t, p)| (t.as_str(), *p)))
}

fn millis(d: Option<Duration>) -> u32 {
    d.map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX))
}
