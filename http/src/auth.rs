//! HTTP Basic authentication against the broker's users, when the broker has `auth.enabled`:
//! the console, `/api/...` and `/metrics` need it; `/health` and `/ready` stay open, for the
//! probes of load balancers and orchestrators, and say nothing about the data.
//!
//! - A request without credentials, or with wrong ones, is answered 401 with a
//!   `WWW-Authenticate: Basic realm="eddy"` challenge (wrong ones after `auth.failed_delay_ms`,
//!   as on the other listeners). Until the broker is open, protected paths answer 503.
//! - The password is checked as PLAIN is (PBKDF2 against the user's SCRAM credential, in the
//!   broker's bounded PBKDF2 slots). A browser sends the header with every request, so a
//!   header once checked is remembered — as a keyed hash, never the password — until any user
//!   changes ([`Users::generation`]) or the cache fills.
//! - Every request carries its [`Caller`]: the authenticated user, or `User:ANONYMOUS` when the
//!   broker does not require authentication. The API's requests are handled as it.
//!
//! [`Users::generation`]: eddy_broker::security::users::Users::generation

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use eddy_broker::security::Principal;
use eddy_client::sasl::{self, Scram};

use crate::app::App;

/// Headers remembered at most; past it the cache starts over.
const CACHE_ENTRIES: usize = 256;

/// Who an HTTP request acts as (an extractor for handlers).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or(Caller(Principal::Anonymous)))
    }
}

/// Keyed hash of an Authorization header → (its user, the users' generation when checked).
type Checked = HashMap<Vec<u8>, (String, u64)>;

/// The middleware's state: the app and the headers already checked.
#[derive(Debug, Clone)]
pub struct Auth {
    app: App,
    checked: Arc<Mutex<Checked>>,
    key: Arc<Vec<u8>>,
}

impl Auth {
    pub fn new(app: App) -> Auth {
        // Without random numbers the cache key is still secret enough for a process-local map.
        let key = sasl::random_bytes(32).unwrap_or_else(|_| b"eddy-http-auth-cache".to_vec());
        Auth { app, checked: Arc::default(), key: Arc::new(key) }
    }
}

fn open(path: &str) -> bool {
    path == "/health" || path == "/ready"
}

fn challenge(message: &'static str) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, message).into_response();
    let value = HeaderValue::from_static("Basic realm=\"eddy\", charset=\"UTF-8\"");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    response
}

/// `Basic base64(user:password)` → (user, password).
fn basic(value: &HeaderValue) -> Option<(String, String)> {
    let encoded = value.to_str().ok()?.strip_prefix("Basic ")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Authenticates the request when the broker requires it, and tags it with its [`Caller`].
pub async fn require(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    if !auth.app.auth_required() || open(request.uri().path()) {
        request.extensions_mut().insert(Caller(Principal::Anonymous));
        return next.run(request).await;
    }
    let Some(broker) = auth.app.broker() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the broker is opening\n").into_response();
    };
    let Some(value) = request.headers().get(header::AUTHORIZATION).cloned() else {
        return challenge("authentication required (HTTP Basic, as a broker user)\n");
    };
    let users = broker.users();
    let generation = users.generation();
    let digest = Scram::Sha256.hmac(&auth.key, &[value.as_bytes()]);
    let remembered = {
        let checked = auth.checked.lock().unwrap_or_else(PoisonError::into_inner);
        checked.get(&digest).filter(|(_, g)| *g == generation).map(|(user, _)| user.clone())
    };
    let user = match remembered {
        Some(user) => user,
        None => {
            let verified = match basic(&value) {
                Some((user, password))
                    if users.check_password(&user, password.as_bytes()).await =>
                {
                    Some(user)
                }
                _ => None,
            };
            let Some(user) = verified else {
                let delay = broker.config().auth.failed_delay_ms;
                tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
                tracing::info!(path = %request.uri().path(), "failed HTTP authentication");
                return challenge("wrong user name or password\n");
            };
            let mut checked = auth.checked.lock().unwrap_or_else(PoisonError::into_inner);
            if checked.len() >= CACHE_ENTRIES {
                checked.clear();
            }
            checked.insert(digest, (user.clone(), generation));
            user
        }
    };
    request.extensions_mut().insert(Caller(Principal::user(&user)));
    next.run(request).await
}
