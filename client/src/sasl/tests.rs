use super::messages::{ClientFinal, ClientFirst, ServerFirst, escape_name, unescape_name};
use super::*;

/// RFC 7677, section 3: user "user", password "pencil".
const C_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

#[test]
fn the_rfc_7677_exchange_byte_for_byte() {
    let (client, first) = ScramClient::start_with_nonce(Scram::Sha256, "user", C_NONCE.into());
    assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let (finish, last) = client.respond(SERVER_FIRST.as_bytes(), "pencil").unwrap();
    assert_eq!(String::from_utf8(last).unwrap(), CLIENT_FINAL);
    finish.verify(SERVER_FINAL.as_bytes()).unwrap();
}

#[test]
fn a_false_server_is_caught() {
    let (client, _) = ScramClient::start_with_nonce(Scram::Sha256, "user", C_NONCE.into());
    let (finish, _) = client.respond(SERVER_FIRST.as_bytes(), "pencil").unwrap();
    let forged = "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    assert_eq!(finish.verify(forged.as_bytes()), Err(SaslError::BadServerSignature));
    let (client, _) = ScramClient::start_with_nonce(Scram::Sha256, "user", C_NONCE.into());
    let other_nonce = SERVER_FIRST.replace("rOprNGfw", "XOprNGfw");
    assert_eq!(
        client.respond(other_nonce.as_bytes(), "pencil").unwrap_err(),
        SaslError::NonceMismatch
    );
}

#[test]
fn stored_and_server_keys_match_the_rfc() {
    let salt = unb64("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let keys = Scram::Sha256.keys(&Scram::Sha256.salted_password(b"pencil", &salt, 4096));
    // The server's side of the same exchange, from the keys alone.
    let first = ClientFirst::parse("n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
    let last = ClientFinal::parse(CLIENT_FINAL).unwrap();
    let auth = format!("{},{SERVER_FIRST},{}", first.bare, last.without_proof);
    let signature = Scram::Sha256.hmac(&keys.stored_key, &[auth.as_bytes()]);
    let client_key: Vec<u8> = last.proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
    assert!(constant_time_eq(&Scram::Sha256.hash(&client_key), &keys.stored_key));
    let verifier = Scram::Sha256.hmac(&keys.server_key, &[auth.as_bytes()]);
    assert_eq!(format!("v={}", b64(&verifier)), SERVER_FINAL);
    assert_eq!(
        Scram::Sha512.keys(&Scram::Sha512.salted_password(b"p", b"s", 4096)).server_key.len(),
        64
    );
}

#[test]
fn names_are_escaped_and_unescaped() {
    assert_eq!(escape_name("a=b,c"), "a=3Db=2Cc");
    assert_eq!(unescape_name("a=3Db=2Cc").unwrap(), "a=b,c");
    assert!(unescape_name("a=4Z").is_err());
    assert!(unescape_name("a=").is_err());
}

#[test]
fn client_first_is_parsed_strictly() {
    let first = ClientFirst::parse("n,a=bob,n=bob,r=abc,tokenauth=true").unwrap();
    assert_eq!(first.gs2_header, "n,a=bob,");
    assert_eq!(first.authzid.as_deref(), Some("bob"));
    assert_eq!(first.user, "bob");
    assert_eq!(first.nonce, "abc");
    assert_eq!(first.bare, "n=bob,r=abc,tokenauth=true");
    assert_eq!(first.extensions, vec![("tokenauth", "true")]);
    for bad in [
        "",
        "n",
        "n,",
        "x,,n=a,r=b",
        "p=tls-unique,,n=a,r=b",
        "n,,r=b",
        "n,,n=a",
        "n,,n=a,r=",
        "n,,n=a,r=b c",
        "n,,m=x,n=a,r=b",
        "n,b=c,n=a,r=b",
        "n,,n=a=,r=b",
        "n,,n=a,r=b,=x",
    ] {
        assert!(ClientFirst::parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn client_final_and_server_first_are_parsed_strictly() {
    let last = ClientFinal::parse(CLIENT_FINAL).unwrap();
    assert_eq!(last.channel_binding, b"n,,");
    assert_eq!(last.proof.len(), 32);
    for bad in ["", "c=biws,r=x", "r=x,c=biws,p=AA==", "c=%%,r=x,p=AA==", "c=biws,r=x,p=%%"] {
        assert!(ClientFinal::parse(bad).is_err(), "{bad:?} parsed");
    }
    let first = ServerFirst::parse(SERVER_FIRST).unwrap();
    assert_eq!(first.iterations, 4096);
    assert_eq!(ServerFirst::format(first.nonce, &first.salt, 4096), SERVER_FIRST);
    for bad in ["", "r=a,s=AA==", "r=a,s=%,i=1", "r=a,s=AA==,i=x", "s=AA==,r=a,i=1"] {
        assert!(ServerFirst::parse(bad).is_err(), "{bad:?} parsed");
    }
    assert_eq!(ServerFirst::parse("e=other-error"), Err(SaslError::Server("other-error".into())));
}

#[test]
fn mechanisms_by_name() {
    assert_eq!("scram-sha-512".parse::<Mechanism>(), Ok(Mechanism::ScramSha512));
    assert_eq!(Mechanism::from_name("PLAIN"), Some(Mechanism::Plain));
    assert_eq!(Mechanism::from_name("plain"), None);
    assert!(
        "GSSAPI".parse::<Mechanism>().unwrap_err().contains("SCRAM-SHA-256, SCRAM-SHA-512, PLAIN")
    );
    assert_eq!(plain_token("u", "p"), b"\0u\0p");
}
