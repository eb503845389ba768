//! SASL on the Kafka listener (KIP-152, the flow librdkafka and the Java client use):
//! ApiVersions, SaslHandshake v1 naming the mechanism, then SaslAuthenticate until the
//! exchange is done. SaslHandshake v0 (clients before Kafka 1.0) is followed by the same
//! messages as bare size-prefixed tokens, without request headers.
//!
//! Every request passes [`Connection::screen`] before `api::handle`:
//! - SaslHandshake and SaslAuthenticate are answered here (they change the connection's state);
//! - during an exchange only SaslAuthenticate is taken; on a listener with `auth.enabled`, only
//!   ApiVersions and SaslHandshake come before it. Anything else closes the connection with a
//!   warning naming the request, as Kafka does (its clients cannot act on an error code there);
//! - a refused exchange is answered `SASL_AUTHENTICATION_FAILED` (58) with Kafka's words after
//!   `auth.failed_delay_ms`, then the connection closes; a mechanism that is not enabled is
//!   answered `UNSUPPORTED_SASL_MECHANISM` (33) with the enabled ones, then it closes.
//! - An address that keeps failing waits before its SaslHandshake is answered
//!   (`security::throttle`).
//! - A connection authenticates once: the answer's `session_lifetime_ms` is 0 (no KIP-368
//!   re-authentication), and a second SaslHandshake is `ILLEGAL_SASL_STATE` (34).

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::{Close, Connection, api};
use crate::security::sasl::{Exchange, Progress, Refused, unsupported};
use crate::security::{Mechanism, Principal};

/// Where a connection is in its authentication.
#[derive(Debug, Default)]
pub(super) enum Sasl {
    /// No exchange yet.
    #[default]
    Start,
    /// A SaslHandshake v1 chose the mechanism: SaslAuthenticate requests carry the messages.
    Exchanging(Exchange),
    /// A SaslHandshake v0 chose the mechanism: the next frames are bare tokens.
    RawTokens(Exchange),
    /// Authenticated (or refused, and closing).
    Over,
}

impl Sasl {
    /// Whether the next frame is a bare SASL token rather than a request.
    pub(super) fn raw_tokens(&self) -> bool {
        matches!(self, Sasl::RawTokens(_))
    }
}

/// What [`Connection::screen`] made of a frame.
pub(super) enum Screened {
    /// An ordinary request: `api::handle` answers it.
    Pass(Bytes),
    /// Answered here (`None`: nothing to send).
    Answer(Option<Bytes>),
    /// Answered here, then the connection closes.
    Last(Option<Bytes>, Close),
}

fn name_of(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|()| format!("API key {key}"), |k| format!("{k:?}"))
}

/// A token framed as SaslHandshake v0 clients read it: a size, then the bytes.
fn size_prefixed(token: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + token.len());
    out.put_i32(token.len() as i32);
    out.put_slice(token);
    out.freeze()
}

impl Connection {
    /// Takes SASL's requests, and refuses what may not come before authentication.
    pub(super) async fn screen(&mut self, frame: Bytes) -> Screened {
        if self.sasl.raw_tokens() {
            return self.raw_token(&frame).await;
        }
        // `read_frame` took at least 8 bytes: key, version, correlation id.
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let sasl = [ApiKey::SaslHandshake as i16, ApiKey::SaslAuthenticate as i16];
        if let (true, Some(api)) = (sasl.contains(&key), api::served(key, version)) {
            let started = std::time::Instant::now();
            let screened = match self.sasl_request(api, version, frame).await {
                Ok(screened) => screened,
                Err(reason) => Screened::Last(None, Close::Refused(reason)),
            };
            let refused = matches!(screened, Screened::Last(None, _));
            self.context.broker.meters().kafka_request(key, refused, started.elapsed());
            return screened;
        }
        let required = !self.principal.may_run(self.context.broker.config().auth.enabled)
            && key != ApiKey::ApiVersions as i16
            && !sasl.contains(&key);
        match &self.sasl {
            Sasl::Exchanging(_) => Screened::Last(
                None,
                Close::Refused(format!(
                    "{} request during a SASL exchange (only SaslAuthenticate is expected)",
                    name_of(key)
                )),
            ),
            _ if required => Screened::Last(
                None,
                Close::Refused(format!(
                    "{} request before authentication: this listener requires SASL \
                     (SaslHandshake, then SaslAuthenticate)",
                    name_of(key)
                )),
            ),
            _ => Screened::Pass(frame),
        }
    }

    async fn sasl_request(
        &mut self,
        api: ApiKey,
        version: i16,
        frame: Bytes,
    ) -> Result<Screened, String> {
        let mut body = frame;
        let header = RequestHeader::decode(&mut body, api.request_header_version(version))
            .map_err(|e| format!("malformed {api:?} v{version} request header: {e}"))?;
        let id = header.correlation_id;
        Ok(match api {
            ApiKey::SaslHandshake => {
                let request: SaslHandshakeRequest = api::decode(api, version, body)?;
                let wait = self.context.broker.auth_failures().wait_for(self.peer.ip());
                tokio::time::sleep(wait).await;
                self.handshake(id, version, &request)?
            }
            _ => {
                let request: SaslAuthenticateRequest = api::decode(api, version, body)?;
                self.authenticate(id, version, &request).await?
            }
        })
    }

    fn handshake(
        &mut self,
        id: i32,
        version: i16,
        request: &SaslHandshakeRequest,
    ) -> Result<Screened, String> {
        let enabled = &self.context.broker.config().auth.mechanisms;
        let mut answer = SaslHandshakeResponse::default()
            .with_mechanisms(enabled.iter().map(|m| StrBytes::from_static_str(m.name())).collect());
        let encode = |answer: &SaslHandshakeResponse| {
            api::encode(ApiKey::SaslHandshake, id, version, answer).map(Some)
        };
        if !matches!(self.sasl, Sasl::Start) {
            answer.error_code = ResponseError::IllegalSaslState.code();
            let reason = "SaslHandshake after a SASL exchange began".to_string();
            return Ok(Screened::Last(encode(&answer)?, Close::Authentication(reason)));
        }
        let asked = request.mechanism.as_str();
        let Some(chosen) = Mechanism::from_name(asked).filter(|m| enabled.contains(m)) else {
            answer.error_code = ResponseError::UnsupportedSaslMechanism.code();
            self.context.broker.auth_failures().failed(self.peer.ip());
            let reason = unsupported(asked, enabled);
            return Ok(Screened::Last(encode(&answer)?, Close::Authentication(reason)));
        };
        let exchange = Exchange::new(self.context.broker.users().clone(), chosen);
        self.sasl =
            if version == 0 { Sasl::RawTokens(exchange) } else { Sasl::Exchanging(exchange) };
        Ok(Screened::Answer(encode(&answer)?))
    }

    async fn authenticate(
        &mut self,
        id: i32,
        version: i16,
        request: &SaslAuthenticateRequest,
    ) -> Result<Screened, String> {
        let encode = |answer: &SaslAuthenticateResponse| {
            api::encode(ApiKey::SaslAuthenticate, id, version, answer).map(Some)
        };
        let Sasl::Exchanging(exchange) = &mut self.sasl else {
            let message = "SaslAuthenticate without a SaslHandshake v1 before it";
            let answer = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code())
                .with_error_message(Some(StrBytes::from_static_str(message)));
            return Ok(Screened::Last(encode(&answer)?, Close::Authentication(message.into())));
        };
        let outcome = match exchange.step(&request.auth_bytes).await {
            Ok(Progress::Challenge(bytes)) => {
                let answer = SaslAuthenticateResponse::default().with_auth_bytes(bytes.into());
                return Ok(Screened::Answer(encode(&answer)?));
            }
            Ok(Progress::Done { principal, bytes }) => self.authenticated(principal, bytes),
            Err(refused) => Err(self.refused(&refused)),
        };
        match outcome {
            Ok(bytes) => {
                let answer = SaslAuthenticateResponse::default().with_auth_bytes(bytes.into());
                Ok(Screened::Answer(encode(&answer)?))
            }
            Err(message) => {
                self.failure_delay().await;
                let answer = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_string(message.clone())));
                Ok(Screened::Last(encode(&answer)?, Close::Authentication(message)))
            }
        }
    }

    /// SaslHandshake v0's bare tokens: no header, no error codes; a refusal just closes.
    async fn raw_token(&mut self, token: &[u8]) -> Screened {
        let Sasl::RawTokens(exchange) = &mut self.sasl else { return Screened::Answer(None) };
        let outcome = match exchange.step(token).await {
            Ok(Progress::Challenge(bytes)) => return Screened::Answer(Some(size_prefixed(&bytes))),
            Ok(Progress::Done { principal, bytes }) => self.authenticated(principal, bytes),
            Err(refused) => Err(self.refused(&refused)),
        };
        match outcome {
            Ok(bytes) => Screened::Answer(Some(size_prefixed(&bytes))),
            Err(message) => {
                self.failure_delay().await;
                Screened::Last(None, Close::Authentication(message))
            }
        }
    }

    /// The exchange succeeded: the connection takes its principal's place, and acts as it.
    fn authenticated(&mut self, principal: Principal, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
        self.sasl = Sasl::Over;
        if let Err(refusal) = self.slot.authenticated(&principal) {
            tracing::info!(peer = %self.peer, %refusal, "kafka authentication refused");
            return Err(format!("{refusal} (auth.max_connections_per_principal)"));
        }
        tracing::debug!(peer = %self.peer, %principal, "kafka connection authenticated");
        self.principal = principal;
        Ok(bytes)
    }

    fn refused(&mut self, refused: &Refused) -> String {
        self.sasl = Sasl::Over;
        self.context.broker.auth_failures().failed(self.peer.ip());
        tracing::info!(
            peer = %self.peer,
            mechanism = %refused.mechanism,
            user = refused.user.as_deref().unwrap_or("-"),
            reason = %refused.reason,
            "failed authentication on the kafka listener"
        );
        refused.message()
    }

    async fn failure_delay(&self) {
        let delay = self.context.broker.config().auth.failed_delay_ms;
        tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
    }
}
