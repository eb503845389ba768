//! Growing a topic through the Kafka protocol (CreatePartitions): the new partitions exist
//! at once (Metadata, produce, fetch), survive a restart, the old partitions keep every
//! byte; shrinking is refused with INVALID_PARTITIONS, and growing a topic a processor reads
//! with POLICY_VIOLATION (its tasks and state are laid out per partition).

use bytes::Bytes;
use eddy_protocol::v1::{self, request};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::generate::batch_for_seed;
use eddy_tests::kafka_wire::{KafkaConnection, text};
use eddy_tests::raw_client::{RawClient, error_code};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;

const INVALID_PARTITIONS: i16 = 37;
const POLICY_VIOLATION: i16 = 44;

fn grow(kafka: &mut KafkaConnection, topic: &str, count: i32) -> (i16, Option<String>) {
    let r = CreatePartitionsRequest::default().with_timeout_ms(5_000).with_topics(vec![
        CreatePartitionsTopic::default().with_name(TopicName(text(topic))).with_count(count),
    ]);
    let answer: CreatePartitionsResponse = kafka.call(ApiKey::CreatePartitions, 2, &r);
    let result = &answer.results[0];
    (result.error_code, result.error_message.as_ref().map(|m| m.to_string()))
}

fn partitions(kafka: &mut KafkaConnection, topic: &str) -> usize {
    let r = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(text(topic)))),
    ]));
    let answer: MetadataResponse = kafka.call(ApiKey::Metadata, 9, &r);
    assert_eq!(answer.topics[0].error_code, 0, "{answer:?}");
    answer.topics[0].partitions.len()
}

#[test]
fn create_partitions_grows_a_topic_and_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker =
        BrokerProcess::start(dir.path(), &[("EDDY_MAINTENANCE_INTERVAL_MS", "86400000")]);
    let mut native = RawClient::connect(broker.addr());
    native.create_topic("grow", 2);
    native.create_topic("read", 1);
    let mut before = Vec::new();
    for p in 0..2 {
        let batch = batch_for_seed(u64::from(p) + 1);
        native.produce_ok("grow", p, Bytes::from(batch));
        before.push(native.fetch_all("grow", p, 0));
    }
    let mut kafka = KafkaConnection::connect(broker.kafka_addr());

    assert_eq!(grow(&mut kafka, "grow", 4).0, 0);
    assert_eq!(partitions(&mut kafka, "grow"), 4);
    let (code, message) = grow(&mut kafka, "grow", 3);
    assert_eq!(code, INVALID_PARTITIONS, "{message:?}");
    assert_eq!(grow(&mut kafka, "grow", 4).0, INVALID_PARTITIONS, "no change is no growth");
    let (base, _) = native.produce_ok("grow", 3, Bytes::from(batch_for_seed(9)));
    assert_eq!(base, 0, "a new partition starts at offset 0");

    // A topic a processor reads does not grow.
    let spec = "name = \"counts\"\nversion = 1\nsource = { topic = \"read\", format = \"text\" }\n[[ops]]\nop = \"key_by\"\nfield = \"value\"\n[[ops]]\nop = \"aggregate\"\ntable = \"counts\"\nfn = \"count\"\n";
    let deployed = native.call(request::Body::DeployProcessor(v1::DeployProcessorRequest {
        spec: spec.to_string(),
    }));
    assert_eq!(error_code(&deployed), None, "{deployed:?}");
    let (code, message) = grow(&mut kafka, "read", 2);
    assert_eq!(code, POLICY_VIOLATION, "{message:?}");
    assert!(message.unwrap_or_default().contains("counts"), "the refusal names the processor");
    assert_eq!(partitions(&mut kafka, "read"), 1);

    // After a restart: four partitions, the old ones byte for byte as they were.
    drop(kafka);
    drop(native);
    broker.terminate();
    let broker = BrokerProcess::start(dir.path(), &[("EDDY_MAINTENANCE_INTERVAL_MS", "86400000")]);
    let mut kafka = KafkaConnection::connect(broker.kafka_addr());
    assert_eq!(partitions(&mut kafka, "grow"), 4);
    let mut native = RawClient::connect(broker.addr());
    for (p, bytes) in before.iter().enumerate() {
        assert!(native.fetch_all("grow", p as u32, 0) == *bytes, "grow-{p} changed");
    }
    assert!(native.next_offset("grow", 3) > 0, "what grow-3 was given is still there");
}
