//! The SQL golden table: each case is a script (declarations and one or more persistent
//! queries), input events, and the expected table rows or emitted changes — run on real
//! `LocalLogs` in a temporary directory (the harness is `golden/mod.rs`). Then the error
//! classes, each with its position.
#![allow(clippy::unwrap_used)]

mod golden;

use eddy_sql::{Session, SqlError};
use golden::{Case, Event, Expect, check, functions, one_by_one};
use serde_json::{Value, json};

const ORDERS: &str = "CREATE STREAM orders (id VARCHAR KEY, customer VARCHAR, amount DOUBLE, \
    qty INT, tags ARRAY<VARCHAR>, attrs MAP<VARCHAR, VARCHAR>, addr STRUCT<city VARCHAR, zip INT>, \
    raw VARCHAR) WITH (kafka_topic='orders', value_format='json');";

fn order(id: &'static str, customer: &str, amount: f64, qty: i64, ts: i64) -> Event {
    let v = json!({"customer": customer, "amount": amount, "qty": qty, "tags": ["a", "b"],
        "attrs": {"color": "red"}, "addr": {"city": "Oslo", "zip": 150}, "raw": "{\"x\": {\"y\": 5}}"});
    ("orders", Some(id), v, ts)
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "stream: WHERE, arithmetic, CASE, CAST, IS NULL, LIKE, access operators",
            sql: "CREATE STREAM orders (id VARCHAR KEY, customer VARCHAR, amount DOUBLE, \
                qty INT, tags ARRAY<VARCHAR>, attrs MAP<VARCHAR, VARCHAR>, \
                addr STRUCT<city VARCHAR, zip INT>, raw VARCHAR) WITH (kafka_topic='orders');
                CREATE STREAM big AS SELECT id, amount * qty AS total,
                  CASE WHEN qty > 2 THEN 'many' ELSE 'few' END AS size,
                  CAST(qty AS VARCHAR) AS q, customer IS NULL AS anon,
                  tags[1] AS first_tag, attrs['color'] AS color, addr->city AS city,
                  ROWTIME AS t
                FROM orders WHERE amount >= 10 AND customer LIKE 'a%' EMIT CHANGES;",
            input: vec![
                order("o1", "alice", 10.0, 3, 100),
                order("o2", "bob", 50.0, 1, 200),
                order("o3", "anna", 5.0, 1, 300),
                order("o4", "al", 12.5, 2, 400),
            ],
            expect: vec![Expect::Topic(
                "BIG",
                vec![
                    (
                        Some("o1"),
                        json!({"TOTAL": 30.0, "SIZE": "many", "Q": "3",
                        "ANON": false, "FIRST_TAG": "a", "COLOR": "red", "CITY": "Oslo", "T": 100}),
                    ),
                    (
                        Some("o4"),
                        json!({"TOTAL": 25.0, "SIZE": "few", "Q": "2",
                        "ANON": false, "FIRST_TAG": "a", "COLOR": "red", "CITY": "Oslo", "T": 400}),
                    ),
                ],
            )],
        },
        Case {
            name: "stream: string, JSON, time and geo functions, a user-defined function",
            sql: "CREATE STREAM orders (id VARCHAR KEY, customer VARCHAR, amount DOUBLE, qty INT, \
                  raw VARCHAR) WITH (kafka_topic='orders');
                CREATE STREAM f WITH (kafka_topic='f-out') AS SELECT id,
                  CONCAT(UCASE(customer), '-', LCASE('X')) AS c, SUBSTRING(customer, 2, 3) AS s,
                  SPLIT('a,b,c', ',')[2] AS sp, TRIM('  t ') AS tr, LEN(customer) AS l,
                  REPLACE(customer, 'a', 'A') AS r, EXTRACTJSONFIELD(raw, '$.x.y') AS j,
                  REGEXP_EXTRACT('(\\d+)', 'ab12cd', 1) AS re,
                  FORMAT_TIMESTAMP(ROWTIME, 'yyyy-MM-dd HH:mm:ss') AS ft,
                  PARSE_TIMESTAMP('1970-01-02 00:00:00', 'yyyy-MM-dd HH:mm:ss') AS pt,
                  ROUND(GEO_DISTANCE(48.8566, 2.3522, 51.5074, -0.1278)) AS km,
                  TRIPLE(qty) AS tq
                FROM orders EMIT CHANGES;",
            input: vec![order("o1", "alice", 10.0, 3, 86_400_000 + 3_661_000)],
            expect: vec![Expect::Topic(
                "f-out",
                vec![(
                    Some("o1"),
                    json!({"C": "ALICE-x", "S": "lic", "SP": "b", "TR": "t", "L": 5, "R": "Alice",
                        "J": "5", "RE": "12", "FT": "1970-01-02 01:01:01", "PT": 86_400_000,
                        "KM": 344, "TQ": 9}),
                )],
            )],
        },
        Case {
            name: "table: COUNT, SUM, AVG, MIN, MAX, LATEST_BY_OFFSET, COUNT_DISTINCT, TOPK",
            sql: "CREATE STREAM orders (id VARCHAR KEY, customer VARCHAR, amount DOUBLE, qty INT) \
                  WITH (kafka_topic='orders');
                CREATE TABLE per_customer AS SELECT customer, COUNT(*) AS n, SUM(qty) AS units,
                  AVG(amount) AS avg_amount, MIN(amount) AS lo, MAX(amount) AS hi,
                  LATEST_BY_OFFSET(id) AS last_id, COUNT_DISTINCT(qty) AS kinds,
                  TOPK(amount, 2) AS top2, TRIPLE(COUNT(*)) AS n3
                FROM orders GROUP BY customer EMIT CHANGES;",
            input: vec![
                order("o1", "alice", 10.0, 3, 100),
                order("o2", "bob", 50.0, 1, 200),
                order("o3", "alice", 30.0, 3, 300),
                order("o4", "alice", 20.0, 1, 400),
            ],
            expect: vec![Expect::Table(
                "PER_CUSTOMER",
                vec![
                    (
                        json!("alice"),
                        json!({"N": 3, "UNITS": 7,
                            "AVG_AMOUNT": 20.0, "LO": 10.0, "HI": 30.0, "LAST_ID": "o4",
                            "KINDS": 2, "TOP2": [30.0, 20.0], "N3": 9}),
                    ),
                    (
                        json!("bob"),
                        json!({"N": 1, "UNITS": 1,
                            "AVG_AMOUNT": 50.0, "LO": 50.0, "HI": 50.0, "LAST_ID": "o2",
                            "KINDS": 1, "TOP2": [50.0], "N3": 3}),
                    ),
                ],
            )],
        },
        Case {
            name: "table: GROUP BY two columns (the key is their array), group values in \
                   expressions and aggregates",
            sql: "CREATE STREAM orders (id VARCHAR KEY, customer VARCHAR, amount DOUBLE, qty INT) \
                  WITH (kafka_topic='orders');
                CREATE TABLE per_pair AS SELECT customer, qty, UCASE(customer) AS up,
                  COUNT(*) AS n, MAX(amount) AS hi, LATEST_BY_OFFSET(customer) AS c2
                FROM orders GROUP BY customer, qty EMIT CHANGES;",
            input: vec![
                order("o1", "alice", 10.0, 3, 100),
                order("o2", "bob", 50.0, 1, 200),
                order("o3", "alice", 30.0, 3, 300),
                order("o4", "alice", 20.0, 1, 400),
            ],
            expect: vec![
                Expect::Table(
                    "PER_PAIR",
                    vec![
                        (
                            json!(["alice", 1]),
                            json!({"UP": "ALICE", "N": 1,
                                "HI": 20.0, "C2": "alice"}),
                        ),
                        (
                            json!(["alice", 3]),
                            json!({"UP": "ALICE", "N": 2,
                                "HI": 30.0, "C2": "alice"}),
                        ),
                        (
                            json!(["bob", 1]),
                            json!({"UP": "BOB", "N": 1,
                                "HI": 50.0, "C2": "bob"}),
                        ),
                    ],
                ),
                Expect::Topic(
                    "PER_PAIR",
                    vec![
                        (
                            Some("[\"alice\",3]"),
                            json!({"UP": "ALICE", "N": 1,
                                "HI": 10.0, "C2": "alice"}),
                        ),
                        (
                            Some("[\"bob\",1]"),
                            json!({"UP": "BOB", "N": 1,
                                "HI": 50.0, "C2": "bob"}),
                        ),
                        (
                            Some("[\"alice\",3]"),
                            json!({"UP": "ALICE", "N": 2,
                                "HI": 30.0, "C2": "alice"}),
                        ),
                        (
                            Some("[\"alice\",1]"),
                            json!({"UP": "ALICE", "N": 1,
                                "HI": 20.0, "C2": "alice"}),
                        ),
                    ],
                ),
            ],
        },
        Case {
            name: "table: HAVING (a group leaving it is a tombstone), WHERE before grouping",
            sql: "CREATE STREAM orders (id VARCHAR KEY, customer VARCHAR, amount DOUBLE, qty INT) \
                  WITH (kafka_topic='orders');
                CREATE TABLE big_spenders AS SELECT customer, SUM(amount) AS spent FROM orders
                  WHERE qty > 0 GROUP BY customer HAVING SUM(amount) > 25 EMIT CHANGES;",
            input: vec![
                order("o1", "alice", 10.0, 3, 100),
                order("o2", "alice", 20.0, 3, 200),
                order("o3", "bob", 100.0, 0, 300),
                order("o4", "alice", -10.0, 3, 400),
            ],
            // A group that never passed HAVING is never written; one that leaves it is
            // deleted (ksqlDB's rule).
            expect: vec![Expect::Topic(
                "BIG_SPENDERS",
                vec![(Some("alice"), json!({"SPENT": 30.0})), (Some("alice"), Value::Null)],
            )],
        },
        Case {
            // Three source tasks feed the repartition at their own pace, so one task's records
            // can trail another's in event time: the grace covers that skew (docs/processors.md,
            // "Watermarks"); without it which records count as late depends on scheduling.
            name: "table: TUMBLING window with WINDOWSTART/WINDOWEND, multi-partition source",
            sql: "CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR) \
                  WITH (kafka_topic='clicks', partitions=3);
                CREATE TABLE per_page AS SELECT page, WINDOWSTART AS ws, WINDOWEND AS we,
                  COUNT(*) AS n FROM clicks
                  WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 2 MINUTES)
                  GROUP BY page EMIT CHANGES;",
            input: vec![
                ("clicks", Some("u1"), json!({"page": "/a"}), 1_000),
                ("clicks", Some("u2"), json!({"page": "/a"}), 2_000),
                ("clicks", Some("u3"), json!({"page": "/b"}), 3_000),
                ("clicks", Some("u1"), json!({"page": "/a"}), 61_000),
            ],
            expect: vec![Expect::Table(
                "PER_PAGE",
                vec![
                    (
                        json!({"key": "/a", "start": 0, "end": 60_000}),
                        json!({"WS": 0, "WE": 60_000, "N": 2}),
                    ),
                    (
                        json!({"key": "/a", "start": 60_000, "end": 120_000}),
                        json!({"WS": 60_000, "WE": 120_000, "N": 1}),
                    ),
                    (
                        json!({"key": "/b", "start": 0, "end": 60_000}),
                        json!({"WS": 0, "WE": 60_000, "N": 1}),
                    ),
                ],
            )],
        },
        Case {
            name: "table: HOPPING window (no window starts before 0, as in Kafka Streams)",
            sql:
                "CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR) WITH (kafka_topic='clicks');
                CREATE TABLE hops AS SELECT page, WINDOWSTART AS ws, COUNT(*) AS n FROM clicks
                  WINDOW HOPPING (SIZE 20 SECONDS, ADVANCE BY 10 SECONDS)
                  GROUP BY page EMIT CHANGES;",
            input: vec![
                ("clicks", Some("u1"), json!({"page": "/a"}), 5_000),
                ("clicks", Some("u1"), json!({"page": "/a"}), 15_000),
            ],
            expect: vec![Expect::Table(
                "HOPS",
                vec![
                    (json!({"key": "/a", "start": 0, "end": 20_000}), json!({"WS": 0, "N": 2})),
                    (
                        json!({"key": "/a", "start": 10_000, "end": 30_000}),
                        json!({"WS": 10_000, "N": 1}),
                    ),
                ],
            )],
        },
        Case {
            name: "table: SESSION window (its end is the last event's time); EMIT FINAL emits \
                   each closed window once (the grace is 24 hours unless given)",
            sql:
                "CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR) WITH (kafka_topic='clicks');
                CREATE TABLE sessions AS SELECT user, COUNT(*) AS n, WINDOWSTART AS ws,
                  WINDOWEND AS we FROM clicks WINDOW SESSION (30 SECONDS, GRACE PERIOD 0 SECONDS)
                  GROUP BY user EMIT FINAL;",
            input: vec![
                ("clicks", Some("u1"), json!({"page": "/a"}), 0),
                ("clicks", Some("u1"), json!({"page": "/b"}), 20_000),
                ("clicks", Some("u1"), json!({"page": "/c"}), 200_000),
            ],
            expect: vec![
                Expect::Topic(
                    "SESSIONS",
                    vec![(
                        Some(r#"{"key":"u1","start":0,"end":20000}"#),
                        json!({"N": 2, "WS": 0, "WE": 20_000}),
                    )],
                ),
                Expect::Table(
                    "SESSIONS",
                    vec![
                        (
                            json!({"key": "u1", "start": 0, "end": 20_000}),
                            json!({"N": 2, "WS": 0, "WE": 20_000}),
                        ),
                        (
                            json!({"key": "u1", "start": 200_000, "end": 200_000}),
                            json!({"N": 1, "WS": 200_000, "WE": 200_000}),
                        ),
                    ],
                ),
            ],
        },
        Case {
            name: "stream–table JOIN (inner and LEFT) on the table's key",
            sql: "CREATE TABLE customers (cid VARCHAR PRIMARY KEY, name VARCHAR, tier INT) \
                  WITH (kafka_topic='customers');
                CREATE STREAM orders (id VARCHAR KEY, customer VARCHAR, amount DOUBLE) \
                  WITH (kafka_topic='orders');
                CREATE STREAM enriched AS SELECT o.customer, o.id, c.name, c.tier, o.amount
                  FROM orders o JOIN customers c ON o.customer = c.cid EMIT CHANGES;
                CREATE STREAM all_orders AS SELECT customer, id, name FROM orders
                  LEFT JOIN customers ON customer = customers.cid EMIT CHANGES;",
            input: vec![
                ("customers", Some("alice"), json!({"name": "Alice", "tier": 2}), 10),
                order("o1", "alice", 10.0, 1, 100),
                order("o2", "zed", 20.0, 1, 200),
            ],
            expect: vec![
                Expect::Topic(
                    "ENRICHED",
                    vec![(
                        Some("alice"),
                        json!({"ID": "o1", "NAME": "Alice", "TIER": 2,
                        "AMOUNT": 10.0}),
                    )],
                ),
                Expect::Topic(
                    "ALL_ORDERS",
                    vec![
                        (Some("alice"), json!({"ID": "o1", "NAME": "Alice"})),
                        (Some("zed"), json!({"ID": "o2", "NAME": null})),
                    ],
                ),
            ],
        },
        Case {
            // WITHIN 1 MINUTE: |t(order) - t(payment)| <= 60 s. GRACE PERIOD 30 SECONDS: a record
            // more than 30 s behind the largest event time seen in its own input (partition) is
            // late and joins nothing — a faster input does not make it late.
            name: "stream–stream INNER JOIN: inside / outside the window, either side first, \
                   out of order within the grace, late",
            sql: "CREATE STREAM orders (id VARCHAR KEY, customer VARCHAR, amount DOUBLE) \
                  WITH (kafka_topic='orders');
                CREATE STREAM payments (pid VARCHAR KEY, order_id VARCHAR, paid DOUBLE) \
                  WITH (kafka_topic='payments');
                CREATE STREAM paid AS SELECT o.id, p.pid, o.amount, p.paid, ROWTIME AS t
                  FROM orders o JOIN payments p WITHIN 1 MINUTE GRACE PERIOD 30 SECONDS
                  ON o.id = p.order_id EMIT CHANGES;",
            input: one_by_one(vec![
                // Order first, its payment 30 s later: a pair at the payment.
                ("orders", Some("o1"), json!({"customer": "al", "amount": 10.0}), 0),
                ("payments", Some("p1"), json!({"order_id": "o1", "paid": 10.0}), 30_000),
                // Payment first, its order 10 s later: a pair at the order.
                ("payments", Some("p2"), json!({"order_id": "o2", "paid": 20.0}), 40_000),
                ("orders", Some("o2"), json!({"customer": "bo", "amount": 20.0}), 50_000),
                // 61 s apart: no pair.
                ("orders", Some("o3"), json!({"customer": "cy", "amount": 30.0}), 100_000),
                ("payments", Some("p3"), json!({"order_id": "o3", "paid": 30.0}), 161_000),
                // Exactly 60 s apart: a pair.
                ("orders", Some("o4"), json!({"customer": "di", "amount": 40.0}), 170_000),
                ("payments", Some("p4"), json!({"order_id": "o4", "paid": 40.0}), 230_000),
                // The payment 15 s behind the payments' latest event time (230 s) — and 25 s
                // behind the orders' — is on time: a pair stamped 240 s. The next one, 35 s
                // behind the payments' latest, is late: nothing.
                ("orders", Some("o5"), json!({"customer": "ed", "amount": 50.0}), 240_000),
                ("payments", Some("p5"), json!({"order_id": "o5", "paid": 50.0}), 215_000),
                ("payments", Some("p6"), json!({"order_id": "o5", "paid": 55.0}), 195_000),
            ]),
            expect: vec![Expect::Topic(
                "PAID",
                vec![
                    (Some("o1"), json!({"PID": "p1", "AMOUNT": 10.0, "PAID": 10.0, "T": 30_000})),
                    (Some("o2"), json!({"PID": "p2", "AMOUNT": 20.0, "PAID": 20.0, "T": 50_000})),
                    (
                        Some("o4"),
                        json!({"PID": "p4", "AMOUNT": 40.0, "PAID": 40.0,
                            "T": 230_000}),
                    ),
                    (
                        Some("o5"),
                        json!({"PID": "p5", "AMOUNT": 50.0, "PAID": 50.0,
                            "T": 240_000}),
                    ),
                ],
            )],
        },
        Case {
            // WITHIN (0 SECONDS, 10 SECONDS): a click joins an impression 0 to 10 s after it.
            // Grace 0. An impression without a click comes out, with NULLs, once its window has
            // closed: when the largest event time seen passes its time + 10 s.
            name: "stream–stream LEFT JOIN WITHIN (before, after): unmatched rows when the \
                   window closes",
            sql: "CREATE STREAM impressions (id VARCHAR KEY, ad VARCHAR) \
                  WITH (kafka_topic='impressions');
                CREATE STREAM clicks (id VARCHAR KEY, ad VARCHAR) WITH (kafka_topic='clicks');
                CREATE STREAM ad_results AS SELECT i.id AS impression, i.ad, c.ad AS clicked,
                  ROWTIME AS t FROM impressions i
                  LEFT OUTER JOIN clicks c WITHIN (0 SECONDS, 10 SECONDS) ON i.id = c.id
                  EMIT CHANGES;",
            input: one_by_one(vec![
                ("impressions", Some("i1"), json!({"ad": "a"}), 1_000),
                ("clicks", Some("i1"), json!({"ad": "a"}), 5_000),
                ("impressions", Some("i2"), json!({"ad": "b"}), 6_000),
                // A click 1 s *before* its impression: outside (0 s, 10 s).
                ("clicks", Some("i3"), json!({"ad": "c"}), 7_000),
                ("impressions", Some("i3"), json!({"ad": "c"}), 8_000),
                // 20 s on the impressions' side; the clicks' side is still at 7 s, so the
                // windows of i2 (6 s + 10 s) and i3 (8 s + 10 s) stay open.
                ("impressions", Some("i4"), json!({"ad": "d"}), 20_000),
                // Exactly 10 s after i4: a pair. Both sides are now past 20 s: i2 and i3 close
                // (after the pair this arrival made).
                ("clicks", Some("i4"), json!({"ad": "d"}), 30_000),
                ("impressions", Some("i5"), json!({"ad": "e"}), 31_000),
                // Both sides at 41.001 s close i5's window (31 s + 10 s) but not i6's.
                ("clicks", Some("i9"), json!({"ad": "z"}), 41_001),
                ("impressions", Some("i6"), json!({"ad": "f"}), 41_001),
            ]),
            expect: vec![Expect::Topic(
                "AD_RESULTS",
                vec![
                    (Some("i1"), json!({"I_AD": "a", "CLICKED": "a", "T": 5_000})),
                    (Some("i4"), json!({"I_AD": "d", "CLICKED": "d", "T": 30_000})),
                    (Some("i2"), json!({"I_AD": "b", "CLICKED": null, "T": 6_000})),
                    (Some("i3"), json!({"I_AD": "c", "CLICKED": null, "T": 8_000})),
                    (Some("i5"), json!({"I_AD": "e", "CLICKED": null, "T": 31_000})),
                ],
            )],
        },
        Case {
            // WITHIN 5 SECONDS, grace 0. SELECT *: the left columns, then the right ones, the
            // right ID renamed R_ID (ID is taken).
            name: "stream–stream FULL OUTER JOIN: unmatched rows of both sides; RIGHT JOIN",
            sql: "CREATE STREAM lefts (id VARCHAR KEY, v INT) WITH (kafka_topic='lefts');
                CREATE STREAM rights (id VARCHAR KEY, w INT) WITH (kafka_topic='rights');
                CREATE STREAM merged AS SELECT * FROM lefts l
                  FULL OUTER JOIN rights r WITHIN 5 SECONDS ON l.id = r.id EMIT CHANGES;
                CREATE STREAM kept_right AS SELECT l.id AS lid, r.id AS rid, r.w FROM lefts l
                  RIGHT JOIN rights r WITHIN 5 SECONDS ON l.id = r.id EMIT CHANGES;",
            input: one_by_one(vec![
                ("lefts", Some("a"), json!({"v": 1}), 1_000),
                ("rights", Some("a"), json!({"w": 10}), 3_000),
                ("rights", Some("b"), json!({"w": 20}), 4_000),
                ("lefts", Some("c"), json!({"v": 3}), 12_000),
                ("rights", Some("d"), json!({"w": 40}), 30_000),
                // Windows close when both sides have moved on: this closes c's (12 s + 5 s).
                ("lefts", Some("e"), json!({"v": 5}), 30_000),
            ]),
            expect: vec![
                Expect::Topic(
                    "MERGED",
                    vec![
                        (Some("a"), json!({"L_V": 1, "R_ID": "a", "R_W": 10})),
                        (Some("b"), json!({"L_V": null, "R_ID": "b", "R_W": 20})),
                        (Some("c"), json!({"L_V": 3, "R_ID": null, "R_W": null})),
                    ],
                ),
                Expect::Topic(
                    "KEPT_RIGHT",
                    vec![
                        (Some("a"), json!({"RID": "a", "W": 10})),
                        (Some("b"), json!({"RID": "b", "W": 20})),
                    ],
                ),
            ],
        },
        Case {
            // 2 and 3 partitions: both sides are re-keyed by their ON expression and
            // repartitioned to 3. ON names the right side first. Grace 1 hour: nothing is late.
            name: "stream–stream JOIN over 2 and 3 partitions, with WHERE over both sides",
            sql: "CREATE STREAM orders (id VARCHAR KEY, amount DOUBLE) \
                  WITH (kafka_topic='orders', partitions=2);
                CREATE STREAM payments (pid VARCHAR KEY, order_id VARCHAR, paid DOUBLE) \
                  WITH (kafka_topic='payments', partitions=3);
                CREATE STREAM settled AS SELECT o.id, p.pid, p.paid - o.amount AS diff
                  FROM orders AS o INNER JOIN payments AS p WITHIN 1 HOUR GRACE PERIOD 1 HOUR
                  ON p.order_id = o.id WHERE p.paid >= o.amount EMIT CHANGES;",
            input: one_by_one(vec![
                ("orders", Some("o1"), json!({"amount": 10.0}), 1_000),
                ("orders", Some("o2"), json!({"amount": 20.0}), 2_000),
                ("orders", Some("o3"), json!({"amount": 30.0}), 3_000),
                ("payments", Some("p1"), json!({"order_id": "o1", "paid": 10.0}), 4_000),
                ("payments", Some("p2"), json!({"order_id": "o2", "paid": 15.0}), 5_000),
                ("payments", Some("p3"), json!({"order_id": "o3", "paid": 35.0}), 6_000),
                ("payments", Some("p4"), json!({"order_id": "o1", "paid": 12.0}), 7_000),
            ]),
            expect: vec![Expect::TopicAnyOrder(
                "SETTLED",
                vec![
                    (Some("o1"), json!({"PID": "p1", "DIFF": 0.0})),
                    (Some("o3"), json!({"PID": "p3", "DIFF": 5.0})),
                    (Some("o1"), json!({"PID": "p4", "DIFF": 2.0})),
                ],
            )],
        },
        Case {
            name: "RAW values, WITH (key=...), a TIMESTAMP column as event time, chained queries",
            sql:
                "CREATE STREAM lines (line VARCHAR) WITH (kafka_topic='lines', value_format='raw');
                CREATE STREAM parsed WITH (timestamp='ts') AS SELECT SPLIT(line, ' ')[1] AS word,
                  CAST(SPLIT(line, ' ')[2] AS BIGINT) AS ts FROM lines EMIT CHANGES;
                CREATE TABLE words AS SELECT word, COUNT(*) AS n, MAX(ROWTIME) AS last_seen
                  FROM parsed WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY word EMIT CHANGES;",
            input: vec![
                ("lines", None, json!("hello 1000"), 999_999),
                ("lines", None, json!("hello 12000"), 999_999),
            ],
            expect: vec![Expect::Table(
                "WORDS",
                vec![
                    (
                        json!({"key": "hello", "start": 0, "end": 10_000}),
                        json!({"N": 1, "LAST_SEEN": 1000}),
                    ),
                    (
                        json!({"key": "hello", "start": 10_000, "end": 20_000}),
                        json!({"N": 1, "LAST_SEEN": 12000}),
                    ),
                ],
            )],
        },
    ]
}

#[test]
fn golden_table() {
    let _ = ORDERS;
    for case in cases() {
        eprintln!("case: {}", case.name);
        check(&case);
    }
}

#[test]
fn error_classes_point_at_the_text() {
    let base = "CREATE STREAM s (id VARCHAR, n INT, name VARCHAR, pos STRUCT<lat DOUBLE>) \
        WITH (kafka_topic='s');\n";
    // (statement, what the message must say, line, column)
    let cases: Vec<(&str, &str, u32, u32)> = vec![
        (
            "CREATE STREAM x AS SELECT n FROM s WHERE EMIT CHANGES;",
            "expected an expression, found 'EMIT'",
            2,
            42,
        ),
        (
            "CREATE STREAM x AS\n  SELECT n,, name FROM s EMIT CHANGES;",
            "expected an expression, found ','",
            3,
            12,
        ),
        ("CREATE STREAM x AS SELECT nope FROM s EMIT CHANGES;", "unknown column NOPE", 2, 27),
        ("CREATE STREAM x AS SELECT pos->lon FROM s EMIT CHANGES;", "unknown column LON", 2, 30),
        (
            "CREATE STREAM x AS SELECT n FROM missing EMIT CHANGES;",
            "unknown stream or table MISSING",
            2,
            34,
        ),
        (
            "CREATE STREAM x AS SELECT n + name FROM s EMIT CHANGES;",
            "column NAME is VARCHAR but operator + needs a number",
            2,
            31,
        ),
        (
            "CREATE STREAM x AS SELECT n FROM s WHERE name LIKE 3 EMIT CHANGES;",
            "value 3 is INT but LIKE needs VARCHAR",
            2,
            52,
        ),
        (
            "CREATE STREAM x AS SELECT n FROM s WHERE n EMIT CHANGES;",
            "column N is INT but WHERE needs BOOLEAN",
            2,
            42,
        ),
        (
            "CREATE STREAM x AS SELECT UCASE(n) FROM s EMIT CHANGES;",
            "column N is INT but function UCASE needs VARCHAR",
            2,
            33,
        ),
        (
            "CREATE STREAM x AS SELECT frobnicate(n) FROM s EMIT CHANGES;",
            "unknown function FROBNICATE",
            2,
            27,
        ),
        (
            "CREATE STREAM x AS SELECT TRIPLE(name) FROM s EMIT CHANGES;",
            "column NAME is VARCHAR but function TRIPLE needs BIGINT",
            2,
            34,
        ),
        (
            "CREATE STREAM x AS SELECT SUBSTRING(name) FROM s EMIT CHANGES;",
            "SUBSTRING at line 2, column 27 takes 2 to 3 argument(s), got 1",
            2,
            27,
        ),
        (
            "CREATE STREAM x AS SELECT n FROM s EMIT CHANGES; CREATE STREAM x AS SELECT n FROM s EMIT CHANGES;",
            "X at line 2, column 50 already exists",
            2,
            50,
        ),
        (
            "CREATE TABLE x AS SELECT name, SUM(name) AS t FROM s GROUP BY name EMIT CHANGES;",
            "column NAME is VARCHAR but SUM needs a number",
            2,
            36,
        ),
        (
            "CREATE STREAM x AS SELECT n FROM s EMIT CHANGES LIMIT 'a';",
            "expected a row count",
            2,
            55,
        ),
        ("CREATE STREAM x (a FOO) WITH (kafka_topic='t');", "expected a type", 2, 20),
        ("CREATE STREAM x AS SELECT 'open FROM s;", "never closed", 2, 27),
    ];
    for (stmt, want, line, col) in cases {
        let mut session = Session::new(functions());
        let e = session.execute(&format!("{base}{stmt}"), 1).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(want), "{stmt}\n  gave: {text}\n  want: {want}");
        assert_eq!(e.pos().map(|p| (p.line, p.col)), Some((line, col)), "{stmt}: {text}");
    }
    // Classes are distinct variants, not strings.
    let mut session = Session::new(functions());
    let e = session.execute(&format!("{base}SELECT x FROM"), 1).unwrap_err();
    assert!(matches!(e, SqlError::Syntax { .. }), "{e:?}");
}

#[test]
fn join_errors_point_at_the_text() {
    let base = "CREATE STREAM a (id VARCHAR KEY, n INT, name VARCHAR) WITH (kafka_topic='a'); \
        CREATE STREAM b (id VARCHAR KEY, m INT, ref VARCHAR) WITH (kafka_topic='b'); \
        CREATE TABLE t (tid VARCHAR PRIMARY KEY, label VARCHAR) WITH (kafka_topic='t');\n";
    // (statement on line 2, what the message must say, column)
    let cases: Vec<(&str, &str, u32)> = vec![
        (
            "CREATE STREAM x AS SELECT a.n FROM a JOIN b ON a.id = b.ref EMIT CHANGES;",
            "a join of two streams needs a window",
            43,
        ),
        (
            "CREATE STREAM x AS SELECT a.n FROM a JOIN t WITHIN 1 HOUR ON a.name = t.tid EMIT CHANGES;",
            "WITHIN belongs to stream–stream joins, and T is a table",
            45,
        ),
        (
            "CREATE STREAM x AS SELECT a.n FROM a RIGHT JOIN t ON a.name = t.tid EMIT CHANGES;",
            "a stream–table join is INNER or LEFT",
            38,
        ),
        (
            "CREATE STREAM x AS SELECT a.n FROM a JOIN b WITHIN 1 HOUR ON a.n > b.m EMIT CHANGES;",
            "JOIN ... ON must be `expression over A = expression over B`",
            62,
        ),
        (
            "CREATE STREAM x AS SELECT a.n FROM a JOIN b WITHIN 1 HOUR ON a.id = a.name EMIT CHANGES;",
            "each side of ON must read one stream",
            62,
        ),
        (
            "CREATE STREAM x AS SELECT a.n FROM a JOIN b WITHIN 1 HOUR ON a.n = b.ref EMIT CHANGES;",
            "column REF is VARCHAR but JOIN ... ON needs INT",
            68,
        ),
        (
            "CREATE STREAM x AS SELECT a.n FROM a JOIN b WITHIN 1 HOUR ON id = b.ref EMIT CHANGES;",
            "ID could be either stream's; qualify it",
            62,
        ),
        (
            "CREATE STREAM x AS SELECT a.n FROM a JOIN b WITHIN 1 HOUR ON a.id = b.nope EMIT CHANGES;",
            "unknown column B.NOPE",
            69,
        ),
        (
            "CREATE STREAM x AS SELECT a.n FROM a JOIN a AS a2 WITHIN 1 HOUR ON a.id = a2.id EMIT CHANGES;",
            "a stream cannot be joined with itself",
            43,
        ),
        (
            "CREATE STREAM x AS SELECT a.n FROM a FULL OUTER b WITHIN 1 HOUR ON a.id = b.id EMIT CHANGES;",
            "expected JOIN, found",
            49,
        ),
    ];
    for (stmt, want, col) in cases {
        let mut session = Session::new(functions());
        let e = session.execute(&format!("{base}{stmt}"), 1).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(want), "{stmt}\n  gave: {text}\n  want: {want}");
        assert_eq!(e.pos().map(|p| (p.line, p.col)), Some((2, col)), "{stmt}: {text}");
    }
}
