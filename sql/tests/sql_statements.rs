//! The statements that are parsed and checked here and executed by the broker later: pull and
//! push queries, SHOW, DESCRIBE, DROP, TERMINATE, CREATE OR REPLACE — pull queries run against
//! live tables (point lookups, range conditions, LIMIT, windowed tables), push queries over
//! streams evaluated on raw records, and the join clauses' kinds and windows.
#![allow(clippy::unwrap_used)]

#[path = "../../processor/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use eddy_processor::{LogAccess, RuntimeConfig};
use eddy_sql::{
    EmitMode, ExprKind, FunctionRegistry, JoinKind, Outcome, Session, ShowWhat, SourceKind,
    SqlError, Statement, parse, parse_one,
};
use serde_json::{Value, json};

#[test]
fn every_statement_kind_parses() {
    let script = "
        SELECT rideId, promotion FROM activePromotions WHERE ROWKEY = '6fd0fcdb';
        SELECT * FROM t WHERE k = 'a' AND WINDOWSTART >= 1000 AND WINDOWSTART < 2000 LIMIT 5;
        SELECT * FROM currentCarLocations EMIT CHANGES;
        SHOW STREAMS; SHOW TABLES; LIST QUERIES;
        DESCRIBE activePromotions;
        DROP TABLE IF EXISTS t DELETE TOPIC;
        TERMINATE CTAS_T;
        CREATE OR REPLACE TABLE t AS SELECT k, COUNT(*) FROM s GROUP BY k EMIT CHANGES;";
    let all = parse(script).unwrap();
    assert_eq!(all.len(), 10);
    let Statement::Select(pull) = &all[0] else { panic!("{:?}", all[0]) };
    assert_eq!(pull.from.name, "ACTIVEPROMOTIONS");
    assert_eq!(pull.emit, None);
    let Statement::Select(range) = &all[1] else { panic!() };
    assert_eq!(range.limit, Some(5));
    assert!(matches!(range.filter.as_ref().unwrap().kind, ExprKind::Binary { .. }));
    let Statement::Select(push) = &all[2] else { panic!() };
    assert_eq!(push.emit, Some(EmitMode::Changes));
    assert!(matches!(all[3], Statement::Show { what: ShowWhat::Streams, .. }));
    assert!(matches!(all[4], Statement::Show { what: ShowWhat::Tables, .. }));
    assert!(matches!(all[5], Statement::Show { what: ShowWhat::Queries, .. }));
    assert!(matches!(&all[6], Statement::Describe { name, .. } if name == "ACTIVEPROMOTIONS"));
    assert!(matches!(&all[7], Statement::Drop { kind: SourceKind::Table, if_exists: true,
        delete_topic: true, name, .. } if name == "T"));
    assert!(matches!(&all[8], Statement::Terminate { query, .. } if query == "CTAS_T"));
    let Statement::CreateAs(replace) = &all[9] else { panic!() };
    assert!(replace.or_replace && replace.kind == SourceKind::Table);
    // Quoted names keep their case; unquoted ones are upper-cased.
    let Statement::Select(q) = parse_one("SELECT `rideId`, rideId FROM \"Mixed\"").unwrap() else {
        panic!()
    };
    assert_eq!(q.from.name, "Mixed");
    assert_eq!(format!("{:?}", q.items).matches("rideId").count(), 1);
}

#[test]
fn catalog_statements_and_create_or_replace_bump_the_version() {
    let mut s = Session::new(FunctionRegistry::new());
    let setup = "CREATE STREAM s (k VARCHAR KEY, n INT) WITH (kafka_topic='s', partitions=2);
        CREATE TABLE t AS SELECT k, SUM(n) AS total FROM s GROUP BY k EMIT CHANGES;";
    let out = s.execute(setup, 3).unwrap();
    let Outcome::Query { id, compiled, replaced } = &out[1] else { panic!() };
    assert_eq!((id.as_str(), compiled.processor.version(), *replaced), ("CTAS_T", 3, false));
    assert_eq!(compiled.processor.name(), "T");

    let again = "CREATE TABLE t AS SELECT k, COUNT(*) AS n FROM s GROUP BY k EMIT CHANGES;";
    assert!(matches!(s.execute(again, 1).unwrap_err(), SqlError::AlreadyExists { .. }));
    let replace = again.replace("CREATE TABLE", "CREATE OR REPLACE TABLE");
    let out = s.execute(&replace, 1).unwrap();
    let Outcome::Query { compiled, replaced, .. } = &out[0] else { panic!() };
    assert_eq!((compiled.processor.version(), *replaced), (4, true));

    let rows = |s: &mut Session, sql: &str| match s.execute(sql, 1).unwrap().remove(0) {
        Outcome::Rows(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(rows(&mut s, "SHOW STREAMS")[0]["name"], "S");
    assert_eq!(rows(&mut s, "SHOW TABLES")[0]["topic"], "T");
    assert_eq!(
        rows(&mut s, "SHOW QUERIES")[0],
        json!({"id": "CTAS_T", "target": "T", "version": 4})
    );
    assert_eq!(
        rows(&mut s, "DESCRIBE t"),
        vec![
            json!({"column": "K", "type": "VARCHAR", "key": true}),
            json!({"column": "N", "type": "BIGINT", "key": false}),
        ]
    );
    assert!(matches!(s.execute("TERMINATE CTAS_T", 1).unwrap()[0], Outcome::Terminated(_)));
    assert!(matches!(s.execute("DROP TABLE t", 1).unwrap()[0], Outcome::Dropped(_)));
    assert!(s.execute("DROP TABLE IF EXISTS t", 1).unwrap().is_empty());
    assert!(matches!(s.execute("DESCRIBE t", 1).unwrap_err(), SqlError::UnknownSource { .. }));
}

#[test]
fn pull_queries_look_up_keys_filter_ranges_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    let mut s = Session::new(FunctionRegistry::new());
    let script = "CREATE STREAM s (k VARCHAR KEY, n INT) WITH (kafka_topic='s');
        CREATE TABLE totals AS SELECT k, SUM(n) AS total FROM s GROUP BY k EMIT CHANGES;
        CREATE TABLE per_min AS SELECT k, COUNT(*) AS c FROM s
          WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY k EMIT CHANGES;";
    let mut running = Vec::new();
    for o in s.execute(script, 1).unwrap() {
        match o {
            Outcome::Declared(i) => logs.create_topic(&i.topic, i.partitions, false).unwrap(),
            Outcome::Query { compiled, .. } => {
                let config = RuntimeConfig::new(dir.path().join("state"));
                running.push(compiled.processor.start(logs.clone(), config).unwrap());
            }
            _ => {}
        }
    }
    let records: Vec<common::In> =
        [("a", 1, 0), ("b", 5, 1_000), ("c", 7, 61_000), ("a", 2, 62_000)]
            .iter()
            .map(|(k, n, ts)| {
                (Some(k.as_bytes().to_vec()), Some(format!("{{\"n\": {n}}}").into_bytes()), *ts)
            })
            .collect();
    common::produce(&*logs, "s", 0, &records, 10);
    for r in &running {
        r.wait_caught_up(Duration::from_secs(30)).unwrap();
    }
    let totals = running[0].table::<Value, Value>("TOTALS").unwrap();
    let per_min = running[1].table::<Value, Value>("PER_MIN").unwrap();
    // Pull queries read materialized tables only.
    assert!(matches!(s.execute("SELECT * FROM s", 1).unwrap_err(), SqlError::Unsupported { .. }));
    let mut pull = |sql: &str, reader: &eddy_processor::TableReader<Value, Value>| {
        let Outcome::Select(q) = s.execute(sql, 1).unwrap().remove(0) else { panic!() };
        assert!(!q.push);
        q.run(reader, &s.functions).unwrap().into_iter().map(Value::Object).collect::<Vec<_>>()
    };
    assert_eq!(
        pull("SELECT * FROM totals WHERE k = 'a'", &totals),
        vec![json!({"K": "a", "TOTAL": 3})]
    );
    assert_eq!(pull("SELECT total FROM totals WHERE ROWKEY = 'zz'", &totals), Vec::<Value>::new());
    assert_eq!(
        pull("SELECT k, total * 2 AS twice FROM totals WHERE total BETWEEN 3 AND 6", &totals),
        vec![json!({"K": "a", "TWICE": 6}), json!({"K": "b", "TWICE": 10})]
    );
    assert_eq!(pull("SELECT k FROM totals LIMIT 2", &totals).len(), 2);
    assert_eq!(
        pull(
            "SELECT k, c, WINDOWSTART AS ws FROM per_min WHERE ROWKEY = 'a' AND WINDOWSTART >= 60000",
            &per_min
        ),
        vec![json!({"K": "a", "C": 1, "WS": 60_000})]
    );
    assert_eq!(pull("SELECT * FROM per_min WHERE WINDOWEND = 60000", &per_min).len(), 2);
    for r in running {
        r.stop().unwrap();
    }
}

#[test]
fn joins_parse_with_their_kind_and_window() {
    let select = |sql: &str| match parse_one(sql).unwrap() {
        Statement::Select(s) => s,
        other => panic!("{other:?}"),
    };
    /// (before, after, grace) in ms
    type Window = Option<(i64, i64, Option<i64>)>;
    // (FROM ... ON, kind, window)
    let cases: Vec<(&str, JoinKind, Window)> = vec![
        (
            "a JOIN b WITHIN 1 HOUR ON a.k = b.k",
            JoinKind::Inner,
            Some((3_600_000, 3_600_000, None)),
        ),
        ("a INNER JOIN b ON a.k = b.k", JoinKind::Inner, None),
        (
            "a LEFT OUTER JOIN b WITHIN (1 SECOND, 2 SECONDS) GRACE PERIOD 0 SECONDS ON a.k = b.k",
            JoinKind::Left,
            Some((1_000, 2_000, Some(0))),
        ),
        (
            "a x RIGHT JOIN b y WITHIN 5 MINUTES GRACE PERIOD 1 MINUTE ON x.k = y.k",
            JoinKind::Right,
            Some((300_000, 300_000, Some(60_000))),
        ),
        (
            "a FULL OUTER JOIN b WITHIN 2 DAYS ON a.k = b.k",
            JoinKind::Full,
            Some((172_800_000, 172_800_000, None)),
        ),
        (
            "a FULL JOIN b WITHIN (0 SECONDS, 7 MILLISECONDS) ON a.k = b.k",
            JoinKind::Full,
            Some((0, 7, None)),
        ),
        ("a OUTER JOIN b WITHIN 1 SECOND ON a.k = b.k", JoinKind::Full, Some((1_000, 1_000, None))),
    ];
    for (from, kind, window) in cases {
        let s = select(&format!("SELECT * FROM {from} EMIT CHANGES"));
        let join = s.join.unwrap();
        assert_eq!(join.kind, kind, "{from}");
        assert_eq!(join.within.map(|w| (w.before_ms, w.after_ms, w.grace_ms)), window, "{from}");
        assert_eq!(join.right.name, "B", "{from}");
    }
    // FULL, RIGHT and OUTER stay names where they do not start a join.
    let s = select("SELECT full, right FROM a outer WHERE outer.right = 1");
    assert_eq!(s.from.alias.as_deref(), Some("OUTER"));
    assert!(s.join.is_none());
    let e = parse_one("SELECT * FROM a JOIN b WITHIN 0 SECONDS ON a.k = b.k").unwrap_err();
    assert!(e.to_string().contains("a duration must be positive"), "{e}");
}

#[test]
fn push_queries_over_streams_decode_filter_and_project_each_record() {
    let mut s = Session::new(FunctionRegistry::new());
    let script = "CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR, ms BIGINT) \
          WITH (kafka_topic='clicks-topic', timestamp='ms');
        CREATE STREAM a_pages AS SELECT user, page FROM clicks WHERE page LIKE '/a%' EMIT CHANGES;";
    s.execute(script, 1).unwrap();
    let push = |s: &mut Session, sql: &str| match s.execute(sql, 1).unwrap().remove(0) {
        Outcome::Push(q) => q,
        other => panic!("{sql}: {other:?}"),
    };
    let q = push(
        &mut s,
        "SELECT user, UCASE(page) AS p, ROWTIME AS t, ROWKEY AS k FROM clicks c \
         WHERE c.page != '/x' EMIT CHANGES LIMIT 3;",
    );
    assert_eq!((q.stream.as_str(), q.topic.as_str(), q.limit), ("CLICKS", "clicks-topic", Some(3)));
    assert_eq!(q.columns(), ["USER", "P", "T", "K"]);
    let fns = FunctionRegistry::new();
    let row = |key: &[u8], value: &[u8], ts: i64| {
        q.row(Some(key), Some(value), ts, &fns).map(Value::Object)
    };
    // The TIMESTAMP column is the event time; the key column comes from the key.
    assert_eq!(
        row(b"u1", br#"{"page": "/a", "ms": 5000}"#, 99),
        Some(json!({"USER": "u1", "P": "/A", "T": 5000, "K": "u1"}))
    );
    // Without it, the record's time; fields match columns case-insensitively.
    assert_eq!(
        row(b"u2", br#"{"PAGE": "/b"}"#, 7),
        Some(json!({"USER": "u2", "P": "/B", "T": 7, "K": "u2"}))
    );
    assert_eq!(row(b"u3", br#"{"page": "/x"}"#, 7), None, "WHERE");
    assert_eq!(row(b"u4", b"not json", 7), None, "undecodable");

    // A stream made by CREATE STREAM AS SELECT is followed on its own topic.
    let q = push(&mut s, "SELECT * FROM a_pages EMIT CHANGES;");
    assert_eq!((q.topic.as_str(), q.columns()), ("A_PAGES", vec!["USER".into(), "PAGE".into()]));
    assert_eq!(
        q.row(Some(b"u1"), Some(br#"{"USER": "u1", "PAGE": "/a1"}"#), 1, &fns).map(Value::Object),
        Some(json!({"USER": "u1", "PAGE": "/a1"}))
    );

    // What a stateless poller cannot do, and a wrong EMIT, point at the text.
    let e =
        s.execute("SELECT page, COUNT(*) FROM clicks GROUP BY page EMIT CHANGES;", 1).unwrap_err();
    assert!(matches!(e, SqlError::Unsupported { .. }), "{e}");
    assert_eq!(e.pos().map(|p| (p.line, p.col)), Some((1, 1)));
    let e = s.execute("SELECT * FROM clicks EMIT FINAL;", 1).unwrap_err();
    assert!(e.to_string().contains("end it with EMIT CHANGES"), "{e}");
    let e = s.execute("SELECT nope FROM clicks EMIT CHANGES;", 1).unwrap_err();
    assert_eq!(e.pos().map(|p| (p.line, p.col)), Some((1, 8)), "{e}");
}
