//! Which Kafka APIs and versions this broker speaks, and the dispatch from a request frame to
//! its handler and back to an encoded answer.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use std::time::Duration;

use super::{Context, acls, admin, authz, data, groups, txn, users};
use crate::quotas::Direction;
use crate::security::Principal;
use crate::security::acls::Access;

/// The APIs served, with the versions served: Kafka's schemas (through `kafka-protocol`) cap
/// what can be decoded; these caps are what eddy implements (no topic ids, no KIP-848 fields).
const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    // Answered by `sasl.rs` before a request reaches `dispatch`.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
];

/// (api key, min version, max version) of every API served, as ApiVersions lists them.
pub fn supported_versions() -> Vec<(i16, i16, i16)> {
    SERVED
        .iter()
        .map(|&(key, min, max)| {
            let schema = key.valid_versions();
            (key as i16, min.max(schema.min), max.min(schema.max))
        })
        .collect()
}

/// The API `key` names, if `version` of it is served (checked on every request: no allocation).
pub(super) fn served(key: i16, version: i16) -> Option<ApiKey> {
    let &(api, min, max) = SERVED.iter().find(|(api, _, _)| *api as i16 == key)?;
    let schema = api.valid_versions();
    (min.max(schema.min)..=max.min(schema.max)).contains(&version).then_some(api)
}

/// Handles one request frame (header and body). `Ok(None)`: nothing is owed (a produce with
/// acks 0). `Err(reason)`: the connection is to be closed, for the reason given.
pub(super) async fn handle(
    cx: &Context,
    frame: Bytes,
    peer: std::net::SocketAddr,
    principal: &Principal,
    throttle: &mut Duration,
) -> Result<Option<Bytes>, String> {
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Some(api) = served(key, version) else {
        if key == ApiKey::ApiVersions as i16 {
            // Kafka's rule (KIP-511): a version too new is answered at version 0 with
            // UNSUPPORTED_VERSION and the list, so the client can pick a version it shares.
            let mut answer = api_versions(&ApiVersionsRequest::default());
            answer.error_code = kafka_protocol::error::ResponseError::UnsupportedVersion.code();
            return encode(ApiKey::ApiVersions, correlation_id, 0, &answer).map(Some);
        }
        let name = ApiKey::try_from(key)
            .map_or_else(|()| format!("unknown API key {key}"), |k| format!("{k:?}"));
        return Err(format!("{name} version {version} is not served (see ApiVersions)"));
    };
    let mut buf = frame;
    let header_version = api.request_header_version(version);
    let header = RequestHeader::decode(&mut buf, header_version)
        .map_err(|e| format!("malformed {api:?} v{version} request header: {e}"))?;
    tracing::trace!(?api, version, client = ?header.client_id, "kafka request");
    let caller = groups::Caller {
        client_id: header.client_id.map(|c| c.to_string()).unwrap_or_default(),
        host: format!("/{}", peer.ip()),
    };
    let started = cx.broker.meters().enabled().then(std::time::Instant::now);
    let access = cx.broker.access(principal, Some(peer.ip()));
    let who = Who { caller: &caller, principal, access: &access };
    let answer = dispatch(cx, &who, api, version, correlation_id, buf, throttle).await;
    if let Some(started) = started {
        cx.broker.meters().kafka_request(key, answer.is_err(), started.elapsed());
    }
    answer
}

pub(super) fn decode<T: Decodable>(
    api: ApiKey,
    version: i16,
    mut body: Bytes,
) -> Result<T, String> {
    let request = T::decode(&mut body, version)
        .map_err(|e| format!("malformed {api:?} v{version} request: {e}"))?;
    if !body.is_empty() {
        // Kafka's brokers ignore what follows a request, and librdkafka relies on it (its
        // Metadata v9+ with a null topic list leaves a 4-byte placeholder where the schema
        // has a 1-byte varint: librdkafka issue #5049). Ignored here too, and logged.
        tracing::debug!(?api, version, trailing = body.len(), "bytes after the end of a request");
    }
    Ok(request)
}

/// Encodes `answer` with its size prefix and response header.
pub(super) fn encode<T: Encodable + HeaderVersion>(
    api: ApiKey,
    correlation_id: i32,
    version: i16,
    answer: &T,
) -> Result<Bytes, String> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = T::header_version(version);
    // Sized up front: a fetch answer carries megabytes of records, and growing the buffer
    // while they go in would copy them again at every doubling.
    let size =
        header.compute_size(header_version).and_then(|h| Ok(h + answer.compute_size(version)?));
    let mut out = BytesMut::with_capacity(4 + size.unwrap_or(64));
    out.put_i32(0);
    let encoded =
        header.encode(&mut out, header_version).and_then(|()| answer.encode(&mut out, version));
    encoded.map_err(|e| format!("cannot encode the {api:?} v{version} answer: {e}"))?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

/// Who sent a request: the client's id and address, the connection's principal, and what
/// the ACLs let it do.
struct Who<'a> {
    caller: &'a groups::Caller,
    principal: &'a Principal,
    access: &'a Access,
}

impl Who<'_> {
    /// Counts `bytes` against this client's quota; the wait it owes (zero within its quota).
    fn quota(&self, cx: &Context, direction: Direction, bytes: u64) -> Duration {
        let quotas = cx.broker.quotas();
        if !quotas.enabled() {
            return Duration::ZERO;
        }
        quotas.record(
            self.principal,
            &self.caller.client_id,
            direction,
            bytes,
            crate::now_ms().max(0) as u64,
        )
    }
}

/// A wait as Kafka's `throttle_time_ms`.
fn millis(wait: Duration) -> i32 {
    i32::try_from(wait.as_millis()).unwrap_or(i32::MAX)
}

/// Runs one request as `who.access`'s. The group membership APIs are checked here (READ on
/// the group, GROUP_AUTHORIZATION_FAILED); every other handler checks what it touches.
async fn dispatch(
    cx: &Context,
    who: &Who<'_>,
    api: ApiKey,
    v: i16,
    id: i32,
    body: Bytes,
    throttle: &mut Duration,
) -> Result<Option<Bytes>, String> {
    let (caller, access) = (who.caller, who.access);
    macro_rules! answer {
        ($handler:expr) => {
            encode(api, id, v, &$handler).map(Some)
        };
    }
    match api {
        ApiKey::ApiVersions => answer!(api_versions(&decode(api, v, body)?)),
        ApiKey::Metadata => answer!(data::metadata(cx, access, decode(api, v, body)?, v)),
        ApiKey::Produce => {
            let request: ProduceRequest = decode(api, v, body)?;
            let bytes = request
                .topic_data
                .iter()
                .flat_map(|t| &t.partition_data)
                .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
                .sum();
            *throttle = who.quota(cx, Direction::Produce, bytes);
            match data::produce(cx, access, request, v).await {
                Some(answer) => answer!(answer.with_throttle_time_ms(millis(*throttle))),
                None => Ok(None),
            }
        }
        ApiKey::Fetch => {
            let answer = data::fetch(cx, access, decode(api, v, body)?).await;
            let bytes = answer
                .responses
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
                .sum();
            *throttle = who.quota(cx, Direction::Fetch, bytes);
            answer!(answer.with_throttle_time_ms(millis(*throttle)))
        }
        ApiKey::ListOffsets => {
            answer!(data::list_offsets(cx, access, decode(api, v, body)?, v).await)
        }
        ApiKey::InitProducerId => {
            answer!(txn::init_producer_id(cx, access, decode(api, v, body)?, v).await)
        }
        ApiKey::AddPartitionsToTxn => {
            answer!(txn::add_partitions(cx, access, decode(api, v, body)?, v).await)
        }
        ApiKey::AddOffsetsToTxn => {
            answer!(txn::add_offsets(cx, access, decode(api, v, body)?, v).await)
        }
        ApiKey::TxnOffsetCommit => {
            answer!(txn::txn_offset_commit(cx, access, decode(api, v, body)?, v).await)
        }
        ApiKey::EndTxn => answer!(txn::end_txn(cx, access, decode(api, v, body)?, v).await),
        ApiKey::CreateTopics => {
            answer!(admin::create_topics(cx, access, decode(api, v, body)?, v))
        }
        ApiKey::DeleteTopics => {
            answer!(admin::delete_topics(cx, access, decode(api, v, body)?, v))
        }
        ApiKey::CreatePartitions => {
            answer!(admin::create_partitions(cx, access, decode(api, v, body)?))
        }
        ApiKey::DescribeConfigs => {
            answer!(admin::describe_configs(cx, access, decode(api, v, body)?))
        }
        ApiKey::DescribeCluster => {
            answer!(admin::describe_cluster(cx, access, decode(api, v, body)?))
        }
        ApiKey::FindCoordinator => {
            answer!(groups::find_coordinator(cx, access, decode(api, v, body)?, v))
        }
        ApiKey::JoinGroup | ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup => {
            membership(cx, caller, access, (api, v, id), body).await
        }
        ApiKey::OffsetCommit => answer!(cx.groups.commit(access, decode(api, v, body)?).await),
        ApiKey::OffsetFetch => {
            answer!(cx.groups.fetch_offsets(access, decode(api, v, body)?).await)
        }
        ApiKey::ListGroups => answer!(cx.groups.list(access, decode(api, v, body)?).await),
        ApiKey::DescribeGroups => {
            answer!(cx.groups.describe(access, decode(api, v, body)?, v).await)
        }
        ApiKey::ConsumerGroupHeartbeat => {
            answer!(cx.consumer_groups.heartbeat(access, decode(api, v, body)?, caller).await)
        }
        ApiKey::DeleteGroups => answer!(cx.groups.delete(access, decode(api, v, body)?).await),
        ApiKey::DescribeAcls => answer!(acls::describe(cx, access, decode(api, v, body)?)),
        ApiKey::CreateAcls => answer!(acls::create(cx, access, decode(api, v, body)?).await),
        ApiKey::DeleteAcls => answer!(acls::delete(cx, access, decode(api, v, body)?).await),
        ApiKey::DescribeUserScramCredentials => {
            answer!(users::describe(cx, access, decode(api, v, body)?))
        }
        ApiKey::AlterUserScramCredentials => {
            answer!(users::alter(cx, access, decode(api, v, body)?).await)
        }
        other => Err(format!("{other:?} is not served")),
    }
}

/// The classic group protocol's membership requests, each needing READ on its group
/// (GROUP_AUTHORIZATION_FAILED, as Kafka) before the group sees it.
async fn membership(
    cx: &Context,
    caller: &groups::Caller,
    access: &Access,
    (api, v, id): (ApiKey, i16, i32),
    body: Bytes,
) -> Result<Option<Bytes>, String> {
    let answer = |bytes: Result<Bytes, String>| bytes.map(Some);
    match api {
        ApiKey::JoinGroup => {
            let r: JoinGroupRequest = decode(api, v, body)?;
            answer(match authz::group_read(access, &r.group_id) {
                Ok(()) => encode(api, id, v, &cx.groups.join(r, v, caller).await),
                Err(code) => encode(api, id, v, &authz::join_refused(code)),
            })
        }
        ApiKey::SyncGroup => {
            let r: SyncGroupRequest = decode(api, v, body)?;
            answer(match authz::group_read(access, &r.group_id) {
                Ok(()) => encode(api, id, v, &cx.groups.sync(r).await),
                Err(code) => encode(api, id, v, &authz::sync_refused(code)),
            })
        }
        ApiKey::Heartbeat => {
            let r: HeartbeatRequest = decode(api, v, body)?;
            answer(match authz::group_read(access, &r.group_id) {
                Ok(()) => encode(api, id, v, &cx.groups.heartbeat(r)),
                Err(code) => encode(api, id, v, &authz::heartbeat_refused(code)),
            })
        }
        ApiKey::LeaveGroup => {
            let r: LeaveGroupRequest = decode(api, v, body)?;
            answer(match authz::group_read(access, &r.group_id) {
                Ok(()) => encode(api, id, v, &cx.groups.leave(r, v)),
                Err(code) => encode(api, id, v, &authz::leave_refused(code)),
            })
        }
        other => Err(format!("{other:?} is not a membership request")),
    }
}

/// The ApiVersions answer: every API served and its versions.
fn api_versions(_request: &ApiVersionsRequest) -> ApiVersionsResponse {
    let api_keys = supported_versions()
        .into_iter()
        .map(|(key, min, max)| {
            ApiVersion::default().with_api_key(key).with_min_version(min).with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}
