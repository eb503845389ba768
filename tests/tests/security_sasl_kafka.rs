//! Kafka clients authenticating to a real `eddy serve` with `auth.enabled`
//! (docs/security.md, "Authentication"; docs/kafka.md, "SASL"):
//!
//! - kcat (librdkafka) with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN produces and consumes; a
//!   wrong password is refused with Kafka's words; without SASL it cannot even read metadata;
//! - confluent-kafka the same, and `AdminClient.alter_user_scram_credentials` /
//!   `describe_user_scram_credentials` manage a user whose credential then works — and no
//!   longer works once deleted.
//!
//! kcat is the Debian package; confluent-kafka the venv `./scripts/test` makes. Missing either
//! fails the test, naming what to install.

use std::process::Command;
use std::time::Duration;

use eddy_tests::kafka_clients::{Finished, kcat_command, python_client, run_to_end};
use eddy_tests::sasl::{ADMIN, ADMIN_PASSWORD, start_authenticated};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);
const REFUSED: &str =
    "Authentication failed during authentication due to invalid credentials with SASL mechanism";

/// kcat against `bootstrap` with SASL as `user`; the password travels in kcat's `-X` option
/// (kcat has no other way), inside the test only.
///
/// Without cargo's `LD_LIBRARY_PATH`: it names the build directories of rdkafka-sys, whose
/// librdkafka (built for eddy-cluster without OpenSSL) would replace the system's under kcat,
/// and that one has no SCRAM.
fn kcat_sasl(bootstrap: &str, mechanism: &str, user: &str, password: &str) -> Command {
    let mut command = kcat_command(bootstrap);
    command.env_remove("LD_LIBRARY_PATH");
    command.args(["-X", "security.protocol=SASL_PLAINTEXT"]);
    command.args(["-X", &format!("sasl.mechanisms={mechanism}")]);
    command.args(["-X", &format!("sasl.username={user}")]);
    command.args(["-X", &format!("sasl.password={password}")]);
    command
}

/// Runs `command` with `input` on stdin (kcat -P reads records there).
fn with_stdin(mut command: Command, input: &str) -> Finished {
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), input).expect("write kcat's input");
    let mut shell = Command::new("/bin/sh");
    shell.args(["-c", "exec \"$0\" \"$@\" < \"$EDDY_TEST_STDIN\""]);
    shell.arg(command.get_program()).args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => shell.env(name, value),
            None => shell.env_remove(name),
        };
    }
    shell.env("EDDY_TEST_STDIN", file.path());
    command = shell;
    run_to_end(command, LIMIT)
}

#[test]
fn kcat_with_each_mechanism_and_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_authenticated(dir.path(), &[]);
    let bootstrap = broker.kafka_addr().to_string();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] {
        let topic = format!("kcat-{}", mechanism.to_ascii_lowercase());
        let mut produce = kcat_sasl(&bootstrap, mechanism, ADMIN, ADMIN_PASSWORD);
        produce.args(["-P", "-t", &topic, "-K:"]);
        with_stdin(produce, "alice:one\nbob:two\ncarol:three\n").ok();
        let mut consume = kcat_sasl(&bootstrap, mechanism, ADMIN, ADMIN_PASSWORD);
        consume.args(["-C", "-t", &topic, "-e", "-f", "%k=%s\n"]);
        let out = run_to_end(consume, LIMIT);
        assert_eq!(String::from_utf8_lossy(out.ok()), "alice=one\nbob=two\ncarol=three\n");

        let mut wrong = kcat_sasl(&bootstrap, mechanism, ADMIN, "not-the-password");
        wrong.args(["-L", "-m", "5"]);
        let refused = run_to_end(wrong, LIMIT);
        assert!(!refused.status.success(), "{refused:?}");
        let expected = format!("SASL authentication error: {REFUSED} {mechanism}");
        assert!(refused.stderr.contains(&expected), "{}", refused.stderr);
    }
    let mut plain = kcat_command(&bootstrap);
    plain.env_remove("LD_LIBRARY_PATH").args(["-L", "-m", "3"]);
    let refused = run_to_end(plain, LIMIT);
    assert!(!refused.status.success(), "metadata without SASL: {refused:?}");
    assert!(
        refused.stderr.contains("broker might require SASL authentication"),
        "{}",
        refused.stderr
    );
}

/// The JSON lines of a confluent_sasl.py run that succeeded.
fn events(finished: &Finished) -> Vec<Value> {
    String::from_utf8_lossy(finished.ok())
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn confluent(bootstrap: &str, args: &[&str], env: &[(&str, &str)]) -> Vec<Value> {
    let mut command = python_client("confluent_sasl.py");
    command.env_remove("LD_LIBRARY_PATH");
    command.args(args).args(["--bootstrap", bootstrap]);
    command.envs(env.iter().copied());
    events(&run_to_end(command, LIMIT))
}

#[test]
fn confluent_kafka_with_each_mechanism_and_scram_admin() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_authenticated(dir.path(), &[]);
    let bootstrap = broker.kafka_addr().to_string();
    let admin_env = [("SASL_PASSWORD", ADMIN_PASSWORD)];
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] {
        let topic = format!("ck-{}", mechanism.to_ascii_lowercase());
        let args = [
            "roundtrip",
            "--mechanism",
            mechanism,
            "--user",
            ADMIN,
            "--topic",
            &topic,
            "--count",
            "5",
        ];
        let out = confluent(&bootstrap, &args, &admin_env);
        assert_eq!(out[0]["event"], "produced");
        let expected: Vec<String> = (0..5).map(|i| format!("value-{i}")).collect();
        assert_eq!(out[1]["values"], serde_json::json!(expected), "{out:?}");

        let wrong = [("SASL_PASSWORD", "wrong-password")];
        let out =
            confluent(&bootstrap, &["refused", "--mechanism", mechanism, "--user", ADMIN], &wrong);
        let message = out[0]["message"].as_str().unwrap();
        assert!(message.contains(&format!("{REFUSED} {mechanism}")), "{message}");
    }
    let env = [("SASL_PASSWORD", ADMIN_PASSWORD), ("SASL_TARGET_PASSWORD", "dora-Pw-1")];
    let args = ["scram-admin", "--mechanism", "SCRAM-SHA-512", "--user", ADMIN, "--target", "dora"];
    let out = confluent(&bootstrap, &args, &env);
    let by_event = |name: &str| {
        out.iter().find(|e| e["event"] == name).unwrap_or_else(|| panic!("no {name} in {out:?}"))
    };
    assert_eq!(by_event("upserted")["user"], "dora");
    let users = &by_event("described")["users"];
    assert_eq!(users["dora"], serde_json::json!([["SCRAM_SHA_256", 8192]]), "{users}");
    assert_eq!(
        users["admin"],
        serde_json::json!([["SCRAM_SHA_256", 4096], ["SCRAM_SHA_512", 4096]]),
        "{users}"
    );
    assert_eq!(by_event("listed")["brokers"], 1);
    assert_eq!(by_event("deleted")["user"], "dora");
    let message = by_event("refused-after-delete")["message"].as_str().unwrap();
    assert!(message.contains(&format!("{REFUSED} SCRAM-SHA-256")), "{message}");
}
