//! `auth-flood`: what a flood of wrong passwords costs a normal client (docs/security.md,
//! "Floods of wrong passwords"). A child `eddy serve` with `auth.enabled` and a bootstrap user;
//! an authenticated producer sends `--records` records of `--record-bytes`, one at a time, each
//! acknowledged (`acks = written`) before the next, and its latency is measured twice in the
//! same run:
//!
//! 1. quiet: nothing else connects;
//! 2. under a flood: `--attempts` wrong authentication attempts (default 10,000), `--threads`
//!    (64) at once, each a fresh connection through eddy's client — SCRAM-SHA-256,
//!    SCRAM-SHA-512 and PLAIN in turn, as the bootstrap user with a wrong password or as an
//!    unknown user — while the producer keeps producing until the last attempt is refused.
//!
//! The flood's row is compared with the quiet one by p99 latency ("p99 under the flood / quiet";
//! the goal is within 2x). Every attempt must be refused, or the workload fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use eddy_client::sasl::Mechanism;
use eddy_client::{
    Acks, Admin, Connection, ConnectionOptions, Credentials, ErrorCode, Producer, ProducerConfig,
    ProducerRecord, TopicConfig,
};

use crate::memory::{BrokerChild, eddy_binary};
use crate::report::{Row, Timing};
use crate::workload::Options;

const TOPIC: &str = "steady";
const USER: &str = "admin";
const PASSWORD: &str = "bench-admin-password";

pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let binary = eddy_binary(opts)?;
    let dir = opts.tempdir()?;
    let bootstrap = format!("{USER}:{PASSWORD}");
    let env = [("EDDY_AUTH_ENABLED", "true"), ("EDDY_BOOTSTRAP_USER", bootstrap.as_str())];
    let broker = BrokerChild::start_with_env(&binary, dir.path(), TOPIC, false, &env)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(measure(opts, &broker.addr))
}

fn options(credentials: Credentials) -> ConnectionOptions {
    ConnectionOptions { credentials: Some(credentials), ..ConnectionOptions::default() }
}

async fn measure(opts: &Options, addr: &str) -> Result<Vec<Row>> {
    let conn =
        Arc::new(Connection::connect(addr, options(Credentials::new(USER, PASSWORD))).await?);
    Admin::new(conn.clone()).create_topic(TOPIC, TopicConfig::default()).await?;
    let config = ProducerConfig { acks: Acks::Written, ..ProducerConfig::default() };
    let producer = Producer::new(conn, config)?;
    let value = vec![b'x'; opts.record_bytes];
    let payload = opts.records * opts.record_bytes as u64;

    let mut quiet = Timing::new();
    let started = Instant::now();
    for _ in 0..opts.records {
        produce_one(&producer, &value, &mut quiet).await?;
    }
    quiet.finish(started.elapsed());
    let quiet_row = Row::new("produce, quiet", opts.records, payload, &quiet);

    let done = Arc::new(AtomicBool::new(false));
    let flood = tokio::spawn(flood(addr.to_string(), opts.attempts, opts.threads, done.clone()));
    let mut loud = Timing::new();
    let (started, mut sent) = (Instant::now(), 0u64);
    while !done.load(Ordering::Acquire) {
        produce_one(&producer, &value, &mut loud).await?;
        sent += 1;
    }
    loud.finish(started.elapsed());
    let (refused, flood_secs) = flood.await??;
    producer.close().await?;
    let ratio = |row: &Row| row.op_p99_us / quiet_row.op_p99_us.max(1e-9);
    let loud_row =
        Row::new("produce, under the flood", sent, sent * opts.record_bytes as u64, &loud);
    let p99_ratio = ratio(&loud_row);
    let p999_ratio = loud_row.op_p999_us / quiet_row.op_p999_us.max(1e-9);
    Ok(vec![
        quiet_row,
        loud_row
            .note(
                "wrong attempts refused",
                format!("{refused} of {} in {flood_secs:.1} s", opts.attempts),
            )
            .note("flood rate", format!("{:.0} attempts/s", refused as f64 / flood_secs.max(1e-9)))
            .note("p99 under the flood / quiet", format!("{p99_ratio:.2} (goal: at most 2)"))
            .note("p99.9 under the flood / quiet", format!("{p999_ratio:.2}")),
    ])
}

async fn produce_one(
    producer: &Producer<Arc<Connection>>,
    value: &[u8],
    t: &mut Timing,
) -> Result<()> {
    let started = Instant::now();
    producer.send_and_wait(TOPIC, Some(0), ProducerRecord::value(value.to_vec())).await?;
    t.record(started.elapsed());
    Ok(())
}

/// `attempts` wrong attempts, `threads` at once; sets `done` when they are over (or one went
/// wrong). Returns how many were refused and how long the flood took.
async fn flood(
    addr: String,
    attempts: u64,
    threads: usize,
    done: Arc<AtomicBool>,
) -> Result<(u64, f64)> {
    let outcome = flood_all(addr, attempts, threads).await;
    done.store(true, Ordering::Release);
    outcome
}

async fn flood_all(addr: String, attempts: u64, threads: usize) -> Result<(u64, f64)> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..threads {
        let (addr, next) = (addr.clone(), next.clone());
        tasks.spawn(async move {
            let mut refused = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= attempts {
                    return Ok::<u64, anyhow::Error>(refused);
                }
                let mechanism = Mechanism::ALL[(i % 3) as usize];
                let user =
                    if i % 2 == 0 { USER.to_string() } else { format!("intruder-{}", i % 97) };
                let wrong = Credentials::new(user, format!("guess-{i}")).with_mechanism(mechanism);
                let attempt = tokio::time::timeout(
                    Duration::from_secs(30),
                    Connection::connect(&addr, options(wrong)),
                );
                match attempt.await.context("an attempt took over 30 s")? {
                    Err(e) if e.code() == Some(ErrorCode::AuthenticationFailed) => refused += 1,
                    Err(e) => bail!("attempt {i} failed otherwise: {e}"),
                    Ok(_) => bail!("attempt {i} with a wrong password was accepted"),
                }
            }
        });
    }
    let mut refused = 0;
    while let Some(task) = tasks.join_next().await {
        refused += task??;
    }
    Ok((refused, started.elapsed().as_secs_f64()))
}
