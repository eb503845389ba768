//! The consumer against the in-memory fake broker.

use std::sync::Arc;
use std::time::Duration;

use eddy_storage::{BatchBuilder, Record};

use super::{Consumer, ConsumerConfig, SeekTo};
use crate::fake_broker::FakeBroker;
use crate::{ClientError, ErrorCode};

/// Appends a batch of `values` with timestamps from `first_ts`, returns its base offset.
fn append(broker: &FakeBroker, values: &[&str], first_ts: i64) -> u64 {
    let mut builder = BatchBuilder::new();
    for (i, v) in values.iter().enumerate() {
        builder.push(Record {
            timestamp: first_ts + i as i64,
            key: Some(b"k"),
            value: Some(v.as_bytes()),
            headers: &[eddy_storage::Header { key: b"h", value: Some(b"hv") }],
        });
    }
    broker.append("t", 0, &builder.build())
}

fn broker_with_two_batches() -> Arc<FakeBroker> {
    let broker = FakeBroker::with_topic("t", 1);
    append(&broker, &["a", "b", "c", "d", "e"], 100);
    append(&broker, &["f", "g"], 200);
    broker
}

fn values(batches: &[super::ConsumedBatch]) -> Vec<(u64, String)> {
    batches
        .iter()
        .flat_map(|b| b.records().map(Result::unwrap).collect::<Vec<_>>())
        .map(|r| (r.offset, String::from_utf8(r.value.unwrap().to_vec()).unwrap()))
        .collect()
}

#[tokio::test]
async fn poll_from_mid_batch_skips_earlier_records_and_advances_the_position() {
    let broker = broker_with_two_batches();
    let mut consumer = Consumer::new(Arc::clone(&broker), ConsumerConfig::default());
    consumer.assign("t", [0]);
    assert_eq!(consumer.seek("t", 0, SeekTo::Offset(3)).await.unwrap(), 3);
    let batches = consumer.poll(Duration::ZERO).await.unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].base_offset(), 0, "the fetch began mid-batch");
    assert_eq!(
        values(&batches),
        [(3, "d"), (4, "e"), (5, "f"), (6, "g")].map(|(o, v)| (o, v.to_owned())).to_vec()
    );
    assert_eq!(consumer.position("t", 0), Some(7));
    assert_eq!(batches[1].high_watermark(), 7);

    let owned = batches[0].to_records().unwrap();
    assert_eq!(owned.len(), 2);
    assert_eq!(owned[0].offset, 3);
    assert_eq!(owned[0].timestamp, 103);
    assert_eq!(owned[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(owned[0].headers[0].value.as_deref(), Some(&b"hv"[..]));
    assert_eq!(&*owned[0].topic, "t");

    assert!(consumer.poll(Duration::ZERO).await.unwrap().is_empty(), "nothing new");
    assert_eq!(consumer.position("t", 0), Some(7));
}

#[tokio::test]
async fn new_assignment_starts_where_the_config_says() {
    let broker = broker_with_two_batches();
    let mut earliest = Consumer::new(Arc::clone(&broker), ConsumerConfig::default());
    earliest.assign("t", [0]);
    assert_eq!(earliest.position("t", 0), None, "unresolved until the first poll");
    assert_eq!(values(&earliest.poll(Duration::ZERO).await.unwrap()).len(), 7);

    let config = ConsumerConfig { start: SeekTo::Latest, ..ConsumerConfig::default() };
    let mut latest = Consumer::new(Arc::clone(&broker), config);
    latest.assign("t", [0]);
    assert!(latest.poll(Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(latest.position("t", 0), Some(7));
    append(&broker, &["h"], 300);
    assert_eq!(values(&latest.poll(Duration::ZERO).await.unwrap()), vec![(7, "h".to_owned())]);
}

#[tokio::test]
async fn seek_by_timestamp_finds_the_first_record_at_or_after_it() {
    let broker = broker_with_two_batches();
    let mut consumer = Consumer::new(Arc::clone(&broker), ConsumerConfig::default());
    consumer.assign("t", [0]);
    assert_eq!(consumer.seek("t", 0, SeekTo::Timestamp(150)).await.unwrap(), 5);
    assert_eq!(consumer.seek("t", 0, SeekTo::Earliest).await.unwrap(), 0);
    assert_eq!(consumer.seek("t", 0, SeekTo::Latest).await.unwrap(), 7);
}

#[tokio::test]
async fn offset_out_of_range_is_a_typed_error_and_moves_no_position() {
    let broker = broker_with_two_batches();
    let mut consumer = Consumer::new(Arc::clone(&broker), ConsumerConfig::default());
    consumer.assign("t", [0]);
    consumer.seek("t", 0, SeekTo::Offset(99)).await.unwrap();
    let err = consumer.poll(Duration::ZERO).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Partition { topic, partition: 0, .. } if topic == "t"),
        "{err:?}"
    );
    assert_eq!(err.code(), Some(ErrorCode::OffsetOutOfRange));
    assert_eq!(consumer.position("t", 0), Some(99));
}

#[tokio::test]
async fn offset_out_of_range_resets_when_configured() {
    let broker = broker_with_two_batches();
    let config =
        ConsumerConfig { reset_out_of_range: Some(SeekTo::Earliest), ..ConsumerConfig::default() };
    let mut consumer = Consumer::new(Arc::clone(&broker), config);
    consumer.assign("t", [0]);
    consumer.seek("t", 0, SeekTo::Offset(99)).await.unwrap();
    assert!(consumer.poll(Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(consumer.position("t", 0), Some(0));
    assert_eq!(values(&consumer.poll(Duration::ZERO).await.unwrap()).len(), 7);
}

#[tokio::test]
async fn corrupted_batch_body_is_reported_when_records_are_read() {
    let broker = FakeBroker::with_topic("t", 1);
    append(&broker, &["a", "b"], 100);
    {
        let mut state = broker.state.lock().unwrap();
        let batch = &mut state.topics.get_mut("t").unwrap()[0].batches[0];
        let mut bytes = batch.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        *batch = bytes.into();
    }
    let mut consumer = Consumer::new(Arc::clone(&broker), ConsumerConfig::default());
    consumer.assign("t", [0]);
    let batches = consumer.poll(Duration::ZERO).await.unwrap();
    let mut records = batches[0].records();
    let err = records.next().unwrap().unwrap_err();
    assert!(matches!(err, ClientError::CorruptFetch { partition: 0, offset: 0, .. }), "{err:?}");
    assert!(records.next().is_none(), "nothing after the error");
    assert!(batches[0].to_records().is_err());
}

#[tokio::test]
async fn seek_on_an_unassigned_partition_is_refused() {
    let broker = broker_with_two_batches();
    let mut consumer = Consumer::new(Arc::clone(&broker), ConsumerConfig::default());
    consumer.assign("t", [0]);
    let err = consumer.seek("t", 1, SeekTo::Earliest).await.unwrap_err();
    assert!(matches!(err, ClientError::NotAssigned { partition: 1, .. }), "{err:?}");
    consumer.assign("t", []);
    assert!(consumer.assignment().is_empty());
    assert!(consumer.poll(Duration::ZERO).await.unwrap().is_empty());
}
