//! What a program that embeds the broker compiles: eddy-broker's normal dependency tree (proc
//! macros aside: they run at build time and link nothing) holds no argument parser, line
//! editor, logging setup or `anyhow` — those belong to the `eddy` command (eddy-cli).
//!
//! One exception, checked to stay the only one: `kafka-protocol` (the Kafka listener's codec,
//! generated from Kafka's schemas) returns `anyhow::Result` from its decoders, so it brings
//! `anyhow`; eddy's own crates do not use it.

use std::process::Command;

const NOT_IN_A_LIBRARY: [&str; 6] =
    ["anyhow", "clap", "lexopt", "rustyline", "tracing-subscriber", "env_logger"];

#[test]
fn eddy_broker_does_not_depend_on_the_command_lines_crates() {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO"))
        .current_dir(&workspace)
        .args(["tree", "-p", "eddy-broker", "-e", "normal,no-proc-macro", "--prefix", "none"])
        .args(["--offline", "--locked"])
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(tree.lines().any(|l| l.starts_with("eddy-storage ")), "unexpected tree:\n{tree}");
    let found: Vec<&str> = tree
        .lines()
        .filter(|l| NOT_IN_A_LIBRARY.iter().any(|c| l.split(' ').next() == Some(*c)))
        .filter(|l| !l.starts_with("anyhow "))
        .collect();
    assert!(found.is_empty(), "eddy-broker pulls in {found:?}:\n{tree}");

    // anyhow, if present, only through kafka-protocol.
    let out = Command::new(env!("CARGO"))
        .current_dir(&workspace)
        .args(["tree", "-p", "eddy-broker", "-e", "normal,no-proc-macro", "--prefix", "depth"])
        .args(["--invert", "anyhow", "--offline", "--locked"])
        .output()
        .expect("run cargo tree --invert");
    let users = String::from_utf8_lossy(&out.stdout);
    let direct: Vec<&str> = users.lines().filter(|l| l.starts_with('1')).collect();
    assert!(
        direct.iter().all(|l| l.starts_with("1kafka-protocol ")),
        "anyhow is used by more than kafka-protocol: {direct:?}\n{users}"
    );
}
