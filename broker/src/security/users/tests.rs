use eddy_storage::LogConfig;

use super::*;

fn open(dir: &std::path::Path) -> Arc<Users> {
    let log = Log::open(dir, LogConfig::default()).unwrap();
    Arc::new(Users::open(Arc::new(log)).unwrap())
}

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

#[tokio::test]
async fn users_survive_a_reopen_without_their_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let users = open(dir.path());
    users.create("alice", "correct horse", &[], 0).await.unwrap();
    users.create("bob", "s3cret-bob", &[Scram::Sha512], 8192).await.unwrap();
    let again = users.create("alice", "x", &[], 0).await.unwrap_err();
    assert!(matches!(again, BrokerError::UserExists(_)), "{again}");
    users.set_password("alice", "battery staple").await.unwrap();
    users.delete("bob").await.unwrap();
    assert!(matches!(users.delete("bob").await, Err(BrokerError::UnknownUser(_))));
    drop(users);
    let users = open(dir.path());
    let listed = users.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "alice");
    let mechanisms: Vec<&str> =
        listed[0].credentials.iter().map(|c| c.mechanism.as_str()).collect();
    assert_eq!(mechanisms, ["SCRAM-SHA-256", "SCRAM-SHA-512"]);
    assert!(users.check_password("alice", b"battery staple").await);
    assert!(!users.check_password("alice", b"correct horse").await);
    assert!(!users.check_password("bob", b"s3cret-bob").await);
    for secret in [&b"correct horse"[..], b"battery staple", b"s3cret-bob"] {
        assert!(!files_contain(dir.path(), secret), "a password is in the log");
    }
}

#[tokio::test]
async fn kafka_credentials_from_salted_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let users = open(dir.path());
    let salted = Scram::Sha256.salted_password(b"pw", b"salty", 4096);
    users.upsert_salted("carol", Scram::Sha256, b"salty".to_vec(), 4096, &salted).await.unwrap();
    assert!(users.check_password("carol", b"pw").await);
    let short = users.upsert_salted("carol", Scram::Sha512, b"s".to_vec(), 4096, &salted).await;
    assert!(matches!(short, Err(BrokerError::InvalidUser { .. })));
    let few = users.upsert_salted("carol", Scram::Sha256, b"s".to_vec(), 10, &salted).await;
    assert!(matches!(few, Err(BrokerError::InvalidUser { .. })));
    users.delete_scram("carol", Scram::Sha256).await.unwrap();
    assert!(users.list().is_empty(), "the last credential takes the user with it");
    assert!(matches!(
        users.delete_scram("carol", Scram::Sha256).await,
        Err(BrokerError::UnknownUser(_))
    ));
}

#[tokio::test]
async fn names_and_passwords_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let users = open(dir.path());
    for (name, password) in [("", "p"), ("a\nb", "p"), (&"x".repeat(256)[..], "p"), ("ok", "")] {
        let e = users.create(name, password, &[], 0).await.unwrap_err();
        assert!(matches!(e, BrokerError::InvalidUser { .. }), "{name:?}: {e}");
    }
    let e = users.create("ok", "p", &[], 100).await.unwrap_err();
    assert!(e.to_string().contains("iterations must be 4096 to 16384"), "{e}");
}

#[test]
fn decoys_are_stable_per_name_and_differ_between_names() {
    let dir = tempfile::tempdir().unwrap();
    let users = open(dir.path());
    let a = users.decoy("nobody", Scram::Sha256);
    assert_eq!(a, users.decoy("nobody", Scram::Sha256));
    assert_ne!(a.salt, users.decoy("someone", Scram::Sha256).salt);
    assert_eq!(a.iterations, MIN_ITERATIONS);
}
