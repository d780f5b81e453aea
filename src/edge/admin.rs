//! The operator API over the event log: list, show, replay (CONTRACT §6).
//! Off without `ADMIN_TOKEN`; every answer is JSON.

use super::consumer::send_all;
use super::{eventlog, json_response, log, now_seconds, refuse, D1_DATABASE};
use crate::admin::{filter_rules, AdminRoute, EventQuery, SqlValue};
use crate::config::Config;
use crate::delivery::Envelope;
use crate::error::ApiError;
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
    let cookies = req.headers().get("cookie").ok().flatten();
    let console_header = req.headers().get(crate::console::HEADER).ok().flatten().is_some();
    if let Err(e) = crate::console::authorize(&cfg.admin_tokens, auth.as_deref(), cookies.as_deref(), console_header, now_seconds()) {
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
        AdminRoute::Stats => stats(cfg, env).await,
    };
    let mut resp = match result {
        Ok((status, body)) => json_response(status, &body)?,
        Err(e) => refuse(&e)?,
    };
    // Event data, for whoever holds the token: never kept by a cache, never sniffed as anything else.
    resp.headers_mut().set("Cache-Control", "no-store")?;
    resp.headers_mut().set("X-Content-Type-Options", "nosniff")?;
    Ok(resp)
}

fn storage(e: worker::Error) -> ApiError {
    log(json!({"kind": "admin_storage_failed", "error": e.to_string()}));
    ApiError::Unavailable("the event log (D1) could not be read; check the DB binding and that migrations/ were applied".into())
}

/// Every row of `sql` with `params` bound.
async fn rows<T: serde::de::DeserializeOwned>(env: &Env, sql: String, params: &[JsValue]) -> std::result::Result<Vec<T>, ApiError> {
    let result = env.d1(D1_DATABASE).map_err(storage)?.prepare(sql).bind(params).map_err(storage)?.all().await.map_err(storage)?;
    // The rows D1 read for it go into the request's `ops` (what the admin API costs).
    super::ops::d1(std::slice::from_ref(&result));
    result.results().map_err(storage)
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
    #[derive(Deserialize)]
    struct Delivery {
        destination: String,
        status: String,
    }
    let q = EventQuery::parse(query)?;
    let (row, envelope) = envelope_of(id, env).await?;
    let env_json = envelope.ok_or_else(|| ApiError::BadRequest(format!("{id} has no stored payload to replay")))?;
    let envelope = serde_json::from_str::<Envelope>(&env_json)
        .map_err(|_| ApiError::BadRequest(format!("{id}'s stored payload cannot be read; it cannot be replayed")))?;
    let dests: Vec<&str> = match &q.destination {
        Some(name) => {
            let d = cfg.destination(name).ok_or_else(|| unknown_destination(name, cfg))?;
            if !d.takes(&row.provider, &row.kind) {
                return Err(ApiError::BadRequest(format!(
                    "destination {name:?}'s filter does not take {} events from {}; replay it to a destination that does",
                    row.kind, row.provider
                )));
            }
            vec![d.name.as_str()]
        }
        None => cfg.takers(&row.provider, &row.kind),
    };
    if dests.is_empty() {
        return Err(ApiError::BadRequest(format!("no destination's filter takes {} events from {}", row.kind, row.provider)));
    }
    let before: Vec<Delivery> =
        rows(env, "SELECT destination, status FROM deliveries WHERE event_id = ?1".into(), &[JsValue::from_str(id)]).await?;
    let replays = envelope
        .for_replay()
        .fan_out(&dests)
        .into_iter()
        .map(|e| {
            let was = before.iter().find(|d| Some(d.destination.as_str()) == e.dest.as_deref()).map(|d| d.status.clone());
            (e, was)
        })
        .collect();
    enqueue_replays(env, replays).await?;
    Ok((202, json!({"status": "replayed", "ids": [id], "destinations": dests})))
}

fn unknown_destination(name: &str, cfg: &Config) -> ApiError {
    let known: Vec<&str> = cfg.destinations.iter().map(|d| d.name.as_str()).collect();
    ApiError::BadRequest(format!("there is no destination {name:?}; the destinations are {}", known.join(", ")))
}

/// Replays every delivery that matches the filters (`status=dead` or
/// `delivered`: a queued, held or retrying one is still on the queue, and a
/// replay would send it twice), each to its own destination, or only those of
/// `destination=`. Only deliveries that a configured destination's filter
/// still takes are picked; the others are counted in `skipped`. `before=`
/// (this Worker's clock; the answer says which it used, and the CLI passes it
/// back) leaves out deliveries that changed since, so replays that fail again
/// are not picked again and a loop over pages ends.
async fn replay_many(query: &str, cfg: &Config, env: &Env) -> std::result::Result<(u16, Value), ApiError> {
    #[derive(Deserialize)]
    struct Row {
        destination: String,
        status: String,
        envelope: String,
    }
    let mut q = EventQuery::parse(query)?;
    match q.status.as_deref() {
        Some("dead" | "delivered") => {}
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
            "bulk replay takes status=dead or status=delivered: a {other} delivery is still on its way, and a replay would send it twice"
        )))
        }
        None => return Err(ApiError::BadRequest("bulk replay needs a `status` filter, e.g. status=dead".into())),
    }
    if let Some(name) = &q.destination {
        cfg.destination(name).ok_or_else(|| unknown_destination(name, cfg))?;
    }
    let before = *q.before.get_or_insert(now_seconds() + 1);
    let (filter, mut params) = q.delivery_where_clause();
    // Each configured destination's filter, as one bound JSON parameter: a delivery is picked only
    // if its destination exists and still takes the event.
    params.push(SqlValue::Text(filter_rules(cfg)));
    let takes = format!(
        "EXISTS (SELECT 1 FROM json_each(?{n}) r WHERE json_extract(r.value, '$.name') = d.destination \
           AND (json_extract(r.value, '$.providers') IS NULL OR e.provider IN (SELECT value FROM json_each(json_extract(r.value, '$.providers')))) \
           AND (json_extract(r.value, '$.types') IS NULL OR EXISTS (SELECT 1 FROM json_each(json_extract(r.value, '$.types')) t \
                WHERE e.type LIKE t.value ESCAPE '\\')))",
        n = params.len()
    );
    let configured = format!("EXISTS (SELECT 1 FROM json_each(?{}) r WHERE json_extract(r.value, '$.name') = d.destination)", params.len());
    let joined = |cond: &str| if filter.is_empty() { format!(" WHERE {cond}") } else { format!("{filter} AND {cond}") };
    let from = "FROM deliveries d JOIN events e ON e.id = d.event_id";
    let pick = format!("{takes} AND e.envelope IS NOT NULL");
    let sql = format!(
        "SELECT d.destination, d.status, e.envelope {from}{} ORDER BY e.received_at, e.id, d.destination LIMIT ?{}",
        joined(&pick),
        params.len() + 1
    );
    let found: Vec<Row> = rows(env, sql, &with_extra(&params, &[u64::from(q.limit)])).await?;
    let replays: Vec<(Envelope, Option<String>)> = found
        .into_iter()
        .filter_map(|r| {
            let e = serde_json::from_str::<Envelope>(&r.envelope).ok()?.for_replay();
            Some((Envelope { dest: Some(r.destination.clone()), dests: vec![r.destination], ..e }, Some(r.status)))
        })
        .collect();
    let replayed: Vec<Value> = replays.iter().map(|(e, _)| json!({"id": e.id, "destination": e.dest})).collect();
    let mut ids: Vec<String> = replays.iter().map(|(e, _)| e.id.clone()).collect();
    ids.dedup();
    let count = replays.len();
    enqueue_replays(env, replays).await?;
    // Replayed deliveries are `queued` now, so what still matches is what is left.
    let count_of = |cond: String| {
        let params = params.clone();
        async move {
            let n: Option<i64> = env
                .d1(D1_DATABASE)
                .map_err(storage)?
                .prepare(format!("SELECT COUNT(*) AS total {from}{cond}"))
                .bind(&bind(&params))
                .map_err(storage)?
                .first(Some("total"))
                .await
                .map_err(storage)?;
            Ok::<_, ApiError>(n.unwrap_or(0))
        }
    };
    let remaining = count_of(joined(&pick)).await?;
    let removed = count_of(joined(&format!("NOT {configured}"))).await?;
    let filtered = count_of(joined(&format!("{configured} AND NOT {takes}"))).await?;
    let unreadable = count_of(joined(&format!("{takes} AND e.envelope IS NULL"))).await?;
    Ok((
        202,
        json!({"status": "replayed", "count": count, "ids": ids, "deliveries": replayed, "remaining": remaining,
               "before": crate::time::to_rfc3339(before),
               "skipped": {"destination_removed": removed, "filter_no_longer_takes": filtered, "no_stored_payload": unreadable}}),
    ))
}

/// Sends each envelope (one event to one destination; with the delivery's
/// status before, if it had a row) again from its first attempt. Each
/// delivery is marked `queued` first, so no consumer can have touched it yet;
/// if the send fails, the marks are undone and nothing was replayed.
async fn enqueue_replays(env: &Env, replays: Vec<(Envelope, Option<String>)>) -> std::result::Result<(), ApiError> {
    let unavailable = |e: worker::Error| {
        log(json!({"kind": "replay_failed", "error": e.to_string()}));
        ApiError::Unavailable("could not enqueue the replay; nothing was replayed, please retry".into())
    };
    let db = env.d1(D1_DATABASE).map_err(unavailable)?;
    let bodies: Vec<String> = replays.iter().map(|(e, _)| e.to_json()).collect();
    for range in crate::pipeline::batches(&bodies.iter().map(String::len).collect::<Vec<_>>()) {
        let chunk = &replays[range.clone()];
        let at = JsValue::from_f64(now_seconds() as f64);
        let key = |e: &Envelope| (JsValue::from_str(&e.id), JsValue::from_str(e.dest.as_deref().unwrap_or_default()));
        let mut marks = Vec::new();
        for (e, _) in chunk {
            let (id, dest) = key(e);
            marks.push(db.prepare(REPLAYED).bind(&[id.clone(), dest, at.clone()]).map_err(unavailable)?);
            marks.push(db.prepare(eventlog::SUMMARY).bind(&[id, at.clone()]).map_err(unavailable)?);
        }
        db.batch(marks).await.map_err(unavailable)?;
        if let Err(e) = send_all(env, &bodies[range]).await {
            let mut undo = Vec::new();
            for (e, was) in chunk {
                let (id, dest) = key(e);
                let statement = match was {
                    Some(was) => db.prepare(UNDO).bind(&[id.clone(), dest, JsValue::from_str(was)]),
                    None => db.prepare(UNDO_NEW).bind(&[id.clone(), dest]),
                };
                undo.push(statement.map_err(unavailable)?);
                undo.push(db.prepare(eventlog::SUMMARY).bind(&[id, at.clone()]).map_err(unavailable)?);
            }
            if let Err(u) = db.batch(undo).await {
                // Left `queued` with nothing on the queue: `replay --dead` no longer finds them, `status=queued` does.
                log(json!({"kind": "event_log_failed", "stage": "replay_undo", "error": u.to_string()}));
            }
            return Err(unavailable(e));
        }
        for (e, _) in chunk {
            log(json!({"kind": "replay", "id": e.id, "dest": e.dest}));
        }
    }
    Ok(())
}

/// A replayed delivery is queued again (a row is made for a destination new to the event).
const REPLAYED: &str = "INSERT INTO deliveries (event_id, destination, status, attempts, updated_at) VALUES (?1, ?2, 'queued', 0, ?3) \
     ON CONFLICT (event_id, destination) DO UPDATE SET status = 'queued', updated_at = ?3";
/// Undoes `REPLAYED` after a failed send: the status it had, or no row. (`updated_at` keeps the
/// replay's time, which only delays the retention cron.)
const UNDO: &str = "UPDATE deliveries SET status = ?3 WHERE event_id = ?1 AND destination = ?2 AND status = 'queued'";
const UNDO_NEW: &str = "DELETE FROM deliveries WHERE event_id = ?1 AND destination = ?2 AND status = 'queued' AND attempts = 0";

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

/// The console's overview: 24 hours of events by hour, provider and outcome,
/// delivery latency (received to first successful attempt), and health.
async fn stats(cfg: &Config, env: &Env) -> std::result::Result<(u16, Value), ApiError> {
    #[derive(Deserialize)]
    struct Latency {
        ms: i64,
    }
    let now = now_seconds();
    let since = JsValue::from_f64(crate::console::window_start(now) as f64);
    let hours: Vec<crate::console::HourRow> = rows(
        env,
        "SELECT (received_at / 3600) * 3600 AS start, provider, status, COUNT(*) AS n FROM events \
         WHERE received_at >= ?1 GROUP BY start, provider, status"
            .into(),
        std::slice::from_ref(&since),
    )
    .await?;
    // From receipt to the end of the first 2xx attempt (both recorded in whole seconds); the latest 10 000.
    let latencies: Vec<Latency> = rows(
        env,
        "SELECT (MIN(a.at) - e.received_at) * 1000 AS ms FROM delivery_attempts a \
         JOIN events e ON e.id = a.event_id WHERE e.received_at >= ?1 AND a.status_code BETWEEN 200 AND 299 \
         GROUP BY a.event_id, a.destination ORDER BY MIN(a.at) DESC LIMIT 10000"
            .into(),
        &[since],
    )
    .await?;
    let mut body = crate::console::overview(now, &hours, latencies.into_iter().map(|l| l.ms.max(0)).collect());
    body["providers"] = super::providers_health(cfg);
    body["destinations"] = super::destinations_health(cfg, env).await;
    Ok((200, body))
}
