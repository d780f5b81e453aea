//! The event log in D1 (`migrations/`): a row per event, written at its first
//! delivery attempt and updated on each, one row per attempt, dead letters,
//! and retention. Writes that only serve operators are best effort (logged
//! on failure); the dead-letter record is not (its caller retries).

use super::{log, now_seconds, BUCKET_PAYLOADS, D1_DATABASE};
use crate::delivery::{r2_bytes_key, Envelope};
use serde_json::json;
use worker::wasm_bindgen::JsValue;
use worker::{D1PreparedStatement, Env, Result};

fn text(s: &str) -> JsValue {
    JsValue::from_str(s)
}

fn int(n: i64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn opt_text(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::NULL, JsValue::from_str)
}

/// What an event's row becomes when it exists already.
const ON_ATTEMPT: &str = "status = excluded.status, attempts = events.attempts + excluded.attempts, \
     last_status = excluded.last_status, last_error = excluded.last_error, updated_at = excluded.updated_at";
const ON_DEAD: &str = "status = 'dead', attempts = MAX(events.attempts, excluded.attempts), \
     last_status = excluded.last_status, last_error = excluded.last_error, updated_at = excluded.updated_at";

/// Inserts an event's row (its first attempt, or a dead letter the log has
/// not seen), or applies `on_conflict` to the existing one. `attempts` is
/// the new row's count, and what `on_conflict` reads as `excluded.attempts`;
/// `envelope_json` is stored only when the row is new.
fn write_row(env: &Env, e: &Envelope, envelope_json: &str, status: &str, attempts: i64, on_conflict: &str) -> Result<D1PreparedStatement> {
    env.d1(D1_DATABASE)?
        .prepare(format!(
            "INSERT INTO events (id, provider, type, received_at, status, attempts, last_status, last_error, payload_ref, envelope, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO UPDATE SET {on_conflict}"
        ))
        .bind(&[
            text(&e.id),
            text(&e.provider),
            text(&e.kind),
            int(if e.received_at > 0 { e.received_at } else { now_seconds() }),
            text(status),
            int(attempts),
            e.last_status.map_or(JsValue::NULL, |s| int(i64::from(s))),
            opt_text(e.last_error.as_deref()),
            opt_text(e.r2_key.as_deref()),
            text(envelope_json),
            int(now_seconds()),
        ])
}

/// One delivery attempt and the event's new status.
pub async fn record_attempt(env: &Env, e: &Envelope, envelope_json: &str, status: &str, code: Option<u16>, ms: u64) {
    let result = async {
        let db = env.d1(D1_DATABASE)?;
        let attempt = db
            .prepare("INSERT OR REPLACE INTO delivery_attempts (event_id, attempt, at, status_code, duration_ms, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .bind(&[
                text(&e.id),
                int(i64::from(e.attempt)),
                int(now_seconds()),
                code.map_or(JsValue::NULL, |c| int(i64::from(c))),
                int(ms as i64),
                opt_text(e.last_error.as_deref()),
            ])?;
        db.batch(vec![attempt, write_row(env, e, envelope_json, status, 1, ON_ATTEMPT)?]).await
    }
    .await;
    if let Err(err) = result {
        log(json!({"kind": "event_log_failed", "stage": "attempt", "id": e.id, "error": err.to_string()}));
    }
}

/// Marks an event dead. Its caller retries the message when this fails.
pub async fn record_dead(env: &Env, e: &Envelope) -> Result<()> {
    write_row(env, e, &e.to_json(), "dead", i64::from(e.attempt), ON_DEAD)?.run().await.map(|_| ())
}

/// The rows the retention cron may remove: finished (delivered or dead) and
/// untouched since `?1`. A queued or retrying event (a replay included) keeps
/// its row and its R2 payload however old it is, and a replay moves
/// `updated_at`, so an event replayed near the cutoff is not removed under it.
const EXPIRED: &str = "status IN ('delivered', 'dead') AND updated_at < ?1";

/// Deletes the expired rows (see `EXPIRED`) with their attempts, and the R2
/// objects they reference; returns how many events were removed.
pub async fn remove_older_than(env: &Env, cutoff: i64) -> Result<usize> {
    #[derive(serde::Deserialize)]
    struct Row {
        payload_ref: Option<String>,
    }
    let db = env.d1(D1_DATABASE)?;
    let refs: Vec<Row> = db
        .prepare(format!("SELECT payload_ref FROM events WHERE {EXPIRED} AND payload_ref IS NOT NULL"))
        .bind(&[int(cutoff)])?
        .all()
        .await?
        .results()?;
    // A large event is its manifest and, beside it, the request body.
    let keys: Vec<String> = refs
        .into_iter()
        .filter_map(|r| r.payload_ref)
        .flat_map(|k| {
            let bytes = r2_bytes_key(&k);
            if bytes == k {
                vec![k]
            } else {
                vec![k, bytes]
            }
        })
        .collect();
    if !keys.is_empty() {
        let bucket = env.bucket(BUCKET_PAYLOADS)?;
        for chunk in keys.chunks(1000) {
            bucket.delete_multiple(chunk.to_vec()).await?;
        }
    }
    let results = db
        .batch(vec![
            db.prepare(format!("DELETE FROM delivery_attempts WHERE event_id IN (SELECT id FROM events WHERE {EXPIRED})"))
                .bind(&[int(cutoff)])?,
            db.prepare(format!("DELETE FROM events WHERE {EXPIRED}")).bind(&[int(cutoff)])?,
        ])
        .await?;
    let removed = results.get(1).and_then(|r| r.meta().ok().flatten()).and_then(|m| m.changes).unwrap_or(0);
    Ok(removed)
}
