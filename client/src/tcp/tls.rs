//! TLS for a [`Connection`](super::Connection): what to trust and what to present
//! ([`TlsOptions`]), the handshake, and rustls's errors turned into ones a user can act on.
//!
//! - The broker's certificate must chain to a CA in the options' roots and be valid for the
//!   server name: by default the host part of the address the connection was opened to (an IP
//!   address must then be in the certificate's subject alternative names).
//! - A client certificate and key, when given, are presented to a broker that asks for one (its
//!   common name is then the connection's principal on the broker).
//! - Errors are [`ClientError::Tls`] with a reason naming what went wrong: an untrusted issuer,
//!   an expired certificate, a name mismatch, a broker that did not answer with TLS, a broker
//!   that wanted a client certificate. A broker answering in plaintext that it requires TLS is
//!   its own error (`TLS_REQUIRED`, through [`ClientError::Broker`]).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, Error, RootCertStore};
use tokio::net::TcpStream;

use crate::ClientError;

/// A client-side TLS connection over TCP.
pub(super) type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Largest CA, certificate or key file read.
const MAX_PEM_BYTES: u64 = 4 << 20;

/// How a connection speaks TLS: the rustls configuration (trusted CAs, the client certificate
/// if any) and the name the broker's certificate must carry.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    config: Arc<ClientConfig>,
    /// The name the broker's certificate must be valid for (a DNS name or an IP address);
    /// `None`: the host of the address connected to.
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// Trusts the CA certificates in `ca_file` (PEM) and, with `client` (certificate chain
    /// file, key file), presents that certificate to a broker that asks for one.
    pub fn from_files(ca_file: &Path, client: Option<(&Path, &Path)>) -> Result<Self, ClientError> {
        let mut roots = RootCertStore::empty();
        for cert in read_certificates("CA", ca_file)? {
            roots.add(cert).map_err(|e| setup(ca_file, e))?;
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(ring_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(ca_file, e))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert_file, key_file)) => {
                let certs = read_certificates("certificate", cert_file)?;
                let key = read_key(key_file)?;
                builder.with_client_auth_cert(certs, key).map_err(|e| match e {
                    Error::InconsistentKeys(_) => ClientError::TlsSetup {
                        path: key_file.display().to_string(),
                        reason: format!(
                            "the key does not match the certificate in {}",
                            cert_file.display()
                        ),
                    },
                    other => setup(key_file, other),
                })?
            }
        };
        Ok(Self::from_config(Arc::new(config)))
    }

    /// Options over a rustls configuration built by the caller.
    pub fn from_config(config: Arc<ClientConfig>) -> Self {
        Self { config, server_name: None }
    }

    /// The name the broker's certificate must be valid for, in place of the address's host.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }
}

/// rustls's *ring* provider (deprecated in rustls 0.23.48 for lacking post-quantum key exchange,
/// which only aws-lc-rs has; eddy keeps *ring*, which builds without cmake).
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The TLS handshake over `stream`, opened to `addr`.
pub(super) async fn handshake(
    options: &TlsOptions,
    addr: &str,
    stream: TcpStream,
) -> Result<TlsStream, ClientError> {
    let name = options.server_name.clone().unwrap_or_else(|| host_of(addr).to_string());
    let server_name = ServerName::try_from(name.clone()).map_err(|_| ClientError::Tls {
        addr: addr.to_owned(),
        reason: format!("{name:?} is not a valid server name (a DNS name or an IP address)"),
    })?;
    let connector = tokio_rustls::TlsConnector::from(options.config.clone());
    connector.connect(server_name, stream).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof if tls_error(&e).is_none() => ClientError::Tls {
            addr: addr.to_owned(),
            reason: "the broker closed the connection during the TLS handshake".into(),
        },
        _ => io_error(addr, e, &name),
    })
}

/// The host part of `host:port` (`[v6]:port` too).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

fn tls_error(error: &std::io::Error) -> Option<&Error> {
    error.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
}

/// An I/O error on a connection: [`ClientError::Tls`] when TLS failed underneath, else
/// [`ClientError::Connection`]. `name` is the server name the certificate was checked against.
pub(super) fn io_error(addr: &str, error: std::io::Error, name: &str) -> ClientError {
    match tls_error(&error) {
        Some(tls) => ClientError::Tls { addr: addr.to_owned(), reason: describe(tls, name) },
        None => ClientError::Connection { addr: addr.to_owned(), source: error },
    }
}

/// A rustls error, seen from the client.
fn describe(error: &Error, name: &str) -> String {
    match error {
        Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                "the broker's certificate is not signed by a trusted CA (unknown issuer)".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the broker's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the broker's certificate is not valid yet".into()
            }
            CertificateError::NotValidForName => {
                format!("the broker's certificate is not valid for the name {name}")
            }
            CertificateError::NotValidForNameContext { presented, .. } => {
                let names: Vec<&str> = presented.iter().map(|n| plain_name(n)).collect();
                format!(
                    "the broker's certificate is not valid for the name {name} (it is for {})",
                    names.join(", ")
                )
            }
            other => format!("the broker's certificate was refused: {other}"),
        },
        Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the broker requires a client certificate and none was presented".into()
        }
        Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown),
        ) => format!("the broker refused the client certificate (alert {alert:?})"),
        Error::AlertReceived(alert) => {
            format!("the broker ended the TLS session (alert {alert:?})")
        }
        Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. } => {
            "the broker did not answer with TLS (is its listener plaintext?)".into()
        }
        other => other.to_string(),
    }
}

/// A name the certificate presents, as rustls words it (`DnsName("localhost")`,
/// `IpAddress(127.0.0.1)`), without the wrapping.
fn plain_name(presented: &str) -> &str {
    let inner = ["DnsName(", "IpAddress(", "UriName("]
        .iter()
        .find_map(|kind| presented.strip_prefix(kind)?.strip_suffix(')'));
    let Some(inner) = inner else { return presented };
    inner.strip_prefix('"').and_then(|n| n.strip_suffix('"')).unwrap_or(inner)
}

fn setup(path: &Path, reason: impl std::fmt::Display) -> ClientError {
    ClientError::TlsSetup { path: path.display().to_string(), reason: reason.to_string() }
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, ClientError> {
    let len = std::fs::metadata(path).map_err(|e| setup(path, e))?.len();
    if len > MAX_PEM_BYTES {
        return Err(setup(path, format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    std::fs::read(path).map_err(|e| setup(path, e))
}

/// Every `CERTIFICATE` block of the file, at least one.
fn read_certificates(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let bytes = read_pem_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setup(path, e))?;
    if certs.is_empty() {
        let reason = format!("not a PEM {what} file: no \"-----BEGIN CERTIFICATE-----\" block");
        return Err(setup(path, reason));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ClientError> {
    let bytes = read_pem_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            setup(path, "not a PEM key file: no private key block")
        }
        other => setup(path, other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_an_address() {
        assert_eq!(host_of("127.0.0.1:9750"), "127.0.0.1");
        assert_eq!(host_of("broker.example:9750"), "broker.example");
        assert_eq!(host_of("[::1]:9750"), "::1");
    }

    #[test]
    fn errors_say_what_went_wrong() {
        let unknown = Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            describe(&unknown, "x"),
            "the broker's certificate is not signed by a trusted CA (unknown issuer)"
        );
        let plaintext = Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert_eq!(
            describe(&plaintext, "x"),
            "the broker did not answer with TLS (is its listener plaintext?)"
        );
        let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown);
        assert!(matches!(io_error("a:1", wrapped, "a"), ClientError::Tls { .. }));
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(io_error("a:1", plain, "a"), ClientError::Connection { .. }));
    }

    #[test]
    fn presented_names_lose_their_wrapping() {
        assert_eq!(plain_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(plain_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(plain_name("something else"), "something else");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let e = TlsOptions::from_files(Path::new("/nonexistent/ca.pem"), None).unwrap_err();
        assert!(e.to_string().starts_with("TLS file /nonexistent/ca.pem: "), "{e}");
    }
}
