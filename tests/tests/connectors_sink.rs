//! Sinks against a real PostgreSQL and the real `eddy serve`: a table eddy materializes
//! (`CREATE TABLE totals AS SELECT region, SUM(amount), COUNT(*), MAX(amount) ... GROUP BY
//! region HAVING SUM(amount) > 0`) mirrored into PostgreSQL by the upsert sink, and its topic
//! written to a JSON-lines file by the file sink, while seeded bursts of orders (amounts of
//! either sign, so groups leave the table — a tombstone — and come back) are produced and the
//! broker is SIGKILLed in the middle of each burst (PostgreSQL is also restarted in the
//! second). After each burst:
//!
//! - the PostgreSQL table equals, row for row, the totals computed here from the orders
//!   produced, the eddy table read by a pull query, and the table topic `TOTALS` folded;
//! - the sink never took a row back to an older state: an audit trigger logs every row the sink
//!   writes, and per region the count `n` (which only grows in eddy) never decreases — a batch
//!   applied again after a crash writes the same rows (at-least-once, idempotent);
//! - the file holds each record of `TOTALS` once, in offset order per partition, as
//!   `{"topic","partition","offset","timestamp","key","value"}` equal to the record.
//!
//! `EDDY_SINK_SEED` replaces the seed (printed first).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use eddy_protocol::v1::{self, request, response, sql_result::Result as R};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::cli::eddy_ok;
use eddy_tests::connectors::{Read, read_topic, wait_status};
use eddy_tests::postgres::Postgres;
use eddy_tests::raw_client::RawClient;
use serde_json::Value;

const SEED: u64 = 0x0edd_5124_2200_0003;
const REGIONS: u64 = 50;
const ORDERS_PER_BURST: usize = 6000;
const CHUNKS_PER_BURST: usize = 6;
const TOPIC: &str = "TOTALS";

/// xorshift64*: the test's only randomness.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A row of the totals table: (total, n, top).
type Row = (i64, i64, i64);

/// The totals over every order so far (all groups, HAVING applied by [`Totals::table`]).
#[derive(Default)]
struct Totals(BTreeMap<String, Row>);

impl Totals {
    fn add(&mut self, region: &str, amount: i64) {
        let r = self.0.entry(region.to_string()).or_insert((0, 0, i64::MIN));
        *r = (r.0 + amount, r.1 + 1, r.2.max(amount));
    }

    /// The table `HAVING SUM(amount) > 0` leaves.
    fn table(&self) -> BTreeMap<String, Row> {
        self.0.iter().filter(|(_, r)| r.0 > 0).map(|(k, r)| (k.clone(), *r)).collect()
    }
}

fn sql(client: &mut RawClient, text: &str) -> Vec<v1::SqlResult> {
    let body =
        request::Body::Sql(v1::SqlRequest { sql: text.into(), from: vec![], max_wait_ms: 0 });
    match client.call_ok(body) {
        response::Body::Sql(r) => r.results,
        other => panic!("unexpected answer {other:?}"),
    }
}

/// The eddy table through a pull query (a scan).
fn pulled(broker: &BrokerProcess) -> BTreeMap<String, Row> {
    let mut client = RawClient::connect(broker.addr());
    let result = sql(&mut client, "SELECT region, total, n, top FROM totals;");
    let Some(R::Rows(rows)) = result.into_iter().last().and_then(|r| r.result) else {
        panic!("the pull query answered no rows");
    };
    rows.rows
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(r).unwrap();
            let n = |i: usize| v[i].as_i64().unwrap_or_else(|| panic!("{r}"));
            (v[0].as_str().unwrap().to_string(), (n(1), n(2), n(3)))
        })
        .collect()
}

/// The table topic folded: the last value per key, a tombstone deletes.
fn folded(records: &[Read]) -> BTreeMap<String, Row> {
    let mut table = BTreeMap::new();
    for r in records {
        let key = r.key.clone().expect("table records are keyed");
        match &r.value {
            None => drop(table.remove(&key)),
            Some(v) => {
                let n = |f: &str| v[f].as_i64().unwrap_or_else(|| panic!("{f} in {v}"));
                table.insert(key, (n("TOTAL"), n("N"), n("TOP")));
            }
        }
    }
    table
}

fn mirrored(pg: &Postgres) -> BTreeMap<String, Row> {
    pg.psql("shop", "SELECT region, total, n, top FROM totals")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let n = |i: usize| f[i].parse::<i64>().unwrap_or_else(|_| panic!("{l}"));
            (f[0].to_string(), (n(1), n(2), n(3)))
        })
        .collect()
}

/// Produces `orders` (region, amount) durably, keyed by region.
fn produce(broker: &BrokerProcess, dir: &Path, orders: &[(String, i64)]) {
    let file = dir.join("orders.txt");
    let text: String = orders.iter().map(|(r, a)| format!("{r}|{{\"amount\": {a}}}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let path = file.to_str().unwrap();
    eddy_ok(broker, &["produce", "orders", "--key-sep", "|", "--acks", "durable", path]);
}

/// A burst of orders in chunks, the broker SIGKILLed (and started again) right after the
/// chunk `kill_after`, while the query and the sinks are still catching up; `restart`'s
/// PostgreSQL restarted after the next chunk (the sink's connection cut mid-stream).
fn burst(
    broker: &mut BrokerProcess,
    data: &Path,
    rng: &mut Rng,
    totals: &mut Totals,
    kill_after: usize,
    restart: Option<&Postgres>,
) {
    for chunk in 0..CHUNKS_PER_BURST {
        let orders: Vec<(String, i64)> = (0..ORDERS_PER_BURST / CHUNKS_PER_BURST)
            .map(|_| (format!("r{:02}", rng.below(REGIONS)), rng.below(121) as i64 - 60))
            .collect();
        produce(broker, data.parent().unwrap(), &orders);
        for (region, amount) in &orders {
            totals.add(region, *amount);
        }
        if chunk == kill_after {
            broker.kill9();
            eprintln!("broker SIGKILLed after chunk {chunk}");
            *broker = BrokerProcess::start(data, &[]);
        }
        if let Some(pg) = restart.filter(|_| chunk == kill_after + 1) {
            pg.restart();
            eprintln!("PostgreSQL restarted after chunk {chunk}");
        }
    }
}

/// Waits until the mirror equals `expected`; then every view of the table must too.
fn check_mirror(
    pg: &Postgres,
    broker: &BrokerProcess,
    expected: &BTreeMap<String, Row>,
    seed: u64,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while mirrored(pg) != *expected {
        assert!(
            Instant::now() < deadline,
            "the mirror never equalled the expected totals (seed {seed:#x}):\n{:?}\n{expected:?}",
            mirrored(pg)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(pulled(broker), *expected, "pull query (seed {seed:#x})");
    assert_eq!(folded(&read_topic(broker, TOPIC)), *expected, "topic folded (seed {seed:#x})");
}

/// Every write the sink made never takes a region's count back; how many were repeats.
fn check_audit(pg: &Postgres, seed: u64) -> (usize, usize) {
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let (mut writes, mut repeats) = (0, 0);
    for l in pg.psql("shop", "SELECT region, n, op FROM audit ORDER BY id").lines() {
        let f: Vec<&str> = l.split('|').collect();
        if f.len() != 3 || f[2] == "DELETE" {
            continue;
        }
        let n: i64 = f[1].parse().unwrap();
        writes += 1;
        if let Some(before) = last.insert(f[0].to_string(), n) {
            assert!(
                n >= before,
                "region {}: n went from {before} back to {n} (seed {seed:#x})",
                f[0]
            );
            repeats += usize::from(n == before);
        }
    }
    (writes, repeats)
}

/// The file sink's lines are the topic's records, each once, in offset order per partition.
fn check_file(file: &Path, records: &[Read], seed: u64) {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut next: BTreeMap<u64, u64> = BTreeMap::new();
    let mut written = Vec::new();
    for l in &lines {
        assert_eq!(l["topic"], TOPIC);
        let (p, offset) = (l["partition"].as_u64().unwrap(), l["offset"].as_u64().unwrap());
        let at = next.entry(p).or_default();
        assert!(offset >= *at, "partition {p}: offset {offset} after {at} (seed {seed:#x})");
        *at = offset + 1;
        assert!(l["timestamp"].as_i64().is_some_and(|t| t > 0), "{l}");
        let value = (!l["value"].is_null()).then(|| l["value"].clone());
        written.push(Read {
            partition: p,
            offset,
            key: l["key"].as_str().map(str::to_string),
            value,
        });
    }
    written.sort_by_key(|r| (r.partition, r.offset));
    assert_eq!(written.len(), records.len(), "lines against records (seed {seed:#x})");
    assert_eq!(written, records, "seed {seed:#x}");
}

const SETUP: &str = "
CREATE STREAM orders (region VARCHAR KEY, amount BIGINT)
  WITH (kafka_topic = 'orders', partitions = 3, value_format = 'json');
CREATE TABLE totals AS
  SELECT region, SUM(amount) AS total, COUNT(*) AS n, MAX(amount) AS top
  FROM orders GROUP BY region HAVING SUM(amount) > 0 EMIT CHANGES;
";

fn create_sinks(broker: &BrokerProcess, pg: &Postgres, file: &Path) {
    let statement = format!(
        "CREATE SINK CONNECTOR mirror WITH ('connector.class' = 'JdbcSinkConnector', \
           'connection.url' = '{}', 'topics' = '{TOPIC}', 'table.name.format' = 'totals', \
           'insert.mode' = 'upsert', 'pk.mode' = 'record_key', 'pk.fields' = 'region', \
           'delete.enabled' = 'true'); \
         CREATE SINK CONNECTOR lines WITH ('connector.class' = 'FileStreamSinkConnector', \
           'file' = '{}', 'topics' = '{TOPIC}');",
        pg.jdbc_url("shop"),
        file.display()
    );
    eddy_ok(broker, &["sql", "-e", &statement]);
    for name in ["MIRROR", "LINES"] {
        wait_status(broker, name, Duration::from_secs(30), |s| s["state"] == "RUNNING");
    }
}

#[test]
fn a_table_mirrored_into_postgresql_and_a_file_equals_it_across_sigkills() {
    let seed = eddy_tests::env_u64("EDDY_SINK_SEED").unwrap_or(SEED);
    eprintln!("seed {seed:#x} (EDDY_SINK_SEED replays it)");
    let mut rng = Rng(seed | 1);
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        "CREATE TABLE totals (region text PRIMARY KEY, total bigint NOT NULL, n bigint NOT NULL, top bigint NOT NULL); \
         CREATE TABLE audit (id bigserial PRIMARY KEY, region text, n bigint, op text); \
         CREATE FUNCTION audit() RETURNS trigger AS $$ BEGIN \
           INSERT INTO audit (region, n, op) VALUES (COALESCE(NEW.region, OLD.region), COALESCE(NEW.n, OLD.n), TG_OP); \
           RETURN NULL; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON totals FOR EACH ROW EXECUTE FUNCTION audit();",
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("totals.jsonl");
    let mut broker = BrokerProcess::start(&data, &[]);
    eddy_ok(&broker, &["sql", "-e", SETUP]);
    create_sinks(&broker, &pg, &file);

    let mut totals = Totals::default();
    for burst_no in 0..2 {
        let kill_after = rng.below(CHUNKS_PER_BURST as u64 - 1) as usize;
        let restart = (burst_no == 1).then_some(&pg);
        burst(&mut broker, &data, &mut rng, &mut totals, kill_after, restart);
        let expected = totals.table();
        check_mirror(&pg, &broker, &expected, seed);
        eprintln!("burst {burst_no}: {} rows mirrored", expected.len());
    }
    let records = read_topic(&broker, TOPIC);
    let deleted = records.iter().filter(|r| r.value.is_none()).count();
    assert!(deleted >= 10, "the bursts deleted only {deleted} rows (seed {seed:#x})");
    wait_status(&broker, "LINES", Duration::from_secs(30), |s| {
        s["records"].parse::<usize>().is_ok_and(|n| n > 0)
            && std::fs::read_to_string(&file).is_ok_and(|t| t.lines().count() >= records.len())
    });
    check_file(&file, &records, seed);
    let (writes, repeats) = check_audit(&pg, seed);
    let deletes = pg.psql("shop", "SELECT count(*) FROM audit WHERE op = 'DELETE'");
    assert!(deletes.trim().parse::<usize>().unwrap() >= 1, "no DELETE reached PostgreSQL");
    eprintln!(
        "{} records in {TOPIC}, {deleted} tombstones; sink wrote {writes} rows ({repeats} again) and {} deletes",
        records.len(),
        deletes.trim()
    );
}
