//! Authentication on a real `eddy serve` with `auth.enabled` (docs/security.md,
//! "Authentication"), through eddy's CLI, raw native and Kafka frames, and HTTP:
//!
//! - the right credentials work with each mechanism (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN) and
//!   wrong ones are refused with exact messages; a password is never an argument;
//! - `eddy user add/list/passwd/delete`: the old password stops working after `passwd`, a
//!   deleted user is refused, users survive a restart, and no file of the data directory holds
//!   a password; `__users` is invisible to clients;
//! - before authentication a native request is refused `AUTHENTICATION_REQUIRED` and a Kafka
//!   one closes the connection (the broker's log names it);
//! - a connection that starts SASL and never finishes is closed at `handshake_timeout_ms`, on
//!   both listeners, while an authenticated one opened before it stays;
//! - Kafka's SaslHandshake v0 is followed by bare tokens (PLAIN and SCRAM);
//! - each user holds at most `auth.max_connections_per_principal` connections per listener;
//! - HTTP: Basic credentials for the console, `/api` and `/metrics`; `/health` and `/ready` open.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eddy_client::sasl::{Mechanism, Scram, ScramClient};
use eddy_client::{Admin, Connection, ConnectionOptions, Credentials, ErrorCode};
use eddy_protocol::v1::{self, request};
use eddy_tests::broker::{BrokerProcess, eddy_binary};
use eddy_tests::kafka_wire::text;
use eddy_tests::kafka_wire::{KafkaConnection, frame};
use eddy_tests::raw_client::{RawClient, error_code};
use eddy_tests::sasl::{
    ADMIN, ADMIN_PASSWORD, KafkaRefusal, basic, closed_without_answer, eddy_as, eddy_as_fails,
    eddy_as_ok, eddy_env, files_containing, http_get, kafka_authenticate, native_authenticate,
    start_authenticated,
};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, SaslHandshakeRequest, SaslHandshakeResponse,
};

const REFUSED: &str =
    "Authentication failed during authentication due to invalid credentials with SASL mechanism";

#[test]
fn the_cli_with_right_and_wrong_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_authenticated(dir.path(), &[]);
    let addr = broker.addr();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] {
        let topic = format!("t-{}", mechanism.to_ascii_lowercase());
        let args = ["--sasl-mechanism", mechanism, "topic", "create", &topic];
        eddy_as_ok(&broker, ADMIN, ADMIN_PASSWORD, &args);
        let wrong = eddy_as_fails(&broker, ADMIN, "not-the-password", &args);
        assert_eq!(
            wrong,
            format!(
                "eddy: connecting to {addr}: authentication as \"admin\" with {mechanism} failed: \
                 AUTHENTICATION_FAILED: {REFUSED} {mechanism}\n"
            )
        );
        // An unknown user reads exactly as a wrong password.
        let unknown = eddy_as_fails(&broker, "nobody", ADMIN_PASSWORD, &args);
        assert_eq!(unknown, wrong.replace("\"admin\"", "\"nobody\""));
    }
    let listed = eddy_as_ok(&broker, ADMIN, ADMIN_PASSWORD, &["topic", "list"]);
    assert!(listed.iter().any(|l| l == "t-plain"), "{listed:?}");
    assert!(!listed.iter().any(|l| l.contains("__users")), "{listed:?}");

    // The password from a file; never from an argument; none at all is refused before connecting.
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{ADMIN_PASSWORD}\n")).unwrap();
    let file_arg = file.to_str().unwrap();
    let run =
        eddy_env(&broker, &[], &["--user", ADMIN, "--password-file", file_arg, "topic", "list"]);
    assert!(run.success, "{run:?}");
    let run =
        eddy_env(&broker, &[], &["--user", ADMIN, "--password", ADMIN_PASSWORD, "topic", "list"]);
    assert_eq!(
        run.stderr,
        "eddy: --password is not an option: a password in the arguments is visible to every user \
         in ps; put it in EDDY_PASSWORD or in a file named by --password-file\n"
    );
    let run = eddy_env(&broker, &[], &["--user", ADMIN, "topic", "list"]);
    assert_eq!(
        run.stderr,
        "eddy: --user admin needs a password: set EDDY_PASSWORD or give --password-file FILE\n"
    );
    // Without credentials: the broker says what it needs, the CLI how to give it.
    let run = eddy_env(&broker, &[], &["topic", "list"]);
    assert!(!run.success);
    assert_eq!(
        run.stderr,
        "eddy: broker error AUTHENTICATION_REQUIRED: this listener requires authentication: \
         authenticate (SaslHandshake, SaslAuthenticate) before list_topics (give --user NAME, \
         with the password in EDDY_PASSWORD or --password-file)\n"
    );
}

/// `eddy user add NAME` with the new password on stdin (a pipe, as a script gives it).
fn add_user_from_stdin(broker: &BrokerProcess, name: &str, password: &str) {
    let mut child = Command::new(eddy_binary())
        .args(["--broker", &broker.addr().to_string(), "--user", ADMIN, "user", "add", name])
        .env("EDDY_PASSWORD", ADMIN_PASSWORD)
        .env_remove("EDDY_NEW_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start eddy user add");
    let mut stdin = child.stdin.take().expect("a stdin pipe");
    stdin.write_all(format!("{password}\n").as_bytes()).expect("write the password");
    drop(stdin);
    let out = child.wait_with_output().expect("eddy user add finishes");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, format!("created user {name} (SCRAM-SHA-256, SCRAM-SHA-512)\n"));
}

#[test]
fn users_round_trip_survive_a_restart_and_no_password_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = start_authenticated(&data, &[]);
    let admin = |args: &[&str]| eddy_as_ok(&broker, ADMIN, ADMIN_PASSWORD, args);
    let (bob_1, bob_2, carol) = ("bob-first-Pw", "bob-second-Pw", "carol-Pw-42");
    let run = eddy_env(
        &broker,
        &[("EDDY_PASSWORD", ADMIN_PASSWORD), ("EDDY_NEW_PASSWORD", bob_1)],
        &["--user", ADMIN, "user", "add", "bob", "--mechanism", "SCRAM-SHA-256"],
    );
    assert_eq!(run.stdout, ["created user bob (SCRAM-SHA-256)"], "{run:?}");
    add_user_from_stdin(&broker, "carol", carol);
    assert_eq!(
        admin(&["user", "list"]),
        [
            "admin (SCRAM-SHA-256, SCRAM-SHA-512)",
            "bob (SCRAM-SHA-256)",
            "carol (SCRAM-SHA-256, SCRAM-SHA-512)"
        ]
    );
    // bob has only a SCRAM-SHA-256 credential: PLAIN is checked against it; SCRAM-SHA-512 is not.
    eddy_as_ok(&broker, "bob", bob_1, &["--sasl-mechanism", "PLAIN", "topic", "list"]);
    eddy_as_ok(&broker, "bob", bob_1, &["--sasl-mechanism", "SCRAM-SHA-256", "topic", "list"]);
    eddy_as_fails(&broker, "bob", bob_1, &["topic", "list"]);
    let again = eddy_env(
        &broker,
        &[("EDDY_PASSWORD", ADMIN_PASSWORD), ("EDDY_NEW_PASSWORD", "x")],
        &["--user", ADMIN, "user", "add", "bob"],
    );
    assert_eq!(again.stderr, "eddy: broker error USER_EXISTS: user \"bob\" exists\n");

    let file = dir.path().join("new-password");
    std::fs::write(&file, format!("{bob_2}\n")).unwrap();
    let changed = admin(&["user", "passwd", "bob", "--new-password-file", file.to_str().unwrap()]);
    assert_eq!(changed, ["changed the password of user bob (SCRAM-SHA-256)"]);
    let old = eddy_as_fails(&broker, "bob", bob_1, &["--sasl-mechanism", "PLAIN", "topic", "list"]);
    assert!(old.contains(REFUSED), "{old}");
    eddy_as_ok(&broker, "bob", bob_2, &["--sasl-mechanism", "SCRAM-SHA-256", "topic", "list"]);
    assert_eq!(admin(&["user", "delete", "bob"]), ["deleted user bob"]);
    let deleted = eddy_as_fails(
        &broker,
        "bob",
        bob_2,
        &["--sasl-mechanism", "SCRAM-SHA-256", "topic", "list"],
    );
    assert!(deleted.contains(REFUSED), "{deleted}");
    let missing = eddy_as(&broker, ADMIN, ADMIN_PASSWORD, &["user", "delete", "bob"]);
    assert_eq!(missing.stderr, "eddy: broker error UNKNOWN_USER: unknown user \"bob\"\n");

    // __users is not a topic to any client.
    let mut raw = RawClient::connect(broker.addr());
    raw.handshake();
    native_authenticate(&mut raw, Mechanism::ScramSha512, ADMIN, ADMIN_PASSWORD).unwrap();
    let fetch = raw.call(eddy_tests::raw_client::fetch_request("__users", 0, 0, 0, 0));
    let result = eddy_tests::raw_client::single_fetch_result(match fetch.body {
        Some(v1::response::Body::Fetch(f)) => f,
        other => panic!("{other:?}"),
    });
    assert_eq!(result.error.map(|e| e.error_code()), Some(ErrorCode::UnknownTopic));

    // A restart without the bootstrap variable: everyone is still there, carol still works.
    broker.terminate();
    let broker = BrokerProcess::start(&data, &[("EDDY_AUTH_ENABLED", "true")]);
    eddy_as_ok(&broker, "carol", carol, &["topic", "list"]);
    eddy_as_ok(&broker, ADMIN, ADMIN_PASSWORD, &["--sasl-mechanism", "PLAIN", "topic", "list"]);
    let listed = eddy_as_ok(&broker, ADMIN, ADMIN_PASSWORD, &["user", "list"]);
    assert_eq!(
        listed,
        ["admin (SCRAM-SHA-256, SCRAM-SHA-512)", "carol (SCRAM-SHA-256, SCRAM-SHA-512)"]
    );
    for password in [ADMIN_PASSWORD, bob_1, bob_2, carol] {
        let found = files_containing(&data, password.as_bytes());
        assert!(found.is_empty(), "{password:?} is stored in {found:?}");
    }
}

#[test]
fn requests_before_authentication_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start_authenticated(dir.path(), &[]);

    // Native: refused with AUTHENTICATION_REQUIRED, and the connection stays to authenticate.
    let mut raw = RawClient::connect(broker.addr());
    raw.handshake();
    let refused = raw.call(request::Body::ListTopics(v1::ListTopicsRequest {}));
    assert_eq!(error_code(&refused), Some(ErrorCode::AuthenticationRequired));
    assert_eq!(
        refused.error.unwrap().message,
        "this listener requires authentication: authenticate (SaslHandshake, SaslAuthenticate) \
         before list_topics"
    );
    let principal = native_authenticate(&mut raw, Mechanism::ScramSha256, ADMIN, ADMIN_PASSWORD);
    assert_eq!(principal.unwrap(), "User:admin");
    assert_eq!(error_code(&raw.call(request::Body::ListTopics(v1::ListTopicsRequest {}))), None);
    let mut raw = RawClient::connect(broker.addr());
    raw.handshake();
    let principal = native_authenticate(&mut raw, Mechanism::Plain, ADMIN, ADMIN_PASSWORD);
    assert_eq!(principal.unwrap(), "User:admin");
    // A mechanism that is not enabled: refused, the enabled ones named, the connection closed.
    let mut raw = RawClient::connect(broker.addr());
    raw.handshake();
    let gssapi = raw.call(request::Body::SaslHandshake(v1::SaslHandshakeRequest {
        mechanism: "GSSAPI".into(),
    }));
    assert_eq!(
        gssapi.error.unwrap().message,
        "Unsupported SASL mechanism \"GSSAPI\": this listener enables SCRAM-SHA-256, \
         SCRAM-SHA-512, PLAIN"
    );
    let after = raw.recv_until_closed(eddy_tests::child::deadline_in(Duration::from_secs(10)));
    assert!(after.unwrap().is_empty(), "the connection closes after a refusal");

    // Kafka: ApiVersions is answered, Metadata closes the connection without an answer.
    let mut kafka = KafkaConnection::connect(broker.kafka_addr());
    let _: kafka_protocol::messages::ApiVersionsResponse = kafka.call(
        ApiKey::ApiVersions,
        3,
        &kafka_protocol::messages::ApiVersionsRequest::default(),
    );
    let mut stream = TcpStream::connect(broker.kafka_addr()).unwrap();
    stream.write_all(&frame(ApiKey::Metadata, 12, 1, &MetadataRequest::default())).unwrap();
    assert!(closed_without_answer(&mut stream, Duration::from_secs(10)));
    // Wrong credentials on the Kafka listener: error 58 with Kafka's words, then closed.
    let refusal = kafka_authenticate(&mut kafka, Mechanism::ScramSha512, ADMIN, "wrong");
    assert_eq!(refusal, Err(KafkaRefusal::Authenticate(58, format!("{REFUSED} SCRAM-SHA-512"))));
    assert!(closed_without_answer(kafka.stream_mut(), Duration::from_secs(10)));
    // A mechanism that is not enabled: UNSUPPORTED_SASL_MECHANISM with the enabled ones.
    let mut gssapi = KafkaConnection::connect(broker.kafka_addr());
    let handshake = SaslHandshakeRequest::default().with_mechanism(text("GSSAPI"));
    let answer: SaslHandshakeResponse = gssapi.call(ApiKey::SaslHandshake, 1, &handshake);
    assert_eq!(answer.error_code, 33);
    let names: Vec<String> = answer.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(names, ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]);
    assert!(closed_without_answer(gssapi.stream_mut(), Duration::from_secs(10)));
    broker.terminate();
    let log = broker.stderr();
    assert!(log.contains("Metadata request before authentication"), "{log}");
}

#[test]
fn an_unfinished_authentication_is_closed_at_the_handshake_deadline() {
    const DEADLINE: Duration = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let deadline_ms = DEADLINE.as_millis().to_string();
    let broker = start_authenticated(dir.path(), &[("EDDY_HANDSHAKE_TIMEOUT_MS", &deadline_ms)]);
    let mut done = RawClient::connect(broker.addr());
    done.handshake();
    let principal = native_authenticate(&mut done, Mechanism::ScramSha256, ADMIN, ADMIN_PASSWORD);
    assert_eq!(principal.unwrap(), "User:admin");

    // Native: ApiVersions and SaslHandshake are answered; no SaslAuthenticate follows.
    let opened = Instant::now();
    let mut native = RawClient::connect(broker.addr());
    native.handshake();
    let started = native.call(request::Body::SaslHandshake(v1::SaslHandshakeRequest {
        mechanism: "SCRAM-SHA-256".into(),
    }));
    assert_eq!(error_code(&started), None, "{started:?}");
    // Kafka: the same, SaslHandshake v1 answered and nothing after it.
    let mut kafka = KafkaConnection::connect(broker.kafka_addr());
    let handshake = SaslHandshakeRequest::default().with_mechanism(text("PLAIN"));
    let answer: SaslHandshakeResponse = kafka.call(ApiKey::SaslHandshake, 1, &handshake);
    assert_eq!(answer.error_code, 0);

    let limit = DEADLINE + Duration::from_secs(20);
    let after = native.recv_until_closed(eddy_tests::child::deadline_in(limit)).unwrap();
    assert!(after.is_empty(), "nothing more is answered: {after:?}");
    let native_closed = opened.elapsed();
    assert!(closed_without_answer(kafka.stream_mut(), limit), "the Kafka connection stayed");
    let kafka_closed = opened.elapsed();
    for (listener, closed) in [("native", native_closed), ("kafka", kafka_closed)] {
        assert!(
            closed + Duration::from_millis(10) >= DEADLINE && closed < limit,
            "the {listener} connection closed {closed:?} after it opened"
        );
    }
    // The authenticated connection, older than both, is still served.
    let listed = done.call(request::Body::ListTopics(v1::ListTopicsRequest {}));
    assert_eq!(error_code(&listed), None, "{listed:?}");
}

/// Writes a bare SASL token (after SaslHandshake v0) and reads the bare answer.
fn bare_token(conn: &mut KafkaConnection, token: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let stream = conn.stream_mut();
    stream.write_all(&(token.len() as i32).to_be_bytes())?;
    stream.write_all(token)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut answer = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut answer)?;
    Ok(answer)
}

#[test]
fn kafka_sasl_handshake_v0_carries_bare_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_authenticated(dir.path(), &[]);
    let handshake = |conn: &mut KafkaConnection, mechanism: &str| {
        let request = SaslHandshakeRequest::default().with_mechanism(text(mechanism));
        let answer: SaslHandshakeResponse = conn.call(ApiKey::SaslHandshake, 0, &request);
        assert_eq!(answer.error_code, 0);
    };
    // PLAIN: one token, an empty answer, then requests run as the user.
    let mut conn = KafkaConnection::connect(broker.kafka_addr());
    handshake(&mut conn, "PLAIN");
    let token = eddy_client::sasl::plain_token(ADMIN, ADMIN_PASSWORD);
    assert_eq!(bare_token(&mut conn, &token).unwrap(), b"");
    let every_topic = MetadataRequest::default().with_topics(None);
    let metadata: kafka_protocol::messages::MetadataResponse =
        conn.call(ApiKey::Metadata, 12, &every_topic);
    assert_eq!(metadata.brokers.len(), 1);
    // SCRAM: client-first and client-final as bare tokens; the server's signature checks out.
    let mut conn = KafkaConnection::connect(broker.kafka_addr());
    handshake(&mut conn, "SCRAM-SHA-256");
    let (client, first) = ScramClient::start(Scram::Sha256, ADMIN).unwrap();
    let server_first = bare_token(&mut conn, &first).unwrap();
    let (finish, last) = client.respond(&server_first, ADMIN_PASSWORD).unwrap();
    finish.verify(&bare_token(&mut conn, &last).unwrap()).unwrap();
    let _: kafka_protocol::messages::MetadataResponse =
        conn.call(ApiKey::Metadata, 12, &every_topic);
    // A wrong password: no answer, the connection closes.
    let mut conn = KafkaConnection::connect(broker.kafka_addr());
    handshake(&mut conn, "PLAIN");
    let token = eddy_client::sasl::plain_token(ADMIN, "wrong");
    assert!(bare_token(&mut conn, &token).is_err(), "a refused bare token closes the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_has_a_share_of_the_connections() {
    let dir = tempfile::tempdir().unwrap();
    let limit = [("EDDY_AUTH_MAX_CONNECTIONS_PER_PRINCIPAL", "2")];
    let broker = start_authenticated(dir.path(), &limit);
    let addr = broker.addr().to_string();
    let options = |user: &str, password: &str| ConnectionOptions {
        credentials: Some(Credentials::new(user, password)),
        ..ConnectionOptions::default()
    };
    let first =
        Admin::new(Connection::connect(&addr, options(ADMIN, ADMIN_PASSWORD)).await.unwrap());
    let _second = Connection::connect(&addr, options(ADMIN, ADMIN_PASSWORD)).await.unwrap();
    let third = Connection::connect(&addr, options(ADMIN, ADMIN_PASSWORD)).await.unwrap_err();
    assert_eq!(third.code(), Some(ErrorCode::TooManyConnections));
    assert!(
        third.to_string().ends_with(
            "TOO_MANY_CONNECTIONS: User:admin already has 2 connections to this listener \
             (auth.max_connections_per_principal)"
        ),
        "{third}"
    );
    // Another user has a share of its own.
    first.create_user("erin", "erin-Pw", &[], 0).await.unwrap();
    let erin = Connection::connect(&addr, options("erin", "erin-Pw")).await.unwrap();
    // A closed connection gives its place back.
    drop(first);
    let again = async {
        loop {
            match Connection::connect(&addr, options(ADMIN, ADMIN_PASSWORD)).await {
                Ok(c) => return c,
                Err(e) if e.code() == Some(ErrorCode::TooManyConnections) => {
                    tokio::task::yield_now().await
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    let _again = tokio::time::timeout(Duration::from_secs(10), again).await.unwrap();
    drop(erin);

    // The Kafka listener has its own budget, with the same share per user.
    let kafka = broker.kafka_addr();
    let _k1 = eddy_tests::sasl::kafka_connection_as(kafka, Mechanism::Plain, ADMIN, ADMIN_PASSWORD);
    let _k2 = eddy_tests::sasl::kafka_connection_as(kafka, Mechanism::Plain, ADMIN, ADMIN_PASSWORD);
    let mut k3 = KafkaConnection::connect(kafka);
    let refused = kafka_authenticate(&mut k3, Mechanism::ScramSha256, ADMIN, ADMIN_PASSWORD);
    assert_eq!(
        refused,
        Err(KafkaRefusal::Authenticate(
            58,
            "User:admin already has 2 connections to this listener \
             (auth.max_connections_per_principal)"
                .into()
        ))
    );
}

#[test]
fn http_needs_basic_credentials_but_for_health_and_ready() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_authenticated(dir.path(), &[]);
    let http = broker.http_addr();
    let right = basic(ADMIN, ADMIN_PASSWORD);
    let wrong = basic(ADMIN, "wrong");
    assert_eq!(http_get(http, "/health", None).status, 200);
    assert_eq!(http_get(http, "/ready", None).status, 200);
    for path in ["/", "/api/topics", "/metrics", "/api/sql/push?sql=x"] {
        let none = http_get(http, path, None);
        assert_eq!(none.status, 401, "{path}: {none:?}");
        let challenge = none.headers.iter().find(|(k, _)| k == "www-authenticate");
        assert_eq!(
            challenge.map(|(_, v)| v.as_str()),
            Some("Basic realm=\"eddy\", charset=\"UTF-8\"")
        );
        assert_eq!(http_get(http, path, Some(&wrong)).status, 401, "{path}");
        assert_eq!(
            http_get(http, "/api/topics", Some(&basic("nobody", ADMIN_PASSWORD))).status,
            401
        );
    }
    for path in ["/", "/api/topics", "/metrics"] {
        let ok = http_get(http, path, Some(&right));
        assert_eq!(ok.status, 200, "{path}: {ok:?}");
    }
    // Twice more: the second comes from the cache of checked headers, still right.
    assert_eq!(http_get(http, "/api/groups", Some(&right)).status, 200);
    let topics = http_get(http, "/api/topics", Some(&right));
    assert!(!topics.body.contains("__users"), "{}", topics.body);
}
