//! ksqlDB's refusals, case by case: statements ksqlDB refuses are refused here too, with a
//! message saying what to change (ksqlDB's wording where it has one). The accepted side of
//! each rule is in `ksql_semantics.rs`.
#![allow(clippy::unwrap_used)]

mod golden;

use golden::refusal;

/// Checks that each statement, after `base`, is refused with a message containing its text.
fn refused(base: &str, cases: &[(&str, &str)]) {
    for (stmt, want) in cases {
        let err =
            refusal(&format!("{base}{stmt}")).unwrap_or_else(|| panic!("{stmt} was accepted"));
        assert!(err.contains(want), "{stmt}\n  gave: {err}\n  want: {want}");
    }
}

const WORDS: &str = "CREATE STREAM words (k VARCHAR KEY, source VARCHAR) \
    WITH (kafka_topic='words', value_format='json');";

#[test]
fn cast_of_text_to_array_map_or_struct_is_refused() {
    for (ty, shown) in [
        ("ARRAY<INT>", "ARRAY<INT>"),
        ("MAP<VARCHAR, INT>", "MAP<VARCHAR, INT>"),
        ("STRUCT<f0 INT>", "STRUCT<F0 INT>"),
    ] {
        let sql =
            format!("{WORDS} CREATE STREAM out AS SELECT k, CAST(source AS {ty}) FROM words;");
        let err = refusal(&sql).unwrap_or_else(|| panic!("CAST to {ty} was accepted"));
        assert!(
            err.contains(&format!("cast of VARCHAR to {shown} is not supported")),
            "{ty}: {err}"
        );
    }
}

#[test]
fn keys_missing_from_the_projection_twice_or_alone_are_refused() {
    let base = "CREATE STREAM t (id INT KEY, f1 INT, f2 INT) WITH (kafka_topic='t');\n";
    let cases = [
        (
            "CREATE STREAM out AS SELECT f1 FROM t;",
            "the query used to build OUT must include the key column ID in its projection \
             (eg, SELECT ID...)",
        ),
        (
            "CREATE TABLE out AS SELECT f2, COUNT(*) FROM t GROUP BY f1, f2;",
            "must include the key column F1 in its projection",
        ),
        (
            "CREATE TABLE out AS SELECT COUNT(*) FROM t GROUP BY id, f1, f2;",
            "must include the key columns ID, F1 and F2 in its projection (eg, SELECT ID, F1, F2...)",
        ),
        (
            "CREATE TABLE out AS SELECT f1, f2, f1 AS f3, COUNT(*) FROM t GROUP BY f1, f2;",
            "the projection contains a key column more than once: F1 and F3",
        ),
        (
            "CREATE TABLE out AS SELECT f1 FROM t GROUP BY f1;",
            "the projection contains no value columns",
        ),
        ("CREATE STREAM out AS SELECT id FROM t;", "the projection contains no value columns"),
    ];
    refused(base, &cases);
}

#[test]
fn formats_refuse_columns_they_cannot_hold() {
    let cases = [
        (
            "CREATE STREAM s (k VARCHAR KEY, a INT, b INT) WITH (kafka_topic='s', value_format='KAFKA');",
            "the 'KAFKA' format only supports a single field, got: A, B",
        ),
        (
            "CREATE STREAM s (a ARRAY<INT>) WITH (kafka_topic='s', value_format='DELIMITED');",
            "the 'DELIMITED' format does not support type ARRAY<INT> (column A)",
        ),
        (
            "CREATE STREAM s (a INT, b INT) WITH (kafka_topic='s', wrap_single_value=false);",
            "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas",
        ),
        (
            "CREATE STREAM s (a INT) WITH (kafka_topic='s', value_format='DELIMITED',
               wrap_single_value=true);",
            "format 'DELIMITED' does not support 'WRAP_SINGLE_VALUE' set to 'true'",
        ),
        (
            "CREATE STREAM s (a INT) WITH (kafka_topic='s', value_format='AVRO');",
            "VALUE_FORMAT 'AVRO' is not supported",
        ),
        (
            "CREATE STREAM s (a INT, b INT) WITH (kafka_topic='s', value_format='DELIMITED');
             CREATE STREAM t WITH (value_format='KAFKA') AS SELECT a, b FROM s;",
            "the 'KAFKA' format only supports a single field",
        ),
    ];
    refused("", &cases);
}

#[test]
fn partition_by_refuses_what_ksqldb_refuses() {
    let base = "CREATE STREAM input (id INT KEY, name VARCHAR) WITH (kafka_topic='input');\n";
    let cases = [
        (
            "CREATE STREAM out AS SELECT name, id FROM input PARTITION BY ABS(id);",
            "must include the partitioning expression",
        ),
        (
            "CREATE STREAM out AS SELECT name, name AS name2, id FROM input PARTITION BY name;",
            "the projection contains a key column more than once: NAME and NAME2",
        ),
        ("CREATE STREAM out AS SELECT * FROM input PARTITION BY name, id;", "several expressions"),
        ("CREATE STREAM out AS SELECT * FROM input PARTITION BY nope;", "unknown column NOPE"),
    ];
    refused(base, &cases);
}

#[test]
fn inserts_and_source_collections_refuse_what_ksqldb_refuses() {
    let base = "CREATE SOURCE STREAM input (k VARCHAR KEY, text VARCHAR)
          WITH (kafka_topic='test_topic', value_format='DELIMITED');
        CREATE SOURCE TABLE t (k INT PRIMARY KEY, text VARCHAR) WITH (kafka_topic='t');
        CREATE STREAM input2 (k VARCHAR KEY, text VARCHAR) WITH (kafka_topic='in2');
        CREATE STREAM other (k VARCHAR KEY, n BIGINT) WITH (kafka_topic='other');\n";
    let cases = [
        (
            "INSERT INTO input VALUES ('a', 'b');",
            "cannot insert values into read-only stream: INPUT",
        ),
        ("INSERT INTO t VALUES (1, 'b');", "cannot insert values into read-only table: T"),
        ("INSERT INTO input SELECT * FROM input2;", "cannot insert into read-only stream: INPUT"),
        (
            "CREATE TABLE u (k INT PRIMARY KEY, v INT) WITH (kafka_topic='u');
             INSERT INTO u SELECT * FROM input2;",
            "INSERT INTO can only be used to insert into a stream. U is a table.",
        ),
        ("INSERT INTO input2 SELECT * FROM other;", "Incompatible schema between results and sink"),
        ("INSERT INTO nope SELECT * FROM input2;", "unknown stream or table NOPE"),
        (
            "INSERT INTO input2 (k) VALUES ('a', 'b');",
            "expected a value for each of the 1 column(s), got 2",
        ),
        (
            "CREATE OR REPLACE SOURCE STREAM s (a INT) WITH (kafka_topic='s');",
            "CREATE OR REPLACE is not supported on source streams",
        ),
        (
            "CREATE OR REPLACE STREAM input (k VARCHAR KEY, text VARCHAR) WITH (kafka_topic='x');",
            "CREATE OR REPLACE is not supported on source streams",
        ),
        ("DROP STREAM input DELETE TOPIC;", "cannot delete topic for read-only source: INPUT"),
        (
            "CREATE STREAM out AS SELECT * FROM input2; INSERT INTO out SELECT * FROM input;
             DROP STREAM out;",
            "cannot drop OUT: query INSERTQUERY_OUT_",
        ),
        ("CREATE SOURCE STREAM s AS SELECT * FROM input2;", "not AS SELECT"),
    ];
    refused(base, &cases);
}

#[test]
fn a_join_projecting_neither_on_column_is_refused() {
    let sql = "CREATE STREAM l (a INT KEY, b INT) WITH (kafka_topic='left');
        CREATE STREAM r (a INT KEY, c INT) WITH (kafka_topic='right');
        CREATE STREAM out AS SELECT l.b, r.c FROM l JOIN r WITHIN 10 SECONDS ON l.a = r.a;";
    let err = refusal(sql).expect("accepted");
    assert!(err.contains("must include the join expression L.A or R.A in its projection"), "{err}");
}

#[test]
fn a_stream_from_a_table_or_an_aggregation_ksqldb_cannot_undo_is_refused() {
    let base = "CREATE TABLE t (k VARCHAR PRIMARY KEY, v INT) WITH (kafka_topic='t');\n";
    let cases = [
        (
            "CREATE STREAM s AS SELECT * FROM t;",
            "a SELECT from table T produces a TABLE; use CREATE TABLE",
        ),
        (
            "CREATE TABLE c AS SELECT v, MIN(v) AS lo FROM t GROUP BY v;",
            "the aggregation function Min cannot be applied to a table source",
        ),
        (
            "CREATE TABLE c AS SELECT v, k, COUNT(*) AS n FROM t GROUP BY v;",
            "non-aggregate SELECT expression(s) not part of GROUP BY: K",
        ),
        (
            "CREATE TABLE c AS SELECT v, COUNT(*) AS n FROM t WINDOW TUMBLING (SIZE 1 SECOND) \
             GROUP BY v;",
            "windowing or joining table T in a persistent query",
        ),
    ];
    refused(base, &cases);
}
