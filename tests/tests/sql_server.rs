//! Streaming SQL in the server, through the real `eddy` binary: the course's rideshare
//! statements run with `eddy sql -f` (with the broker's built-in `qualifyPromotion` UDF) and the
//! pull query by ROWKEY answers the promotion; a push query prints changes as they come; push
//! queries on streams (declared, and made by a query) show exactly the records produced after
//! they started, filtered and projected, over the wire and through `eddy sql`; a
//! `CREATE OR REPLACE TABLE` rebuilds from offset zero and switches at lag zero (old answers,
//! then only new ones); persistent queries resume after SIGTERM and SIGKILL restarts with
//! tables equal (by digest) to a fresh replay; `processor drop` of a query's processor
//! terminates the query for good; errors print one stderr line with the line and column.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use eddy_protocol::v1::{self, request, response, sql_result::Result as R};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::child::{ChildProcess, deadline_in};
use eddy_tests::cli::{eddy, eddy_fails, eddy_ok};
use eddy_tests::raw_client::RawClient;

const RIDESHARE: &str = include_str!("../../examples/rideshare.sql");
/// Notre-Dame, Paris: every ride's destination.
const DST: (f64, f64) = (48.8530, 2.3499);

/// The example without its final push query (which would wait for changes).
fn rideshare_without_push() -> String {
    let push = RIDESHARE.rfind("SELECT vehicleId").expect("the example ends with a push query");
    RIDESHARE[..push].to_owned()
}

fn sql(client: &mut RawClient, text: &str) -> Vec<v1::SqlResult> {
    let body =
        request::Body::Sql(v1::SqlRequest { sql: text.into(), from: vec![], max_wait_ms: 0 });
    match client.call_ok(body) {
        response::Body::Sql(r) => r.results,
        other => panic!("unexpected answer {other:?}"),
    }
}

/// A pull query's rows (JSON arrays) and the version that answered.
fn pull(client: &mut RawClient, text: &str) -> (Vec<serde_json::Value>, u32) {
    let results = sql(client, text);
    match results.into_iter().last().and_then(|r| r.result) {
        Some(R::Rows(rows)) => {
            (rows.rows.iter().map(|r| serde_json::from_str(r).unwrap()).collect(), rows.version)
        }
        other => panic!("{text}: {other:?}"),
    }
}

fn status(client: &mut RawClient, name: &str) -> v1::ProcessorInfo {
    let body = request::Body::ProcessorStatus(v1::ProcessorStatusRequest { name: name.into() });
    match client.call_ok(body) {
        response::Body::ProcessorStatus(s) => s.processor.unwrap(),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Waits until each of `names`, in order, serves `version` with no lag and nothing building.
fn wait_caught_up(client: &mut RawClient, names: &[(&str, u32)]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for (name, version) in names {
        loop {
            let s = status(client, name);
            if s.version == *version && s.building.is_none() && s.lag == 0 && s.state == "running" {
                break;
            }
            assert!(Instant::now() < deadline, "{name} never caught up at {version}: {s:?}");
            std::thread::yield_now();
        }
    }
}

fn digest(client: &mut RawClient, table: &str) -> (u64, usize) {
    let body = request::Body::QueryTable(v1::QueryTableRequest {
        table: table.into(),
        query: Some(v1::query_table_request::Query::Scan(v1::ScanQuery::default())),
        digest: true,
    });
    match client.call_ok(body) {
        response::Body::QueryTable(q) => (q.digest, q.rows.len()),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// `rides` rides (`r0`..), ride i `(i % 10) + 0.5` km from the destination, plus ride
/// 6fd0fcdb approaching it (10.8 km, then 1.9 km), as `KEY<TAB>JSON` lines.
fn geo_events(rides: u64, rounds: u64) -> String {
    let line = |key: &str, km: f64| {
        let lat = DST.0 + km / 111.195;
        format!(
            "{key}\t{{\"latitude\":{lat},\"longitude\":{},\"dstLatitude\":{},\"dstLongitude\":{}}}\n",
            DST.1, DST.0, DST.1
        )
    };
    let mut text = line("6fd0fcdb", 10.8);
    for round in 0..rounds {
        for i in 0..rides {
            text.push_str(&line(&format!("r{i}"), ((i + round) % 10) as f64 + 0.5));
        }
    }
    text.push_str(&line("6fd0fcdb", 1.9));
    text
}

fn produce(broker: &BrokerProcess, dir: &Path, topic: &str, text: &str) {
    let file = dir.join(format!("{topic}.in"));
    std::fs::write(&file, text).unwrap();
    eddy_ok(broker, &["produce", topic, "--key-sep", "\t", file.to_str().unwrap()]);
}

/// Starts a broker and runs the rideshare script (without its push query) with `eddy sql -f`.
fn setup(dir: &Path) -> (BrokerProcess, RawClient) {
    let broker = BrokerProcess::start(&dir.join("data"), &[]);
    let script = dir.join("rideshare.sql");
    std::fs::write(&script, rideshare_without_push()).unwrap();
    let out = eddy_ok(&broker, &["sql", "-f", script.to_str().unwrap()]);
    for expected in [
        "declared STREAM GEOEVENTS over topic geoEvents (1 partition)",
        "started query CSAS_LOCATIONS (LOCATIONS version 1)",
        "started query CTAS_ACTIVEPROMOTIONS (ACTIVEPROMOTIONS version 1)",
        "declared STREAM ROUTEWAYPOINTS over topic locations (3 partitions)",
        "declared TABLE CURRENTCARLOCATIONS over topic locations (3 partitions)",
    ] {
        assert!(out.iter().any(|l| l == expected), "{expected:?} not in {out:?}");
    }
    let client = RawClient::connect(broker.addr());
    (broker, client)
}

const PROMOTION: &str = "SELECT rideId, promotion FROM activePromotions WHERE ROWKEY = '6fd0fcdb';";

#[test]
fn rideshare_runs_in_the_server_and_the_pull_query_by_rowkey_returns_the_promotion() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut client) = setup(dir.path());
    produce(&broker, dir.path(), "geoEvents", &geo_events(20, 1));
    wait_caught_up(&mut client, &[("LOCATIONS", 1), ("ACTIVEPROMOTIONS", 1)]);

    // Through the CLI: a table with the promotion row.
    let out = eddy_ok(&broker, &["sql", "-e", PROMOTION]);
    assert!(
        out.iter().any(|l| l.split_whitespace().collect::<String>() == "|6fd0fcdb|true|"),
        "{out:?}"
    );
    assert!(out.iter().any(|l| l.contains("(1 row(s), ACTIVEPROMOTIONS version 1)")), "{out:?}");
    // Over the wire: rows in SELECT order.
    let (rows, version) = pull(&mut client, PROMOTION);
    assert_eq!((rows, version), (vec![serde_json::json!(["6fd0fcdb", true])], 1));
    let (rows, _) =
        pull(&mut client, "SELECT promotion FROM activePromotions WHERE rideId = 'r7';");
    assert_eq!(rows, vec![serde_json::json!([false])]);

    // Queries are processors of the registry.
    let list = eddy_ok(&broker, &["processor", "list"]);
    for name in ["LOCATIONS", "ACTIVEPROMOTIONS", "CURRENTCARLOCATIONS"] {
        assert!(list.iter().any(|l| l.starts_with(&format!("{name}  1  running"))), "{list:?}");
    }

    // The push query prints the table's changes as they come (here: until 2 rows).
    let push = {
        let addr = broker.addr().to_string();
        std::thread::spawn(move || {
            let binary = eddy_tests::broker::eddy_binary();
            std::process::Command::new(binary)
                .args(["--broker", &addr, "sql", "--limit", "2", "-e"])
                .arg("SELECT * FROM currentCarLocations EMIT CHANGES;")
                .output()
                .unwrap()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while !push.is_finished() {
        assert!(Instant::now() < deadline, "the push query printed nothing");
        n += 1;
        let waypoint = format!(
            "car-{n}\t{{\"vehicleId\":\"car-{n}\",\"latitude\":{n}.5,\"longitude\":2.25}}\n"
        );
        produce(&broker, dir.path(), "locations", &waypoint);
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = push.join().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "| VEHICLEID | LATITUDE | LONGITUDE |", "{stdout}");
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[1..].iter().all(|l| l.starts_with("| car-") && l.ends_with("| 2.25 |")),
        "{stdout}"
    );

    // The course's pull query on the declared table, by ROWKEY.
    let car = "6fd0fcdb\t{\"vehicleId\":\"6fd0fcdb\",\"latitude\":48.86,\"longitude\":2.35}\n";
    produce(&broker, dir.path(), "locations", car);
    let course_pull =
        "SELECT vehicleId, latitude, longitude FROM currentCarLocations WHERE ROWKEY = '6fd0fcdb';";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (rows, version) = pull(&mut client, course_pull);
        if !rows.is_empty() {
            assert_eq!((rows, version), (vec![serde_json::json!(["6fd0fcdb", 48.86, 2.35])], 1));
            break;
        }
        assert!(Instant::now() < deadline, "the declared table never held vehicle 6fd0fcdb");
        std::thread::sleep(Duration::from_millis(50));
    }

    // `processor drop` of a query's processor terminates the query; DROP TABLE forgets it.
    eddy_ok(&broker, &["processor", "drop", "CURRENTCARLOCATIONS"]);
    let show = eddy_ok(&broker, &["sql", "-e", "SHOW QUERIES;"]);
    assert!(!show.iter().any(|l| l.contains("CST_CURRENTCARLOCATIONS")), "{show:?}");
    let dropped = eddy_ok(&broker, &["sql", "-e", "DROP TABLE currentCarLocations;"]);
    assert_eq!(dropped, vec!["dropped CURRENTCARLOCATIONS"]);
}

#[test]
fn create_or_replace_table_serves_the_old_answers_until_the_switch_then_only_the_new() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut client) = setup(dir.path());
    produce(&broker, dir.path(), "geoEvents", &geo_events(1000, 20));
    wait_caught_up(&mut client, &[("LOCATIONS", 1), ("ACTIVEPROMOTIONS", 1)]);
    assert_eq!(pull(&mut client, PROMOTION), (vec![serde_json::json!(["6fd0fcdb", true])], 1));

    // v2: a promotion only within 1 km; 6fd0fcdb (1.9 km) loses it.
    let replace = "CREATE OR REPLACE TABLE activePromotions AS\n  SELECT rideId, kmToDst < 1.0 AS promotion\n  FROM locations GROUP BY rideId EMIT CHANGES;";
    let out = eddy_ok(&broker, &["sql", "-e", replace]);
    assert!(out[0].starts_with("replacing query CTAS_ACTIVEPROMOTIONS: version 2"), "{out:?}");
    let mut answers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (rows, version) = pull(&mut client, PROMOTION);
        answers.push((version, rows));
        if version == 2 && answers.iter().filter(|a| a.0 == 2).count() > 20 {
            break;
        }
        assert!(Instant::now() < deadline, "version 2 never served");
    }
    let first_v2 = answers.iter().position(|a| a.0 == 2).unwrap();
    assert!(first_v2 > 0, "version 1 served while version 2 was building");
    for (i, (version, rows)) in answers.iter().enumerate() {
        let promoted = *version == 1;
        assert_eq!(rows, &vec![serde_json::json!(["6fd0fcdb", promoted])], "answer {i}");
        assert!(*version == 1 || i >= first_v2, "version 1 answered after version 2");
    }
    let s = status(&mut client, "ACTIVEPROMOTIONS");
    assert_eq!((s.version, s.retired_version), (2, 1), "{s:?}");
    let show = eddy_ok(&broker, &["sql", "-e", "SHOW QUERIES;"]);
    assert!(
        show.iter().any(|l| l.split_whitespace().collect::<String>()
            == "|CTAS_ACTIVEPROMOTIONS|ACTIVEPROMOTIONS|2|null|"),
        "{show:?}"
    );

    // Rollback serves version 1 again, and the catalog follows it, across a restart too.
    eddy_ok(&broker, &["processor", "rollback", "ACTIVEPROMOTIONS"]);
    wait_caught_up(&mut client, &[("ACTIVEPROMOTIONS", 1)]);
    assert_eq!(pull(&mut client, PROMOTION), (vec![serde_json::json!(["6fd0fcdb", true])], 1));
    let mut broker = broker;
    broker.terminate();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let mut client = RawClient::connect(broker.addr());
    wait_caught_up(&mut client, &[("ACTIVEPROMOTIONS", 1)]);
    assert_eq!(pull(&mut client, PROMOTION), (vec![serde_json::json!(["6fd0fcdb", true])], 1));
    let show = eddy_ok(&broker, &["sql", "-e", "SHOW QUERIES;"]);
    assert!(
        show.iter().any(|l| l.contains("CTAS_ACTIVEPROMOTIONS") && l.contains("| 1 ")),
        "{show:?}"
    );
}

#[test]
fn persistent_queries_resume_after_sigterm_and_sigkill_equal_to_a_fresh_replay() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut broker, mut client) = setup(dir.path());
    produce(&broker, dir.path(), "geoEvents", &geo_events(200, 5));
    wait_caught_up(&mut client, &[("LOCATIONS", 1), ("ACTIVEPROMOTIONS", 1)]);

    // SIGTERM, restart: the catalog and the queries come back and keep processing.
    broker.terminate();
    broker = BrokerProcess::start(&data, &[]);
    client = RawClient::connect(broker.addr());
    let show = eddy_ok(&broker, &["sql", "-e", "SHOW QUERIES;"]);
    assert_eq!(show.iter().filter(|l| l.contains("_")).count(), 3, "{show:?}");
    produce(&broker, dir.path(), "geoEvents", &geo_events(200, 3));
    wait_caught_up(&mut client, &[("LOCATIONS", 1), ("ACTIVEPROMOTIONS", 1)]);
    assert_eq!(pull(&mut client, PROMOTION).0, vec![serde_json::json!(["6fd0fcdb", true])]);

    // SIGKILL while the queries are busy, restart: they resume from their state.
    produce(&broker, dir.path(), "geoEvents", &geo_events(300, 10));
    broker.kill9();
    broker = BrokerProcess::start(&data, &[]);
    client = RawClient::connect(broker.addr());
    wait_caught_up(&mut client, &[("LOCATIONS", 1), ("ACTIVEPROMOTIONS", 1)]);

    // A fresh table over the same stream, replayed from offset zero, holds the same rows.
    let fresh = "CREATE TABLE freshPromotions AS SELECT rideId, qualifyPromotion(kmToDst) AS promotion FROM locations GROUP BY rideId EMIT CHANGES;";
    eddy_ok(&broker, &["sql", "-e", fresh]);
    wait_caught_up(
        &mut client,
        &[("LOCATIONS", 1), ("FRESHPROMOTIONS", 1), ("ACTIVEPROMOTIONS", 1)],
    );
    let survivor = digest(&mut client, "ACTIVEPROMOTIONS/ACTIVEPROMOTIONS");
    let replayed = digest(&mut client, "FRESHPROMOTIONS/FRESHPROMOTIONS");
    assert_eq!(survivor.1, 301, "every ride has a row");
    assert_eq!(survivor, replayed);

    // `processor replay` rebuilds a SQL query from offset zero as its next version: same table.
    let out = eddy_ok(&broker, &["processor", "replay", "ACTIVEPROMOTIONS", "--wait"]);
    assert_eq!(out.last().unwrap(), "processor ACTIVEPROMOTIONS version 2 serves", "{out:?}");
    assert_eq!(digest(&mut client, "ACTIVEPROMOTIONS/ACTIVEPROMOTIONS"), replayed);
}

#[test]
fn errors_print_one_stderr_line_with_the_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _client) = setup(dir.path());
    let cases = [
        ("SELECT FROM activePromotions;", "syntax error at line 1, column 8"),
        (
            "SHOW QUERIES;\nSELECT nope FROM activePromotions;",
            "unknown column NOPE at line 2, column 8",
        ),
        ("SELECT * FROM missing;", "unknown stream or table MISSING at line 1, column 15"),
        (
            "SELECT frobnicate(rideId) FROM activePromotions;",
            "unknown function FROBNICATE at line 1, column 8",
        ),
        (
            "CREATE TABLE activePromotions AS SELECT rideId, COUNT(*) AS n FROM locations GROUP BY rideId EMIT CHANGES;",
            "ACTIVEPROMOTIONS at line 1, column 1 already exists",
        ),
    ];
    let in_use = eddy_fails(&broker, &["sql", "-e", "SHOW STREAMS;\n  DROP STREAM geoEvents;"]);
    assert!(
        in_use.contains("GEOEVENTS is read by the processor(s) LOCATIONS")
            && in_use.contains("(statement at line 2, column 3)"),
        "{in_use}"
    );
    for (text, expected) in cases {
        let e = eddy_fails(&broker, &["sql", "-e", text]);
        assert!(e.contains(expected), "{text:?}: {e}");
    }
    // In a file, positions are the file's.
    let file = dir.path().join("bad.sql");
    std::fs::write(
        &file,
        "SHOW TABLES;\n\n-- a comment\nSELECT rideId + 1 FROM activePromotions;\n",
    )
    .unwrap();
    let run = eddy(&broker, &["sql", "-f", file.to_str().unwrap()]);
    assert!(!run.success);
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.contains("type mismatch at line 4, column"), "{run:?}");
}

/// One poll of a push query: (rows as JSON arrays, columns, next positions).
fn push_poll(
    client: &mut RawClient,
    text: &str,
    from: Vec<v1::SqlPosition>,
) -> (Vec<serde_json::Value>, Vec<String>, Vec<v1::SqlPosition>) {
    let body = request::Body::Sql(v1::SqlRequest { sql: text.into(), from, max_wait_ms: 500 });
    let result = match client.call_ok(body) {
        response::Body::Sql(r) => r.results.into_iter().next().and_then(|r| r.result),
        other => panic!("unexpected answer {other:?}"),
    };
    match result {
        Some(R::Push(p)) => {
            let rows = p.rows.iter().map(|r| serde_json::from_str(r).unwrap()).collect();
            (rows, p.columns, p.next)
        }
        other => panic!("{text}: {other:?}"),
    }
}

/// Polls a started push query until it has read `records` records of its topic (all
/// partitions); returns the rows, sorted (partitions interleave).
fn push_rows_until(
    client: &mut RawClient,
    text: &str,
    mut from: Vec<v1::SqlPosition>,
    records: u64,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rows = Vec::new();
    while from.iter().map(|p| p.offset).sum::<u64>() < records {
        assert!(Instant::now() < deadline, "{text}: read only {from:?} of {records} records");
        let (more, _, next) = push_poll(client, text, from);
        rows.extend(more);
        from = next;
    }
    assert_eq!(from.iter().map(|p| p.offset).sum::<u64>(), records, "{text}: read past the end");
    rows.sort_by_key(|r| r.to_string());
    rows
}

#[test]
fn push_queries_on_streams_show_the_records_produced_after_they_started() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let mut client = RawClient::connect(broker.addr());
    let declare = "CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR) \
        WITH (kafka_topic='clicks', partitions=2);\n\
        CREATE STREAM a_clicks AS SELECT user, page FROM clicks WHERE page LIKE '/a%' EMIT CHANGES;";
    eddy_ok(&broker, &["sql", "-e", declare]);
    // Produced before the push queries start: never shown.
    produce(
        &broker,
        dir.path(),
        "clicks",
        "u1\t{\"page\":\"/a/old\"}\nu2\t{\"page\":\"/b/old\"}\n",
    );
    wait_caught_up(&mut client, &[("A_CLICKS", 1)]);

    // Over the wire: the first poll answers where the topic ends, no rows.
    let on_clicks =
        "SELECT user, UCASE(page) AS loud FROM clicks WHERE page != '/skip' EMIT CHANGES;";
    let on_derived = "SELECT * FROM a_clicks EMIT CHANGES;";
    let (rows, columns, clicks_from) = push_poll(&mut client, on_clicks, vec![]);
    assert_eq!((rows.len(), columns), (0, vec!["USER".to_string(), "LOUD".to_string()]));
    assert_eq!(clicks_from.iter().map(|p| p.offset).sum::<u64>(), 2, "{clicks_from:?}");
    let (rows, columns, derived_from) = push_poll(&mut client, on_derived, vec![]);
    assert_eq!((rows.len(), columns), (0, vec!["USER".to_string(), "PAGE".to_string()]));
    assert_eq!(derived_from.iter().map(|p| p.offset).sum::<u64>(), 1, "{derived_from:?}");

    produce(
        &broker,
        dir.path(),
        "clicks",
        "u3\t{\"page\":\"/a/new\"}\nu4\t{\"page\":\"/skip\"}\nu5\t{\"page\":\"/b/new\"}\nu1\t{\"page\":\"/a/again\"}\n",
    );
    // The stream's 4 new records: 3 pass the WHERE, projected.
    assert_eq!(
        push_rows_until(&mut client, on_clicks, clicks_from, 6),
        vec![
            serde_json::json!(["u1", "/A/AGAIN"]),
            serde_json::json!(["u3", "/A/NEW"]),
            serde_json::json!(["u5", "/B/NEW"]),
        ]
    );
    // The derived stream's 2 new records (its query wrote them after the push query started).
    assert_eq!(
        push_rows_until(&mut client, on_derived, derived_from, 3),
        vec![serde_json::json!(["u1", "/a/again"]), serde_json::json!(["u3", "/a/new"])]
    );

    // Through the CLI, with the statement's own LIMIT: the header comes once the first poll
    // answered, so what is produced after it is new to the query.
    let mut command = std::process::Command::new(eddy_tests::broker::eddy_binary());
    command.args(["--broker", &broker.addr().to_string(), "sql", "-e"]);
    command.arg("SELECT page FROM clicks WHERE user = 'u9' EMIT CHANGES LIMIT 2;");
    let mut cli = ChildProcess::spawn_command(command).unwrap();
    let deadline = deadline_in(Duration::from_secs(60));
    assert_eq!(cli.next_line(deadline).unwrap().as_deref(), Some("| PAGE |"));
    produce(
        &broker,
        dir.path(),
        "clicks",
        "u9\t{\"page\":\"/p1\"}\nu8\t{\"page\":\"/p2\"}\nu9\t{\"page\":\"/p3\"}\nu9\t{\"page\":\"/p4\"}\n",
    );
    assert_eq!(cli.remaining_lines(deadline).unwrap(), vec!["| /p1 |", "| /p3 |"]);
    let status = cli.wait().unwrap();
    assert!(status.success(), "{}", cli.stderr());

    // A push query over a stream only filters and projects; the refusal points at the text.
    let e = eddy_fails(
        &broker,
        &["sql", "-e", "SELECT page, COUNT(*) FROM clicks GROUP BY page EMIT CHANGES;"],
    );
    assert!(e.contains("not supported yet") && e.contains("line 1, column 1"), "{e}");
}

#[test]
fn insert_values_and_insert_select_write_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let setup = "CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR) WITH (kafka_topic='clicks');
        CREATE STREAM more_clicks (user VARCHAR KEY, page VARCHAR) WITH (kafka_topic='more');
        CREATE TABLE per_user AS SELECT user, COUNT(*) AS n FROM clicks GROUP BY user;
        INSERT INTO clicks SELECT * FROM more_clicks;";
    let out = eddy_ok(&broker, &["sql", "-e", setup]);
    assert!(out.iter().any(|l| l.starts_with("started query INSERTQUERY_CLICKS_")), "{out:?}");
    // One record straight into clicks, one through the insert query from more_clicks.
    let out = eddy_ok(&broker, &["sql", "-e", "INSERT INTO clicks VALUES ('ann', '/a');"]);
    assert!(
        out.iter().any(|l| l.split_whitespace().collect::<String>() == "|clicks|0|0|"),
        "{out:?}"
    );
    eddy_ok(&broker, &["sql", "-e", "INSERT INTO more_clicks (page, user) VALUES ('/b', 'ann');"]);
    let mut client = RawClient::connect(broker.addr());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (rows, _) = pull(&mut client, "SELECT n FROM per_user WHERE user = 'ann';");
        if rows == vec![serde_json::json!([2])] {
            break;
        }
        assert!(Instant::now() < deadline, "per_user never counted both inserts: {rows:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The insert query writes into clicks: the stream cannot be dropped under it.
    let err = eddy_fails(&broker, &["sql", "-e", "DROP STREAM clicks;"]);
    assert!(err.contains("writes into it; TERMINATE it first"), "{err}");
}
