//! TLS on every listener of the real `eddy serve` binary, with a CA and certificates made in the
//! test (rcgen, `eddy_tests::tls`):
//!
//! - eddy's CLI, kcat (`security.protocol=ssl`) and confluent-kafka (`security.protocol=SSL`)
//!   produce and consume over TLS, and get back what they sent byte for byte; `/health` and
//!   `/metrics` answer over HTTPS.
//! - Refused, each with its exact error: a plaintext eddy client on the TLS port
//!   (`TLS_REQUIRED`), plain HTTP on the HTTPS port (400), a TLS client on a plaintext port,
//!   a broker certificate from an untrusted CA, an expired one, one for another name (eddy's
//!   client and kcat); the broker logs each refusal.
//! - With a client CA: no client certificate, or one from another CA, is refused; one the CA
//!   signed is accepted, for eddy's client and kcat, and its common name is the principal;
//!   that user holds at most `auth.max_connections_per_principal` connections, as with SASL.
//! - SIGHUP: a new certificate and key are put in force for new connections (native, Kafka and
//!   HTTP listeners) while an open connection keeps working; a reload from a bad file keeps the
//!   configuration in force and says why, naming the file.
//! - A TLS handshake not complete within `handshake_timeout_ms` is closed (native and Kafka).
//! - A missing, non-PEM or mismatched file stops the start with an error naming it.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use eddy_client::{Admin, Connection, ConnectionOptions, TlsOptions};
use eddy_tests::broker::{BrokerProcess, eddy_binary, signal};
use eddy_tests::child::deadline_in;
use eddy_tests::cli::{eddy_fails, eddy_ok};
use eddy_tests::kafka_clients::{kcat_command, run_to_end, tail};
use eddy_tests::kafka_harness::{
    CLIENT_LIMIT, Lib, Rec, assert_same_records, events, produce, run_client, seed,
};
use eddy_tests::tls::{
    Ca, Validity, client_config, https_get, presented_certificate, subject_and_serial,
    write_replacing,
};
use tempfile::TempDir;

/// A test's TLS files: a CA (`ca.pem`) and a broker certificate it signed (`broker.pem`,
/// `broker.key`), in a temporary directory that also holds the broker's data.
struct Pki {
    dir: TempDir,
    ca: Ca,
    ca_file: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new(validity: Validity) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("eddy-test-ca");
        let ca_file = ca.write(&dir.path().join("ca.pem"));
        let (cert, key) = ca.broker(1, validity).write(dir.path(), "broker");
        Pki { dir, ca, ca_file, cert, key }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `eddy serve` with TLS on every listener (and a client CA when given), logging who each
    /// TLS connection authenticated as.
    fn start(&self, client_ca: Option<&Path>) -> BrokerProcess {
        self.start_with(client_ca, &[])
    }

    /// [`Pki::start`] with `extra` settings.
    fn start_with(&self, client_ca: Option<&Path>, extra: &[(&str, &str)]) -> BrokerProcess {
        let mut env = vec![
            ("EDDY_TLS_CERT_FILE", text(&self.cert)),
            ("EDDY_TLS_KEY_FILE", text(&self.key)),
            ("EDDY_LOG", "info,eddy_broker::security=debug".into()),
        ];
        if let Some(ca) = client_ca {
            env.push(("EDDY_TLS_CLIENT_CA_FILE", text(ca)));
        }
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        BrokerProcess::start(&self.path("data"), &env)
    }

    fn ca_arg(&self) -> String {
        text(&self.ca_file)
    }
}

fn text(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

/// The broker's stderr after a graceful stop.
fn stop(mut broker: BrokerProcess) -> String {
    assert!(broker.terminate().success());
    broker.stderr()
}

/// `kcat -b ADDR -X security.protocol=ssl -X ssl.ca.location=CA ARGS...`.
fn kcat_ssl(addr: SocketAddr, ca: &Path, args: &[&str]) -> Command {
    let mut kcat = kcat_command(&addr.to_string());
    kcat.args(["-X", "security.protocol=ssl", "-X"]).arg(format!("ssl.ca.location={}", text(ca)));
    kcat.args(args);
    kcat
}

/// Lines of any text but the newline, from a seeded generator.
fn lines(seed: u64, count: usize) -> String {
    let mut rng = eddy_tests::generate::Rng::new(seed);
    let alphabet: Vec<char> = "abcxyz019 -_:/{}\"é€✓".chars().collect();
    let mut out = String::new();
    for _ in 0..count {
        let len = 1 + rng.below(80) as usize;
        out.extend((0..len).map(|_| alphabet[rng.below(alphabet.len() as u64) as usize]));
        out.push('\n');
    }
    out
}

#[test]
fn eddy_cli_produces_and_consumes_over_tls() {
    let pki = Pki::new(Validity::Current);
    let broker = pki.start(None);
    let ca = pki.ca_arg();
    eddy_ok(&broker, &["--tls-ca", &ca, "topic", "create", "secure", "--partitions", "1"]);
    let sent = lines(seed(), 500);
    let file = pki.path("lines.txt");
    std::fs::write(&file, &sent).unwrap();
    eddy_ok(&broker, &["--tls-ca", &ca, "produce", "secure", &text(&file)]);
    let back = eddy_ok(&broker, &["--tls-ca", &ca, "consume", "secure"]);
    assert_eq!(back.join("\n") + "\n", sent, "records read back over TLS");

    // The same through the environment (EDDY_TLS_CA) in place of the flag.
    let mut command = Command::new(eddy_binary());
    command.env("EDDY_TLS_CA", &ca).args(["--broker", &broker.addr().to_string()]);
    command.args(["topic", "list"]);
    let listed = run_to_end(command, CLIENT_LIMIT);
    let listed = String::from_utf8_lossy(listed.ok()).into_owned();
    let topics: Vec<&str> = listed.lines().filter(|t| !t.starts_with("__")).collect();
    assert_eq!(topics, ["secure"]);
    let log = stop(broker);
    let established = "TLS connection established listener=native peer=127.0.0.1:";
    assert!(log.contains(established), "{}", tail(&log, 4000));
}

#[test]
fn kcat_produces_and_consumes_over_ssl() {
    let pki = Pki::new(Validity::Current);
    let broker = pki.start(None);
    eddy_ok(&broker, &["--tls-ca", &pki.ca_arg(), "topic", "create", "kcat-ssl"]);
    let sent = lines(seed() ^ 1, 2_000);
    let file = pki.path("lines.txt");
    std::fs::write(&file, &sent).unwrap();
    let produce = kcat_ssl(broker.kafka_addr(), &pki.ca_file, &["-P", "-t", "kcat-ssl", "-l"]);
    let mut produce = produce;
    produce.arg(&file);
    let run = run_to_end(produce, CLIENT_LIMIT);
    run.ok();
    assert!(run.stderr.trim().is_empty(), "kcat -P complained:\n{}", tail(&run.stderr, 4000));
    let consume = kcat_ssl(
        broker.kafka_addr(),
        &pki.ca_file,
        &["-C", "-t", "kcat-ssl", "-o", "beginning", "-e", "-q"],
    );
    let run = run_to_end(consume, CLIENT_LIMIT);
    assert_eq!(String::from_utf8_lossy(run.ok()), sent, "kcat read back over SSL");
    // And natively over TLS: the same lines.
    let back = eddy_ok(&broker, &["--tls-ca", &pki.ca_arg(), "consume", "kcat-ssl"]);
    assert_eq!(back.join("\n") + "\n", sent);
}

#[test]
fn confluent_kafka_produces_and_consumes_over_ssl() {
    const RECORDS: u64 = 300;
    let pki = Pki::new(Validity::Current);
    let broker = pki.start(None);
    eddy_ok(
        &broker,
        &["--tls-ca", &pki.ca_arg(), "topic", "create", "ck-ssl", "--partitions", "3"],
    );
    let kafka = broker.kafka_addr().to_string();
    let ca_setting = format!("ssl.ca.location={}", pki.ca_arg());
    let ssl = ["-X", "security.protocol=SSL", "-X", &ca_setting];
    let mut extra = vec!["--idempotent"];
    extra.extend(ssl);
    let sent = produce(Lib::Confluent, &kafka, "ck-ssl", RECORDS, seed(), &extra);
    let count = RECORDS.to_string();
    let mut args = vec!["--topic", "ck-ssl", "--count", &count];
    args.extend(ssl);
    let lines = run_client(Lib::Confluent, "consume", &kafka, &args);
    let read: Vec<Rec> = events(&lines, "record").map(Rec::from_json).collect();
    assert_same_records(&sent, &read, "confluent-kafka read back over SSL");
}

#[test]
fn https_serves_health_and_metrics_and_tells_plain_http_to_use_https() {
    let pki = Pki::new(Validity::Current);
    let broker = pki.start(None);
    let config = client_config(&pki.ca_file, None);
    let health = https_get(broker.http_addr(), config.clone(), "/health");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let metrics = https_get(broker.http_addr(), config, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("eddy_connections"), "{}", tail(&metrics.body, 2000));
    let plain = eddy_tests::http::get(broker.http_addr(), "/health");
    assert_eq!(
        (plain.status, plain.body.as_str()),
        (400, "this listener requires HTTPS: use https:// in the URL\n")
    );
}

#[test]
fn plaintext_clients_on_tls_ports_are_refused_with_a_clear_error() {
    let pki = Pki::new(Validity::Current);
    let broker = pki.start(None);
    let addr = broker.addr();
    let error = eddy_fails(&broker, &["topic", "list"]);
    assert_eq!(
        error,
        format!(
            "eddy: connecting to {addr}: broker error TLS_REQUIRED: this listener requires TLS: \
             connect with TLS (eddy --tls-ca FILE)\n"
        )
    );
    // A Kafka client without security.protocol=ssl gets the connection closed; librdkafka
    // itself suspects the security protocol.
    let mut kcat = kcat_command(&broker.kafka_addr().to_string());
    kcat.args(["-L", "-m", "3"]);
    let run = run_to_end(kcat, CLIENT_LIMIT);
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("connecting to a SSL listener?"),
        "kcat: {}",
        tail(&run.stderr, 4000)
    );
    let log = stop(broker);
    for expected in [
        "refusing a plaintext client on the TLS port (an eddy client without --tls-ca?) \
         listener=native peer=127.0.0.1:",
        "refusing a plaintext client on the TLS port (a Kafka client without \
         security.protocol=SSL?) listener=kafka peer=127.0.0.1:",
    ] {
        assert!(log.contains(expected), "no {expected:?} in the log:\n{}", tail(&log, 4000));
    }
}

#[test]
fn a_tls_client_on_a_plaintext_port_is_told_the_broker_did_not_answer_with_tls() {
    let pki = Pki::new(Validity::Current);
    let broker = BrokerProcess::start(&pki.path("data"), &[]);
    let addr = broker.addr();
    let error = eddy_fails(&broker, &["--tls-ca", &pki.ca_arg(), "topic", "list"]);
    assert_eq!(
        error,
        format!(
            "eddy: connecting to {addr}: TLS with {addr}: the broker did not answer with TLS \
             (is its listener plaintext?)\n"
        )
    );
}

/// eddy's client and kcat both refuse the broker's certificate, with these words, and each
/// tells the broker why with `alert` (rustls and OpenSSL alike), which the broker logs.
fn assert_refused(pki: &Pki, trusted_ca: &Path, eddy_reason: &str, alert: &str) {
    let broker = pki.start(None);
    let addr = broker.addr();
    let error = eddy_fails(&broker, &["--tls-ca", &text(trusted_ca), "topic", "list"]);
    assert_eq!(error, format!("eddy: connecting to {addr}: TLS with {addr}: {eddy_reason}\n"));
    let run =
        run_to_end(kcat_ssl(broker.kafka_addr(), trusted_ca, &["-L", "-m", "3"]), CLIENT_LIMIT);
    assert!(!run.status.success());
    // librdkafka words the failure in two ways, depending on which of its threads reports it
    // first; OpenSSL's reason is in both.
    let kcat_reason = "error:0A000086:SSL routines::certificate verify failed";
    assert!(run.stderr.contains(kcat_reason), "kcat: {}", tail(&run.stderr, 4000));
    let log = stop(broker);
    for listener in ["native", "kafka"] {
        let why = format!("error=the client refused the broker's certificate (alert {alert})");
        let failed = format!("TLS handshake failed listener={listener} peer=");
        let found = log.lines().any(|l| l.contains(&failed) && l.ends_with(&why));
        assert!(found, "no {failed:?} line ending {why:?}:\n{}", tail(&log, 4000));
    }
}

#[test]
fn a_broker_certificate_from_an_untrusted_ca_is_refused() {
    let pki = Pki::new(Validity::Current);
    let other = Ca::new("some-other-ca").write(&pki.path("other-ca.pem"));
    assert_refused(
        &pki,
        &other,
        "the broker's certificate is not signed by a trusted CA (unknown issuer)",
        "UnknownCA",
    );
}

#[test]
fn an_expired_broker_certificate_is_refused() {
    let pki = Pki::new(Validity::Expired);
    assert_refused(
        &pki,
        &pki.ca_file,
        "the broker's certificate has expired",
        "CertificateExpired",
    );
}

#[test]
fn a_broker_certificate_for_another_name_is_refused() {
    let pki = Pki::new(Validity::Current);
    let broker = pki.start(None);
    let addr = broker.addr();
    let args = ["--tls-ca", &pki.ca_arg(), "--tls-server-name", "broker.example", "topic", "list"];
    let error = eddy_fails(&broker, &args);
    assert_eq!(
        error,
        format!(
            "eddy: connecting to {addr}: TLS with {addr}: the broker's certificate is not valid \
             for the name broker.example (it is for 127.0.0.1, localhost)\n"
        )
    );
    // By name, `localhost` is in the certificate.
    let args = ["--tls-ca", &pki.ca_arg(), "--tls-server-name", "localhost", "topic", "list"];
    eddy_ok(&broker, &args);
}

#[test]
fn a_client_certificate_signed_by_the_client_ca_is_required() {
    let pki = Pki::new(Validity::Current);
    let clients = Ca::new("eddy-clients-ca");
    let clients_ca = clients.write(&pki.path("clients-ca.pem"));
    let (alice_cert, alice_key) = clients.client("alice", 10).write(pki.dir.path(), "alice");
    let stranger = Ca::new("stranger-ca").client("mallory", 11);
    let (mallory_cert, mallory_key) = stranger.write(pki.dir.path(), "mallory");
    let broker = pki.start(Some(&clients_ca));
    let (addr, ca) = (broker.addr(), pki.ca_arg());
    let refused = |args: &[&str]| {
        let mut all = vec!["--tls-ca", ca.as_str()];
        all.extend(args);
        all.extend(["topic", "list"]);
        eddy_fails(&broker, &all)
    };
    assert_eq!(
        refused(&[]),
        format!(
            "eddy: connecting to {addr}: TLS with {addr}: the broker requires a client \
             certificate and none was presented\n"
        )
    );
    assert_eq!(
        refused(&["--tls-cert", &text(&mallory_cert), "--tls-key", &text(&mallory_key)]),
        format!(
            "eddy: connecting to {addr}: TLS with {addr}: the broker refused the client \
             certificate (alert UnknownCA)\n"
        )
    );
    let alice = ["--tls-ca", &ca, "--tls-cert", &text(&alice_cert), "--tls-key", &text(&alice_key)];
    let mut create = alice.to_vec();
    create.extend(["topic", "create", "mutual"]);
    eddy_ok(&broker, &create);

    // kcat: refused without a certificate, served with alice's.
    let run =
        run_to_end(kcat_ssl(broker.kafka_addr(), &pki.ca_file, &["-L", "-m", "3"]), CLIENT_LIMIT);
    assert!(!run.status.success(), "kcat without a client certificate was served");
    let mut produce = kcat_ssl(broker.kafka_addr(), &pki.ca_file, &["-P", "-t", "mutual", "-l"]);
    produce.args(["-X", &format!("ssl.certificate.location={}", text(&alice_cert))]);
    produce.args(["-X", &format!("ssl.key.location={}", text(&alice_key))]);
    let file = pki.path("lines.txt");
    std::fs::write(&file, "one\ntwo\n").unwrap();
    produce.arg(&file);
    run_to_end(produce, CLIENT_LIMIT).ok();
    let mut consume = alice.to_vec();
    consume.extend(["consume", "mutual"]);
    assert_eq!(eddy_ok(&broker, &consume), ["one", "two"]);

    let log = stop(broker);
    for expected in [
        "TLS handshake failed listener=native peer=127.0.0.1:",
        "TLS handshake failed listener=kafka peer=127.0.0.1:",
        "error=the client presented no certificate (tls.client_ca_file requires one)",
        "error=the client certificate is not signed by tls.client_ca_file (unknown issuer)",
    ] {
        assert!(log.contains(expected), "no {expected:?} in the log:\n{}", tail(&log, 6000));
    }
    // Both listeners authenticated alice by her certificate's common name.
    for listener in ["native", "kafka"] {
        let established = format!("TLS connection established listener={listener} peer=");
        let found =
            log.lines().any(|l| l.contains(&established) && l.ends_with("principal=User:alice"));
        assert!(found, "no {established:?} as User:alice in the log:\n{}", tail(&log, 6000));
    }
}

#[test]
fn a_client_certificate_user_holds_at_most_its_share_of_connections() {
    let pki = Pki::new(Validity::Current);
    let clients = Ca::new("eddy-clients-ca");
    let clients_ca = clients.write(&pki.path("clients-ca.pem"));
    let (alice_cert, alice_key) = clients.client("alice", 10).write(pki.dir.path(), "alice");
    let (bob_cert, bob_key) = clients.client("bob", 11).write(pki.dir.path(), "bob");
    let share = [("EDDY_AUTH_MAX_CONNECTIONS_PER_PRINCIPAL", "2")];
    let broker = pki.start_with(Some(&clients_ca), &share);
    let addr = broker.addr().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let connect = |cert: &Path, key: &Path| {
        let tls = TlsOptions::from_files(&pki.ca_file, Some((cert, key))).unwrap();
        let options = ConnectionOptions { tls: Some(tls), ..ConnectionOptions::default() };
        runtime.block_on(Connection::connect(&addr, options))
    };
    let held =
        [connect(&alice_cert, &alice_key).unwrap(), connect(&alice_cert, &alice_key).unwrap()];
    let third = connect(&alice_cert, &alice_key).map(|_| ()).unwrap_err().to_string();
    assert!(
        third.contains("TOO_MANY_CONNECTIONS") && third.contains("User:alice already has 2"),
        "{third}"
    );
    // Another user has a share of its own; alice's place comes back when one of hers closes.
    connect(&bob_cert, &bob_key).unwrap();
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(30);
    while connect(&alice_cert, &alice_key).is_err() {
        assert!(Instant::now() < deadline, "alice's places did not come back");
        std::thread::yield_now();
    }
}

#[test]
fn sighup_rotates_the_certificate_while_open_connections_keep_working() {
    let pki = Pki::new(Validity::Current);
    let mut broker = pki.start(None);
    let config = client_config(&pki.ca_file, None);
    let first = presented_certificate(broker.addr(), config.clone());
    assert_eq!(subject_and_serial(&first), ("CN=eddy-broker".into(), "01".into()));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let options = ConnectionOptions {
        tls: Some(TlsOptions::from_files(&pki.ca_file, None).unwrap()),
        ..ConnectionOptions::default()
    };
    let addr = broker.addr().to_string();
    let admin = runtime.block_on(async {
        Admin::new(std::sync::Arc::new(Connection::connect(&addr, options).await.unwrap()))
    });
    runtime.block_on(admin.create_topic("before", Default::default())).unwrap();

    // Rotate: a new key and certificate (serial 2), then SIGHUP.
    let second = pki.ca.broker(2, Validity::Current);
    second.write(pki.dir.path(), "broker");
    signal(broker.pid(), libc::SIGHUP).unwrap();
    let line = broker.next_line(deadline_in(Duration::from_secs(30))).unwrap();
    assert_eq!(line.as_deref(), Some("eddy tls reloaded"));
    for listener in [broker.addr(), broker.kafka_addr(), broker.http_addr()] {
        let now = presented_certificate(listener, config.clone());
        assert_eq!(now, second.der, "{listener} presents the new certificate");
        assert_eq!(subject_and_serial(&now), ("CN=eddy-broker".into(), "02".into()));
    }
    // The connection opened before the reload carries on.
    runtime.block_on(admin.create_topic("after", Default::default())).unwrap();
    let mut topics = runtime.block_on(admin.list_topics()).unwrap();
    topics.retain(|t| !t.starts_with("__"));
    topics.sort();
    assert_eq!(topics, ["after", "before"]);

    // A reload from a bad file keeps the certificate in force and names the file.
    write_replacing(&pki.key, "this is not a key\n");
    signal(broker.pid(), libc::SIGHUP).unwrap();
    let line = broker.next_line(deadline_in(Duration::from_secs(30))).unwrap();
    let why = format!(
        "the TLS key file {} is not PEM: it holds no private key \
         (\"-----BEGIN PRIVATE KEY-----\") block",
        pki.key.display()
    );
    assert_eq!(line, Some(format!("eddy tls reload failed: {why}")));
    assert_eq!(presented_certificate(broker.addr(), config), second.der);
    runtime.block_on(admin.list_topics()).unwrap();
    drop(admin);
    let log = stop(broker);
    assert!(log.contains("TLS reload failed"), "{}", tail(&log, 4000));
    assert!(log.contains(&why), "{}", tail(&log, 4000));
}

/// Opens a connection to `addr`, sends `bytes`, and returns how long the broker took to close
/// it (end of stream or reset).
fn closed_after(addr: SocketAddr, bytes: &[u8]) -> Duration {
    let started = Instant::now();
    let mut socket = TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    socket.write_all(bytes).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return started.elapsed(),
            Err(e) => panic!("{addr}: the connection was not closed: {e}"),
        }
    }
}

#[test]
fn an_unfinished_tls_handshake_is_closed_after_handshake_timeout_ms() {
    let pki = Pki::new(Validity::Current);
    let env = [
        ("EDDY_TLS_CERT_FILE", text(&pki.cert)),
        ("EDDY_TLS_KEY_FILE", text(&pki.key)),
        ("EDDY_HANDSHAKE_TIMEOUT_MS", "400".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let broker = BrokerProcess::start(&pki.path("data"), &env);
    let hello = eddy_tests::tls::client_hello(client_config(&pki.ca_file, None));
    for addr in [broker.addr(), broker.kafka_addr()] {
        for sent in [&hello[..hello.len() / 2], &[]] {
            let took = closed_after(addr, sent);
            assert!(
                took >= Duration::from_millis(350) && took < Duration::from_secs(10),
                "{addr}: closed after {took:?} with {} bytes of a ClientHello sent",
                sent.len()
            );
        }
    }
}

/// `eddy serve` with these TLS files: it must fail to start with exactly `error`.
fn refuses_to_start(dir: &Path, cert: &Path, key: &Path, error: &str) {
    let mut command = Command::new(eddy_binary());
    command.args(["serve", "--data-dir"]).arg(dir.join("data"));
    command.args(["--listen", "127.0.0.1:0", "--kafka-listen", "off", "--http-listen", "off"]);
    command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
    let run = run_to_end(command, CLIENT_LIMIT);
    assert!(!run.status.success(), "eddy serve started with {cert:?} and {key:?}");
    assert_eq!(run.stderr, format!("eddy: {error}\n"));
}

#[test]
fn bad_tls_files_stop_the_start_with_an_error_naming_the_file() {
    let pki = Pki::new(Validity::Current);
    let dir = pki.dir.path();
    let missing = pki.path("missing.pem");
    refuses_to_start(
        dir,
        &missing,
        &pki.key,
        &format!(
            "cannot read the TLS certificate file {}: No such file or directory (os error 2)",
            missing.display()
        ),
    );
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    refuses_to_start(
        dir,
        &garbage,
        &pki.key,
        &format!(
            "the TLS certificate file {} is not PEM: it holds no \"-----BEGIN CERTIFICATE-----\" \
             block",
            garbage.display()
        ),
    );
    let (_, other_key) = pki.ca.broker(3, Validity::Current).write(dir, "other");
    refuses_to_start(
        dir,
        &pki.cert,
        &other_key,
        &format!(
            "the TLS key file {} does not match the certificate in {}",
            other_key.display(),
            pki.cert.display()
        ),
    );
}
