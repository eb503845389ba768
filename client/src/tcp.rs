//! [`Connection`]: the [`Transport`] over one TCP socket, pipelined.
//!
//! ```text
//!  callers ──encode──► mpsc<Frame> ──► writer task ──(queued frames, vectored writes)──► socket
//!     ▲                                                                                       │
//!     └──── oneshot, found by correlation_id in `pending` ◄── reader task (FrameDecoder) ◄────┘
//! ```
//!
//! - A call takes the next correlation id (an `AtomicU64` from 1; 0 is the broker's id for a
//!   connection-level error), registers a `oneshot` in `pending`, *then* queues its encoded
//!   frame — so a response can never arrive before its waiter exists.
//! - The writer drains every frame already queued into one vectored write, so a burst of
//!   pipelined requests costs one `writev` system call, not one per request. A produce
//!   request's record batches are written from the producer's own bytes, never copied into the
//!   frame (`tcp/frame.rs`, `tcp/writer.rs`).
//! - The reader decodes `Response` frames (the length checked against
//!   [`ConnectionOptions::max_response_frame_bytes`] before anything is reserved) and completes
//!   the waiter with the same correlation id, in whatever order the broker answers.
//!
//! Invariants:
//! - Once the connection is closed (end of stream, an I/O error, a bad frame, or a
//!   connection-level error from the broker), `closed` is set under the same lock as `pending`
//!   and every waiter is failed: a call either registers before the close and is failed by it,
//!   or sees `closed` and fails at once. Nothing waits forever.
//! - A waiter leaves `pending` when its response arrives, or when its call ends any other way
//!   (timeout, cancellation: a drop guard removes it), so `pending` holds only live calls.
//! - A request larger than the broker's `max_frame_bytes` (learned in the `ApiVersions`
//!   handshake) is refused before it is sent, so it cannot get the connection closed.
//! - At most the broker's `max_in_flight` calls await answers at once; more wait for a slot.
//!   (`send`, for `ACKS_NONE` produces, takes no slot: nothing tells when the broker is done
//!   with it. The broker never refuses one: it stops reading the connection until a slot
//!   frees, so a flood of them slows the connection down rather than failing.)
//!
//! A `Connection` does not reconnect: after it closes every call fails, and the owner opens a
//! new one.
//!
//! With [`ConnectionOptions::tls`] the connection is TLS (`tcp/tls.rs`): the handshake comes
//! before the `ApiVersions` one, within a `connect_timeout` of its own; the reader and writer work
//! on the TLS stream's halves. Without it they work on the socket's own halves, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use eddy_protocol::v1::{self, request, response};
use eddy_protocol::{ErrorCode, FrameDecoder, PROTOCOL_VERSION};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

pub use self::auth::Credentials;
use self::frame::Frame;
use crate::{ClientError, Transport, expect_body};

mod auth;
mod frame;
mod tls;
mod writer;

pub use tls::TlsOptions;

/// Bytes the reader asks the socket for at least, per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// How a [`Connection`] behaves.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    /// Sent in the handshake, for the broker's logs.
    pub client_name: String,
    /// Limit on establishing the TCP connection, on the TLS handshake (with `tls`) and on the
    /// `ApiVersions` handshake, each.
    pub connect_timeout: Duration,
    /// Limit on each call, from queueing the request to its response. A fetch gets its own
    /// `max_wait_ms` on top, so a long poll is not cut short. `None`: wait as long as the
    /// connection lives.
    pub request_timeout: Option<Duration>,
    /// Largest response frame accepted; a larger length prefix closes the connection. Must be
    /// above the largest fetch response asked for (and the broker's largest batch).
    pub max_response_frame_bytes: u32,
    /// Encoded requests queued for the writer before callers wait (backpressure).
    pub write_queue_frames: usize,
    /// Speak TLS to the broker (its listener must serve TLS); `None`: plaintext.
    pub tls: Option<TlsOptions>,
    /// Authenticate as these, right after the handshake (`tcp/auth.rs`); `None`: do not.
    pub credentials: Option<Credentials>,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            client_name: format!("eddy-client/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Some(Duration::from_secs(30)),
            max_response_frame_bytes: 64 * 1024 * 1024,
            write_queue_frames: 1024,
            tls: None,
            credentials: None,
        }
    }
}

/// One pipelined connection to a broker. Share it (`Arc<Connection>` is a [`Transport`]) among
/// a producer, a consumer and an admin.
#[derive(Debug)]
pub struct Connection {
    shared: Arc<Shared>,
    frames: mpsc::Sender<Frame>,
    next_id: AtomicU64,
    /// One permit per call awaiting its answer, as many as the broker's `max_in_flight`: a
    /// caller past the limit waits here instead of being refused with `TOO_MANY_IN_FLIGHT`.
    slots: Semaphore,
    request_timeout: Option<Duration>,
    limits: v1::Limits,
    broker_version: String,
    reader: JoinHandle<()>,
}

impl Connection {
    /// Connects to `addr` (`host:port`) and performs the `ApiVersions` handshake, then
    /// authenticates with the options' credentials, if any.
    pub async fn connect(addr: &str, options: ConnectionOptions) -> Result<Self, ClientError> {
        let connect_ms = options.connect_timeout.as_millis() as u64;
        let io_error = |source| ClientError::Connection { addr: addr.to_owned(), source };
        let stream = tokio::time::timeout(options.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout { ms: connect_ms })?
            .map_err(io_error)?;
        // Requests are already batched by the writer; do not let Nagle hold them back.
        stream.set_nodelay(true).map_err(io_error)?;
        let mut conn = match &options.tls {
            None => {
                let (read, write) = stream.into_split();
                Self::start(read, write, addr.to_owned(), &options)
            }
            Some(tls) => {
                let stream = tokio::time::timeout(
                    options.connect_timeout,
                    tls::handshake(tls, addr, stream),
                )
                .await
                .map_err(|_| ClientError::Timeout { ms: connect_ms })??;
                let (read, write) = tokio::io::split(stream);
                Self::start(read, write, addr.to_owned(), &options)
            }
        };
        let handshake = request::Body::ApiVersions(v1::ApiVersionsRequest {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            client_name: options.client_name.clone(),
        });
        let body = tokio::time::timeout(options.connect_timeout, conn.exchange(handshake))
            .await
            .map_err(|_| ClientError::Timeout { ms: connect_ms })??;
        let versions = expect_body!(body, ApiVersions)?;
        if versions.version != PROTOCOL_VERSION {
            return Err(ClientError::UnsupportedVersion {
                version: versions.version,
                supported: PROTOCOL_VERSION,
            });
        }
        conn.limits = versions.limits.unwrap_or_default();
        conn.slots = match conn.limits.max_in_flight {
            0 => Semaphore::new(Semaphore::MAX_PERMITS),
            max => Semaphore::new(max as usize),
        };
        conn.broker_version = versions.broker_version;
        if let Some(credentials) = &options.credentials {
            tokio::time::timeout(options.connect_timeout, conn.authenticate(credentials))
                .await
                .map_err(|_| ClientError::Timeout { ms: connect_ms })??;
        }
        tracing::debug!(
            addr,
            broker_version = %conn.broker_version,
            max_frame_bytes = conn.limits.max_frame_bytes,
            max_in_flight = conn.limits.max_in_flight,
            "connected"
        );
        Ok(conn)
    }

    /// Spawns the reader and writer tasks over a stream's two halves.
    fn start<R, W>(read: R, write: W, addr: String, options: &ConnectionOptions) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared {
            addr,
            state: Mutex::new(State { pending: HashMap::new(), closed: None }),
        });
        let (frames, queued) = mpsc::channel(options.write_queue_frames.max(1));
        let decoder = FrameDecoder::new(options.max_response_frame_bytes);
        let reader = tokio::spawn(read_loop(read, decoder, Arc::clone(&shared)));
        tokio::spawn(writer::write_loop(queued, write, Arc::clone(&shared)));
        Self {
            shared,
            frames,
            next_id: AtomicU64::new(1),
            // The handshake goes alone; `connect` sizes this from the broker's limits.
            slots: Semaphore::new(1),
            request_timeout: options.request_timeout,
            limits: v1::Limits::default(),
            broker_version: String::new(),
            reader,
        }
    }

    /// The limits the broker announced in the handshake (0: not announced).
    pub fn limits(&self) -> &v1::Limits {
        &self.limits
    }

    /// The broker's software version, from the handshake.
    pub fn broker_version(&self) -> &str {
        &self.broker_version
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Whether the connection has closed (every call now fails).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Calls waiting for their response.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().pending.len()
    }

    /// The time limit for `body`: the request timeout, plus a fetch's own long-poll wait.
    fn timeout_for(&self, body: &request::Body) -> Option<Duration> {
        let base = self.request_timeout?;
        match body {
            request::Body::Fetch(f) => Some(base + Duration::from_millis(u64::from(f.max_wait_ms))),
            _ => Some(base),
        }
    }

    /// Encodes one request frame under a fresh correlation id, refusing it if the broker
    /// would.
    fn encode(&self, body: request::Body) -> Result<(u64, Frame), ClientError> {
        let correlation_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = v1::Request { correlation_id, body: Some(body) };
        let len = request.encoded_len();
        let max = match self.limits.max_frame_bytes {
            0 => u32::MAX,
            max => max,
        };
        if len > max as usize {
            return Err(ClientError::RequestTooLarge { bytes: len as u64, max });
        }
        Ok((correlation_id, frame::encode(request, len)))
    }

    /// Takes an in-flight slot, registers a waiter, queues the frame and waits for the answer
    /// (no time limit).
    async fn exchange(&self, body: request::Body) -> Result<response::Body, ClientError> {
        let (correlation_id, frame) = self.encode(body)?;
        // The semaphore is never closed.
        let _slot = self.slots.acquire().await.map_err(|_| self.shared.closed_error())?;
        let (tx, rx) = oneshot::channel();
        let _guard = self.shared.register(correlation_id, tx)?;
        self.frames.send(frame).await.map_err(|_| self.shared.closed_error())?;
        rx.await.map_err(|_| self.shared.closed_error())?
    }

    async fn call_inner(&self, body: request::Body) -> Result<response::Body, ClientError> {
        match self.timeout_for(&body) {
            None => self.exchange(body).await,
            Some(limit) => tokio::time::timeout(limit, self.exchange(body))
                .await
                .map_err(|_| ClientError::Timeout { ms: limit.as_millis() as u64 })?,
        }
    }

    async fn send_inner(&self, body: request::Body) -> Result<(), ClientError> {
        if let Some(e) = self.shared.lock().closed.clone() {
            return Err(e);
        }
        let limit = self.request_timeout;
        let (_, frame) = self.encode(body)?;
        let queue = self.frames.send(frame);
        let sent = match limit {
            None => queue.await,
            Some(limit) => tokio::time::timeout(limit, queue)
                .await
                .map_err(|_| ClientError::Timeout { ms: limit.as_millis() as u64 })?,
        };
        sent.map_err(|_| self.shared.closed_error())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The writer stops by itself once `frames` is dropped and its queue is written.
        self.reader.abort();
    }
}

impl Transport for Connection {
    fn call(
        &self,
        body: request::Body,
    ) -> impl Future<Output = Result<response::Body, ClientError>> + Send {
        self.call_inner(body)
    }

    fn send(&self, body: request::Body) -> impl Future<Output = Result<(), ClientError>> + Send {
        self.send_inner(body)
    }
}

type Waiter = oneshot::Sender<Result<response::Body, ClientError>>;

/// What the caller side and the reader and writer tasks share.
#[derive(Debug)]
struct Shared {
    addr: String,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    pending: HashMap<u64, Waiter>,
    /// Why the connection closed; set once, never cleared.
    closed: Option<ClientError>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock guards plain map operations that cannot leave it half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, id: u64, waiter: Waiter) -> Result<PendingGuard<'_>, ClientError> {
        let mut state = self.lock();
        if let Some(e) = &state.closed {
            return Err(e.clone());
        }
        state.pending.insert(id, waiter);
        Ok(PendingGuard { shared: self, id })
    }

    fn closed_error(&self) -> ClientError {
        self.lock()
            .closed
            .clone()
            .unwrap_or_else(|| ClientError::Closed { addr: self.addr.clone() })
    }

    /// Hands a response to its waiter.
    fn complete(&self, response: v1::Response) {
        if response.correlation_id == 0 {
            if let Some(error) = response.error {
                tracing::warn!(addr = %self.addr, %error, "broker closing the connection");
                self.close(ClientError::Broker(error));
            }
            return;
        }
        let waiter = self.lock().pending.remove(&response.correlation_id);
        match waiter {
            // The receiver may be gone (a call cancelled just now): nothing to do then.
            Some(waiter) => drop(waiter.send(into_result(response))),
            None => tracing::debug!(
                addr = %self.addr,
                correlation_id = response.correlation_id,
                "response for a call no longer waiting (timed out or cancelled)"
            ),
        }
    }

    /// Marks the connection closed and fails every waiter with `reason` (the first reason
    /// wins).
    fn close(&self, reason: ClientError) {
        let waiters: Vec<Waiter> = {
            let mut state = self.lock();
            if state.closed.is_none() {
                tracing::debug!(addr = %self.addr, %reason, "connection closed");
                state.closed = Some(reason);
            }
            state.pending.drain().map(|(_, w)| w).collect()
        };
        let reason = self.closed_error();
        for waiter in waiters {
            drop(waiter.send(Err(reason.clone())));
        }
    }
}

/// Removes a call's waiter when the call ends, however it ends.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.id);
    }
}

/// A response as the caller sees it: a request-level error, or the body.
fn into_result(response: v1::Response) -> Result<response::Body, ClientError> {
    if let Some(error) = response.error
        && error.error_code() != ErrorCode::None
    {
        return Err(ClientError::Broker(error));
    }
    response.body.ok_or(ClientError::UnexpectedResponse("a response with neither body nor error"))
}

async fn read_loop<R: AsyncRead + Unpin>(mut read: R, decoder: FrameDecoder, shared: Arc<Shared>) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let reason = loop {
        match decoder.next_message::<v1::Response>(&mut buf) {
            Ok(Some(response)) => {
                shared.complete(response);
                continue;
            }
            Ok(None) => {}
            Err(source) => break ClientError::Frame { addr: shared.addr.clone(), source },
        }
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        match read.read_buf(&mut buf).await {
            Ok(0) => break ClientError::Closed { addr: shared.addr.clone() },
            Ok(_) => {}
            // A TLS failure after the handshake (a broker refusing this client's certificate
            // does so on the first read) becomes `ClientError::Tls`.
            Err(source) => break tls::io_error(&shared.addr, source, &shared.addr),
        }
    };
    shared.close(reason);
}

#[cfg(test)]
mod tests;
