//! The pipeline's I/O, for webhooks (`webhook.rs`) and for mail the platform
//! hands over (`email.rs`) alike: the core decides every step
//! (`pipeline::plan`), this carries them out in order: dedupe reads, large
//! events to R2, unrouted events to the event log, the messages on the queue,
//! then the dedupe keys. No 200 unless every new event is on the queue; a KV
//! read failure falls open (a possible duplicate, never a lost event); a
//! failure to store, record or enqueue marks nothing.

pub mod body;
pub mod email;
mod rdns;
pub mod webhook;

use crate::config::Config;
use crate::edge::binding::{binding, kv_get, kv_put};
use crate::edge::env::{log, nonce, now_millis, now_seconds, BUCKET_PAYLOADS, KV_DEDUPE};
use crate::edge::ops;
use crate::edge::queue::send_all;
use crate::error::ApiError;
use crate::pipeline::{plan, Plan, Planned, Stored};
use crate::providers::{Inbound, Provider};
use js_sys::{Reflect, Uint8Array};
use serde_json::json;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Bucket, Env, Result};

/// What was taken: `accepted` (some event was new) or `duplicate`, and every event's id.
#[derive(Debug)]
pub struct Taken {
    pub status: &'static str,
    pub ids: Vec<String>,
}

/// Everything after the body is read: the core's plan, then its I/O. `Ok`
/// only when every new event is on the queue; it answers whether they were new.
pub async fn accept(env: &Env, provider: Provider, cfg: &Config, inbound: &Inbound<'_>) -> std::result::Result<Taken, ApiError> {
    let nonce = nonce();
    let plan = plan(cfg, provider, inbound, &nonce, now_millis() as i64)?;
    let ids: Vec<String> = plan.ids().into_iter().map(String::from).collect();
    let kv = binding(env, KV_DEDUPE);
    let mut fresh = Vec::with_capacity(plan.events.len());
    for (i, e) in plan.events.iter().enumerate() {
        if !already_seen(kv.as_ref(), &e.id, &e.key).await {
            fresh.push(i);
        }
    }
    if fresh.is_empty() {
        return Ok(Taken { status: "duplicate", ids });
    }
    enqueue(env, &plan, &fresh, plan.body(inbound.body), inbound.body).await?;
    if let Some(kv) = &kv {
        for &i in &fresh {
            mark_seen(kv, &plan.events[i].id, &plan.events[i].key, plan.ttl).await;
        }
    }
    Ok(Taken { status: "accepted", ids })
}

/// A KV failure counts as "not seen": the origin's `webhook-id` check absorbs
/// a rare duplicate, while a refusal here could lose the event.
async fn already_seen(kv: Option<&JsValue>, id: &str, key: &str) -> bool {
    let Some(kv) = kv else { return false };
    ops::kv_read();
    match kv_get(kv, key).await {
        Ok(v) => v.is_some(),
        Err(e) => {
            log(json!({"kind": "kv_read_failed", "id": id, "error": e}));
            false
        }
    }
}

async fn mark_seen(kv: &JsValue, id: &str, key: &str, ttl: u64) {
    ops::kv_write();
    if let Err(e) = kv_put(kv, key, &now_seconds().to_string(), ttl).await {
        log(json!({"kind": "kv_write_failed", "id": id, "error": e}));
    }
}

/// The plan's steps for the new events (`fresh`, indices into `plan.events`):
/// large events to R2 (once, whatever the number of destinations), unrouted
/// ones to the event log, then every message on the queue. When a step fails,
/// the R2 objects that no queued message or recorded row refers to are removed
/// (the provider sends the event again, and it is stored again under another name).
async fn enqueue(env: &Env, plan: &Plan, fresh: &[usize], body: &[u8], received: &[u8]) -> std::result::Result<(), ApiError> {
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        log(json!({"kind": "enqueue_failed", "stage": what, "error": e.to_string()}));
        ApiError::Unavailable(format!("could not {what}; nothing was accepted, please retry"))
    };
    let events: Vec<&Planned> = fresh.iter().map(|&i| &plan.events[i]).collect();
    let mut stored: Vec<&Stored> = Vec::new();
    for s in events.iter().filter_map(|e| e.stored.as_ref()) {
        if let Err(e) = store_large(env, s, body, received).await {
            // What this event's puts left too (its body, its raw message), not only the events' before it.
            stored.push(s);
            remove(env, &stored).await;
            return Err(unavailable("store the large event", &e));
        }
        stored.push(s);
    }
    let unrouted: Vec<&crate::delivery::Envelope> = events.iter().filter_map(|e| e.unrouted.as_ref()).collect();
    for e in &unrouted {
        log(json!({"kind": "unrouted", "id": e.id, "provider": plan.provider, "type": e.kind}));
    }
    if !unrouted.is_empty() {
        if let Err(e) = crate::edge::eventlog::record_unrouted(env, &unrouted).await {
            remove(env, &stored).await;
            return Err(unavailable("record the unrouted event", &e));
        }
    }
    let bodies: Vec<String> = events.iter().flat_map(|e| e.messages.iter().cloned()).collect();
    if bodies.is_empty() {
        return Ok(());
    }
    // Several batches only when the fan-out passes one batch's limits: a
    // failure after the first answers 503, the provider sends again, and the
    // destinations that got it already dedupe on `webhook-id`.
    if let Err(failed) = send_all(env, &bodies).await {
        // The objects of events none of whose messages went out, and that are not recorded as unrouted.
        let mut first = 0;
        let orphans: Vec<&Stored> = events
            .iter()
            .filter_map(|e| {
                let (from, n) = (first, e.messages.len());
                first += n;
                (from >= failed.sent && e.unrouted.is_none() && n > 0).then_some(e.stored.as_ref()).flatten()
            })
            .collect();
        remove(env, &orphans).await;
        return Err(unavailable("enqueue the event", &failed));
    }
    Ok(())
}

/// A large event's objects: its body (and received mail's raw message, when kept), then its manifest (so a
/// manifest never points at a missing body).
async fn store_large(env: &Env, s: &Stored, body: &[u8], received: &[u8]) -> Result<()> {
    let bucket = env.bucket(BUCKET_PAYLOADS)?;
    store(&bucket, &s.body_key, body).await?;
    if let Some(raw_key) = &s.raw_key {
        store(&bucket, raw_key, received).await?;
    }
    ops::r2_class_a();
    bucket.put(&s.manifest_key, s.manifest.clone()).execute().await.map(drop)
}

/// Removes stored objects nothing refers to, best effort: what is left is removed by the retention cron.
async fn remove(env: &Env, stored: &[&Stored]) {
    if stored.is_empty() {
        return;
    }
    let keys: Vec<String> =
        stored.iter().flat_map(|s| [Some(s.body_key.clone()), Some(s.manifest_key.clone()), s.raw_key.clone()]).flatten().collect();
    let removed = match env.bucket(BUCKET_PAYLOADS) {
        Ok(bucket) => bucket.delete_multiple(keys.clone()).await,
        Err(e) => Err(e),
    };
    if let Err(e) = removed {
        log(json!({"kind": "r2_cleanup_failed", "keys": keys.len(), "error": e.to_string()}));
    }
}

/// Writes a large event's body to R2 as a view of Wasm memory: workerd copies
/// it out of the isolate during the call (R2 takes a byte array by copy), so
/// no JavaScript buffer of its size is made (BENCHMARKS.md §5).
async fn store(bucket: &Bucket, key: &str, body: &[u8]) -> Result<()> {
    let put: js_sys::Function = Reflect::get(bucket.as_ref(), &JsValue::from_str("put"))?.dyn_into()?;
    let key = JsValue::from_str(key);
    // SAFETY: the view is only read by `put` during this call, before anything
    // else can allocate in (and so grow or move) Wasm memory.
    let promise = unsafe {
        let view = Uint8Array::view(body);
        put.call2(bucket.as_ref(), &key, &view)
    }?;
    ops::r2_class_a();
    JsFuture::from(promise.dyn_into::<js_sys::Promise>()?).await.map_err(|e| worker::Error::JsError(format!("R2 put failed: {e:?}")))?;
    Ok(())
}
