//! The PostgreSQL CDC source (what Debezium's PostgreSQL connector does), setting up: the
//! publication (created when missing: `FOR TABLE` the listed tables, else `FOR ALL TABLES`),
//! the logical replication slot (`pgoutput`), the initial snapshot, then
//! [`Streamer`](super::stream::Streamer) from the stored LSN. Topic per table:
//! `<topic.prefix>.<schema>.<table>`.
//!
//! The snapshot is consistent with the slot: the slot is created with `EXPORT_SNAPSHOT` and
//! the tables are read in a `REPEATABLE READ` transaction on that snapshot while the
//! replication connection stays idle, so the stream starts exactly after what the snapshot saw.
//! Its records (`op` = `r`) are fsynced before the position `{lsn: consistent point,
//! snapshot_done: true}` is stored. A snapshot cut short (a crash) is taken again at restart
//! on a fresh snapshot, and the stream replays from the slot's position: the final state is
//! right, though a key may briefly show an older state again (docs/connectors.md).

use serde_json::Value;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::change::{Captured, Origin, pos};
use super::pgoutput::{format_lsn, parse_lsn};
use super::query::describe;
use super::stream::{Streamer, Writer};
use super::url::{connect, ident, literal};
use super::wire::ReplConn;
use crate::config::CdcConfig;
use crate::error::ConnectError;
use crate::runtime::Ctx;
use crate::topics::Output;

/// Rows fetched from the snapshot cursor at a time.
const SNAPSHOT_FETCH: usize = 5000;

/// The stored position.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stored {
    lsn: u64,
    snapshot_done: bool,
}

fn stored(v: Option<Value>) -> Option<Stored> {
    let v = v?;
    Some(Stored {
        lsn: v.get("lsn")?.as_u64()?,
        snapshot_done: v.get("snapshot_done").and_then(Value::as_bool).unwrap_or(false),
    })
}

async fn rows(
    client: &Client,
    sql: &str,
    doing: &str,
) -> Result<Vec<Vec<Option<String>>>, ConnectError> {
    let messages = client.simple_query(sql).await.map_err(|e| ConnectError::pg(doing, &e))?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

/// A table to capture: its columns (each mappable) and primary key.
pub async fn capture(
    client: &Client,
    c: &CdcConfig,
    schema: &str,
    table: &str,
) -> Result<Captured, ConnectError> {
    let columns = describe(client, schema, table).await?;
    let sql = format!(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
         AND a.attnum = ANY(i.indkey) WHERE i.indrelid = {}::regclass AND i.indisprimary \
         ORDER BY array_position(i.indkey, a.attnum)",
        literal(&format!("{}.{}", ident(schema), ident(table)))
    );
    let pk_names = rows(client, &sql, "reading the primary key").await?;
    let pk = pk_names
        .iter()
        .filter_map(|r| r.first().cloned().flatten())
        .filter_map(|n| columns.iter().position(|c| c.name == n))
        .collect();
    Ok(Captured {
        schema: schema.to_string(),
        table: table.to_string(),
        topic: format!("{}.{}.{}", c.topic_prefix, schema, table),
        columns,
        pk,
    })
}

/// The listed tables (checked first, so a missing one is named), the publication created when
/// missing, and with no list the tables the publication holds.
async fn setup(client: &Client, c: &CdcConfig) -> Result<Vec<Captured>, ConnectError> {
    let mut tables = Vec::new();
    for (schema, table) in &c.tables {
        tables.push(capture(client, c, schema, table).await?);
    }
    let exists = rows(
        client,
        &format!("SELECT 1 FROM pg_publication WHERE pubname = {}", literal(&c.publication)),
        "looking up the publication",
    )
    .await?;
    if exists.is_empty() {
        let what = if c.tables.is_empty() {
            "ALL TABLES".to_string()
        } else {
            let list: Vec<String> =
                c.tables.iter().map(|(s, t)| format!("{}.{}", ident(s), ident(t))).collect();
            format!("TABLE {}", list.join(", "))
        };
        let sql = format!("CREATE PUBLICATION {} FOR {what}", ident(&c.publication));
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| ConnectError::pg("creating the publication", &e))?;
    }
    if c.tables.is_empty() {
        let sql = format!(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = {}",
            literal(&c.publication)
        );
        for r in rows(client, &sql, "listing the publication's tables").await? {
            if let (Some(Some(s)), Some(Some(t))) = (r.first(), r.get(1)) {
                tables.push(capture(client, c, s, t).await?);
            }
        }
    }
    Ok(tables)
}

/// The slot's confirmed position, or `None` when there is no such slot.
async fn slot_lsn(client: &Client, slot: &str) -> Result<Option<u64>, ConnectError> {
    let sql = format!(
        "SELECT COALESCE(confirmed_flush_lsn, restart_lsn)::text FROM pg_replication_slots WHERE slot_name = {}",
        literal(slot)
    );
    let found = rows(client, &sql, "looking up the replication slot").await?;
    Ok(found.first().map(|r| r.first().cloned().flatten().and_then(|t| parse_lsn(&t)).unwrap_or(0)))
}

/// Runs the CDC source until stopped or failed.
pub async fn run(c: &CdcConfig, ctx: &Ctx) -> Result<(), ConnectError> {
    let client = connect(&c.addr).await?;
    let tables = setup(&client, c).await?;
    let mut writer = Writer::open(Output::new(ctx.logs.clone()), &tables, c.topic_partitions)?;
    let stored = stored(ctx.load_position());
    let slot = slot_lsn(&client, &c.slot).await?;
    let mut repl = ReplConn::connect(&c.addr).await?;
    let start = match (slot, stored) {
        (None, Some(s)) if s.snapshot_done => {
            return Err(ConnectError::SlotMissing { slot: c.slot.clone(), lsn: format_lsn(s.lsn) });
        }
        (None, _) => {
            let sql =
                format!("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT", c.slot);
            let created = repl.simple_query(&sql).await?;
            let row = created.first().ok_or_else(|| {
                ConnectError::Protocol("CREATE_REPLICATION_SLOT answered no row".into())
            })?;
            let point = row.get(1).cloned().flatten().and_then(|t| parse_lsn(&t));
            let point =
                point.ok_or_else(|| ConnectError::Protocol("no consistent point".into()))?;
            let name = row.get(2).cloned().flatten();
            tracing::info!(connector = %ctx.name, slot = %c.slot, lsn = %format_lsn(point), "replication slot created");
            if c.snapshot {
                snapshot(&client, name.as_deref(), point, &tables, &mut writer, c, ctx).await?;
            }
            writer.commit(ctx, point, true)?;
            point
        }
        (Some(slot_at), s) => {
            let done = s.is_some_and(|s| s.snapshot_done);
            if !done && c.snapshot {
                tracing::warn!(connector = %ctx.name, "the snapshot was cut short: taking it again");
                snapshot(&client, None, slot_at, &tables, &mut writer, c, ctx).await?;
            }
            let start = s.map_or(slot_at, |s| s.lsn.max(slot_at));
            writer.commit(ctx, start, true)?;
            start
        }
    };
    Streamer::new(c, ctx, &client, tables, writer).run(&mut repl, start).await
}

/// Reads every table in one `REPEATABLE READ` transaction (on the exported snapshot `name`
/// when given) and queues its rows as `r` records, writing them as it goes.
async fn snapshot(
    client: &Client,
    name: Option<&str>,
    lsn: u64,
    tables: &[Captured],
    writer: &mut Writer,
    c: &CdcConfig,
    ctx: &Ctx,
) -> Result<(), ConnectError> {
    ctx.running();
    let fail = |e: tokio_postgres::Error| ConnectError::pg("taking the snapshot", &e);
    let mut begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;".to_string();
    if let Some(n) = name {
        begin.push_str(&format!("SET TRANSACTION SNAPSHOT {};", literal(n)));
    }
    client.batch_execute(&begin).await.map_err(fail)?;
    let origin = Origin {
        db: &c.addr.dbname,
        prefix: &c.topic_prefix,
        xid: None,
        lsn,
        commit_ms: crate::now_ms(),
        snapshot: "true",
    };
    for t in tables {
        let sql = format!(
            "DECLARE eddy_snapshot CURSOR FOR SELECT * FROM {}.{}",
            ident(&t.schema),
            ident(&t.table)
        );
        client.batch_execute(&sql).await.map_err(fail)?;
        loop {
            let batch = rows(
                client,
                &format!("FETCH {SNAPSHOT_FETCH} FROM eddy_snapshot"),
                "taking the snapshot",
            )
            .await?;
            for r in &batch {
                let datums: Vec<_> = r
                    .iter()
                    .map(|v| {
                        v.clone().map_or(super::pgoutput::Datum::Null, super::pgoutput::Datum::Text)
                    })
                    .collect();
                let row = t.row(&datums, None)?;
                for rec in t.records('r', None, Some(row), origin) {
                    writer.push(&t.topic, rec, pos(lsn, 0), false)?;
                }
            }
            let n = writer.write()?;
            ctx.add_records(n);
            if batch.len() < SNAPSHOT_FETCH {
                break;
            }
        }
        client.batch_execute("CLOSE eddy_snapshot").await.map_err(fail)?;
    }
    client.batch_execute("COMMIT").await.map_err(fail)?;
    Ok(())
}
