//! PostgreSQL: addresses (`url`), values as JSON (`value`), the query-mode source (`query`),
//! the CDC source (`wire` the replication connection, `pgoutput` its messages, `change` the
//! envelope, `cdc` the setup and snapshot, `stream` the change stream) and the upsert sink.

pub mod cdc;
pub mod change;
pub mod pgoutput;
pub mod query;
pub mod sink;
pub mod stream;
pub mod url;
pub mod value;
pub mod wire;
