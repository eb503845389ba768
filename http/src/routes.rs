//! The routes, and the layer every request goes through (a deadline on the response head, a
//! body limit, a count by route and status class).
//!
//! - `/health`: 200 whenever the process answers.
//! - `/ready`: 200 once the broker is open (every partition recovered) with every registered
//!   processor version running; 503 with the reasons otherwise (opening, shutting down, a
//!   processor that failed).
//! - `/metrics`: `crate::exposition`.
//! - `/api/...`: `crate::api`, the JSON the console reads.
//! - `/`, `/console/*`: the console's static files, compiled into the binary (`console/`).
//!
//! With the broker's `auth.enabled`, everything but `/health` and `/ready` needs HTTP Basic
//! credentials of a broker user (`crate::auth`).

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::{App, not_ready};

/// Every route, with the shared layer.
pub fn router(app: &App) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(crate::exposition::metrics))
        .merge(crate::api::routes())
        .route("/api/sql/push", get(crate::push::push))
        .route("/", get(|| async { asset("index.html") }))
        .route(
            "/console/{file}",
            get(|axum::extract::Path(file): axum::extract::Path<String>| async move {
                asset(&file)
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page\n") })
        .layer(DefaultBodyLimit::max(app.limits().max_body_bytes))
        .layer(middleware::from_fn_with_state(crate::auth::Auth::new(app.clone()), crate::auth::require))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app.clone())
}

/// The route class of `path`, an index into [`ROUTES`](crate::server::ROUTES).
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
