//! `GET /admin/events` (filtered, paged, with each event's deliveries) and
//! `GET /admin/events/{id}` (its deliveries, every attempt, and the event).

use super::{count, rows, with_extra, Answer};
use crate::admin::{delivery_rows, EventQuery};
use crate::delivery::Envelope;
use crate::edge::deliver::{load_event, EventJson};
use crate::edge::env::{config, nonce, now_seconds};
use crate::error::ApiError;
use crate::links::{shown, Linking};
use crate::status::Status;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use worker::wasm_bindgen::JsValue;
use worker::Env;

#[derive(Deserialize, Serialize)]
pub(super) struct EventRow {
    id: String,
    pub(super) provider: String,
    #[serde(rename = "type")]
    pub(super) kind: String,
    received_at: i64,
    status: Status,
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

pub(super) const COLUMNS: &str = "id, provider, type, received_at, status, attempts, last_status, last_error, payload_ref, updated_at";

pub(super) async fn list(query: &str, env: &Env) -> Answer {
    let q = EventQuery::parse(query)?;
    let (filter, params) = q.where_clause();
    let n = params.len();
    // Newest first by when each was logged (the rowid: a time index would be one more row written per
    // event), which reads one page of rows, not the whole log.
    let sql = format!("SELECT {COLUMNS} FROM events{filter} ORDER BY rowid DESC LIMIT ?{} OFFSET ?{}", n + 1, n + 2);
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
        status: Status,
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
    let sql = format!(
        "SELECT event_id, destination, status, attempts, last_status, last_error, updated_at FROM {} AS d ORDER BY destination",
        delivery_rows("event_id IN (SELECT value FROM json_each(?1))")
    );
    let found: Vec<Delivery> = rows(env, sql, &[JsValue::from_str(&list)]).await?;
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for d in found {
        let mut v = serde_json::to_value(&d).unwrap_or(Value::Null);
        v["updated_at"] = Value::String(crate::time::to_rfc3339(d.updated_at));
        out.entry(d.event_id).or_default().push(v);
    }
    Ok(out)
}

pub(super) async fn envelope_of(id: &str, env: &Env) -> std::result::Result<(EventRow, Option<String>), ApiError> {
    #[derive(Deserialize)]
    struct Full {
        #[serde(flatten)]
        row: EventRow,
        envelope: Option<String>,
    }
    let found: Vec<Full> = rows(env, format!("SELECT {COLUMNS}, envelope FROM events WHERE id = ?1"), &[JsValue::from_str(id)]).await?;
    let row = found.into_iter().next().ok_or_else(|| ApiError::NotFound(format!("no event {id} in the event log")))?;
    Ok((row.row, row.envelope))
}

pub(super) async fn show(id: &str, env: &Env) -> Answer {
    #[derive(Deserialize, Serialize)]
    struct Attempt {
        destination: String,
        attempt: i64,
        at_ms: i64,
        status_code: Option<i64>,
        duration_ms: Option<i64>,
        error: Option<String>,
    }
    let (row, envelope) = envelope_of(id, env).await?;
    // A delivery's first attempt, when it succeeded, is kept in its row (or its event's) rather than in `delivery_attempts`.
    let sql = format!(
        "SELECT destination, attempt, at_ms, status_code, duration_ms, error FROM delivery_attempts WHERE event_id = ?1 \
         UNION ALL SELECT destination, 1, first_ok_ms, first_ok_status, first_ok_duration_ms, NULL FROM {} AS d ORDER BY 3, 1, 2",
        delivery_rows("event_id = ?1 AND first_ok_ms IS NOT NULL")
    );
    let attempts: Vec<Attempt> = rows(env, sql, &[JsValue::from_str(id)]).await?;
    let mut body = row.to_json();
    body["deliveries"] = Value::Array(deliveries_of(&[id], env).await?.remove(id).unwrap_or_default());
    body["delivery_attempts"] = attempts
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
            v["at"] = Value::String(crate::time::to_rfc3339_millis(a.at_ms));
            v
        })
        .collect();
    // The canonical event itself: inline, or stored in R2 (its small fields, and links to its attachments).
    let envelope = envelope.and_then(|e| serde_json::from_str::<Envelope>(&e).ok());
    body["event"] = match envelope {
        Some(Envelope { event: Some(raw), .. }) => serde_json::from_str(raw.get()).unwrap_or(Value::Null),
        Some(e) if e.r2_key.is_some() => stored(&e, env).await.unwrap_or(Value::Null),
        _ => Value::Null,
    };
    Ok((200, body))
}

/// How long a link the console shows works: an hour, at most.
const CONSOLE_LINK_SECONDS: i64 = 3600;

/// A stored event as the console shows it (`links::shown`): its manifest read from R2 (three small operations), never its body.
async fn stored(e: &Envelope, env: &Env) -> Option<Value> {
    let EventJson::Stored { key, parts, .. } = load_event(e, env).await.ok()? else { return None };
    let cfg = config(env).ok()?;
    let now = now_seconds();
    let expires = cfg.link_expires(e.received_at, now).min(now + CONSOLE_LINK_SECONDS);
    let linking = match (cfg.public_url.as_deref(), cfg.link_keys.is_empty()) {
        (Some(base), false) => Some(Linking { base, keys: &cfg.link_keys, object: &key, expires }),
        _ => None,
    };
    shown(&parts, linking.as_ref(), &nonce())
}
