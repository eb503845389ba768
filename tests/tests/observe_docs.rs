//! The operator's documents agree with what eddy exposes: `promtool check rules` accepts
//! docs/prometheus/alerts.yml, every query of docs/grafana/eddy.json is valid PromQL (checked
//! by promtool as recording rules), and every metric the rules, the dashboard and
//! docs/operations.md name is one `/metrics` exposes (`http/src/exposition/families.rs`), and
//! every one it exposes is documented.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use eddy_tests::http::promtool;
use eddy_tests::kafka_clients::{repo_root, run_to_end};

/// Metric names (`eddy_...`) in `text`, with the exposition's suffixes taken off.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("eddy_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| start + n);
        // `eddy_broker::metrics` is a path, not a metric.
        if boundary && !text[end..].starts_with("::") {
            let mut name = &text[start..end];
            for suffix in ["_total", "_bucket", "_sum", "_count"] {
                name = name.strip_suffix(suffix).unwrap_or(name);
            }
            out.insert(name.to_string());
        }
        i = end.max(start + 1);
    }
    out
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn check_rules(path: &std::path::Path) {
    let mut command = Command::new(promtool());
    command.args(["check", "rules"]).arg(path);
    let out = run_to_end(command, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "promtool check rules {}:\n{stdout}{}",
        path.display(),
        out.stderr
    );
}

#[test]
fn alert_rules_and_dashboard_queries_pass_promtool() {
    check_rules(&repo_root().join("docs/prometheus/alerts.yml"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("docs/grafana/eddy.json")).unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut count = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$instance", ".*");
            rules.push_str(&format!(
                "      - record: dashboard:query_{count}\n        expr: {}\n",
                serde_json::Value::String(expr)
            ));
            count += 1;
        }
    }
    assert!(count >= 15, "the dashboard has {count} queries");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), rules).unwrap();
    check_rules(file.path());
}

#[test]
fn every_metric_named_is_exposed_and_every_exposed_one_is_documented() {
    // The names in string literals of the source (not `eddy_storage::...` paths).
    let source = read("http/src/exposition/families.rs");
    let literals: String = source.split('"').skip(1).step_by(2).collect::<Vec<_>>().join(" ");
    let exposed = metric_names(&literals);
    assert!(exposed.len() > 40, "{exposed:?}");
    let documented = metric_names(&read("docs/operations.md"));
    for (what, names) in [
        ("docs/prometheus/alerts.yml", metric_names(&read("docs/prometheus/alerts.yml"))),
        ("docs/grafana/eddy.json", metric_names(&read("docs/grafana/eddy.json"))),
        ("docs/operations.md", documented.clone()),
    ] {
        let unknown: Vec<_> = names.difference(&exposed).collect();
        assert!(unknown.is_empty(), "{what} names metrics eddy does not expose: {unknown:?}");
    }
    let undocumented: Vec<_> = exposed.difference(&documented).collect();
    assert!(undocumented.is_empty(), "docs/operations.md does not document {undocumented:?}");
}
