//! `GET /api/sql/push?sql=SELECT ... EMIT CHANGES`: a push query as server-sent events. A task
//! polls the query the way `eddy sql` does (`SqlRequest` with the previous answer's positions,
//! waiting up to a second for changes) and sends each row as one `row` event (a JSON array in
//! column order); the first event, `columns`, names them. A failed statement is one `error`
//! event, then the stream ends.
//!
//! Bounds: the task stops when the client goes (its channel closes), when the broker stops, or
//! at the listener's connection lifetime; a client that does not read fills the channel
//! (64 events) and the task waits, holding nothing else.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use eddy_broker::Broker;
use eddy_protocol::v1::{self, request, response, sql_result::Result as SqlOutcome};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::api::{broker, failure};
use crate::app::App;
use crate::auth::Caller;

#[derive(Debug, Deserialize)]
pub struct PushQuery {
    sql: String,
}

/// The events of one push query, as a stream for axum's SSE body.
#[derive(Debug)]
struct Events(mpsc::Receiver<Event>);

impl futures_core::Stream for Events {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|e| e.map(Ok))
    }
}

pub async fn push(State(app): State<App>, caller: Caller, Query(q): Query<PushQuery>) -> Response {
    let b = match broker(&app) {
        Ok(b) => b.clone(),
        Err(e) => return e,
    };
    if q.sql.trim().is_empty() {
        return failure(
            axum::http::StatusCode::BAD_REQUEST,
            "MALFORMED_REQUEST",
            "sql= is required",
        );
    }
    let (tx, rx) = mpsc::channel(64);
    let lifetime = app.limits().max_connection_lifetime;
    tokio::spawn(async move {
        let _ = tokio::time::timeout(lifetime, follow(b, caller, q.sql, tx)).await;
    });
    Sse::new(Events(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

/// Polls the push query until the client or the broker goes.
async fn follow(broker: Broker, caller: Caller, sql: String, tx: mpsc::Sender<Event>) {
    let mut from = Vec::new();
    let mut columns_sent = false;
    loop {
        if tx.is_closed() || broker.is_shutting_down() {
            return;
        }
        let ask = request::Body::Sql(v1::SqlRequest {
            sql: sql.clone(),
            from: from.clone(),
            max_wait_ms: 1000,
        });
        let result = match broker.handle_as(&caller.0, ask, Default::default()).await {
            Ok(Some(response::Body::Sql(r))) => r.results.into_iter().next().and_then(|r| r.result),
            Ok(_) => None,
            Err(e) => {
                let _ = tx.send(error_event(&e.to_string())).await;
                return;
            }
        };
        match result {
            Some(SqlOutcome::Push(p)) => {
                if !columns_sent {
                    let columns = json!(p.columns).to_string();
                    if tx.send(Event::default().event("columns").data(columns)).await.is_err() {
                        return;
                    }
                    columns_sent = true;
                }
                for row in p.rows {
                    if tx.send(Event::default().event("row").data(row)).await.is_err() {
                        return;
                    }
                }
                from = p.next;
            }
            Some(SqlOutcome::Error(e)) => {
                let _ = tx.send(error_event(&e.message)).await;
                return;
            }
            _ => {
                let _ = tx.send(error_event("not a push query (SELECT ... EMIT CHANGES)")).await;
                return;
            }
        }
    }
}

fn error_event(message: &str) -> Event {
    Event::default().event("error").data(json!({ "message": message }).to_string())
}
