//! The Kafka-protocol listener: `eddy serve` as a single-node Kafka cluster, over the same
//! topics, offsets and groups as the native protocol.
//!
//! - Requests are decoded and responses encoded by `kafka-protocol` (generated from Kafka's
//!   message schemas; the copy in `vendor/` checks wire lengths before allocating).
//! - A connection handles its requests one at a time, in order, and answers in that order, as
//!   a Kafka broker does (clients match answers to requests by order, and an idempotent
//!   producer's in-flight batches must be appended in the order they were sent).
//! - Every length is checked before anything is allocated: a frame longer than the broker's
//!   `max_frame_bytes` is refused from its size prefix; a request that does not decode, an
//!   unknown API or a version this broker does not speak closes only that connection, with a
//!   warning naming it. ApiVersions at any version is answered (with `UNSUPPORTED_VERSION` and
//!   the supported list when it is too new), so a client always learns what is spoken here.
//! - Connection limits, timeouts and shutdown are the native listener's (with a budget of its
//!   own): past `max_connections`, or `max_connections_per_ip` from one client address, a
//!   connection is closed at once; a connection whose first request (with `auth.enabled`: its
//!   authentication) is not complete within `handshake_timeout_ms` is closed; a connection
//!   silent for `idle_timeout_ms` is closed; on shutdown the request being handled is answered,
//!   then the connection closes.
//! - With TLS ([`serve_with`]; Kafka's `security.protocol=SSL`), every connection is TLS: the
//!   TLS handshake counts toward `handshake_timeout_ms`, a client whose first byte is not a TLS
//!   handshake record (a plaintext client) is closed with a log line naming it (Kafka has no
//!   frame to say why), and a client certificate's common name is the connection's principal.
//!
//! - Quotas (`crate::quotas`): a Produce's record bytes and a Fetch's answered records count
//!   against the client's byte rate (by principal and `client.id`); over it, the answer's
//!   `throttle_time_ms` says how long to wait and the connection reads nothing until then
//!   (KIP-219), so a client that ignores it is held back all the same.
//! - With `auth.enabled`, a connection authenticates (SASL: SaslHandshake, SaslAuthenticate)
//!   before any request but ApiVersions; another request before it closes the connection with
//!   a warning naming it (`sasl`).
//! - Connections, and each request by API key with its latency, are counted in the broker's
//!   [`Meters`](crate::metrics::Meters) (`api::handle`, the one place a request is dispatched).
//!
//! - Requests are checked against the broker's ACLs as the connection's principal from its
//!   address (`authz`: Kafka's codes and checks; `acls`: DescribeAcls, CreateAcls, DeleteAcls).
//!   [`KafkaHandler`] runs the same dispatch without a socket.
//!
//! Modules: `codes` (eddy errors as Kafka codes), `api` (versions, decoding, dispatch),
//! `data` (metadata, produce, fetch, offsets), `admin` (topics and configs), `classic` (one
//! classic group's state machine), `groups` (coordinator lookup, membership, listing),
//! `consumer_group` (KIP-848's protocol on eddy's coordinator, topic ids),
//! `offsets` (committed offsets), `txn` (transactions: the coordinator's requests and the
//! check of a transactional produce; transactions past their timeout are aborted by a task
//! of [`serve`]), `sasl` (authentication: SaslHandshake, SaslAuthenticate, and what may come
//! before it), `users` (SCRAM credentials through Kafka's admin APIs).

mod acls;
mod admin;
mod api;
mod authz;
mod classic;
mod codes;
mod consumer_group;
mod data;
mod groups;
mod offsets;
mod sasl;
mod txn;
mod users;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::admission::{Admission, Admitted};
use crate::broker::Broker;
use crate::security::Principal;
use crate::security::sasl::MAX_TOKEN_BYTES;
use crate::security::tls::{ServerTls, TlsListener};

pub use api::supported_versions;

/// What the listener says about itself in Metadata and FindCoordinator answers.
#[derive(Debug, Clone)]
pub struct Advertised {
    pub host: String,
    pub port: i32,
}

impl Advertised {
    /// `kafka_advertised` from the configuration if set, else the bound address.
    pub fn resolve(configured: Option<&str>, bound: SocketAddr) -> Advertised {
        let parsed = configured.and_then(|a| {
            let (host, port) = a.rsplit_once(':')?;
            Some(Advertised { host: host.to_string(), port: port.parse().ok()? })
        });
        parsed.unwrap_or(Advertised { host: bound.ip().to_string(), port: i32::from(bound.port()) })
    }
}

/// The state every Kafka connection shares.
#[derive(Debug)]
pub(crate) struct Context {
    pub broker: Broker,
    pub advertised: Advertised,
    pub cluster_id: String,
    pub groups: groups::ClassicGroups,
    pub consumer_groups: consumer_group::ConsumerGroups,
}

/// The node id eddy answers with: one broker, always node 0.
pub(crate) const NODE_ID: i32 = 0;

impl Context {
    fn new(broker: Broker, advertised: Advertised) -> Context {
        Context {
            groups: groups::ClassicGroups::new(broker.clone()),
            consumer_groups: consumer_group::ConsumerGroups::new(broker.clone()),
            cluster_id: cluster_id(&broker),
            broker,
            advertised,
        }
    }
}

/// The Kafka listener's request handling without its socket: one request frame (header and
/// body, without the size prefix) in, its encoded answer (with the size prefix) out, handled
/// as `principal` from `peer` — what a connection of the listener does for each request. For
/// tests and programs that speak Kafka's protocol to an embedded broker.
#[derive(Debug, Clone)]
pub struct KafkaHandler {
    context: Arc<Context>,
}

impl KafkaHandler {
    pub fn new(broker: Broker, advertised: Advertised) -> KafkaHandler {
        KafkaHandler { context: Arc::new(Context::new(broker, advertised)) }
    }

    /// `Ok(None)`: nothing is owed (a produce with acks 0). `Err(reason)`: a listener would
    /// close the connection, for the reason given.
    pub async fn handle(
        &self,
        frame: Bytes,
        peer: SocketAddr,
        principal: &Principal,
    ) -> Result<Option<Bytes>, String> {
        if frame.len() < 8 {
            return Err(format!("a request of {} bytes has no header", frame.len()));
        }
        // In process there is no connection to hold back: a quota's wait is only reported.
        let mut throttle = Duration::ZERO;
        api::handle(&self.context, frame, peer, principal, &mut throttle).await
    }
}

/// Serves the Kafka protocol for `broker` on `listener` until `shutdown` completes.
pub async fn serve(
    broker: Broker,
    listener: TcpListener,
    advertised: Advertised,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(broker, listener, advertised, None, shutdown).await
}

/// [`serve`], with every connection TLS when `tls` is given.
pub async fn serve_with(
    broker: Broker,
    listener: TcpListener,
    advertised: Advertised,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = broker.config().limits;
    let context = Arc::new(Context::new(broker, advertised));
    let expiry = tokio::spawn(abort_expired_transactions(context.broker.clone()));
    let admission =
        Admission::new(&limits, context.broker.config().auth.max_connections_per_principal);
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "serving the Kafka protocol");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka accept failed");
                        continue;
                    }
                };
                let meters = context.broker.meters();
                let slot = match admission.admit(peer) {
                    Ok(slot) => slot,
                    Err(refusal) => {
                        meters.connection(&meters.kafka_connections, Some(false));
                        // Kafka has no frame to say so before a request; the client backs off.
                        tracing::warn!(%peer, %refusal, "kafka connection refused");
                        continue;
                    }
                };
                meters.connection(&meters.kafka_connections, Some(true));
                let connection = Connection {
                    context: context.clone(),
                    stopped: stopped.clone(),
                    peer,
                    accepted: Instant::now(),
                    slot,
                    principal: Principal::Anonymous,
                    sasl: sasl::Sasl::default(),
                };
                let tls = tls.clone();
                connections.spawn(async move {
                    let context = connection.context.clone();
                    connection.run(stream, tls).await;
                    let meters = context.broker.meters();
                    meters.connection(&meters.kafka_connections, None);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    expiry.abort();
    let _ = stop.send(true);
    let grace = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    });
    if grace.await.is_err() {
        connections.abort_all();
    }
    Ok(())
}

/// Aborts transactions past their timeout, every `transactions.abort_check_interval_ms`,
/// until aborted (at shutdown).
async fn abort_expired_transactions(broker: Broker) {
    let every = broker.config().transactions.abort_check_interval_ms;
    let mut tick = tokio::time::interval(Duration::from_millis(u64::from(every)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if broker.is_shutting_down() {
            return;
        }
        broker.transactions().abort_expired(broker.groups(), crate::now_ms()).await;
    }
}

/// FNV-1a over 128 bits: the stable, well-spread hash behind the ids this listener derives
/// (the cluster id, topic ids).
pub(crate) fn fnv1a_128(bytes: &[u8]) -> u128 {
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for &b in bytes {
        hash ^= u128::from(b);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013B);
    }
    hash
}

/// A stable cluster id for this data directory (Kafka's are 22 characters of base64).
fn cluster_id(broker: &Broker) -> String {
    let path = broker
        .config()
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| broker.config().data_dir.clone());
    let hash = fnv1a_128(path.to_string_lossy().as_bytes());
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..22).map(|i| ALPHABET[((hash >> (i * 6)) & 63) as usize] as char).collect()
}

struct Connection {
    context: Arc<Context>,
    stopped: watch::Receiver<bool>,
    peer: SocketAddr,
    /// When it was accepted: the handshake deadline counts from here.
    accepted: Instant,
    /// Its place in the listener's budget (and its principal's, once authenticated).
    slot: Admitted,
    /// Who this connection's requests are handled as (anonymous until it authenticates).
    principal: Principal,
    /// Where it is in its SASL authentication (`sasl.rs`).
    sasl: sasl::Sasl,
}

/// Why a connection ended.
#[derive(Debug)]
enum Close {
    Eof,
    Shutdown,
    Idle,
    /// No complete first request within `handshake_timeout_ms`.
    Handshake,
    Io(std::io::Error),
    /// The peer sent something this broker will not answer (logged with the reason).
    Refused(String),
    /// A refused authentication (answered, after the failure delay).
    Authentication(String),
}

impl Connection {
    async fn run(mut self, stream: TcpStream, tls: Option<ServerTls>) {
        let _ = stream.set_nodelay(true);
        match tls {
            None => self.run_on(stream).await,
            Some(tls) => {
                if let Some(stream) = self.tls_handshake(&tls, stream).await {
                    self.run_on(stream).await;
                }
            }
        }
    }

    /// When the first request must be complete (a TLS handshake before it included).
    fn first_request_deadline(&self) -> (Instant, Close) {
        let limits = self.context.broker.config().limits;
        let (idle, handshake) = (limits.idle_timeout_ms, limits.handshake_timeout_ms);
        let (ms, timed_out) =
            if handshake < idle { (handshake, Close::Handshake) } else { (idle, Close::Idle) };
        (self.accepted + Duration::from_millis(u64::from(ms)), timed_out)
    }

    /// TLS, by the first request's deadline (a plaintext client is closed: Kafka has no frame
    /// to tell it why); on success the connection takes the principal it authenticated. `None`
    /// (logged) when it did not start, or the broker is stopping.
    async fn tls_handshake(
        &mut self,
        tls: &ServerTls,
        stream: TcpStream,
    ) -> Option<crate::security::tls::TlsStream> {
        let (deadline, _) = self.first_request_deadline();
        let start = tls.start(TlsListener::Kafka, stream, self.peer, deadline, &[]);
        let mut stopped = self.stopped.clone();
        let (mut stream, principal) = tokio::select! {
            _ = stopped.changed() => return None,
            started = start => started?,
        };
        // A client certificate's user takes a place in that user's share, as SASL does; Kafka
        // has no frame to say why, so the connection is closed.
        if principal != Principal::Anonymous
            && let Err(refusal) = self.slot.authenticated(&principal)
        {
            tracing::warn!(peer = %self.peer, %refusal, "closing kafka connection");
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
            return None;
        }
        self.principal = principal;
        Some(stream)
    }

    async fn run_on<S: AsyncRead + AsyncWrite + Unpin>(&mut self, mut stream: S) {
        let close = self.serve(&mut stream).await;
        match close {
            Close::Refused(reason) => {
                tracing::warn!(peer = %self.peer, %reason, "closing kafka connection");
            }
            Close::Io(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "kafka connection failed")
            }
            Close::Authentication(reason) => {
                tracing::debug!(peer = %self.peer, %reason, "closing kafka connection: authentication refused")
            }
            other => tracing::debug!(peer = %self.peer, reason = ?other, "kafka connection closed"),
        }
        // Bounded: over TLS this writes close_notify, which a client that stopped reading
        // would otherwise hold up.
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: &mut S) -> Close {
        let limits = self.context.broker.config().limits;
        let idle = Duration::from_millis(u64::from(limits.idle_timeout_ms));
        // The first request must be complete within the (usually shorter) handshake deadline,
        // counted from the accept (a TLS handshake took part of it).
        let (mut deadline, mut timed_out) = self.first_request_deadline();
        loop {
            let raw = self.sasl.raw_tokens();
            let frame = tokio::select! {
                _ = self.stopped.changed() => return Close::Shutdown,
                frame = tokio::time::timeout_at(deadline, read_frame(stream, limits.max_frame_bytes, raw)) => match frame {
                    Err(_) => return timed_out,
                    Ok(Ok(Some(frame))) => frame,
                    Ok(Ok(None)) => return Close::Eof,
                    Ok(Err(close)) => return close,
                },
            };
            let mut throttle = Duration::ZERO;
            let (answer, then) = match self.screen(frame).await {
                sasl::Screened::Pass(frame) => {
                    let handled = api::handle(
                        &self.context,
                        frame,
                        self.peer,
                        &self.principal,
                        &mut throttle,
                    )
                    .await;
                    match handled {
                        Ok(answer) => (answer, None),
                        Err(reason) => return Close::Refused(reason),
                    }
                }
                sasl::Screened::Answer(answer) => (answer, None),
                sasl::Screened::Last(answer, close) => (answer, Some(close)),
            };
            if let Some(answer) = answer {
                let write = tokio::time::timeout(idle, stream.write_all(&answer)).await;
                match write {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Close::Io(e),
                    Err(_) => return Close::Refused("the client stopped reading answers".into()),
                }
            }
            if let Some(close) = then {
                return close;
            }
            if *self.stopped.borrow() {
                return Close::Shutdown;
            }
            if !throttle.is_zero() {
                // Over its quota: the answer told the client to wait (KIP-219); nothing more
                // is read from it meanwhile, so a client that does not wait is slowed alike.
                tokio::select! {
                    _ = self.stopped.changed() => return Close::Shutdown,
                    _ = tokio::time::sleep(throttle) => {}
                }
            }
            // The handshake is over with the first request, and where the listener requires
            // authentication, once the connection has authenticated: a client that starts SASL
            // and never finishes is closed at the deadline.
            let authenticated = self.principal.may_run(self.context.broker.config().auth.enabled);
            if authenticated || !matches!(timed_out, Close::Handshake) {
                timed_out = Close::Idle;
                deadline = Instant::now() + idle;
            }
        }
    }
}

/// Reads one size-prefixed request (`raw`: a bare SASL token, of at most
/// `sasl::MAX_TOKEN_BYTES`). `Ok(None)` at a clean end of stream between requests.
async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    max: u32,
    raw: bool,
) -> Result<Option<Bytes>, Close> {
    let mut size = [0u8; 4];
    match stream.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Close::Io(e)),
    }
    let size = i32::from_be_bytes(size);
    // Checked before anything is allocated: a lying size costs nothing.
    if raw && !(0..=MAX_TOKEN_BYTES as i32).contains(&size) {
        return Err(Close::Refused(format!(
            "SASL token size {size} is outside 0..={MAX_TOKEN_BYTES} bytes"
        )));
    }
    if !raw && (size < 8 || size as u32 > max) {
        return Err(Close::Refused(format!(
            "request size {size} is outside 8..={max} bytes (the broker's max_frame_bytes)"
        )));
    }
    // Read into reserved, not zero-filled, memory: a produce request is mostly records.
    let mut buf = BytesMut::with_capacity(size as usize);
    while buf.len() < size as usize {
        // Never past this request: the next one's bytes stay in the socket.
        let want = size as usize - buf.len();
        let mut rest = (&mut buf).limit(want);
        match stream.read_buf(&mut rest).await {
            Ok(0) => return Err(Close::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => {}
            Err(e) => return Err(Close::Io(e)),
        }
    }
    Ok(Some(buf.freeze()))
}
