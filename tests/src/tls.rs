//! TLS material and a TLS client for the tests: a CA and the certificates it signs, made fresh
//! with rcgen (ECDSA P-256) and written as PEM files into a test's directory; and a blocking
//! rustls client that says what the broker presented, makes HTTPS requests, and captures the
//! ClientHello a real client sends (the fuzz test's seed material).
//!
//! Broker certificates name `127.0.0.1` and `localhost` (IP and DNS subject alternative names),
//! so clients that check the name against the address they dial (eddy's client, librdkafka)
//! accept them. Every failure panics with what went wrong: these are test helpers.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use x509_cert::Certificate;
use x509_cert::der::Decode;

use crate::http::{Answer, parse};

/// Longest a TLS client here waits for the broker.
pub const TLS_LIMIT: Duration = Duration::from_secs(30);

/// A certificate authority: its certificate (PEM) and the key it signs with.
#[derive(Debug)]
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// A certificate a [`Ca`] issued, with its key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

/// When an issued certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From 2020 to 2100.
    Current,
    /// During the year 2000 only.
    Expired,
}

impl Ca {
    /// A new self-signed CA with common name `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("generate the CA's key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// Writes the CA certificate (PEM) to `path`, returning it.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path.to_path_buf()
    }

    /// A broker certificate (common name `eddy-broker`, for `127.0.0.1` and `localhost`).
    pub fn broker(&self, serial: u64, validity: Validity) -> Issued {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::DnsName("localhost".try_into().expect("a DNS name")),
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, "eddy-broker", serial, validity)
    }

    /// A client certificate with common name `user`.
    pub fn client(&self, user: &str, serial: u64) -> Issued {
        let mut params = CertificateParams::default();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, user, serial, Validity::Current)
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        name: &str,
        serial: u64,
        validity: Validity,
    ) -> Issued {
        params.distinguished_name = distinguished_name(name);
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        (params.not_before, params.not_after) = match validity {
            Validity::Current => (date_time_ymd(2020, 1, 1), date_time_ymd(2100, 1, 1)),
            Validity::Expired => (date_time_ymd(2000, 1, 1), date_time_ymd(2001, 1, 1)),
        };
        let key = KeyPair::generate().expect("generate a key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign a certificate");
        Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }
}

impl Issued {
    /// Writes `DIR/STEM.pem` (the certificate) and `DIR/STEM.key`, returning their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        write_replacing(&cert, &self.cert_pem);
        write_replacing(&key, &self.key_pem);
        (cert, key)
    }
}

/// Writes `path` whole or not at all (a temporary file renamed over it), as an operator's
/// certificate rotation should, so a reload never reads half a file.
pub fn write_replacing(path: &Path, text: &str) {
    let temporary = path.with_extension("partial");
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, path))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// A certificate's subject (`CN=...`) and serial number (hex), as a person reads them.
pub fn subject_and_serial(der: &CertificateDer<'_>) -> (String, String) {
    let cert = Certificate::from_der(der).expect("a DER certificate");
    let tbs = cert.tbs_certificate();
    (tbs.subject().to_string(), tbs.serial_number().to_string())
}

#[allow(deprecated, reason = "rustls 0.23.48 deprecates ring for lacking post-quantum kx")]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A client configuration trusting the CA certificates in `ca`, presenting `client` (certificate
/// file, key file) when given.
pub fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA file") {
        roots.add(cert.expect("a CA certificate")).expect("a usable CA certificate");
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .expect("read the client certificate")
                .collect::<Result<Vec<_>, _>>()
                .expect("a client certificate");
            let key = PrivateKeyDer::from_pem_file(key).expect("read the client key");
            builder.with_client_auth_cert(chain, key).expect("a client certificate and key")
        }
    };
    Arc::new(config)
}

/// A TLS connection to `addr` (checked as `localhost`), handshake done.
pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr` and completes the TLS handshake.
pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<Tls> {
    let socket = TcpStream::connect_timeout(&addr, TLS_LIMIT)?;
    socket.set_read_timeout(Some(TLS_LIMIT))?;
    socket.set_write_timeout(Some(TLS_LIMIT))?;
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let connection = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(connection, socket);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// The certificate the broker presents at `addr` to a new connection.
pub fn presented_certificate(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> CertificateDer<'static> {
    let tls = connect(addr, config).unwrap_or_else(|e| panic!("TLS to {addr}: {e}"));
    let chain = tls.conn.peer_certificates().expect("the broker presents a certificate");
    chain[0].clone().into_owned()
}

/// `GET path` over HTTPS, answered in full.
pub fn https_get(addr: SocketAddr, config: Arc<ClientConfig>, path: &str) -> Answer {
    let mut tls = connect(addr, config).unwrap_or_else(|e| panic!("HTTPS to {addr}: {e}"));
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(head.as_bytes()).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            // A server that closes without close_notify: what arrived is the whole answer.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => panic!("GET {path} over HTTPS: {e}"),
        }
    }
    parse(&raw).unwrap_or_else(|| panic!("not an HTTP answer: {:?}", String::from_utf8_lossy(&raw)))
}

/// The first flight a real rustls client sends: one TLS record holding its ClientHello.
pub fn client_hello(config: Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").expect("a server name");
    let mut connection = ClientConnection::new(config, name).expect("a client connection");
    let mut hello = Vec::new();
    while connection.wants_write() {
        connection.write_tls(&mut hello).expect("write to a vector");
    }
    hello
}
