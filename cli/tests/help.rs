//! `eddy --help` and `eddy COMMAND --help`/`-h`: each command answers with its own usage on
//! stdout and exits 0, without connecting to a broker or opening a data directory.

use std::process::Command;

fn eddy(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy")).args(args).output().expect("run eddy");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8 output");
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[test]
fn every_command_answers_help_with_its_own_usage() {
    let commands =
        ["serve", "topic", "produce", "consume", "group", "processor", "query", "sql", "user"];
    for command in commands {
        for flag in ["--help", "-h"] {
            let (ok, stdout, stderr) = eddy(&[command, flag]);
            assert!(ok, "eddy {command} {flag} failed: {stderr}");
            assert!(stdout.starts_with(&format!("usage: eddy {command}")), "{command}: {stdout}");
            assert!(
                stdout.contains(&format!("\n  {command}")),
                "{command}: no usage block: {stdout}"
            );
            for other in commands.iter().filter(|c| **c != command) {
                assert!(
                    !stdout.contains(&format!("\n  {other} ")),
                    "eddy {command} {flag} also describes {other}: {stdout}"
                );
            }
        }
    }
    // After arguments and behind --broker, too; `serve --help` opens no data directory.
    let (ok, stdout, _) = eddy(&["--broker", "127.0.0.1:1", "topic", "create", "t", "--help"]);
    assert!(ok && stdout.contains("topic create NAME"), "{stdout}");
    let (ok, stdout, _) = eddy(&["serve", "--data-dir", "/nonexistent/eddy", "--help"]);
    assert!(ok && stdout.contains("--data-dir DIR"), "{stdout}");
    assert!(!std::path::Path::new("/nonexistent/eddy").exists());
}

#[test]
fn plain_help_lists_every_command_and_unknown_commands_fail() {
    let (ok, stdout, _) = eddy(&["--help"]);
    assert!(ok && stdout.starts_with("usage: eddy [--broker ADDR] <command>"), "{stdout}");
    let (ok, _, stderr) = eddy(&["frobnicate", "--help"]);
    assert!(!ok);
    assert_eq!(stderr, "eddy: unknown command \"frobnicate\" (see eddy --help)\n");
}
