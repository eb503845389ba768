//! Connectors against a real PostgreSQL and the real `eddy serve`:
//!
//! - the course's ksqlDB section as printed (examples/rideshare-cdc.sql): the `riders` JDBC
//!   source connector over tables "geoEvents" and "profiles", the stream and table queries over
//!   it, the pull query by ROWKEY and a push query, answered from rows inserted into PostgreSQL
//!   while they run, checked against the promotion and positions computed here;
//! - bad input: a wrong URL, wrong credentials, a missing table, a column type the connector
//!   cannot map and a dropped replication slot each show FAILED with the reason in
//!   `eddy connector status` and `DESCRIBE CONNECTOR`, while another connector keeps running.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use eddy_protocol::v1::{self, request, response, sql_result::Result as R};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::cli::eddy_ok;
use eddy_tests::connectors::{status, wait_status};
use eddy_tests::postgres::Postgres;
use eddy_tests::raw_client::RawClient;
use serde_json::{Value, json};

const EXAMPLE: &str = include_str!("../../examples/rideshare-cdc.sql");
/// Notre-Dame, Paris: every ride's destination.
const DST: (f64, f64) = (48.8530, 2.3499);

fn sql(client: &mut RawClient, text: &str) -> Vec<v1::SqlResult> {
    let body =
        request::Body::Sql(v1::SqlRequest { sql: text.into(), from: vec![], max_wait_ms: 0 });
    match client.call_ok(body) {
        response::Body::Sql(r) => r.results,
        other => panic!("unexpected answer {other:?}"),
    }
}

fn rows(client: &mut RawClient, text: &str) -> Vec<Value> {
    match sql(client, text).into_iter().last().and_then(|r| r.result) {
        Some(R::Rows(rows)) => rows.rows.iter().map(|r| serde_json::from_str(r).unwrap()).collect(),
        other => panic!("{text}: {other:?}"),
    }
}

/// Polls a pull query until it answers `expected`.
fn wait_rows(client: &mut RawClient, text: &str, expected: &[Value]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = rows(client, text);
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{text}: {got:?}, expected {expected:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn haversine_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().asin()
}

fn insert_geo(pg: &Postgres, profile: &str, ride: &str, vehicle: &str, at: (f64, f64)) {
    pg.psql(
        "rides",
        &format!(
            "INSERT INTO \"geoEvents\" (profile_id, \"rideId\", \"vehicleId\", latitude, longitude, \"dstLatitude\", \"dstLongitude\") \
             VALUES ('{profile}', '{ride}', '{vehicle}', {}, {}, {}, {})",
            at.0, at.1, DST.0, DST.1
        ),
    );
}

#[test]
fn the_course_section_runs_as_printed_fed_from_postgresql() {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE rides");
    pg.psql(
        "rides",
        "CREATE TABLE \"geoEvents\" (id serial PRIMARY KEY, profile_id text, \"rideId\" text, \"vehicleId\" text, \
           latitude float8, longitude float8, \"dstLatitude\" float8, \"dstLongitude\" float8); \
         CREATE TABLE profiles (id serial PRIMARY KEY, profile_id text, name text, tags text[], joined timestamptz);",
    );
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let script = EXAMPLE.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", pg.port));
    let push_at = script.rfind("SELECT vehicleId").unwrap();
    let file = dir.path().join("rideshare-cdc.sql");
    std::fs::write(&file, &script[..push_at]).unwrap();
    let out = eddy_ok(&broker, &["sql", "-f", file.to_str().unwrap()]);
    assert!(out.iter().any(|l| l.contains("RIDERS")), "{out:?}");
    wait_status(&broker, "RIDERS", Duration::from_secs(30), |s| s["state"] == "RUNNING");

    // The push query follows vehicle 6fd0fcdb from now on (until 2 rows).
    let push = {
        let (addr, push) = (broker.addr().to_string(), script[push_at..].to_string());
        std::thread::spawn(move || {
            std::process::Command::new(eddy_tests::broker::eddy_binary())
                .args(["--broker", &addr, "sql", "--limit", "2", "-e", &push])
                .output()
                .unwrap()
        })
    };
    let mut client = RawClient::connect(broker.addr());
    pg.psql("rides", "INSERT INTO profiles (profile_id, name, tags, joined) VALUES ('p1', 'Ada', ARRAY['vip'], '2024-05-01 10:00:00+00')");
    // Ride 6fd0fcdb approaches Notre-Dame in vehicle 6fd0fcdb; ride r2 stays far away.
    let path = [(48.9500, 2.3499), (48.8700, 2.3499), (48.8600, 2.3510)];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while !push.is_finished() {
        assert!(Instant::now() < deadline, "the push query printed nothing");
        insert_geo(&pg, "p1", "6fd0fcdb", "6fd0fcdb", path[i % path.len()]);
        insert_geo(&pg, "p2", "r2", "car-2", (49.5, 2.0));
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let last = path[(i - 1) % path.len()];
    let output = push.join().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"| VEHICLEID | LATITUDE | LONGITUDE |"), "{stdout}");
    assert!(
        lines.len() == 3 && lines[1..].iter().all(|l| l.starts_with("| 6fd0fcdb |")),
        "{stdout}"
    );

    let promoted = |at: (f64, f64)| haversine_km(at, DST) <= 5.0;
    wait_rows(
        &mut client,
        "SELECT rideId, promotion FROM activePromotions WHERE ROWKEY = '6fd0fcdb';",
        &[json!(["6fd0fcdb", promoted(last)])],
    );
    wait_rows(
        &mut client,
        "SELECT rideId, promotion FROM activePromotions WHERE ROWKEY = 'r2';",
        &[json!(["r2", false])],
    );
    wait_rows(
        &mut client,
        "SELECT vehicleId, latitude, longitude FROM currentCarLocations WHERE ROWKEY = '6fd0fcdb';",
        &[json!(["6fd0fcdb", last.0, last.1])],
    );
    // The profiles table's row, typed, keyed by profile_id.
    let profiles = eddy_ok(&broker, &["consume", "riderprofiles", "--format", "json"]);
    let record: Value = serde_json::from_str(&profiles[0]).unwrap();
    assert_eq!(record["key"], "p1");
    let value: Value = serde_json::from_str(record["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        value,
        json!({"id": 1, "profile_id": "p1", "name": "Ada", "tags": ["vip"], "joined": 1_714_557_600_000i64})
    );
}

#[test]
fn bad_input_fails_one_connector_with_its_reason_and_leaves_the_others_running() {
    let pg = Postgres::start();
    pg.psql(
        "postgres",
        "CREATE TABLE good (id int PRIMARY KEY, v text); CREATE TABLE shapes (id int PRIMARY KEY, p point); \
         INSERT INTO good VALUES (1, 'a');",
    );
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let url = pg.jdbc_url("postgres");
    let source = |name: &str, url: &str, table: &str| {
        let (url, table) = (format!("connection.url={url}"), format!("table.whitelist={table}"));
        eddy_ok(
            &broker,
            &[
                "connector",
                "create",
                name,
                "--source",
                "connector.class=JdbcSourceConnector",
                &url,
                &table,
                "mode=incrementing",
                "incrementing.column.name=id",
                "poll.interval.ms=100",
            ],
        );
    };
    source("good", &url, "good");
    source(
        "wrong-url",
        &format!("jdbc:postgresql://127.0.0.1:{}/postgres?user=eddy&password=eddy", pg.port + 1),
        "good",
    );
    source("wrong-password", &url.replace("password=eddy", "password=nope"), "good");
    source("missing-table", &url, "nope");
    source("unmappable", &url, "shapes");
    let cdc_url = format!("connection.url={}", pg.url("postgres"));
    eddy_ok(
        &broker,
        &[
            "connector",
            "create",
            "cdc",
            "--source",
            "connector.class=PostgresConnector",
            &cdc_url,
            "table.include.list=public.good",
            "topic.prefix=pg",
        ],
    );
    let failed = |name: &str, reason: &str| {
        let s = wait_status(&broker, name, Duration::from_secs(30), |s| s["state"] == "FAILED");
        assert!(s["reason"].contains(reason), "{name}: {s:?}");
        let described =
            eddy_ok(&broker, &["sql", "-e", &format!("DESCRIBE CONNECTOR `{name}`;")]).join("\n");
        assert!(described.contains("FAILED") && described.contains(reason), "{described}");
    };
    failed("wrong-url", "connecting to 127.0.0.1");
    failed("wrong-password", "password authentication failed");
    failed("missing-table", "table public.nope does not exist");
    failed("unmappable", "column p of public.shapes has type point");
    wait_status(&broker, "cdc", Duration::from_secs(30), |s| {
        s["state"] == "RUNNING" && s["position"].starts_with("LSN")
    });
    // A dropped slot: pause (the slot is free), drop it, resume.
    eddy_ok(&broker, &["connector", "pause", "cdc"]);
    pg.psql("postgres", "SELECT pg_drop_replication_slot('eddy_cdc')");
    eddy_ok(&broker, &["connector", "resume", "cdc"]);
    failed("cdc", "replication slot eddy_cdc does not exist");
    // The good one kept going.
    pg.psql("postgres", "INSERT INTO good VALUES (2, 'b')");
    wait_status(&broker, "good", Duration::from_secs(30), |s| {
        s["state"] == "RUNNING" && s["records"] == "2"
    });
    let listed = eddy_ok(&broker, &["connector", "list"]);
    assert_eq!(listed.len(), 6, "{listed:?}");
    assert!(status(&broker, "good")["position"].contains("\"inc\":\"2\""));
}
