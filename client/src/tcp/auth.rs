//! Authentication right after the handshake: [`Credentials`] in [`ConnectionOptions`], and the
//! SASL exchange `Connection::connect` runs with them (SaslHandshake, then SaslAuthenticate with
//! SCRAM's two messages or PLAIN's one).
//!
//! With SCRAM the broker proves it knows the credential too: a server-final whose signature is
//! wrong fails the connect, so a false broker learns nothing it could replay.
//!
//! [`ConnectionOptions`]: super::ConnectionOptions

use std::fmt;

use eddy_protocol::v1::{self, request};

use super::Connection;
use crate::sasl::{Mechanism, ScramClient, plain_token};
use crate::{ClientError, expect_body};

/// Who a connection authenticates as. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub mechanism: Mechanism,
}

impl Credentials {
    /// `user` with `password`, by SCRAM-SHA-512.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self { user: user.into(), password: password.into(), mechanism: Mechanism::ScramSha512 }
    }

    /// The same, by `mechanism`.
    pub fn with_mechanism(self, mechanism: Mechanism) -> Self {
        Self { mechanism, ..self }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"********")
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

impl Connection {
    /// Runs the SASL exchange for `credentials`; any failure is `ClientError::Authentication`.
    pub(super) async fn authenticate(&self, credentials: &Credentials) -> Result<(), ClientError> {
        let failed = |reason: String, code| ClientError::Authentication {
            user: credentials.user.clone(),
            mechanism: credentials.mechanism.name(),
            reason,
            code,
        };
        let from_client = |e: ClientError| {
            let code = e.code();
            let reason = match e {
                ClientError::Broker(error) => error.to_string(),
                other => other.to_string(),
            };
            failed(reason, code)
        };
        let handshake = request::Body::SaslHandshake(v1::SaslHandshakeRequest {
            mechanism: credentials.mechanism.name().to_string(),
        });
        let answer = self.exchange(handshake).await.map_err(from_client)?;
        expect_body!(answer, SaslHandshake).map_err(from_client)?;
        let Some(scram) = credentials.mechanism.scram() else {
            let token = plain_token(&credentials.user, &credentials.password);
            let done = self.sasl_step(token).await.map_err(from_client)?;
            return match done.complete {
                true => Ok(()),
                false => Err(failed("the broker did not complete the exchange".into(), None)),
            };
        };
        let sasl_failed = |e: crate::sasl::SaslError| failed(e.to_string(), None);
        let (client, first) = ScramClient::start(scram, &credentials.user).map_err(sasl_failed)?;
        let server_first = self.sasl_step(first).await.map_err(from_client)?;
        let (finish, last) =
            client.respond(&server_first.auth_bytes, &credentials.password).map_err(sasl_failed)?;
        let server_final = self.sasl_step(last).await.map_err(from_client)?;
        if !server_final.complete {
            return Err(failed("the broker did not complete the exchange".into(), None));
        }
        finish.verify(&server_final.auth_bytes).map_err(sasl_failed)?;
        tracing::debug!(addr = %self.addr(), principal = %server_final.principal, "authenticated");
        Ok(())
    }

    async fn sasl_step(&self, token: Vec<u8>) -> Result<v1::SaslAuthenticateResponse, ClientError> {
        let body = request::Body::SaslAuthenticate(v1::SaslAuthenticateRequest {
            auth_bytes: token.into(),
        });
        expect_body!(self.exchange(body).await?, SaslAuthenticate)
    }
}
