//! Produce latency across segment rolls: does sealing a full segment stall the partition?
//!
//! The release `eddy serve` runs as a child process, as in the memory workload (a temporary data
//! directory, default settings: 1 GiB segments, `flush = os`). One producer on a TCP connection
//! sends `--records` records of `--record-bytes` (default 32,000,000 of 100 B: a 3.5 GB log,
//! three rolls) in `send_batch` calls of `--batch` records, acks=written, paced at `--rate`
//! records/s so that a latency is the broker's answer and not a queue in the producer. Every
//! batch's latency is timed from the `send_batch` call to its acknowledgement.
//!
//! The rolls are found afterwards from the segment files: a segment named for offset B means
//! the batch with base offset B triggered a roll. A roll's window runs from 1 s before that
//! batch was sent to 5 s after (the background seal of the old segment, an fsync of up to 1 GiB,
//! runs in it). Rows: every answer; the answers in roll windows; the answers outside them (the
//! baseline, from the same run); then each roll, with the answer of the batch that rolled and
//! the slowest in its window. The goal (issue 20): no answer slower than 20 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use eddy_client::{
    Acks, Admin, Connection, ConnectionOptions, Producer, ProducerConfig, ProducerRecord,
    TopicConfig,
};

use crate::memory::{BrokerChild, eddy_binary, ensure_room};
use crate::report::{Row, Timing};
use crate::workload::Options;

const TOPIC: &str = "rolls";
/// The goal: the slowest answer.
const GOAL: Duration = Duration::from_millis(20);
/// A roll's window: from this long before the rolling batch was sent...
const BEFORE_ROLL: Duration = Duration::from_secs(1);
/// ...to this long after.
const AFTER_ROLL: Duration = Duration::from_secs(5);
/// Longest the run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Log bytes per record beyond its value, for the disk check.
const OVERHEAD_PER_RECORD: u64 = 32;

/// One acknowledged batch.
#[derive(Debug, Clone, Copy)]
struct Answer {
    /// When `send_batch` was called, from the start of the run.
    sent: Duration,
    latency: Duration,
    base_offset: u64,
}

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let binary = eddy_binary(opts)?;
    let dir = opts.tempdir()?;
    ensure_room(dir.path(), opts.records * (opts.record_bytes as u64 + OVERHEAD_PER_RECORD))?;
    let broker = BrokerChild::start(&binary, dir.path(), TOPIC)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (answers, elapsed) = runtime.block_on(produce(&broker, opts))?;
    let rolls = roll_offsets(&broker)?;
    Ok(rows(opts, &answers, &rolls, elapsed))
}

/// Sends every record on schedule; returns each batch's answer and the run's wall time.
async fn produce(broker: &BrokerChild, opts: &Options) -> Result<(Vec<Answer>, Duration)> {
    let conn = Arc::new(Connection::connect(&broker.addr, ConnectionOptions::default()).await?);
    Admin::new(conn.clone())
        .create_topic(TOPIC, TopicConfig { partitions: Some(1), ..TopicConfig::default() })
        .await?;
    let config = ProducerConfig {
        acks: Acks::Written,
        batch_bytes: opts.batch * (opts.record_bytes + 16) + 64,
        linger: Duration::from_millis(1),
        request_bytes: 8 << 20,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(conn, config)?;
    let value = Bytes::from(vec![b'x'; opts.record_bytes]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let every = Duration::from_secs_f64(opts.batch as f64 / opts.rate as f64);
    let start = Instant::now();
    let deadline = start + RUN_TIMEOUT;
    let mut sent = 0u64;
    let mut batches = 0u64;
    while sent < opts.records {
        ensure!(Instant::now() < deadline, "the run took longer than {RUN_TIMEOUT:?}");
        tokio::time::sleep_until((start + every * batches as u32).into()).await;
        let n = (opts.records - sent).min(opts.batch as u64);
        let records = (0..n).map(|_| ProducerRecord::value(value.clone()));
        let t = Instant::now();
        let delivery = producer.send_batch(TOPIC, Some(0), records).await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let outcome = delivery.await;
            let latency = t.elapsed();
            let _ = tx.send(outcome.map(|meta| (t - start, latency, meta.base_offset)));
        });
        sent += n;
        batches += 1;
    }
    drop(tx);
    let mut answers = Vec::with_capacity(batches as usize);
    while let Some(outcome) = rx.recv().await {
        let (sent, latency, base_offset) = outcome?;
        let base_offset = base_offset.context("an acknowledgement without an offset")?;
        answers.push(Answer { sent, latency, base_offset });
    }
    let elapsed = start.elapsed();
    producer.close().await?;
    answers.sort_by_key(|a| a.base_offset);
    Ok((answers, elapsed))
}

/// Base offsets of every segment after the first: where the log rolled.
fn roll_offsets(broker: &BrokerChild) -> Result<Vec<u64>> {
    let dir = broker.partition_dir();
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".log")
            && let Ok(base) = stem.parse::<u64>()
            && base > 0
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn timing(answers: &[&Answer], elapsed: Duration) -> Timing {
    let mut t = Timing::new();
    for a in answers {
        t.record(a.latency);
    }
    t.finish(elapsed);
    t
}

fn rows(opts: &Options, answers: &[Answer], rolls: &[u64], elapsed: Duration) -> Vec<Row> {
    // When each rolling batch was sent.
    let roll_times: Vec<(u64, Option<&Answer>)> =
        rolls.iter().map(|&b| (b, answers.iter().find(|a| a.base_offset == b))).collect();
    let in_window = |a: &Answer| {
        roll_times.iter().any(|(_, roller)| {
            roller.is_some_and(|r| a.sent + BEFORE_ROLL >= r.sent && a.sent <= r.sent + AFTER_ROLL)
        })
    };
    let all: Vec<&Answer> = answers.iter().collect();
    let (near, far): (Vec<&Answer>, Vec<&Answer>) = answers.iter().partition(|a| in_window(a));
    let records_of = |n: usize| (n * opts.batch) as u64;
    let row = |name: &str, set: &[&Answer]| {
        let records = records_of(set.len());
        Row::new(name, records, records * opts.record_bytes as u64, &timing(set, elapsed))
    };
    let slowest = all.iter().map(|a| a.latency).max().unwrap_or_default();
    let verdict = if slowest <= GOAL {
        "met".to_string()
    } else {
        format!("missed: {:.1} ms", slowest.as_secs_f64() * 1e3)
    };
    let baseline = "answers outside roll windows (baseline)";
    let mut out = vec![
        row("every answer", &all)
            .note("rolls", rolls.len())
            .note("rate (records/s)", opts.rate)
            .note(&format!("goal: slowest answer <= {} ms", GOAL.as_millis()), verdict),
        row("answers in roll windows (-1 s .. +5 s)", &near).note("answers", near.len()),
        row(baseline, &far).note("answers", far.len()),
    ];
    for (k, (base, roller)) in roll_times.iter().enumerate() {
        let window: Vec<&Answer> = answers
            .iter()
            .filter(|a| {
                roller.is_some_and(|r| {
                    a.sent + BEFORE_ROLL >= r.sent && a.sent <= r.sent + AFTER_ROLL
                })
            })
            .collect();
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        let mut r = row(&format!("roll {} at offset {base}", k + 1), &window);
        r.baseline = Some(baseline.to_string());
        r = r
            .note("answer of the batch that rolled", roller.map_or("-".into(), |a| ms(a.latency)))
            .note(
                "slowest answer in the window",
                ms(window.iter().map(|a| a.latency).max().unwrap_or_default()),
            )
            .note(
                "sent at",
                roller.map_or("-".into(), |a| format!("{:.1} s", a.sent.as_secs_f64())),
            );
        out.push(r);
    }
    out
}
