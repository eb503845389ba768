//! Ownership an embedder can see: dropping the last handle on an embedded broker (the broker,
//! and a producer built on it — even one dropped without `close()`) releases the data
//! directory, so the same process can open it again; a handle still alive is named in the
//! error instead of a bare "locked".
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use eddy_broker::{Broker, BrokerError};
use eddy_client::{Admin, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord};
use eddy_client::{SeekTo, TopicConfig};

const SPEC: &str = r#"
name = "lengths"
version = 1
source = { topic = "orders", format = "text" }
[[ops]]
op = "fields"
fields = { item = 1 }
[[ops]]
op = "key_by"
field = "item"
[[ops]]
op = "aggregate"
table = "per_item"
fn = "count"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_dropped_without_close_does_not_keep_the_directory_open() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    Admin::new(broker.clone()).create_topic("orders", TopicConfig::default()).await.unwrap();
    let producer = Producer::new(broker.clone(), ProducerConfig::default()).unwrap();
    let written = producer
        .send_and_wait("orders", None, ProducerRecord::keyed("order-1", "{\"qty\":2}"))
        .await
        .unwrap();
    drop(producer);
    drop(broker);

    let broker = Broker::open(dir.path()).unwrap();
    let mut consumer = Consumer::new(broker.clone(), ConsumerConfig::default());
    consumer.assign("orders", [written.partition]);
    consumer.seek("orders", written.partition, SeekTo::Earliest).await.unwrap();
    let mut values = Vec::new();
    for batch in consumer.poll(Duration::from_secs(5)).await.unwrap() {
        for record in batch.to_records().unwrap() {
            values.push(record.value.as_deref().map(<[u8]>::to_vec));
        }
    }
    assert_eq!(values, [Some(b"{\"qty\":2}".to_vec())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_processors_are_stopped_when_the_last_handle_goes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    let admin = Admin::new(broker.clone());
    admin.create_topic("orders", TopicConfig::default()).await.unwrap();
    admin.deploy_processor(SPEC).await.unwrap();
    drop(admin);
    drop(broker);
    // Reopened: the registry starts the processor again over the same state.
    let broker = Broker::open(dir.path()).unwrap();
    let listed = Admin::new(broker.clone()).list_processors().await.unwrap();
    assert_eq!(listed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["lengths"]);
}

#[test]
fn a_live_handle_is_named_when_the_directory_is_opened_again() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    let started = Instant::now();
    let err = Broker::open(dir.path()).unwrap_err();
    assert!(matches!(err, BrokerError::OpenInThisProcess { .. }), "{err:?}");
    assert!(err.to_string().contains("still open in this process"), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(1), "it waits for the holder first");
    drop(broker);
    Broker::open(dir.path()).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn on_a_one_thread_runtime_a_held_directory_is_named_without_waiting() {
    // The holder could only let go on this very thread, so waiting would only stall.
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    let started = Instant::now();
    let err = Broker::open(dir.path()).unwrap_err();
    assert!(matches!(err, BrokerError::OpenInThisProcess { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "waited {:?}", started.elapsed());
    drop(broker);
    Broker::open(dir.path()).unwrap();
}
