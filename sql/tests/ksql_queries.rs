//! Pull and push queries and KAFKA-format values with ksqlDB's semantics: the regression tests
//! of ROWTIME in pull queries and of point lookups on DOUBLE keys, the window columns of
//! `SELECT *`, a push query over a DELIMITED table's topic, KAFKA-format primitives.
#![allow(clippy::unwrap_used)]

mod golden;

use golden::{pull, run};
use serde_json::{Value, json};

#[test]
fn pull_lookup_on_a_double_key_with_an_integer_literal_finds_the_row() {
    let script = "CREATE STREAM m (id DOUBLE KEY, v INT) WITH (kafka_topic='m');
        CREATE TABLE latest AS SELECT id, LATEST_BY_OFFSET(v) AS v FROM m GROUP BY id;";
    let ran = run(script, &[("m", Some("10.0"), json!({"v": 7}), 1)]);
    let (_, rows) = pull(&ran, script, "SELECT id, v FROM latest WHERE id = 10;");
    assert_eq!(Value::from(rows), json!([{"ID": 10.0, "V": 7}]));
    let (_, rows) = pull(&ran, script, "SELECT id, v FROM latest WHERE ROWKEY = 10;");
    assert_eq!(rows.len(), 1, "ROWKEY = 10 on a DOUBLE key");
}

#[test]
fn select_star_on_a_windowed_table_puts_the_window_after_the_key() {
    let script = "CREATE STREAM s (k VARCHAR KEY, n INT) WITH (kafka_topic='s');
        CREATE TABLE w AS SELECT k, COUNT(*) AS c FROM s WINDOW TUMBLING (SIZE 1 SECOND)
          GROUP BY k;";
    let ran = run(script, &[("s", Some("a"), json!({"n": 1}), 1500)]);
    let (columns, rows) = pull(&ran, script, "SELECT * FROM w;");
    assert_eq!(columns, ["K", "WINDOWSTART", "WINDOWEND", "C"]);
    assert_eq!(
        Value::from(rows),
        json!([{"K": "a", "WINDOWSTART": 1000, "WINDOWEND": 2000, "C": 1}])
    );
}

#[test]
fn rowtime_in_a_pull_query_is_the_time_of_the_row() {
    let script = "CREATE STREAM s (k VARCHAR KEY, n INT) WITH (kafka_topic='s');
        CREATE TABLE latest AS SELECT k, LATEST_BY_OFFSET(n) AS n FROM s GROUP BY k;";
    let input = [
        ("s", Some("a"), json!({"n": 1}), 1_000),
        ("s", Some("b"), json!({"n": 2}), 2_000),
        ("s", Some("a"), json!({"n": 3}), 3_000),
    ];
    let ran = run(script, &input);
    let (_, rows) = pull(&ran, script, "SELECT k, n, ROWTIME AS t FROM latest;");
    assert_eq!(
        Value::from(rows),
        json!([{"K": "a", "N": 3, "T": 3000}, {"K": "b", "N": 2, "T": 2000}])
    );
    let (_, rows) = pull(&ran, script, "SELECT ROWTIME AS t FROM latest WHERE k = 'b';");
    assert_eq!(Value::from(rows), json!([{"T": 2000}]));
}

#[test]
fn kafka_format_values_are_big_endian_primitives() {
    let script =
        "CREATE STREAM nums (k VARCHAR KEY, n INT) WITH (kafka_topic='nums', value_format='KAFKA');
        CREATE STREAM doubled AS SELECT k, CAST(n AS BIGINT) * 2 AS n2 FROM nums;";
    let ran = run(script, &[]);
    let records: Vec<golden::common::In> = [7_i32, -3]
        .iter()
        .map(|n| (Some(b"a".to_vec()), Some(n.to_be_bytes().to_vec()), 1))
        .collect();
    golden::common::produce(&*ran.logs, "nums", 0, &records, 10);
    golden::settle(&ran.running);
    let out: Vec<Option<Vec<u8>>> =
        golden::common::read_topic(&*ran.logs, "DOUBLED").into_iter().map(|r| r.value).collect();
    assert_eq!(out, [Some(14_i64.to_be_bytes().to_vec()), Some((-6_i64).to_be_bytes().to_vec())]);
}

#[test]
fn a_push_query_reads_a_delimited_table_topic() {
    let mut session = eddy_sql::Session::new(golden::functions());
    let script = "CREATE STREAM test (k VARCHAR KEY, a VARCHAR, n INT)
          WITH (kafka_topic='t', value_format='DELIMITED');
        CREATE TABLE out AS SELECT a, COUNT(*) AS c, MAX(n) AS hi FROM test GROUP BY a;";
    session.execute(script, 1).unwrap();
    let outcomes = session.execute("SELECT * FROM out EMIT CHANGES;", 1).unwrap();
    let Some(eddy_sql::Outcome::Select(q)) = outcomes.into_iter().next() else { panic!() };
    let value = q.decode_value(Some(b"2,7"));
    assert_eq!(value, json!({"C": 2, "HI": 7}));
    let row = q.row(&json!("x"), &value, 5, &session.functions).unwrap();
    assert_eq!(Value::Object(row), json!({"A": "x", "C": 2, "HI": 7}));
    assert_eq!(q.decode_value(Some(b"2,7,9")), Value::Null, "a line of the wrong width");
}
