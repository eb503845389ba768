//! One SASL authentication of one connection, the server's side: SCRAM-SHA-256/512 (RFC 5802,
//! RFC 7677) and PLAIN (RFC 4616), shared by the native and Kafka listeners, which carry the
//! messages ([`Exchange::step`]) and act on the outcome (set the principal, or answer the
//! refusal after the failure delay and close).
//!
//! Invariants:
//! - A refusal tells the client nothing about why: the same words ([`Refused::message`], Kafka's)
//!   for an unknown user, a wrong password, a malformed message; the reason goes to the log.
//! - An unknown user costs the same work and gets the same answers as a known one with a
//!   wrong password (`Users::decoy`), so the exchange does not reveal who exists.
//! - Every message is bounded ([`MAX_TOKEN_BYTES`]) before it is parsed; an exchange ends at its
//!   first refusal and takes no message after it ends.

use std::sync::Arc;

use eddy_client::sasl::{self, ClientFinal, ClientFirst, Mechanism, Scram, messages::ServerFirst};

use super::Principal;
use super::users::{Credential, Users};

/// Longest SASL message a client may send (SCRAM's are about 200 bytes, PLAIN's at most a
/// name, a password and two separators).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What a step of the exchange produced.
#[derive(Debug)]
pub enum Progress {
    /// Send these bytes (SCRAM's server-first); the exchange goes on.
    Challenge(Vec<u8>),
    /// The connection is now `principal`; send these bytes (SCRAM's server-final with the
    /// server's signature; nothing for PLAIN).
    Done { principal: Principal, bytes: Vec<u8> },
}

/// A refused authentication.
#[derive(Debug, Clone)]
pub struct Refused {
    pub mechanism: Mechanism,
    /// The user the client named, when it got that far (for the log).
    pub user: Option<String>,
    /// Why, for the broker's log only.
    pub reason: String,
}

impl Refused {
    /// What the client is told: Kafka's words, the same for every cause.
    pub fn message(&self) -> String {
        format!(
            "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
            self.mechanism
        )
    }
}

/// The mechanism a client asked for is not enabled: the message lists those that are.
pub fn unsupported(asked: &str, enabled: &[Mechanism]) -> String {
    let names: Vec<&str> = enabled.iter().map(|m| m.name()).collect();
    format!("Unsupported SASL mechanism {asked:?}: this listener enables {}", names.join(", "))
}

#[derive(Debug)]
enum State {
    /// Waiting for the client's first message.
    Start,
    /// SCRAM: server-first sent, waiting for client-final.
    ScramSent(Box<ScramSent>),
    /// Authenticated or refused: nothing more is taken.
    Over,
}

#[derive(Debug)]
struct ScramSent {
    user: String,
    known: bool,
    credential: Credential,
    gs2_header: String,
    nonce: String,
    /// `client-first-bare "," server-first`: the start of the signed AuthMessage.
    auth_prefix: String,
}

/// One connection's exchange, from the handshake's mechanism to its outcome.
#[derive(Debug)]
pub struct Exchange {
    users: Arc<Users>,
    mechanism: Mechanism,
    state: State,
}

impl Exchange {
    /// An exchange of `mechanism` (which the caller checked is enabled).
    pub fn new(users: Arc<Users>, mechanism: Mechanism) -> Exchange {
        Exchange { users, mechanism, state: State::Start }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    fn refuse(&mut self, user: Option<&str>, reason: impl Into<String>) -> Refused {
        self.state = State::Over;
        Refused { mechanism: self.mechanism, user: user.map(str::to_string), reason: reason.into() }
    }

    /// Takes the client's next message.
    pub async fn step(&mut self, token: &[u8]) -> Result<Progress, Refused> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(self.refuse(None, format!("a message of {} bytes", token.len())));
        }
        match (std::mem::replace(&mut self.state, State::Over), self.mechanism.scram()) {
            (State::Start, None) => self.plain(token).await,
            (State::Start, Some(scram)) => self.scram_first(scram, token),
            (State::ScramSent(sent), Some(scram)) => self.scram_final(scram, *sent, token),
            _ => Err(self.refuse(None, "a message after the exchange ended")),
        }
    }

    /// PLAIN: `[authzid] NUL authcid NUL password`.
    async fn plain(&mut self, token: &[u8]) -> Result<Progress, Refused> {
        let mut parts = token.split(|b| *b == 0);
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(
                self.refuse(None, "a PLAIN message that is not authzid NUL user NUL password")
            );
        };
        let Ok(user) = std::str::from_utf8(user) else {
            return Err(self.refuse(None, "a user name that is not UTF-8"));
        };
        if !authzid.is_empty() && authzid != user.as_bytes() {
            return Err(self.refuse(Some(user), "an authorization identity other than the user"));
        }
        if user.is_empty() || !self.users.check_password(user, password).await {
            return Err(self.refuse(Some(user), "unknown user or wrong password"));
        }
        Ok(Progress::Done { principal: Principal::user(user), bytes: Vec::new() })
    }

    fn scram_first(&mut self, scram: Scram, token: &[u8]) -> Result<Progress, Refused> {
        let Ok(text) = std::str::from_utf8(token) else {
            return Err(self.refuse(None, "client-first is not UTF-8"));
        };
        let first = match ClientFirst::parse(text) {
            Ok(first) => first,
            Err(e) => return Err(self.refuse(None, e.to_string())),
        };
        if first.authzid.as_ref().is_some_and(|a| *a != first.user) {
            return Err(
                self.refuse(Some(&first.user), "an authorization identity other than the user")
            );
        }
        if first.extensions.iter().any(|(k, v)| *k == "tokenauth" && *v == "true") {
            return Err(self.refuse(Some(&first.user), "delegation tokens are not supported"));
        }
        let server_nonce = match sasl::nonce() {
            Ok(nonce) => nonce,
            Err(e) => return Err(self.refuse(Some(&first.user), e.to_string())),
        };
        let (known, credential) = match self.users.credential(&first.user, scram) {
            Some(credential) => (true, credential),
            None => (false, self.users.decoy(&first.user, scram)),
        };
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = ServerFirst::format(&nonce, &credential.salt, credential.iterations);
        self.state = State::ScramSent(Box::new(ScramSent {
            user: first.user.clone(),
            known,
            credential,
            gs2_header: first.gs2_header.to_string(),
            nonce,
            auth_prefix: format!("{},{server_first}", first.bare),
        }));
        Ok(Progress::Challenge(server_first.into_bytes()))
    }

    fn scram_final(
        &mut self,
        scram: Scram,
        sent: ScramSent,
        token: &[u8],
    ) -> Result<Progress, Refused> {
        let user = Some(sent.user.as_str());
        let Ok(text) = std::str::from_utf8(token) else {
            return Err(self.refuse(user, "client-final is not UTF-8"));
        };
        let last = match ClientFinal::parse(text) {
            Ok(last) => last,
            Err(e) => return Err(self.refuse(user, e.to_string())),
        };
        if last.channel_binding != sent.gs2_header.as_bytes() {
            return Err(self.refuse(user, "the channel binding is not the GS2 header sent first"));
        }
        // Kafka's rule, not RFC 5802's equality: librdkafka sends its own nonce again in front
        // of the combined one (`r=<c-nonce><c-nonce><s-nonce>`), and Kafka accepts a nonce that
        // ends with the one it sent. The signed AuthMessage holds the nonce as sent, so the
        // proof still covers the server's fresh nonce.
        if !last.nonce.ends_with(&sent.nonce) {
            return Err(self.refuse(user, "the nonce does not end with the one the server sent"));
        }
        let auth_message = format!("{},{}", sent.auth_prefix, last.without_proof);
        let keys = &sent.credential.keys;
        let signature = scram.hmac(&keys.stored_key, &[auth_message.as_bytes()]);
        if last.proof.len() != signature.len() {
            return Err(self.refuse(user, "a proof of the wrong length"));
        }
        let client_key: Vec<u8> = last.proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let proven = sasl::constant_time_eq(&scram.hash(&client_key), &keys.stored_key);
        if !(proven && sent.known) {
            return Err(self.refuse(user, "unknown user or wrong password"));
        }
        let verifier = scram.hmac(&keys.server_key, &[auth_message.as_bytes()]);
        let bytes = format!("v={}", sasl::b64(&verifier)).into_bytes();
        Ok(Progress::Done { principal: Principal::user(&sent.user), bytes })
    }
}

#[cfg(test)]
mod tests;
