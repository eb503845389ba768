//! TLS on the broker's listeners: the `[tls]` settings, loading and checking the certificate,
//! key and client-CA files, and [`ServerTls`], the handle every TLS listener accepts through
//! and `eddy serve` reloads on SIGHUP.
//!
//! Invariants:
//! - A [`ServerTls`] always holds a complete, checked rustls configuration. Loading reads every
//!   file (present, at most [`MAX_PEM_BYTES`], PEM, holding what it should), checks that the key
//!   is the certificate's and that the client CA parses, and fails naming the file; a reload
//!   that fails leaves the configuration in force untouched.
//! - Each connection takes the configuration in force when it is accepted and keeps it for its
//!   life: a reload changes what new connections get, never an open one.
//! - With `client_ca_file`, every client must present a certificate that CA signed, and its
//!   common name becomes the connection's principal (`handshake`).
//! - rustls with the `ring` provider only; TLS 1.3 and 1.2 (rustls's safe defaults).
//!
//! `handshake` does the accepting: the first byte's check (a plaintext client on a TLS port),
//! the handshake itself, the principal, and what a failure is called in the logs.

mod handshake;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;

pub use handshake::{HandshakeError, TlsStream, close_plaintext, looks_like_tls};

/// Largest certificate, key or CA file read (a CA bundle of a few hundred certificates fits).
pub const MAX_PEM_BYTES: u64 = 4 << 20;

/// A listener TLS may be switched on for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsListener {
    Native,
    Kafka,
    Http,
}

impl TlsListener {
    /// What a plaintext client on this listener's TLS port most likely forgot.
    fn plaintext_hint(self) -> &'static str {
        match self {
            TlsListener::Native => "an eddy client without --tls-ca?",
            TlsListener::Kafka => "a Kafka client without security.protocol=SSL?",
            TlsListener::Http => "http:// in place of https://?",
        }
    }
}

impl std::fmt::Display for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsListener::Native => "native",
            TlsListener::Kafka => "kafka",
            TlsListener::Http => "http",
        })
    }
}

/// The `[tls]` section: TLS is on when `cert_file` is set.
///
/// ```toml
/// [tls]
/// cert_file = "/etc/eddy/broker.pem"      # the certificate chain, PEM, leaf first
/// key_file = "/etc/eddy/broker.key"       # its private key, PEM (PKCS#8, PKCS#1 or SEC1)
/// client_ca_file = "/etc/eddy/ca.pem"     # optional: clients must present a certificate it signed
/// listeners = ["native", "kafka", "http"] # the default: all three
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub listeners: Vec<TlsListener>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            listeners: vec![TlsListener::Native, TlsListener::Kafka, TlsListener::Http],
        }
    }
}

impl TlsSettings {
    /// Whether TLS is configured at all.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Whether `listener` serves TLS.
    pub fn serves(&self, listener: TlsListener) -> bool {
        self.enabled() && self.listeners.contains(&listener)
    }

    /// The settings' shape (files are read by [`ServerTls::load`]): a key needs a certificate and
    /// the reverse, a client CA needs both, and TLS on means at least one listener.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return Err("tls.cert_file is set without tls.key_file".into()),
            (None, Some(_)) => return Err("tls.key_file is set without tls.cert_file".into()),
            _ => {}
        }
        if self.client_ca_file.is_some() && self.cert_file.is_none() {
            return Err("tls.client_ca_file needs tls.cert_file and tls.key_file".into());
        }
        if self.enabled() && self.listeners.is_empty() {
            return Err("tls.listeners is empty: name at least one of \"native\", \"kafka\", \
                        \"http\" (or remove tls.cert_file to switch TLS off)"
                .into());
        }
        Ok(())
    }
}

/// Why TLS could not be set up from the files. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the TLS {what} file {path} is larger than {MAX_PEM_BYTES} bytes")]
    TooLarge { what: &'static str, path: PathBuf },
    #[error("the TLS {what} file {path} is not PEM: it holds no {expected} block")]
    NotPem { what: &'static str, path: PathBuf, expected: &'static str },
    #[error("the TLS {what} file {path}: {reason}")]
    Invalid { what: &'static str, path: PathBuf, reason: String },
    #[error("the TLS key file {key} does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("invalid config: {0}")]
    Settings(String),
}

/// The TLS configuration the listeners accept with; clones share it, so a reload through one
/// is seen by all.
#[derive(Debug, Clone)]
pub struct ServerTls {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Reads and checks the files `settings` names; `None` when TLS is not configured.
    pub fn load(settings: &TlsSettings) -> Result<Option<ServerTls>, TlsError> {
        settings.validate().map_err(TlsError::Settings)?;
        if !settings.enabled() {
            return Ok(None);
        }
        let config = build(settings)?;
        let shared = Shared { settings: settings.clone(), current: RwLock::new(config) };
        Ok(Some(ServerTls { shared: Arc::new(shared) }))
    }

    /// Reads the files again and, if they check out, puts them in force for new connections.
    /// On an error the configuration in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.shared.settings)?;
        *self.shared.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.shared.settings
    }

    /// Whether `listener` serves TLS.
    pub fn serves(&self, listener: TlsListener) -> bool {
        self.shared.settings.serves(listener)
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificate(&self) -> bool {
        self.shared.settings.client_ca_file.is_some()
    }

    /// The configuration in force, for one new connection.
    fn current(&self) -> Arc<ServerConfig> {
        // A swap of one `Arc` cannot leave the lock's value half-written.
        self.shared.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A rustls server configuration from the files `settings` names (TLS on).
fn build(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let (Some(cert_path), Some(key_path)) = (&settings.cert_file, &settings.key_file) else {
        return Err(TlsError::Settings("tls needs both cert_file and key_file".into()));
    };
    let certs = read_certificates("certificate", cert_path)?;
    handshake::warn_if_not_valid_now(cert_path, &certs[0]);
    let key = read_key(key_path)?;
    let provider = Arc::new(ring_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Settings(format!("tls: {e}")))?;
    let builder = match &settings.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certificates("client CA", ca_path)? {
                roots.add(cert).map_err(|e| invalid("client CA", ca_path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid("client CA", ca_path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch { cert: cert_path.clone(), key: key_path.clone() }
        }
        other => invalid("key", key_path, other),
    })?;
    Ok(Arc::new(config))
}

/// rustls's *ring* provider. rustls 0.23.48 deprecates it for lacking the post-quantum key
/// exchange (X25519MLKEM768, aws-lc-rs only); eddy keeps *ring* because aws-lc-rs needs cmake
/// and builds slowly. The key exchanges it offers are X25519, P-256 and P-384.
#[allow(deprecated)]
pub fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn invalid(what: &'static str, path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid { what, path: path.to_path_buf(), reason: reason.to_string() }
}

/// The file's bytes, refusing one past [`MAX_PEM_BYTES`] before reading it.
fn read_pem_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_error = |source| TlsError::Read { what, path: path.to_path_buf(), source };
    let len = std::fs::metadata(path).map_err(read_error)?.len();
    if len > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge { what, path: path.to_path_buf() });
    }
    std::fs::read(path).map_err(read_error)
}

/// Every `CERTIFICATE` block of the file, at least one.
fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem_file(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, path, e))?;
    if certs.is_empty() {
        let expected = "\"-----BEGIN CERTIFICATE-----\"";
        return Err(TlsError::NotPem { what, path: path.to_path_buf(), expected });
    }
    Ok(certs)
}

/// The file's private key (the first key block).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_pem_file("key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NotPem {
            what: "key",
            path: path.to_path_buf(),
            expected: "private key (\"-----BEGIN PRIVATE KEY-----\")",
        },
        other => invalid("key", path, other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_shape_is_checked() {
        let mut s = TlsSettings { cert_file: Some("c.pem".into()), ..TlsSettings::default() };
        assert_eq!(s.validate().unwrap_err(), "tls.cert_file is set without tls.key_file");
        s.key_file = Some("k.pem".into());
        assert!(s.validate().is_ok());
        assert!(s.serves(TlsListener::Http));
        s.listeners = vec![TlsListener::Kafka];
        assert!(!s.serves(TlsListener::Native) && s.serves(TlsListener::Kafka));
        s.listeners.clear();
        assert!(s.validate().unwrap_err().starts_with("tls.listeners is empty"));
        let ca_only =
            TlsSettings { client_ca_file: Some("ca.pem".into()), ..TlsSettings::default() };
        assert!(ca_only.validate().is_err());
        assert!(!TlsSettings::default().serves(TlsListener::Native));
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let settings = |cert: &Path, key: &Path| TlsSettings {
            cert_file: Some(cert.to_path_buf()),
            key_file: Some(key.to_path_buf()),
            ..TlsSettings::default()
        };
        let e = ServerTls::load(&settings(&missing, &garbage)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot read the TLS certificate file {}: ",
                missing.display()
            )),
            "{text}"
        );
        let e = ServerTls::load(&settings(&garbage, &garbage)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "the TLS certificate file {} is not PEM: it holds no \
                 \"-----BEGIN CERTIFICATE-----\" block",
                garbage.display()
            )
        );
        assert!(ServerTls::load(&TlsSettings::default()).unwrap().is_none());
    }
}
