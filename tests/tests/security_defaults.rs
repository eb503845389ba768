//! Safe defaults (docs/security.md, "Safe defaults"): `eddy serve` on a non-loopback address
//! without TLS and authentication refuses to start, says why and what to do, and binds nothing.
//! (Serving such an address with `--insecure` is covered by the configuration's unit tests:
//! servers in tests listen on loopback only.)

use std::process::Command;

use eddy_tests::broker::eddy_binary;

fn serve(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(eddy_binary());
    command.arg("serve").arg("--data-dir").arg(dir.path().join("data")).args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("EDDY_") && n != "EDDY_LOG") {
            command.env_remove(&name);
        }
    }
    let out = command.output().expect("eddy runs");
    assert!(!dir.path().join("data").exists(), "the data directory was opened before refusing");
    out
}

#[test]
fn a_listener_beyond_loopback_without_tls_and_authentication_is_refused() {
    let cases = [
        (
            vec!["--listen", "0.0.0.0:0", "--kafka-listen", "off", "--http-listen", "off"],
            "listen 0.0.0.0:0 is reachable from other machines, but TLS and authentication are off",
        ),
        (
            vec!["--listen", "127.0.0.1:0", "--kafka-listen", "0.0.0.0:0", "--http-listen", "off"],
            "kafka_listen 0.0.0.0:0 is reachable from other machines, but TLS and authentication \
             are off",
        ),
        (
            vec!["--listen", "127.0.0.1:0", "--kafka-listen", "off", "--http-listen", "[::]:0"],
            "http_listen [::]:0 is reachable from other machines, but TLS and authentication are off",
        ),
    ];
    for (args, reason) in cases {
        let out = serve(&args);
        assert!(!out.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("eddy: invalid config: "), "{stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
        assert!(stderr.contains("or pass --insecure"), "{stderr}");
        assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "it printed an address");
    }
    // With authentication on, TLS is still missing: said so.
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(eddy_binary())
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "0.0.0.0:0", "--kafka-listen", "off", "--http-listen", "off"])
        .env("EDDY_AUTH_ENABLED", "true")
        .output()
        .expect("eddy runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("but TLS is off on it"), "{stderr}");
}
