//! The routes, the state they share, and the layer every request goes through (a deadline on
//! the response head, a body limit, a count by route and status class).
//!
//! - `/health`: 200 whenever the process answers.
//! - `/ready`: 200 once the broker is open (every partition recovered) with every registered
//!   processor version running; 503 with the reasons otherwise (opening, shutting down, a
//!   processor that failed).
//! - `/metrics`: `crate::exposition`.
//! - `/api/...`: `crate::api`, the JSON the console reads.
//! - `/`, `/console/*`: the console's static files, compiled into the binary (`console/`).

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eddy_broker::Broker;

use crate::server::{HttpLimits, HttpMeter};

/// Route classes requests are counted by.
pub const ROUTES: [&str; 6] = ["health", "ready", "metrics", "api", "console", "unknown"];

/// What every handler shares: the broker once it is open, the listener's counters and limits.
#[derive(Debug, Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

#[derive(Debug)]
struct AppInner {
    broker: OnceLock<Broker>,
    meter: Arc<HttpMeter>,
    limits: HttpLimits,
    started: SystemTime,
}

impl App {
    pub fn new(limits: HttpLimits) -> Self {
        let inner = AppInner {
            broker: OnceLock::new(),
            meter: Arc::default(),
            limits,
            started: SystemTime::now(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The broker is open: the API, metrics and readiness use it from now on.
    pub fn set_broker(&self, broker: Broker) {
        let _ = self.inner.broker.set(broker);
    }

    pub fn broker(&self) -> Option<&Broker> {
        self.inner.broker.get()
    }

    pub fn meter(&self) -> &Arc<HttpMeter> {
        &self.inner.meter
    }

    pub fn limits(&self) -> HttpLimits {
        self.inner.limits
    }

    /// When the listener was made (the process's start, near enough).
    pub fn started(&self) -> SystemTime {
        self.inner.started
    }

    /// Every route, with the shared layer.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/health", get(health))
            .route("/ready", get(ready))
            .route("/metrics", get(crate::exposition::metrics))
            .merge(crate::api::routes())
            .route("/", get(|| async { asset("index.html") }))
            .route(
                "/console/{file}",
                get(|axum::extract::Path(file): axum::extract::Path<String>| async move {
                    asset(&file)
                }),
            )
            .fallback(|| async { (StatusCode::NOT_FOUND, "no such page\n") })
            .layer(DefaultBodyLimit::max(self.inner.limits.max_body_bytes))
            .layer(middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self.clone())
    }
}

/// The route class of `path`, an index into [`ROUTES`].
fn route_of(path: &str) -> usize {
    match path {
        "/health" => 0,
        "/ready" => 1,
        "/metrics" => 2,
        p if p.starts_with("/api/") => 3,
        "/" => 4,
        p if p.starts_with("/console/") => 4,
        _ => 5,
    }
}

/// Answers 503 when a handler takes longer than the request timeout to produce its head, and
/// counts the request.
async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    let route = route_of(request.uri().path());
    let response = match tokio::time::timeout(app.limits().request_timeout, next.run(request)).await
    {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the request timed out\n").into_response(),
    };
    let class = (response.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    if let Some(count) = app.meter().requests.get(route).and_then(|r| r.get(class)) {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    response
}

async fn health() -> &'static str {
    "ok\n"
}

/// Why the broker is not ready (empty: ready).
pub fn not_ready(app: &App) -> Vec<String> {
    match app.broker() {
        None => vec!["the broker is opening (recovering its partitions)".into()],
        Some(broker) => broker.not_ready(),
    }
}

async fn ready(State(app): State<App>) -> Response {
    let reasons = not_ready(&app);
    if reasons.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let body = reasons.iter().map(|r| format!("not ready: {r}\n")).collect::<String>();
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

/// The console's files, compiled into the binary.
const ASSETS: [(&str, &str, &str); 3] = [
    ("index.html", "text/html; charset=utf-8", include_str!("console/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("console/app.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("console/style.css")),
];

fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, text)) => {
            let mut response = Response::new(Body::from(*text));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}
