//! The flood: on each listener, idle connections from 127.0.0.2 that never send a byte, and
//! half-open ones from 127.0.0.3 that send the start of a handshake and nothing after it. Each
//! is a task that opens its connection and holds it until the broker closes it. One the broker
//! held until its handshake deadline is opened again after `FLOOD_REOPEN`, as a source that
//! wants to keep its connections would; one it refused at once (past a limit) is opened again
//! only with `retry_refused` (a connection storm). What the broker did with them is counted
//! per listener and kind ([`Seen`]); how many it held is the broker's own gauge (`super`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use eddy_protocol::encode_frame;
use eddy_protocol::v1::{self, request};
use kafka_protocol::messages::{ApiKey, RequestHeader, SaslHandshakeRequest};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use super::FLOOD_REOPEN;
use crate::report::Row;

const IDLE_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const HALF_OPEN_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
/// A connection the broker closes sooner than this after it was opened was refused (past a
/// limit); one it closes later was held until its handshake deadline (5 s on the HTTP
/// listener, 10 s on the others).
const REFUSED_WITHIN: Duration = Duration::from_secs(4);

/// The listeners, in the order of the addresses the workload passes around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    Native,
    Kafka,
    Http,
}

impl Listener {
    pub(crate) const ALL: [Listener; 3] = [Listener::Native, Listener::Kafka, Listener::Http];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Listener::Native => "native",
            Listener::Kafka => "kafka",
            Listener::Http => "http",
        }
    }

    /// What one measured session on this listener is.
    pub(crate) fn session(self) -> &'static str {
        match self {
            Listener::Native => "native: connect, SCRAM-SHA-512, produce",
            Listener::Kafka => "kafka: connect, SASL PLAIN, produce",
            Listener::Http => "http: connect, Basic, INSERT",
        }
    }

    /// The start of a handshake that a half-open connection sends and never finishes.
    fn half_handshake(self) -> Result<Vec<u8>> {
        Ok(match self {
            Listener::Native => {
                let mechanism = "SCRAM-SHA-256".to_string();
                let body = request::Body::SaslHandshake(v1::SaslHandshakeRequest { mechanism });
                let mut frame = BytesMut::new();
                encode_frame(&v1::Request { correlation_id: 1, body: Some(body) }, &mut frame);
                frame.to_vec()
            }
            Listener::Kafka => {
                let request = SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str("PLAIN"));
                let mut buf = BytesMut::new();
                let header = RequestHeader::default()
                    .with_request_api_key(ApiKey::SaslHandshake as i16)
                    .with_request_api_version(1)
                    .with_correlation_id(1);
                header.encode(&mut buf, SaslHandshakeRequest::header_version(1))?;
                request.encode(&mut buf, 1)?;
                let mut frame = u32::try_from(buf.len())?.to_be_bytes().to_vec();
                frame.extend_from_slice(&buf);
                frame
            }
            Listener::Http => b"POST /api/sql HTTP/1.1\r\nhost: eddy\r\n".to_vec(),
        })
    }
}

/// What the broker did with one kind of flood connection on one listener.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    started: AtomicU64,
    attempts: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    /// Connections the broker held, then closed (never completing their handshake).
    closed: AtomicU64,
    min_held_ms: AtomicU64,
    max_held_ms: AtomicU64,
}

impl Counts {
    fn new() -> Counts {
        Counts { min_held_ms: AtomicU64::new(u64::MAX), ..Counts::default() }
    }

    fn summary(&self) -> String {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let closed = load(&self.closed);
        let after = if closed == 0 {
            "none closed at its deadline".to_string()
        } else {
            let (min, max) = (load(&self.min_held_ms), load(&self.max_held_ms));
            format!("{closed} closed after {:.1}-{:.1} s", min as f64 / 1e3, max as f64 / 1e3)
        };
        format!(
            "{} attempts, {} refused at once, {}, {} failed to connect",
            load(&self.attempts),
            load(&self.refused),
            after,
            load(&self.failed)
        )
    }
}

/// One listener's flood: its idle and its half-open connections.
#[derive(Debug)]
pub(crate) struct Seen {
    idle: Arc<Counts>,
    half_open: Arc<Counts>,
}

impl Seen {
    pub(crate) fn notes(&self, row: Row) -> Row {
        row.note("idle flood (127.0.0.2)", self.idle.summary())
            .note("half-open flood (127.0.0.3)", self.half_open.summary())
    }
}

/// A running flood, stopped by [`Flood::stop`].
pub(crate) struct Flood {
    seen: Vec<Seen>,
    stop: watch::Sender<bool>,
    tasks: u64,
}

impl Flood {
    /// Starts `idle` idle and `half_open` half-open connections on each of `addrs` (native,
    /// Kafka, HTTP) on `runtime`.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        addrs: &[String; 3],
        idle: u64,
        half_open: u64,
        retry_refused: bool,
    ) -> Result<Flood> {
        let (stop, stopped) = watch::channel(false);
        let mut seen = Vec::new();
        for (listener, addr) in Listener::ALL.iter().zip(addrs) {
            let to: SocketAddr = addr.parse().with_context(|| format!("address {addr}"))?;
            let counts = Seen { idle: Arc::new(Counts::new()), half_open: Arc::new(Counts::new()) };
            let first: Arc<[u8]> = listener.half_handshake()?.into();
            for _ in 0..idle {
                let counts = counts.idle.clone();
                let flood = Held { to, from: IDLE_SOURCE, first: None, counts, retry_refused };
                runtime.spawn(flood.run(stopped.clone()));
            }
            for _ in 0..half_open {
                let counts = counts.half_open.clone();
                let first = Some(first.clone());
                let flood = Held { to, from: HALF_OPEN_SOURCE, first, counts, retry_refused };
                runtime.spawn(flood.run(stopped.clone()));
            }
            seen.push(counts);
        }
        Ok(Flood { seen, stop, tasks: 3 * (idle + half_open) })
    }

    /// Waits until every flood connection has been tried once.
    pub(crate) fn wait_started(&self, deadline: Instant) -> Result<()> {
        loop {
            let started: u64 = self
                .seen
                .iter()
                .flat_map(|s| [&s.idle, &s.half_open])
                .map(|c| c.started.load(Ordering::Relaxed))
                .sum();
            if started >= self.tasks {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {started} of {} flood connections were tried", self.tasks);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the flood (its connections close with its runtime) and says what it saw.
    pub(crate) fn stop(self) -> Vec<Seen> {
        let _ = self.stop.send(true);
        self.seen
    }
}

/// How one flood connection ended.
enum Outcome {
    /// The flood stopped first.
    Stopped,
    /// The broker closed it at once.
    Refused,
    /// The broker held it, then closed it (its handshake deadline).
    Closed,
}

/// One flood connection, opened again each time the broker closes it.
struct Held {
    to: SocketAddr,
    from: IpAddr,
    first: Option<Arc<[u8]>>,
    counts: Arc<Counts>,
    retry_refused: bool,
}

impl Held {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut first_try = true;
        while !*stopped.borrow() {
            self.counts.attempts.fetch_add(1, Ordering::Relaxed);
            let connected = self.connect().await;
            if first_try {
                self.counts.started.fetch_add(1, Ordering::Relaxed);
                first_try = false;
            }
            match connected {
                Ok(stream) => match self.hold(stream, &mut stopped).await {
                    Outcome::Stopped => return,
                    Outcome::Refused if !self.retry_refused => return,
                    _ => {}
                },
                Err(_) => {
                    self.counts.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(FLOOD_REOPEN) => {}
                _ = stopped.changed() => return,
            }
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(self.from, 0))?;
        let mut stream = socket.connect(self.to).await?;
        if let Some(first) = &self.first {
            stream.write_all(first).await?;
        }
        Ok(stream)
    }

    /// Holds `stream` until the broker closes it or the flood stops.
    async fn hold(&self, mut stream: TcpStream, stopped: &mut watch::Receiver<bool>) -> Outcome {
        let opened = Instant::now();
        let mut buf = [0u8; 512];
        let closed = async {
            // Anything the broker says (a refusal, a handshake's answer) is read and dropped.
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        };
        tokio::select! {
            _ = closed => {}
            _ = stopped.changed() => return Outcome::Stopped,
        }
        let held = opened.elapsed();
        if held < REFUSED_WITHIN {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
            return Outcome::Refused;
        }
        let ms = u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
        self.counts.closed.fetch_add(1, Ordering::Relaxed);
        self.counts.min_held_ms.fetch_min(ms, Ordering::Relaxed);
        self.counts.max_held_ms.fetch_max(ms, Ordering::Relaxed);
        Outcome::Closed
    }
}
