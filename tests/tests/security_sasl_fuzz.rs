//! Fuzzing the handshakes (docs/security.md, "Authentication"): `EDDY_FUZZ_CASES` (default
//! 3,000; 100,000 were run once, see docs/security.md) mutated SASL exchanges against a real
//! `eddy serve` with `auth.enabled`, from `EDDY_FUZZ_THREADS` threads (default 8), seeded by
//! `EDDY_FUZZ_SEED` (printed). Each case is one connection to the Kafka or the native listener:
//!
//! - blind: ApiVersions, SaslHandshake and one or two SaslAuthenticate frames (SCRAM's
//!   client-first from eddy's client, SCRAM-like client-finals, PLAIN tokens, random bytes;
//!   SaslHandshake v0's bare tokens too), mutated (bits flipped, bytes replaced, inserted,
//!   deleted, repeated, truncated, length prefixes set to edge values) and sent at once;
//! - interactive: a genuine handshake and client-first, then the broker's server-first
//!   answered by a mutated client-final, so the mutations reach SCRAM's last step.
//!
//! After its bytes the case half-closes its socket, and the broker must close the connection
//! within 10 s (none may hang). Then the broker must still serve an authenticated client on both
//! listeners, and its resident memory must have grown by less than [`RSS_GROWTH_BOUND`] since a
//! warm-up of [`WARM_UP`] cases. The failure delay is 0 here: what is fuzzed is the parsing and
//! the state machines, not the delay.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use eddy_client::sasl::{Mechanism, Scram, ScramClient, b64, plain_token};
use eddy_client::{Admin, Connection, ConnectionOptions, Credentials, TopicConfig};
use eddy_protocol::v1::{self, request};
use eddy_tests::env_u64;
use eddy_tests::kafka_wire::{KafkaConnection, frame, text};
use eddy_tests::raw_client::RawClient;
use eddy_tests::sasl::{ADMIN, ADMIN_PASSWORD, kafka_connection_as, start_authenticated};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, MetadataResponse, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};

/// Cases run before the first memory reading (connections, buffers and caches warm up).
const WARM_UP: u64 = 500;
/// Most the broker's resident memory may grow from the warm-up to the end.
const RSS_GROWTH_BOUND: u64 = 48 << 20;
/// Longest the broker may take to close a case's connection after the case half-closed it.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A name that is sometimes the real user, sometimes not, sometimes odd.
fn user(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => ADMIN.to_string(),
        1 => "a=b,c".to_string(),
        2 => {
            let n = rng.below(12);
            String::from_utf8_lossy(&rng.bytes(n)).into_owned()
        }
        _ => format!("user-{}", rng.below(100)),
    }
}

/// A SASL message of some kind.
fn token(rng: &mut Rng) -> Vec<u8> {
    match rng.below(5) {
        0 => {
            let scram = *rng.pick(&[Scram::Sha256, Scram::Sha512]);
            ScramClient::start(scram, &user(rng)).expect("a nonce").1
        }
        1 => plain_token(&user(rng), ADMIN_PASSWORD),
        2 => format!("c=biws,r={},p={}", b64(&rng.bytes(24)), b64(&rng.bytes(32))).into_bytes(),
        3 => format!("n,,n={},r={}", user(rng), b64(&rng.bytes(18))).into_bytes(),
        _ => {
            let n = rng.below(300);
            rng.bytes(n)
        }
    }
}

fn mechanism(rng: &mut Rng) -> String {
    let names = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "GSSAPI", "", "scram-sha-256"];
    rng.pick(&names).to_string()
}

/// 1 to 4 mutations of `bytes`.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let len = bytes.len();
        let at = rng.below(len + 1);
        match rng.below(8) {
            0 if len > 0 => bytes[at.min(len - 1)] ^= 1 << rng.below(8),
            1 if len > 0 => bytes[at.min(len - 1)] = rng.next() as u8,
            2 => bytes.truncate(at),
            3 => {
                let n = rng.below(32);
                let extra = rng.bytes(n);
                bytes.splice(at..at, extra);
            }
            4 => {
                let end = (at + rng.below(16)).min(len);
                bytes.drain(at..end);
            }
            5 => {
                let end = (at + rng.below(64)).min(len);
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ if len >= 4 => {
                let edges = [0u32, 1, 7, 8, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000, len as u32];
                let value = *rng.pick(&edges);
                let at = at.min(len - 4);
                let le = rng.below(2) == 0;
                let raw = if le { value.to_le_bytes() } else { value.to_be_bytes() };
                bytes[at..at + 4].copy_from_slice(&raw);
            }
            _ => {}
        }
    }
}

/// ApiVersions, SaslHandshake, SaslAuthenticate (once or twice) as Kafka frames; after a
/// SaslHandshake v0, the tokens go bare, size-prefixed.
fn kafka_blind(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.below(2) == 0 {
        out.extend(frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default()));
    }
    let version = *rng.pick(&[0i16, 1, 1, 1, 2]);
    let handshake = SaslHandshakeRequest::default().with_mechanism(text(&mechanism(rng)));
    out.extend(frame(ApiKey::SaslHandshake, version.min(1), 2, &handshake));
    for id in 3..3 + 1 + rng.below(2) as i32 {
        let token = token(rng);
        if version == 0 {
            out.extend((token.len() as i32).to_be_bytes());
            out.extend(token);
        } else {
            let auth = SaslAuthenticateRequest::default().with_auth_bytes(token.into());
            out.extend(frame(ApiKey::SaslAuthenticate, rng.below(3) as i16, id, &auth));
        }
    }
    out
}

fn native_frame(id: u64, body: request::Body) -> Vec<u8> {
    let mut out = BytesMut::new();
    eddy_protocol::encode_frame(&v1::Request { correlation_id: id, body: Some(body) }, &mut out);
    out.to_vec()
}

fn native_blind(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.below(2) == 0 {
        let versions =
            v1::ApiVersionsRequest { min_version: 1, max_version: 1, client_name: "fuzz".into() };
        out.extend(native_frame(1, request::Body::ApiVersions(versions)));
    }
    let handshake = v1::SaslHandshakeRequest { mechanism: mechanism(rng) };
    out.extend(native_frame(2, request::Body::SaslHandshake(handshake)));
    for id in 3..3 + 1 + rng.below(2) as u64 {
        let auth = v1::SaslAuthenticateRequest { auth_bytes: token(rng).into() };
        out.extend(native_frame(id, request::Body::SaslAuthenticate(auth)));
    }
    if rng.below(4) == 0 {
        out.extend(native_frame(9, request::Body::ListTopics(v1::ListTopicsRequest {})));
    }
    out
}

/// Sends `bytes`, half-closes, and waits for the broker to close; false if it does not.
fn send_and_drain(mut stream: TcpStream, bytes: &[u8]) -> bool {
    let _ = stream.set_write_timeout(Some(CLOSE_LIMIT));
    // The broker may close before taking everything: a failed write is part of the game.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + CLOSE_LIMIT;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// A genuine handshake and client-first on the Kafka listener, then a mutated client-final.
fn kafka_interactive(addr: SocketAddr, rng: &mut Rng) -> bool {
    let scram = *rng.pick(&[Scram::Sha256, Scram::Sha512]);
    let mut conn = KafkaConnection::connect(addr);
    let handshake = SaslHandshakeRequest::default().with_mechanism(text(scram.mechanism().name()));
    let _: SaslHandshakeResponse = conn.call(ApiKey::SaslHandshake, 1, &handshake);
    let (client, first) = ScramClient::start(scram, &user(rng)).expect("a nonce");
    let auth = SaslAuthenticateRequest::default().with_auth_bytes(first.into());
    let answer: SaslAuthenticateResponse = conn.call(ApiKey::SaslAuthenticate, 2, &auth);
    let last = match client.respond(&answer.auth_bytes, ADMIN_PASSWORD) {
        Ok((_, last)) => last,
        Err(_) => token(rng),
    };
    let mut last = last;
    mutate(rng, &mut last);
    let auth = SaslAuthenticateRequest::default().with_auth_bytes(last.into());
    let mut bytes = frame(ApiKey::SaslAuthenticate, 2, 3, &auth);
    if rng.below(2) == 0 {
        mutate(rng, &mut bytes);
    }
    let stream = conn.stream_mut().try_clone().expect("clone the socket");
    send_and_drain(stream, &bytes)
}

/// The same on the native listener.
fn native_interactive(addr: SocketAddr, rng: &mut Rng) -> bool {
    let scram = *rng.pick(&[Scram::Sha256, Scram::Sha512]);
    let mut client = RawClient::connect(addr);
    client.handshake();
    let handshake = v1::SaslHandshakeRequest { mechanism: scram.mechanism().name().into() };
    client.call(request::Body::SaslHandshake(handshake));
    let (scram_client, first) = ScramClient::start(scram, &user(rng)).expect("a nonce");
    let auth = v1::SaslAuthenticateRequest { auth_bytes: first.into() };
    let answer = client.call(request::Body::SaslAuthenticate(auth));
    let server_first = match answer.body {
        Some(v1::response::Body::SaslAuthenticate(a)) => a.auth_bytes.to_vec(),
        _ => Vec::new(),
    };
    let mut last = match scram_client.respond(&server_first, ADMIN_PASSWORD) {
        Ok((_, last)) => last,
        Err(_) => token(rng),
    };
    mutate(rng, &mut last);
    let auth = v1::SaslAuthenticateRequest { auth_bytes: last.into() };
    let mut bytes = native_frame(3, request::Body::SaslAuthenticate(auth));
    if rng.below(2) == 0 {
        mutate(rng, &mut bytes);
    }
    let stream = client.stream().try_clone().expect("clone the socket");
    send_and_drain(stream, &bytes)
}

/// Case `i` of the run seeded `seed`; whether the broker closed the connection in time.
fn case(native: SocketAddr, kafka: SocketAddr, seed: u64, i: u64) -> bool {
    let mut rng = Rng(seed ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d));
    match rng.below(4) {
        0 => kafka_interactive(kafka, &mut rng),
        1 => native_interactive(native, &mut rng),
        2 => {
            let mut bytes = kafka_blind(&mut rng);
            mutate(&mut rng, &mut bytes);
            send_and_drain(TcpStream::connect(kafka).expect("connect"), &bytes)
        }
        _ => {
            let mut bytes = native_blind(&mut rng);
            mutate(&mut rng, &mut bytes);
            send_and_drain(TcpStream::connect(native).expect("connect"), &bytes)
        }
    }
}

/// Runs cases `from..to` on `threads` threads; the numbers of the cases that hung.
fn run_cases(
    native: SocketAddr,
    kafka: SocketAddr,
    seed: u64,
    from: u64,
    to: u64,
    threads: u64,
) -> Vec<u64> {
    let next = Arc::new(AtomicU64::new(from));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || {
                let mut hung = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= to {
                        return hung;
                    }
                    if !case(native, kafka, seed, i) {
                        hung.push(i);
                    }
                }
            })
        })
        .collect();
    workers.into_iter().flat_map(|w| w.join().expect("a fuzz thread panicked")).collect()
}

#[test]
fn mutated_sasl_exchanges_leave_the_broker_serving_with_bounded_memory() {
    let cases = env_u64("EDDY_FUZZ_CASES").unwrap_or(3_000).max(WARM_UP + 1);
    let threads = env_u64("EDDY_FUZZ_THREADS").unwrap_or(8).max(1);
    let seed = env_u64("EDDY_FUZZ_SEED").unwrap_or(0xf022_5a51);
    println!("fuzz: {cases} cases on {threads} threads, EDDY_FUZZ_SEED={seed:#x}");
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start_authenticated(dir.path(), &[("EDDY_AUTH_FAILED_DELAY_MS", "0")]);
    let (native, kafka) = (broker.addr(), broker.kafka_addr());
    let started = Instant::now();
    let mut hung = run_cases(native, kafka, seed, 0, WARM_UP, threads);
    let rss_before = broker.rss_bytes().expect("the broker's RSS");
    hung.extend(run_cases(native, kafka, seed, WARM_UP, cases, threads));
    let rss_after = broker.rss_bytes().expect("the broker's RSS");
    let took = started.elapsed();
    println!(
        "fuzz: {cases} cases in {took:.1?} ({:.0}/s); broker RSS {} MiB after the warm-up, {} MiB \
         at the end",
        cases as f64 / took.as_secs_f64(),
        rss_before >> 20,
        rss_after >> 20
    );
    assert!(hung.is_empty(), "the broker did not close these cases' connections: {hung:?}");
    assert!(broker.is_running(), "the broker died");
    assert!(
        rss_after.saturating_sub(rss_before) < RSS_GROWTH_BOUND,
        "RSS grew from {rss_before} to {rss_after} bytes"
    );

    // Still serving authenticated clients on both listeners.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let options = ConnectionOptions {
            credentials: Some(Credentials::new(ADMIN, ADMIN_PASSWORD)),
            ..ConnectionOptions::default()
        };
        let conn = Connection::connect(&native.to_string(), options).await.expect("connects");
        let admin = Admin::new(conn);
        admin.create_topic("after-fuzz", TopicConfig::default()).await.expect("creates a topic");
        assert!(admin.list_topics().await.unwrap().contains(&"after-fuzz".to_string()));
    });
    let mut conn = kafka_connection_as(kafka, Mechanism::ScramSha256, ADMIN, ADMIN_PASSWORD);
    let every_topic = MetadataRequest::default().with_topics(None);
    let metadata: MetadataResponse = conn.call(ApiKey::Metadata, 12, &every_topic);
    assert!(
        metadata.topics.iter().any(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "after-fuzz"))
    );
    broker.terminate();
}
