//! Broker workloads over both transports: produce and consume throughput through the real
//! client, and end-to-end latency at a fixed rate.
//!
//! `--api record` hands the producer one record per `send`; `--api batch` hands it `--batch`
//! records per `send_batch`, the way a caller that already holds a batch (and Iggy's benchmark)
//! sends them.
//!
//! The TCP broker runs in this process on its own runtime, listening on 127.0.0.1:0; the
//! client talks to it over loopback exactly as it would to `eddy serve`. The embedded runs use
//! the same client on the `Broker` transport, so the ratio between the two is the cost of the
//! wire.
//!
//! With `--server process` the broker is a child `eddy serve` instead (the release binary
//! beside this one, or `--broker`), started per run on a fresh data directory, as a user runs
//! it; there is no embedded run then, and each run is compared with a plain loopback TCP copy
//! of the same payload bytes made just before it (`baseline::loopback_copy`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use eddy_broker::{Broker, BrokerConfig, server};
use eddy_client::{
    Acks, Admin, BatchDelivery, Connection, ConnectionOptions, Consumer, ConsumerConfig, Delivery,
    Producer, ProducerConfig, ProducerRecord, SeekTo, TopicConfig, Transport,
};

use crate::baseline;
use crate::memory::{BrokerChild, eddy_binary};
use crate::report::{Row, Timing, median, median_against};
use crate::workload::Options;

pub(crate) const TOPIC: &str = "bench";

/// A broker served on loopback from its own runtime, stopped on drop.
pub(crate) struct Served {
    pub(crate) broker: Broker,
    pub(crate) addr: String,
    pub(crate) runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    dir: tempfile::TempDir,
}

impl Served {
    pub(crate) fn start(opts: &Options) -> Result<Self> {
        let dir = opts.tempdir()?;
        let http_listen = if opts.metrics {
            eddy_broker::config::Listen::At(([127, 0, 0, 1], 0).into())
        } else {
            eddy_broker::config::Listen::Off
        };
        let config = BrokerConfig {
            data_dir: dir.path().join("data"),
            http_listen,
            ..BrokerConfig::default()
        };
        let broker = Broker::open_with(config)?;
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?.to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(server::serve(broker.clone(), listener, async {
            let _ = stopped.await;
        }));
        Ok(Self { broker, addr, runtime, stop: Some(stop), dir })
    }

    /// The broker's data directory.
    pub(crate) fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.broker.close();
    }
}

fn acks(opts: &Options) -> Result<Acks> {
    Ok(match opts.acks.as_str() {
        "written" => Acks::Written,
        "durable" => Acks::Durable,
        "none" => Acks::None,
        other => bail!("--acks {other:?}: expected written, durable or none"),
    })
}

/// How the produce workload hands records to the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// One `Producer::send` per record.
    Record,
    /// One `Producer::send_batch` per `--batch` records.
    Batch,
}

fn api(opts: &Options) -> Result<Api> {
    Ok(match opts.api.as_str() {
        "record" => Api::Record,
        "batch" => Api::Batch,
        other => bail!("--api {other:?}: expected record or batch"),
    })
}

/// An acknowledgement the checker task waits for.
enum Pending {
    Record(Delivery),
    Batch(BatchDelivery),
}

pub(crate) fn producer_config(opts: &Options) -> Result<ProducerConfig> {
    let acks = acks(opts)?;
    Ok(ProducerConfig {
        acks,
        idempotent: opts.idempotent && acks != Acks::None,
        // Size batches to hold `--batch` records.
        batch_bytes: opts.batch * (opts.record_bytes + 16) + 64,
        linger: Duration::from_millis(5),
        request_bytes: 8 << 20,
        ..ProducerConfig::default()
    })
}

/// Produces `--records` records of `--record-bytes` through one producer; returns its timing.
pub(crate) async fn produce_all<T: Transport + Clone>(
    transport: T,
    opts: &Options,
    partitions: u32,
) -> Result<Timing> {
    let admin = Admin::new(transport.clone());
    admin
        .create_topic(TOPIC, TopicConfig { partitions: Some(partitions), ..TopicConfig::default() })
        .await?;
    let producer = Producer::new(transport, producer_config(opts)?)?;
    let api = api(opts)?;
    let value = Bytes::from(vec![b'x'; opts.record_bytes]);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Pending>(1 << 16);
    let checker = tokio::spawn(async move {
        while let Some(pending) = rx.recv().await {
            match pending {
                Pending::Record(d) => drop(d.await?),
                Pending::Batch(d) => drop(d.await?),
            }
        }
        Ok::<(), eddy_client::ClientError>(())
    });
    let mut timing = Timing::new();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut group = 0u64;
    while sent < opts.records {
        let pending = match api {
            Api::Record => {
                let record = ProducerRecord::value(value.clone());
                let partition = (sent % u64::from(partitions)) as u32;
                sent += 1;
                Pending::Record(producer.send(TOPIC, Some(partition), record).await?)
            }
            Api::Batch => {
                let n = (opts.records - sent).min(opts.batch as u64);
                let records = (0..n).map(|_| ProducerRecord::value(value.clone()));
                let partition = (group % u64::from(partitions)) as u32;
                sent += n;
                group += 1;
                Pending::Batch(producer.send_batch(TOPIC, Some(partition), records).await?)
            }
        };
        tx.send(pending).await.context("checker stopped")?;
    }
    drop(tx);
    producer.close().await?;
    checker.await??;
    timing.finish(start.elapsed());
    Ok(timing)
}

pub(crate) async fn consume_all<T: Transport>(
    transport: T,
    records: u64,
    partitions: u32,
) -> Result<Timing> {
    let mut consumer = Consumer::new(
        transport,
        ConsumerConfig { start: SeekTo::Earliest, ..ConsumerConfig::default() },
    );
    consumer.assign(TOPIC, 0..partitions);
    let mut timing = Timing::new();
    let mut seen = 0u64;
    let start = Instant::now();
    while seen < records {
        let t = Instant::now();
        let batches = consumer.poll(Duration::from_secs(5)).await?;
        for b in &batches {
            for r in b.records() {
                r?;
                seen += 1;
            }
        }
        timing.record(t.elapsed());
    }
    timing.finish(start.elapsed());
    Ok(timing)
}

/// What a produce row says of its workload: record size, batch, acks, API, idempotence and
/// partitions.
fn produce_label(opts: &Options) -> Result<String> {
    let api = if api(opts)? == Api::Batch { " send_batch" } else { "" };
    let plain = if opts.idempotent { "" } else { " non-idempotent" };
    let partitions = opts.partitions;
    let parts = if partitions == 1 { String::new() } else { format!(" {partitions}p") };
    Ok(format!("{}B x{} acks={}{api}{plain}{parts}", opts.record_bytes, opts.batch, opts.acks))
}

/// Produce, then consume, over both transports; TCP compared with embedded run by run.
pub fn run_produce_consume(opts: &Options) -> Result<Vec<Row>> {
    let partitions = opts.partitions;
    let bytes = opts.records * opts.record_bytes as u64;
    let label = produce_label(opts)?;
    let (mut ep, mut tp, mut ec, mut tc) = (vec![], vec![], vec![], vec![]);
    for _ in 0..opts.runs {
        let served = Served::start(opts)?;
        let rt = &served.runtime;
        let embedded = served.broker.clone();
        let p = rt.block_on(produce_all(embedded.clone(), opts, partitions))?;
        let c = rt.block_on(consume_all(embedded.clone(), opts.records, partitions))?;
        embedded.delete_topic(TOPIC)?;
        ep.push(Row::new(format!("produce embedded {label}"), opts.records, bytes, &p));
        ec.push(Row::new(
            format!("consume embedded {}B", opts.record_bytes),
            opts.records,
            bytes,
            &c,
        ));

        let conn = rt.block_on(Connection::connect(&served.addr, ConnectionOptions::default()))?;
        let conn = Arc::new(conn);
        let p = rt.block_on(produce_all(conn.clone(), opts, partitions))?;
        let c = rt.block_on(consume_all(conn, opts.records, partitions))?;
        tp.push(Row::new(format!("produce tcp {label}"), opts.records, bytes, &p));
        tc.push(Row::new(format!("consume tcp {}B", opts.record_bytes), opts.records, bytes, &c));
    }
    let tp = median_against(tp, &ep);
    let tc = median_against(tc, &ec);
    Ok(vec![crate::report::median(ep), tp, crate::report::median(ec), tc])
}

/// Produce, then consume, over TCP to a child `eddy serve` per run, each run beside a loopback
/// TCP copy of the same payload bytes.
pub fn run_produce_process(opts: &Options) -> Result<Vec<Row>> {
    let binary = eddy_binary(opts)?;
    let partitions = opts.partitions;
    let bytes = opts.records * opts.record_bytes as u64;
    let label = produce_label(opts)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (mut copies, mut produced, mut consumed) = (vec![], vec![], vec![]);
    for run in 0..opts.runs {
        let copy = baseline::loopback_copy(bytes, LOOPBACK_READ_CHUNK)?;
        let copy = Row::new(
            format!("loopback tcp copy {}B", opts.record_bytes),
            opts.records,
            bytes,
            &copy,
        );
        let dir = opts.tempdir()?;
        let broker = BrokerChild::start_with(&binary, dir.path(), TOPIC, opts.metrics)?;
        let (p, c) = runtime.block_on(async {
            let conn =
                Arc::new(Connection::connect(&broker.addr, ConnectionOptions::default()).await?);
            let p = produce_all(conn.clone(), opts, partitions).await?;
            let c = match opts.consume {
                true => Some(consume_all(conn, opts.records, partitions).await?),
                false => None,
            };
            Ok::<_, anyhow::Error>((p, c))
        })?;
        // Killed and reaped before the next run's copy, so it runs on an idle machine.
        drop(broker);
        let p = Row::new(format!("produce tcp process {label}"), opts.records, bytes, &p);
        let c = c.map(|c| {
            let name = format!("consume tcp process {}B", opts.record_bytes);
            Row::new(name, opts.records, bytes, &c)
        });
        println!(
            "run {}: produce {:.0} MB/s, consume {}, loopback copy {:.0} MB/s",
            run + 1,
            p.mb_per_s,
            c.as_ref().map_or("skipped".into(), |c| format!("{:.0} MB/s", c.mb_per_s)),
            copy.mb_per_s
        );
        copies.push(copy);
        produced.push(p);
        consumed.extend(c);
    }
    let mut rows = vec![median_against(produced, &copies)];
    if !consumed.is_empty() {
        rows.push(median_against(consumed, &copies));
    }
    rows.insert(0, median(copies));
    Ok(rows)
}

/// Bytes per `read` on the receiving side of the loopback copy (as the consume workload's).
const LOOPBACK_READ_CHUNK: usize = 1 << 20;

/// A producer sends at `--rate` records/s on schedule while a consumer long-polls; latency is
/// from each record's *scheduled* send time to its receipt, so a stall delays every record
/// behind it and shows up (no coordinated omission).
pub fn run_e2e(opts: &Options) -> Result<Vec<Row>> {
    let served = Served::start(opts)?;
    let rt = &served.runtime;
    let mut rows = Vec::new();
    for transport in ["embedded", "tcp"] {
        let timing = match transport {
            "embedded" => rt.block_on(e2e(served.broker.clone(), served.broker.clone(), opts))?,
            _ => {
                let p = Arc::new(
                    rt.block_on(Connection::connect(&served.addr, ConnectionOptions::default()))?,
                );
                let c = Arc::new(
                    rt.block_on(Connection::connect(&served.addr, ConnectionOptions::default()))?,
                );
                rt.block_on(e2e(p, c, opts))?
            }
        };
        served.broker.delete_topic(TOPIC)?;
        let row = Row::new(
            format!("e2e {transport} {}B @{}/s acks={}", opts.record_bytes, opts.rate, opts.acks),
            opts.records,
            opts.records * opts.record_bytes as u64,
            &timing,
        );
        let row = row.note("latency", "per record, scheduled send to receipt (the op columns)");
        rows.push(Row { percentiles: timing.percentiles(), ..row });
    }
    Ok(rows)
}

async fn e2e<P: Transport + Clone, C: Transport>(
    producer_side: P,
    consumer_side: C,
    opts: &Options,
) -> Result<Timing> {
    let admin = Admin::new(producer_side.clone());
    admin.create_topic(TOPIC, TopicConfig::default()).await?;
    let config = ProducerConfig { linger: Duration::ZERO, ..producer_config(opts)? };
    let producer = Producer::new(producer_side, config)?;
    let origin = Instant::now();
    let total = opts.records;
    let consumer = tokio::spawn(async move {
        let mut consumer = Consumer::new(consumer_side, ConsumerConfig::default());
        consumer.assign(TOPIC, [0]);
        let mut timing = Timing::new();
        let mut seen = 0u64;
        while seen < total {
            for b in consumer.poll(Duration::from_secs(5)).await? {
                let now = origin.elapsed();
                for r in b.records() {
                    let r = r?;
                    let value = r.value.unwrap_or_default();
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(value.get(..8).context("short value")?);
                    let scheduled = Duration::from_nanos(u64::from_le_bytes(raw));
                    timing.record(now.saturating_sub(scheduled));
                    seen += 1;
                }
            }
        }
        timing.finish(origin.elapsed());
        Ok::<Timing, anyhow::Error>(timing)
    });
    // The runtime's timer ticks in milliseconds; a paced thread with the OS's sleep keeps
    // sends on schedule at sub-millisecond intervals.
    let handle = tokio::runtime::Handle::current();
    let interval = Duration::from_secs_f64(1.0 / opts.rate as f64);
    let record_bytes = opts.record_bytes.max(8);
    let pacer = std::thread::spawn(move || -> Result<Producer<P>> {
        let mut pending = Vec::with_capacity(total as usize);
        for i in 0..total {
            let scheduled = interval.mul_f64(i as f64);
            let now = origin.elapsed();
            if scheduled > now {
                std::thread::sleep(scheduled - now);
            }
            let mut value = vec![0u8; record_bytes];
            value[..8].copy_from_slice(&(scheduled.as_nanos() as u64).to_le_bytes());
            pending.push(handle.block_on(producer.send(
                TOPIC,
                Some(0),
                ProducerRecord::value(value),
            ))?);
        }
        for d in pending {
            handle.block_on(d)?;
        }
        Ok(producer)
    });
    let producer = tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("pacer thread panicked"))??;
    producer.close().await?;
    consumer.await?
}
