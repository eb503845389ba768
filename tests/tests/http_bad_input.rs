//! Abuse of the HTTP listener — clients that never finish their headers, huge headers, unknown
//! paths, and 10,000 requests at once — while a native client produces and fetches: every
//! native round trip is answered quickly throughout, the HTTP listener keeps its limits (slow
//! clients are cut at the header timeout, huge headers refused, extra connections closed), and
//! it answers again once the flood is over. Bounded: a fixed number of connections and
//! requests, each with a deadline. The slow clients come from 127.0.0.2 and the unknown paths
//! from 127.0.0.3, so that each attacker has its own share of the listener's connections (one
//! address may hold 64; `broker_connection_flood.rs` tests that share).
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_tests::broker::BrokerProcess;
use eddy_tests::generate::batch_for_seed;
use eddy_tests::http::get;
use eddy_tests::raw_client::RawClient;

const SLOW_CLIENTS: usize = 300;
const HUGE_HEADERS: usize = 50;
const UNKNOWN_PATHS: usize = 1_000;
const FLOOD: usize = 10_000;
const FLOOD_THREADS: usize = 20;
/// The listener's header read timeout is 5 s; a slow client must be gone well within this.
const SLOW_CUT: Duration = Duration::from_secs(20);
const IO_LIMIT: Duration = Duration::from_secs(30);

/// What one HTTP exchange came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Status(u16),
    /// Closed (or reset, or refused) without an answer.
    Closed,
}

const SLOW_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const UNKNOWN_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

fn exchange(addr: SocketAddr, request: &[u8]) -> Outcome {
    let Ok(s) = TcpStream::connect_timeout(&addr, IO_LIMIT) else { return Outcome::Closed };
    exchange_on(s, request)
}

/// A blocking connection to `addr` from `source` (Linux answers on all of 127.0.0.0/8).
fn connect_from(
    runtime: &tokio::runtime::Runtime,
    source: IpAddr,
    addr: SocketAddr,
) -> Option<TcpStream> {
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(source, 0)).ok()?;
        let stream = tokio::time::timeout(IO_LIMIT, socket.connect(addr)).await.ok()?.ok()?;
        let stream = stream.into_std().ok()?;
        stream.set_nonblocking(false).ok()?;
        Some(stream)
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn exchange_on(mut s: TcpStream, request: &[u8]) -> Outcome {
    s.set_read_timeout(Some(IO_LIMIT)).unwrap();
    s.set_write_timeout(Some(IO_LIMIT)).unwrap();
    if s.write_all(request).is_err() {
        return Outcome::Closed;
    }
    read_status(&mut s)
}

fn read_status(s: &mut TcpStream) -> Outcome {
    let mut head = [0u8; 12];
    match s.read_exact(&mut head) {
        Ok(()) => std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|c| c.parse().ok())
            .map_or(Outcome::Closed, Outcome::Status),
        Err(_) => Outcome::Closed,
    }
}

/// Connections that send half a request head and then nothing: each must be closed by the
/// server within [`SLOW_CUT`]. Returns how many were cut in time.
fn slow_clients(addr: SocketAddr) -> usize {
    let runtime = runtime();
    let mut held: Vec<TcpStream> =
        (0..SLOW_CLIENTS).filter_map(|_| connect_from(&runtime, SLOW_SOURCE, addr)).collect();
    for s in &mut held {
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Wait: ");
    }
    let deadline = Instant::now() + SLOW_CUT;
    let mut cut = SLOW_CLIENTS - held.len();
    for mut s in held {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).unwrap();
        let mut byte = [0u8; 512];
        // Closed (0 bytes, a reset, or an error answer then close) before the deadline.
        let closed = loop {
            match s.read(&mut byte) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break false;
                }
                Err(_) => break true,
            }
        };
        cut += usize::from(closed);
    }
    cut
}

fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    std::thread::spawn(f)
}

/// [`FLOOD`] requests for `/health`, all connections opened before any answer is read.
fn flood(addr: SocketAddr) -> Vec<Outcome> {
    let per = FLOOD / FLOOD_THREADS;
    let workers: Vec<_> = (0..FLOOD_THREADS)
        .map(|_| {
            spawn(move || {
                let streams: Vec<Option<TcpStream>> = (0..per)
                    .map(|_| {
                        let mut s = TcpStream::connect_timeout(&addr, IO_LIMIT).ok()?;
                        s.set_read_timeout(Some(IO_LIMIT)).ok()?;
                        s.write_all(
                            b"GET /health HTTP/1.1\r\nHost: flood\r\nConnection: close\r\n\r\n",
                        )
                        .ok()?;
                        Some(s)
                    })
                    .collect();
                streams
                    .into_iter()
                    .map(|s| s.map_or(Outcome::Closed, |mut s| read_status(&mut s)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
}

/// Native produce-then-fetch round trips until `stop`, each one's duration.
fn probe(addr: SocketAddr, stop: Arc<AtomicBool>, seed: u64) -> Vec<Duration> {
    let mut client = RawClient::connect(addr);
    client.handshake();
    let mut took = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) || took.is_empty() {
        let started = Instant::now();
        let (base, _) = client.produce_ok("probe", 0, Bytes::from(batch_for_seed(seed + i)));
        let fetched = client.fetch("probe", 0, base, 0, 1);
        assert!(fetched.error.is_none() && !fetched.records.is_empty(), "{fetched:?}");
        took.push(started.elapsed());
        i += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    took
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

#[test]
fn abusive_http_clients_leave_the_native_listener_answering() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let (native, http) = (broker.addr(), broker.http_addr());
    RawClient::connect(native).create_topic("probe", 1);
    let stop = Arc::new(AtomicBool::new(true));
    let before = probe(native, stop.clone(), 0);
    let before = before.into_iter().chain(probe(native, stop.clone(), 1_000)).collect::<Vec<_>>();

    stop.store(false, Ordering::Relaxed);
    let prober = {
        let stop = stop.clone();
        spawn(move || probe(native, stop, 1_000_000))
    };
    let attacks = attack(http);
    stop.store(true, Ordering::Relaxed);
    let during = prober.join().unwrap();
    let answered = attacks.check();
    eprintln!("flood: {answered} of {FLOOD} answered, the rest closed at the connection limit");

    let (p50_before, p50_during) = (median(before), median(during.clone()));
    let worst = during.iter().max().copied().unwrap();
    eprintln!(
        "native round trips: {} during the abuse, median {p50_during:?} (before {p50_before:?}), worst {worst:?}",
        during.len()
    );
    assert!(worst < Duration::from_secs(2), "a native round trip took {worst:?} during the abuse");
    assert!(
        p50_during < (p50_before * 10).max(Duration::from_millis(100)),
        "median {p50_during:?} against {p50_before:?} before"
    );

    // The HTTP listener is itself again, and counted what it refused.
    let health = get(http, "/health");
    assert_eq!(health.status, 200);
    let metrics = get(http, "/metrics").body;
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("eddy_connections_refused_total{listener=\"http\"} "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(refused.unwrap_or(0) > 0, "no refused HTTP connection counted:\n{metrics}");
}

/// What the attacks came to.
struct Attacks {
    slow_cut: usize,
    huge: Vec<Outcome>,
    unknown: Vec<Outcome>,
    flooded: Vec<Outcome>,
}

/// Every attack at once, each bounded in count and time.
fn attack(http: SocketAddr) -> Attacks {
    let slow = spawn(move || slow_clients(http));
    let huge = spawn(move || {
        let big = "a".repeat(1 << 20);
        let request = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
        (0..HUGE_HEADERS).map(|_| exchange(http, request.as_bytes())).collect::<Vec<_>>()
    });
    let unknown = spawn(move || {
        let runtime = runtime();
        (0..UNKNOWN_PATHS)
            .map(|i| {
                let Some(s) = connect_from(&runtime, UNKNOWN_SOURCE, http) else {
                    return Outcome::Closed;
                };
                let request =
                    format!("GET /no/such/{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                exchange_on(s, request.as_bytes())
            })
            .collect::<Vec<_>>()
    });
    let flooded = flood(http);
    let (slow_cut, huge, unknown) =
        (slow.join().unwrap(), huge.join().unwrap(), unknown.join().unwrap());
    Attacks { slow_cut, huge, unknown, flooded }
}

impl Attacks {
    /// Checks every outcome; returns how many flood requests were answered.
    fn check(&self) -> usize {
        assert_eq!(self.slow_cut, SLOW_CLIENTS, "slow clients still connected after {SLOW_CUT:?}");
        let refused = |o: &Outcome| matches!(o, Outcome::Closed | Outcome::Status(400..=499));
        assert!(self.huge.iter().all(refused), "huge headers: {:?}", self.huge);
        let not_found = |o: &Outcome| matches!(o, Outcome::Closed | Outcome::Status(404));
        assert!(self.unknown.iter().all(not_found), "unknown paths: {:?}", self.unknown);
        assert!(self.unknown.contains(&Outcome::Status(404)), "no unknown path was answered 404");
        assert_eq!(self.flooded.len(), FLOOD);
        let answered = self.flooded.iter().filter(|o| **o == Outcome::Status(200)).count();
        let ok = |o: &Outcome| matches!(o, Outcome::Closed | Outcome::Status(200));
        assert!(self.flooded.iter().all(ok), "flood answers");
        assert!(answered > 0, "none of the {FLOOD} requests was answered");
        answered
    }
}
