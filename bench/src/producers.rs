//! Group commit through the broker (issue 4: "acks=durable with 8 concurrent producers: group
//! commit makes it ≥ 4x the single-producer durable rate").
//!
//! Per run, two fresh brokers served on loopback in this process (`Served`), one topic of one
//! partition each: `--records` records of `--record-bytes` are produced with acks=durable
//! (`--acks`, idempotent unless `--idempotent false`) in `send_batch` calls of `--batch`
//! records, first by one producer, then by `--threads` producers splitting the records, each on
//! its own connection. Timed from the first send to the last acknowledgement; the broker shares
//! one fsync among the batches that arrive while the previous one runs, so more producers mean
//! more batches per fsync. Both counts are checked against the partition's end offset.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use eddy_client::{
    Admin, Connection, ConnectionOptions, OffsetQuery, Producer, ProducerRecord, TopicConfig,
};

use crate::net::{Served, TOPIC, producer_config};
use crate::report::{Row, Timing, median, median_against};
use crate::workload::Options;

/// The goal: `--threads` producers at least this many times one producer's rate.
const GOAL: f64 = 4.0;

/// `producers` producers, each on its own connection, send `records` records between them.
async fn produce(addr: &str, opts: &Options, producers: usize) -> Result<Timing> {
    let connect = || Connection::connect(addr, ConnectionOptions::default());
    let admin = Admin::new(std::sync::Arc::new(connect().await?));
    admin
        .create_topic(TOPIC, TopicConfig { partitions: Some(1), ..TopicConfig::default() })
        .await?;
    let value = Bytes::from(vec![b'x'; opts.record_bytes]);
    let per = opts.records / producers as u64;
    let mut clients = Vec::new();
    for _ in 0..producers {
        let conn = std::sync::Arc::new(connect().await?);
        clients.push(Producer::new(conn, producer_config(opts)?)?);
    }
    let mut timing = Timing::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, producer) in clients.into_iter().enumerate() {
        let value = value.clone();
        let mine = if i + 1 == producers { opts.records - per * i as u64 } else { per };
        let batch = opts.batch as u64;
        tasks.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut sent = 0u64;
            while sent < mine {
                let n = (mine - sent).min(batch);
                let records = (0..n).map(|_| ProducerRecord::value(value.clone()));
                pending.push(producer.send_batch(TOPIC, Some(0), records).await?);
                sent += n;
            }
            for delivery in pending {
                delivery.await?;
            }
            producer.close().await?;
            Ok::<(), eddy_client::ClientError>(())
        }));
    }
    for task in tasks {
        task.await.context("a producer task panicked")??;
    }
    timing.finish(start.elapsed());
    let listed = admin.list_offsets(TOPIC, &[(0, OffsetQuery::Latest)]).await?;
    let end = listed.first().map_or(0, |l| l.offset);
    ensure!(end == opts.records, "the partition ends at {end}, expected {}", opts.records);
    Ok(timing)
}

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let bytes = opts.records * opts.record_bytes as u64;
    let (mut one, mut many) = (Vec::new(), Vec::new());
    for run in 0..opts.runs {
        for producers in [1, opts.threads] {
            let served = Served::start(opts)?;
            let t = served.runtime.block_on(produce(&served.addr, opts, producers))?;
            let name = format!(
                "produce tcp {}B acks={} x{producers} producer{}",
                opts.record_bytes,
                opts.acks,
                if producers == 1 { "" } else { "s" }
            );
            let row = Row::new(name, opts.records, bytes, &t);
            println!("run {}: {producers} producer(s) {:.0} records/s", run + 1, row.records_per_s);
            if producers == 1 { one.push(row) } else { many.push(row) }
        }
    }
    let many_row = median_against(many, &one);
    let ratio = many_row.records_per_s / median(one.clone()).records_per_s;
    let verdict = if ratio >= GOAL { "met" } else { "missed" };
    Ok(vec![
        median(one),
        many_row.note(
            format!("goal: {} producers >= 4x one (issue 4)", opts.threads).as_str(),
            format!("{verdict}: {ratio:.2} x"),
        ),
    ])
}
