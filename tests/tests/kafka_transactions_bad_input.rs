//! Transactional requests that must be refused, as raw Kafka frames against `eddy serve`: each
//! gets Kafka's error code for it, nothing is appended by a refused request, and the broker
//! keeps serving (a good transaction commits afterwards; a malformed EndTxn closes only its own
//! connection).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use eddy_storage::batch::header::{ATTR_CONTROL, ATTRIBUTES, seal_checksums};
use eddy_storage::batch::{BatchBuilder, Record};
use eddy_storage::{ControlType, Marker};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::kafka_wire::{KafkaConnection, frame, text};
use eddy_tests::raw_client::RawClient;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const INVALID_RECORD: i16 = 87;
const PRODUCER_FENCED: i16 = 90;

fn txn_batch(pid: i64, epoch: i16, seq: i32, value: &str) -> Bytes {
    let mut b = BatchBuilder::new().producer(pid, epoch, seq).transactional();
    b.push(Record {
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(value.as_bytes()),
        headers: &[],
    });
    b.build()
}

fn produce(id: Option<&str>, partition: i32, records: Bytes) -> ProduceRequest {
    let data = PartitionProduceData::default().with_index(partition).with_records(Some(records));
    let topic =
        TopicProduceData::default().with_name(TopicName(text("t"))).with_partition_data(vec![data]);
    ProduceRequest::default()
        .with_transactional_id(id.map(|i| TransactionalId(text(i))))
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![topic])
}

fn send(kafka: &mut KafkaConnection, request: &ProduceRequest) -> i16 {
    let answer: ProduceResponse = kafka.call(ApiKey::Produce, 9, request);
    answer.responses[0].partition_responses[0].error_code
}

fn init(kafka: &mut KafkaConnection, id: &str, timeout_ms: i32) -> InitProducerIdResponse {
    let r = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(text(id))))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    kafka.call(ApiKey::InitProducerId, 4, &r)
}

/// AddPartitionsToTxn at `version`: the error code of every partition asked for, in order.
fn add(
    kafka: &mut KafkaConnection,
    version: i16,
    id: &str,
    pid: i64,
    epoch: i16,
    topics: &[(&str, &[i32])],
) -> Vec<i16> {
    let topics = topics
        .iter()
        .map(|(t, ps)| {
            AddPartitionsToTxnTopic::default()
                .with_name(TopicName(text(t)))
                .with_partitions(ps.to_vec())
        })
        .collect();
    let r = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(text(id)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(topics);
    let answer: AddPartitionsToTxnResponse = kafka.call(ApiKey::AddPartitionsToTxn, version, &r);
    answer
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| t.results_by_partition.iter().map(|p| p.partition_error_code))
        .collect()
}

fn end(
    kafka: &mut KafkaConnection,
    version: i16,
    id: &str,
    pid: i64,
    epoch: i16,
    commit: bool,
) -> i16 {
    let r = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(text(id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let answer: EndTxnResponse = kafka.call(ApiKey::EndTxn, version, &r);
    answer.error_code
}

#[test]
fn refused_transactional_requests_get_kafkas_codes_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut native = RawClient::connect(broker.addr());
    native.create_topic("t", 2);
    let mut kafka = KafkaConnection::connect(broker.kafka_addr());

    // Unknown transactional ids.
    assert_eq!(end(&mut kafka, 3, "nobody", 1, 0, true), INVALID_PRODUCER_ID_MAPPING);
    assert_eq!(add(&mut kafka, 3, "nobody", 1, 0, &[("t", &[0])]), [INVALID_PRODUCER_ID_MAPPING]);
    // Timeouts outside 1..=15 min.
    assert_eq!(init(&mut kafka, "x", 0).error_code, INVALID_TRANSACTION_TIMEOUT);
    assert_eq!(init(&mut kafka, "x", 900_001).error_code, INVALID_TRANSACTION_TIMEOUT);

    let first = init(&mut kafka, "x", 60_000);
    assert_eq!(first.error_code, 0);
    let (pid, epoch) = (first.producer_id.0, first.producer_epoch);
    // Nothing is open: EndTxn has nothing to end.
    assert_eq!(end(&mut kafka, 3, "x", pid, epoch, true), INVALID_TXN_STATE);
    // Wrong epoch: PRODUCER_FENCED from v2, INVALID_PRODUCER_EPOCH before; wrong producer id.
    assert_eq!(add(&mut kafka, 3, "x", pid, epoch + 1, &[("t", &[0])]), [PRODUCER_FENCED]);
    assert_eq!(add(&mut kafka, 1, "x", pid, epoch + 1, &[("t", &[0])]), [INVALID_PRODUCER_EPOCH]);
    assert_eq!(end(&mut kafka, 1, "x", pid, epoch + 1, false), INVALID_PRODUCER_EPOCH);
    assert_eq!(
        add(&mut kafka, 3, "x", pid + 1, epoch, &[("t", &[0])]),
        [INVALID_PRODUCER_ID_MAPPING]
    );
    // A partition that does not exist: none of the request is done.
    assert_eq!(
        add(&mut kafka, 3, "x", pid, epoch, &[("t", &[0, 7]), ("missing", &[0])]),
        [OPERATION_NOT_ATTEMPTED, UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_OR_PARTITION]
    );
    // Transactional batches: to a partition not added, and without a transactional id.
    assert_eq!(
        send(&mut kafka, &produce(Some("x"), 0, txn_batch(pid, epoch, 0, "no"))),
        INVALID_TXN_STATE
    );
    assert_eq!(
        send(&mut kafka, &produce(None, 0, txn_batch(pid, epoch, 0, "no"))),
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );
    // Control batches from a client: with the transactional bit (a marker), and without.
    let marker = Marker {
        producer_id: pid,
        producer_epoch: epoch,
        kind: ControlType::Commit,
        coordinator_epoch: 0,
        timestamp: 1,
    };
    let marker = marker.batch().into_bytes();
    let mut control_only = marker.to_vec();
    control_only[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&ATTR_CONTROL.to_be_bytes());
    seal_checksums(&mut control_only);
    assert_eq!(send(&mut kafka, &produce(None, 0, Bytes::from(control_only))), INVALID_RECORD);
    assert_eq!(add(&mut kafka, 3, "x", pid, epoch, &[("t", &[0])]), [0]);
    assert_eq!(send(&mut kafka, &produce(Some("x"), 0, marker)), INVALID_RECORD);
    // Offsets for a group not added to the transaction.
    let offsets = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(text("x")))
        .with_group_id(GroupId(text("g")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_topics(vec![
            TxnOffsetCommitRequestTopic::default().with_name(TopicName(text("t"))).with_partitions(
                vec![
                    TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1),
                ],
            ),
        ]);
    let answer: TxnOffsetCommitResponse = kafka.call(ApiKey::TxnOffsetCommit, 3, &offsets);
    assert_eq!(answer.topics[0].partitions[0].error_code, INVALID_TXN_STATE);
    assert_eq!(native.next_offset("t", 0), 0, "a refused request appended something");

    // The transaction still works: a record, then commit.
    assert_eq!(send(&mut kafka, &produce(Some("x"), 0, txn_batch(pid, epoch, 0, "yes"))), 0);
    assert_eq!(end(&mut kafka, 3, "x", pid, epoch, true), 0);
    // A retried EndTxn is answered as done.
    assert_eq!(end(&mut kafka, 3, "x", pid, epoch, true), 0);
    assert_eq!(end(&mut kafka, 3, "x", pid, epoch, false), INVALID_TXN_STATE);
    assert_eq!(native.next_offset("t", 0), 2, "the record and its COMMIT marker");

    // A malformed EndTxn (cut short) closes only its own connection.
    let mut bad = TcpStream::connect(broker.kafka_addr()).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let whole = frame(
        ApiKey::EndTxn,
        3,
        1,
        &EndTxnRequest::default().with_transactional_id(TransactionalId(text("x"))),
    );
    let mut cut = whole[..whole.len() - 6].to_vec();
    let size = (cut.len() - 4) as i32;
    cut[..4].copy_from_slice(&size.to_be_bytes());
    bad.write_all(&cut).unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        bad.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0),
        0,
        "answered a malformed EndTxn"
    );
    assert_eq!(end(&mut kafka, 3, "x", pid, epoch, true), 0, "the broker stopped serving");
}
