//! Accepting one TLS connection: whether the client speaks TLS at all, the handshake, who the
//! client is, and what a failure is called in the broker's log.
//!
//! - [`looks_like_tls`] peeks at the first byte, which stays in the socket: a TLS client opens
//!   with a handshake record (content type 22); anything else is a plaintext client on a TLS
//!   port, which the listener answers in its own protocol where it can, then closes with
//!   [`close_plaintext`] (an orderly close the client sees as such, not a reset).
//! - [`ServerTls::accept`] takes the configuration in force at that moment (so a reload never
//!   touches a connection already accepted). The caller bounds it in time: the handshake counts
//!   toward the listener's `handshake_timeout_ms`.
//! - [`ServerTls::start`] is what each listener calls: the first byte's check, the answer to a
//!   plaintext client, the handshake by the listener's deadline, and one log line for whatever
//!   ended it (naming the listener and the client's address).
//! - With a client CA, the principal is `User:<CN>` of the client's (verified) certificate; a
//!   certificate without a common name is refused, since it names no user.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;
use rustls::{AlertDescription, CertificateError, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use x509_cert::Certificate;
use x509_cert::der::Decode;

use super::{ServerTls, TlsListener};
use crate::security::Principal;

/// A server-side TLS connection over TCP.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// A TLS record's first byte is its content type; a ClientHello travels in a handshake record.
const HANDSHAKE_RECORD: u8 = 22;

/// Whether the client's first byte opens a TLS handshake record; `None` if it closed without
/// sending anything. The byte is only peeked at: the handshake reads it again.
pub async fn looks_like_tls(stream: &TcpStream) -> io::Result<Option<bool>> {
    let mut first = [0u8; 1];
    let read = stream.peek(&mut first).await?;
    Ok((read == 1).then_some(first[0] == HANDSHAKE_RECORD))
}

/// Sends `answer` (may be empty) to a plaintext client on a TLS port and closes: our side is
/// shut down, then what the client sent is read and dropped until it closes too. Closing with
/// its bytes unread would be a reset, which can destroy the answer before the client reads it
/// and reads as "connection reset" rather than a refusal. The caller bounds it in time.
pub async fn close_plaintext(mut stream: TcpStream, answer: &[u8]) {
    if stream.write_all(answer).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// Why a TLS connection was not established (for the broker's log; the client learns it from
/// the TLS alert rustls sends, or from the closed connection).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the client closed the connection during the TLS handshake")]
    Closed,
    #[error("{0}")]
    Failed(String),
    #[error("the client certificate names no user: it has no common name (CN)")]
    NoCommonName,
    #[error("{0}")]
    Io(io::Error),
}

impl ServerTls {
    /// Starts TLS on a connection `listener` accepted from `peer`, by `deadline`: a client whose
    /// first byte is not a TLS handshake record gets `plaintext_answer` (in plaintext; may be
    /// empty) and is closed. `None`, logged, when TLS did not start; else the stream and the
    /// principal it authenticated.
    pub async fn start(
        &self,
        listener: TlsListener,
        stream: TcpStream,
        peer: SocketAddr,
        deadline: tokio::time::Instant,
        plaintext_answer: &[u8],
    ) -> Option<(TlsStream, Principal)> {
        let attempt = async {
            match looks_like_tls(&stream).await {
                Ok(Some(true)) => {}
                Ok(Some(false)) => {
                    let hint = listener.plaintext_hint();
                    tracing::info!(%listener, %peer, "refusing a plaintext client on the TLS port ({hint})");
                    close_plaintext(stream, plaintext_answer).await;
                    return None;
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::debug!(%listener, %peer, error = %e, "read failed before the TLS handshake");
                    return None;
                }
            }
            match self.accept(stream).await {
                Ok(started) => Some(started),
                Err(e) => {
                    tracing::info!(%listener, %peer, error = %e, "TLS handshake failed");
                    None
                }
            }
        };
        let Ok(started) = tokio::time::timeout_at(deadline, attempt).await else {
            tracing::info!(%listener, %peer, "TLS handshake not complete by the listener's deadline");
            return None;
        };
        let (stream, principal) = started?;
        tracing::debug!(%listener, %peer, %principal, "TLS connection established");
        Some((stream, principal))
    }

    /// The TLS handshake on an accepted connection, and the principal it authenticates
    /// (anonymous without a client CA).
    pub async fn accept(
        &self,
        stream: TcpStream,
    ) -> Result<(TlsStream, Principal), HandshakeError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current());
        let tls = acceptor.accept(stream).await.map_err(classify)?;
        let principal = if self.requires_client_certificate() {
            let certificate = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
            // rustls's verifier has already refused a client without a certificate.
            let certificate = certificate
                .ok_or(HandshakeError::Failed("the client presented no certificate".into()))?;
            let name = common_name(certificate).ok_or(HandshakeError::NoCommonName)?;
            Principal::user(&name)
        } else {
            Principal::Anonymous
        };
        Ok((tls, principal))
    }
}

/// The subject's common name (the first, if several), as text.
pub(crate) fn common_name(certificate: &CertificateDer<'_>) -> Option<String> {
    let parsed = Certificate::from_der(certificate).ok()?;
    let name = parsed.tbs_certificate().subject().common_name().ok()??;
    let name = name.value().into_owned();
    (!name.is_empty()).then_some(name)
}

/// Logs a warning when the certificate in `path` is expired or not yet valid: the broker
/// starts (an operator may be replacing it), but every client will refuse it.
pub(super) fn warn_if_not_valid_now(path: &Path, certificate: &CertificateDer<'_>) {
    let Ok(parsed) = Certificate::from_der(certificate) else { return };
    let validity = parsed.tbs_certificate().validity();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    if validity.not_after.to_unix_duration() < now {
        tracing::warn!(
            path = %path.display(),
            not_after = %validity.not_after,
            "the TLS certificate has expired: clients will refuse it"
        );
    } else if validity.not_before.to_unix_duration() > now {
        tracing::warn!(
            path = %path.display(),
            not_before = %validity.not_before,
            "the TLS certificate is not valid yet: clients will refuse it"
        );
    }
}

/// A failed handshake's I/O error as the broker logs it.
fn classify(error: io::Error) -> HandshakeError {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(tls) => HandshakeError::Failed(describe(tls)),
        None if error.kind() == io::ErrorKind::UnexpectedEof => HandshakeError::Closed,
        None => HandshakeError::Io(error),
    }
}

/// A rustls error, seen from the broker, in words an operator can act on.
fn describe(error: &Error) -> String {
    match error {
        Error::NoCertificatesPresented => {
            "the client presented no certificate (tls.client_ca_file requires one)".into()
        }
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the client certificate is not signed by tls.client_ca_file (unknown issuer)".into()
        }
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the client certificate has expired".into(),
        Error::InvalidCertificate(other) => format!("the client certificate is invalid: {other}"),
        Error::AlertReceived(alert) => match alert {
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown => {
                format!("the client refused the broker's certificate (alert {alert:?})")
            }
            other => format!("the client ended the handshake (alert {other:?})"),
        },
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
            format!("the client sent something that is not a valid TLS handshake: {error}")
        }
        Error::PeerIncompatible(_) => {
            format!("no TLS version or cipher suite in common with the client: {error}")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_described_for_operators() {
        let text = describe(&Error::NoCertificatesPresented);
        assert_eq!(text, "the client presented no certificate (tls.client_ca_file requires one)");
        let text = describe(&Error::AlertReceived(AlertDescription::UnknownCA));
        assert_eq!(text, "the client refused the broker's certificate (alert UnknownCA)");
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert!(matches!(classify(eof), HandshakeError::Closed));
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, Error::NoCertificatesPresented);
        assert!(matches!(classify(wrapped), HandshakeError::Failed(_)));
    }

    #[test]
    fn the_common_name_is_read_from_a_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "eddy");
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        let alice = params.self_signed(&key).unwrap();
        assert_eq!(common_name(alice.der()).as_deref(), Some("alice"));
        params.distinguished_name.remove(rcgen::DnType::CommonName);
        let nameless = params.self_signed(&key).unwrap();
        assert_eq!(common_name(nameless.der()), None);
        assert_eq!(common_name(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])), None);
    }
}
