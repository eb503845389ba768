//! Watermarks after the repartition of a `GROUP BY`, through SQL on the embedded broker: the
//! access log of the watermark tests as JSON (`status`, `ts` in ms) over a 2-partition stream
//! with `timestamp='ts'`, counted per status in `WINDOW TUMBLING (SIZE 1 HOUR, GRACE PERIOD 10
//! MINUTES)`. Records are produced to explicit partitions, each partition in event-time order
//! within ±3 minutes, so every record is on time in its own partition; whichever upstream task
//! runs ahead (the first reading its whole partition before the second starts, or partition 0
//! replayed from offset zero before partition 1 has any record), no task may count a record
//! late, and a pull query over the table must give, per (status, hour), the count of the input.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

#[path = "common/caught_up.rs"]
mod caught_up;
#[path = "../../processor/tests/common/mod.rs"]
mod common;
#[path = "../../processor/tests/common/skewed_log.rs"]
mod skewed_log;

use std::collections::BTreeMap;

use eddy_broker::Broker;
use eddy_client::{Admin, Producer, ProducerConfig, ProducerRecord};
use eddy_protocol::v1::{self, sql_result::Result as R};
use serde_json::Value;
use skewed_log::{Batch, HOUR_MS};

const TOPIC: &str = "access-json";

/// The stream over `partitions` partitions.
fn stream(partitions: u32) -> String {
    format!(
        "CREATE STREAM accessLog (status VARCHAR, ts BIGINT) WITH (kafka_topic='access-json', \
         partitions={partitions}, value_format='json', timestamp='ts');"
    )
}

const TABLE: &str = "CREATE TABLE statusHourly AS \
    SELECT status, WINDOWSTART AS hour, COUNT(*) AS requests FROM accessLog \
    WINDOW TUMBLING (SIZE 1 HOUR, GRACE PERIOD 10 MINUTES) \
    GROUP BY status EMIT CHANGES;";

const PULL: &str = "SELECT status, hour, requests FROM statusHourly;";

/// Runs `sql`; every statement must succeed. Returns the results.
async fn sql(admin: &Admin<Broker>, sql: &str) -> Vec<R> {
    let results: Vec<R> =
        admin.sql(sql, Vec::new(), 0).await.unwrap().into_iter().filter_map(|r| r.result).collect();
    for r in &results {
        assert!(!matches!(r, R::Error(_)), "{sql}: {r:?}");
    }
    results
}

/// Starts the query; returns the processor it runs as.
async fn create_table(admin: &Admin<Broker>) -> String {
    match sql(admin, TABLE).await.as_slice() {
        [R::Query(q)] => q.target.clone(),
        other => panic!("{other:?}"),
    }
}

/// Appends each batch whole to its own partition: no key, the request as JSON.
async fn produce<'a>(producer: &Producer<Broker>, batches: impl IntoIterator<Item = &'a Batch>) {
    for batch in batches {
        let records = batch.requests.iter().map(|r| ProducerRecord::value(r.json()));
        producer.send_batch(TOPIC, Some(batch.partition), records).await.unwrap().await.unwrap();
    }
}

/// The pull query's rows as (status, hour) → requests.
async fn counts(admin: &Admin<Broker>, name: &str) -> BTreeMap<(String, i64), u64> {
    let rows = match sql(admin, PULL).await.as_slice() {
        [R::Rows(rows)] => rows.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(rows.processor, name);
    assert_eq!(rows.columns, ["STATUS", "HOUR", "REQUESTS"]);
    rows.rows
        .iter()
        .map(|row| {
            let row: Value = serde_json::from_str(row).unwrap();
            let hour = row[1].as_i64().unwrap();
            assert_eq!(hour.rem_euclid(HOUR_MS), 0, "{row}");
            ((row[0].as_str().unwrap().to_owned(), hour), row[2].as_u64().unwrap())
        })
        .collect()
}

fn late(info: &v1::ProcessorInfo) -> u64 {
    for t in &info.tasks {
        eprintln!("task {}: records_in {}, late {}", t.task, t.records_in, t.late);
    }
    info.tasks.iter().map(|t| t.late).sum()
}

/// With `live`, partition 0 is produced and processed to its end before partition 1 gets
/// anything; without, both are produced before the query starts (its single worker then reads
/// upstream task 0's whole partition before task 1's).
async fn run(seed: u64, partitions: u32, live: bool) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    let admin = Admin::new(broker.clone());
    sql(&admin, &stream(partitions)).await;
    let batches = skewed_log::generate(seed, partitions);
    let producer = Producer::new(broker.clone(), ProducerConfig::default()).unwrap();
    let (first, second): (Vec<&Batch>, Vec<&Batch>) =
        batches.iter().partition(|b| b.partition == 0);

    let name = if live {
        produce(&producer, first.iter().copied()).await;
        let name = create_table(&admin).await;
        caught_up::caught_up(&admin, &name, TOPIC, first.iter().map(|b| b.requests.len()).sum())
            .await;
        produce(&producer, second.iter().copied()).await;
        name
    } else {
        produce(&producer, &batches).await;
        create_table(&admin).await
    };
    let info = caught_up::caught_up(&admin, &name, TOPIC, skewed_log::RECORDS).await;
    skewed_log::check(
        &if live {
            format!("sql, {partitions} partitions, partition 0 replayed, the others live")
        } else {
            format!("sql, {partitions} partitions, all produced")
        },
        late(&info),
        &counts(&admin, &name).await,
        &skewed_log::expected(&batches),
    );
    producer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_all_produced_then_queried_counts_every_record() {
    run(common::seed(0x5eed_5502), 2, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_four_partitions_all_produced_counts_every_record() {
    run(common::seed(0x5eed_5504), 4, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_one_partition_replayed_while_the_other_is_live_counts_every_record() {
    run(common::seed(0x5eed_5512), 2, true).await;
}
