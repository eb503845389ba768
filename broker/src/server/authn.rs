//! A native connection's authentication: the SaslHandshake and SaslAuthenticate requests, and
//! the gate in front of every other request on a listener that requires authentication.
//!
//! - SASL requests are answered on the read loop itself, in order, not as tasks: the principal
//!   a connection acts as must be set before its next request is read.
//! - Until the connection has a principal, a listener with `auth.enabled` answers every request
//!   but ApiVersions and SASL's with `AUTHENTICATION_REQUIRED` (and keeps the connection, so
//!   the client can still authenticate).
//! - A refusal (wrong credentials, a mechanism not enabled, a request out of order, a user past
//!   its share of connections) is answered after `auth.failed_delay_ms` and then the
//!   connection closes: one guess per connection and per delay. An address that keeps failing
//!   waits before its handshakes are answered (`security::throttle`).

use std::time::Duration;

use eddy_protocol::v1::{self, Response, request, response};
use tokio::sync::mpsc;

use super::{Close, Connection, error_frame};
use crate::error::BrokerError;
use crate::security::Mechanism;
use crate::security::Principal;
use crate::security::sasl::{Exchange, Progress, unsupported};
use crate::wire::{self, Frame};

/// A connection's authentication so far.
#[derive(Debug, Default)]
pub(super) struct Authn {
    /// The exchange a SaslHandshake started, until it ends.
    exchange: Option<Exchange>,
}

impl Connection {
    /// Answers SASL's requests, and refuses (answering `AUTHENTICATION_REQUIRED`) a request
    /// that may not run yet; `Some(body)` for a request that goes on to the broker.
    pub(super) async fn screen(
        &mut self,
        correlation_id: u64,
        body: request::Body,
        tx: &mpsc::Sender<Frame>,
    ) -> Result<Option<request::Body>, Close> {
        if matches!(body, request::Body::SaslHandshake(_) | request::Body::SaslAuthenticate(_)) {
            return self.authenticate(correlation_id, body, tx).await.map(|()| None);
        }
        let Err(e) = self.gate(&body) else { return Ok(Some(body)) };
        let api = crate::metrics::native_api(&body);
        self.broker.meters().native_request(api, e.code() as i32, Duration::ZERO);
        let frame = error_frame(correlation_id, e.code(), e.to_string());
        tx.send(frame).await.map_err(|_| Close::WriterGone).map(|()| None)
    }

    /// Whether the connection may run any request ([`Principal::may_run`]).
    pub(super) fn authenticated_or_open(&self) -> bool {
        self.principal.may_run(self.broker.config().auth.enabled)
    }

    /// Refuses `body` if it may not run yet: on a listener that requires authentication, only
    /// ApiVersions runs before the connection has a principal.
    fn gate(&self, body: &request::Body) -> Result<(), BrokerError> {
        let open = self.authenticated_or_open() || matches!(body, request::Body::ApiVersions(_));
        if open {
            return Ok(());
        }
        let request = crate::metrics::NATIVE_APIS
            .get(crate::metrics::native_api(body))
            .copied()
            .unwrap_or("this request");
        Err(BrokerError::AuthenticationRequired { request })
    }

    /// Answers a SASL request; `Err` closes the connection (its answer already queued).
    async fn authenticate(
        &mut self,
        correlation_id: u64,
        body: request::Body,
        tx: &mpsc::Sender<Frame>,
    ) -> Result<(), Close> {
        let api = crate::metrics::native_api(&body);
        let started = std::time::Instant::now();
        let outcome = match body {
            request::Body::SaslHandshake(r) => {
                let wait = self.broker.auth_failures().wait_for(self.peer.ip());
                tokio::time::sleep(wait).await;
                self.handshake(&r.mechanism)
            }
            request::Body::SaslAuthenticate(r) => self.step(&r.auth_bytes).await,
            _ => Err(BrokerError::Malformed("not a SASL request")),
        };
        let code = outcome.as_ref().map_or_else(|e| e.code() as i32, |_| 0);
        match outcome {
            Ok(body) => {
                self.broker.meters().native_request(api, code, started.elapsed());
                let frame =
                    wire::encode(Response { correlation_id, error: None, body: Some(body) });
                tx.send(frame).await.map_err(|_| Close::WriterGone)
            }
            Err(e) => {
                if matches!(e, BrokerError::AuthenticationFailed(_)) {
                    self.broker.auth_failures().failed(self.peer.ip());
                }
                let delay = self.broker.config().auth.failed_delay_ms;
                tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
                self.broker.meters().native_request(api, code, started.elapsed());
                let _ = tx.send(error_frame(correlation_id, e.code(), e.to_string())).await;
                Err(Close::Authentication(e.to_string()))
            }
        }
    }

    fn handshake(&mut self, mechanism: &str) -> Result<response::Body, BrokerError> {
        if self.principal != Principal::Anonymous || self.authn.exchange.is_some() {
            return Err(BrokerError::AuthenticationFailed(format!(
                "SaslHandshake on a connection that is already {}",
                if self.authn.exchange.is_some() { "authenticating" } else { "authenticated" }
            )));
        }
        let enabled = &self.broker.config().auth.mechanisms;
        let chosen = Mechanism::from_name(mechanism).filter(|m| enabled.contains(m));
        let Some(chosen) = chosen else {
            return Err(BrokerError::AuthenticationFailed(unsupported(mechanism, enabled)));
        };
        self.authn.exchange = Some(Exchange::new(self.broker.users().clone(), chosen));
        let mechanisms = enabled.iter().map(|m| m.name().to_string()).collect();
        Ok(response::Body::SaslHandshake(v1::SaslHandshakeResponse { mechanisms }))
    }

    async fn step(&mut self, token: &[u8]) -> Result<response::Body, BrokerError> {
        let Some(exchange) = self.authn.exchange.as_mut() else {
            return Err(BrokerError::AuthenticationFailed(
                "SaslAuthenticate without a SaslHandshake before it".into(),
            ));
        };
        let answer = |auth_bytes: Vec<u8>, principal: Option<&Principal>| {
            response::Body::SaslAuthenticate(v1::SaslAuthenticateResponse {
                auth_bytes: auth_bytes.into(),
                complete: principal.is_some(),
                principal: principal.map(ToString::to_string).unwrap_or_default(),
            })
        };
        match exchange.step(token).await {
            Ok(Progress::Challenge(bytes)) => Ok(answer(bytes, None)),
            Ok(Progress::Done { principal, bytes }) => {
                self.authn.exchange = None;
                self.slot.authenticated(&principal).map_err(|_| {
                    let max = self.broker.config().auth.max_connections_per_principal;
                    BrokerError::PrincipalConnections { principal: principal.to_string(), max }
                })?;
                tracing::debug!(peer = %self.peer, %principal, "authenticated");
                let answered = answer(bytes, Some(&principal));
                self.principal = principal;
                Ok(answered)
            }
            Err(refused) => {
                self.authn.exchange = None;
                tracing::info!(
                    peer = %self.peer,
                    mechanism = %refused.mechanism,
                    user = refused.user.as_deref().unwrap_or("-"),
                    reason = %refused.reason,
                    "failed authentication"
                );
                Err(BrokerError::AuthenticationFailed(refused.message()))
            }
        }
    }
}
