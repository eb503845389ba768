//! The TCP server: a thin layer that turns frames into calls on [`Broker`] and answers back.
//!
//! - The listener accepts while it has room: at most `max_connections` connections, and at
//!   most `max_connections_per_ip` from one client address (`crate::admission`); past either,
//!   a connection gets one `TOO_MANY_CONNECTIONS` frame naming the limit and is closed.
//! - A connection whose first frame (the handshake, or any request) is not complete within
//!   `handshake_timeout_ms` of its accept is closed, so connections that never speak free their
//!   place in seconds rather than after the idle timeout. With `auth.enabled` the handshake
//!   includes authentication: a connection not authenticated by that deadline is closed too.
//! - With TLS ([`serve_with`]), every connection is TLS: the TLS handshake comes first and
//!   counts toward `handshake_timeout_ms`; a client whose first byte is not a TLS handshake
//!   record (a plaintext client) gets one plaintext `TLS_REQUIRED` frame and is closed; a
//!   connection past the connection limits is closed without a frame (a TLS client could not
//!   read one). A client certificate's common name is the connection's principal. Plaintext
//!   connections are read and written through the socket's own halves, as without TLS.
//! - Each connection reads frames into one buffer and hands each request to its own task, so
//!   requests pipeline. A request's bytes (a produce's batches) are slices of that buffer,
//!   appended as they are; the buffer's memory is used again once they are done
//!   (`server/read_buffer.rs`). At most `max_in_flight` run at once; more are answered
//!   `TOO_MANY_IN_FLIGHT`, except `ACKS_NONE` produces, which cannot be answered and so wait
//!   for a slot. A writer task sends responses in completion order, coalescing whatever is
//!   ready into one write.
//! - Order: a connection's produce requests *append* in the order they arrived (each takes an
//!   [`AppendTurn`] after the previous one's; checksums before and fsync waits after still
//!   overlap), so an idempotent producer's pipelined batches of a partition reach the log in
//!   sequence order. Nothing else is ordered: answers go out as requests complete, and other
//!   requests run concurrently with produces and with each other.
//! - A frame longer than `max_frame_bytes` is refused from its length prefix alone, before any
//!   allocation; a frame that does not decode is answered `MALFORMED_REQUEST`. Either closes
//!   only that connection. A connection with no complete frame and nothing in flight for
//!   `idle_timeout_ms` is closed, so a silent client or half a frame holds nothing up.
//! - Quotas (`crate::quotas`): a produce's batches and a fetch's records count against the
//!   client's byte rate; over it, the answer carries `throttle_time_ms` and the connection
//!   reads no further request until that wait is over.
//! - Authentication (`server/authn.rs`): with `auth.enabled`, a connection's requests but
//!   ApiVersions are refused `AUTHENTICATION_REQUIRED` until a SASL exchange gives it a
//!   principal; SASL requests are answered in order on the read loop; a refused one closes the
//!   connection after `auth.failed_delay_ms`.
//! - Every connection and request is counted in the broker's [`Meters`](crate::metrics::Meters)
//!   (by request kind and error code, with its latency) when they are enabled.
//! - Shutdown: stop accepting, stop reading, let in-flight requests finish and their answers go
//!   out, then return; the caller flushes the broker.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use eddy_protocol::v1::{self, Request, Response};
use eddy_protocol::{ErrorCode, FrameDecoder, FrameError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::admission::{Admission, Admitted, Refusal};
use crate::broker::Broker;
use crate::config::Limits;
use crate::data::AppendTurn;
use crate::quotas::Direction;
use crate::security::Principal;
use crate::security::tls::{ServerTls, TlsListener, TlsStream};
use crate::wire::{self, Frame};

mod authn;
mod read_buffer;

use read_buffer::{READ_CHUNK, ReadBuffer};

/// How long a stopping broker waits for a connection's in-flight answers to go out.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `broker` on `listener` until `shutdown` completes, then drains every connection.
pub async fn serve(
    broker: Broker,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(broker, listener, None, shutdown).await
}

/// [`serve`], with every connection TLS when `tls` is given.
pub async fn serve_with(
    broker: Broker,
    listener: TcpListener,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = broker.config().limits;
    let admission = Admission::new(&limits, broker.config().auth.max_connections_per_principal);
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "serving");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: keep serving the others.
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let meters = broker.meters();
                match admission.admit(peer) {
                    Ok(slot) => {
                        meters.connection(&meters.native_connections, Some(true));
                        let connection = Connection::new(broker.clone(), limits, stopped.clone(), slot, peer);
                        connections.spawn(connection.run(stream, tls.clone()));
                    }
                    Err(refusal) => {
                        meters.connection(&meters.native_connections, Some(false));
                        tracing::debug!(%peer, %refusal, "connection refused");
                        if tls.is_none() {
                            connections.spawn(refuse(stream, refusal));
                        }
                    }
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    tracing::info!(connections = connections.len(), "shutting down: finishing in-flight requests");
    broker.begin_shutdown();
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let frame = error_frame(0, ErrorCode::TooManyConnections, refusal.to_string());
    let _ = tokio::time::timeout(Duration::from_secs(1), write_frame(&mut stream, &frame)).await;
}

async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
) -> std::io::Result<()> {
    match frame {
        Frame::Whole(bytes) => writer.write_all(bytes).await,
        Frame::Chunks(chunks) => {
            for chunk in chunks {
                writer.write_all(chunk).await?;
            }
            Ok(())
        }
    }
}

/// The one frame a plaintext client on a TLS port gets, encoded once.
fn tls_required_frame() -> &'static [u8] {
    static FRAME: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FRAME.get_or_init(|| {
        let message = "this listener requires TLS: connect with TLS (eddy --tls-ca FILE)".into();
        match error_frame(0, ErrorCode::TlsRequired, message) {
            Frame::Whole(bytes) => bytes.to_vec(),
            Frame::Chunks(chunks) => chunks.concat(),
        }
    })
}

fn error_frame(correlation_id: u64, code: ErrorCode, message: String) -> Frame {
    let response =
        Response { correlation_id, error: Some(v1::Error::new(code, message)), body: None };
    wire::encode(response)
}

struct Connection {
    broker: Broker,
    limits: Limits,
    stopped: watch::Receiver<bool>,
    /// Its place in the listener's budget (and its principal's, once authenticated).
    slot: Admitted,
    peer: SocketAddr,
    /// When it was accepted: the handshake deadline counts from here.
    accepted: Instant,
    /// Who this connection's requests are handled as (anonymous until it authenticates).
    principal: Principal,
    /// The client's name from its handshake (the quota entity's client id).
    client_name: Arc<str>,
    /// `now_ms` until which no request is read (over a quota), 0 when not throttled.
    muted_until: Arc<AtomicI64>,
    /// Its SASL exchange, while one runs (`server/authn.rs`).
    authn: authn::Authn,
    in_flight: Arc<Semaphore>,
    /// Passed on once the connection's latest produce has appended.
    last_append: Option<oneshot::Receiver<()>>,
}

/// Why a connection's read loop ended.
#[derive(Debug)]
enum Close {
    Eof,
    Shutdown,
    Idle,
    /// No complete first frame within `handshake_timeout_ms`.
    Handshake,
    ReadError(std::io::Error),
    BadFrame(FrameError),
    WriterGone,
    /// A refused authentication (answered, after the failure delay).
    Authentication(String),
}

impl Connection {
    fn new(
        broker: Broker,
        limits: Limits,
        stopped: watch::Receiver<bool>,
        slot: Admitted,
        peer: SocketAddr,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(limits.max_in_flight as usize));
        Self {
            broker,
            limits,
            stopped,
            slot,
            peer,
            accepted: Instant::now(),
            principal: Principal::Anonymous,
            client_name: Arc::from(""),
            muted_until: Arc::new(AtomicI64::new(0)),
            authn: authn::Authn::default(),
            in_flight,
            last_append: None,
        }
    }

    async fn run(mut self, stream: TcpStream, tls: Option<ServerTls>) {
        let _ = stream.set_nodelay(true);
        match tls {
            None => {
                let (reader, writer) = stream.into_split();
                self.serve(reader, writer).await;
            }
            Some(tls) => {
                if let Some(stream) = self.tls_handshake(&tls, stream).await {
                    let (reader, writer) = tokio::io::split(stream);
                    self.serve(reader, writer).await;
                }
            }
        }
        let meters = self.broker.meters();
        meters.connection(&meters.native_connections, None);
    }

    /// When the first frame must be complete (a TLS handshake before it included).
    fn first_frame_deadline(&self) -> Instant {
        let idle = u64::from(self.limits.idle_timeout_ms);
        let handshake = u64::from(self.limits.handshake_timeout_ms);
        self.accepted + Duration::from_millis(idle.min(handshake))
    }

    /// TLS, by the first-frame deadline (a plaintext client is told `TLS_REQUIRED`); on
    /// success the connection takes the principal it authenticated. `None` (logged) when it did
    /// not start, or the broker is stopping.
    async fn tls_handshake(&mut self, tls: &ServerTls, stream: TcpStream) -> Option<TlsStream> {
        let deadline = self.first_frame_deadline();
        let answer = tls_required_frame();
        let start = tls.start(TlsListener::Native, stream, self.peer, deadline, answer);
        let mut stopped = self.stopped.clone();
        let (mut stream, principal) = tokio::select! {
            _ = stopped.changed() => return None,
            started = start => started?,
        };
        // A client certificate's user takes a place in that user's share, as SASL does.
        if principal != Principal::Anonymous
            && let Err(refusal) = self.slot.authenticated(&principal)
        {
            tracing::info!(peer = %self.peer, %refusal, "refusing a connection");
            let frame = error_frame(0, ErrorCode::TooManyConnections, refusal.to_string());
            let told = async {
                write_frame(&mut stream, &frame).await?;
                stream.shutdown().await
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), told).await;
            return None;
        }
        self.principal = principal;
        Some(stream)
    }

    /// Serves requests read from `reader`, answering through `writer`, until the connection
    /// ends; then finishes what is in flight.
    async fn serve<R, W>(&mut self, mut reader: R, writer: W)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Frame>(self.limits.max_in_flight as usize + 8);
        let write_timeout = Duration::from_millis(u64::from(self.limits.idle_timeout_ms));
        let mut writer = tokio::spawn(write_loop(writer, rx, write_timeout));
        let mut requests = JoinSet::new();
        let close = self.read_loop(&mut reader, &tx, &mut requests).await;
        match &close {
            Close::BadFrame(e) => {
                let code = match e {
                    FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
                    FrameError::Decode(_) => ErrorCode::MalformedRequest,
                };
                let _ = tx.send(error_frame(0, code, e.to_string())).await;
                tracing::debug!(peer = %self.peer, error = %e, "closing connection after a bad frame");
            }
            Close::ReadError(e) => tracing::debug!(peer = %self.peer, error = %e, "read failed"),
            Close::Authentication(reason) => {
                tracing::debug!(peer = %self.peer, %reason, "closing connection: authentication refused")
            }
            other => tracing::debug!(peer = %self.peer, reason = ?other, "connection closed"),
        }
        // Requests already taken are finished and answered before the connection goes, within a
        // grace period when the broker is stopping: a client that stopped reading must not hold
        // the shutdown (its writer is stuck on a full socket) or keep answers in memory.
        let grace = match close {
            Close::Shutdown => SHUTDOWN_GRACE,
            _ => Duration::from_millis(u64::from(self.limits.idle_timeout_ms)),
        };
        let drained = tokio::time::timeout(grace, async {
            while requests.join_next().await.is_some() {}
            drop(tx);
            let _ = (&mut writer).await;
        })
        .await;
        if drained.is_err() {
            tracing::debug!(peer = %self.peer, "abandoning a connection that does not read its answers");
            requests.abort_all();
            writer.abort();
        }
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        tx: &mpsc::Sender<Frame>,
        requests: &mut JoinSet<()>,
    ) -> Close {
        let decoder = FrameDecoder::new(self.limits.max_frame_bytes);
        let idle = Duration::from_millis(u64::from(self.limits.idle_timeout_ms));
        let handshake = Duration::from_millis(u64::from(self.limits.handshake_timeout_ms));
        let mut input = ReadBuffer::new();
        // Until the first frame is complete, the shorter handshake deadline applies (from the
        // accept: a TLS handshake took part of it).
        let mut greeted = false;
        let mut deadline = self.first_frame_deadline();
        loop {
            loop {
                if let Err(close) = self.wait_out_throttle().await {
                    return close;
                }
                // Room for the rest of the next frame first, so the decoder need not allocate.
                input.reserve_frame(decoder.max_frame_bytes());
                match decoder.next_message::<Request>(input.buf()) {
                    Ok(Some(request)) => {
                        if let Err(close) = self.dispatch(request, tx, requests).await {
                            return close;
                        }
                        // The handshake is over with the first request, and where the listener
                        // requires authentication, once the connection has authenticated: a
                        // client that starts SASL and never finishes is closed at the deadline.
                        greeted = greeted || self.authenticated_or_open();
                        if greeted {
                            deadline = Instant::now() + idle;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Close::BadFrame(e),
                }
            }
            let buf = input.buf();
            if buf.capacity() - buf.len() < 4096 {
                input.reserve(READ_CHUNK);
            }
            tokio::select! {
                _ = self.stopped.changed() => return Close::Shutdown,
                read = reader.read_buf(input.buf()) => match read {
                    Ok(0) => return Close::Eof,
                    Ok(_) => {}
                    Err(e) => return Close::ReadError(e),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if !greeted {
                        return if handshake < idle { Close::Handshake } else { Close::Idle };
                    }
                    let busy = self.in_flight.available_permits() < self.limits.max_in_flight as usize;
                    if !busy {
                        return Close::Idle;
                    }
                    deadline = Instant::now() + idle;
                }
                Some(_) = requests.join_next(), if !requests.is_empty() => {}
            }
        }
    }

    /// Over a quota: waits until the throttle ends before the next request is taken.
    async fn wait_out_throttle(&mut self) -> Result<(), Close> {
        let until = self.muted_until.load(Ordering::Acquire);
        let wait = until - crate::now_ms();
        if until == 0 || wait <= 0 {
            return Ok(());
        }
        tokio::select! {
            _ = self.stopped.changed() => Err(Close::Shutdown),
            _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => Ok(()),
        }
    }

    async fn dispatch(
        &mut self,
        request: Request,
        tx: &mpsc::Sender<Frame>,
        requests: &mut JoinSet<()>,
    ) -> Result<(), Close> {
        let correlation_id = request.correlation_id;
        let Some(body) = request.body else {
            let frame = error_frame(
                correlation_id,
                ErrorCode::MalformedRequest,
                "request has no body".into(),
            );
            return tx.send(frame).await.map_err(|_| Close::WriterGone);
        };
        let Some(body) = self.screen(correlation_id, body, tx).await? else { return Ok(()) };
        let permit = match self.in_flight.clone().try_acquire_owned() {
            Ok(permit) => permit,
            // A produce with ACKS_NONE can be told nothing, so it waits for a slot instead:
            // the connection stops reading meanwhile, which is backpressure on that producer.
            Err(_) if is_unacknowledged(&body) => {
                match self.in_flight.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return Err(Close::WriterGone),
                }
            }
            Err(_) => {
                let api = crate::metrics::native_api(&body);
                let code = ErrorCode::TooManyInFlight as i32;
                self.broker.meters().native_request(api, code, Duration::ZERO);
                let message = format!(
                    "more than {} requests in flight on this connection",
                    self.limits.max_in_flight
                );
                let frame = error_frame(correlation_id, ErrorCode::TooManyInFlight, message);
                return tx.send(frame).await.map_err(|_| Close::WriterGone);
            }
        };
        let turn = match &body {
            v1::request::Body::Produce(_) => AppendTurn::next(&mut self.last_append),
            v1::request::Body::ApiVersions(a) => {
                self.client_name = Arc::from(a.client_name.as_str());
                AppendTurn::default()
            }
            _ => AppendTurn::default(),
        };
        let quota = self.broker.quotas().enabled().then(|| Quota {
            principal: self.principal.clone(),
            client_name: self.client_name.clone(),
            produced: produced_bytes(&body),
            muted_until: self.muted_until.clone(),
        });
        let broker = self.broker.clone();
        let (principal, host) = (self.principal.clone(), self.peer.ip());
        let tx = tx.clone();
        // Counted per request, not per record: a clock read and three atomic adds.
        let api = crate::metrics::native_api(&body);
        let started = broker.meters().enabled().then(std::time::Instant::now);
        requests.spawn(async move {
            let outcome = broker.handle_from(&principal, Some(host), body, turn).await;
            if let Some(started) = started {
                let code = outcome.as_ref().map_or_else(|e| e.code() as i32, |_| 0);
                broker.meters().native_request(api, code, started.elapsed());
            }
            let outcome = match (quota, outcome) {
                (Some(quota), Ok(body)) => Ok(quota.apply(&broker, body)),
                (_, outcome) => outcome,
            };
            let response = match outcome {
                Ok(Some(body)) => Response { correlation_id, error: None, body: Some(body) },
                Ok(None) => return,
                Err(e) => Response { correlation_id, error: Some(e.to_wire()), body: None },
            };
            let _ = tx.send(wire::encode(response)).await;
            drop(permit);
        });
        Ok(())
    }
}

/// A request's part in its client's quota, counted once its answer is known.
struct Quota {
    principal: Principal,
    client_name: Arc<str>,
    /// Bytes of record batches a produce carries (0 for other requests).
    produced: u64,
    muted_until: Arc<AtomicI64>,
}

impl Quota {
    /// Counts the request's bytes (a produce's batches, a fetch's records, an unanswered
    /// `ACKS_NONE` produce's too); over the quota, the answer says how long to wait and the
    /// connection reads nothing until then.
    fn apply(
        self,
        broker: &Broker,
        mut body: Option<v1::response::Body>,
    ) -> Option<v1::response::Body> {
        use v1::response::Body;
        let mut unanswered = 0;
        let (direction, bytes, throttle) = match &mut body {
            Some(Body::Produce(p)) => (Direction::Produce, self.produced, &mut p.throttle_time_ms),
            Some(Body::Fetch(f)) => {
                let records = f.topics.iter().flat_map(|t| &t.partitions);
                let bytes = records.map(|p| p.records.len() as u64).sum();
                (Direction::Fetch, bytes, &mut f.throttle_time_ms)
            }
            None => (Direction::Produce, self.produced, &mut unanswered),
            _ => return body,
        };
        let now = crate::now_ms();
        let quotas = broker.quotas();
        let wait =
            quotas.record(&self.principal, &self.client_name, direction, bytes, now.max(0) as u64);
        if !wait.is_zero() {
            let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
            *throttle = wait_ms;
            self.muted_until.fetch_max(now + i64::from(wait_ms), Ordering::AcqRel);
        }
        body
    }
}

/// Bytes of record batches in a produce request.
fn produced_bytes(body: &v1::request::Body) -> u64 {
    match body {
        v1::request::Body::Produce(p) => {
            p.topics.iter().flat_map(|t| &t.partitions).map(|p| p.batch.len() as u64).sum()
        }
        _ => 0,
    }
}

fn is_unacknowledged(body: &v1::request::Body) -> bool {
    matches!(body, v1::request::Body::Produce(p) if p.acks == v1::Acks::None as i32)
}

/// Writes response frames in the order they complete, coalescing what is ready into one write.
/// A write that makes no progress for `timeout` (a peer that stopped reading) ends the loop,
/// which drops the queue and fails the senders instead of holding their answers.
async fn write_loop<W: AsyncWrite + Unpin>(
    writer: W,
    mut rx: mpsc::Receiver<Frame>,
    timeout: Duration,
) {
    // Chunks of 64 KiB and more (fetched records) bypass the buffer and go to the socket as they
    // are; small ones are gathered into one write.
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(frame) = rx.recv().await {
        let written = tokio::time::timeout(timeout, async {
            write_frame(&mut writer, &frame).await?;
            while let Ok(frame) = rx.try_recv() {
                write_frame(&mut writer, &frame).await?;
            }
            writer.flush().await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
