//! The Kafka listener in process for the ACL tests: [`Kafka`] sends a request frame through
//! `eddy_broker::kafka::KafkaHandler` as a principal and decodes the answer; request builders
//! the tests share.

use bytes::{Buf, Bytes};
use eddy_broker::kafka::{Advertised, KafkaHandler};
use eddy_broker::security::Principal;
use eddy_tests::kafka_wire::{frame, text};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use super::{Fixture, batch};

pub struct Kafka {
    handler: KafkaHandler,
}

impl Kafka {
    pub fn new(f: &Fixture) -> Kafka {
        let advertised = Advertised { host: "127.0.0.1".into(), port: 9092 };
        Kafka { handler: KafkaHandler::new(f.broker.clone(), advertised) }
    }

    /// The raw answer (with its size prefix) to `request` sent as `who`.
    pub async fn raw(&self, who: &Principal, request: &[u8]) -> Bytes {
        let peer = "127.0.0.1:40000".parse().unwrap();
        let body = Bytes::copy_from_slice(&request[4..]);
        self.handler.handle(body, peer, who).await.unwrap().unwrap()
    }

    pub async fn call<Q, R>(&self, who: &Principal, key: ApiKey, version: i16, request: &Q) -> R
    where
        Q: Encodable + HeaderVersion,
        R: Decodable + HeaderVersion,
    {
        decode(self.raw(who, &frame(key, version, 7, request)).await, version)
    }
}

pub fn decode<R: Decodable + HeaderVersion>(mut answer: Bytes, version: i16) -> R {
    answer.advance(4);
    ResponseHeader::decode(&mut answer, R::header_version(version)).unwrap();
    R::decode(&mut answer, version).unwrap()
}

pub fn topic(name: &str) -> TopicName {
    TopicName(text(name))
}

pub fn group(name: &str) -> GroupId {
    GroupId(text(name))
}

pub fn produce_request(name: &str) -> ProduceRequest {
    let p = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(batch(&["k"])));
    let t = produce_request::TopicProduceData::default()
        .with_name(topic(name))
        .with_partition_data(vec![p]);
    ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![t])
}

pub fn fetch_request(name: &str) -> FetchRequest {
    let p = fetch_request::FetchPartition::default()
        .with_partition(0)
        .with_partition_max_bytes(1 << 16);
    let t = fetch_request::FetchTopic::default().with_topic(topic(name)).with_partitions(vec![p]);
    FetchRequest::default().with_max_bytes(1 << 20).with_topics(vec![t]).with_session_epoch(-1)
}

pub fn commit_request(g: &str, name: &str) -> OffsetCommitRequest {
    let p = offset_commit_request::OffsetCommitRequestPartition::default().with_committed_offset(1);
    let t = offset_commit_request::OffsetCommitRequestTopic::default()
        .with_name(topic(name))
        .with_partitions(vec![p]);
    OffsetCommitRequest::default()
        .with_group_id(group(g))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![t])
}

pub fn join_request(g: &str) -> JoinGroupRequest {
    let protocol = join_group_request::JoinGroupRequestProtocol::default().with_name(text("range"));
    JoinGroupRequest::default()
        .with_group_id(group(g))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(1_000)
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![protocol])
}

pub fn describe_configs_request(kind: i8, name: &str) -> DescribeConfigsRequest {
    let r = describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(kind)
        .with_resource_name(text(name));
    DescribeConfigsRequest::default().with_resources(vec![r])
}

pub fn acl_creation() -> CreateAclsRequest {
    let c = create_acls_request::AclCreation::default()
        .with_resource_type(2)
        .with_resource_name(text("x"))
        .with_resource_pattern_type(3)
        .with_principal(text("User:someone"))
        .with_host(text("*"))
        .with_operation(3)
        .with_permission_type(3);
    CreateAclsRequest::default().with_creations(vec![c])
}
