//! The embedded broker: topics, a producer and a consumer in one process, no network.
//!
//! `cargo run --release -p eddy-broker --example embedded [DIR]`
#![allow(clippy::print_stdout)]

use std::time::Duration;

use eddy_broker::Broker;
use eddy_client::{
    Admin, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, TopicConfig,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "eddy-data-embedded".into());
    let broker = Broker::open(&dir)?;
    let admin = Admin::new(broker.clone());
    if !admin.list_topics().await?.iter().any(|t| t == "orders") {
        admin.create_topic("orders", TopicConfig::default()).await?;
    }

    let producer = Producer::new(broker.clone(), ProducerConfig::default())?;
    let written = producer
        .send_and_wait("orders", None, ProducerRecord::keyed("order-1", "{\"qty\":2}"))
        .await?;
    println!("written to partition {} at offset {:?}", written.partition, written.offset);
    producer.close().await?;

    let mut consumer = Consumer::new(broker.clone(), ConsumerConfig::default());
    consumer.assign("orders", [0]);
    for batch in consumer.poll(Duration::from_millis(100)).await? {
        for record in batch.to_records()? {
            println!("offset {}: {:?}", record.offset, record.value);
        }
    }
    broker.close()?;
    Ok(())
}
