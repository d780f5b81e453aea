//! The pipeline's I/O for mail the platform hands over (`email.rs`): the
//! core decides every step (`pipeline::plan`), this carries them out, in the
//! order the Worker's entry module does for webhooks (`src/entry.mjs`): dedupe
//! reads, large events to R2, unrouted events to the event log, the messages on
//! the queue, then the dedupe keys. No 200 unless every new event is on the
//! queue; a KV read failure falls open (a possible duplicate, never a lost
//! event); a failure to store, record or enqueue marks nothing.

use super::consumer::send_all;
use super::{log, now_millis, now_seconds, ops, BUCKET_PAYLOADS, KV_DEDUPE};
use crate::config::Config;
use crate::error::ApiError;
use crate::pipeline::{plan, Plan};
use crate::providers::{Inbound, Provider};
use js_sys::{Reflect, Uint8Array};
use serde_json::json;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Bucket, Env, Result};

/// Everything after the body is read: the core's plan, then its I/O. `Ok`
/// only when every new event is on the queue; it answers whether they were new.
pub async fn accept(
    env: &Env,
    provider: Provider,
    cfg: &Config,
    inbound: &Inbound<'_>,
) -> std::result::Result<(&'static str, Vec<String>), ApiError> {
    let nonce = nonce();
    let plan = plan(cfg, provider, inbound, &nonce)?;
    let ids: Vec<String> = plan.ids().into_iter().map(String::from).collect();
    let kv = env.kv(KV_DEDUPE).ok();
    let mut fresh = Vec::with_capacity(plan.events.len());
    for (i, e) in plan.events.iter().enumerate() {
        if !already_seen(kv.as_ref(), &e.id, &e.key).await {
            fresh.push(i);
        }
    }
    if fresh.is_empty() {
        return Ok(("duplicate", ids));
    }
    enqueue(env, &plan, &fresh, plan.body(inbound.body)).await?;
    if let Some(kv) = &kv {
        for &i in &fresh {
            mark_seen(kv, &plan.events[i].id, &plan.events[i].key, plan.ttl).await;
        }
    }
    Ok(("accepted", ids))
}

/// Reads a body (a request's, or a message's raw stream), refusing it (413)
/// as soon as it passes `limit`, chunked or not, and (400) when it ends short
/// of its announced length, as a client that gave up mid-body would.
/// `reserve` bounds what is allocated before the bytes arrive.
///
/// The body is read with a BYOB reader into one 64 KiB buffer that goes
/// back and forth, each chunk copied into Wasm: no JavaScript buffer per
/// chunk waits for the garbage collector, so a 32 MiB email costs its size
/// in Wasm and almost nothing in the JS heap (BENCHMARKS.md). A stream
/// without BYOB support (a message's stream passed over RPC, locally) is
/// read chunk by chunk.
pub async fn read_stream(
    stream: Option<web_sys::ReadableStream>,
    limit: u64,
    announced: Option<u64>,
    reserve: u64,
) -> std::result::Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::PayloadTooLarge { limit };
    fn unreadable<E>(_: E) -> ApiError {
        ApiError::BadRequest("the request body could not be read; send it again".into())
    }
    let limit_len = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut body = Vec::with_capacity(usize::try_from(announced.unwrap_or(0).min(reserve).min(limit)).unwrap_or(0));
    let Some(stream) = stream else {
        return Ok(body); // no body at all
    };
    let byob = byob_reader(&stream);
    let default_reader = match byob {
        Some(_) => None,
        None => Some(web_sys::ReadableStreamDefaultReader::new(&stream).map_err(unreadable)?),
    };
    let mut view = Uint8Array::new_with_length(READ_CHUNK_BYTES);
    loop {
        let read = match (&byob, &default_reader) {
            (Some(reader), _) => reader.read_with_array_buffer_view(&view),
            (None, Some(reader)) => reader.read(),
            (None, None) => return Err(unreadable(())),
        };
        let result = JsFuture::from(read).await.map_err(unreadable)?;
        if Reflect::get(&result, &JsValue::from_str("done")).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
            break;
        }
        let chunk: Uint8Array = Reflect::get(&result, &JsValue::from_str("value")).map_err(unreadable)?.dyn_into().map_err(unreadable)?;
        let n = chunk.length() as usize;
        if body.len().saturating_add(n) > limit_len {
            if let Some(reader) = &byob {
                let _ = reader.cancel();
            } else if let Some(reader) = &default_reader {
                let _ = reader.cancel();
            }
            return Err(too_large());
        }
        let start = body.len();
        body.resize(start + n, 0);
        chunk.copy_to(&mut body[start..]);
        if byob.is_some() {
            // The read handed the buffer back, detached from `view`: read into it again.
            view = Uint8Array::new_with_byte_offset_and_length(&chunk.buffer(), 0, READ_CHUNK_BYTES);
        }
    }
    if announced.is_some_and(|n| n != body.len() as u64) {
        return Err(ApiError::BadRequest("the body ended before its Content-Length; send it again".into()));
    }
    Ok(body)
}

const READ_CHUNK_BYTES: u32 = 64 * 1024;

/// A BYOB reader of `stream`, when it is a byte stream (request bodies in workerd are).
fn byob_reader(stream: &web_sys::ReadableStream) -> Option<web_sys::ReadableStreamByobReader> {
    let options = web_sys::ReadableStreamGetReaderOptions::new();
    options.set_mode(web_sys::ReadableStreamReaderMode::Byob);
    // Called through Reflect so that a stream without BYOB support throws into a Result, not a panic.
    let get_reader: js_sys::Function = Reflect::get(stream, &JsValue::from_str("getReader")).ok()?.dyn_into().ok()?;
    get_reader.call1(stream, &options).ok()?.dyn_into().ok()
}

/// A KV failure counts as "not seen": the origin's `webhook-id` check absorbs
/// a rare duplicate, while a refusal here could lose the event.
async fn already_seen(kv: Option<&worker::kv::KvStore>, id: &str, key: &str) -> bool {
    let Some(kv) = kv else { return false };
    ops::kv_read();
    match kv.get(key).text().await {
        Ok(v) => v.is_some(),
        Err(e) => {
            log(json!({"kind": "kv_read_failed", "id": id, "error": e.to_string()}));
            false
        }
    }
}

async fn mark_seen(kv: &worker::kv::KvStore, id: &str, key: &str, ttl: u64) {
    ops::kv_write();
    let put = match kv.put(key, now_seconds()) {
        Ok(p) => p.expiration_ttl(ttl).execute().await,
        Err(e) => Err(e),
    };
    if let Err(e) = put {
        log(json!({"kind": "kv_write_failed", "id": id, "error": e.to_string()}));
    }
}

/// The plan's steps for the new events (`fresh`, indices into `plan.events`):
/// large events to R2 (once, whatever the number of destinations), unrouted
/// ones to the event log, then every message on the queue.
async fn enqueue(env: &Env, plan: &Plan, fresh: &[usize], body: &[u8]) -> std::result::Result<(), ApiError> {
    let unavailable = |what: &str, e: worker::Error| {
        log(json!({"kind": "enqueue_failed", "stage": what, "error": e.to_string()}));
        ApiError::Unavailable(format!("could not {what}; nothing was accepted, please retry"))
    };
    let events = || fresh.iter().map(|&i| &plan.events[i]);
    for stored in events().filter_map(|e| e.stored.as_ref()) {
        let bucket = env.bucket(BUCKET_PAYLOADS).map_err(|e| unavailable("store the large event", e))?;
        store(&bucket, &stored.body_key, body).await.map_err(|e| unavailable("store the large event", e))?;
        ops::r2_class_a();
        bucket.put(&stored.manifest_key, stored.manifest.clone()).execute().await.map_err(|e| unavailable("store the large event", e))?;
    }
    let unrouted: Vec<&crate::delivery::Envelope> = events().filter_map(|e| e.unrouted.as_ref()).collect();
    for e in &unrouted {
        log(json!({"kind": "unrouted", "id": e.id, "provider": plan.provider, "type": e.kind}));
    }
    if !unrouted.is_empty() {
        super::eventlog::record_unrouted(env, &unrouted).await.map_err(|e| unavailable("record the unrouted event", e))?;
    }
    let bodies: Vec<String> = events().flat_map(|e| e.messages.iter().cloned()).collect();
    if bodies.is_empty() {
        return Ok(());
    }
    // Several batches only when the fan-out passes one batch's limits: a
    // failure after the first answers 503, the provider sends again, and the
    // destinations that got it already dedupe on `webhook-id`.
    send_all(env, &bodies).await.map_err(|e| unavailable("enqueue the event", e))
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

/// The markers' nonce: 128 random bits, so no sender can write one.
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Without randomness, the time still differs from anything a sender could have predicted exactly.
        bytes[..8].copy_from_slice(&now_millis().to_le_bytes());
    }
    hex::encode(bytes)
}
