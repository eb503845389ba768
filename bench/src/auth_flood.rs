//! `auth-flood`: what a flood of wrong passwords costs a normal client (docs/security.md,
//! "Floods of wrong passwords"). A child `eddy serve` with `auth.enabled` and a bootstrap user;
//! an authenticated producer sends `--records` records of `--record-bytes`, one at a time, each
//! acknowledged (`acks = written`, no linger) before the next, and its latency is measured twice
//! in the same run:
//!
//! 1. quiet: nothing else connects;
//! 2. under a flood: `--attempts` wrong authentication attempts (default 10,000), `--threads`
//!    (64) at once, each a fresh connection to the native listener — SCRAM-SHA-256,
//!    SCRAM-SHA-512 and PLAIN in turn, as the bootstrap user or as an unknown user — while the
//!    producer keeps producing until the last attempt is refused.
//!
//! The flood costs its sender almost nothing, as a flood meant to tire a broker would: SCRAM
//! attempts carry a random proof (a guesser's PBKDF2 would be its own cost, on its own machine),
//! PLAIN attempts a wrong password (which costs the broker a PBKDF2). The flooder runs on a
//! runtime of its own and the measured producer on a thread of its own, so neither waits on the
//! other's tasks; all three (broker, flooder, producer) share this machine's cores.
//!
//! The flood's row is compared with the quiet one by p99 latency ("p99 under the flood / quiet";
//! the goal is within 2x). Every attempt must be refused, or the workload fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use eddy_client::sasl::{Mechanism, ScramClient, b64, plain_token};
use eddy_client::{
    Acks, Admin, Connection, ConnectionOptions, Credentials, ErrorCode, Producer, ProducerConfig,
    ProducerRecord, TopicConfig,
};
use eddy_protocol::v1::{self, request, response};
use eddy_protocol::{FrameDecoder, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    let flood_runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let client_runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    client_runtime.block_on(measure(opts, &broker.addr, flood_runtime.handle()))
}

async fn measure(
    opts: &Options,
    addr: &str,
    flood_runtime: &tokio::runtime::Handle,
) -> Result<Vec<Row>> {
    let credentials = Some(Credentials::new(USER, PASSWORD));
    let options = ConnectionOptions { credentials, ..ConnectionOptions::default() };
    let conn = Arc::new(Connection::connect(addr, options).await?);
    Admin::new(conn.clone()).create_topic(TOPIC, TopicConfig::default()).await?;
    // No linger: each record goes at once, so its latency is the broker's, not the producer's
    // 5 ms batching wait.
    let config =
        ProducerConfig { acks: Acks::Written, linger: Duration::ZERO, ..ProducerConfig::default() };
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
    let flood =
        flood_runtime.spawn(flood(addr.to_string(), opts.attempts, opts.threads, done.clone()));
    let mut loud = Timing::new();
    let (started, mut sent) = (Instant::now(), 0u64);
    while !done.load(Ordering::Acquire) {
        produce_one(&producer, &value, &mut loud).await?;
        sent += 1;
    }
    loud.finish(started.elapsed());
    let (refused, flood_secs) = flood.await??;
    producer.close().await?;
    let bytes = sent * opts.record_bytes as u64;
    let loud_row = Row::new("produce, under the flood", sent, bytes, &loud);
    let p99 = loud_row.op_p99_us / quiet_row.op_p99_us.max(1e-9);
    let p999 = loud_row.op_p999_us / quiet_row.op_p999_us.max(1e-9);
    let attempts = opts.attempts;
    let rate = refused as f64 / flood_secs.max(1e-9);
    let loud_row = loud_row
        .note("wrong attempts refused", format!("{refused} of {attempts} in {flood_secs:.1} s"))
        .note("flood rate", format!("{rate:.0} attempts/s"))
        .note("p99 under the flood / quiet", format!("{p99:.2} (goal: at most 2)"))
        .note("p99.9 under the flood / quiet", format!("{p999:.2}"));
    Ok(vec![quiet_row, loud_row])
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
                let attempt = tokio::time::timeout(Duration::from_secs(30), wrong(&addr, i));
                match attempt.await.context("an attempt took over 30 s")?? {
                    Some(code) if code == ErrorCode::AuthenticationFailed as i32 => refused += 1,
                    Some(code) => bail!("attempt {i} was refused with code {code}"),
                    None => bail!("attempt {i} with a wrong password was accepted"),
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

/// One cheap wrong attempt, number `i`: the error code it was refused with (`None`: accepted).
async fn wrong(addr: &str, i: u64) -> Result<Option<i32>> {
    let mechanism = Mechanism::ALL[(i % 3) as usize];
    let user = if i.is_multiple_of(2) { USER.to_string() } else { format!("intruder-{}", i % 97) };
    let mut wire = Wire::connect(addr).await?;
    let handshake = v1::SaslHandshakeRequest { mechanism: mechanism.name().to_string() };
    if let Err(code) = wire.call(request::Body::SaslHandshake(handshake)).await? {
        return Ok(Some(code));
    }
    let first = match mechanism.scram() {
        None => plain_token(&user, &format!("guess-{i}")),
        Some(scram) => ScramClient::start(scram, &user).map_err(anyhow::Error::msg)?.1,
    };
    let answer = match wire.authenticate(first).await? {
        Err(code) => return Ok(Some(code)),
        Ok(answer) if answer.complete => return Ok(None),
        Ok(answer) => answer,
    };
    // client-final with the server's nonce and a random proof: no PBKDF2 on this side.
    let text = String::from_utf8_lossy(&answer.auth_bytes).into_owned();
    let nonce = text.split(',').find_map(|a| a.strip_prefix("r=")).context("no nonce")?;
    let proof = b64(&i.to_le_bytes().repeat(8));
    let last = format!("c=biws,r={nonce},p={proof}").into_bytes();
    match wire.authenticate(last).await? {
        Err(code) => Ok(Some(code)),
        Ok(_) => Ok(None),
    }
}

/// A bare native connection: requests one at a time, answers decoded.
struct Wire {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    next_id: u64,
}

impl Wire {
    async fn connect(addr: &str) -> Result<Wire> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Wire { stream, buf: BytesMut::new(), decoder: FrameDecoder::new(1 << 20), next_id: 1 })
    }

    /// Sends `body`; its answer's body, or the error code it was refused with.
    async fn call(&mut self, body: request::Body) -> Result<Result<response::Body, i32>> {
        let id = self.next_id;
        self.next_id += 1;
        let mut frame = BytesMut::new();
        encode_frame(&v1::Request { correlation_id: id, body: Some(body) }, &mut frame);
        self.stream.write_all(&frame).await?;
        loop {
            if let Some(answer) = self.decoder.next_message::<v1::Response>(&mut self.buf)? {
                return Ok(match (answer.error, answer.body) {
                    (Some(error), _) => Err(error.code),
                    (None, Some(body)) => Ok(body),
                    (None, None) => bail!("an answer with neither body nor error"),
                });
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("the broker closed the connection without an answer");
            }
        }
    }

    async fn authenticate(
        &mut self,
        token: Vec<u8>,
    ) -> Result<Result<v1::SaslAuthenticateResponse, i32>> {
        let body = request::Body::SaslAuthenticate(v1::SaslAuthenticateRequest {
            auth_bytes: token.into(),
        });
        Ok(match self.call(body).await? {
            Ok(response::Body::SaslAuthenticate(answer)) => Ok(answer),
            Ok(_) => bail!("SaslAuthenticate answered with another body"),
            Err(code) => Err(code),
        })
    }
}
