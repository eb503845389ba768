//! The HTTP listener's connections, bounded so that no HTTP client can hurt the broker's other
//! listeners (which run on their own runtime threads: `eddy serve` gives this listener a
//! runtime of its own).
//!
//! Invariants, from [`HttpLimits`]:
//! - At most `max_connections` connections at once, and at most `max_connections_per_ip` from
//!   one client address (so one source cannot take the whole budget); past either a connection
//!   is closed as soon as it is accepted (and counted as refused), so the accept queue never
//!   backs up. The budget is the broker's own `Admission`, as on the native and Kafka
//!   listeners.
//! - A connection that sends nothing is closed after `header_read_timeout` like one that sends
//!   half a request head: hyper's timer starts when the connection starts reading.
//! - A request's head (request line and headers) must arrive within `header_read_timeout` and
//!   fit in `max_header_bytes` with at most `max_headers` headers; otherwise hyper closes the
//!   connection (431 or a reset) without calling any handler.
//! - A handler that has not produced its response head within `request_timeout` is answered
//!   503 (`routes`); bodies are limited to `max_body_bytes`.
//! - A connection lives at most `max_connection_lifetime`, however busy (a push query's event
//!   stream reconnects; EventSource does so by itself).
//! - Shutdown: stop accepting, let connections finish for a short grace, then drop them.
//! - With TLS (HTTPS), the TLS handshake must complete within `header_read_timeout` too; a
//!   client whose first byte is not a TLS handshake record (plain HTTP) is answered one
//!   plaintext `400` saying the listener wants HTTPS, then closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use eddy_broker::admission::Admission;
use eddy_broker::security::tls::{ServerTls, TlsListener};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Bounds on what HTTP clients may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    /// Connections one client address may hold (at most `max_connections`).
    pub max_connections_per_ip: usize,
    pub header_read_timeout: Duration,
    /// Room for the request line and headers (hyper's read buffer; at least 8 KiB).
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_connection_lifetime: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_ip: 64,
            header_read_timeout: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 256 * 1024,
            max_connection_lifetime: Duration::from_secs(600),
        }
    }
}

/// Route classes requests are counted by (`routes` classifies each path).
pub const ROUTES: [&str; 6] = ["health", "ready", "metrics", "api", "console", "unknown"];

/// The HTTP listener's own counters (exposed beside the broker's).
#[derive(Debug, Default)]
pub struct HttpMeter {
    pub open: AtomicI64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    /// Requests by route ([`ROUTES`]) and status class (1xx..5xx).
    pub requests: [[AtomicU64; 5]; ROUTES.len()],
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes; HTTPS when `tls`
/// is given.
pub async fn serve_router(
    router: Router,
    listener: TcpListener,
    limits: HttpLimits,
    meter: Arc<HttpMeter>,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let admission = Admission::with_limits(
        u32::try_from(limits.max_connections).unwrap_or(u32::MAX),
        u32::try_from(limits.max_connections_per_ip).unwrap_or(u32::MAX),
        // Basic authentication is per request, not per connection: no per-user share here.
        u32::MAX,
    );
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "serving HTTP");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "http accept failed");
                        // Out of descriptors: let some close before trying again.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let slot = match admission.admit(peer) {
                    Ok(slot) => slot,
                    Err(refusal) => {
                        meter.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, %refusal, "http connection refused");
                        drop(stream);
                        continue;
                    }
                };
                meter.accepted.fetch_add(1, Ordering::Relaxed);
                meter.open.fetch_add(1, Ordering::Relaxed);
                let (router, meter, tls) = (router.clone(), meter.clone(), tls.clone());
                connections.spawn(async move {
                    connection(router, stream, peer, limits, tls).await;
                    meter.open.fetch_sub(1, Ordering::Relaxed);
                    drop(slot);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let grace = tokio::time::timeout(Duration::from_secs(2), async {
        while connections.join_next().await.is_some() {}
    });
    if grace.await.is_err() {
        connections.abort_all();
    }
    Ok(())
}

async fn connection(
    router: Router,
    stream: TcpStream,
    peer: SocketAddr,
    limits: HttpLimits,
    tls: Option<ServerTls>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_http(router, stream, limits).await,
        Some(tls) => {
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\
                 content-length: {}\r\n\r\n{HTTPS_REQUIRED}",
                HTTPS_REQUIRED.len()
            );
            // The handshake is bounded like a request's head.
            let deadline = tokio::time::Instant::now() + limits.header_read_timeout;
            let started = tls.start(TlsListener::Http, stream, peer, deadline, answer.as_bytes());
            if let Some((stream, _principal)) = started.await {
                serve_http(router, stream, limits).await;
            }
        }
    }
}

/// What a plain HTTP client on the HTTPS port is told (in a `400`).
const HTTPS_REQUIRED: &str = "this listener requires HTTPS: use https:// in the URL\n";

async fn serve_http<S>(router: Router, stream: S, limits: HttpLimits)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    let served = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    match tokio::time::timeout(limits.max_connection_lifetime, served).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "http connection ended"),
        Err(_) => tracing::debug!("http connection closed at its lifetime limit"),
    }
}
