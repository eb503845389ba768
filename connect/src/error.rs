//! [`ConnectError`]: everything a connector can fail with. A connector's status shows the
//! error's text, so each variant names what it was doing and the thing it was doing it to.

use eddy_processor::LogError;

/// Why a connector could not be created or stopped running.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A `WITH (...)` option is missing, unknown or malformed.
    #[error("connector option '{option}': {reason}")]
    Config { option: String, reason: String },
    /// `connection.url` does not parse.
    #[error("connection.url '{url}': {reason}")]
    Url { url: String, reason: String },
    /// Connecting to, or talking to, PostgreSQL failed (the server's own message included).
    #[error("PostgreSQL: {doing}: {message}")]
    Postgres { doing: String, message: String },
    /// A table named by the connector does not exist.
    #[error("table {table} does not exist in PostgreSQL")]
    MissingTable { table: String },
    /// A column's type is one the connector does not turn into JSON.
    #[error(
        "column {column} of {table} has type {type_name}, which the connector cannot map to JSON"
    )]
    Unmappable { table: String, column: String, type_name: String },
    /// A value PostgreSQL sent could not be read as its column's type.
    #[error("column {column}: value {value:?} is not a valid {type_name}")]
    BadValue { column: String, type_name: String, value: String },
    /// The replication stream broke the protocol (a short or unknown message).
    #[error("replication protocol: {0}")]
    Protocol(String),
    /// The replication slot the connector's stored position needs is gone.
    #[error(
        "replication slot {slot} does not exist (dropped?): the changes after LSN {lsn} are lost to it; drop and create the connector again to take a new snapshot"
    )]
    SlotMissing { slot: String, lsn: String },
    /// Reading or writing eddy's topics.
    #[error("eddy topic: {0}")]
    Log(#[from] LogError),
    /// Storing the connector's position.
    #[error("storing the position: {0}")]
    Position(String),
    /// A file sink's file.
    #[error("file {path}: {source}")]
    File { path: String, source: std::io::Error },
    /// The connector was stopped (drop, pause or broker shutdown) while it worked.
    #[error("stopped")]
    Stopped,
}

impl ConnectError {
    /// A PostgreSQL client error, with the server's message when it sent one.
    pub fn pg(doing: impl Into<String>, e: &tokio_postgres::Error) -> ConnectError {
        let message = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    text = format!("{text}: {s}");
                    source = s.source();
                }
                text
            }
        };
        ConnectError::Postgres { doing: doing.into(), message }
    }

    pub fn config(option: &str, reason: impl Into<String>) -> ConnectError {
        ConnectError::Config { option: option.to_string(), reason: reason.into() }
    }

    /// Whether retrying may help (a server down, a connection cut); errors of the definition
    /// itself (options, URL) never heal.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ConnectError::Config { .. } | ConnectError::Url { .. })
    }
}
