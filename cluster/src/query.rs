//! Pull queries on an instance, over eddy's native protocol: the same `QueryTable` request
//! `eddy query` sends to a broker (`protocol/proto/eddy.proto`), so
//! `eddy --broker INSTANCE_ADDR query TABLE KEY` works against an instance.
//!
//! Answers:
//! - `ApiVersions` (the client's handshake) and `QueryTable`; any other request is refused
//!   (`MALFORMED_REQUEST`, naming what an instance serves).
//! - A get is answered from the tables of the partitions running here when the key is there;
//!   otherwise it is forwarded once to the owner (from the group's description) of each
//!   partition the key may live in that is not here, and the first answer holding it is
//!   relayed. A forwarded request (the top bit of its correlation id set, the partition it
//!   asks about in the low bits) is never forwarded again, and is answered only when that
//!   partition is ready here (running, its tasks restored): an owner that lost the partition
//!   in a rebalance, or has not restored it yet, answers `NOT_ASSIGNED` rather than an empty
//!   row. Likewise a key whose partition has no owner (the group is rebalancing) or is still
//!   being restored here is answered `NOT_ASSIGNED` naming the partition — ask again.
//! - Scans and top-N read the partitions running here only (the union over the instances is
//!   the table); the answer's `inputs` say which.
//! - Versions (`switch.rs`): only the serving version answers from its tables. An instance of
//!   another version forwards a get to the owner of the key's partition in the serving
//!   version's group (a candidate, or a retired version); while a version switches in, an
//!   instance of either version waits for the switch (up to [`SWITCH_WAIT`]) rather than
//!   answer — so a client never sees the old version after the new one, nor an empty answer
//!   for a key that exists. A scan or top-N asked of a version that does not serve is refused
//!   (`NOT_ASSIGNED`, naming the serving version).
//!
//! Each connection is served on a thread of its own, requests answered in order; the listener
//! runs until the process exits.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use eddy_processor::TableReader;
use eddy_protocol::frame::{FrameDecoder, encode_frame};
use eddy_protocol::{PROTOCOL_VERSION, v1};
use serde_json::Value;

use crate::instance::Instance;
use crate::switch::Role;

/// Largest request frame accepted.
const MAX_FRAME_BYTES: u32 = 1 << 20;
/// Marks a request one instance forwarded to another; the low 32 bits name the partition the
/// forward asks about.
const FORWARDED: u64 = 1 << 63;
/// A connection silent this long is closed; a forward waits this long for its answer.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a query waits for a switch of versions before it is answered `NOT_ASSIGNED`.
pub const SWITCH_WAIT: Duration = Duration::from_secs(20);

/// Serves pull queries for `instances` (the processors running in this process, each one
/// instance of its group) on `listener`, on a thread of its own. A request names its table as
/// `PROCESSOR/TABLE` or `TABLE`; it goes to the instance whose processor has that table.
pub fn serve(instances: Vec<Arc<Instance>>, listener: TcpListener) -> std::io::Result<()> {
    let instances: Arc<[Arc<Instance>]> = instances.into();
    std::thread::Builder::new().name("eddy-queries".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let instances = instances.clone();
            let spawned = std::thread::Builder::new()
                .name("eddy-query".into())
                .spawn(move || serve_connection(&instances, stream));
            if let Err(error) = spawned {
                tracing::warn!(%error, "cannot serve a query connection");
            }
        }
    })?;
    Ok(())
}

fn serve_connection(instances: &[Arc<Instance>], mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let decoder = FrameDecoder::new(MAX_FRAME_BYTES);
    let mut buf = BytesMut::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        match decoder.next_message::<v1::Request>(&mut buf) {
            Ok(Some(request)) => {
                let response = answer(instances, request);
                let mut out = BytesMut::new();
                encode_frame(&response, &mut out);
                if stream.write_all(&out).is_err() {
                    return;
                }
            }
            Ok(None) => match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            Err(error) => {
                tracing::debug!(%error, "closing a query connection");
                return;
            }
        }
    }
}

fn failure(correlation_id: u64, code: v1::ErrorCode, message: String) -> v1::Response {
    v1::Response { correlation_id, error: Some(v1::Error::new(code, message)), body: None }
}

/// The instance whose processor has the table `name` (`PROCESSOR/TABLE` or `TABLE`).
fn pick<'a>(instances: &'a [Arc<Instance>], name: &str) -> Result<&'a Instance, String> {
    let (processor, table) = match name.split_once('/') {
        Some((p, t)) => (Some(p), t),
        None => (None, name),
    };
    let found: Vec<&Instance> = instances
        .iter()
        .map(|i| &**i)
        .filter(|i| processor.is_none_or(|p| p == i.processor().name()))
        .filter(|i| i.processor().tables().iter().any(|t| t == table))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("no table {name:?} here")),
        many => {
            let names: Vec<String> =
                many.iter().map(|i| format!("{}/{table}", i.processor().name())).collect();
            Err(format!("table {table:?} is ambiguous: ask for one of {}", names.join(", ")))
        }
    }
}

fn answer(instances: &[Arc<Instance>], request: v1::Request) -> v1::Response {
    use v1::request::Body;
    let id = request.correlation_id;
    let body = match request.body {
        Some(Body::ApiVersions(_)) => v1::response::Body::ApiVersions(v1::ApiVersionsResponse {
            version: PROTOCOL_VERSION,
            broker_version: env!("CARGO_PKG_VERSION").to_owned(),
            limits: Some(v1::Limits {
                max_frame_bytes: MAX_FRAME_BYTES,
                max_batch_bytes: 0,
                max_in_flight: 1,
                idle_timeout_ms: IO_TIMEOUT.as_millis() as u32,
            }),
        }),
        Some(Body::QueryTable(q)) => {
            return match pick(instances, &q.table) {
                Ok(instance) => route(instance, id, q),
                Err(message) => failure(id, v1::ErrorCode::UnknownTable, message),
            };
        }
        _ => {
            let message = "an eddy processor instance answers only ApiVersions and QueryTable";
            return failure(id, v1::ErrorCode::MalformedRequest, message.into());
        }
    };
    v1::Response { correlation_id: id, error: None, body: Some(body) }
}

/// The task partitions a key not found here may live in: the partition of its JSON bytes (a
/// table fed through a repartition topic, whose keys are JSON) and, for a text key, of its
/// UTF-8 (a table keyed by its source records' keys, partitioned as producers do).
fn candidates(instance: &Instance, key: &Value) -> Vec<u32> {
    let mut out = vec![instance.partition_of(key.to_string().as_bytes())];
    if let Value::String(s) = key {
        out.push(instance.partition_of(s.as_bytes()));
    }
    out.dedup();
    out
}

/// Answers `q` as this instance's role says: from the tables here when its version serves,
/// else through the serving version's instances, waiting out a switch.
fn route(instance: &Instance, id: u64, q: v1::QueryTableRequest) -> v1::Response {
    use v1::query_table_request::Query;
    let deadline = std::time::Instant::now() + SWITCH_WAIT;
    let version = instance.processor().version();
    loop {
        let serving = instance.serving_version();
        let role = instance.role();
        let switching_in = role == Role::Candidate && instance.switching_version() == Some(version);
        match role {
            Role::Serving => {
                let answer = query(instance, id, q.clone());
                // A key's owner that no longer serves (a switch began) or none at all (a
                // rebalance): ask again below, unless this is itself a forward.
                if id & FORWARDED != 0 || !not_assigned(&answer) {
                    return answer;
                }
            }
            Role::Candidate | Role::Retired if id & FORWARDED == 0 && !switching_in => {
                let (Some(serving), Some(Query::Get(text))) = (serving, &q.query) else {
                    let message = format!(
                        "version {version} does not serve (version {serving:?} does): ask one of \
                         its instances"
                    );
                    return failure(id, v1::ErrorCode::NotAssigned, message);
                };
                if let Some(answer) = in_version(instance, serving, id, text, &q) {
                    return answer;
                }
            }
            // A forward reaches only the serving version: anything else is asked again.
            _ if id & FORWARDED != 0 => {
                let message = format!("version {version} does not serve now; ask again");
                return failure(id, v1::ErrorCode::NotAssigned, message);
            }
            _ => {}
        }
        if std::time::Instant::now() >= deadline {
            let message = "the processor is switching versions; ask again".to_owned();
            return failure(id, v1::ErrorCode::NotAssigned, message);
        }
        instance.wait_for_registry(Duration::from_millis(20));
    }
}

/// Whether `response` is a `NOT_ASSIGNED` refusal.
fn not_assigned(response: &v1::Response) -> bool {
    response.error.as_ref().is_some_and(|e| e.code == v1::ErrorCode::NotAssigned as i32)
}

/// A get asked of the serving version `serving`'s owners of the key's partitions. `None`: no
/// owner could answer now (rebalancing, or it does not serve yet in its own view): ask again.
fn in_version(
    instance: &Instance,
    serving: u32,
    id: u64,
    text: &str,
    q: &v1::QueryTableRequest,
) -> Option<v1::Response> {
    let Ok(key) = serde_json::from_str::<Value>(text) else {
        return Some(failure(id, v1::ErrorCode::Unknown, format!("key {text:?} is not JSON")));
    };
    let mut empty = None;
    for partition in candidates(instance, &key) {
        let owner = match instance.owner_in_version(serving, partition) {
            Ok(Some(addr)) => addr,
            Ok(None) => return None,
            Err(e) => {
                let message = format!("finding the owner of partition {partition}: {e}");
                return Some(failure(id, v1::ErrorCode::Unknown, message));
            }
        };
        match forward(&owner, partition, q.clone()) {
            Ok(mut response) => {
                if not_assigned(&response) {
                    return None;
                }
                response.correlation_id = id;
                let found = matches!(&response.body,
                    Some(v1::response::Body::QueryTable(a)) if !a.rows.is_empty());
                if found || response.error.is_some() {
                    return Some(response);
                }
                empty = Some(response);
            }
            Err(e) => {
                tracing::debug!(%owner, error = %e, "forwarding to the serving version");
                return None;
            }
        }
    }
    empty
}

fn query(instance: &Instance, id: u64, q: v1::QueryTableRequest) -> v1::Response {
    use v1::query_table_request::Query;
    let processor = instance.processor();
    let table = match q.table.split_once('/') {
        Some((p, t)) if p == processor.name() => t,
        Some(_) => {
            return failure(
                id,
                v1::ErrorCode::UnknownTable,
                format!("no table {:?} here", q.table),
            );
        }
        None => q.table.as_str(),
    };
    if !processor.tables().iter().any(|t| t == table) {
        return failure(id, v1::ErrorCode::UnknownTable, format!("no table {table:?} here"));
    }
    let Some(query) = q.query.clone() else {
        return failure(
            id,
            v1::ErrorCode::MalformedRequest,
            "a table query needs get, scan or top".into(),
        );
    };
    if id & FORWARDED != 0
        && let Some(refusal) = unready(instance, id)
    {
        return refusal;
    }
    // `None`: no partition of the table runs here (a get is still forwarded to its owner).
    let reader = instance.registry().reader::<Value, Value>(table).ok();
    let rows = match reader.as_ref().map(|r| select(r, &query)) {
        Some(Ok(rows)) => rows,
        Some(Err(message)) => return failure(id, v1::ErrorCode::Unknown, message),
        None => Vec::new(),
    };
    if let (Query::Get(text), true) = (&query, rows.is_empty())
        && let Some(answer) = elsewhere(instance, id, text, &q)
    {
        return answer;
    }
    let inputs = instance
        .reports()
        .values()
        .flat_map(|r| r.inputs.iter().cloned())
        .map(|(topic, partition, position)| v1::ProcessorInput {
            topic,
            partition,
            position,
            end_offset: 0,
        })
        .collect();
    let answer = v1::QueryTableResponse {
        processor: processor.name().to_owned(),
        version: processor.version(),
        rows: rows
            .into_iter()
            .map(|(k, v)| v1::TableRow { key: k.to_string(), value: v.to_string() })
            .collect(),
        inputs,
        digest: match (&reader, q.digest) {
            (Some(reader), true) => reader.digest(),
            _ => 0,
        },
        changelog: processor.changelog_topic(table).unwrap_or_default(),
    };
    v1::Response {
        correlation_id: id,
        error: None,
        body: Some(v1::response::Body::QueryTable(answer)),
    }
}

/// For a forwarded request: `NOT_ASSIGNED` unless the partition it asks about is ready here.
fn unready(instance: &Instance, id: u64) -> Option<v1::Response> {
    let partition = (id & u64::from(u32::MAX)) as u32;
    if instance.ready_partitions().contains(&partition) {
        return None;
    }
    let message = format!(
        "partition {partition} is not served by this instance now (moved, or being restored); \
         ask again"
    );
    Some(failure(id, v1::ErrorCode::NotAssigned, message))
}

/// A get not found here: asked once of the owner of each partition the key may live in
/// (`candidates`) that does not run here. `None`: no owner has it either (the empty local
/// answer stands).
fn elsewhere(
    instance: &Instance,
    id: u64,
    text: &str,
    q: &v1::QueryTableRequest,
) -> Option<v1::Response> {
    if id & FORWARDED != 0 {
        return None;
    }
    let key = serde_json::from_str::<Value>(text).ok()?;
    let (running, ready) = (instance.partitions(), instance.ready_partitions());
    let mut unowned = None;
    for partition in candidates(instance, &key).into_iter().filter(|p| !ready.contains(p)) {
        if running.contains(&partition) {
            // Assigned here, still being restored: its rows are not all here yet.
            unowned = Some(partition);
            continue;
        }
        let owner = match instance.owner_of(partition) {
            Ok(Some(addr)) => addr,
            Ok(None) => {
                unowned = Some(partition);
                continue;
            }
            Err(e) => {
                let message = format!("finding the owner of partition {partition}: {e}");
                return Some(failure(id, v1::ErrorCode::Unknown, message));
            }
        };
        match forward(&owner, partition, q.clone()) {
            Ok(mut response) => {
                let found = matches!(&response.body,
                    Some(v1::response::Body::QueryTable(a)) if !a.rows.is_empty());
                if found || response.error.is_some() {
                    response.correlation_id = id;
                    return Some(response);
                }
            }
            Err(e) => {
                let message = format!("forwarding to {owner}: {e}");
                return Some(failure(id, v1::ErrorCode::Unknown, message));
            }
        }
    }
    let partition = unowned?;
    let message = format!(
        "the key's partition {partition} has no ready owner now (the group is rebalancing or \
         the partition is being restored); ask again"
    );
    Some(failure(id, v1::ErrorCode::NotAssigned, message))
}

/// Sends `q` to the instance at `addr` marked as forwarded for `partition`, and reads its
/// answer.
fn forward(addr: &str, partition: u32, q: v1::QueryTableRequest) -> std::io::Result<v1::Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let request = v1::Request {
        correlation_id: FORWARDED | u64::from(partition),
        body: Some(v1::request::Body::QueryTable(q)),
    };
    let mut out = BytesMut::new();
    encode_frame(&request, &mut out);
    stream.write_all(&out)?;
    let decoder = FrameDecoder::new(u32::MAX);
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(response) =
            decoder.next_message::<v1::Response>(&mut buf).map_err(std::io::Error::other)?
        {
            return Ok(response);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The rows `query` asks for, from the partitions running here (as the broker's
/// `processors/query.rs` selects them).
fn select(
    reader: &TableReader<Value, Value>,
    query: &v1::query_table_request::Query,
) -> Result<Vec<(Value, Value)>, String> {
    use v1::query_table_request::Query;
    Ok(match query {
        Query::Get(key) => {
            let key: Value = serde_json::from_str(key).map_err(|e| format!("key: {e}"))?;
            match reader.get(&key) {
                Ok(Some(value)) => vec![(key, value)],
                Ok(None) => vec![],
                Err(e) => return Err(format!("reading the table: {e}")),
            }
        }
        Query::Scan(s) => {
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
        Query::Top(t) => reader.top(&t.by, t.n as usize),
    })
}
