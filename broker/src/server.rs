//! The TCP server: a thin layer that turns frames into calls on [`Broker`] and answers back.
//!
//! - The listener accepts while it has room: at most `max_connections` connections, and at
//!   most `max_connections_per_ip` from one client address (`crate::admission`); past either,
//!   a connection gets one `TOO_MANY_CONNECTIONS` frame naming the limit and is closed.
//! - A connection whose first frame (the handshake, or any request) is not complete within
//!   `handshake_timeout_ms` of its accept is closed, so connections that never speak free their
//!   place in seconds rather than after the idle timeout.
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
use std::time::Duration;

use eddy_protocol::v1::{self, Request, Response};
use eddy_protocol::{ErrorCode, FrameDecoder, FrameError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::admission::{Admission, Admitted, Refusal};
use crate::broker::Broker;
use crate::config::Limits;
use crate::data::AppendTurn;
use crate::security::Principal;
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
    let limits = broker.config().limits;
    let admission = Admission::new(&limits, broker.config().auth.max_connections_per_principal);
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    tracing::info!(addr = %listener.local_addr()?, "serving");
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
                        connections.spawn(Connection::new(broker.clone(), limits, stopped.clone(), slot, peer).run(stream));
                    }
                    Err(refusal) => {
                        meters.connection(&meters.native_connections, Some(false));
                        tracing::debug!(%peer, %refusal, "connection refused");
                        connections.spawn(refuse(stream, refusal));
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
    /// Who this connection's requests are handled as (anonymous until it authenticates).
    principal: Principal,
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
            principal: Principal::Anonymous,
            authn: authn::Authn::default(),
            in_flight,
            last_append: None,
        }
    }

    async fn run(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (mut reader, writer) = stream.into_split();
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
        let meters = self.broker.meters();
        meters.connection(&meters.native_connections, None);
    }

    async fn read_loop(
        &mut self,
        reader: &mut tokio::net::tcp::OwnedReadHalf,
        tx: &mpsc::Sender<Frame>,
        requests: &mut JoinSet<()>,
    ) -> Close {
        let decoder = FrameDecoder::new(self.limits.max_frame_bytes);
        let idle = Duration::from_millis(u64::from(self.limits.idle_timeout_ms));
        let handshake = Duration::from_millis(u64::from(self.limits.handshake_timeout_ms));
        let mut input = ReadBuffer::new();
        // Until the first frame is complete, the shorter handshake deadline applies.
        let mut greeted = false;
        let mut deadline = Instant::now() + idle.min(handshake);
        loop {
            loop {
                // Room for the rest of the next frame first, so the decoder need not allocate.
                input.reserve_frame(decoder.max_frame_bytes());
                match decoder.next_message::<Request>(input.buf()) {
                    Ok(Some(request)) => {
                        greeted = true;
                        deadline = Instant::now() + idle;
                        if let Err(close) = self.dispatch(request, tx, requests).await {
                            return close;
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
            _ => AppendTurn::default(),
        };
        let broker = self.broker.clone();
        let principal = self.principal.clone();
        let tx = tx.clone();
        // Counted per request, not per record: a clock read and three atomic adds.
        let api = crate::metrics::native_api(&body);
        let started = broker.meters().enabled().then(std::time::Instant::now);
        requests.spawn(async move {
            let outcome = broker.handle_as(&principal, body, turn).await;
            if let Some(started) = started {
                let code = outcome.as_ref().map_or_else(|e| e.code() as i32, |_| 0);
                broker.meters().native_request(api, code, started.elapsed());
            }
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

fn is_unacknowledged(body: &v1::request::Body) -> bool {
    matches!(body, v1::request::Body::Produce(p) if p.acks == v1::Acks::None as i32)
}

/// Writes response frames in the order they complete, coalescing what is ready into one write.
/// A write that makes no progress for `timeout` (a peer that stopped reading) ends the loop,
/// which drops the queue and fails the senders instead of holding their answers.
async fn write_loop(writer: OwnedWriteHalf, mut rx: mpsc::Receiver<Frame>, timeout: Duration) {
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
