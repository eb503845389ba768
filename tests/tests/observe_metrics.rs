//! `/metrics` of a real `eddy serve` during a produce, a consumer group reading, and a
//! processor's redeploy, each scrape checked by `promtool check metrics` and parsed by
//! prometheus_client's parser: the topic's records-in counter moves by exactly the records
//! produced, the group's lag falls to 0 once its consumer caught up, and a redeploy's replay
//! progress goes from under way to done, then the switch-over is counted. `/health` and
//! `/ready` answer 200.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use eddy_tests::broker::BrokerProcess;
use eddy_tests::cli::eddy_ok;
use eddy_tests::http::{Scrape, get, scrape};

const VIEWS: u64 = 20_000;
const CLICKS: u64 = 200_000;
const DEADLINE: Duration = Duration::from_secs(120);

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

/// A file of `count` lines, `KEY:PAGE` (31 pages), for `eddy produce`.
fn lines(dir: &std::path::Path, name: &str, count: u64, keyed: bool) -> String {
    let line = |i: u64| match keyed {
        true => format!("k{}:/page/{}\n", i % 97, i % 31),
        false => format!("/page/{}\n", i % 31),
    };
    let text: String = (0..count).map(line).collect();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn group_lag(s: &Scrape, group: &str) -> f64 {
    s.all("eddy_group_lag").iter().filter(|x| x.labels["group"] == group).map(|x| x.value).sum()
}

/// Scrapes until `done` holds, within [`DEADLINE`]; returns every scrape taken.
fn scrape_until(broker: &BrokerProcess, what: &str, done: impl Fn(&Scrape) -> bool) -> Vec<Scrape> {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        let s = scrape(broker.http_addr());
        let finished = done(&s);
        seen.push(s);
        if finished {
            return seen;
        }
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
    }
}

#[test]
fn metrics_follow_produce_group_lag_and_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let http = broker.http_addr();
    assert_eq!(get(http, "/health").status, 200);
    let ready = get(http, "/ready");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));

    produce_counts_every_record(&broker, dir.path());
    group_lag_falls_to_zero(&broker);
    replay_progress_goes_to_done(&broker, dir.path());
}

/// The topic's records-in counter moves by exactly the records produced.
fn produce_counts_every_record(broker: &BrokerProcess, dir: &std::path::Path) {
    let http = broker.http_addr();
    eddy_ok(broker, &["topic", "create", "views", "--partitions", "3"]);
    let before = scrape(http);
    assert_eq!(before.value("eddy_topic_records_in_total", &[("topic", "views")]), Some(0.0));
    let file = lines(dir, "views.txt", VIEWS, true);
    eddy_ok(broker, &["produce", "views", "--key-sep", ":", &file]);
    let after = scrape(http);
    let records_in = after.value("eddy_topic_records_in_total", &[("topic", "views")]);
    assert_eq!(records_in, Some(VIEWS as f64));
    let ends: f64 = after
        .all("eddy_partition_end_offset")
        .iter()
        .filter(|s| s.labels["topic"] == "views")
        .map(|s| s.value)
        .sum();
    assert_eq!(ends, VIEWS as f64);
    assert!(
        after.value("eddy_topic_bytes_in_total", &[("topic", "views")]).unwrap() > VIEWS as f64
    );
    let produced = after.value(
        "eddy_requests_total",
        &[("listener", "native"), ("api", "produce"), ("code", "NONE")],
    );
    assert!(produced.unwrap_or(0.0) >= 1.0, "no produce request counted");
    let latency = after.value(
        "eddy_request_duration_seconds_count",
        &[("listener", "native"), ("api", "produce")],
    );
    assert_eq!(latency, produced, "every produce request has its latency observed");
}

/// A group reads half, then the rest: its lag falls to 0.
fn group_lag_falls_to_zero(broker: &BrokerProcess) {
    let http = broker.http_addr();
    let half = VIEWS / 2;
    let read =
        eddy_ok(broker, &["consume", "views", "--group", "readers", "--count", &half.to_string()]);
    assert_eq!(read.len() as u64, half);
    let s = scrape(http);
    let lag = group_lag(&s, "readers");
    assert!(lag > 0.0 && lag <= (VIEWS - half) as f64 + 0.5, "lag after reading half: {lag}");
    let rest = (VIEWS - half).to_string();
    eddy_ok(broker, &["consume", "views", "--group", "readers", "--count", &rest]);
    let s =
        scrape_until(broker, "the group's lag falling to 0", |s| group_lag(s, "readers") == 0.0);
    let last = s.last().unwrap();
    assert!(
        last.value("eddy_topic_records_out_total", &[("topic", "views")]).unwrap() >= VIEWS as f64
    );
    assert_eq!(last.value("eddy_group_members", &[("group", "readers")]), Some(0.0));
}

/// A processor, then its redeploy: the replay's progress goes from under way to done, and the
/// switch-over is counted.
fn replay_progress_goes_to_done(broker: &BrokerProcess, dir: &std::path::Path) {
    eddy_ok(broker, &["topic", "create", "clicks", "--partitions", "1"]);
    let file = lines(dir, "clicks.txt", CLICKS, false);
    eddy_ok(broker, &["produce", "clicks", &file]);
    let spec = |v: u32| {
        let path = dir.join(format!("spec-{v}.toml"));
        std::fs::write(&path, SPEC.replace("VERSION", &v.to_string())).unwrap();
        path.to_str().unwrap().to_string()
    };
    eddy_ok(broker, &["processor", "deploy", &spec(1)]);
    let serving = [("processor", "clicks-per-page"), ("role", "serving")];
    scrape_until(broker, "version 1 catching up", |s| {
        s.value("eddy_processor_replay_progress_ratio", &serving) == Some(1.0)
    });
    eddy_ok(broker, &["processor", "deploy", &spec(2)]);
    let building = [("processor", "clicks-per-page"), ("version", "2"), ("role", "building")];
    let seen = scrape_until(broker, "version 2 switching over", |s| {
        s.value("eddy_processor_switchovers_total", &[("processor", "clicks-per-page")])
            == Some(1.0)
    });
    let progress: Vec<f64> = seen
        .iter()
        .filter_map(|s| s.value("eddy_processor_replay_progress_ratio", &building))
        .collect();
    assert!(!progress.is_empty(), "no scrape saw version 2 building");
    assert!(progress[0] < 1.0, "the first scrape saw the replay done already: {progress:?}");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "progress went back: {progress:?}");
    let todo: Vec<f64> = seen
        .iter()
        .filter_map(|s| s.value("eddy_processor_replay_remaining_records", &building))
        .collect();
    assert!(todo[0] > 0.0, "{todo:?}");
    let done = seen.last().unwrap();
    let v2 = [("processor", "clicks-per-page"), ("version", "2"), ("role", "serving")];
    assert_eq!(done.value("eddy_processor_replay_progress_ratio", &v2), Some(1.0));
    assert_eq!(done.value("eddy_processor_replay_done_records", &v2), Some(CLICKS as f64));
    assert_eq!(done.value("eddy_processor_replay_remaining_records", &v2), Some(0.0));
    assert_eq!(done.value("eddy_processor_records_in_total", &v2), Some(CLICKS as f64));
    assert_eq!(done.value("eddy_processor_state_keys", &v2), Some(31.0));
    assert!(
        done.value(
            "eddy_processor_last_switch_timestamp_seconds",
            &[("processor", "clicks-per-page")]
        )
        .is_some()
    );
    assert_eq!(done.value("eddy_ready", &[]), Some(1.0));
}
