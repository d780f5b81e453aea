//! Alerts (see `crate::alerts`): items wait in D1 (`alert_outbox`) and the
//! minute cron sends what has gathered as one message to `ALERT_URL`.
//!
//! An alert never stands between an event and its record: the dead letter
//! is in the event log before its item is written, a failure to write or
//! send an item is logged and nothing else, and an unsent message is tried
//! again the next minute (items older than a day are dropped, logged).
//! Without `ALERT_URL`, nothing is written and the cron reads nothing.

use super::env::{fetch_with_timeout, log, now_seconds, var_text, D1_DATABASE};
use super::ops;
use crate::alerts::{message, Item, PER_FLUSH};
use crate::destinations::valid_url;
use serde::Deserialize;
use serde_json::json;
use worker::wasm_bindgen::JsValue;
use worker::{Env, Headers, Method, Request, RequestInit, RequestRedirect};

/// The cron that sends alerts, as in wrangler.toml.
pub const CRON: &str = "* * * * *";
/// How long an alert may wait for a receiver that fails.
const MAX_AGE_SECONDS: i64 = 86_400;
const TIMEOUT_SECONDS: u32 = 10;

/// `ALERT_URL`, when it is set and a URL. Read on its own (not through the
/// configuration), so that dead letters are told even when the rest is broken.
fn alert_url(env: &Env) -> Option<String> {
    let url = var_text(env, "ALERT_URL")?.trim().to_string();
    if url.is_empty() {
        return None;
    }
    match valid_url(&url) {
        Ok(url) => Some(url),
        Err(e) => {
            log(json!({"kind": "alert_misconfigured", "error": format!("ALERT_URL: {e}")}));
            None
        }
    }
}

/// Puts `items` in the outbox, in one statement.
pub async fn enqueue(env: &Env, items: &[Item]) {
    if items.is_empty() || alert_url(env).is_none() {
        return;
    }
    let result = async {
        let json = serde_json::to_string(items).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let db = env.d1(D1_DATABASE)?;
        let r = db
            .prepare("INSERT INTO alert_outbox (at, item) SELECT ?1, value FROM json_each(?2)")
            .bind(&[JsValue::from_f64(now_seconds() as f64), JsValue::from_str(&json)])?
            .run()
            .await?;
        ops::d1(std::slice::from_ref(&r));
        Ok::<_, worker::Error>(())
    }
    .await;
    if let Err(e) = result {
        log(json!({"kind": "alert_enqueue_failed", "items": items.len(), "error": e.to_string()}));
    }
}

#[derive(Deserialize)]
struct Row {
    seq: i64,
    item: String,
}

/// Sends what waits as one message, if anything does and no other flush is sending.
pub async fn flush(env: &Env) {
    let Some(url) = alert_url(env) else { return };
    if let Err(e) = try_flush(env, &url).await {
        log(json!({"kind": "alert_failed", "error": e.to_string()}));
    }
}

async fn try_flush(env: &Env, url: &str) -> worker::Result<()> {
    let db = env.d1(D1_DATABASE)?;
    let now = now_seconds();
    let int = |n: i64| JsValue::from_f64(n as f64);
    // Nothing waiting: one row read, no write.
    let waiting = db.prepare("SELECT EXISTS (SELECT 1 FROM alert_outbox) AS any").first::<i64>(Some("any")).await?;
    if waiting != Some(1) {
        return Ok(());
    }
    let dropped = db.prepare("DELETE FROM alert_outbox WHERE at < ?1").bind(&[int(now - MAX_AGE_SECONDS)])?.run().await?;
    if let Some(n) = dropped.meta()?.and_then(|m| m.changes).filter(|n| *n > 0) {
        log(json!({"kind": "alerts_dropped", "items": n, "reason": "older than a day: ALERT_URL did not take them"}));
    }
    // The claim: one flush at a time, held for a minute at most.
    let claimed = db
        .prepare("UPDATE alert_state SET sending_until = ?1 WHERE id = 1 AND sending_until <= ?2 RETURNING id")
        .bind(&[int(now + 60), int(now)])?
        .all()
        .await?;
    if claimed.results::<serde_json::Value>()?.is_empty() {
        return Ok(());
    }
    let rows: Vec<Row> = db
        .prepare("SELECT seq, item FROM alert_outbox ORDER BY seq LIMIT ?1")
        .bind(&[int(PER_FLUSH as i64 + 1)])?
        .all()
        .await?
        .results()?;
    let more = rows.len().saturating_sub(PER_FLUSH);
    let taken = &rows[..rows.len().min(PER_FLUSH)];
    let items: Vec<Item> = taken.iter().filter_map(|r| serde_json::from_str(&r.item).ok()).collect();
    let sent = if items.is_empty() { Ok(0) } else { send(env, url, &items, more).await };
    let release = db.prepare("UPDATE alert_state SET sending_until = 0 WHERE id = 1");
    match sent {
        Ok(status) => {
            let last = taken.last().map_or(0, |r| r.seq);
            db.batch(vec![db.prepare("DELETE FROM alert_outbox WHERE seq <= ?1").bind(&[int(last)])?, release]).await?;
            log(json!({"kind": "alert_sent", "items": items.len(), "more": more, "status": status}));
        }
        Err(e) => {
            release.run().await?;
            log(json!({"kind": "alert_failed", "items": items.len(), "error": e, "next": "in a minute"}));
        }
    }
    Ok(())
}

/// The console's address for links in alerts: `PUBLIC_URL` (the Worker's own public URL) + `/console/`.
fn console_url(env: &Env) -> Option<String> {
    let base = var_text(env, "PUBLIC_URL")?.trim().trim_end_matches('/').to_string();
    if base.is_empty() {
        return None;
    }
    // A base for links: scheme, host and path only (a query or fragment would swallow the link's own).
    if base.contains(['?', '#', '|', '<', '>']) {
        log(json!({"kind": "alert_misconfigured", "error": "PUBLIC_URL: give the Worker's URL without ?, # or |"}));
        return None;
    }
    match valid_url(&base) {
        Ok(base) => Some(format!("{}/console/", base.trim_end_matches('/'))),
        Err(e) => {
            log(json!({"kind": "alert_misconfigured", "error": format!("PUBLIC_URL: {e}")}));
            None
        }
    }
}

/// POSTs the message; `Ok` with the status of a 2xx answer.
async fn send(env: &Env, url: &str, items: &[Item], more: usize) -> Result<u16, String> {
    let body = message(items, more, console_url(env).as_deref()).to_string();
    let headers = Headers::new();
    headers.set("content-type", "application/json").map_err(|e| e.to_string())?;
    headers.set("user-agent", &format!("mailhook/{}", crate::VERSION)).map_err(|e| e.to_string())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_redirect(RequestRedirect::Manual).with_body(Some(JsValue::from_str(&body)));
    let request = Request::new_with_init(url, &init).map_err(|e| e.to_string())?;
    ops::subrequest();
    let resp = fetch_with_timeout(request, TIMEOUT_SECONDS).await?;
    match resp.status_code() {
        s @ 200..=299 => Ok(s),
        s => Err(format!("ALERT_URL answered {s}")),
    }
}
