//! The crash windows between a `__sql` record and its processor change, made by hand on an
//! embedded broker: reopening deploys a query the registry lacks and drops a SQL processor no
//! record owns.
#![allow(clippy::unwrap_used)]

use eddy_protocol::v1::sql_result::Result as R;

use crate::Broker;
use crate::processors::definition::SqlDef;
use crate::security::Principal;

const SOURCE: &str = "CREATE STREAM s (k VARCHAR KEY, v INT) WITH (kafka_topic='s')";
const QUERY: &str = "CREATE TABLE t AS SELECT k, COUNT(*) AS n FROM s GROUP BY k EMIT CHANGES";

fn run(broker: &Broker, sql: &str) -> Vec<R> {
    let answer = broker.inner.sql.execute(sql, &broker.access(&Principal::Internal, None));
    answer.results.into_iter().filter_map(|r| r.result).collect()
}

#[test]
fn reopening_repairs_a_crash_between_the_sql_record_and_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    let results = run(&broker, &format!("{SOURCE};\n{QUERY};"));
    assert!(matches!(results.last(), Some(R::Query(q)) if q.target == "T"), "{results:?}");
    // As if the broker died after the record of T and before its deploy ...
    broker.inner.processors.drop_processor("T").unwrap();
    // ... and after a deploy of U whose record was never written.
    let orphan = SqlDef {
        name: "U".into(),
        version: 1,
        sql: "CREATE TABLE u AS SELECT k, COUNT(*) AS n FROM s GROUP BY k EMIT CHANGES".into(),
        context: vec![SOURCE.into()],
    };
    broker.inner.processors.deploy(&orphan.to_text().unwrap(), &Principal::Internal).unwrap();
    assert_eq!(broker.inner.processors.is_sql("U"), Some(true));
    broker.close().unwrap();
    drop(broker);

    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.inner.processors.versions("T"), Some((1, None)));
    assert_eq!(broker.inner.processors.is_sql("U"), None);
    let results = run(&broker, "SELECT * FROM t;");
    assert!(matches!(results.last(), Some(R::Rows(r)) if r.processor == "T"), "{results:?}");
    broker.close().unwrap();
}
