//! `Producer::send_batch` against a real `eddy serve` process: groups interleaved with single
//! records land in one partition in call order with the offsets their deliveries report, and a
//! group above the broker's `max_batch_bytes` is refused whole (`BATCH_TOO_LARGE`) without
//! breaking the producer's idempotent sequence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_client::{
    Admin, Connection, ConnectionOptions, ErrorCode, Producer, ProducerConfig, ProducerRecord,
    TopicConfig,
};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::workload::read_topic;
use tokio::task::block_in_place;

const LIMIT: Duration = Duration::from_secs(60);
/// The broker's `max_batch_bytes` for this test: a group of 1000 records of 100 B is larger.
const MAX_BATCH_BYTES: &str = "65536";

fn record(i: u64) -> ProducerRecord {
    ProducerRecord::value(format!("{i:0100}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_records_in_order_and_an_oversized_group_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("EDDY_MAX_BATCH_BYTES", MAX_BATCH_BYTES)];
    let mut broker = block_in_place(|| BrokerProcess::start(dir.path(), &env));
    let addr = broker.addr().to_string();
    let conn = Arc::new(Connection::connect(&addr, ConnectionOptions::default()).await.unwrap());
    let admin = Admin::new(Arc::clone(&conn));
    let config = TopicConfig { partitions: Some(2), ..TopicConfig::default() };
    admin.create_topic("b", config).await.unwrap();
    let producer = Producer::new(Arc::clone(&conn), ProducerConfig::default()).unwrap();

    // 3 single records, a group of 300, 2 single records, a group of 200: all on partition 1.
    let mut singles = Vec::new();
    for i in 0..3 {
        singles.push(producer.send("b", Some(1), record(i)).await.unwrap());
    }
    let first = producer.send_batch("b", Some(1), (3..303).map(record)).await.unwrap();
    for i in 303..305 {
        singles.push(producer.send("b", Some(1), record(i)).await.unwrap());
    }
    let second = producer.send_batch("b", Some(1), (305..505).map(record)).await.unwrap();
    let oversized = producer.send_batch("b", Some(1), (0..1000).map(record)).await.unwrap();
    let err = oversized.await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BatchTooLarge), "{err}");
    // After the refusal the same sequence is reused, so the next group is accepted.
    let third = producer.send_batch("b", Some(1), (505..515).map(record)).await.unwrap();
    producer.close().await.unwrap();

    let mut single_offsets = Vec::new();
    for delivery in singles {
        single_offsets.push(delivery.await.unwrap().offset);
    }
    assert_eq!(single_offsets, [0, 1, 2, 303, 304].map(Some));
    for (group, base, last) in [(first, 3, 302), (second, 305, 504), (third, 505, 514)] {
        let meta = group.await.unwrap();
        assert_eq!(
            (meta.partition, meta.base_offset, meta.last_offset),
            (1, Some(base), Some(last))
        );
    }

    let mut seen = Vec::new();
    let deadline = Instant::now() + LIMIT;
    read_topic(Arc::clone(&conn), "b", deadline, |partition, r| {
        assert_eq!(partition, 1, "every record on partition 1");
        let value = std::str::from_utf8(r.value.unwrap_or_default()).unwrap();
        seen.push((r.offset, value.parse::<u64>().unwrap()));
        Ok(())
    })
    .await
    .unwrap();
    let expected: Vec<_> = (0..515).map(|i| (i, i)).collect();
    assert_eq!(seen, expected, "each record once, in call order, nothing of the refused group");
    let status = block_in_place(|| broker.terminate());
    assert!(status.success(), "broker exit after SIGTERM: {status:?}");
}
