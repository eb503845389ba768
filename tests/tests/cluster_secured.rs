//! A processor over a Kafka-protocol cluster that requires TLS and authentication: `eddy
//! serve`'s Kafka listener with TLS (a CA and certificate made by the test) and `auth.enabled`,
//! and `eddy processor run --kafka ADDR --kafka-config FILE` with librdkafka's
//! `security.protocol=SASL_SSL`, the CA, SCRAM-SHA-512 and the user's password in the file,
//! never in an argument. The instance runs the per-URL count over a
//! 3-partition topic and its table equals `awk '{print $7}' | sort | uniq -c`. A settings file with a bad line, or one that sets what
//! eddy sets, stops the command with the file and line named.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use eddy_tests::broker::{BrokerProcess, eddy_binary};
use eddy_tests::cluster::{awk_counts, url_counts_spec, write_access_log};
use eddy_tests::instances::{start_instance, wait_for_reference};
use eddy_tests::sasl::{ADMIN, ADMIN_PASSWORD, eddy_as_ok};
use eddy_tests::tls::{Ca, Validity};

const LINES: u64 = 3_000;

#[test]
fn a_processor_runs_over_a_cluster_that_requires_tls_and_sasl() {
    let dir = tempfile::tempdir().unwrap();
    let seed = 0x5ec0_12ed;
    eprintln!("cluster_secured: seed {seed:#x}");
    // TLS on the Kafka listener only, so the test's CLI steps stay plaintext.
    let ca = Ca::new("cluster-ca");
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let (cert, key) = ca.broker(1, Validity::Current).write(dir.path(), "broker");
    let config = dir.path().join("eddy.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert_file = {cert:?}\nkey_file = {key:?}\nlisteners = [\"kafka\"]\n\
             [auth]\nenabled = true\n"
        ),
    )
    .unwrap();
    let bootstrap = format!("{ADMIN}:{ADMIN_PASSWORD}");
    let mut broker = BrokerProcess::start_with_args(
        &dir.path().join("broker"),
        &["--config", config.to_str().unwrap()],
        &[("EDDY_BOOTSTRAP_USER", &bootstrap), ("EDDY_LOG", "info,eddy_broker::security=debug")],
    );
    let as_admin = |args: &[&str]| eddy_as_ok(&broker, ADMIN, ADMIN_PASSWORD, args);
    as_admin(&["topic", "create", "access", "--partitions", "3"]);
    let log = dir.path().join("access.log");
    write_access_log(&log, LINES, seed);
    as_admin(&["produce", "access", log.to_str().unwrap()]);

    let spec = dir.path().join("url-counts.toml");
    std::fs::write(&spec, url_counts_spec("access", "url-counts-out")).unwrap();
    let settings = dir.path().join("client.properties");
    std::fs::write(
        &settings,
        format!(
            "# the cluster's TLS and SASL settings\nsecurity.protocol=SASL_SSL\n\
             ssl.ca.location={}\nsasl.mechanism=SCRAM-SHA-512\nsasl.username={ADMIN}\n\
             sasl.password={ADMIN_PASSWORD}\n",
            ca_file.display()
        ),
    )
    .unwrap();
    let kafka = broker.kafka_addr().to_string();
    let state = dir.path().join("state");
    let mut instance =
        start_instance(&spec, &kafka, &state, &["--kafka-config", settings.to_str().unwrap()]);
    wait_for_reference(&[&instance], "requests", &awk_counts(&[&log]), Duration::from_secs(120));
    instance.child.kill().unwrap();
    assert!(broker.terminate().success());
    let log = broker.stderr();
    let kafka_line = log.lines().find(|l| l.contains("serving the Kafka protocol")).unwrap();
    assert!(kafka_line.contains("tls=true"), "{kafka_line}");
    assert!(log.contains("TLS connection established listener=kafka"), "no TLS client:\n{log}");
}

#[test]
fn a_bad_kafka_config_file_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, url_counts_spec("access", "out")).unwrap();
    let settings = dir.path().join("client.properties");
    for (text, error) in [
        (
            "security.protocol=SASL_SSL\nsasl.mechanism\n",
            "line 2: expected key=value, got \"sasl.mechanism\"",
        ),
        ("bootstrap.servers=elsewhere:9092\n", "line 1: bootstrap.servers is set by eddy"),
    ] {
        std::fs::write(&settings, text).unwrap();
        let out = std::process::Command::new(eddy_binary())
            .args(["processor", "run"])
            .arg(&spec)
            .args(["--kafka", "127.0.0.1:9", "--kafka-config"])
            .arg(&settings)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        let named = format!("in {}", settings.display());
        assert!(stderr.contains(&named) && stderr.contains(error), "{stderr}");
    }
}
