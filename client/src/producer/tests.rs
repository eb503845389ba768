//! The producer against the in-memory fake broker, on paused tokio time (linger and backoff
//! pass instantly and deterministically).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eddy_protocol::v1;
use eddy_storage::BatchView;
use eddy_storage::batch::BatchHeader;

use super::{Delivery, Producer, ProducerConfig};
use crate::fake_broker::FakeBroker;
use crate::partitioner::partition_for_key;
use crate::{ClientError, ErrorCode, ProducerRecord};

fn value(i: usize) -> ProducerRecord {
    ProducerRecord::value(format!("v{i}")).with_timestamp(1_000 + i as i64)
}

async fn send_all(
    producer: &Producer<Arc<FakeBroker>>,
    partition: Option<u32>,
    n: usize,
) -> Vec<Delivery> {
    let mut deliveries = Vec::new();
    for i in 0..n {
        deliveries.push(producer.send("t", partition, value(i)).await.unwrap());
    }
    deliveries
}

/// The batches of every produce request: (partition, record count, bytes).
fn produced_batches(broker: &FakeBroker) -> Vec<Vec<(u32, u32, Bytes)>> {
    let state = broker.state.lock().unwrap();
    state
        .produces
        .iter()
        .map(|p| {
            p.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| {
                    let count = BatchView::parse(&p.batch).unwrap().header().record_count;
                    (p.partition, count, p.batch.clone())
                })
                .collect()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn records_are_batched_and_acknowledged_with_their_own_offsets() {
    let broker = FakeBroker::with_topic("t", 1);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let deliveries = send_all(&producer, None, 10).await;
    producer.flush().await.unwrap();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let meta = delivery.await.unwrap();
        assert_eq!(
            (meta.partition, meta.offset, meta.timestamp),
            (0, Some(i as u64), 1_000 + i as i64)
        );
    }
    let requests = produced_batches(&broker);
    assert_eq!(requests.len(), 1, "one request: {requests:?}");
    assert_eq!(requests[0].len(), 1);
    assert_eq!(requests[0][0].1, 10, "one batch of all ten records");
    let values: Vec<_> = broker.values("t", 0).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, (0..10).map(|i| format!("v{i}").into_bytes()).collect::<Vec<_>>());
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn keyed_records_go_to_the_kafka_murmur2_partition() {
    let broker = FakeBroker::with_topic("t", 7);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    for key in ["21", "foobar", "abc", "a-little-bit-long-string"] {
        let meta =
            producer.send_and_wait("t", None, ProducerRecord::keyed(key, "x")).await.unwrap();
        assert_eq!(meta.partition, partition_for_key(key.as_bytes(), 7), "key {key}");
    }
    // murmur2("21") = -973932308; without the sign bit 1173551340; modulo 7.
    assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn keyless_records_fill_a_batch_per_partition_round_robin() {
    let broker = FakeBroker::with_topic("t", 3);
    // Each batch holds a few records and closes only when full (or on flush).
    let linger = Duration::from_secs(3600);
    let config = ProducerConfig { batch_bytes: 200, linger, ..ProducerConfig::default() };
    let producer = Producer::new(Arc::clone(&broker), config).unwrap();
    let deliveries = send_all(&producer, None, 30).await;
    producer.flush().await.unwrap();
    let mut partitions_in_order = Vec::new();
    for delivery in deliveries {
        let p = delivery.await.unwrap().partition;
        if partitions_in_order.last() != Some(&p) {
            partitions_in_order.push(p);
        }
    }
    let batches: Vec<_> = produced_batches(&broker).into_iter().flatten().collect();
    let counts: Vec<_> = batches.iter().map(|b| (b.0, b.1)).collect();
    assert!(batches.iter().all(|b| b.1 > 1), "batches are filled, not one record each: {counts:?}");
    assert_eq!(partitions_in_order.len(), batches.len(), "one partition switch per batch");
    for pair in partitions_in_order.windows(2) {
        assert_eq!(pair[1], (pair[0] + 1) % 3, "round-robin: {partitions_in_order:?}");
    }
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retry_after_a_lost_answer_is_answered_as_duplicate_with_the_original_offsets() {
    let broker = FakeBroker::with_topic("t", 1);
    broker.state.lock().unwrap().lose_answers = 1;
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let deliveries = send_all(&producer, Some(0), 3).await;
    for (i, delivery) in deliveries.into_iter().enumerate() {
        assert_eq!(delivery.await.unwrap().offset, Some(i as u64));
    }
    assert_eq!(broker.values("t", 0).len(), 3, "written once");
    let requests = produced_batches(&broker);
    assert_eq!(requests.len(), 2, "the first attempt and one retry");
    assert_eq!(requests[0][0].2, requests[1][0].2, "the retry resends the same bytes");
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn idempotent_producer_keeps_five_batches_in_flight_per_partition() {
    let broker = Arc::new(FakeBroker {
        produce_latency: Duration::from_millis(20),
        ..FakeBroker::default()
    });
    broker.create("t", 2);
    let config =
        ProducerConfig { batch_bytes: 120, linger: Duration::ZERO, ..ProducerConfig::default() };
    let producer = Producer::new(Arc::clone(&broker), config).unwrap();
    let mut deliveries = Vec::new();
    for i in 0..200 {
        deliveries.push(producer.send("t", Some((i % 2) as u32), value(i)).await.unwrap());
    }
    let mut next = [0u64; 2];
    for delivery in deliveries {
        let meta = delivery.await.unwrap();
        let expected = &mut next[meta.partition as usize];
        assert_eq!(meta.offset, Some(*expected), "in order within the partition");
        *expected += 1;
    }
    producer.close().await.unwrap();
    let state = broker.state.lock().unwrap();
    assert_eq!(state.max_in_flight_per_partition, 5);
    assert!(
        state
            .produces
            .iter()
            .any(|p| p.topics.iter().map(|t| t.partitions.len()).sum::<usize>() == 2),
        "one request carries both partitions"
    );
    // Every batch went once, in sequence order: nothing was resent.
    for partition in 0..2 {
        let sequences: Vec<i32> =
            state.arrivals.iter().filter(|(p, _)| *p == partition).map(|(_, s)| *s).collect();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn idempotent_max_in_flight_above_five_is_refused() {
    let broker = FakeBroker::with_topic("t", 1);
    let config = ProducerConfig { max_in_flight: 6, ..ProducerConfig::default() };
    let err = Producer::new(Arc::clone(&broker), config).unwrap_err();
    assert!(matches!(err, ClientError::Config { field: "max_in_flight", .. }), "{err:?}");
    let plain =
        ProducerConfig { max_in_flight: 16, idempotent: false, ..ProducerConfig::default() };
    Producer::new(broker, plain).unwrap().close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn refused_batch_fails_its_records_and_its_sequence_is_reused() {
    let broker = FakeBroker::with_topic("t", 1);
    broker.state.lock().unwrap().refuse.push_back(ErrorCode::BatchTooLarge);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let refused = producer.send("t", None, value(0)).await.unwrap().await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::BatchTooLarge), "{refused:?}");
    assert!(matches!(refused, ClientError::Partition { partition: 0, .. }));
    // The fake refuses a sequence gap, so this succeeds only if sequence 0 was reused.
    let meta = producer.send_and_wait("t", None, value(1)).await.unwrap();
    assert_eq!(meta.offset, Some(0));
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retriable_error_is_retried_and_gives_up_after_the_limit() {
    let broker = FakeBroker::with_topic("t", 1);
    broker.state.lock().unwrap().refuse.extend([ErrorCode::NoSpace, ErrorCode::NoSpace]);
    let config = ProducerConfig { retries: 2, ..ProducerConfig::default() };
    let producer = Producer::new(Arc::clone(&broker), config).unwrap();
    assert_eq!(producer.send_and_wait("t", None, value(0)).await.unwrap().offset, Some(0));
    broker.state.lock().unwrap().refuse.extend([ErrorCode::NoSpace; 3]);
    let err = producer.send_and_wait("t", None, value(1)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NoSpace));
    assert_eq!(broker.state.lock().unwrap().produces.len(), 3 + 3);
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn unknown_topic_and_partition_are_refused_at_send() {
    let broker = FakeBroker::with_topic("t", 2);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let err = producer.send("nope", None, value(0)).await.unwrap_err();
    assert!(matches!(&err, ClientError::Topic { topic, .. } if topic == "nope"), "{err:?}");
    assert_eq!(err.code(), Some(ErrorCode::UnknownTopic));
    let err = producer.send("t", Some(2), value(0)).await.unwrap_err();
    assert!(matches!(err, ClientError::Partition { partition: 2, .. }), "{err:?}");
    assert_eq!(err.code(), Some(ErrorCode::UnknownPartition));
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn acks_none_sends_without_answers_and_resolves_without_offsets() {
    let broker = FakeBroker::with_topic("t", 1);
    let config =
        ProducerConfig { acks: v1::Acks::None, idempotent: false, ..ProducerConfig::default() };
    let producer = Producer::new(Arc::clone(&broker), config).unwrap();
    let meta = producer.send_and_wait("t", None, value(0)).await.unwrap();
    assert_eq!((meta.partition, meta.offset), (0, None));
    assert_eq!(broker.state.lock().unwrap().sends, 1);
    assert_eq!(broker.values("t", 0).len(), 1);
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn acks_none_turns_the_default_idempotence_off() {
    let broker = FakeBroker::with_topic("t", 1);
    let config = ProducerConfig { acks: v1::Acks::None, ..ProducerConfig::default() };
    assert!(config.idempotent);
    let producer = Producer::new(Arc::clone(&broker), config).unwrap();
    assert_eq!(producer.send_and_wait("t", None, value(0)).await.unwrap().offset, None);
    producer.close().await.unwrap();
    let batches = produced_batches(&broker);
    let header = *BatchView::parse(&batches[0][0].2).unwrap().header();
    assert!(!header.is_idempotent(), "no InitProducer, no sequence");
}

#[tokio::test(start_paused = true)]
async fn zero_max_in_flight_is_refused() {
    let broker = FakeBroker::with_topic("t", 1);
    let config = ProducerConfig { max_in_flight: 0, ..ProducerConfig::default() };
    let err = Producer::new(broker, config).unwrap_err();
    assert!(matches!(err, ClientError::Config { field: "max_in_flight", .. }), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn flush_sends_without_waiting_for_linger() {
    let broker = FakeBroker::with_topic("t", 1);
    let config = ProducerConfig { linger: Duration::from_secs(3600), ..ProducerConfig::default() };
    let producer = Producer::new(Arc::clone(&broker), config).unwrap();
    let deliveries = send_all(&producer, None, 3).await;
    let started = tokio::time::Instant::now();
    producer.flush().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "flush did not wait out the linger");
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropped_producer_still_delivers_what_it_accepted() {
    let broker = FakeBroker::with_topic("t", 1);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let deliveries = send_all(&producer, None, 5).await;
    drop(producer);
    for (i, delivery) in deliveries.into_iter().enumerate() {
        assert_eq!(delivery.await.unwrap().offset, Some(i as u64));
    }
}

#[tokio::test(start_paused = true)]
async fn small_buffer_applies_backpressure_without_losing_records() {
    let broker = FakeBroker::with_topic("t", 1);
    let config =
        ProducerConfig { buffer_bytes: 256, batch_bytes: 128, ..ProducerConfig::default() };
    let producer = Producer::new(Arc::clone(&broker), config).unwrap();
    let deliveries = send_all(&producer, None, 50).await;
    for (i, delivery) in deliveries.into_iter().enumerate() {
        assert_eq!(delivery.await.unwrap().offset, Some(i as u64));
    }
    assert_eq!(broker.values("t", 0).len(), 50);
    producer.close().await.unwrap();
}

// ---- send_batch: groups of records sent as one batch ----

fn group(from: usize, n: usize) -> Vec<ProducerRecord> {
    (from..from + n).map(value).collect()
}

fn header_of(batch: &Bytes) -> BatchHeader {
    *BatchView::parse(batch).unwrap().header()
}

#[tokio::test(start_paused = true)]
async fn a_group_is_sent_as_one_batch_and_acknowledged_with_its_offsets() {
    let broker = FakeBroker::with_topic("t", 1);
    // Far smaller than the group: a group is never split by `batch_bytes`.
    let config = ProducerConfig { batch_bytes: 100, ..ProducerConfig::default() };
    let producer = Producer::new(Arc::clone(&broker), config).unwrap();
    let first = producer.send_batch("t", None, group(0, 50)).await.unwrap().await.unwrap();
    let second = producer.send_batch("t", Some(0), group(50, 7)).await.unwrap();
    let second = second.await.unwrap();
    assert_eq!(
        (first.partition, first.base_offset, first.last_offset, first.record_count),
        (0, Some(0), Some(49), 50)
    );
    assert_eq!(
        (second.base_offset, second.last_offset, second.record_count),
        (Some(50), Some(56), 7)
    );
    assert_eq!(&*second.topic, "t");
    let counts: Vec<Vec<u32>> =
        produced_batches(&broker).iter().map(|r| r.iter().map(|b| b.1).collect()).collect();
    assert_eq!(counts, vec![vec![50], vec![7]], "one request and one batch per group");
    let values: Vec<_> = broker.values("t", 0).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, (0..57).map(|i| format!("v{i}").into_bytes()).collect::<Vec<_>>());
    // The caller's timestamps are kept.
    let batches = produced_batches(&broker);
    assert_eq!(header_of(&batches[0][0].2).first_timestamp, 1_000);
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn groups_and_single_records_keep_their_order_on_a_partition() {
    let broker = FakeBroker::with_topic("t", 1);
    // Records from `send` would wait an hour for more: the group must close their batch.
    let config = ProducerConfig { linger: Duration::from_secs(3600), ..ProducerConfig::default() };
    let producer = Producer::new(Arc::clone(&broker), config).unwrap();
    let before: Vec<Delivery> = send_all(&producer, Some(0), 3).await;
    let batch = producer.send_batch("t", Some(0), group(3, 4)).await.unwrap();
    let mut after = Vec::new();
    for i in 7..9 {
        after.push(producer.send("t", Some(0), value(i)).await.unwrap());
    }
    producer.flush().await.unwrap();
    for (i, d) in before.into_iter().enumerate() {
        assert_eq!(d.await.unwrap().offset, Some(i as u64));
    }
    let batch = batch.await.unwrap();
    assert_eq!((batch.base_offset, batch.last_offset), (Some(3), Some(6)));
    for (i, d) in after.into_iter().enumerate() {
        assert_eq!(d.await.unwrap().offset, Some(7 + i as u64));
    }
    let values: Vec<_> = broker.values("t", 0).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, (0..9).map(|i| format!("v{i}").into_bytes()).collect::<Vec<_>>());
    let counts: Vec<u32> = produced_batches(&broker).into_iter().flatten().map(|b| b.1).collect();
    assert_eq!(counts, [3, 4, 2], "the open batch was closed before the group");
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_retried_group_after_a_lost_answer_is_a_duplicate_with_its_original_offsets() {
    let broker = FakeBroker::with_topic("t", 1);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    producer.send_and_wait("t", Some(0), value(0)).await.unwrap();
    broker.state.lock().unwrap().lose_answers = 1;
    let meta = producer.send_batch("t", Some(0), group(1, 3)).await.unwrap().await.unwrap();
    assert_eq!((meta.base_offset, meta.last_offset), (Some(1), Some(3)));
    assert_eq!(broker.values("t", 0).len(), 4, "written once");
    let requests = produced_batches(&broker);
    assert_eq!(requests.len(), 3, "one record, the group's first attempt and one retry");
    assert_eq!(requests[1][0].2, requests[2][0].2, "the retry resends the same bytes");
    let header = header_of(&requests[1][0].2);
    assert!(header.is_idempotent());
    assert_eq!(header.base_sequence, 1, "numbered after the single record, like any batch");
    // The sequence goes on after the group: the fake refuses a gap.
    let next = producer.send_batch("t", Some(0), group(4, 2)).await.unwrap().await.unwrap();
    assert_eq!(next.base_offset, Some(4));
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_oversized_group_fails_whole_and_its_sequence_is_reused() {
    let broker = FakeBroker::with_topic("t", 1);
    broker.state.lock().unwrap().max_batch_bytes = Some(200);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let err = producer.send_batch("t", Some(0), group(0, 20)).await.unwrap().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BatchTooLarge), "{err}");
    assert!(matches!(err, ClientError::Partition { partition: 0, .. }), "{err:?}");
    assert_eq!(broker.state.lock().unwrap().produces.len(), 1, "not retried");
    assert!(broker.values("t", 0).is_empty(), "nothing of it written");
    // The fake refuses a sequence gap, so this succeeds only if the sequence was reused.
    let meta = producer.send_batch("t", Some(0), group(0, 2)).await.unwrap().await.unwrap();
    assert_eq!(meta.base_offset, Some(0));
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_empty_group_is_refused_at_send() {
    let broker = FakeBroker::with_topic("t", 1);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let err = producer.send_batch("t", None, Vec::new()).await.unwrap_err();
    assert!(matches!(err, ClientError::Batch(eddy_storage::BatchError::Empty)), "{err:?}");
    producer.close().await.unwrap();
    assert!(broker.state.lock().unwrap().produces.is_empty());
}

#[tokio::test(start_paused = true)]
async fn keyed_groups_go_to_their_keys_partition_and_disagreeing_keys_are_refused() {
    let broker = FakeBroker::with_topic("t", 7);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let (a, b) = ("21", "foobar");
    let (pa, pb) = (partition_for_key(a.as_bytes(), 7), partition_for_key(b.as_bytes(), 7));
    assert_ne!(pa, pb, "the test needs keys on two partitions");
    // One key, plus a keyless record that follows it.
    let records = vec![ProducerRecord::keyed(a, "x"), ProducerRecord::value("y")];
    let meta = producer.send_batch("t", None, records).await.unwrap().await.unwrap();
    assert_eq!((meta.partition, meta.record_count), (pa, 2));
    let mixed = || vec![ProducerRecord::keyed(a, "x"), ProducerRecord::keyed(b, "y")];
    let err = producer.send_batch("t", None, mixed()).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::KeysSpanPartitions { first, other, .. } if (*first, *other) == (pa, pb)),
        "{err:?}"
    );
    // An explicit partition wins over the keys, as in Kafka.
    let meta = producer.send_batch("t", Some(pb), mixed()).await.unwrap().await.unwrap();
    assert_eq!(meta.partition, pb);
    producer.close().await.unwrap();
    assert_eq!(broker.state.lock().unwrap().produces.len(), 2, "the refused group was not sent");
}

#[tokio::test(start_paused = true)]
async fn keyless_groups_take_the_sticky_partition_round_robin() {
    let broker = FakeBroker::with_topic("t", 3);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let mut partitions = Vec::new();
    for i in 0..6 {
        let meta = producer.send_batch("t", None, group(i * 2, 2)).await.unwrap().await.unwrap();
        partitions.push(meta.partition);
    }
    for pair in partitions.windows(2) {
        assert_eq!(pair[1], (pair[0] + 1) % 3, "each group moves on: {partitions:?}");
    }
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn groups_keep_five_batches_in_flight_per_partition_when_idempotent() {
    let broker = Arc::new(FakeBroker {
        produce_latency: Duration::from_millis(20),
        ..FakeBroker::default()
    });
    broker.create("t", 2);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let mut deliveries = Vec::new();
    for i in 0..20 {
        deliveries
            .push(producer.send_batch("t", Some(i % 2), group(i as usize * 5, 5)).await.unwrap());
    }
    let mut next = [0u64; 2];
    for delivery in deliveries {
        let meta = delivery.await.unwrap();
        let expected = &mut next[meta.partition as usize];
        assert_eq!(meta.base_offset, Some(*expected), "in order within the partition");
        *expected += 5;
    }
    producer.close().await.unwrap();
    let state = broker.state.lock().unwrap();
    assert_eq!(state.max_in_flight_per_partition, 5);
    assert_eq!(next, [50, 50]);
}

#[tokio::test(start_paused = true)]
async fn a_group_waits_for_buffer_room() {
    let broker = Arc::new(FakeBroker {
        produce_latency: Duration::from_millis(50),
        ..FakeBroker::default()
    });
    broker.create("t", 1);
    // Room for one group of 40 records (~10 bytes each) but not two.
    let config = ProducerConfig { buffer_bytes: 700, ..ProducerConfig::default() };
    let producer = Producer::new(Arc::clone(&broker), config).unwrap();
    let started = tokio::time::Instant::now();
    let first = producer.send_batch("t", None, group(0, 40)).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(1), "room for the first");
    let second = producer.send_batch("t", None, group(40, 40)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "the second waited for the first's answer: {:?}",
        started.elapsed()
    );
    // Larger than the whole buffer: it takes all of it once free, rather than waiting forever.
    let huge = producer.send_batch("t", None, group(80, 200)).await.unwrap();
    assert_eq!(first.await.unwrap().base_offset, Some(0));
    assert_eq!(second.await.unwrap().base_offset, Some(40));
    assert_eq!(huge.await.unwrap().last_offset, Some(279));
    producer.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn flush_and_close_wait_for_groups() {
    let broker = Arc::new(FakeBroker {
        produce_latency: Duration::from_millis(20),
        ..FakeBroker::default()
    });
    broker.create("t", 2);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let a = producer.send_batch("t", Some(0), group(0, 3)).await.unwrap();
    let b = producer.send_batch("t", Some(1), group(3, 3)).await.unwrap();
    producer.flush().await.unwrap();
    assert_eq!(broker.values("t", 0).len() + broker.values("t", 1).len(), 6, "flushed");
    let c = producer.send_batch("t", Some(0), group(6, 4)).await.unwrap();
    producer.close().await.unwrap();
    assert_eq!(broker.values("t", 0).len(), 7, "closed after the last group was written");
    assert_eq!(a.await.unwrap().base_offset, Some(0));
    assert_eq!(b.await.unwrap().base_offset, Some(0));
    assert_eq!(c.await.unwrap().base_offset, Some(3));
}

#[tokio::test(start_paused = true)]
async fn acks_none_group_resolves_without_offsets() {
    let broker = FakeBroker::with_topic("t", 1);
    let config = ProducerConfig { acks: v1::Acks::None, ..ProducerConfig::default() };
    let producer = Producer::new(Arc::clone(&broker), config).unwrap();
    let meta = producer.send_batch("t", None, group(0, 3)).await.unwrap().await.unwrap();
    assert_eq!((meta.base_offset, meta.last_offset, meta.record_count), (None, None, 3));
    producer.close().await.unwrap();
    assert_eq!(broker.values("t", 0).len(), 3);
}

mod idempotence;
