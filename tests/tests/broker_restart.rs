//! A broker stopped with SIGTERM exits 0 and a new one on the same data directory has every
//! record, byte for byte; new produces continue at the next offsets (no gap, no reuse).
//!
//! The topic flushes with the OS's own write-back (`flush = os`) and the records are
//! acknowledged when written, not fsynced: what survives is what the graceful shutdown flushed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_client::{
    Admin, Connection, ConnectionOptions, Producer, ProducerConfig, TopicConfig, Transport,
};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::workload::{Placed, Workload, check_placed, produce_checked};
use tempfile::TempDir;
use tokio::task::block_in_place;

const SEED: u64 = 0x0edd_0002_5e57_a127;
const TOPIC: &str = "restart";
const PARTITIONS: u32 = 3;
/// Records produced in each life of the broker.
const RECORDS_PER_LIFE: u64 = 20_000;
const LIVES: u64 = 3;
const LIMIT: Duration = Duration::from_secs(120);

async fn connect(broker: &BrokerProcess) -> Arc<Connection> {
    let addr = broker.addr().to_string();
    Arc::new(Connection::connect(&addr, ConnectionOptions::default()).await.expect("connect"))
}

async fn produce<T: Transport>(transport: T, from: u64, placed: &mut Placed) {
    let workload = Workload::new(SEED, PARTITIONS);
    let producer = Producer::new(transport, ProducerConfig::default()).expect("a producer");
    produce_checked(&producer, TOPIC, &workload, from..from + RECORDS_PER_LIFE, placed)
        .await
        .unwrap_or_else(|e| panic!("seed {SEED:#x}: records from {from}: {e}"));
    producer.close().await.expect("close the producer");
}

async fn check<T: Transport + Clone>(transport: T, placed: &Placed, when: &str) {
    let workload = Workload::new(SEED, PARTITIONS);
    check_placed(transport, TOPIC, &workload, placed, Instant::now() + LIMIT)
        .await
        .unwrap_or_else(|e| panic!("seed {SEED:#x}: {when}: {e}"));
}

fn stop(broker: &mut BrokerProcess, life: u64) {
    let status = block_in_place(|| broker.terminate());
    assert_eq!(status.code(), Some(0), "life {life}: exit after SIGTERM: {status:?}");
}

async fn lives(dir: &TempDir) {
    let mut placed: Placed = vec![Vec::new(); PARTITIONS as usize];
    let mut broker = block_in_place(|| BrokerProcess::start(dir.path(), &[]));
    let conn = connect(&broker).await;
    let config = TopicConfig {
        partitions: Some(PARTITIONS),
        retention_ms: Some(-1),
        ..TopicConfig::default()
    };
    Admin::new(conn.clone()).create_topic(TOPIC, config).await.expect("create the topic");
    produce(conn.clone(), 0, &mut placed).await;
    check(conn, &placed, "before the first SIGTERM").await;
    stop(&mut broker, 0);

    for life in 1..LIVES {
        broker = block_in_place(|| BrokerProcess::start(dir.path(), &[]));
        let conn = connect(&broker).await;
        check(conn.clone(), &placed, &format!("life {life}, after the restart")).await;
        // `produce_checked` insists that each offset is the partition's next one.
        produce(conn.clone(), life * RECORDS_PER_LIFE, &mut placed).await;
        check(conn, &placed, &format!("life {life}, after producing more")).await;
        stop(&mut broker, life);
    }
    assert!(placed.iter().all(|p| !p.is_empty()), "seed {SEED:#x}: an empty partition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_every_record_and_the_restart_continues_the_offsets() {
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(LIMIT, lives(&dir))
        .await
        .unwrap_or_else(|_| panic!("seed {SEED:#x}: not done in {LIMIT:?}"));
}
