//! The web console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven by selenium from `tests/observe/console_test.py` against a real
//! `eddy serve`. The script checks that the topic list shows a created topic, a group's page
//! shows lag falling as a consumer reads, a processor redeploy shows the replay's progress bar
//! then the switch-over, a table page answers a key lookup, and the SQL box runs statements, a
//! pull query and a push query — with no error in the browser's log. Screenshots of each step
//! are kept in `target/console-screenshots/`.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use eddy_tests::broker::{BrokerProcess, eddy_binary};
use eddy_tests::cli::eddy_ok;
use eddy_tests::http::{get, python_with};
use eddy_tests::kafka_clients::{on_path, repo_root, run_to_end};

const VIEWS: u64 = 3_000;
const CLICKS: u64 = 2_000_000;

const SPEC: &str = r#"
name = "clicks-per-page"
version = VERSION
source = { topic = "clicks", format = "text" }
[[ops]]
op = "fields"
fields = { page = 1 }
[[ops]]
op = "key_by"
field = "page"
[[ops]]
op = "aggregate"
table = "clicks"
fn = "count"
"#;

fn write(dir: &std::path::Path, name: &str, text: String) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Waits until version 1 has processed every click (through the console's own API).
fn wait_caught_up(broker: &BrokerProcess) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let body = get(broker.http_addr(), "/api/processors").body;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let p = &v["processors"][0];
        if p["lag"] == 0 && p["records_processed"] == CLICKS {
            return;
        }
        assert!(Instant::now() < deadline, "version 1 did not catch up: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_console_shows_topics_lag_replays_tables_and_sql() {
    for (program, package) in [("chromium", "chromium"), ("chromedriver", "chromium-driver")] {
        assert!(
            on_path(program).is_some(),
            "{program} is missing (Debian package `{package}`); run ./scripts/test, which installs it"
        );
    }
    let python = python_with("selenium");
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);

    eddy_ok(&broker, &["topic", "create", "pageviews", "--partitions", "2"]);
    let views: String = (0..VIEWS).map(|i| format!("user{}:/page/{}\n", i % 7, i % 11)).collect();
    eddy_ok(
        &broker,
        &["produce", "pageviews", "--key-sep", ":", &write(dir.path(), "views", views)],
    );
    eddy_ok(&broker, &["topic", "create", "clicks", "--partitions", "1"]);
    let clicks: String = (0..CLICKS).map(|i| format!("/page/{}\n", i % 31)).collect();
    eddy_ok(&broker, &["produce", "clicks", &write(dir.path(), "clicks", clicks)]);
    let spec = |v: u32| {
        write(dir.path(), &format!("spec-{v}.toml"), SPEC.replace("VERSION", &v.to_string()))
    };
    eddy_ok(&broker, &["processor", "deploy", &spec(1)]);
    wait_caught_up(&broker);
    let hits = "/pricing|{\"ms\":1}\n/about|{\"ms\":2}\n/pricing|{\"ms\":3}\n/pricing|{\"ms\":4}\n";
    let hits = write(dir.path(), "hits", hits.to_string());
    let page_3 = (0..CLICKS).filter(|i| i % 31 == 3).count();

    let shots = repo_root().join("target").join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut command = Command::new(python);
    command.arg(repo_root().join("tests").join("observe").join("console_test.py"));
    command.arg("--url").arg(format!("http://{}", broker.http_addr()));
    command.arg("--eddy").arg(eddy_binary()).arg("--broker").arg(broker.addr().to_string());
    command.arg("--shots").arg(&shots).arg("--spec2").arg(spec(2)).arg("--hits").arg(&hits);
    command.args(["--views", &VIEWS.to_string(), "--page-count", &page_3.to_string()]);
    let out = run_to_end(command, Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(out.status.success(), "the console check failed:\n{stdout}\n{}", out.stderr);
    for shot in [
        "1-topics",
        "2-group-lag-after",
        "3-replay-progress",
        "4-switched-over",
        "5-table-lookup",
        "6-sql-pull",
        "7-sql-push",
    ] {
        let path = shots.join(format!("{shot}.png"));
        assert!(path.metadata().is_ok_and(|m| m.len() > 1000), "no screenshot {}", path.display());
    }
}
