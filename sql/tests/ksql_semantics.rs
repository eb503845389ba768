//! ksqlDB's semantics, case by case: each case is named after the behaviour it shows, written
//! here from what ksqlDB's own query-validation tests expect (statements, inputs with keys and
//! timestamps, the records that come out). Refusals are `ksql_refusals.rs`, pull and push
//! queries `ksql_queries.rs`. The compatibility table in docs/sql.md points at these cases; the
//! harness is `golden/mod.rs`.
#![allow(clippy::unwrap_used)]

mod golden;

use golden::{Case, Expect, check, one_by_one};
use serde_json::{Value, json};

fn word(key: &'static str, source: &str, ts: i64) -> golden::Event {
    ("words", Some(key), json!({ "source": source }), ts)
}

/// The partition of key "d" in a topic of two partitions.
const D_PARTITION: u32 = 1;

fn behaviours() -> Vec<Case> {
    let mut cases = vec![
        Case {
            name: "persistent query without EMIT CHANGES emits changes",
            sql: "CREATE STREAM s (k VARCHAR KEY, n INT) WITH (kafka_topic='s');
                CREATE STREAM big AS SELECT k, n FROM s WHERE n > 1;
                CREATE TABLE counts AS SELECT k, COUNT(*) AS c FROM s GROUP BY k;",
            input: vec![
                ("s", Some("a"), json!({"n": 1}), 10),
                ("s", Some("a"), json!({"n": 2}), 20),
            ],
            expect: vec![
                Expect::Topic("BIG", vec![(Some("a"), json!({"N": 2}))]),
                Expect::Topic(
                    "COUNTS",
                    vec![(Some("a"), json!({"C": 1})), (Some("a"), json!({"C": 2}))],
                ),
            ],
        },
        Case {
            name: "substring from position 0 starts at the first character",
            sql: "CREATE STREAM words (k VARCHAR KEY, source VARCHAR) WITH (kafka_topic='words');
                CREATE STREAM out AS SELECT k, SUBSTRING(source, 0, 2) AS s0,
                  SUBSTRING(source, 6) AS s6, SUBSTRING(source, 6, 3) AS s63,
                  SUBSTRING(source, -3) AS last3, SUBSTRING(source, 2, 100) AS rest FROM words;",
            input: vec![word("a", "some_string", 1), word("b", "short", 2)],
            expect: vec![Expect::Topic(
                "OUT",
                vec![
                    (
                        Some("a"),
                        json!({"S0": "so", "S6": "string", "S63": "str",
                            "LAST3": "ing", "REST": "ome_string"}),
                    ),
                    (
                        Some("b"),
                        json!({"S0": "sh", "S6": "", "S63": "", "LAST3": "ort",
                            "REST": "hort"}),
                    ),
                ],
            )],
        },
        Case {
            name: "geo_distance takes a unit: miles or kilometres, a bad unit is NULL",
            sql: "CREATE STREAM p (k VARCHAR KEY, lat1 DOUBLE, lon1 DOUBLE, lat2 DOUBLE,
                  lon2 DOUBLE, unit VARCHAR) WITH (kafka_topic='p');
                CREATE STREAM d AS SELECT k, ROUND(GEO_DISTANCE(lat1, lon1, lat2, lon2), 3) AS dflt,
                  ROUND(GEO_DISTANCE(lat1, lon1, lat2, lon2, unit), 3) AS d FROM p;",
            input: vec![
                (
                    "p",
                    Some("a"),
                    json!({"lat1": 37.4439, "lon1": -122.1663, "lat2": 51.5257,
                    "lon2": -0.1122, "unit": "KM"}),
                    1,
                ),
                (
                    "p",
                    Some("b"),
                    json!({"lat1": 37.4439, "lon1": -122.1663, "lat2": 51.5257,
                    "lon2": -0.1122, "unit": "MI"}),
                    2,
                ),
                (
                    "p",
                    Some("c"),
                    json!({"lat1": 37.4439, "lon1": -122.1663, "lat2": 51.5257,
                    "lon2": -0.1122, "unit": "furlongs"}),
                    3,
                ),
            ],
            expect: vec![Expect::Topic(
                "D",
                vec![
                    (Some("a"), json!({"DFLT": 8634.66, "D": 8634.66})),
                    (Some("b"), json!({"DFLT": 8634.66, "D": 5365.66})),
                    (Some("c"), json!({"DFLT": 8634.66, "D": null})),
                ],
            )],
        },
        Case {
            name: "cast converts the elements of arrays, maps and structs",
            sql: "CREATE STREAM c (k VARCHAR KEY, arr ARRAY<BIGINT>, m MAP<VARCHAR, VARCHAR>,
                  st STRUCT<f0 INT, f1 INT>) WITH (kafka_topic='c');
                CREATE STREAM out AS SELECT k, CAST(arr AS ARRAY<INT>) AS ints,
                  CAST(arr AS ARRAY<VARCHAR>) AS texts, CAST(m AS MAP<VARCHAR, INT>) AS mi,
                  CAST(st AS STRUCT<f0 VARCHAR, f3 VARCHAR>) AS st2,
                  CAST(arr AS VARCHAR) AS atext, CAST(m AS VARCHAR) AS mtext FROM c;",
            input: vec![(
                "c",
                Some("a"),
                json!({"arr": [1, 3, 2147483648_i64], "m": {"x": "10"}, "st": {"f0": 1, "f1": 3}}),
                1,
            )],
            expect: vec![Expect::Topic(
                "OUT",
                vec![(
                    Some("a"),
                    json!({"INTS": [1, 3, -2147483648_i64],
                        "TEXTS": ["1", "3", "2147483648"], "MI": {"x": 10},
                        "ST2": {"F0": "1", "F3": null}, "ATEXT": "[1, 3, 2147483648]", "MTEXT": "{x=10}"}),
                )],
            )],
        },
        Case {
            name: "a failing function is NULL, a failing column is NULL, the row still goes out",
            sql: "CREATE STREAM words (k VARCHAR KEY, source VARCHAR) WITH (kafka_topic='words');
                CREATE STREAM out AS SELECT k, CAST(source AS INT) AS n,
                  IFNULL(PARSE_TIMESTAMP(source, 'yyyy'), -1) AS t FROM words;",
            input: vec![word("a", "2020", 1), word("b", "abc", 2)],
            expect: vec![Expect::Topic(
                "OUT",
                vec![
                    (Some("a"), json!({"N": 2020, "T": 1577836800000_i64})),
                    (Some("b"), json!({"N": null, "T": -1})),
                ],
            )],
        },
        Case {
            name: "a tombstone in a stream stays a tombstone through a projection, is filtered \
                   out by WHERE and is not counted (never a row of NULLs)",
            sql: "CREATE STREAM words (k VARCHAR KEY, source VARCHAR) WITH (kafka_topic='words');
                CREATE STREAM copy AS SELECT k, source FROM words;
                CREATE STREAM some AS SELECT k, source FROM words WHERE source IS NULL OR k = 'a';
                CREATE TABLE counts AS SELECT k, COUNT(*) AS c FROM words GROUP BY k;",
            input: vec![word("a", "x", 1), ("words", Some("a"), Value::Null, 2), word("a", "y", 3)],
            expect: vec![
                Expect::Topic(
                    "COPY",
                    vec![
                        (Some("a"), json!({"SOURCE": "x"})),
                        (Some("a"), Value::Null),
                        (Some("a"), json!({"SOURCE": "y"})),
                    ],
                ),
                Expect::Topic(
                    "SOME",
                    vec![(Some("a"), json!({"SOURCE": "x"})), (Some("a"), json!({"SOURCE": "y"}))],
                ),
                Expect::Table("COUNTS", vec![(json!("a"), json!({"C": 2}))]),
            ],
        },
        Case {
            name: "json values are coerced to the declared column types",
            sql: "CREATE STREAM t (k VARCHAR KEY, i INT, b BIGINT, d DOUBLE, s VARCHAR,
                  f BOOLEAN, arr ARRAY<INT>, st STRUCT<deep INT>) WITH (kafka_topic='t');
                CREATE STREAM out AS SELECT k, i + 1 AS i1, b, d, s, f, arr, st FROM t;",
            input: vec![(
                "t",
                Some("a"),
                json!({"i": "2", "b": 3.7, "d": "1.5", "s": 5, "f": "true", "arr": ["1", 2],
                    "st": {"Deep": "7"}}),
                1,
            )],
            expect: vec![Expect::Topic(
                "OUT",
                vec![(
                    Some("a"),
                    json!({"I1": 3, "B": 3, "D": 1.5, "S": "5", "F": true,
                        "ARR": [1, 2], "ST": {"DEEP": 7}}),
                )],
            )],
        },
        Case {
            name: "generated column names count the unnamed expressions from KSQL_COL_0",
            sql: "CREATE STREAM words (k VARCHAR KEY, source VARCHAR) WITH (kafka_topic='words');
                CREATE STREAM out AS SELECT k, LCASE(source), source, UCASE(source),
                  LEN(source) AS KSQL_COL_2, CONCAT(source, '!') FROM words;",
            input: vec![word("a", "Ab", 1)],
            expect: vec![Expect::Topic(
                "OUT",
                vec![(
                    Some("a"),
                    json!({"KSQL_COL_0": "ab", "SOURCE": "Ab", "KSQL_COL_1": "AB",
                        "KSQL_COL_2": 2, "KSQL_COL_3": "Ab!"}),
                )],
            )],
        },
        Case {
            name: "key columns go to the record key only; AS_VALUE copies one into the value",
            sql: "CREATE STREAM t (k VARCHAR KEY, data VARCHAR) WITH (kafka_topic='t');
                CREATE STREAM copy AS SELECT k, data, AS_VALUE(k) AS kv FROM t;
                CREATE TABLE counts AS SELECT data, COUNT(1), COUNT(*), AS_VALUE(data) AS copy
                  FROM t GROUP BY data;",
            input: vec![
                ("t", Some("a"), json!({"data": "d1"}), 1),
                ("t", Some("b"), json!({"data": "d1"}), 2),
            ],
            expect: vec![
                Expect::Topic(
                    "COPY",
                    vec![
                        (Some("a"), json!({"DATA": "d1", "KV": "a"})),
                        (Some("b"), json!({"DATA": "d1", "KV": "b"})),
                    ],
                ),
                Expect::Topic(
                    "COUNTS",
                    vec![
                        (Some("d1"), json!({"KSQL_COL_0": 1, "KSQL_COL_1": 1, "COPY": "d1"})),
                        (Some("d1"), json!({"KSQL_COL_0": 2, "KSQL_COL_1": 2, "COPY": "d1"})),
                    ],
                ),
            ],
        },
        Case {
            name: "DELIMITED values: columns in declaration order, NULL as an empty field, \
                   quoting, the output in the source's format",
            sql: "CREATE STREAM test (k VARCHAR KEY, id BIGINT, name VARCHAR, value DOUBLE)
                  WITH (kafka_topic='test_topic', value_format='DELIMITED');
                CREATE STREAM s1 AS SELECT k, name, id, value * 2 AS twice FROM test
                  WHERE id > 100;
                CREATE STREAM s2 WITH (value_format='JSON') AS SELECT k, name FROM test;",
            input: vec![
                ("test_topic", Some("0"), json!("0,zero,0.0"), 1),
                ("test_topic", Some("1"), json!("101,\"one, two\",1.5"), 2),
                ("test_topic", Some("2"), json!("102,,"), 3),
            ],
            expect: vec![
                Expect::TopicText(
                    "S1",
                    vec![(Some("1"), Some("\"one, two\",101,3.0")), (Some("2"), Some(",102,"))],
                ),
                Expect::Topic(
                    "S2",
                    vec![
                        (Some("0"), json!({"NAME": "zero"})),
                        (Some("1"), json!({"NAME": "one, two"})),
                        (Some("2"), json!({"NAME": null})),
                    ],
                ),
            ],
        },
        Case {
            name: "PARTITION BY a value column, an expression, the key and NULL: the new key \
                   column leaves the value, the old key joins it (last with SELECT *)",
            sql: "CREATE STREAM input (id INT KEY, name VARCHAR, age INT)
                  WITH (kafka_topic='input', value_format='DELIMITED');
                CREATE STREAM by_name AS SELECT * FROM input PARTITION BY name;
                CREATE STREAM by_abs AS SELECT * FROM input PARTITION BY ABS(id);
                CREATE STREAM by_alias WITH (value_format='JSON') AS
                  SELECT UCASE(name) AS new_key, age, id FROM input PARTITION BY UCASE(name);
                CREATE STREAM by_null WITH (value_format='JSON') AS
                  SELECT id, name FROM input PARTITION BY NULL;",
            input: vec![
                ("input", Some("10"), json!("bob,22"), 1),
                ("input", Some("-3"), json!(",30"), 2),
                ("input", Some("7"), Value::Null, 3),
            ],
            expect: vec![
                Expect::TopicText(
                    "BY_NAME",
                    vec![(Some("bob"), Some("22,10")), (None, Some("30,-3")), (None, None)],
                ),
                Expect::TopicText(
                    "BY_ABS",
                    vec![
                        (Some("10"), Some("bob,22,10")),
                        (Some("3"), Some(",30,-3")),
                        (Some("7"), None),
                    ],
                ),
                Expect::Topic(
                    "BY_ALIAS",
                    vec![
                        (Some("BOB"), json!({"AGE": 22, "ID": 10})),
                        (None, json!({"AGE": 30, "ID": -3})),
                        (None, Value::Null),
                    ],
                ),
                Expect::Topic(
                    "BY_NULL",
                    vec![
                        (None, json!({"ID": 10, "NAME": "bob"})),
                        (None, json!({"ID": -3, "NAME": null})),
                        (None, Value::Null),
                    ],
                ),
            ],
        },
        Case {
            name: "IS [NOT] DISTINCT FROM treats NULL as a value; LIKE ... ESCAPE; STRUCT(...) and \
                   MAP(...) constructors; q.* selects one source's columns",
            sql: "CREATE STREAM t (k VARCHAR KEY, a INT, b INT, s VARCHAR) WITH (kafka_topic='t');
                CREATE STREAM out AS SELECT x.k, a IS DISTINCT FROM b AS d,
                  a IS NOT DISTINCT FROM b AS nd, s LIKE '100!%%' ESCAPE '!' AS pct,
                  s LIKE '_0%' AS any, STRUCT(f1 := a, `f2` := s) AS st,
                  MAP('x' := a, 'y' := b) AS m FROM t x;
                CREATE STREAM star AS SELECT x.* FROM t x;",
            input: vec![
                ("t", Some("a"), json!({"a": 1, "b": 1, "s": "100% sure"}), 1),
                ("t", Some("b"), json!({"a": 1, "b": null, "s": "1000"}), 2),
                ("t", Some("c"), json!({"a": null, "b": null, "s": null}), 3),
            ],
            expect: vec![
                Expect::Topic(
                    "OUT",
                    vec![
                        (
                            Some("a"),
                            json!({"D": false, "ND": true, "PCT": true, "ANY": true,
                                "ST": {"F1": 1, "f2": "100% sure"}, "M": {"x": 1, "y": 1}}),
                        ),
                        (
                            Some("b"),
                            json!({"D": true, "ND": false, "PCT": false, "ANY": true,
                                "ST": {"F1": 1, "f2": "1000"}, "M": {"x": 1, "y": null}}),
                        ),
                        (
                            Some("c"),
                            json!({"D": false, "ND": true, "PCT": null, "ANY": null,
                                "ST": {"F1": null, "f2": null}, "M": {"x": null, "y": null}}),
                        ),
                    ],
                ),
                Expect::Topic(
                    "STAR",
                    vec![
                        (Some("a"), json!({"A": 1, "B": 1, "S": "100% sure"})),
                        (Some("b"), json!({"A": 1, "B": null, "S": "1000"})),
                        (Some("c"), json!({"A": null, "B": null, "S": null})),
                    ],
                ),
            ],
        },
        Case {
            name: "WRAP_SINGLE_VALUE=false: one column read and written as the bare JSON value, \
                   not inherited by a query's output",
            sql: "CREATE STREAM bare (k VARCHAR KEY, v STRUCT<a DOUBLE>)
                  WITH (kafka_topic='bare', wrap_single_value=false);
                CREATE STREAM wrapped AS SELECT * FROM bare;
                CREATE STREAM unwrapped WITH (WRAP_SINGLE_VALUE=false) AS SELECT k, v->a AS a
                  FROM bare;",
            input: vec![
                ("bare", Some("x"), json!({"a": 45.5}), 1),
                ("bare", Some("y"), Value::Null, 2), // a tombstone stays one
            ],
            expect: vec![
                Expect::Topic(
                    "WRAPPED",
                    vec![(Some("x"), json!({"V": {"A": 45.5}})), (Some("y"), Value::Null)],
                ),
                Expect::TopicText("UNWRAPPED", vec![(Some("x"), Some("45.5")), (Some("y"), None)]),
            ],
        },
        Case {
            name: "ROWPARTITION and ROWOFFSET are the record's place in its topic",
            sql: "CREATE STREAM s (k VARCHAR KEY, v INT) WITH (kafka_topic='s', partitions=2);
                CREATE STREAM out AS SELECT k, v, ROWPARTITION AS p, ROWOFFSET AS o FROM s
                  WHERE ROWOFFSET >= 1;",
            input: vec![
                ("s", Some("d"), json!({"v": 1}), 1),
                ("s", Some("d"), json!({"v": 2}), 2),
                ("s", Some("d"), json!({"v": 3}), 3),
            ],
            expect: vec![Expect::TopicAnyOrder(
                "OUT",
                vec![
                    (Some("d"), json!({"V": 2, "P": D_PARTITION, "O": 1})),
                    (Some("d"), json!({"V": 3, "P": D_PARTITION, "O": 2})),
                ],
            )],
        },
        Case {
            name: "INSERT INTO a stream SELECT from another, converting formats; INSERT VALUES \
                   with and without a column list (key first, ROWTIME as the timestamp)",
            sql: "CREATE STREAM source1 (k VARCHAR KEY, data VARCHAR)
                  WITH (kafka_topic='stream-source', value_format='DELIMITED');
                CREATE STREAM source2 (k VARCHAR KEY, data VARCHAR)
                  WITH (kafka_topic='insert-source', value_format='JSON');
                CREATE STREAM output WITH (value_format='JSON') AS SELECT * FROM source1;
                INSERT INTO output SELECT * FROM source2;
                INSERT INTO source1 (data, k, ROWTIME) VALUES ('v0', 'k0', 5000);
                INSERT INTO source2 VALUES ('k9', UCASE('v9'));",
            input: vec![
                ("insert-source", Some("k1"), json!({"data": "v1"}), 10),
                ("stream-source", Some("k2"), json!("v2"), 20),
            ],
            expect: vec![
                // Two queries write OUTPUT: their records interleave in any order.
                Expect::TopicAnyOrder(
                    "OUTPUT",
                    vec![
                        (Some("k0"), json!({"DATA": "v0"})),
                        (Some("k9"), json!({"DATA": "V9"})),
                        (Some("k1"), json!({"DATA": "v1"})),
                        (Some("k2"), json!({"DATA": "v2"})),
                    ],
                ),
                Expect::TopicTimed(
                    "insert-source",
                    vec![
                        (Some("k9"), json!({"DATA": "V9"}), 0),
                        (Some("k1"), json!({"data": "v1"}), 10),
                    ],
                ),
            ],
        },
        Case {
            name: "lambdas: TRANSFORM, FILTER and REDUCE over arrays and maps, reading columns \
                   of the row",
            sql: "CREATE STREAM t (id VARCHAR KEY, nums ARRAY<INT>, m MAP<VARCHAR, INT>, k INT)
                  WITH (kafka_topic='t');
                CREATE STREAM out AS SELECT id, TRANSFORM(nums, x => x * k) AS scaled,
                  FILTER(nums, x => x > 1) AS big, REDUCE(nums, 0, (s, x) => s + x) AS total,
                  TRANSFORM(m, (key, v) => UCASE(key), (key, v) => v + 1) AS m2,
                  FILTER(m, (key, v) => v >= 2) AS m3,
                  REDUCE(m, 10, (s, key, v) => s + v) AS mtotal FROM t;",
            input: vec![(
                "t",
                Some("a"),
                json!({"nums": [1, 2, 3], "m": {"x": 1, "y": 2}, "k": 10}),
                1,
            )],
            expect: vec![Expect::Topic(
                "OUT",
                vec![(
                    Some("a"),
                    json!({"SCALED": [10, 20, 30], "BIG": [2, 3], "TOTAL": 6,
                        "M2": {"X": 2, "Y": 3}, "M3": {"y": 2}, "MTOTAL": 13}),
                )],
            )],
        },
        Case {
            name: "join columns as ksqlDB names them: SELECT * and q.* prefix every column with \
                   its source, a qualified column both sides have is prefixed, a unique one is \
                   not; the first projected ON column is the key",
            sql: "CREATE STREAM l (a INT KEY, b INT, c INT) WITH (kafka_topic='left');
                CREATE STREAM r (a INT KEY, b INT, c INT, e INT) WITH (kafka_topic='right');
                CREATE STREAM star AS SELECT * FROM l JOIN r WITHIN 10 SECONDS ON l.a = r.a;
                CREATE STREAM qstar AS SELECT l.a AS a, l.b, r.* FROM l JOIN r WITHIN 10 SECONDS
                  ON l.a = r.a;
                CREATE STREAM named AS SELECT r.a, l.c, r.e FROM l JOIN r WITHIN 10 SECONDS
                  ON l.a = r.a;",
            input: one_by_one(vec![
                ("left", Some("0"), json!({"b": 1, "c": 2}), 10),
                ("right", Some("0"), json!({"b": -1, "c": -2, "e": -3}), 11),
            ]),
            expect: vec![
                Expect::Topic(
                    "STAR",
                    vec![(
                        Some("0"),
                        json!({"L_B": 1, "L_C": 2, "R_A": 0, "R_B": -1, "R_C": -2, "R_E": -3}),
                    )],
                ),
                Expect::Topic(
                    "QSTAR",
                    vec![(Some("0"), json!({"L_B": 1, "R_A": 0, "R_B": -1, "R_C": -2, "R_E": -3}))],
                ),
                Expect::Topic("NAMED", vec![(Some("0"), json!({"L_C": 2, "E": -3}))]),
            ],
        },
        Case {
            name: "generated names skip the source's own column names",
            sql: "CREATE STREAM g (k VARCHAR KEY, KSQL_COL_0 INT) WITH (kafka_topic='g');
                CREATE STREAM out AS SELECT *, KSQL_COL_0 + 1 FROM g;",
            input: vec![("g", Some("a"), json!({"KSQL_COL_0": 1}), 1)],
            expect: vec![Expect::Topic(
                "OUT",
                vec![(Some("a"), json!({"KSQL_COL_0": 1, "KSQL_COL_1": 2}))],
            )],
        },
    ];
    cases.extend(tables());
    cases
}

/// Aggregations, windows, HAVING, and tables made from tables.
fn tables() -> Vec<Case> {
    vec![
        Case {
            name: "aggregating a table: a changed row leaves its old group and joins its new one, \
                   a deleted row leaves its group; counts go back to zero, or with HAVING the \
                   group is deleted",
            sql: "CREATE TABLE t (k VARCHAR PRIMARY KEY, region VARCHAR, v INT)
                  WITH (kafka_topic='t', value_format='DELIMITED');
                CREATE TABLE c AS SELECT region, COUNT(*) AS n, SUM(v) AS total FROM t
                  GROUP BY region;
                CREATE TABLE h AS SELECT region, COUNT(*) AS n FROM t GROUP BY region
                  HAVING COUNT(*) > 0;",
            input: vec![
                ("t", Some("1"), json!("east,10"), 1),
                ("t", Some("2"), json!("east,5"), 2),
                ("t", Some("1"), json!("west,7"), 3),
                ("t", Some("2"), Value::Null, 4),
            ],
            expect: vec![
                Expect::TopicText(
                    "C",
                    vec![
                        (Some("east"), Some("1,10")),
                        (Some("east"), Some("2,15")),
                        (Some("east"), Some("1,5")),
                        (Some("west"), Some("1,7")),
                        (Some("east"), Some("0,0")),
                    ],
                ),
                Expect::TopicText(
                    "H",
                    vec![
                        (Some("east"), Some("1")),
                        (Some("east"), Some("2")),
                        (Some("east"), Some("1")),
                        (Some("west"), Some("1")),
                        (Some("east"), None),
                    ],
                ),
            ],
        },
        Case {
            name: "a table from a table: each change projected, tombstones forwarded, a row \
                   WHERE rejects deletes its key (only if there), keyless records dropped",
            sql: "CREATE TABLE test (k VARCHAR PRIMARY KEY, id BIGINT, name VARCHAR, value INT)
                  WITH (kafka_topic='test_topic', value_format='DELIMITED');
                CREATE TABLE t1 AS SELECT k, name, value FROM test;
                CREATE TABLE big WITH (value_format='JSON') AS SELECT k, value FROM test
                  WHERE value > 150;",
            input: vec![
                ("test_topic", Some("1"), json!("1,one,100"), 1),
                ("test_topic", Some("1"), json!("2,two,200"), 2),
                ("test_topic", Some("2"), json!("3,three,300"), 3),
                ("test_topic", None, json!("4,four,400"), 4),
                ("test_topic", Some("2"), Value::Null, 5),
                ("test_topic", Some("1"), json!("5,five,50"), 6),
            ],
            expect: vec![
                Expect::TopicText(
                    "T1",
                    vec![
                        (Some("1"), Some("one,100")),
                        (Some("1"), Some("two,200")),
                        (Some("2"), Some("three,300")),
                        (Some("2"), None),
                        (Some("1"), Some("five,50")),
                    ],
                ),
                Expect::Topic(
                    "BIG",
                    vec![
                        (Some("1"), json!({"VALUE": 200})),
                        (Some("2"), json!({"VALUE": 300})),
                        (Some("2"), Value::Null),
                        (Some("1"), Value::Null),
                    ],
                ),
                Expect::Table("T1", vec![(json!("1"), json!({"NAME": "five", "VALUE": 50}))]),
            ],
        },
        Case {
            name: "DELIMITED with VALUE_DELIMITER, a GROUP BY table written delimited",
            sql: "CREATE STREAM test (k VARCHAR KEY, source VARCHAR)
                  WITH (kafka_topic='t', value_format='DELIMITED', value_delimiter='TAB');
                CREATE TABLE out AS SELECT SUBSTRING(source, 0, 2) AS thing, COUNT(*) AS n
                  FROM test GROUP BY SUBSTRING(source, 0, 2);",
            input: vec![
                ("t", None, json!("some string"), 1),
                ("t", None, json!("another string"), 2),
                ("t", None, json!("some string again"), 3),
            ],
            expect: vec![Expect::TopicText(
                "OUT",
                vec![(Some("so"), Some("1")), (Some("an"), Some("1")), (Some("so"), Some("2"))],
            )],
        },
        Case {
            name: "windows without GRACE PERIOD accept records 24 hours late; GRACE PERIOD \
                   drops what comes later; hopping windows start at 0 or later",
            sql: "CREATE STREAM test (id BIGINT KEY, value BIGINT)
                  WITH (kafka_topic='test_topic', value_format='DELIMITED');
                CREATE TABLE dflt AS SELECT id, MAX(value) FROM test
                  WINDOW TUMBLING (SIZE 30 SECONDS) GROUP BY id;
                CREATE TABLE graced AS SELECT id, MAX(value) FROM test
                  WINDOW TUMBLING (SIZE 30 SECONDS, GRACE PERIOD 1 MINUTE) GROUP BY id;
                CREATE TABLE hop AS SELECT id, COUNT(*) AS n FROM test
                  WINDOW HOPPING (SIZE 30 SECONDS, ADVANCE BY 15 SECONDS) GROUP BY id;",
            input: vec![
                ("test_topic", Some("0"), json!("0"), 0),
                ("test_topic", Some("0"), json!("1"), 89_999),
                ("test_topic", Some("0"), json!("5"), 10_009),
                ("test_topic", Some("0"), json!("0"), 90_000),
                ("test_topic", Some("0"), json!("6"), 10_010),
            ],
            expect: vec![
                Expect::TopicText(
                    "DFLT",
                    vec![
                        (Some(r#"{"key":0,"start":0,"end":30000}"#), Some("0")),
                        (Some(r#"{"key":0,"start":60000,"end":90000}"#), Some("1")),
                        (Some(r#"{"key":0,"start":0,"end":30000}"#), Some("5")),
                        (Some(r#"{"key":0,"start":90000,"end":120000}"#), Some("0")),
                        (Some(r#"{"key":0,"start":0,"end":30000}"#), Some("6")),
                    ],
                ),
                Expect::TopicText(
                    "GRACED",
                    vec![
                        (Some(r#"{"key":0,"start":0,"end":30000}"#), Some("0")),
                        (Some(r#"{"key":0,"start":60000,"end":90000}"#), Some("1")),
                        (Some(r#"{"key":0,"start":0,"end":30000}"#), Some("5")),
                        (Some(r#"{"key":0,"start":90000,"end":120000}"#), Some("0")),
                    ],
                ),
                Expect::TopicText(
                    "HOP",
                    vec![
                        (Some(r#"{"key":0,"start":0,"end":30000}"#), Some("1")),
                        (Some(r#"{"key":0,"start":60000,"end":90000}"#), Some("1")),
                        (Some(r#"{"key":0,"start":75000,"end":105000}"#), Some("1")),
                        (Some(r#"{"key":0,"start":0,"end":30000}"#), Some("2")),
                        (Some(r#"{"key":0,"start":75000,"end":105000}"#), Some("2")),
                        (Some(r#"{"key":0,"start":90000,"end":120000}"#), Some("1")),
                        (Some(r#"{"key":0,"start":0,"end":30000}"#), Some("3")),
                    ],
                ),
            ],
        },
        Case {
            name: "a session ends at its last event; a merge deletes the sessions it swallows \
                   (tombstones) before the merged row",
            sql: "CREATE STREAM test (id BIGINT KEY, value BIGINT)
                  WITH (kafka_topic='test_topic', value_format='DELIMITED');
                CREATE TABLE s2 AS SELECT id, MAX(value) FROM test WINDOW SESSION (30 SECONDS)
                  GROUP BY id;",
            input: vec![
                ("test_topic", Some("0"), json!("0"), 0),
                ("test_topic", Some("0"), json!("1"), 70_010),
                ("test_topic", Some("0"), json!("5"), 10_009),
                ("test_topic", Some("0"), json!("6"), 10_010),
            ],
            // The tombstone of a swallowed session carries that session's end (ksqlDB's).
            expect: vec![Expect::TopicTimed(
                "S2",
                vec![
                    (Some(r#"{"key":0,"start":0,"end":0}"#), json!(0), 0),
                    (Some(r#"{"key":0,"start":70010,"end":70010}"#), json!(1), 70_010),
                    (Some(r#"{"key":0,"start":0,"end":0}"#), Value::Null, 0),
                    (Some(r#"{"key":0,"start":0,"end":10009}"#), json!(5), 10_009),
                    (Some(r#"{"key":0,"start":0,"end":10009}"#), Value::Null, 10_009),
                    (Some(r#"{"key":0,"start":0,"end":10010}"#), json!(6), 10_010),
                ],
            )],
        },
        Case {
            name: "a row whose GROUP BY value is NULL joins no group",
            sql: "CREATE STREAM test (k VARCHAR KEY, str VARCHAR, pos INT)
                  WITH (kafka_topic='test_topic', value_format='DELIMITED');
                CREATE TABLE out AS SELECT SUBSTRING(str, pos), COUNT(*) FROM test
                  GROUP BY SUBSTRING(str, pos);",
            input: vec![
                ("test_topic", None, json!("xx,1"), 1),
                ("test_topic", None, json!("x,"), 2),
                ("test_topic", None, json!("xx,1"), 3),
            ],
            expect: vec![Expect::TopicText(
                "OUT",
                vec![(Some("xx"), Some("1")), (Some("xx"), Some("2"))],
            )],
        },
        Case {
            name: "HAVING: a group (or window) never passing it is never written, one leaving it \
                   is deleted with a tombstone",
            sql: "CREATE STREAM test (id BIGINT KEY, name VARCHAR, value BIGINT)
                  WITH (kafka_topic='test_topic', value_format='DELIMITED');
                CREATE TABLE t1 AS SELECT id, SUM(value) AS sum FROM test
                  WINDOW TUMBLING (SIZE 30 SECONDS) GROUP BY id HAVING SUM(value) > 100;
                CREATE TABLE t2 AS SELECT id, SUM(value) AS sum FROM test
                  GROUP BY id HAVING SUM(value) > 100;",
            input: vec![
                ("test_topic", Some("0"), json!("zero,0"), 0),
                ("test_topic", Some("1"), json!("one,101"), 0),
                ("test_topic", Some("1"), json!("one,-5"), 0),
            ],
            expect: vec![
                Expect::TopicText(
                    "T1",
                    vec![
                        (Some(r#"{"key":1,"start":0,"end":30000}"#), Some("101")),
                        (Some(r#"{"key":1,"start":0,"end":30000}"#), None),
                    ],
                ),
                Expect::TopicText("T2", vec![(Some("1"), Some("101")), (Some("1"), None)]),
            ],
        },
        Case {
            name: "aggregates COUNT(), COUNT(1), *_BY_OFFSET with a count and NULLs kept, \
                   COLLECT_LIST, COLLECT_SET, HISTOGRAM, TOPKDISTINCT",
            sql: "CREATE STREAM t (id VARCHAR KEY, f0 INT, s VARCHAR) WITH (kafka_topic='t');
                CREATE TABLE out AS SELECT id, COUNT() AS c, COUNT(1) AS c1,
                  LATEST_BY_OFFSET(f0, 2, false) AS l2, LATEST_BY_OFFSET(f0, false) AS l,
                  EARLIEST_BY_OFFSET(f0, 2) AS e2, COLLECT_LIST(s) AS cl, COLLECT_SET(s) AS cs,
                  HISTOGRAM(s) AS h, TOPKDISTINCT(f0, 2) AS top FROM t GROUP BY id;",
            input: vec![
                ("t", Some("a"), json!({"f0": 12, "s": "foo"}), 1),
                ("t", Some("a"), json!({"f0": null, "s": "baz"}), 2),
                ("t", Some("a"), json!({"f0": 13, "s": "foo"}), 3),
            ],
            expect: vec![Expect::Topic(
                "OUT",
                vec![
                    (
                        Some("a"),
                        json!({"C": 1, "C1": 1, "L2": [12], "L": 12, "E2": [12], "CL": ["foo"],
                            "CS": ["foo"], "H": {"foo": 1}, "TOP": [12]}),
                    ),
                    (
                        Some("a"),
                        json!({"C": 2, "C1": 2, "L2": [12, null], "L": null, "E2": [12],
                            "CL": ["foo", "baz"], "CS": ["foo", "baz"], "H": {"foo": 1, "baz": 1},
                            "TOP": [12]}),
                    ),
                    (
                        Some("a"),
                        json!({"C": 3, "C1": 3, "L2": [null, 13], "L": 13, "E2": [12, 13],
                            "CL": ["foo", "baz", "foo"], "CS": ["foo", "baz"],
                            "H": {"foo": 2, "baz": 1}, "TOP": [13, 12]}),
                    ),
                ],
            )],
        },
    ]
}

#[test]
fn ksqldb_behaviours() {
    for case in behaviours() {
        check(&case);
    }
}

#[test]
fn key_d_lands_in_partition_1() {
    assert_eq!(eddy_processor::partition_for_key(b"d", 2), D_PARTITION);
}
