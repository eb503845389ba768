//! eddy-http: the broker's HTTP listener — Prometheus metrics, health and readiness, a web
//! console and the JSON admin API it reads. A library `eddy serve` runs beside the native and
//! Kafka listeners (on a runtime of its own); it depends on eddy-broker, never the reverse.
//!
//! Modules, bottom-up:
//! - `server`: accepting and serving connections within [`HttpLimits`] (connection count,
//!   header size and count, header read timeout, connection lifetime).
//! - `app`: the shared [`App`] state (the broker once open, counters, limits) and readiness.
//! - [`auth`]: HTTP Basic authentication against the broker's users when it requires
//!   authentication, and the [`auth::Caller`] every request is handled as.
//! - `json`: the admin API's JSON for the wire types.
//! - `exposition`: `/metrics` (gathered from the broker's state when scraped).
//! - `api`, `push`: the JSON admin API under `/api`, and push queries as server-sent events.
//! - `routes`: the router over all of them, `/health`, `/ready`, the console's static files
//!   (compiled in from `src/console/`), and the layer that bounds every request.
//!
//! Invariant: the broker is reached only through its public API — `Broker::handle_as` with the
//! native admin requests as the request's caller (the same path as the native listener), its
//! meters and topics, and `observe_processors` — so the console shows what the CLI shows.

mod api;
pub mod app;
pub mod auth;
pub mod exposition;
mod json;
mod push;
pub mod routes;
pub mod server;

use std::future::Future;

use eddy_broker::security::tls::ServerTls;

pub use app::App;
pub use server::{HttpLimits, HttpMeter};
use tokio::net::TcpListener;

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(app, listener, None, shutdown).await
}

/// [`serve`], over HTTPS when `tls` is given.
pub async fn serve_with(
    app: App,
    listener: TcpListener,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = routes::router(&app);
    let meter = app.meter().clone();
    server::serve_router(router, listener, app.limits(), meter, tls, shutdown).await
}
