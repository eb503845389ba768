//! The quota workload: does a byte-rate quota keep one producer from slowing another?
//!
//! A separate `eddy serve` with `[quotas.clients.heavy] producer_byte_rate = --rate` (bytes/s),
//! measured over 11 windows of 100 ms (so the heavy producer's allowed first burst, a second
//! of its quota, is over early in each run).
//! Each run measures a `light` producer (no quota) sending `--records` records of
//! `--record-bytes` in batches of `--batch` to its own topic three ways: alone; beside a `heavy`
//! producer that sends as fast as it can under its quota; and beside the same producer with no
//! quota (client id `heavy-unlimited`), the case the quota exists for. Each contended run is
//! reported against the solo run of the same round, so the ratio says how much of its solo
//! throughput the light producer keeps. The heavy producer runs on its own connection and
//! tokio runtime thread; both producers and the broker share the machine's cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Result;
use bytes::Bytes;
use eddy_client::{
    Admin, Connection, ConnectionOptions, Producer, ProducerConfig, ProducerRecord, TopicConfig,
};

use crate::memory::{BrokerChild, eddy_binary};
use crate::report::{Row, Timing, median, median_against};
use crate::workload::Options;

/// Sends `records` records in batches from a connection named `client`, timing each batch.
async fn produce(addr: &str, client: &str, topic: &str, opts: &Options) -> Result<Timing> {
    let options = ConnectionOptions { client_name: client.into(), ..ConnectionOptions::default() };
    let conn = Arc::new(Connection::connect(addr, options).await?);
    let producer = Producer::new(conn, ProducerConfig::default())?;
    let value = Bytes::from(vec![b'l'; opts.record_bytes]);
    let mut timing = Timing::new();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut pending = Vec::new();
    while sent < opts.records {
        let n = (opts.records - sent).min(opts.batch as u64);
        let records = (0..n).map(|_| ProducerRecord::value(value.clone()));
        let t = Instant::now();
        pending.push((t, producer.send_batch(topic, Some(0), records).await?));
        sent += n;
        // A few batches in flight, each timed from its send to its acknowledgement.
        if pending.len() >= 4 {
            let (t, d) = pending.remove(0);
            d.await?;
            timing.record(t.elapsed());
        }
    }
    for (t, d) in pending {
        d.await?;
        timing.record(t.elapsed());
    }
    timing.elapsed = start.elapsed();
    producer.close().await?;
    Ok(timing)
}

/// Produces to `topic` as `client` until `stop`; counts the bytes acknowledged.
async fn flood(
    addr: String,
    client: &'static str,
    topic: &'static str,
    record_bytes: usize,
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
) -> Result<()> {
    let options = ConnectionOptions { client_name: client.into(), ..ConnectionOptions::default() };
    let conn = Arc::new(Connection::connect(&addr, options).await?);
    let producer = Producer::new(conn, ProducerConfig::default())?;
    let value = Bytes::from(vec![b'h'; record_bytes]);
    while !stop.load(Ordering::Acquire) {
        let records = (0..1000).map(|_| ProducerRecord::value(value.clone()));
        producer.send_batch(topic, Some(0), records).await?.await?;
        bytes.fetch_add(1000 * record_bytes as u64, Ordering::Relaxed);
    }
    producer.close().await?;
    Ok(())
}

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let binary = eddy_binary(opts)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let bytes = opts.records * opts.record_bytes as u64;
    let (mut solos, mut throttled, mut unlimited) = (vec![], vec![], vec![]);
    for run in 0..opts.runs {
        let dir = opts.tempdir()?;
        let config = dir.path().join("eddy.toml");
        std::fs::write(
            &config,
            format!(
                "[quotas]\nwindow_ms = 100\nsamples = 11\n\
                 [quotas.clients.heavy]\nproducer_byte_rate = {}\n",
                opts.rate
            ),
        )?;
        let config_arg = config.to_string_lossy().into_owned();
        let broker = BrokerChild::start_with_args(
            &binary,
            dir.path(),
            "light",
            false,
            &["--config", &config_arg],
            &[],
        )?;
        let addr = broker.addr.clone();
        let mut round = Vec::new();
        runtime.block_on(async {
            let admin = Admin::new(Arc::new(
                Connection::connect(&addr, ConnectionOptions::default()).await?,
            ));
            for topic in ["light-0", "light-1", "light-2", "heavy", "heavy-unlimited"] {
                admin
                    .create_topic(
                        topic,
                        TopicConfig { partitions: Some(1), ..TopicConfig::default() },
                    )
                    .await?;
            }
            let solo = produce(&addr, "light", "light-0", opts).await?;
            round.push(("solo", solo, 0u64, 0f64));
            for (case, client, topic, light_topic) in [
                ("beside a throttled producer", "heavy", "heavy", "light-1"),
                ("beside an unthrottled producer", "heavy-unlimited", "heavy-unlimited", "light-2"),
            ] {
                let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
                let heavy = tokio::spawn(flood(
                    addr.clone(),
                    client,
                    topic,
                    opts.record_bytes,
                    stop.clone(),
                    sent.clone(),
                ));
                let started = Instant::now();
                let light = produce(&addr, "light", light_topic, opts).await?;
                let secs = started.elapsed().as_secs_f64();
                stop.store(true, Ordering::Release);
                heavy.await??;
                round.push((case, light, sent.load(Ordering::Relaxed), secs));
            }
            Ok::<_, anyhow::Error>(())
        })?;
        drop(broker);
        let mut rows = round.into_iter().map(|(case, timing, heavy_bytes, secs)| {
            let row = Row::new(format!("light producer {case}"), opts.records, bytes, &timing);
            if heavy_bytes > 0 {
                println!(
                    "run {}: light {case}: {:.0} MB/s (heavy sent {:.0} MB/s)",
                    run + 1,
                    row.mb_per_s,
                    heavy_bytes as f64 / secs / 1e6
                );
            } else {
                println!("run {}: light solo: {:.0} MB/s", run + 1, row.mb_per_s);
            }
            row
        });
        solos.extend(rows.next());
        throttled.extend(rows.next());
        unlimited.extend(rows.next());
    }
    Ok(vec![median_against(throttled, &solos), median_against(unlimited, &solos), median(solos)])
}
