//! Connector definitions: a name, source or sink, and the `WITH (...)` options, checked into a
//! typed [`Class`] before anything runs. Option names are Kafka Connect's (Confluent's JDBC
//! connectors, Debezium's PostgreSQL connector, Kafka's file sink), so the course's statements
//! read as printed; docs/connectors.md lists every one.
//!
//! Invariant: a [`ConnectorDef`] that [`ConnectorDef::class`] accepts runs with exactly the
//! options it was given; unknown options are refused (except Kafka Connect's converter,
//! transform and task settings, which have no meaning here and are ignored, as documented).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ConnectError;
use crate::pg::url::PgAddr;

/// A source writes topics; a sink reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Source,
    Sink,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Sink => "sink",
        }
    }
}

/// A connector as created: what `__connectors` keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorDef {
    pub name: String,
    pub kind: Kind,
    /// The options as given (names lower-cased).
    pub config: BTreeMap<String, String>,
    /// Paused connectors keep their definition and position but do not run.
    #[serde(default)]
    pub paused: bool,
}

/// Query mode of the JDBC source: which rows each poll reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The whole table every poll.
    Bulk,
    /// Rows whose strictly increasing column is above the last one seen.
    Incrementing { column: String },
    /// Rows whose timestamp column is past the last one seen (and before the database's now).
    Timestamp { column: String },
    /// Ordered by (timestamp, incrementing): rows past the last pair seen.
    TimestampIncrementing { ts: String, inc: String },
}

#[derive(Debug, Clone)]
pub struct QuerySourceConfig {
    pub addr: PgAddr,
    /// `(schema, table)` pairs, in the order given.
    pub tables: Vec<(String, String)>,
    pub topic_prefix: String,
    pub mode: Mode,
    pub poll_interval_ms: u64,
    pub key: Option<String>,
    pub batch_max_rows: u32,
    pub topic_partitions: u32,
}

#[derive(Debug, Clone)]
pub struct CdcConfig {
    pub addr: PgAddr,
    /// `(schema, table)` pairs; empty: every table of the database (`FOR ALL TABLES`).
    pub tables: Vec<(String, String)>,
    pub topic_prefix: String,
    pub slot: String,
    pub publication: String,
    /// Take the initial snapshot (`snapshot.mode = initial`), or stream only (`never`).
    pub snapshot: bool,
    pub topic_partitions: u32,
}

#[derive(Debug, Clone)]
pub struct PgSinkConfig {
    pub addr: PgAddr,
    pub topic: String,
    /// `(schema, table)` the rows go to.
    pub table: (String, String),
    /// The primary-key column the record key fills.
    pub pk: String,
    pub delete_enabled: bool,
}

#[derive(Debug, Clone)]
pub struct FileSinkConfig {
    pub path: String,
    pub topics: Vec<String>,
}

/// What a connector does, with its checked options.
#[derive(Debug, Clone)]
pub enum Class {
    QuerySource(QuerySourceConfig),
    Cdc(CdcConfig),
    PgSink(PgSinkConfig),
    FileSink(FileSinkConfig),
}

impl Class {
    /// The class's short name, as `SHOW CONNECTORS` prints it.
    pub fn name(&self) -> &'static str {
        match self {
            Class::QuerySource(_) => "JdbcSourceConnector",
            Class::Cdc(_) => "PostgresConnector",
            Class::PgSink(_) => "JdbcSinkConnector",
            Class::FileSink(_) => "FileStreamSinkConnector",
        }
    }
}

/// Kafka Connect settings accepted and ignored (by prefix).
const IGNORED: [&str; 7] = [
    "key.converter",
    "value.converter",
    "transforms",
    "tasks.max",
    "errors.",
    "name",
    "plugin.name",
];

/// Options one class knows, read off as they are used; leftovers are refused.
struct Options<'a> {
    given: &'a BTreeMap<String, String>,
    used: Vec<&'static str>,
}

impl<'a> Options<'a> {
    fn get(&mut self, name: &'static str) -> Option<&'a str> {
        self.used.push(name);
        self.given.get(name).map(|s| s.trim())
    }

    fn required(&mut self, name: &'static str) -> Result<&'a str, ConnectError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ConnectError::config(name, "missing"))
    }

    fn number(&mut self, name: &'static str, default: u64) -> Result<u64, ConnectError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => {
                v.parse().map_err(|_| ConnectError::config(name, format!("'{v}' is not a number")))
            }
        }
    }

    fn boolean(&mut self, name: &'static str, default: bool) -> Result<bool, ConnectError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(ConnectError::config(name, format!("'{v}' is not true or false"))),
        }
    }

    /// Refuses an option no one read.
    fn finish(self) -> Result<(), ConnectError> {
        for name in self.given.keys() {
            let known = self.used.iter().any(|u| u == name)
                || IGNORED.iter().any(|p| name.starts_with(p))
                || name == "connector.class";
            if !known {
                return Err(ConnectError::config(name, "unknown option for this connector class"));
            }
        }
        Ok(())
    }
}

/// `a, b` → `[(public, a), (public, b)]`; `s.t` keeps its schema.
fn table_list(option: &str, text: &str) -> Result<Vec<(String, String)>, ConnectError> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (schema, table) = item.split_once('.').unwrap_or(("public", item));
        if schema.is_empty() || table.is_empty() || table.contains('.') {
            return Err(ConnectError::config(option, format!("'{item}' is not [schema.]table")));
        }
        out.push((schema.to_string(), table.to_string()));
    }
    Ok(out)
}

fn partitions(o: &mut Options<'_>) -> Result<u32, ConnectError> {
    let n = o.number("topic.partitions", 1)?;
    if !(1..=1024).contains(&n) {
        return Err(ConnectError::config("topic.partitions", "must be 1 to 1024"));
    }
    Ok(n as u32)
}

/// An identifier PostgreSQL accepts unquoted for slots and publications.
fn pg_name(option: &str, v: &str) -> Result<String, ConnectError> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(v.to_string())
    } else {
        Err(ConnectError::config(
            option,
            format!("'{v}': lower-case letters, digits and _ only, at most 63"),
        ))
    }
}

impl ConnectorDef {
    /// Checks the options into the class they describe.
    pub fn class(&self) -> Result<Class, ConnectError> {
        let mut o = Options { given: &self.config, used: Vec::new() };
        let class = o.required("connector.class")?;
        let short = class.rsplit('.').next().unwrap_or(class);
        let parsed = match (self.kind, short) {
            (Kind::Source, "JdbcSourceConnector") => Class::QuerySource(query_source(&mut o)?),
            (Kind::Source, "PostgresConnector") => Class::Cdc(cdc(&mut o, &self.name)?),
            (Kind::Sink, "JdbcSinkConnector") => Class::PgSink(pg_sink(&mut o)?),
            (Kind::Sink, "FileStreamSinkConnector") => Class::FileSink(file_sink(&mut o)?),
            (kind, _) => {
                return Err(ConnectError::config(
                    "connector.class",
                    format!(
                        "'{class}' is not a {} connector class here (sources: JdbcSourceConnector, PostgresConnector; sinks: JdbcSinkConnector, FileStreamSinkConnector)",
                        kind.as_str()
                    ),
                ));
            }
        };
        o.finish()?;
        Ok(parsed)
    }
}

fn addr(o: &mut Options<'_>) -> Result<PgAddr, ConnectError> {
    let user = o.get("connection.user").or(o.get("database.user"));
    let password = o.get("connection.password").or(o.get("database.password"));
    let mut addr = match o.get("connection.url") {
        Some(url) => PgAddr::parse(url)?,
        None => PgAddr {
            host: o.required("database.hostname")?.to_string(),
            port: o.number("database.port", 5432)? as u16,
            dbname: o.required("database.dbname")?.to_string(),
            user: String::new(),
            password: None,
        },
    };
    if let Some(u) = user {
        addr.user = u.to_string();
    }
    if let Some(p) = password {
        addr.password = Some(p.to_string());
    }
    if addr.user.is_empty() {
        return Err(ConnectError::config(
            "connection.user",
            "no user in connection.url or options",
        ));
    }
    Ok(addr)
}

fn query_source(o: &mut Options<'_>) -> Result<QuerySourceConfig, ConnectError> {
    let addr = addr(o)?;
    let list = o.get("table.whitelist").or(o.get("table.include.list"));
    let list = list.ok_or_else(|| ConnectError::config("table.whitelist", "missing"))?;
    let tables = table_list("table.whitelist", list)?;
    if tables.is_empty() {
        return Err(ConnectError::config("table.whitelist", "names no table"));
    }
    let inc = o.get("incrementing.column.name").map(str::to_string);
    let ts = o.get("timestamp.column.name").map(str::to_string);
    let need = |c: Option<String>, option: &str| {
        c.filter(|c| !c.is_empty())
            .ok_or_else(|| ConnectError::config(option, "missing for this mode"))
    };
    let mode = match o.get("mode").unwrap_or("bulk") {
        "bulk" => Mode::Bulk,
        "incrementing" => Mode::Incrementing { column: need(inc, "incrementing.column.name")? },
        "timestamp" => Mode::Timestamp { column: need(ts, "timestamp.column.name")? },
        "timestamp+incrementing" => Mode::TimestampIncrementing {
            ts: need(ts, "timestamp.column.name")?,
            inc: need(inc, "incrementing.column.name")?,
        },
        other => {
            return Err(ConnectError::config(
                "mode",
                format!("'{other}': bulk, incrementing, timestamp or timestamp+incrementing"),
            ));
        }
    };
    let batch = o.number("batch.max.rows", 1000)?;
    Ok(QuerySourceConfig {
        addr,
        tables,
        topic_prefix: o.get("topic.prefix").unwrap_or("").to_string(),
        mode,
        poll_interval_ms: o.number("poll.interval.ms", 5000)?.max(1),
        key: o.get("key").filter(|k| !k.is_empty()).map(str::to_string),
        batch_max_rows: batch.clamp(1, 100_000) as u32,
        topic_partitions: partitions(o)?,
    })
}

fn cdc(o: &mut Options<'_>, name: &str) -> Result<CdcConfig, ConnectError> {
    let addr = addr(o)?;
    let list = o.get("table.include.list").unwrap_or("");
    let tables = table_list("table.include.list", list)?;
    let prefix = o.get("topic.prefix").or(o.get("database.server.name")).unwrap_or(name);
    let default_name = format!("eddy_{}", name.to_ascii_lowercase().replace(['-', '.'], "_"));
    let slot = pg_name("slot.name", o.get("slot.name").unwrap_or(&default_name))?;
    let publication =
        pg_name("publication.name", o.get("publication.name").unwrap_or(&default_name))?;
    let snapshot = match o.get("snapshot.mode").unwrap_or("initial") {
        "initial" => true,
        "never" | "no_data" => false,
        other => {
            return Err(ConnectError::config(
                "snapshot.mode",
                format!("'{other}': initial or never"),
            ));
        }
    };
    Ok(CdcConfig {
        addr,
        tables,
        topic_prefix: prefix.to_string(),
        slot,
        publication,
        snapshot,
        topic_partitions: partitions(o)?,
    })
}

fn pg_sink(o: &mut Options<'_>) -> Result<PgSinkConfig, ConnectError> {
    let addr = addr(o)?;
    let topic = o.required("topics")?;
    if topic.contains(',') {
        return Err(ConnectError::config("topics", "one topic per PostgreSQL sink"));
    }
    let table = o.get("table.name.format").unwrap_or("${topic}").replace("${topic}", topic);
    let mut tables = table_list("table.name.format", &table)?;
    let table = tables.pop().ok_or_else(|| ConnectError::config("table.name.format", "empty"))?;
    if let Some(mode) = o.get("insert.mode").filter(|m| *m != "upsert") {
        return Err(ConnectError::config("insert.mode", format!("'{mode}': only upsert")));
    }
    if let Some(mode) = o.get("pk.mode").filter(|m| *m != "record_key") {
        return Err(ConnectError::config("pk.mode", format!("'{mode}': only record_key")));
    }
    let pk = o.required("pk.fields")?;
    if pk.contains(',') {
        return Err(ConnectError::config("pk.fields", "one key column"));
    }
    Ok(PgSinkConfig {
        addr,
        topic: topic.to_string(),
        table,
        pk: pk.to_string(),
        delete_enabled: o.boolean("delete.enabled", true)?,
    })
}

fn file_sink(o: &mut Options<'_>) -> Result<FileSinkConfig, ConnectError> {
    let path = o.required("file")?.to_string();
    let topics: Vec<String> = o
        .required("topics")?
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    Ok(FileSinkConfig { path, topics })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(kind: Kind, pairs: &[(&str, &str)]) -> ConnectorDef {
        let config = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ConnectorDef { name: "riders".into(), kind, config, paused: false }
    }

    #[test]
    fn the_course_statement_is_a_query_source() {
        let d = def(
            Kind::Source,
            &[
                ("connector.class", "JdbcSourceConnector"),
                ("connection.url", "jdbc:postgresql://localhost:5432/rides?user=u&password=p"),
                ("topic.prefix", "rider"),
                ("table.whitelist", "geoEvents, profiles"),
                ("key", "profile_id"),
                ("key.converter", "org.apache.kafka.connect.storage.StringConverter"),
            ],
        );
        let Class::QuerySource(c) = d.class().unwrap() else { panic!("not a query source") };
        assert_eq!(
            c.tables,
            vec![("public".into(), "geoEvents".into()), ("public".into(), "profiles".into())]
        );
        assert_eq!(
            (c.mode, c.key.as_deref(), c.poll_interval_ms),
            (Mode::Bulk, Some("profile_id"), 5000)
        );
        assert_eq!((c.addr.user.as_str(), c.addr.password.as_deref()), ("u", Some("p")));
    }

    #[test]
    fn unknown_options_and_wrong_kinds_are_refused_by_name() {
        let d = def(Kind::Source, &[("connector.class", "JdbcSinkConnector")]);
        assert!(d.class().unwrap_err().to_string().contains("not a source connector class"));
        let d = def(
            Kind::Sink,
            &[
                ("connector.class", "FileStreamSinkConnector"),
                ("file", "/tmp/x"),
                ("topics", "a"),
                ("fiel", "y"),
            ],
        );
        assert_eq!(
            d.class().unwrap_err().to_string(),
            "connector option 'fiel': unknown option for this connector class"
        );
        let d = def(
            Kind::Source,
            &[
                ("connector.class", "JdbcSourceConnector"),
                ("connection.url", "postgresql://u@h/db"),
                ("table.whitelist", "t"),
                ("mode", "incrementing"),
            ],
        );
        assert!(d.class().unwrap_err().to_string().contains("incrementing.column.name"));
    }
}
