//! PostgreSQL CDC into eddy against a real PostgreSQL and the real `eddy serve`: an initial
//! snapshot, then 20,000 inserts, updates and deletes from four concurrent psql sessions in two
//! phases, with the broker SIGKILLed at seeded random moments during each phase and PostgreSQL
//! restarted between them. At the end:
//!
//! - every change PostgreSQL committed (an audit trigger records each one in the same
//!   transaction) is in the topic exactly once: no change missing, none twice;
//! - per key the changes are in commit order (`ver`, from a sequence under the row's lock,
//!   strictly increases);
//! - the table folded from the topic (latest `after` per key, tombstones delete) equals
//!   `SELECT * FROM items`.
//!
//! `EDDY_CDC_SEED` replaces the seed (printed first). The long form is the same test at a larger
//! scale: `EDDY_CDC_CHANGES=15000 EDDY_CDC_KILLS=5` (statements per session and phase, kills per
//! phase) commits 102,215 row changes with ten kills (55 s; some statements change no row).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use eddy_tests::broker::BrokerProcess;
use eddy_tests::cli::eddy_ok;
use eddy_tests::connectors::{read_topic, wait_status};
use eddy_tests::postgres::Postgres;
use serde_json::Value;

const SEED: u64 = 0x0edd_cdc0_2200_0001;
const SESSIONS: u64 = 4;
const CHANGES_PER_SESSION_PHASE: u64 = 2500;
const KILLS_PER_PHASE: u64 = 3;

fn changes_per_session_phase() -> u64 {
    eddy_tests::env_u64("EDDY_CDC_CHANGES").unwrap_or(CHANGES_PER_SESSION_PHASE)
}

fn kills_per_phase() -> u64 {
    eddy_tests::env_u64("EDDY_CDC_KILLS").unwrap_or(KILLS_PER_PHASE)
}
const TOPIC: &str = "pg.public.items";

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

/// One session's script: single statements and small transactions over ids shared by all
/// sessions, so rows are contended.
fn script(rng: &mut Rng, session: u64, phase: u64) -> String {
    let mut s = String::new();
    let mut n = 0;
    let changes = changes_per_session_phase();
    while n < changes {
        let grouped = rng.below(4) == 0;
        if grouped {
            s.push_str("BEGIN;\n");
        }
        for _ in 0..if grouped { 3 } else { 1 } {
            let id = rng.below(1500);
            let note = format!("s{session}p{phase}n{n}");
            s.push_str(&match rng.below(10) {
                0..=4 => format!(
                    "INSERT INTO items (id, ver, note, tags, doc) VALUES ({id}, nextval('vers'), '{note}', ARRAY['a','{note}'], '{{\"n\": {n}}}') \
                     ON CONFLICT (id) DO UPDATE SET ver = nextval('vers'), note = EXCLUDED.note;\n"
                ),
                5..=7 => format!("UPDATE items SET ver = nextval('vers'), note = '{note}' WHERE id = {id};\n"),
                _ => format!("DELETE FROM items WHERE id = {id};\n"),
            });
            n += 1;
        }
        if grouped {
            s.push_str("COMMIT;\n");
        }
    }
    s
}

fn run_phase(
    pg: &Postgres,
    broker: &mut BrokerProcess,
    dir: &std::path::Path,
    rng: &mut Rng,
    phase: u64,
) {
    let mut children = Vec::new();
    for session in 0..SESSIONS {
        let text = script(rng, session, phase);
        let mut child = pg
            .psql_command("postgres")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        children.push(child);
    }
    for k in 0..kills_per_phase() {
        // A random moment while the sessions run: chaos, not synchronisation.
        std::thread::sleep(Duration::from_millis(200 + rng.below(1500)));
        broker.kill9();
        eprintln!("phase {phase}: broker SIGKILLed ({k})");
        *broker = BrokerProcess::start(dir, &[]);
    }
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a psql session failed");
    }
}

/// (id, ver, op) of every change the audit trigger saw, op as Debezium's c/u/d.
fn audited(pg: &Postgres) -> BTreeSet<(i64, i64, String)> {
    pg.psql("postgres", "SELECT id, ver, op FROM audit")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let op = match f[2] {
                "INSERT" => "c",
                "UPDATE" => "u",
                _ => "d",
            };
            (f[0].parse().unwrap(), f[1].parse().unwrap(), op.to_string())
        })
        .collect()
}

fn streamed(records: &[eddy_tests::connectors::Read]) -> Vec<(i64, i64, String)> {
    records
        .iter()
        .filter_map(|r| r.value.as_ref())
        .filter(|v| v["source"]["snapshot"] == "false")
        .map(|v| {
            let row = if v["op"] == "d" { &v["before"] } else { &v["after"] };
            (
                row["id"].as_i64().unwrap(),
                row["ver"].as_i64().unwrap(),
                v["op"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn cdc_loses_and_repeats_no_change_across_sigkills_and_a_postgres_restart() {
    let seed = eddy_tests::env_u64("EDDY_CDC_SEED").unwrap_or(SEED);
    eprintln!("seed {seed:#x} (EDDY_CDC_SEED replays it)");
    let mut rng = Rng(seed | 1);
    let pg = Postgres::start();
    pg.psql(
        "postgres",
        "CREATE SEQUENCE vers; \
         CREATE TABLE items (id int PRIMARY KEY, ver bigint NOT NULL, note text, tags text[], doc jsonb, at timestamptz DEFAULT now()); \
         ALTER TABLE items REPLICA IDENTITY FULL; \
         INSERT INTO items (id, ver, note) SELECT g, nextval('vers'), 'initial' FROM generate_series(0, 299) g; \
         CREATE TABLE audit (id int, ver bigint, op text); \
         CREATE FUNCTION audit() RETURNS trigger AS $$ BEGIN \
           INSERT INTO audit VALUES (COALESCE(NEW.id, OLD.id), CASE WHEN TG_OP = 'DELETE' THEN OLD.ver ELSE NEW.ver END, TG_OP); \
           RETURN NULL; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH ROW EXECUTE FUNCTION audit();",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let url = format!("connection.url={}", pg.url("postgres"));
    eddy_ok(
        &broker,
        &[
            "connector",
            "create",
            "cdc",
            "--source",
            "connector.class=PostgresConnector",
            &url,
            "table.include.list=public.items",
            "topic.prefix=pg",
            "topic.partitions=3",
        ],
    );
    wait_status(&broker, "cdc", Duration::from_secs(60), |s| {
        s["state"] == "RUNNING" && s["position"].starts_with("LSN")
    });

    run_phase(&pg, &mut broker, dir.path(), &mut rng, 0);
    pg.restart();
    eprintln!("PostgreSQL restarted");
    run_phase(&pg, &mut broker, dir.path(), &mut rng, 1);

    let expected = audited(&pg);
    assert!(expected.len() >= 15_000, "the workload made {} changes", expected.len());
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let records = loop {
        let records = read_topic(&broker, TOPIC);
        let got: BTreeSet<_> = streamed(&records).into_iter().collect();
        if got == expected || std::time::Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let changes = streamed(&records);
    let unique: BTreeSet<_> = changes.iter().cloned().collect();
    assert_eq!(unique.len(), changes.len(), "a change was written twice (seed {seed:#x})");
    let missing: Vec<_> = expected.difference(&unique).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} changes missing, e.g. {missing:?} (seed {seed:#x})",
        expected.len() - unique.len().min(expected.len())
    );
    assert_eq!(unique, expected, "seed {seed:#x}");

    // Commit order per key, and the table the topic folds into.
    let mut last_ver: BTreeMap<String, i64> = BTreeMap::new();
    let mut table: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    for r in &records {
        let key = r.key.clone().expect("CDC records are keyed");
        let Some(v) = &r.value else {
            let id: Value = serde_json::from_str(&key).unwrap();
            table.remove(&id["id"].as_i64().unwrap());
            continue;
        };
        let row = if v["op"] == "d" { &v["before"] } else { &v["after"] };
        let ver = row["ver"].as_i64().unwrap();
        if v["op"] != "r" {
            // A delete carries the row's last version; anything else a newer one.
            let before = last_ver.insert(key.clone(), ver);
            let in_order = before.is_none_or(|b| if v["op"] == "d" { b == ver } else { b < ver });
            assert!(
                in_order,
                "key {key}: {} at ver {ver} after {before:?} (seed {seed:#x})",
                v["op"]
            );
        }
        match v["op"].as_str() {
            Some("d") => drop(table.remove(&row["id"].as_i64().unwrap())),
            _ => drop(table.insert(
                row["id"].as_i64().unwrap(),
                (ver, row["note"].as_str().unwrap().to_string()),
            )),
        }
    }
    let in_pg: BTreeMap<i64, (i64, String)> = pg
        .psql("postgres", "SELECT id, ver, note FROM items")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.splitn(3, '|').collect();
            (f[0].parse().unwrap(), (f[1].parse().unwrap(), f[2].to_string()))
        })
        .collect();
    assert_eq!(table, in_pg, "seed {seed:#x}");
    let tombstones = records.iter().filter(|r| r.value.is_none()).count();
    let deletes = changes.iter().filter(|c| c.2 == "d").count();
    assert_eq!(tombstones, deletes, "every delete is followed by a tombstone");
    eprintln!("{} changes, {} rows at the end", changes.len(), in_pg.len());
}
