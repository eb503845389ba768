//! Watermarks after a `key_by` repartition, through a spec file on the embedded broker (the
//! issue's scenario as a user deploys it): an nginx access log produced keyless over 2 or 4
//! partitions, each partition in event-time order within ±3 minutes; `fields` → `event_time`
//! (CLF) → `key_by` status → tumbling 1 h window, grace 10 min → `count`. Every record is on time
//! in its own partition, so whichever upstream task runs ahead — the first one reading its whole
//! partition before the next starts, or one partition replayed from offset zero before the
//! other has any record — the status must show no task with `late` records, and the table must
//! hold, per (status, hour), the count of the input.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

#[path = "common/caught_up.rs"]
mod caught_up;
#[path = "../../processor/tests/common/mod.rs"]
mod common;
#[path = "../../processor/tests/common/skewed_log.rs"]
mod skewed_log;

use std::collections::BTreeMap;

use eddy_broker::Broker;
use eddy_client::{Admin, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use eddy_protocol::v1;
use serde_json::Value;
use skewed_log::{Batch, GRACE_MS, HOUR_MS};

const TOPIC: &str = "access-log";
const NAME: &str = "status-hourly";
const TABLE: &str = "requests_per_status_hour";

fn spec() -> String {
    format!(
        r#"
name = "{NAME}"
version = 1
source = {{ topic = "{TOPIC}", format = "text" }}
[[ops]]
op = "fields"
fields = {{ status = 9, time = "4-5" }}
[[ops]]
op = "event_time"
field = "time"
format = "clf"
[[ops]]
op = "key_by"
field = "status"
[[ops]]
op = "window"
kind = "tumbling"
size_ms = {HOUR_MS}
grace_ms = {GRACE_MS}
[[ops]]
op = "aggregate"
table = "{TABLE}"
fn = "count"
"#
    )
}

async fn create_topic(admin: &Admin<Broker>, partitions: u32) {
    let config = TopicConfig { partitions: Some(partitions), ..TopicConfig::default() };
    admin.create_topic(TOPIC, config).await.unwrap();
}

/// Appends each batch whole to its partition: no key, the CLF line as value (the record
/// timestamp is the time of sending; the event time is the one in the line).
async fn produce<'a>(producer: &Producer<Broker>, batches: impl IntoIterator<Item = &'a Batch>) {
    for batch in batches {
        let records = batch.requests.iter().map(|r| ProducerRecord::value(r.clf()));
        producer.send_batch(TOPIC, Some(batch.partition), records).await.unwrap().await.unwrap();
    }
}

/// The table through a scan query, as (status, window start) → count.
async fn counts(admin: &Admin<Broker>) -> BTreeMap<(String, i64), u64> {
    let scan = v1::QueryTableRequest {
        table: TABLE.into(),
        query: Some(v1::query_table_request::Query::Scan(v1::ScanQuery::default())),
        digest: false,
    };
    let answer = admin.query_table(scan).await.unwrap();
    assert_eq!(answer.processor, NAME);
    answer
        .rows
        .iter()
        .map(|row| {
            let key: Value = serde_json::from_str(&row.key).unwrap();
            let (start, end) = (key["start"].as_i64().unwrap(), key["end"].as_i64().unwrap());
            assert_eq!((end - start, start.rem_euclid(HOUR_MS)), (HOUR_MS, 0), "{}", row.key);
            let count: u64 = serde_json::from_str(&row.value).unwrap();
            ((key["key"].as_str().unwrap().to_owned(), start), count)
        })
        .collect()
}

/// `late` over every task of the status, printed per task.
fn late(info: &v1::ProcessorInfo) -> u64 {
    for t in &info.tasks {
        eprintln!("task {}: records_in {}, late {}", t.task, t.records_in, t.late);
    }
    info.tasks.iter().map(|t| t.late).sum()
}

/// Everything produced, then the spec deployed: it replays from offset zero, and its single
/// worker polls upstream task 0 through its whole partition before task 1 reads anything, so
/// the repartition topic holds all of task 0's hours first.
async fn all_produced_then_deployed(partitions: u32, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    let admin = Admin::new(broker.clone());
    create_topic(&admin, partitions).await;
    let batches = skewed_log::generate(seed, partitions);
    let producer = Producer::new(broker.clone(), ProducerConfig::default()).unwrap();
    produce(&producer, &batches).await;

    admin.deploy_processor(&spec()).await.unwrap();
    let info = caught_up::caught_up(&admin, NAME, TOPIC, skewed_log::RECORDS).await;
    skewed_log::check(
        &format!("spec, {partitions} partitions, all produced then deployed"),
        late(&info),
        &counts(&admin).await,
        &skewed_log::expected(&batches),
    );
    producer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_on_two_partitions_counts_every_record() {
    all_produced_then_deployed(2, common::seed(0x5eed_5002)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_on_four_partitions_counts_every_record() {
    all_produced_then_deployed(4, common::seed(0x5eed_5004)).await;
}

/// Partition 0 holds its 6 hours when the spec is deployed and is processed to the end (a
/// replay from zero); only then does partition 1 receive its records, batch by batch, while the
/// processor runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_one_partition_replayed_while_the_other_is_live_counts_every_record() {
    let seed = common::seed(0x5eed_5102);
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    let admin = Admin::new(broker.clone());
    create_topic(&admin, 2).await;
    let batches = skewed_log::generate(seed, 2);
    let producer = Producer::new(broker.clone(), ProducerConfig::default()).unwrap();
    let (first, second): (Vec<&Batch>, Vec<&Batch>) =
        batches.iter().partition(|b| b.partition == 0);
    produce(&producer, first.iter().copied()).await;

    admin.deploy_processor(&spec()).await.unwrap();
    caught_up::caught_up(&admin, NAME, TOPIC, first.iter().map(|b| b.requests.len()).sum()).await;
    produce(&producer, second.iter().copied()).await;
    let info = caught_up::caught_up(&admin, NAME, TOPIC, skewed_log::RECORDS).await;
    skewed_log::check(
        "spec, partition 0 replayed, partition 1 live",
        late(&info),
        &counts(&admin).await,
        &skewed_log::expected(&batches),
    );
    producer.close().await.unwrap();
}
