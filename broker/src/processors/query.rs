//! Pull queries against live tables: get by key, scan (optionally by text-key prefix, with a
//! limit), top-N by value or by a field of object values — always against the serving
//! version, so a rebuild in progress never shows a half-built table. Answers carry the version
//! and the input offsets the table reflected.
//!
//! Tables hold JSON keys and values; a get looks the key up in each task's partition of the
//! table (a key lives in one); scans and top-N read every partition under their read locks and
//! never block a task for longer than one copy. The registry lock is held only to find the
//! table: the scan and the ranking run without it.

use eddy_processor::TableReader;
use eddy_protocol::v1;
use serde_json::Value;

use super::Processors;
use crate::error::BrokerError;

impl Processors {
    /// Table `table` of the serving version of processor `name`, with that version.
    pub fn serving_table(
        &self,
        name: &str,
        table: &str,
    ) -> Result<(TableReader<Value, Value>, u32), BrokerError> {
        let entries = self.lock();
        let e = entries.get(name).ok_or_else(|| BrokerError::UnknownProcessor(name.into()))?;
        let running =
            e.serving.running.as_ref().ok_or_else(|| BrokerError::ProcessorNotRunning {
                name: name.to_string(),
                version: e.serving.def.version(),
                reason: e.serving.error.clone(),
            })?;
        let reader =
            running.table(table).map_err(|_| BrokerError::UnknownTable(table.to_string()))?;
        Ok((reader, e.serving.def.version()))
    }

    /// The processor a query of `table` ("table" or "processor/table") reads: the one named,
    /// or the one serving version that has such a table (`None`: none, or several).
    pub fn table_processor(&self, table: &str) -> Option<String> {
        if let Some((processor, _)) = table.split_once('/') {
            return Some(processor.to_string());
        }
        let entries = self.lock();
        let mut serving = entries.iter().filter(|(_, e)| {
            e.serving
                .running
                .as_ref()
                .is_some_and(|r| r.processor().tables().iter().any(|t| t == table))
        });
        match (serving.next(), serving.next()) {
            (Some((name, _)), None) => Some(name.clone()),
            _ => None,
        }
    }

    pub fn query(&self, r: &v1::QueryTableRequest) -> Result<v1::QueryTableResponse, BrokerError> {
        let entries = self.lock();
        let (processor_name, table) = match r.table.split_once('/') {
            Some((p, t)) => (Some(p), t),
            None => (None, r.table.as_str()),
        };
        let mut found = Vec::new();
        for (name, e) in entries.iter() {
            if processor_name.is_some_and(|p| p != name) {
                continue;
            }
            if let Some(running) = &e.serving.running
                && running.processor().tables().iter().any(|t| t == table)
            {
                found.push((name, e, running));
            }
        }
        let (name, entry, running) = match found.as_slice() {
            [one] => *one,
            [] => return Err(BrokerError::UnknownTable(r.table.clone())),
            many => {
                let candidates = many.iter().map(|(n, ..)| format!("{n}/{table}")).collect();
                return Err(BrokerError::AmbiguousTable { table: table.to_string(), candidates });
            }
        };
        let reader: TableReader<Value, Value> =
            running.table(table).map_err(|_| BrokerError::UnknownTable(r.table.clone()))?;
        // The positions first: the rows reflect at least these offsets.
        let positions: Vec<(String, u32, u64)> =
            running.status().values().flat_map(|s| s.inputs.iter().cloned()).collect();
        let (name, version) = (name.clone(), entry.serving.def.version());
        let changelog = running.processor().changelog_topic(table).unwrap_or_default();
        // The reader holds the table itself: the registry lock is not needed for the scan, and
        // a long scan must not hold up status calls, other queries or the switch-over.
        drop(entries);
        let inputs = positions
            .into_iter()
            .map(|(topic, partition, position)| v1::ProcessorInput {
                end_offset: self.topics.end_offset(&topic, partition).unwrap_or(position),
                topic,
                partition,
                position,
            })
            .collect();
        let query = r
            .query
            .as_ref()
            .ok_or(BrokerError::Malformed("a table query needs get, scan or top"))?;
        let rows = select(&reader, table, query)?;
        Ok(v1::QueryTableResponse {
            processor: name,
            version,
            rows: rows
                .into_iter()
                .map(|(k, v)| v1::TableRow { key: k.to_string(), value: v.to_string() })
                .collect(),
            inputs,
            digest: if r.digest { reader.digest() } else { 0 },
            changelog,
        })
    }
}

/// The rows of `reader` that `query` asks for: one key, a range or prefix scan, or the top N.
fn select(
    reader: &TableReader<Value, Value>,
    table: &str,
    query: &v1::query_table_request::Query,
) -> Result<Vec<(Value, Value)>, BrokerError> {
    Ok(match query {
        v1::query_table_request::Query::Get(key) => {
            let key: Value = serde_json::from_str(key)
                .map_err(|_| BrokerError::Malformed("the key of a get is not JSON"))?;
            match reader.get(&key) {
                Ok(Some(value)) => vec![(key, value)],
                Ok(None) => vec![],
                Err(source) => {
                    return Err(BrokerError::TableRead {
                        table: table.to_string(),
                        source: Box::new(source),
                    });
                }
            }
        }
        v1::query_table_request::Query::Scan(s) => {
            let limit = if s.limit == 0 { usize::MAX } else { s.limit as usize };
            reader
                .scan()
                .into_iter()
                .filter(|(k, _)| {
                    let text = k.as_str();
                    (s.prefix.is_empty() || text.is_some_and(|k| k.starts_with(&s.prefix)))
                        && (s.from.is_empty() || text.is_some_and(|k| k >= s.from.as_str()))
                        && (s.to.is_empty() || text.is_some_and(|k| k < s.to.as_str()))
                })
                .take(limit)
                .collect()
        }
        v1::query_table_request::Query::Top(t) => reader.top(&t.by, t.n as usize),
    })
}
