//! [`Admin`]: topics, metadata, offsets, groups and users — thin, typed wrappers over one
//! request each.
//!
//! Also the two lookups the producer and the consumer share: `partition_count` (from a
//! `Metadata` call) and `list_offsets`.
//!
//! Invariant: a per-topic or per-partition error inside a response body becomes
//! `ClientError::Topic` / `ClientError::Partition` naming what failed; an answer that lacks a
//! requested topic or partition is `UnexpectedResponse`, never silently a default.

use eddy_protocol::ErrorCode;
use eddy_protocol::v1::{self, request};

use crate::{ClientError, Transport, expect_body};

/// What [`Admin::list_offsets`] looks up in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    /// The first offset still stored.
    Earliest,
    /// The offset the next record will get (the high watermark).
    Latest,
    /// The first record whose timestamp is at or after this (ms since the Unix epoch).
    Timestamp(i64),
}

/// One partition's answer to an [`OffsetQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    pub partition: u32,
    pub offset: u64,
    /// For [`OffsetQuery::Timestamp`]: the timestamp of the record at `offset`.
    pub timestamp_ms: Option<i64>,
    /// For [`OffsetQuery::Timestamp`]: `false` when every record is older, and `offset` is the
    /// latest offset. Always `true` for the other queries.
    pub found: bool,
}

/// Administrative calls on a broker.
#[derive(Debug)]
pub struct Admin<T: Transport> {
    transport: T,
}

impl<T: Transport> Admin<T> {
    pub fn new(transport: T) -> Self {
        Self { transport }
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Creates a topic; returns its configuration with the broker's defaults filled in.
    pub async fn create_topic(
        &self,
        name: &str,
        config: v1::TopicConfig,
    ) -> Result<v1::TopicConfig, ClientError> {
        let body = request::Body::CreateTopic(v1::CreateTopicRequest {
            name: name.to_owned(),
            config: Some(config),
        });
        let created = expect_body!(self.transport.call(body).await?, CreateTopic)?;
        created.config.ok_or(ClientError::UnexpectedResponse("create_topic without a config"))
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let body = request::Body::DeleteTopic(v1::DeleteTopicRequest { name: name.to_owned() });
        expect_body!(self.transport.call(body).await?, DeleteTopic).map(drop)
    }

    /// Topic names, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>, ClientError> {
        let body = request::Body::ListTopics(v1::ListTopicsRequest {});
        Ok(expect_body!(self.transport.call(body).await?, ListTopics)?.names)
    }

    /// A topic's full configuration and the state of each partition.
    pub async fn describe_topic(
        &self,
        name: &str,
    ) -> Result<v1::DescribeTopicResponse, ClientError> {
        let body = request::Body::DescribeTopic(v1::DescribeTopicRequest { name: name.to_owned() });
        expect_body!(self.transport.call(body).await?, DescribeTopic)
    }

    /// Metadata for `topics` (all topics when empty). Unknown topics come back with their
    /// `error` set rather than failing the call.
    pub async fn metadata(&self, topics: &[&str]) -> Result<v1::MetadataResponse, ClientError> {
        metadata(&self.transport, topics.iter().map(|t| (*t).to_owned()).collect()).await
    }

    /// The number of partitions of `topic`.
    pub async fn partition_count(&self, topic: &str) -> Result<u32, ClientError> {
        partition_count(&self.transport, topic).await
    }

    /// Looks up offsets in partitions of one topic; fails on the first partition the broker
    /// refused.
    pub async fn list_offsets(
        &self,
        topic: &str,
        queries: &[(u32, OffsetQuery)],
    ) -> Result<Vec<ListedOffset>, ClientError> {
        list_offsets(&self.transport, topic, queries).await
    }

    /// [`list_offsets`](Self::list_offsets) as a reader at `isolation` sees them: `Latest`
    /// under `ReadCommitted` is the last stable offset.
    pub async fn list_offsets_as(
        &self,
        topic: &str,
        queries: &[(u32, OffsetQuery)],
        isolation: v1::IsolationLevel,
    ) -> Result<Vec<ListedOffset>, ClientError> {
        list_offsets_as(&self.transport, topic, queries, isolation).await
    }

    /// Creates a user with SCRAM credentials for `password` (`mechanisms` empty: SCRAM-SHA-256
    /// and SCRAM-SHA-512; `iterations` 0: 4096).
    pub async fn create_user(
        &self,
        name: &str,
        password: &str,
        mechanisms: &[crate::sasl::Mechanism],
        iterations: u32,
    ) -> Result<v1::UserInfo, ClientError> {
        let body = request::Body::CreateUser(v1::CreateUserRequest {
            name: name.to_owned(),
            password: password.to_owned(),
            mechanisms: mechanisms.iter().map(|m| m.name().to_owned()).collect(),
            iterations,
        });
        let created = expect_body!(self.transport.call(body).await?, CreateUser)?;
        created.user.ok_or(ClientError::UnexpectedResponse("create_user without the user"))
    }

    /// Replaces a user's credentials with ones for `password`.
    pub async fn alter_user(
        &self,
        name: &str,
        password: &str,
    ) -> Result<v1::UserInfo, ClientError> {
        let body = request::Body::AlterUser(v1::AlterUserRequest {
            name: name.to_owned(),
            password: password.to_owned(),
        });
        let altered = expect_body!(self.transport.call(body).await?, AlterUser)?;
        altered.user.ok_or(ClientError::UnexpectedResponse("alter_user without the user"))
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), ClientError> {
        let body = request::Body::DeleteUser(v1::DeleteUserRequest { name: name.to_owned() });
        expect_body!(self.transport.call(body).await?, DeleteUser).map(drop)
    }

    /// Every user with its mechanisms (never a key), sorted by name.
    pub async fn list_users(&self) -> Result<Vec<v1::UserInfo>, ClientError> {
        let body = request::Body::ListUsers(v1::ListUsersRequest {});
        Ok(expect_body!(self.transport.call(body).await?, ListUsers)?.users)
    }

    /// Every consumer group, with its state and member count.
    pub async fn list_groups(&self) -> Result<Vec<v1::GroupListing>, ClientError> {
        let body = request::Body::ListGroups(v1::ListGroupsRequest {});
        Ok(expect_body!(self.transport.call(body).await?, ListGroups)?.groups)
    }

    /// A group's members, their partitions, and committed offsets with lag.
    pub async fn describe_group(
        &self,
        group: &str,
    ) -> Result<v1::DescribeGroupResponse, ClientError> {
        let body =
            request::Body::DescribeGroup(v1::DescribeGroupRequest { group_id: group.to_owned() });
        expect_body!(self.transport.call(body).await?, DescribeGroup)
    }

    /// Moves an empty group's committed offsets for every partition of `topic`.
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        topic: &str,
        to: GroupReset,
    ) -> Result<Vec<v1::CommittedOffset>, ClientError> {
        use v1::reset_group_offsets_request::To;
        let to = match to {
            GroupReset::Earliest => To::Earliest(true),
            GroupReset::Latest => To::Latest(true),
            GroupReset::Offset(o) => To::Offset(o),
            GroupReset::Timestamp(ts) => To::TimestampMs(ts),
        };
        let body = request::Body::ResetGroupOffsets(v1::ResetGroupOffsetsRequest {
            group_id: group.to_owned(),
            topic: topic.to_owned(),
            to: Some(to),
        });
        Ok(expect_body!(self.transport.call(body).await?, ResetGroupOffsets)?.offsets)
    }

    /// Deletes an empty group and its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        let body =
            request::Body::DeleteGroup(v1::DeleteGroupRequest { group_id: group.to_owned() });
        expect_body!(self.transport.call(body).await?, DeleteGroup).map(drop)
    }

    /// Deploys a processor from its spec (TOML text); returns its status once started.
    pub async fn deploy_processor(&self, spec: &str) -> Result<v1::ProcessorInfo, ClientError> {
        let body = request::Body::DeployProcessor(v1::DeployProcessorRequest { spec: spec.into() });
        expect_body!(self.transport.call(body).await?, DeployProcessor)?
            .processor
            .ok_or(ClientError::UnexpectedResponse("deploy without a processor"))
    }

    pub async fn list_processors(&self) -> Result<Vec<v1::ProcessorInfo>, ClientError> {
        let body = request::Body::ListProcessors(v1::ListProcessorsRequest {});
        Ok(expect_body!(self.transport.call(body).await?, ListProcessors)?.processors)
    }

    pub async fn processor_status(&self, name: &str) -> Result<v1::ProcessorInfo, ClientError> {
        let body = request::Body::ProcessorStatus(v1::ProcessorStatusRequest { name: name.into() });
        expect_body!(self.transport.call(body).await?, ProcessorStatus)?
            .processor
            .ok_or(ClientError::UnexpectedResponse("status without a processor"))
    }

    /// Serves the processor's retired version again.
    pub async fn rollback_processor(&self, name: &str) -> Result<v1::ProcessorInfo, ClientError> {
        let body =
            request::Body::RollbackProcessor(v1::RollbackProcessorRequest { name: name.into() });
        expect_body!(self.transport.call(body).await?, RollbackProcessor)?
            .processor
            .ok_or(ClientError::UnexpectedResponse("rollback without a processor"))
    }

    /// Rebuilds the processor's serving logic from offset zero as its next version.
    pub async fn replay_processor(&self, name: &str) -> Result<v1::ProcessorInfo, ClientError> {
        let body = request::Body::ReplayProcessor(v1::ReplayProcessorRequest { name: name.into() });
        expect_body!(self.transport.call(body).await?, ReplayProcessor)?
            .processor
            .ok_or(ClientError::UnexpectedResponse("replay without a processor"))
    }

    /// A pull query against a live table.
    pub async fn query_table(
        &self,
        query: v1::QueryTableRequest,
    ) -> Result<v1::QueryTableResponse, ClientError> {
        expect_body!(self.transport.call(request::Body::QueryTable(query)).await?, QueryTable)
    }

    /// Stops and forgets a processor, removing its state and internal topics.
    pub async fn drop_processor(&self, name: &str) -> Result<(), ClientError> {
        let body = request::Body::DropProcessor(v1::DropProcessorRequest { name: name.into() });
        expect_body!(self.transport.call(body).await?, DropProcessor).map(drop)
    }

    /// Creates a connector (`kind`: "source" or "sink") from its options (docs/connectors.md).
    pub async fn create_connector(
        &self,
        name: &str,
        kind: &str,
        config: std::collections::HashMap<String, String>,
    ) -> Result<v1::ConnectorInfo, ClientError> {
        let body = request::Body::CreateConnector(v1::CreateConnectorRequest {
            name: name.into(),
            kind: kind.into(),
            config,
        });
        let r = expect_body!(self.transport.call(body).await?, CreateConnector)?;
        r.connector.ok_or(ClientError::UnexpectedResponse("a create answer without its connector"))
    }

    pub async fn list_connectors(&self) -> Result<Vec<v1::ConnectorInfo>, ClientError> {
        let body = request::Body::ListConnectors(v1::ListConnectorsRequest {});
        Ok(expect_body!(self.transport.call(body).await?, ListConnectors)?.connectors)
    }

    pub async fn connector_status(&self, name: &str) -> Result<v1::ConnectorInfo, ClientError> {
        let body = request::Body::ConnectorStatus(v1::ConnectorStatusRequest { name: name.into() });
        let r = expect_body!(self.transport.call(body).await?, ConnectorStatus)?;
        r.connector.ok_or(ClientError::UnexpectedResponse("a status answer without its connector"))
    }

    /// Pauses (`true`) or resumes a connector; it keeps its position.
    pub async fn pause_connector(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<v1::ConnectorInfo, ClientError> {
        let body =
            request::Body::PauseConnector(v1::PauseConnectorRequest { name: name.into(), paused });
        let r = expect_body!(self.transport.call(body).await?, PauseConnector)?;
        r.connector.ok_or(ClientError::UnexpectedResponse("a pause answer without its connector"))
    }

    /// Stops a connector and forgets its definition and position.
    pub async fn drop_connector(&self, name: &str) -> Result<(), ClientError> {
        let body = request::Body::DropConnector(v1::DropConnectorRequest { name: name.into() });
        expect_body!(self.transport.call(body).await?, DropConnector).map(drop)
    }

    /// Runs SQL statements in the broker's session (one result per statement run; a failed
    /// statement is a result with an error, not a `ClientError`). A push query is polled:
    /// pass the previous answer's `next` positions as `from`.
    pub async fn sql(
        &self,
        sql: &str,
        from: Vec<v1::SqlPosition>,
        max_wait_ms: u32,
    ) -> Result<Vec<v1::SqlResult>, ClientError> {
        let body = request::Body::Sql(v1::SqlRequest { sql: sql.into(), from, max_wait_ms });
        Ok(expect_body!(self.transport.call(body).await?, Sql)?.results)
    }

    /// The group's committed offsets (all of them when `partitions` is empty).
    pub async fn committed_offsets(
        &self,
        group: &str,
        partitions: &[(String, u32)],
    ) -> Result<Vec<v1::CommittedOffset>, ClientError> {
        fetch_committed(&self.transport, group, partitions).await
    }
}

/// Where [`Admin::reset_group_offsets`] moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupReset {
    Earliest,
    Latest,
    Offset(u64),
    /// The first record at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

pub(crate) async fn fetch_committed<T: Transport>(
    transport: &T,
    group: &str,
    partitions: &[(String, u32)],
) -> Result<Vec<v1::CommittedOffset>, ClientError> {
    let wanted = v1::TopicPartitions::group(partitions.iter().map(|(t, p)| (t.as_str(), *p)));
    let body = request::Body::OffsetFetch(v1::OffsetFetchRequest {
        group_id: group.to_owned(),
        partitions: wanted,
    });
    Ok(expect_body!(transport.call(body).await?, OffsetFetch)?.offsets)
}

pub(crate) async fn metadata<T: Transport>(
    transport: &T,
    topics: Vec<String>,
) -> Result<v1::MetadataResponse, ClientError> {
    let body = request::Body::Metadata(v1::MetadataRequest { topics });
    expect_body!(transport.call(body).await?, Metadata)
}

/// The number of partitions of `topic`, from a `Metadata` call.
pub(crate) async fn partition_count<T: Transport>(
    transport: &T,
    topic: &str,
) -> Result<u32, ClientError> {
    let response = metadata(transport, vec![topic.to_owned()]).await?;
    let Some(found) = response.topics.into_iter().find(|t| t.name == topic) else {
        return Err(ClientError::Topic {
            topic: topic.to_owned(),
            error: v1::Error::new(ErrorCode::UnknownTopic, "not in the metadata response"),
        });
    };
    if let Some(error) = found.error
        && error.error_code() != ErrorCode::None
    {
        return Err(ClientError::Topic { topic: topic.to_owned(), error });
    }
    match u32::try_from(found.partitions.len()) {
        Ok(0) | Err(_) => Err(ClientError::UnexpectedResponse("a topic with no partitions")),
        Ok(n) => Ok(n),
    }
}

pub(crate) async fn list_offsets<T: Transport>(
    transport: &T,
    topic: &str,
    queries: &[(u32, OffsetQuery)],
) -> Result<Vec<ListedOffset>, ClientError> {
    list_offsets_as(transport, topic, queries, v1::IsolationLevel::ReadUncommitted).await
}

/// [`list_offsets`] as a reader at `isolation` sees them (`Latest` under read_committed is
/// the last stable offset).
pub(crate) async fn list_offsets_as<T: Transport>(
    transport: &T,
    topic: &str,
    queries: &[(u32, OffsetQuery)],
    isolation: v1::IsolationLevel,
) -> Result<Vec<ListedOffset>, ClientError> {
    let partitions = queries
        .iter()
        .map(|&(partition, query)| {
            let (spec, timestamp_ms) = match query {
                OffsetQuery::Earliest => (v1::OffsetSpec::Earliest, 0),
                OffsetQuery::Latest => (v1::OffsetSpec::Latest, 0),
                OffsetQuery::Timestamp(ts) => (v1::OffsetSpec::ByTimestamp, ts),
            };
            v1::ListOffsetsPartition { partition, spec: spec as i32, timestamp_ms }
        })
        .collect();
    let body = request::Body::ListOffsets(v1::ListOffsetsRequest {
        topics: vec![v1::ListOffsetsTopic { topic: topic.to_owned(), partitions }],
        isolation: isolation as i32,
    });
    let response = expect_body!(transport.call(body).await?, ListOffsets)?;
    let results: Vec<v1::ListOffsetsPartitionResult> = response
        .topics
        .into_iter()
        .filter(|t| t.topic == topic)
        .flat_map(|t| t.partitions)
        .collect();
    queries
        .iter()
        .map(|&(partition, query)| {
            let Some(r) = results.iter().find(|r| r.partition == partition) else {
                return Err(ClientError::UnexpectedResponse("list_offsets lacks a partition"));
            };
            if let Some(error) = &r.error
                && error.error_code() != ErrorCode::None
            {
                let error = error.clone();
                return Err(ClientError::Partition { topic: topic.to_owned(), partition, error });
            }
            let by_time = matches!(query, OffsetQuery::Timestamp(_));
            Ok(ListedOffset {
                partition,
                offset: r.offset,
                timestamp_ms: by_time.then_some(r.timestamp_ms),
                found: !by_time || r.found,
            })
        })
        .collect()
}
