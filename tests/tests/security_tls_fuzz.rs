//! Mutated TLS ClientHellos against the real `eddy serve` binary's three TLS listeners (native,
//! Kafka, HTTP): afterwards the broker still serves real TLS clients, holds no connection
//! from the fuzzing, and its resident memory grew less than [`RSS_GROWTH_LIMIT`].
//!
//! The seed material is a real ClientHello, captured from a rustls client writing into a
//! buffer. Each case applies one to three mutations from a seeded generator (the seed is
//! printed; `EDDY_TEST_SEED` repeats it): bit flips, a truncation, a length field that lies
//! (the record's, the handshake's, the session id's, or any two bytes), a splice of random or
//! repeated bytes, garbage after the hello. Each case gets a fresh connection; most then shut
//! their sending side (the broker sees the end of the stream), and one in twenty keeps it open,
//! so only `handshake_timeout_ms` (1 s here) can close it — which must happen within
//! [`CLOSE_LIMIT`].
//!
//! `EDDY_FUZZ_CASES` sets the number of cases (default 3,000, about 20 s); at most
//! [`CONCURRENCY`] connections are open at once and the run must end within `EDDY_FUZZ_SECONDS`
//! (default 600). docs/security.md records a 100,000-case run.
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stderr, reason = "the seed and the outcome counts reach the test output")]

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eddy_client::{Admin, Connection, ConnectionOptions, TlsOptions};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::child::deadline_in;
use eddy_tests::env_u64;
use eddy_tests::generate::{Rng, mix64};
use eddy_tests::kafka_harness::seed;
use eddy_tests::tls::{
    Ca, Validity, client_config, client_hello, https_get, presented_certificate,
};

/// Connections open at once.
const CONCURRENCY: u64 = 16;
/// Longest the broker may take to close a fuzzing connection (its handshake timeout is 1 s).
const CLOSE_LIMIT: Duration = Duration::from_secs(15);
/// Most the broker's resident memory may grow over the whole run.
const RSS_GROWTH_LIMIT: u64 = 48 << 20;

/// How the broker ended one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Closed without sending anything.
    Closed,
    /// Closed after sending bytes (a TLS alert, a `TLS_REQUIRED` frame, an HTTP 400, or a
    /// ServerHello to a hello that still parsed).
    Answered,
    /// Reset the connection.
    Reset,
}

/// One to three mutations of `hello`.
fn mutate(hello: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = hello.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(6) {
            0 => {
                for _ in 0..1 + rng.below(8) {
                    if !out.is_empty() {
                        let at = rng.below(out.len() as u64) as usize;
                        out[at] ^= 1 << rng.below(8);
                    }
                }
            }
            1 => out.truncate(rng.below(out.len() as u64 + 1) as usize),
            2 => lie_about_a_length(&mut out, rng),
            3 => splice(&mut out, rng),
            4 => {
                let garbage = rng.bytes(512);
                out.extend_from_slice(&garbage);
            }
            _ => {
                // A repeated run of the hello itself: plausible structure in the wrong place.
                if !out.is_empty() {
                    let start = rng.below(out.len() as u64) as usize;
                    let end = start + rng.below((out.len() - start) as u64 + 1) as usize;
                    let copy = out[start..end].to_vec();
                    let at = rng.below(out.len() as u64 + 1) as usize;
                    out.splice(at..at, copy);
                }
            }
        }
    }
    out
}

/// Overwrites a length field: the record's (bytes 3-4), the handshake's (6-8), the session
/// id's (43), or two bytes anywhere, with 0, a maximum, one off the truth, or anything.
fn lie_about_a_length(out: &mut [u8], rng: &mut Rng) {
    let (at, width) = match rng.below(4) {
        0 => (3, 2),
        1 => (6, 3),
        2 => (43, 1),
        _ => (rng.below(out.len().max(2) as u64 - 1) as usize, 2),
    };
    if at + width > out.len() {
        return;
    }
    let field = &mut out[at..at + width];
    let truth = field.iter().fold(0u32, |v, b| (v << 8) | u32::from(*b));
    let max = (1u32 << (8 * width)) - 1;
    let lie = match rng.below(4) {
        0 => 0,
        1 => max,
        2 => (truth + 1 + rng.below(2) as u32 * (max - 1)) & max,
        _ => rng.next_u64() as u32 & max,
    };
    for (i, byte) in field.iter_mut().enumerate() {
        *byte = (lie >> (8 * (width - 1 - i))) as u8;
    }
}

/// Replaces a random range with random bytes.
fn splice(out: &mut Vec<u8>, rng: &mut Rng) {
    let start = rng.below(out.len() as u64 + 1) as usize;
    let end = start + rng.below((out.len() - start) as u64 + 1) as usize;
    let fresh = rng.bytes(64);
    out.splice(start..end, fresh);
}

/// Sends `bytes` on a fresh connection to `addr` and waits for the broker to close it.
fn one_case(addr: SocketAddr, bytes: &[u8], shut_write: bool) -> Result<Outcome, String> {
    let mut socket = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    socket.set_read_timeout(Some(CLOSE_LIMIT)).map_err(|e| e.to_string())?;
    socket.set_write_timeout(Some(CLOSE_LIMIT)).map_err(|e| e.to_string())?;
    // The broker may close before everything is written (it refused the start already).
    let _ = socket.write_all(bytes);
    if shut_write {
        let _ = socket.shutdown(Shutdown::Write);
    }
    let mut answered = false;
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return Ok(if answered { Outcome::Answered } else { Outcome::Closed }),
            Ok(_) => answered = true,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(Outcome::Reset),
            Err(e) => return Err(format!("not closed within {CLOSE_LIMIT:?}: {e}")),
        }
    }
}

/// Runs `cases` cases over `threads` threads against the three listeners; the outcome counts.
fn fuzz(
    listeners: [SocketAddr; 3],
    hello: &[u8],
    seed: u64,
    cases: u64,
    deadline: Instant,
) -> BTreeMap<Outcome, u64> {
    let next = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, hello) = (next.clone(), hello.to_vec());
            std::thread::spawn(move || {
                let mut counts = BTreeMap::new();
                loop {
                    let case = next.fetch_add(1, Ordering::Relaxed);
                    if case >= cases {
                        return counts;
                    }
                    assert!(Instant::now() < deadline, "case {case}: out of time");
                    let mut rng = Rng::new(mix64(seed ^ case));
                    let bytes = mutate(&hello, &mut rng);
                    let addr = listeners[(case % 3) as usize];
                    let shut_write = !rng.one_in(20);
                    let outcome = one_case(addr, &bytes, shut_write).unwrap_or_else(|e| {
                        panic!("case {case} ({} bytes to {addr}, seed {seed:#x}): {e}", bytes.len())
                    });
                    *counts.entry(outcome).or_insert(0) += 1;
                }
            })
        })
        .collect();
    let mut total = BTreeMap::new();
    for thread in threads {
        for (outcome, n) in thread.join().unwrap() {
            *total.entry(outcome).or_insert(0) += n;
        }
    }
    total
}

/// Connections open on `listener` now, from `/metrics` over HTTPS.
fn open_connections(
    broker: &BrokerProcess,
    config: Arc<rustls::ClientConfig>,
    listener: &str,
) -> u64 {
    let metrics = https_get(broker.http_addr(), config, "/metrics");
    let line = format!("eddy_connections{{listener=\"{listener}\"}} ");
    let value = metrics.body.lines().find_map(|l| l.strip_prefix(line.as_str()));
    value.and_then(|v| v.parse::<f64>().ok()).unwrap_or_else(|| panic!("no {line} in /metrics"))
        as u64
}

#[test]
fn mutated_client_hellos_leave_the_broker_serving_within_bounded_memory() {
    let seed = seed();
    let cases = env_u64("EDDY_FUZZ_CASES").unwrap_or(3_000);
    let seconds = env_u64("EDDY_FUZZ_SECONDS").unwrap_or(600);
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("eddy-fuzz-ca");
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let (cert, key) = ca.broker(1, Validity::Current).write(dir.path(), "broker");
    let env = [
        ("EDDY_TLS_CERT_FILE", cert.to_str().unwrap()),
        ("EDDY_TLS_KEY_FILE", key.to_str().unwrap()),
        ("EDDY_HANDSHAKE_TIMEOUT_MS", "1000"),
        // A refused handshake is logged at info; 100,000 of them are not worth reading.
        ("EDDY_LOG", "warn"),
    ];
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &env);
    let config = client_config(&ca_file, None);
    let listeners = [broker.addr(), broker.kafka_addr(), broker.http_addr()];
    // Warm up every listener with real handshakes before the baseline.
    for addr in listeners {
        presented_certificate(addr, config.clone());
    }
    let before = broker.rss_bytes().unwrap();
    let hello = client_hello(config.clone());
    let started = Instant::now();
    let counts = fuzz(listeners, &hello, seed, cases, started + Duration::from_secs(seconds));
    let took = started.elapsed();
    assert!(broker.is_running(), "the broker died during the fuzzing");
    let after = broker.rss_bytes().unwrap();
    eprintln!(
        "{cases} mutated ClientHellos of a {}-byte hello in {took:.1?}: {counts:?}; broker RSS \
         {} KiB before, {} KiB after",
        hello.len(),
        before / 1024,
        after / 1024
    );
    assert_eq!(counts.values().sum::<u64>(), cases);
    assert!(
        after < before + RSS_GROWTH_LIMIT,
        "the broker's RSS grew from {before} to {after} bytes (limit {RSS_GROWTH_LIMIT})"
    );

    // It still serves: a real TLS client on every listener, and eddy's client over TLS.
    for addr in listeners {
        presented_certificate(addr, config.clone());
    }
    assert_eq!(https_get(broker.http_addr(), config.clone(), "/health").status, 200);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let options = ConnectionOptions {
        tls: Some(TlsOptions::from_files(&ca_file, None).unwrap()),
        ..ConnectionOptions::default()
    };
    let addr = broker.addr().to_string();
    runtime.block_on(async {
        let admin = Admin::new(Connection::connect(&addr, options).await.unwrap());
        admin.create_topic("after-the-fuzzing", Default::default()).await.unwrap();
    });
    // Its connection's tasks end with the runtime, which closes the socket.
    drop(runtime);
    // And none of the fuzzing's connections is left open.
    let deadline = deadline_in(Duration::from_secs(30));
    for listener in ["native", "kafka"] {
        loop {
            let open = open_connections(&broker, config.clone(), listener);
            if open == 0 {
                break;
            }
            // Each look is an HTTPS request: no sleep between them is needed.
            assert!(Instant::now() < deadline, "{open} {listener} connections still open");
        }
    }
    assert!(broker.terminate().success());
}
