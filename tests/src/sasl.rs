//! Authentication from a test: a broker with `auth.enabled` and a bootstrap user, the `eddy`
//! CLI run with credentials in its environment, SASL by hand on the Kafka listener (through
//! eddy-client's SCRAM, which follows RFC 5802 byte for byte) and on the native one, and HTTP
//! requests with Basic credentials.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use eddy_client::sasl::{Mechanism, ScramClient, plain_token};
use eddy_protocol::v1::{self, request};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};

use crate::broker::{BrokerProcess, eddy_binary};
use crate::child::{ChildProcess, deadline_in};
use crate::cli::{CLI_LIMIT, Run};
use crate::kafka_wire::{KafkaConnection, text};
use crate::raw_client::RawClient;

/// The bootstrap user of [`start_authenticated`].
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-Pa55word!";

/// `eddy serve` with `auth.enabled` and the bootstrap user [`ADMIN`], plus `extra` settings.
pub fn start_authenticated(dir: &Path, extra: &[(&str, &str)]) -> BrokerProcess {
    let bootstrap = format!("{ADMIN}:{ADMIN_PASSWORD}");
    let mut env = vec![("EDDY_AUTH_ENABLED", "true"), ("EDDY_BOOTSTRAP_USER", bootstrap.as_str())];
    env.extend_from_slice(extra);
    BrokerProcess::start(dir, &env)
}

/// Runs `eddy --broker ADDR ARGS...` to completion with exactly `env` among the `EDDY_*`
/// variables (a developer's `EDDY_PASSWORD` cannot leak in), stdin closed.
pub fn eddy_env(broker: &BrokerProcess, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = Command::new(eddy_binary());
    command.arg("--broker").arg(broker.addr().to_string()).args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("EDDY_")) {
            command.env_remove(&name);
        }
    }
    command.envs(env.iter().copied());
    let mut child = ChildProcess::spawn_command(command)
        .unwrap_or_else(|e| panic!("cannot start eddy {args:?}: {e}"));
    let stdout = child
        .remaining_lines(deadline_in(CLI_LIMIT))
        .unwrap_or_else(|e| panic!("eddy {args:?}: {e}"));
    let status = child.wait().unwrap_or_else(|e| panic!("eddy {args:?}: {e}"));
    Run { success: status.success(), stdout, stderr: child.stderr() }
}

/// `eddy --user USER ARGS...` with the password in `EDDY_PASSWORD`.
pub fn eddy_as(broker: &BrokerProcess, user: &str, password: &str, args: &[&str]) -> Run {
    let mut full = vec!["--user", user];
    full.extend_from_slice(args);
    eddy_env(broker, &[("EDDY_PASSWORD", password)], &full)
}

/// Like [`eddy_as`], for a command that must succeed: its stdout.
pub fn eddy_as_ok(
    broker: &BrokerProcess,
    user: &str,
    password: &str,
    args: &[&str],
) -> Vec<String> {
    let run = eddy_as(broker, user, password, args);
    assert!(run.success, "eddy --user {user} {args:?} failed: {}", run.stderr);
    run.stdout
}

/// Like [`eddy_as`], for a command that must fail: its one stderr line.
pub fn eddy_as_fails(broker: &BrokerProcess, user: &str, password: &str, args: &[&str]) -> String {
    let run = eddy_as(broker, user, password, args);
    assert!(!run.success, "eddy --user {user} {args:?} succeeded: {run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "stderr not one line: {run:?}");
    run.stderr
}

/// How a SASL exchange on the Kafka listener ended, when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaRefusal {
    /// SaslHandshake's error code (33: mechanism not enabled).
    Handshake(i16),
    /// SaslAuthenticate's error code and message (58: wrong credentials).
    Authenticate(i16, String),
}

/// SaslHandshake v1 then SaslAuthenticate v2 on `conn` as `user`; SCRAM's server signature is
/// checked on success.
pub fn kafka_authenticate(
    conn: &mut KafkaConnection,
    mechanism: Mechanism,
    user: &str,
    password: &str,
) -> Result<(), KafkaRefusal> {
    let handshake = SaslHandshakeRequest::default().with_mechanism(text(mechanism.name()));
    let answer: SaslHandshakeResponse = conn.call(ApiKey::SaslHandshake, 1, &handshake);
    if answer.error_code != 0 {
        return Err(KafkaRefusal::Handshake(answer.error_code));
    }
    let mut step = |token: Vec<u8>| {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(token.into());
        let answer: SaslAuthenticateResponse = conn.call(ApiKey::SaslAuthenticate, 2, &request);
        match answer.error_code {
            0 => Ok(answer.auth_bytes.to_vec()),
            code => {
                let message = answer.error_message.map(|m| m.to_string()).unwrap_or_default();
                Err(KafkaRefusal::Authenticate(code, message))
            }
        }
    };
    let Some(scram) = mechanism.scram() else {
        return step(plain_token(user, password)).map(drop);
    };
    let (client, first) = ScramClient::start(scram, user).expect("random nonce");
    let server_first = step(first)?;
    let (finish, last) = client.respond(&server_first, password).expect("server-first parses");
    let server_final = step(last)?;
    finish.verify(&server_final).expect("the broker proves it knows the credential");
    Ok(())
}

/// A Kafka connection to `broker` authenticated as `user`.
pub fn kafka_connection_as(
    addr: SocketAddr,
    mechanism: Mechanism,
    user: &str,
    password: &str,
) -> KafkaConnection {
    let mut conn = KafkaConnection::connect(addr);
    kafka_authenticate(&mut conn, mechanism, user, password)
        .unwrap_or_else(|e| panic!("{user} with {mechanism} on the Kafka listener: {e:?}"));
    conn
}

/// SaslHandshake and SaslAuthenticate on a native connection (ApiVersions already sent).
/// `Ok(principal)`, or the broker's error.
pub fn native_authenticate(
    client: &mut RawClient,
    mechanism: Mechanism,
    user: &str,
    password: &str,
) -> Result<String, v1::Error> {
    let answer = client.call(request::Body::SaslHandshake(v1::SaslHandshakeRequest {
        mechanism: mechanism.name().to_string(),
    }));
    if let Some(error) = answer.error {
        return Err(error);
    }
    let mut step = |token: Vec<u8>| {
        let answer = client.call(request::Body::SaslAuthenticate(v1::SaslAuthenticateRequest {
            auth_bytes: token.into(),
        }));
        match (answer.error, answer.body) {
            (Some(error), _) => Err(error),
            (None, Some(v1::response::Body::SaslAuthenticate(a))) => Ok(a),
            (None, other) => panic!("unexpected answer to SaslAuthenticate: {other:?}"),
        }
    };
    let Some(scram) = mechanism.scram() else {
        return step(plain_token(user, password)).map(|a| a.principal);
    };
    let (scram_client, first) = ScramClient::start(scram, user).expect("random nonce");
    let server_first = step(first)?;
    let (finish, last) =
        scram_client.respond(&server_first.auth_bytes, password).expect("server-first parses");
    let done = step(last)?;
    finish.verify(&done.auth_bytes).expect("the broker proves it knows the credential");
    Ok(done.principal)
}

/// Whether the peer closes `stream` (end of stream, or a reset) within `limit`, with no bytes
/// before; bytes before the close fail the test.
pub fn closed_without_answer(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("expected the connection to close, got {n} bytes: {:?}", &buf[..n]),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(e) => panic!("reading: {e}"),
    }
}

/// An HTTP answer: status, headers (lower-case names), body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// `GET path` with an optional `Authorization` header value.
pub fn http_get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> HttpAnswer {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n");
    stream.write_all(head.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpAnswer { status, headers, body: body.to_string() }
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", eddy_client::sasl::b64(format!("{user}:{password}").as_bytes()))
}

/// Every file under `dir` (recursively) that contains `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}
