//! SASL for eddy's connections: the mechanisms (SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, as Kafka
//! names them), SCRAM's key derivation (RFC 5802, RFC 7677), its message syntax
//! ([`messages`]) and the client's side of an exchange ([`ScramClient`], [`plain_token`]).
//!
//! The broker's side (eddy-broker's `security` module) derives and parses with this same code,
//! so the two cannot disagree on a byte. Invariants:
//! - A SCRAM credential is the salt, the iteration count, `StoredKey` and `ServerKey`; the
//!   password and the salted password are never kept by the broker ([`ScramKeys`]).
//! - Passwords are used as their UTF-8 bytes, without SASLprep, as Kafka and librdkafka do, so
//!   a password set through either works through the other.
//! - Nonces and salts come from the operating system's random number generator.

pub mod messages;

use std::fmt;

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

pub use messages::{ClientFinal, ClientFirst};

/// Fewest PBKDF2 iterations a SCRAM credential may have (RFC 7677's minimum, Kafka's default).
pub const MIN_ITERATIONS: u32 = 4096;
/// Most PBKDF2 iterations a SCRAM credential may have (Kafka's limit): a credential costs the
/// broker this many HMACs each time a PLAIN client presents its password.
pub const MAX_ITERATIONS: u32 = 16_384;
/// Bytes of random salt in a credential eddy creates.
pub const SALT_BYTES: usize = 32;

/// A SASL mechanism eddy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    ScramSha256,
    ScramSha512,
    Plain,
}

impl Mechanism {
    /// Every mechanism, in the order brokers list them.
    pub const ALL: [Mechanism; 3] =
        [Mechanism::ScramSha256, Mechanism::ScramSha512, Mechanism::Plain];

    /// The name on the wire (`SCRAM-SHA-256`, `SCRAM-SHA-512`, `PLAIN`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// The mechanism named exactly `name` (the wire's names are upper case).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM hash of a SCRAM mechanism.
    pub fn scram(self) -> Option<Scram> {
        match self {
            Mechanism::ScramSha256 => Some(Scram::Sha256),
            Mechanism::ScramSha512 => Some(Scram::Sha512),
            Mechanism::Plain => None,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a mechanism name in any case (`scram-sha-512`), for command lines and files.
impl std::str::FromStr for Mechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mechanism::from_name(&s.trim().to_ascii_uppercase()).ok_or_else(|| {
            let names: Vec<&str> = Mechanism::ALL.iter().map(|m| m.name()).collect();
            format!("unknown SASL mechanism {s:?} (one of {})", names.join(", "))
        })
    }
}

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scram {
    Sha256,
    Sha512,
}

/// A SCRAM credential's keys, derived from the salted password (RFC 5802, section 3).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// `H(HMAC(SaltedPassword, "Client Key"))`: checks a client's proof.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`: signs the server's final message.
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScramKeys { .. }")
    }
}

impl Scram {
    /// The SASL mechanism of this hash.
    pub fn mechanism(self) -> Mechanism {
        match self {
            Scram::Sha256 => Mechanism::ScramSha256,
            Scram::Sha512 => Mechanism::ScramSha512,
        }
    }

    /// Bytes of the hash's output (and of every key).
    pub fn output_len(self) -> usize {
        match self {
            Scram::Sha256 => 32,
            Scram::Sha512 => 64,
        }
    }

    /// `H(data)`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Scram::Sha256 => Sha256::digest(data).to_vec(),
            Scram::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `HMAC(key, parts...)`: the parts are concatenated.
    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC takes a key of any length: the error cannot happen.
            let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else { return Vec::new() };
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Scram::Sha256 => run::<hmac::Hmac<Sha256>>(key, parts),
            Scram::Sha512 => run::<hmac::Hmac<Sha512>>(key, parts),
        }
    }

    /// `Hi(password, salt, iterations)`: PBKDF2 with HMAC over this hash, one block. Costs
    /// `iterations` HMACs: run it off an async worker.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.output_len()];
        match self {
            Scram::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
            Scram::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        }
        out
    }

    /// `ClientKey`, `StoredKey` and `ServerKey` of a salted password.
    pub fn keys(self, salted_password: &[u8]) -> ScramKeys {
        let client_key = self.hmac(salted_password, &[b"Client Key"]);
        ScramKeys {
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted_password, &[b"Server Key"]),
        }
    }
}

/// `a == b` in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `n` bytes from the operating system's random number generator.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, SaslError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| SaslError::Random(e.to_string()))?;
    Ok(bytes)
}

/// A fresh nonce: 24 random bytes in base64 (printable, never a comma).
pub fn nonce() -> Result<String, SaslError> {
    Ok(base64::engine::general_purpose::STANDARD.encode(random_bytes(24)?))
}

/// Base64 as SCRAM writes it (standard alphabet, padded).
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes SCRAM's base64.
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Why an exchange failed on the client's side, or why a SCRAM message does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("the server refused the exchange: {0}")]
    Server(String),
    #[error("the server's nonce does not extend the client's")]
    NonceMismatch,
    #[error("the server's signature is wrong: it does not know the password (a false server?)")]
    BadServerSignature,
    #[error("the server asks for {0} iterations, outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations(u32),
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
}

/// PLAIN's one message (RFC 4616): no authorization identity, the user, the password.
pub fn plain_token(user: &str, password: &str) -> Vec<u8> {
    let mut token = Vec::with_capacity(user.len() + password.len() + 2);
    token.push(0);
    token.extend_from_slice(user.as_bytes());
    token.push(0);
    token.extend_from_slice(password.as_bytes());
    token
}

/// The client's side of one SCRAM exchange: `client-first` from [`ScramClient::start`], the
/// answer to `server-first` from [`ScramClient::respond`], and the check of `server-final`
/// (the server proves it knows the credential too).
#[derive(Debug)]
pub struct ScramClient {
    scram: Scram,
    nonce: String,
    client_first_bare: String,
}

/// What the client expects of `server-final`.
#[derive(Debug)]
pub struct ScramFinish {
    server_signature: Vec<u8>,
}

impl ScramClient {
    /// Starts an exchange as `user`; returns the client and `client-first`.
    pub fn start(scram: Scram, user: &str) -> Result<(ScramClient, Vec<u8>), SaslError> {
        Ok(Self::start_with_nonce(scram, user, nonce()?))
    }

    fn start_with_nonce(scram: Scram, user: &str, nonce: String) -> (ScramClient, Vec<u8>) {
        let client_first_bare = format!("n={},r={nonce}", messages::escape_name(user));
        let first = format!("{}{client_first_bare}", messages::GS2_HEADER).into_bytes();
        (ScramClient { scram, nonce, client_first_bare }, first)
    }

    /// `client-final` for `server_first`, proving knowledge of `password`. Runs PBKDF2 with the
    /// server's iteration count (bounded by [`MAX_ITERATIONS`]).
    pub fn respond(
        self,
        server_first: &[u8],
        password: &str,
    ) -> Result<(ScramFinish, Vec<u8>), SaslError> {
        let server_first =
            std::str::from_utf8(server_first).map_err(|_| SaslError::Malformed("not UTF-8"))?;
        let first = messages::ServerFirst::parse(server_first)?;
        if !first.nonce.starts_with(&self.nonce) || first.nonce.len() == self.nonce.len() {
            return Err(SaslError::NonceMismatch);
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&first.iterations) {
            return Err(SaslError::Iterations(first.iterations));
        }
        let scram = self.scram;
        let salted = scram.salted_password(password.as_bytes(), &first.salt, first.iterations);
        let client_key = scram.hmac(&salted, &[b"Client Key"]);
        let stored_key = scram.hash(&client_key);
        let without_proof = format!("c={},r={}", b64(messages::GS2_HEADER.as_bytes()), first.nonce);
        let auth_message =
            format!("{},{server_first},{without_proof}", self.client_first_bare).into_bytes();
        let signature = scram.hmac(&stored_key, &[&auth_message]);
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let server_key = scram.hmac(&salted, &[b"Server Key"]);
        let server_signature = scram.hmac(&server_key, &[&auth_message]);
        let final_message = format!("{without_proof},p={}", b64(&proof)).into_bytes();
        Ok((ScramFinish { server_signature }, final_message))
    }
}

impl ScramFinish {
    /// Checks `server-final`: `v=` the server's signature, or `e=` its error.
    pub fn verify(self, server_final: &[u8]) -> Result<(), SaslError> {
        let text =
            std::str::from_utf8(server_final).map_err(|_| SaslError::Malformed("not UTF-8"))?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(SaslError::Server(error.to_string()));
        }
        let signature = text
            .split(',')
            .find_map(|a| a.strip_prefix("v="))
            .and_then(unb64)
            .ok_or(SaslError::Malformed("server-final without a verifier"))?;
        if constant_time_eq(&signature, &self.server_signature) {
            Ok(())
        } else {
            Err(SaslError::BadServerSignature)
        }
    }
}

#[cfg(test)]
mod tests;
