//! PostgreSQL change data capture into eddy (issue 22, "What must be shown" 5).
//!
//! A PostgreSQL server of our own (the connector tests' harness, tests/src/postgres.rs, with
//! `fsync = on` and `synchronous_commit = on`: a commit is durable, as an eddy record is once
//! fsynced) and a child release `eddy serve` (as in the memory workload) with the CDC source
//! connector `cdc` on table `items` (pgoutput, topic `pg.public.items`, one partition) and
//! `CREATE SOURCE TABLE items_cdc` over that topic, so pull queries read its rows.
//!
//! The changes: `--threads` psql-like sessions (tokio-postgres, one connection each, default 4)
//! each commit `--records / threads` single-statement transactions over rows of their own —
//! half inserts, three tenths updates, one fifth deletes (a delete is two records: the
//! Debezium delete and its tombstone). Per run (`--runs`, default 3):
//!
//! - **postgres (baseline)**: the connector paused, the sessions commit their changes; commits
//!   per second, and each commit's latency as the client sees it.
//! - **cdc catch-up**: the connector resumed over that backlog; changes per second from the
//!   resume until the status counts every record written and fsynced in eddy (the status
//!   counts records after their fsync, before the slot is confirmed).
//! - **cdc live**: the sessions commit another set of changes while the connector streams them;
//!   changes per second from the first commit until the last is durable in eddy (so at most
//!   PostgreSQL's own rate), with PostgreSQL's commit rate during it in the notes.
//! - **commit → pull query**: [`PROBES`] probes one at a time, an update of a
//!   probe row committed, then `SELECT ver FROM items_cdc WHERE k = '{"id":N}'` back to back
//!   until it answers the new version; from the commit's return to that answer.
//! - **pull query round trip**: the same pull query on a row that does not change — the floor
//!   of the previous row.
//!
//! Bounded: every wait has a deadline ([`LIMIT`]); the probes stop after [`PROBES`] or
//! [`PROBE_FOR`].

#[path = "../../tests/src/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use eddy_client::{Admin, Connection, ConnectionOptions};
use eddy_protocol::v1::sql_result::Result as SqlAnswer;
use tokio_postgres::{Client, NoTls};

use crate::memory::{BrokerChild, eddy_binary};
use crate::report::{Row, Timing, median_against};
use crate::workload::Options;
use postgres::Postgres;

/// Latency probes per run.
const PROBES: u64 = 2000;
/// The probes of one run stop after this long.
const PROBE_FOR: Duration = Duration::from_secs(40);
/// Longest wait for eddy to hold what PostgreSQL committed.
const LIMIT: Duration = Duration::from_secs(300);
/// Probe rows (ids from [`PROBE_BASE`]).
const PROBE_ROWS: i32 = 100;
const PROBE_BASE: i32 = 2_000_000_000;
const TOPIC: &str = "pg.public.items";
const SETUP: &str =
    "CREATE TABLE items (id int PRIMARY KEY, ver bigint NOT NULL, note text NOT NULL)";

/// The broker's admin client.
type Admin2 = Admin<Connection>;

/// xorshift64*: the workload's choices.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// One session's prepared statements and its live rows.
struct Session {
    client: Client,
    insert: tokio_postgres::Statement,
    update: tokio_postgres::Statement,
    delete: tokio_postgres::Statement,
    live: Vec<i32>,
    next_id: i32,
    rng: Rng,
}

/// What a set of commits wrote: changes, eddy records they make, per-commit latencies.
struct Committed {
    changes: u64,
    records: u64,
    timing: Timing,
}

async fn pg_connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    // The connection ends with the run (its error then is the server going away).
    tokio::spawn(async move { drop(conn.await) });
    Ok(client)
}

impl Session {
    async fn open(url: &str, index: i32) -> Result<Session> {
        let client = pg_connect(url).await?;
        let insert = client.prepare("INSERT INTO items (id, ver, note) VALUES ($1, 0, $2)").await?;
        let update =
            client.prepare("UPDATE items SET ver = ver + 1, note = $2 WHERE id = $1").await?;
        let delete = client.prepare("DELETE FROM items WHERE id = $1").await?;
        Ok(Session {
            client,
            insert,
            update,
            delete,
            live: Vec::new(),
            next_id: index * 100_000_000,
            rng: Rng(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1)),
        })
    }

    /// Commits `n` changes one transaction each; the records they make in eddy.
    async fn commit(&mut self, n: u64, timing: &mut Timing) -> Result<u64> {
        let mut records = 0;
        for i in 0..n {
            let note = format!("change {i}");
            let roll = self.rng.below(10);
            let t = Instant::now();
            if self.live.is_empty() || roll < 5 {
                self.next_id += 1;
                self.client.execute(&self.insert, &[&self.next_id, &note]).await?;
                self.live.push(self.next_id);
                records += 1;
            } else if roll < 8 {
                let id = self.live[self.rng.below(self.live.len() as u64) as usize];
                self.client.execute(&self.update, &[&id, &note]).await?;
                records += 1;
            } else {
                let at = self.rng.below(self.live.len() as u64) as usize;
                let id = self.live.swap_remove(at);
                self.client.execute(&self.delete, &[&id]).await?;
                records += 2;
            }
            timing.record(t.elapsed());
        }
        Ok(records)
    }
}

/// Every session commits its share of `changes` at once (a task each).
async fn commit_all(sessions: &mut Vec<Session>, changes: u64) -> Result<Committed> {
    let per = changes / sessions.len() as u64;
    let start = Instant::now();
    let tasks: Vec<_> = sessions
        .drain(..)
        .map(|mut s| {
            tokio::spawn(async move {
                let mut timing = Timing::new();
                let records = s.commit(per, &mut timing).await;
                (s, records, timing)
            })
        })
        .collect();
    let mut out = Committed { changes: 0, records: 0, timing: Timing::new() };
    for task in tasks {
        let (s, records, timing) = task.await?;
        sessions.push(s);
        out.records += records?;
        out.changes += per;
        out.timing.merge(&timing);
    }
    out.timing.finish(start.elapsed());
    Ok(out)
}

/// Waits until the connector's status counts `records` (written and fsynced); when it did.
async fn durable(admin: &Admin2, records: u64) -> Result<Instant> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let s = admin.connector_status("cdc").await?;
        if s.records >= records {
            return Ok(Instant::now());
        }
        ensure!(s.state != "FAILED", "the connector failed: {}", s.reason);
        ensure!(Instant::now() < deadline, "eddy holds {} of {records} records", s.records);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Pauses or resumes the connector; resumed, waits until it streams.
async fn set_paused(admin: &Admin2, paused: bool) -> Result<()> {
    admin.pause_connector("cdc", paused).await?;
    let deadline = Instant::now() + LIMIT;
    let want = if paused { "PAUSED" } else { "RUNNING" };
    while admin.connector_status("cdc").await?.state != want {
        ensure!(Instant::now() < deadline, "the connector never got {want}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// The `ver` a pull query answers for probe row `id` (`None`: no row yet).
async fn pulled_ver(admin: &Admin2, id: i32) -> Result<Option<i64>> {
    let sql = format!("SELECT after->ver AS ver FROM items_cdc WHERE k = '{{\"id\":{id}}}';");
    let answer = admin.sql(&sql, vec![], 0).await?;
    match answer.into_iter().last().and_then(|r| r.result) {
        Some(SqlAnswer::Rows(rows)) => match rows.rows.first() {
            Some(row) => {
                let v: serde_json::Value = serde_json::from_str(row)?;
                Ok(v[0].as_i64())
            }
            None => Ok(None),
        },
        other => bail!("the pull query answered {other:?}"),
    }
}

/// Latencies of one series and how many samples it has.
#[derive(Clone)]
struct Series {
    timing: Timing,
    samples: u64,
}

impl Series {
    fn new() -> Series {
        Series { timing: Timing::new(), samples: 0 }
    }

    fn record(&mut self, d: Duration) {
        self.timing.record(d);
        self.samples += 1;
    }
}

/// Probes: an update committed, then pull queries until one answers it.
async fn probe(pg: &Client, admin: &Admin2) -> Result<Series> {
    let mut series = Series::new();
    let start = Instant::now();
    let mut vers: HashMap<i32, i64> = HashMap::new();
    while series.samples < PROBES && start.elapsed() < PROBE_FOR {
        let id = PROBE_BASE + (series.samples % PROBE_ROWS as u64) as i32;
        let ver = vers.entry(id).or_insert(0);
        *ver += 1;
        pg.execute("UPDATE items SET ver = $2 WHERE id = $1", &[&id, &*ver]).await?;
        let committed = Instant::now();
        let deadline = committed + LIMIT;
        while pulled_ver(admin, id).await? != Some(*ver) {
            ensure!(Instant::now() < deadline, "probe row {id} never showed version {ver}");
        }
        series.record(committed.elapsed());
    }
    series.timing.finish(start.elapsed());
    Ok(series)
}

/// The pull query on a row that does not change, back to back.
async fn round_trips(admin: &Admin2) -> Result<Series> {
    let mut series = Series::new();
    let start = Instant::now();
    for _ in 0..PROBES {
        let t = Instant::now();
        ensure!(pulled_ver(admin, PROBE_BASE - 1).await?.is_some(), "the fixed row is missing");
        series.record(t.elapsed());
    }
    series.timing.finish(start.elapsed());
    Ok(series)
}

/// What one run measured.
struct RunRows {
    baseline: Row,
    catch_up: Row,
    live: Row,
    latency: Series,
    floor: Series,
}

/// A throughput row: `changes` over `elapsed`.
fn rate_row(name: &str, changes: u64, elapsed: Duration) -> Row {
    let mut t = Timing::new();
    t.finish(elapsed);
    Row::new(name, changes, 0, &t)
}

async fn one_run(
    opts: &Options,
    sessions: &mut Vec<Session>,
    pg: &Client,
    admin: &Admin2,
) -> Result<RunRows> {
    // Baseline: PostgreSQL alone, the connector paused; then the connector over the backlog.
    set_paused(admin, true).await?;
    let backlog = commit_all(sessions, opts.records).await?;
    let baseline =
        Row::new(BASELINE, backlog.changes, 0, &backlog.timing).note("sessions", sessions.len());
    let resumed = Instant::now();
    set_paused(admin, false).await?;
    let done = durable(admin, backlog.records).await?;
    let catch_up = rate_row(CATCH_UP, backlog.changes, done - resumed)
        .note("records (a delete writes 2)", backlog.records)
        .against(&baseline);

    let before = admin.connector_status("cdc").await?.records;
    let start = Instant::now();
    let live_commits = commit_all(sessions, opts.records).await?;
    let committed_at = Instant::now();
    let done = durable(admin, before + live_commits.records).await?;
    let pg_rate = live_commits.changes as f64 / (committed_at - start).as_secs_f64();
    let lag_ms = (done - committed_at).as_secs_f64() * 1e3;
    let live = rate_row(LIVE, live_commits.changes, done - start)
        .note("postgres commits/s meanwhile", format!("{pg_rate:.0}"))
        .note("last commit → durable in eddy (ms)", format!("{lag_ms:.1}"))
        .against(&baseline);

    let latency = probe(pg, admin).await?;
    let floor = round_trips(admin).await?;
    Ok(RunRows { baseline, catch_up, live, latency, floor })
}

const BASELINE: &str = "postgres: commits (baseline)";
const CATCH_UP: &str = "cdc catch-up: backlog → durable";
const LIVE: &str = "cdc live: commit → durable";

/// Starts PostgreSQL, the broker, the connector and the table; the runs; their median rows.
pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let binary = eddy_binary(opts)?;
    let dir = opts.tempdir()?;
    let pg = Postgres::start_with("\nfsync = on\nsynchronous_commit = on\n");
    pg.psql("postgres", SETUP);
    pg.psql(
        "postgres",
        &format!(
            "INSERT INTO items SELECT g, 0, 'probe' FROM generate_series({}, {}) g",
            PROBE_BASE - 1,
            PROBE_BASE + PROBE_ROWS - 1
        ),
    );
    let broker = BrokerChild::start(&binary, dir.path(), TOPIC)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let admin =
            Admin::new(Connection::connect(&broker.addr, ConnectionOptions::default()).await?);
        setup_eddy(&admin, &pg).await?;
        let url = pg.url("postgres");
        let mut sessions = Vec::new();
        for i in 0..opts.threads.min(16) {
            sessions.push(Session::open(&url, i as i32).await?);
        }
        let probe_client = pg_connect(&url).await?;
        let mut runs = Vec::new();
        for _ in 0..opts.runs {
            runs.push(one_run(opts, &mut sessions, &probe_client, &admin).await?);
        }
        Ok(summarize(runs))
    })
}

async fn setup_eddy(admin: &Admin2, pg: &Postgres) -> Result<()> {
    let config: HashMap<String, String> = [
        ("connector.class", "PostgresConnector".to_string()),
        ("connection.url", pg.url("postgres")),
        ("table.include.list", "public.items".to_string()),
        ("topic.prefix", "pg".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    admin.create_connector("cdc", "source", config).await?;
    let declare = format!(
        "CREATE SOURCE TABLE items_cdc (k VARCHAR PRIMARY KEY, after STRUCT<id INT, ver BIGINT>) \
         WITH (kafka_topic = '{TOPIC}', value_format = 'json');"
    );
    let deadline = Instant::now() + LIMIT;
    // The topic exists once the connector has taken its snapshot.
    while admin.connector_status("cdc").await?.state != "RUNNING" {
        ensure!(Instant::now() < deadline, "the connector never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for r in admin.sql(&declare, vec![], 0).await? {
        if let Some(SqlAnswer::Error(e)) = r.result {
            bail!("{declare}: {}", e.message);
        }
    }
    while pulled_ver(admin, PROBE_BASE - 1).await?.is_none() {
        ensure!(Instant::now() < deadline, "the snapshot never reached the table");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// `min / median / max` of the runs' rates.
fn spread(rows: &[Row]) -> String {
    let mut rates: Vec<f64> = rows.iter().map(|r| r.records_per_s).collect();
    rates.sort_by(f64::total_cmp);
    let (lo, mid, hi) = (rates[0], rates[rates.len() / 2], rates[rates.len() - 1]);
    format!("{lo:.0} / {mid:.0} / {hi:.0}")
}

/// One latency row over every run's samples, each run's p50 / p99 in a note.
fn merged(name: &str, series: &[Series]) -> Row {
    let mut all = Series::new();
    let mut per_run = Vec::new();
    for s in series {
        all.timing.merge(&s.timing);
        all.samples += s.samples;
        all.timing.elapsed += s.timing.elapsed;
        let r = Row::new(name, s.samples, 0, &s.timing);
        per_run.push(format!("{:.2}/{:.2}", r.op_p50_us / 1e3, r.op_p99_us / 1e3));
    }
    let mut row =
        Row::new(name, all.samples, 0, &all.timing).note("p50/p99 ms per run", per_run.join(" "));
    row.percentiles = all.timing.percentiles();
    row
}

/// The median row of each throughput over the runs (ratios per run), with min/median/max,
/// and the latency rows over all runs' samples.
fn summarize(runs: Vec<RunRows>) -> Vec<Row> {
    let pick = |f: fn(&RunRows) -> &Row| runs.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
    let (baselines, catch_up, live) =
        (pick(|r| &r.baseline), pick(|r| &r.catch_up), pick(|r| &r.live));
    let per_run = "changes/s per run (min / median / max)";
    let latency: Vec<Series> = runs.iter().map(|r| r.latency.clone()).collect();
    let floor: Vec<Series> = runs.iter().map(|r| r.floor.clone()).collect();
    vec![
        crate::report::median(baselines.clone()).note(per_run, spread(&baselines)),
        median_against(catch_up.clone(), &baselines).note(per_run, spread(&catch_up)),
        median_against(live.clone(), &baselines).note(per_run, spread(&live)),
        merged("latency: commit → pull query sees it", &latency),
        merged("pull query round trip (floor)", &floor),
    ]
}
