//! The daily retention cron: removes event-log rows older than
//! LOG_RETENTION_DAYS with the R2 objects they reference, then sweeps R2 for
//! objects no row refers to (left by an ingest that failed after storing).

use super::binding::{binding, kv_get, kv_put};
use super::env::{config, log, now_millis, now_seconds, BUCKET_PAYLOADS, D1_DATABASE, KV_DEDUPE};
use super::eventlog;
use crate::admin::{RetentionRun, RetentionSeen};
use crate::delivery::r2_ref_of;
use serde_json::json;
use worker::wasm_bindgen::JsValue;
use worker::{Env, Result};

/// An object younger than this may belong to an event still on the queue,
/// not yet in the event log (Queues keeps a message at most 14 days).
const ORPHAN_AFTER_MS: u64 = 15 * 86_400 * 1000;
/// Objects listed per run (1,000 a page): a bucket larger than this is swept over several days.
const SWEEP_PAGES: usize = 20;
/// Where the sweep goes on from next run: the last key it looked at.
const SWEEP_FROM: &str = "retention:r2-sweep-after";

pub async fn run(env: &Env) {
    let days = match config(env) {
        Ok(c) => c.log_retention_days,
        Err(e) => {
            log(json!({"kind": "retention_skipped", "error": e.to_string()}));
            return;
        }
    };
    let started = now_seconds();
    mark(env, RetentionRun::START_KEY, &started.to_string()).await;
    let cutoff = started - i64::from(days) * 86_400;
    let mut failed = Vec::new();
    match eventlog::remove_older_than(env, cutoff).await {
        Ok(n) => log(json!({"kind": "retention", "removed": n, "cutoff": crate::time::to_rfc3339(cutoff)})),
        Err(e) => {
            log(json!({"kind": "retention_failed", "error": e.to_string()}));
            failed.push(format!("removing old events: {e}"));
        }
    }
    if let Err(e) = super::access::forget_expired_sign_outs(env).await {
        log(json!({"kind": "retention_failed", "stage": "console sign-outs", "error": e.to_string()}));
        failed.push(format!("forgetting console sign-outs: {e}"));
    }
    match sweep(env).await {
        Ok((looked, removed)) => log(json!({"kind": "r2_sweep", "looked_at": looked, "removed": removed})),
        Err(e) => {
            log(json!({"kind": "r2_sweep_failed", "error": e.to_string()}));
            failed.push(format!("sweeping R2: {e}"));
        }
    }
    let run = RetentionRun { at: now_seconds(), error: (!failed.is_empty()).then(|| failed.join("; ")) };
    mark(env, RetentionRun::KEY, &serde_json::to_string(&run).unwrap_or_default()).await;
}

/// Records the run's start or end for the doctor (`GET /admin/doctor`): two KV writes a day, one per key.
async fn mark(env: &Env, key: &str, value: &str) {
    let Some(kv) = binding(env, KV_DEDUPE) else { return };
    if let Err(e) = kv_put(&kv, key, value, RetentionRun::TTL_SECONDS).await {
        log(json!({"kind": "retention_failed", "stage": "record the run", "key": key, "error": e}));
    }
}

/// What the retention cron recorded of its runs (a record that does not parse counts as none).
pub async fn seen(env: &Env) -> RetentionSeen {
    let Some(kv) = binding(env, KV_DEDUPE) else { return RetentionSeen::Unreadable };
    match (kv_get(&kv, RetentionRun::START_KEY).await, kv_get(&kv, RetentionRun::KEY).await) {
        (Ok(started), Ok(finished)) => RetentionSeen::Seen {
            started: started.and_then(|s| s.parse().ok()),
            finished: finished.and_then(|f| serde_json::from_str(&f).ok()),
        },
        _ => RetentionSeen::Unreadable,
    }
}

/// Removes the event objects older than `ORPHAN_AFTER_MS` that no event row
/// refers to; returns how many objects it looked at and removed.
async fn sweep(env: &Env) -> Result<(usize, usize)> {
    let bucket = env.bucket(BUCKET_PAYLOADS)?;
    let kv = binding(env, KV_DEDUPE);
    let mut after = match &kv {
        Some(kv) => kv_get(kv, SWEEP_FROM).await.ok().flatten().filter(|k| !k.is_empty()),
        None => None,
    };
    let before = now_millis().saturating_sub(ORPHAN_AFTER_MS);
    let (mut looked, mut removed) = (0, 0);
    let mut finished = false;
    for _ in 0..SWEEP_PAGES {
        let mut list = bucket.list().prefix("events/").limit(1000);
        if let Some(key) = &after {
            list = list.start_after(key.clone());
        }
        let page = list.execute().await?;
        let objects = page.objects();
        looked += objects.len();
        after = objects.last().map(|o| o.key());
        let old: Vec<(String, String)> =
            objects.iter().filter(|o| o.uploaded().as_millis() < before).filter_map(|o| Some((o.key(), r2_ref_of(&o.key())?))).collect();
        let orphans = unreferenced(env, old).await?;
        if !orphans.is_empty() {
            removed += orphans.len();
            bucket.delete_multiple(orphans).await?;
        }
        if !page.truncated() || after.is_none() {
            finished = true;
            break;
        }
    }
    if let Some(kv) = &kv {
        // From the start again once the whole bucket was seen.
        let next = if finished { "" } else { after.as_deref().unwrap_or_default() };
        if let Err(e) = kv_put(kv, SWEEP_FROM, next, 7 * 86_400).await {
            log(json!({"kind": "r2_sweep_failed", "stage": "remember where it stopped", "error": e}));
        }
    }
    Ok((looked, removed))
}

/// The objects of `candidates` (each an object's key and the key a row would refer to it by) that no row refers to.
async fn unreferenced(env: &Env, candidates: Vec<(String, String)>) -> Result<Vec<String>> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(serde::Deserialize)]
    struct Row {
        payload_ref: String,
    }
    let refs: Vec<&str> = candidates.iter().map(|(_, r)| r.as_str()).collect();
    let list = serde_json::to_string(&refs).unwrap_or_default();
    let db = env.d1(D1_DATABASE)?;
    let found: Vec<Row> = db
        .prepare("SELECT DISTINCT payload_ref FROM events WHERE payload_ref IN (SELECT value FROM json_each(?1))")
        .bind(&[JsValue::from_str(&list)])?
        .all()
        .await?
        .results()?;
    let referenced: std::collections::HashSet<String> = found.into_iter().map(|r| r.payload_ref).collect();
    Ok(candidates.into_iter().filter(|(_, r)| !referenced.contains(r)).map(|(key, _)| key).collect())
}
