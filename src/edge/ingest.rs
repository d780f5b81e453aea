//! The pipeline, written once for every provider:
//! authenticate → normalise (the core's `Provider::ingest`) → dedupe → enqueue → answer.
//!
//! The invariant: no 200 unless every new event is on the queue. A KV read
//! failure falls open (a possible duplicate, never a lost event); a failure to
//! store a large event or to enqueue answers 503 and writes no dedupe key.

use super::consumer::send_all;
use super::{config, json_response, log, now_millis, now_seconds, ops, refuse, BUCKET_PAYLOADS, KV_DEDUPE};
use crate::config::Config;
use crate::dedupe::dedupe_key;
use crate::delivery::{r2_body_key, r2_key, Envelope};
use crate::error::ApiError;
use crate::event::Event;
use crate::large::{stored_prefix, EventBody};
use crate::providers::{Inbound, Provider};
use js_sys::{Reflect, Uint8Array};
use serde_json::json;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Bucket, Env, Request, Response, Result};

/// What an unauthenticated sender's body may reserve before its bytes arrive.
const UNAUTHENTICATED_RESERVE: u64 = 64 * 1024;

pub async fn handle(provider: Provider, mut req: Request, env: &Env) -> Result<(Response, Vec<String>)> {
    match run(provider, &mut req, env).await {
        Ok((status, ids)) => Ok((json_response(200, &json!({"status": status, "ids": ids}))?, ids)),
        Err(e) => {
            log(json!({"kind": "refusal", "provider": provider.name(), "code": e.code()}));
            Ok((refuse(&e)?, Vec::new()))
        }
    }
}

async fn run(provider: Provider, req: &mut Request, env: &Env) -> std::result::Result<(&'static str, Vec<String>), ApiError> {
    let cfg = config(env).map_err(|e| ApiError::NotConfigured(e.to_string()))?;
    if let Some(missing) = provider.missing_config(&cfg) {
        return Err(ApiError::NotConfigured(missing));
    }
    // Everything that needs no body comes first, so a request that is too
    // large, from the wrong address or without its token or signature costs
    // no buffering: the announced size, the source address (and Mail-Plus's
    // reverse DNS), the token, the presence of a signature.
    let limit = provider.body_limit(&cfg);
    let announced = req.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let client_ip = headers.iter().find(|(k, _)| k == "cf-connecting-ip").map(|(_, v)| v.clone());
    let mut inbound = Inbound::new(&headers, client_ip.as_deref(), &[], now_seconds());
    if let Some(check) = provider.rdns_check(&cfg, &inbound) {
        inbound.rdns = Some(super::dns::verify(&check, env).await?);
    }
    provider.authenticate_head(&cfg, &inbound)?;
    // A known sender's body is read into one buffer of its announced size; an
    // unauthenticated one's grows only as its bytes arrive.
    let reserve = if provider.authenticated_before_body() { limit } else { UNAUTHENTICATED_RESERVE };
    let body = read_stream(req.inner().body(), limit, announced, reserve).await?;
    inbound.body = &body;
    inbound.json = &body;
    accept(env, provider, &cfg, &inbound).await
}

/// Everything after the body is read, for a request or a message the platform
/// handed over: the core's pipeline, dedupe, store, enqueue. `Ok` only when
/// every new event is on the queue; it answers whether they were new.
pub async fn accept(
    env: &Env,
    provider: Provider,
    cfg: &Config,
    inbound: &Inbound<'_>,
) -> std::result::Result<(&'static str, Vec<String>), ApiError> {
    let nonce = nonce();
    let ingested = provider.ingest(cfg, inbound, &nonce)?;
    let rendered = ingested.render();
    let events = &ingested.events;
    let body = ingested.body(inbound.body);

    let kv = env.kv(KV_DEDUPE).ok();
    let mut fresh: Vec<(&Event, &EventBody)> = Vec::with_capacity(events.len());
    for (e, json) in events.iter().zip(&rendered) {
        if !already_seen(kv.as_ref(), &e.id).await {
            fresh.push((e, json));
        }
    }
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    if fresh.is_empty() {
        return Ok(("duplicate", ids));
    }

    // The event log's row is written by the consumer at the first delivery
    // attempt (one D1 write fewer per event, none on this path).
    enqueue(env, provider, cfg, &fresh, body, &nonce).await?;

    if let Some(kv) = &kv {
        for (e, _) in &fresh {
            mark_seen(kv, &e.id, cfg.dedupe_ttl_seconds).await;
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
async fn already_seen(kv: Option<&worker::kv::KvStore>, id: &str) -> bool {
    let Some(kv) = kv else { return false };
    ops::kv_read();
    match kv.get(&dedupe_key(id)).text().await {
        Ok(v) => v.is_some(),
        Err(e) => {
            log(json!({"kind": "kv_read_failed", "id": id, "error": e.to_string()}));
            false
        }
    }
}

async fn mark_seen(kv: &worker::kv::KvStore, id: &str, ttl: u64) {
    ops::kv_write();
    let put = match kv.put(&dedupe_key(id), now_seconds()) {
        Ok(p) => p.expiration_ttl(ttl).execute().await,
        Err(e) => Err(e),
    };
    if let Err(e) = put {
        log(json!({"kind": "kv_write_failed", "id": id, "error": e.to_string()}));
    }
}

/// Stores large events in R2 (once, whatever the number of destinations),
/// then sends one message per event and destination whose filter takes it.
async fn enqueue(
    env: &Env,
    provider: Provider,
    cfg: &Config,
    events: &[(&Event, &EventBody)],
    body: &[u8],
    nonce: &str,
) -> std::result::Result<(), ApiError> {
    let unavailable = |what: &str, e: worker::Error| {
        log(json!({"kind": "enqueue_failed", "stage": what, "error": e.to_string()}));
        ApiError::Unavailable(format!("could not {what}; nothing was accepted, please retry"))
    };
    let now = now_seconds();
    let mut bodies = Vec::new();
    let mut unrouted = Vec::new();
    for (e, json) in events {
        let dests: Vec<&str> = cfg.takers(provider.name(), e.kind.as_str());
        let envelope = Envelope::new(&e.id, e.data.provider, e.kind.as_str(), json, body, now, &nonce[..16]);
        if envelope.r2_key.is_some() {
            let bucket = env.bucket(BUCKET_PAYLOADS).map_err(|e| unavailable("store the large event", e))?;
            store(&bucket, &e.id, &nonce[..16], json, body).await.map_err(|e| unavailable("store the large event", e))?;
        }
        if dests.is_empty() {
            // Accepted (the provider must not send it again), and kept in the event log as `unrouted`,
            // so that it can be found and replayed once a destination takes it.
            log(json!({"kind": "unrouted", "id": e.id, "provider": provider.name(), "type": e.kind.as_str()}));
            unrouted.push(envelope);
            continue;
        }
        bodies.extend(envelope.fan_out(&dests).iter().map(Envelope::to_json));
    }
    if !unrouted.is_empty() {
        super::eventlog::record_unrouted(env, &unrouted).await.map_err(|e| unavailable("record the unrouted event", e))?;
    }
    if bodies.is_empty() {
        return Ok(());
    }
    // Several batches only when the fan-out passes one batch's limits: a
    // failure after the first answers 503, the provider sends again, and the
    // destinations that got it already dedupe on `webhook-id`.
    send_all(env, &bodies).await.map_err(|e| unavailable("enqueue the event", e))
}

/// Writes a large event to R2: the request body as it came (`r2_body_key`),
/// then the manifest that lists the event's JSON as parts of it (`r2_key`,
/// `large::stored_prefix`), so a manifest never points at a missing body.
///
/// The body is handed to R2 as a view of Wasm memory: workerd copies it out
/// of the isolate during the call (R2 takes a byte array by copy), so no
/// JavaScript buffer of its size is made (BENCHMARKS.md §5).
async fn store(bucket: &Bucket, id: &str, copy: &str, json: &EventBody, body: &[u8]) -> Result<()> {
    let put: js_sys::Function = Reflect::get(bucket.as_ref(), &JsValue::from_str("put"))?.dyn_into()?;
    let body_key = JsValue::from_str(&r2_body_key(id, copy));
    // SAFETY: the view is only read by `put` during this call, before anything
    // else can allocate in (and so grow or move) Wasm memory.
    let promise = unsafe {
        let view = Uint8Array::view(body);
        put.call2(bucket.as_ref(), &body_key, &view)
    }?;
    ops::r2_class_a();
    JsFuture::from(promise.dyn_into::<js_sys::Promise>()?).await.map_err(|e| worker::Error::JsError(format!("R2 put failed: {e:?}")))?;
    ops::r2_class_a();
    bucket.put(r2_key(id, copy), stored_prefix(json)).execute().await.map(|_| ())
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
