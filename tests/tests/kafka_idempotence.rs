//! An idempotent Kafka producer's rules, as Kafka's brokers apply them, over the Kafka
//! listener: InitProducerId hands out an id; a batch sent again (a retry) is answered with
//! the offsets it got the first time and stored once; a gap in the sequence is
//! OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch is INVALID_PRODUCER_EPOCH; up to five batches
//! in flight on one connection are appended in order.

use std::io::Write;
use std::net::TcpStream;

use bytes::Bytes;
use eddy_storage::batch::{BatchBuilder, Record};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::kafka_wire::{KafkaConnection, frame, read_answer, text};
use eddy_tests::raw_client::RawClient;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, HeaderVersion};

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;

fn batch(id: i64, epoch: i16, sequence: i32, records: u32) -> Bytes {
    let mut b = BatchBuilder::new().producer(id, epoch, sequence);
    for i in 0..records {
        let value = format!("seq {}", sequence as u32 + i);
        b.push(Record {
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(value.as_bytes()),
            headers: &[],
        });
    }
    b.build()
}

fn produce(records: Bytes) -> ProduceRequest {
    let partition = PartitionProduceData::default().with_index(0).with_records(Some(records));
    let topic = TopicProduceData::default()
        .with_name(TopicName(text("idem")))
        .with_partition_data(vec![partition]);
    ProduceRequest::default().with_acks(-1).with_timeout_ms(5_000).with_topic_data(vec![topic])
}

/// (error code, base offset) of a one-partition produce.
fn send(kafka: &mut KafkaConnection, records: Bytes) -> (i16, i64) {
    let answer: ProduceResponse = kafka.call(ApiKey::Produce, 9, &produce(records));
    let p = &answer.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn retries_are_stored_once_gaps_and_old_epochs_are_refused_and_five_in_flight_keep_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut native = RawClient::connect(broker.addr());
    native.create_topic("idem", 1);
    let mut kafka = KafkaConnection::connect(broker.kafka_addr());
    let init: InitProducerIdResponse = kafka.call(
        ApiKey::InitProducerId,
        2,
        &InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
    );
    assert_eq!(init.error_code, 0, "{init:?}");
    let (id, epoch) = (init.producer_id.0, init.producer_epoch);
    assert!(id >= 0);

    assert_eq!(send(&mut kafka, batch(id, epoch, 0, 3)), (0, 0));
    assert_eq!(send(&mut kafka, batch(id, epoch, 3, 2)), (0, 3));
    // The same batch again: a retry whose first answer was lost. Same offsets, stored once.
    assert_eq!(send(&mut kafka, batch(id, epoch, 3, 2)), (0, 3));
    assert_eq!(native.next_offset("idem", 0), 5);
    // A gap: sequence 9 when 5 is next.
    assert_eq!(send(&mut kafka, batch(id, epoch, 9, 1)).0, OUT_OF_ORDER_SEQUENCE_NUMBER);
    // A newer epoch fences the older one.
    assert_eq!(send(&mut kafka, batch(id, epoch + 1, 0, 1)), (0, 5));
    assert_eq!(send(&mut kafka, batch(id, epoch, 5, 1)).0, INVALID_PRODUCER_EPOCH);
    assert_eq!(native.next_offset("idem", 0), 6);

    // Five batches in flight on one connection, sent before any answer is read.
    let mut stream = TcpStream::connect(broker.kafka_addr()).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    for i in 0..5 {
        let records = batch(id, epoch + 1, 1 + i * 2, 2);
        stream.write_all(&frame(ApiKey::Produce, 9, 100 + i, &produce(records))).unwrap();
    }
    for i in 0..5 {
        let mut answer = read_answer(&mut stream);
        let header =
            ResponseHeader::decode(&mut answer, ProduceResponse::header_version(9)).unwrap();
        assert_eq!(header.correlation_id, 100 + i, "answers in request order");
        let decoded = ProduceResponse::decode(&mut answer, 9).unwrap();
        let p = &decoded.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, 6 + i64::from(i) * 2), "{decoded:?}");
    }
    assert_eq!(native.next_offset("idem", 0), 16);
}
