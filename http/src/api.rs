//! The JSON admin API under `/api`, which the console reads. Every handler builds the native
//! admin request the CLI would send and hands it to `Broker::handle_as` as the request's
//! [`Caller`] — the same call the native listener makes — then renders the answer
//! (`crate::json`). Processors are read through
//! `Broker::observe_processors`, which is their status plus switch-overs and snapshot ages.
//!
//! Errors answer `{"error": {"code", "message"}}` with a status that fits the code (404 for an
//! unknown topic, group, processor or table; 400 for a bad request; 503 while opening or
//! shutting down).

// axum's handlers answer `Result<_, Response>`; a Response is 128 bytes and made once per
// request, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use eddy_broker::Broker;
use eddy_protocol::ErrorCode;
use eddy_protocol::v1::{self, query_table_request::Query as TableQuery, request, response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::auth::Caller;
use crate::json;

/// The API's routes, but `/api/sql/push` (`crate::push`, which builds on this module).
pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/topics", get(topics).post(create_topic))
        .route("/api/groups", get(groups))
        .route("/api/groups/{id}", get(group))
        .route("/api/processors", get(processors))
        .route("/api/table", get(table))
        .route("/api/sql", post(sql))
}

/// An answer or the error response for it.
pub type Answer = Result<Json<Value>, Response>;

pub fn failure(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "error": { "code": code, "message": message.into() } });
    (status, Json(body)).into_response()
}

/// The open broker, or 503.
pub fn broker(app: &App) -> Result<&Broker, Response> {
    app.broker().ok_or_else(|| {
        failure(StatusCode::SERVICE_UNAVAILABLE, "OPENING", "the broker is still opening")
    })
}

/// Runs one native request as `caller`, mapping a request-level error to its HTTP answer.
pub async fn call(
    broker: &Broker,
    caller: &Caller,
    body: request::Body,
) -> Result<response::Body, Response> {
    match broker.handle_as(&caller.0, body, Default::default()).await {
        Ok(Some(answer)) => Ok(answer),
        Ok(None) => Err(failure(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "no answer")),
        Err(e) => {
            let wire = e.to_wire();
            let status = match e.code() {
                ErrorCode::UnknownTopic
                | ErrorCode::UnknownPartition
                | ErrorCode::UnknownGroup
                | ErrorCode::UnknownProcessor
                | ErrorCode::UnknownTable => StatusCode::NOT_FOUND,
                ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unknown | ErrorCode::StorageError | ErrorCode::CorruptStorage => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => StatusCode::BAD_REQUEST,
            };
            Err((status, Json(json!({ "error": json::error(&wire) }))).into_response())
        }
    }
}

fn unexpected() -> Response {
    failure(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "unexpected answer from the broker")
}

async fn overview(State(app): State<App>) -> Answer {
    let not_ready = crate::app::not_ready(&app);
    let b = broker(&app)?;
    let config = b.config();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ready": not_ready.is_empty(),
        "not_ready": not_ready,
        "listen": config.listen.to_string(),
        "data_dir": config.data_dir.display().to_string(),
        "now_ms": eddy_broker::now_ms(),
    })))
}

async fn topics(State(app): State<App>, caller: Caller) -> Answer {
    let b = broker(&app)?;
    let ask = request::Body::Metadata(v1::MetadataRequest { topics: Vec::new() });
    let response::Body::Metadata(meta) = call(b, &caller, ask).await? else {
        return Err(unexpected());
    };
    let topics: Vec<Value> = meta
        .topics
        .iter()
        .map(|t| {
            let meter = b.topic(&t.name).ok().map(|topic| {
                let m = &topic.meter;
                let get =
                    |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
                json!({
                    "records_in": get(&m.records_in), "bytes_in": get(&m.bytes_in),
                    "records_out": get(&m.records_out), "bytes_out": get(&m.bytes_out),
                })
            });
            json!({
                "name": t.name,
                "internal": t.name.starts_with("__"),
                "partitions": t.partitions.iter().map(json::partition).collect::<Vec<_>>(),
                "end_offset": t.partitions.iter().map(|p| p.next_offset).sum::<u64>(),
                "size_bytes": t.partitions.iter().map(|p| p.size_bytes).sum::<u64>(),
                "traffic": meter,
            })
        })
        .collect();
    Ok(Json(json!({ "now_ms": eddy_broker::now_ms(), "topics": topics })))
}

#[derive(Debug, Deserialize)]
struct NewTopic {
    name: String,
    partitions: Option<u32>,
}

async fn create_topic(State(app): State<App>, caller: Caller, Json(t): Json<NewTopic>) -> Answer {
    let b = broker(&app)?;
    let config = v1::TopicConfig { partitions: t.partitions, ..Default::default() };
    let ask =
        request::Body::CreateTopic(v1::CreateTopicRequest { name: t.name, config: Some(config) });
    call(b, &caller, ask).await?;
    Ok(Json(json!({ "created": true })))
}

async fn groups(State(app): State<App>, caller: Caller) -> Answer {
    let b = broker(&app)?;
    let ask = request::Body::ListGroups(v1::ListGroupsRequest {});
    let response::Body::ListGroups(list) = call(b, &caller, ask).await? else {
        return Err(unexpected());
    };
    let groups: Vec<Value> = list.groups.iter().map(json::group_listing).collect();
    Ok(Json(json!({ "groups": groups })))
}

async fn group(State(app): State<App>, caller: Caller, Path(id): Path<String>) -> Answer {
    let b = broker(&app)?;
    let ask = request::Body::DescribeGroup(v1::DescribeGroupRequest { group_id: id });
    let response::Body::DescribeGroup(d) = call(b, &caller, ask).await? else {
        return Err(unexpected());
    };
    let mut out = json::group(&d);
    out["now_ms"] = json!(eddy_broker::now_ms());
    Ok(Json(out))
}

async fn processors(State(app): State<App>) -> Answer {
    let b = broker(&app)?;
    let list: Vec<Value> = b
        .observe_processors()
        .iter()
        .map(|o| {
            let mut p = json::processor(&o.info);
            p["switchovers"] = json!(o.switchovers);
            p["last_switch_ms"] = json!(o.last_switch_ms);
            p["snapshot_age_ms"] = json!(o.snapshot_age_ms);
            p
        })
        .collect();
    Ok(Json(json!({ "now_ms": eddy_broker::now_ms(), "processors": list })))
}

/// `?name=TABLE` and one of `key=K` (a text key), `prefix=P&limit=N`, `top=N&by=FIELD`;
/// `digest=1` adds the table's digest.
async fn table(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let b = broker(&app)?;
    let Some(name) = q.get("name").cloned() else {
        return Err(failure(StatusCode::BAD_REQUEST, "MALFORMED_REQUEST", "name= is required"));
    };
    let number = |k: &str| q.get(k).and_then(|v| v.parse::<u32>().ok());
    let query = if let Some(key) = q.get("key") {
        TableQuery::Get(Value::String(key.clone()).to_string())
    } else if let Some(n) = number("top") {
        TableQuery::Top(v1::TopQuery { n, by: q.get("by").cloned().unwrap_or_default() })
    } else {
        TableQuery::Scan(v1::ScanQuery {
            prefix: q.get("prefix").cloned().unwrap_or_default(),
            limit: number("limit").unwrap_or(100),
            ..Default::default()
        })
    };
    let digest = q.get("digest").is_some_and(|d| d == "1" || d == "true");
    let ask = request::Body::QueryTable(v1::QueryTableRequest {
        table: name,
        query: Some(query),
        digest,
    });
    let response::Body::QueryTable(r) = call(b, &caller, ask).await? else {
        return Err(unexpected());
    };
    Ok(Json(json::table(&r, digest)))
}

#[derive(Debug, Deserialize)]
struct Statement {
    sql: String,
}

/// Runs statements (not a push query: `GET /api/sql/push` streams those).
async fn sql(State(app): State<App>, caller: Caller, Json(s): Json<Statement>) -> Answer {
    let b = broker(&app)?;
    let ask = request::Body::Sql(v1::SqlRequest { sql: s.sql, from: Vec::new(), max_wait_ms: 0 });
    let response::Body::Sql(r) = call(b, &caller, ask).await? else { return Err(unexpected()) };
    let results: Vec<Value> = r.results.iter().map(json::sql_result).collect();
    Ok(Json(json!({ "results": results })))
}
