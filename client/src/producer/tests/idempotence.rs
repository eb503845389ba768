//! Idempotence with several batches of a partition in flight: resends in sequence order after
//! a failure or an out-of-order arrival, duplicates answered with their original offsets,
//! deliveries in order, and what a batch failing for good does to those behind it.

use std::sync::Arc;
use std::time::Duration;

use super::{group, header_of, produced_batches};
use crate::fake_broker::FakeBroker;
use crate::producer::{BatchDelivery, Producer, ProducerConfig};
use crate::{ClientError, ErrorCode};

/// Sends `n` groups of `size` records to partition 0 of a fresh producer on `broker`.
async fn send_groups(
    producer: &Producer<Arc<FakeBroker>>,
    n: usize,
    size: usize,
) -> Vec<BatchDelivery> {
    let mut deliveries = Vec::new();
    for i in 0..n {
        deliveries.push(producer.send_batch("t", Some(0), group(i * size, size)).await.unwrap());
    }
    deliveries
}

/// A broker on which the next produces take `delays` each (then 20 ms), so that the order in
/// which it handles them is chosen by the test.
fn broker_with_delays(delays: &[u64]) -> Arc<FakeBroker> {
    let broker = Arc::new(FakeBroker {
        produce_latency: Duration::from_millis(20),
        ..FakeBroker::default()
    });
    broker.create("t", 1);
    let ms = delays.iter().map(|d| Duration::from_millis(*d));
    broker.state.lock().unwrap().produce_delays.extend(ms);
    broker
}

fn arrivals(broker: &FakeBroker) -> Vec<i32> {
    broker.state.lock().unwrap().arrivals.iter().map(|(_, s)| *s).collect()
}

fn all_values(broker: &FakeBroker, n: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let stored = broker.values("t", 0).into_iter().map(|(_, v)| v).collect();
    (stored, (0..n).map(|i| format!("v{i}").into_bytes()).collect())
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_with_four_behind_it_is_retried_and_they_are_resent_in_order() {
    // The first batch is refused with NO_SPACE (retriable); the four sent behind it are then out
    // of sequence at the broker and must follow it again, one after another.
    let broker = broker_with_delays(&[20, 21, 22, 23, 24]);
    broker.state.lock().unwrap().refuse.push_back(ErrorCode::NoSpace);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let deliveries = send_groups(&producer, 6, 3).await;
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let meta = delivery.await.unwrap();
        assert_eq!(meta.base_offset, Some(3 * i as u64), "group {i}");
    }
    producer.close().await.unwrap();
    // Five in flight at first; then the failed one and those behind it, in sequence order,
    // then the sixth.
    assert_eq!(arrivals(&broker), [0, 3, 6, 9, 12, 0, 3, 6, 9, 12, 15]);
    assert_eq!(broker.state.lock().unwrap().max_in_flight_per_partition, 5);
    let (stored, expected) = all_values(&broker, 18);
    assert_eq!(stored, expected, "every record once, in order");
}

#[tokio::test(start_paused = true)]
async fn batches_the_broker_handles_out_of_order_are_resent_without_using_up_retries() {
    // The broker handles the first request last, so the four behind it arrive out of sequence.
    // That is no failure of theirs: they are resent in order even with no retries allowed.
    let broker = broker_with_delays(&[30, 10, 11, 12, 13]);
    let config = ProducerConfig { retries: 0, ..ProducerConfig::default() };
    let producer = Producer::new(Arc::clone(&broker), config).unwrap();
    let deliveries = send_groups(&producer, 5, 2).await;
    for (i, delivery) in deliveries.into_iter().enumerate() {
        assert_eq!(delivery.await.unwrap().base_offset, Some(2 * i as u64), "group {i}");
    }
    producer.close().await.unwrap();
    assert_eq!(arrivals(&broker), [0, 2, 4, 6, 8, 2, 4, 6, 8]);
    let (stored, expected) = all_values(&broker, 10);
    assert_eq!(stored, expected);
}

#[tokio::test(start_paused = true)]
async fn lost_answers_are_resent_in_order_as_duplicates_and_deliveries_resolve_in_order() {
    // The first two batches are appended but their answers are lost; the three behind them are
    // acknowledged meanwhile.
    let broker = broker_with_delays(&[20, 21, 22, 23, 24]);
    broker.state.lock().unwrap().lose_answers = 2;
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let mut deliveries = send_groups(&producer, 5, 4).await;
    // Every first answer is in (the resends wait out a 100 ms backoff): the acknowledged
    // batches still wait for the two before them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(broker.values("t", 0).len(), 20, "all five appended once");
    for (i, delivery) in deliveries.iter_mut().enumerate() {
        let early = tokio::time::timeout(Duration::ZERO, delivery).await;
        assert!(early.is_err(), "group {i} resolved before the groups ahead of it");
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let meta = delivery.await.unwrap();
        assert_eq!(
            (meta.base_offset, meta.last_offset),
            (Some(4 * i as u64), Some(4 * i as u64 + 3))
        );
    }
    producer.close().await.unwrap();
    // The two resends were answered as duplicates: nothing was written twice.
    assert_eq!(arrivals(&broker), [0, 4, 8, 12, 16, 0, 4]);
    let (stored, expected) = all_values(&broker, 20);
    assert_eq!(stored, expected);
}

#[tokio::test(start_paused = true)]
async fn a_batch_refused_for_good_fails_those_behind_it_and_its_sequence_is_reused() {
    let broker = broker_with_delays(&[20, 21, 22, 23]);
    broker.state.lock().unwrap().refuse.push_back(ErrorCode::BatchTooLarge);
    let producer = Producer::new(Arc::clone(&broker), ProducerConfig::default()).unwrap();
    let deliveries = send_groups(&producer, 4, 2).await;
    let mut outcomes = deliveries.into_iter();
    let refused = outcomes.next().unwrap().await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::BatchTooLarge), "{refused:?}");
    for delivery in outcomes {
        let err = delivery.await.unwrap_err();
        let ClientError::PrecedingBatchFailed { partition: 0, cause, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(cause.code(), Some(ErrorCode::BatchTooLarge));
    }
    assert!(broker.values("t", 0).is_empty(), "nothing written");
    // The fake refuses a sequence gap, so this succeeds only if sequence 0 was reused.
    let meta = producer.send_batch("t", Some(0), group(0, 2)).await.unwrap().await.unwrap();
    assert_eq!(meta.base_offset, Some(0));
    producer.close().await.unwrap();
    assert_eq!(arrivals(&broker), [0, 2, 4, 6, 0], "the ones behind were not resent");
}

#[tokio::test(start_paused = true)]
async fn a_batch_lost_for_good_fails_those_behind_it_and_a_new_identity_follows() {
    // Every answer is lost and nothing is retried: the first batch's outcome is unknown, so
    // those behind it fail too and the next batch goes out under a new producer id.
    let broker = broker_with_delays(&[20, 21, 22]);
    broker.state.lock().unwrap().lose_answers = 3;
    let config = ProducerConfig { retries: 0, ..ProducerConfig::default() };
    let producer = Producer::new(Arc::clone(&broker), config).unwrap();
    let deliveries = send_groups(&producer, 3, 2).await;
    let mut outcomes = deliveries.into_iter();
    assert!(outcomes.next().unwrap().await.unwrap_err().is_transport());
    for delivery in outcomes {
        let err = delivery.await.unwrap_err();
        assert!(matches!(err, ClientError::PrecedingBatchFailed { .. }), "{err:?}");
    }
    let meta = producer.send_batch("t", Some(0), group(6, 2)).await.unwrap().await.unwrap();
    assert_eq!(meta.base_offset, Some(6), "after the three batches written unacknowledged");
    producer.close().await.unwrap();
    let batches = produced_batches(&broker);
    let first = header_of(&batches[0][0].2);
    let last = header_of(&batches[3][0].2);
    assert_ne!(first.producer_id, last.producer_id, "a new identity");
    assert_eq!(last.base_sequence, 0);
}
