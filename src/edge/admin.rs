//! The operator API over the event log: list, show, replay (CONTRACT §6).
//! Off without `ADMIN_TOKEN`; every answer is JSON.

use super::{json_response, log, now_seconds, refuse, D1_DATABASE, QUEUE_EVENTS};
use crate::admin::{authorize, batches, AdminRoute, EventQuery, SqlValue};
use crate::config::Config;
use crate::delivery::Envelope;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::wasm_bindgen::JsValue;
use worker::{BatchMessageBuilder, Env, MessageBuilder, QueueContentType, Request, Response, Result};

/// Queues' `sendBatch` limits.
const BATCH_COUNT: usize = 100;
const BATCH_BYTES: usize = 250_000;

#[derive(Deserialize, Serialize)]
struct EventRow {
    id: String,
    provider: String,
    #[serde(rename = "type")]
    kind: String,
    received_at: i64,
    status: String,
    attempts: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    payload_ref: Option<String>,
    /// When the status last changed: for a dead event, when it died.
    updated_at: i64,
}

impl EventRow {
    fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        v["received_at"] = Value::String(crate::time::to_rfc3339(self.received_at));
        v["updated_at"] = Value::String(crate::time::to_rfc3339(self.updated_at));
        v
    }
}

const COLUMNS: &str = "id, provider, type, received_at, status, attempts, last_status, last_error, payload_ref, updated_at";

pub async fn handle(route: AdminRoute, req: &Request, cfg: &Config, env: &Env) -> Result<Response> {
    let auth = req.headers().get("authorization").ok().flatten();
    if let Err(e) = authorize(&cfg.admin_tokens, auth.as_deref()) {
        return refuse(&e);
    }
    let url = req.inner().url();
    let query = crate::admin::query_of(&url);
    let result = match route {
        AdminRoute::ListEvents => list(query, env).await,
        AdminRoute::GetEvent(id) => show(&id, env).await,
        AdminRoute::ReplayEvent(id) => replay_one(&id, env).await,
        AdminRoute::BulkReplay => replay_many(query, env).await,
    };
    match result {
        Ok((status, body)) => json_response(status, &body),
        Err(e) => refuse(&e),
    }
}

fn storage(e: worker::Error) -> ApiError {
    log(json!({"kind": "admin_storage_failed", "error": e.to_string()}));
    ApiError::Unavailable("the event log (D1) could not be read; check the DB binding and that migrations/ were applied".into())
}

/// Every row of `sql` with `params` bound.
async fn rows<T: serde::de::DeserializeOwned>(env: &Env, sql: String, params: &[JsValue]) -> std::result::Result<Vec<T>, ApiError> {
    env.d1(D1_DATABASE)
        .map_err(storage)?
        .prepare(sql)
        .bind(params)
        .map_err(storage)?
        .all()
        .await
        .map_err(storage)?
        .results()
        .map_err(storage)
}

/// How many events match `filter` (a `WHERE` clause and its parameters).
async fn count(env: &Env, filter: &str, params: &[SqlValue]) -> std::result::Result<i64, ApiError> {
    let total: Option<i64> = env
        .d1(D1_DATABASE)
        .map_err(storage)?
        .prepare(format!("SELECT COUNT(*) AS total FROM events{filter}"))
        .bind(&bind(params))
        .map_err(storage)?
        .first(Some("total"))
        .await
        .map_err(storage)?;
    Ok(total.unwrap_or(0))
}

/// The filter's parameters, then `extra` (LIMIT, OFFSET), as bound values.
fn with_extra(params: &[SqlValue], extra: &[u64]) -> Vec<JsValue> {
    let mut all = bind(params);
    all.extend(extra.iter().map(|n| JsValue::from_f64(*n as f64)));
    all
}

fn bind(params: &[SqlValue]) -> Vec<JsValue> {
    params
        .iter()
        .map(|p| match p {
            SqlValue::Text(s) => JsValue::from_str(s),
            SqlValue::Int(n) => JsValue::from_f64(*n as f64),
        })
        .collect()
}

async fn list(query: &str, env: &Env) -> std::result::Result<(u16, Value), ApiError> {
    let q = EventQuery::parse(query)?;
    let (filter, params) = q.where_clause();
    let n = params.len();
    let sql = format!("SELECT {COLUMNS} FROM events{filter} ORDER BY received_at DESC, id LIMIT ?{} OFFSET ?{}", n + 1, n + 2);
    let page: Vec<EventRow> = rows(env, sql, &with_extra(&params, &[u64::from(q.limit), q.offset()])).await?;
    let total = count(env, &filter, &params).await?;
    Ok((200, json!({"total": total, "page": q.page, "limit": q.limit, "events": page.iter().map(EventRow::to_json).collect::<Vec<_>>()})))
}

async fn envelope_of(id: &str, env: &Env) -> std::result::Result<(EventRow, Option<String>), ApiError> {
    #[derive(Deserialize)]
    struct Full {
        #[serde(flatten)]
        row: EventRow,
        envelope: Option<String>,
    }
    let found: Vec<Full> = rows(env, format!("SELECT {COLUMNS}, envelope FROM events WHERE id = ?1"), &[JsValue::from_str(id)]).await?;
    let row = found.into_iter().next().ok_or(ApiError::NotFound)?;
    Ok((row.row, row.envelope))
}

async fn show(id: &str, env: &Env) -> std::result::Result<(u16, Value), ApiError> {
    #[derive(Deserialize, Serialize)]
    struct Attempt {
        attempt: i64,
        at: i64,
        status_code: Option<i64>,
        duration_ms: Option<i64>,
        error: Option<String>,
    }
    let (row, envelope) = envelope_of(id, env).await?;
    let sql = "SELECT attempt, at, status_code, duration_ms, error FROM delivery_attempts WHERE event_id = ?1 ORDER BY at, attempt";
    let attempts: Vec<Attempt> = rows(env, sql.into(), &[JsValue::from_str(id)]).await?;
    let mut body = row.to_json();
    body["delivery_attempts"] = attempts
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
            v["at"] = Value::String(crate::time::to_rfc3339(a.at));
            v
        })
        .collect();
    // The canonical event itself, when it travelled inline.
    body["event"] = envelope
        .and_then(|e| serde_json::from_str::<Envelope>(&e).ok())
        .and_then(|e| e.event)
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or(Value::Null);
    Ok((200, body))
}

async fn replay_one(id: &str, env: &Env) -> std::result::Result<(u16, Value), ApiError> {
    let (_, envelope) = envelope_of(id, env).await?;
    let env_json = envelope.ok_or_else(|| ApiError::BadRequest(format!("{id} has no stored payload to replay")))?;
    enqueue_replays(env, vec![env_json]).await?;
    Ok((202, json!({"status": "replayed", "ids": [id]})))
}

async fn replay_many(query: &str, env: &Env) -> std::result::Result<(u16, Value), ApiError> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
        envelope: Option<String>,
    }
    let q = EventQuery::parse(query)?;
    if q.status.is_none() {
        return Err(ApiError::BadRequest("bulk replay needs a `status` filter, e.g. status=dead".into()));
    }
    let (filter, params) = q.where_clause();
    let sql = format!("SELECT id, envelope FROM events{filter} ORDER BY received_at LIMIT ?{}", params.len() + 1);
    let found: Vec<Row> = rows(env, sql, &with_extra(&params, &[u64::from(q.limit)])).await?;
    let (ids, envelopes): (Vec<String>, Vec<String>) = found.into_iter().filter_map(|r| Some((r.id, r.envelope?))).unzip();
    enqueue_replays(env, envelopes).await?;
    // Replayed rows are `queued` now, so what still matches is what is left.
    let remaining = count(env, &filter, &params).await?;
    Ok((202, json!({"status": "replayed", "count": ids.len(), "ids": ids, "remaining": remaining})))
}

/// Sends each stored envelope again from its first attempt, and marks the rows queued.
async fn enqueue_replays(env: &Env, envelopes: Vec<String>) -> std::result::Result<(), ApiError> {
    let unavailable = |e: worker::Error| {
        log(json!({"kind": "replay_failed", "error": e.to_string()}));
        ApiError::Unavailable("could not enqueue the replay; nothing was replayed, please retry".into())
    };
    let fresh: Vec<Envelope> =
        envelopes.iter().filter_map(|e| serde_json::from_str::<Envelope>(e).ok()).map(Envelope::for_replay).collect();
    let bodies: Vec<String> = fresh.iter().map(Envelope::to_json).collect();
    let queue = env.queue(QUEUE_EVENTS).map_err(unavailable)?;
    let db = env.d1(D1_DATABASE).map_err(unavailable)?;
    for range in batches(&bodies.iter().map(String::len).collect::<Vec<_>>(), BATCH_COUNT, BATCH_BYTES) {
        let mut batch = BatchMessageBuilder::<String>::new();
        for body in &bodies[range.clone()] {
            batch = batch.message(MessageBuilder::new(body.clone()).content_type(QueueContentType::Text).build());
        }
        let chunk = &fresh[range];
        let sent_at = now_seconds();
        queue.send_batch(batch.build()).await.map_err(unavailable)?;
        // Marked after it is sent (a failed send leaves the rows as they were,
        // so the operator's retry finds them), unless the consumer has already
        // touched the row since: its status is then newer than `queued`.
        // `updated_at` moves, so the retention cron keeps a replayed event's payload.
        let marks = chunk
            .iter()
            .map(|e| {
                db.prepare("UPDATE events SET status = 'queued', updated_at = ?2 WHERE id = ?1 AND updated_at < ?2")
                    .bind(&[JsValue::from_str(&e.id), JsValue::from_f64(sent_at as f64)])
            })
            .collect::<Result<Vec<_>>>()
            .map_err(unavailable)?;
        if let Err(e) = db.batch(marks).await {
            // The events are on the queue: the replay happened; only the log lags.
            log(json!({"kind": "event_log_failed", "stage": "replay", "error": e.to_string()}));
        }
        for e in chunk {
            log(json!({"kind": "replay", "id": e.id}));
        }
    }
    Ok(())
}
