use eddy_client::sasl::{ScramClient, plain_token};
use eddy_storage::{Log, LogConfig};

use super::*;

async fn users_with_alice() -> (tempfile::TempDir, Arc<Users>) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let users = Arc::new(Users::open(Arc::new(log)).unwrap());
    users.create("alice", "wonderland", &[], 0).await.unwrap();
    (dir, users)
}

/// A whole SCRAM exchange between eddy's client and this server side.
async fn scram(
    users: &Arc<Users>,
    scram: Scram,
    user: &str,
    password: &str,
) -> Result<Principal, Refused> {
    let mut exchange = Exchange::new(users.clone(), scram.mechanism());
    let (client, first) = ScramClient::start(scram, user).unwrap();
    let Progress::Challenge(server_first) = exchange.step(&first).await? else {
        panic!("no challenge")
    };
    let (finish, last) = client.respond(&server_first, password).unwrap();
    match exchange.step(&last).await? {
        Progress::Done { principal, bytes } => {
            finish.verify(&bytes).expect("the server proves it knows the credential");
            Ok(principal)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn scram_with_the_right_password_and_refusals_that_say_nothing() {
    let (_dir, users) = users_with_alice().await;
    for s in [Scram::Sha256, Scram::Sha512] {
        assert_eq!(
            scram(&users, s, "alice", "wonderland").await.unwrap(),
            Principal::user("alice")
        );
        let wrong = scram(&users, s, "alice", "looking-glass").await.unwrap_err();
        let unknown = scram(&users, s, "mallory", "wonderland").await.unwrap_err();
        assert_eq!(wrong.message(), unknown.message());
        assert_eq!(
            wrong.message(),
            format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                s.mechanism()
            )
        );
    }
}

#[tokio::test]
async fn plain_with_the_right_password_only() {
    let (_dir, users) = users_with_alice().await;
    let mut ok = Exchange::new(users.clone(), Mechanism::Plain);
    let done = ok.step(&plain_token("alice", "wonderland")).await.unwrap();
    assert!(
        matches!(done, Progress::Done { principal, .. } if principal == Principal::user("alice"))
    );
    assert!(ok.step(b"more").await.is_err(), "nothing is taken after the end");
    for token in [
        plain_token("alice", "nope"),
        plain_token("nobody", "wonderland"),
        b"bob\0alice\0wonderland".to_vec(),
        b"\0alice".to_vec(),
        b"\0alice\0wonderland\0".to_vec(),
        vec![0; MAX_TOKEN_BYTES + 1],
    ] {
        let mut exchange = Exchange::new(users.clone(), Mechanism::Plain);
        assert!(exchange.step(&token).await.is_err(), "{token:?} accepted");
    }
}

#[tokio::test]
async fn tampered_scram_messages_are_refused() {
    let (_dir, users) = users_with_alice().await;
    let (client, first) = ScramClient::start(Scram::Sha256, "alice").unwrap();
    let mut exchange = Exchange::new(users.clone(), Mechanism::ScramSha256);
    let Progress::Challenge(server_first) = exchange.step(&first).await.unwrap() else { panic!() };
    let (_, last) = client.respond(&server_first, "wonderland").unwrap();
    // Another nonce in client-final: refused, and the exchange is over.
    let text = String::from_utf8(last).unwrap();
    let tampered = text.replacen(",p=", "x,p=", 1);
    assert!(exchange.step(tampered.as_bytes()).await.is_err());
    assert!(exchange.step(text.as_bytes()).await.is_err());
    for first in [
        "p=tls-unique,,n=alice,r=abc",
        "n,a=bob,n=alice,r=abc",
        "n,,n=alice,r=abc,tokenauth=true",
        "\u{0}",
    ] {
        let mut exchange = Exchange::new(users.clone(), Mechanism::ScramSha512);
        assert!(exchange.step(first.as_bytes()).await.is_err(), "{first:?} accepted");
    }
}

/// librdkafka's client-final: its own nonce again in front of the combined one, signed as sent.
#[tokio::test]
async fn librdkafkas_repeated_client_nonce_is_accepted_as_kafka_does() {
    let (_dir, users) = users_with_alice().await;
    let scram = Scram::Sha512;
    let mut exchange = Exchange::new(users.clone(), scram.mechanism());
    let (c_nonce, bare) = ("abcdefgh", "n=alice,r=abcdefgh");
    let Progress::Challenge(server_first) =
        exchange.step(format!("n,,{bare}").as_bytes()).await.unwrap()
    else {
        panic!("no challenge")
    };
    let server_first = String::from_utf8(server_first).unwrap();
    let first = sasl::messages::ServerFirst::parse(&server_first).unwrap();
    let salted = scram.salted_password(b"wonderland", &first.salt, first.iterations);
    let client_key = scram.hmac(&salted, &[b"Client Key"]);
    let without_proof = format!("c=biws,r={c_nonce}{}", first.nonce);
    let auth = format!("{bare},{server_first},{without_proof}");
    let signature = scram.hmac(&scram.hash(&client_key), &[auth.as_bytes()]);
    let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
    let last = format!("{without_proof},p={}", sasl::b64(&proof));
    let done = exchange.step(last.as_bytes()).await.unwrap();
    assert!(
        matches!(done, Progress::Done { principal, .. } if principal == Principal::user("alice"))
    );
}

#[test]
fn an_unsupported_mechanism_names_the_enabled_ones() {
    assert_eq!(
        unsupported("GSSAPI", &[Mechanism::ScramSha512, Mechanism::Plain]),
        "Unsupported SASL mechanism \"GSSAPI\": this listener enables SCRAM-SHA-512, PLAIN"
    );
}
