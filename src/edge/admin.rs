//! The operator API over the event log: list, show, replay (CONTRACT §6).
//! Off without `ADMIN_TOKEN`; every answer is JSON.

use super::consumer::{send_all, BATCH_BYTES, BATCH_COUNT};
use super::{eventlog, json_response, log, now_seconds, refuse, D1_DATABASE};
use crate::admin::{authorize, batches, AdminRoute, EventQuery, SqlValue};
use crate::config::Config;
use crate::delivery::Envelope;
use crate::destinations::Destination;
use crate::error::ApiError;
use crate::providers::Provider;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use worker::wasm_bindgen::JsValue;
use worker::{Env, Request, Response, Result};

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
        AdminRoute::ReplayEvent(id) => replay_one(&id, query, cfg, env).await,
        AdminRoute::BulkReplay => replay_many(query, cfg, env).await,
        AdminRoute::Destinations => destinations(cfg, env).await,
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
    let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    let mut deliveries = deliveries_of(&ids, env).await?;
    let events: Vec<Value> = page
        .iter()
        .map(|r| {
            let mut v = r.to_json();
            v["deliveries"] = Value::Array(deliveries.remove(&r.id).unwrap_or_default());
            v
        })
        .collect();
    Ok((200, json!({"total": total, "page": q.page, "limit": q.limit, "events": events})))
}

/// The delivery rows of the events `ids`, per event, in destination order.
async fn deliveries_of(ids: &[&str], env: &Env) -> std::result::Result<HashMap<String, Vec<Value>>, ApiError> {
    #[derive(Deserialize, Serialize)]
    struct Delivery {
        #[serde(skip_serializing)]
        event_id: String,
        destination: String,
        status: String,
        attempts: i64,
        last_status: Option<i64>,
        last_error: Option<String>,
        updated_at: i64,
    }
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    // One bound parameter for any number of ids (D1 binds at most 100).
    let list = serde_json::to_string(ids).unwrap_or_default();
    let sql = "SELECT event_id, destination, status, attempts, last_status, last_error, updated_at FROM deliveries \
               WHERE event_id IN (SELECT value FROM json_each(?1)) ORDER BY destination";
    let found: Vec<Delivery> = rows(env, sql.into(), &[JsValue::from_str(&list)]).await?;
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for d in found {
        let mut v = serde_json::to_value(&d).unwrap_or(Value::Null);
        v["updated_at"] = Value::String(crate::time::to_rfc3339(d.updated_at));
        out.entry(d.event_id).or_default().push(v);
    }
    Ok(out)
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
        destination: String,
        attempt: i64,
        at: i64,
        status_code: Option<i64>,
        duration_ms: Option<i64>,
        error: Option<String>,
    }
    let (row, envelope) = envelope_of(id, env).await?;
    let sql = "SELECT destination, attempt, at, status_code, duration_ms, error FROM delivery_attempts WHERE event_id = ?1 \
               ORDER BY at, destination, attempt";
    let attempts: Vec<Attempt> = rows(env, sql.into(), &[JsValue::from_str(id)]).await?;
    let mut body = row.to_json();
    body["deliveries"] = Value::Array(deliveries_of(&[id], env).await?.remove(id).unwrap_or_default());
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

/// Replays one event to `destination=` of the query, or to every destination whose filter takes it.
async fn replay_one(id: &str, query: &str, cfg: &Config, env: &Env) -> std::result::Result<(u16, Value), ApiError> {
    let q = EventQuery::parse(query)?;
    let (row, envelope) = envelope_of(id, env).await?;
    let env_json = envelope.ok_or_else(|| ApiError::BadRequest(format!("{id} has no stored payload to replay")))?;
    let envelope = serde_json::from_str::<Envelope>(&env_json)
        .map_err(|_| ApiError::BadRequest(format!("{id}'s stored payload cannot be read; it cannot be replayed")))?;
    let provider = Provider::from_route(&row.provider);
    let takes = |d: &Destination| provider.is_none_or(|p| d.filter.matches(p, &row.kind));
    let dests: Vec<&str> = match &q.destination {
        Some(name) => {
            let d = cfg.destination(name).ok_or_else(|| unknown_destination(name, cfg))?;
            if !takes(d) {
                return Err(ApiError::BadRequest(format!(
                    "destination {name:?}'s filter does not take {} events from {}; replay it to a destination that does",
                    row.kind, row.provider
                )));
            }
            vec![d.name.as_str()]
        }
        None => cfg.destinations.iter().filter(|d| takes(d)).map(|d| d.name.as_str()).collect(),
    };
    if dests.is_empty() {
        return Err(ApiError::BadRequest(format!("no destination's filter takes {} events from {}", row.kind, row.provider)));
    }
    let replays = envelope.for_replay().fan_out(&dests);
    enqueue_replays(env, replays).await?;
    Ok((202, json!({"status": "replayed", "ids": [id], "destinations": dests})))
}

fn unknown_destination(name: &str, cfg: &Config) -> ApiError {
    let known: Vec<&str> = cfg.destinations.iter().map(|d| d.name.as_str()).collect();
    ApiError::BadRequest(format!("there is no destination {name:?}; the destinations are {}", known.join(", ")))
}

/// Replays every delivery that matches the filters (a `status` is required),
/// each to its own destination, or only those of `destination=`.
async fn replay_many(query: &str, cfg: &Config, env: &Env) -> std::result::Result<(u16, Value), ApiError> {
    #[derive(Deserialize)]
    struct Row {
        destination: String,
        envelope: Option<String>,
    }
    let q = EventQuery::parse(query)?;
    if q.status.is_none() {
        return Err(ApiError::BadRequest("bulk replay needs a `status` filter, e.g. status=dead".into()));
    }
    if let Some(name) = &q.destination {
        cfg.destination(name).ok_or_else(|| unknown_destination(name, cfg))?;
    }
    // Only deliveries to destinations that still exist: the others have nowhere to go.
    let (mut filter, mut params) = q.delivery_where_clause();
    let names: Vec<&str> = cfg.destinations.iter().map(|d| d.name.as_str()).collect();
    params.push(SqlValue::Text(serde_json::to_string(&names).unwrap_or_default()));
    let configured = format!("d.destination IN (SELECT value FROM json_each(?{}))", params.len());
    filter = if filter.is_empty() { format!(" WHERE {configured}") } else { format!("{filter} AND {configured}") };
    let from = "FROM deliveries d JOIN events e ON e.id = d.event_id";
    let sql = format!("SELECT d.destination, e.envelope {from}{filter} ORDER BY e.received_at, e.id LIMIT ?{}", params.len() + 1);
    let found: Vec<Row> = rows(env, sql, &with_extra(&params, &[u64::from(q.limit)])).await?;
    let replays: Vec<Envelope> = found
        .iter()
        .filter_map(|r| {
            let e = serde_json::from_str::<Envelope>(r.envelope.as_deref()?).ok()?.for_replay();
            Some(Envelope { dest: Some(r.destination.clone()), dests: vec![r.destination.clone()], ..e })
        })
        .collect();
    let ids: Vec<&str> = replays.iter().map(|e| e.id.as_str()).collect();
    let replayed: Vec<Value> = replays.iter().map(|e| json!({"id": e.id, "destination": e.dest})).collect();
    let count = replays.len();
    let ids: Vec<String> = ids.into_iter().map(String::from).collect();
    enqueue_replays(env, replays).await?;
    // Replayed deliveries are `queued` now, so what still matches is what is left.
    let remaining: Option<i64> = env
        .d1(D1_DATABASE)
        .map_err(storage)?
        .prepare(format!("SELECT COUNT(*) AS total {from}{filter}"))
        .bind(&bind(&params))
        .map_err(storage)?
        .first(Some("total"))
        .await
        .map_err(storage)?;
    Ok((202, json!({"status": "replayed", "count": count, "ids": ids, "deliveries": replayed, "remaining": remaining.unwrap_or(0)})))
}

/// Sends each envelope (one event to one destination) again from its first
/// attempt, and marks its delivery queued.
async fn enqueue_replays(env: &Env, replays: Vec<Envelope>) -> std::result::Result<(), ApiError> {
    let unavailable = |e: worker::Error| {
        log(json!({"kind": "replay_failed", "error": e.to_string()}));
        ApiError::Unavailable("could not enqueue the replay; nothing was replayed, please retry".into())
    };
    let bodies: Vec<String> = replays.iter().map(Envelope::to_json).collect();
    let db = env.d1(D1_DATABASE).map_err(unavailable)?;
    for range in batches(&bodies.iter().map(String::len).collect::<Vec<_>>(), BATCH_COUNT, BATCH_BYTES) {
        let chunk = &replays[range.clone()];
        let sent_at = now_seconds();
        send_all(env, &bodies[range]).await.map_err(unavailable)?;
        // Marked after it is sent (a failed send leaves the rows as they were,
        // so the operator's retry finds them), unless the consumer has already
        // touched the row since: its status is then newer than `queued`.
        // `updated_at` moves, so the retention cron keeps a replayed event's payload.
        let mut marks = Vec::new();
        for e in chunk {
            let (id, dest, at) =
                (JsValue::from_str(&e.id), JsValue::from_str(e.dest.as_deref().unwrap_or_default()), JsValue::from_f64(sent_at as f64));
            marks.push(db.prepare(REPLAYED).bind(&[id.clone(), dest, at.clone()]).map_err(unavailable)?);
            marks.push(db.prepare(eventlog::SUMMARY).bind(&[id, at]).map_err(unavailable)?);
        }
        if let Err(e) = db.batch(marks).await {
            // The events are on the queue: the replay happened; only the log lags.
            log(json!({"kind": "event_log_failed", "stage": "replay", "error": e.to_string()}));
        }
        for e in chunk {
            log(json!({"kind": "replay", "id": e.id, "dest": e.dest}));
        }
    }
    Ok(())
}

/// A replayed delivery is queued again, unless the consumer touched it since it was sent.
const REPLAYED: &str = "INSERT INTO deliveries (event_id, destination, status, attempts, updated_at) VALUES (?1, ?2, 'queued', 0, ?3) \
     ON CONFLICT (event_id, destination) DO UPDATE SET status = 'queued', updated_at = ?3 WHERE deliveries.updated_at < ?3";

/// Each destination: its settings, its circuit and how many deliveries it has in each status.
async fn destinations(cfg: &Config, env: &Env) -> std::result::Result<(u16, Value), ApiError> {
    #[derive(Deserialize)]
    struct Count {
        destination: String,
        status: String,
        n: i64,
    }
    #[derive(Deserialize)]
    struct CircuitRow {
        destination: String,
        open: i64,
        failures: i64,
        opened_at: Option<i64>,
        probe_at: Option<i64>,
    }
    let counts: Vec<Count> =
        rows(env, "SELECT destination, status, COUNT(*) AS n FROM deliveries GROUP BY destination, status".into(), &[]).await?;
    let circuits: Vec<CircuitRow> = rows(env, "SELECT destination, open, failures, opened_at, probe_at FROM circuits".into(), &[]).await?;
    let list: Vec<Value> = cfg
        .destinations
        .iter()
        .map(|d| {
            let c = circuits.iter().find(|c| c.destination == d.name);
            let open = c.is_some_and(|c| c.open != 0);
            let deliveries: serde_json::Map<String, Value> =
                counts.iter().filter(|c| c.destination == d.name).map(|c| (c.status.clone(), json!(c.n))).collect();
            json!({
                "name": d.name,
                "url": d.display_url(),
                "problem": d.problem(),
                "filter": {
                    "providers": d.filter.providers.as_ref().map(|ps| ps.iter().map(|p| p.name()).collect::<Vec<_>>()),
                    "types": d.filter.types,
                },
                "timeout_seconds": d.timeout_seconds,
                "retry_schedule_seconds": d.retry_schedule,
                "circuit": {
                    "state": if open { "open" } else { "closed" },
                    "failures": c.map_or(0, |c| c.failures),
                    "opens_after": d.circuit.failures,
                    "probe_seconds": d.circuit.probe_seconds,
                    "opened_at": c.and_then(|c| c.opened_at).filter(|_| open).map(crate::time::to_rfc3339),
                    "next_probe": c.and_then(|c| c.probe_at).filter(|_| open).map(crate::time::to_rfc3339),
                },
                "deliveries": deliveries,
            })
        })
        .collect();
    Ok((200, json!({"destinations": list})))
}
