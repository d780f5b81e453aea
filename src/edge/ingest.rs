//! The pipeline, written once for every provider:
//! authenticate → normalise (the core's `Provider::ingest`) → dedupe → enqueue → answer.
//!
//! The invariant: no 200 unless every new event is on the queue. A KV read
//! failure falls open (a possible duplicate, never a lost event); a failure to
//! store a large event or to enqueue answers 503 and writes no dedupe key.

use super::{config, json_response, log, now_seconds, refuse, BUCKET_PAYLOADS, KV_DEDUPE, QUEUE_EVENTS};
use crate::dedupe::dedupe_key;
use crate::delivery::Envelope;
use crate::error::ApiError;
use crate::event::Event;
use crate::providers::{Inbound, Provider};
use futures_util::StreamExt;
use serde_json::json;
use worker::{BatchMessageBuilder, Env, MessageBuilder, QueueContentType, Request, Response, Result};

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
        return Err(ApiError::NotConfigured(missing.into()));
    }
    // Everything that needs no body comes first, so a request that is too
    // large, from the wrong address or without its token or signature costs
    // no buffering: the announced size, the source address (and Mail-Plus's
    // reverse DNS), the token, the presence of a signature.
    let announced = req.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|len| len > cfg.max_body_bytes) {
        return Err(ApiError::PayloadTooLarge { limit: cfg.max_body_bytes });
    }
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let client_ip = headers.iter().find(|(k, _)| k == "cf-connecting-ip").map(|(_, v)| v.clone());
    let mut inbound = Inbound { headers: &headers, client_ip: client_ip.as_deref(), body: &[], now: now_seconds(), rdns: None };
    if provider == Provider::MailPlus {
        if let Some(ip) = crate::providers::mail_plus::rdns_lookup(&cfg, &inbound) {
            inbound.rdns = Some(super::dns::verify(ip, &cfg, env).await?);
        }
    }
    provider.authenticate_head(&cfg, &inbound)?;
    let body = read_body(req, cfg.max_body_bytes, announced).await?;
    inbound.body = &body;
    let events = provider.ingest(&cfg, &inbound)?;
    let raw = crate::providers::raw_payload(&cfg, &body);

    let kv = env.kv(KV_DEDUPE).ok();
    let mut fresh: Vec<&Event> = Vec::with_capacity(events.len());
    for e in &events {
        if !already_seen(kv.as_ref(), &e.id).await {
            fresh.push(e);
        }
    }
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    if fresh.is_empty() {
        return Ok(("duplicate", ids));
    }

    // The event log's row is written by the consumer at the first delivery
    // attempt (one D1 write fewer per event, none on this path).
    enqueue(env, &fresh, raw).await?;

    if let Some(kv) = &kv {
        for e in &fresh {
            mark_seen(kv, &e.id, cfg.dedupe_ttl_seconds).await;
        }
    }
    Ok(("accepted", ids))
}

/// Reads the body, refusing it (413) as soon as it passes `limit`, chunked
/// or not, and (400) when it ends short of its announced length, as a
/// client that gave up mid-body would.
async fn read_body(req: &mut Request, limit: u64, announced: Option<u64>) -> std::result::Result<Vec<u8>, ApiError> {
    let unreadable = |_| ApiError::BadRequest("the request body could not be read; send it again".into());
    let Ok(mut stream) = req.stream() else {
        return Ok(Vec::new()); // no body at all
    };
    let limit_len = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut body = Vec::with_capacity(announced.and_then(|n| usize::try_from(n).ok()).unwrap_or(0).min(limit_len));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(unreadable)?;
        if body.len().saturating_add(chunk.len()) > limit_len {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    if announced.is_some_and(|n| n != body.len() as u64) {
        return Err(ApiError::BadRequest("the body ended before its Content-Length; send it again".into()));
    }
    Ok(body)
}

/// A KV failure counts as "not seen": the origin's `webhook-id` check absorbs
/// a rare duplicate, while a refusal here could lose the event.
async fn already_seen(kv: Option<&worker::kv::KvStore>, id: &str) -> bool {
    let Some(kv) = kv else { return false };
    match kv.get(&dedupe_key(id)).text().await {
        Ok(v) => v.is_some(),
        Err(e) => {
            log(json!({"kind": "kv_read_failed", "id": id, "error": e.to_string()}));
            false
        }
    }
}

async fn mark_seen(kv: &worker::kv::KvStore, id: &str, ttl: u64) {
    let put = match kv.put(&dedupe_key(id), now_seconds()) {
        Ok(p) => p.expiration_ttl(ttl).execute().await,
        Err(e) => Err(e),
    };
    if let Err(e) = put {
        log(json!({"kind": "kv_write_failed", "id": id, "error": e.to_string()}));
    }
}

/// Stores large events in R2, then sends every envelope in one batch.
async fn enqueue(env: &Env, events: &[&Event], raw: Option<&str>) -> std::result::Result<(), ApiError> {
    let unavailable = |what: &str, e: worker::Error| {
        log(json!({"kind": "enqueue_failed", "stage": what, "error": e.to_string()}));
        ApiError::Unavailable(format!("could not {what}; nothing was accepted, please retry"))
    };
    let now = now_seconds();
    let mut batch = BatchMessageBuilder::<String>::new();
    for e in events {
        let json = e.to_json_with_raw(raw);
        let envelope = Envelope::new(&e.id, e.data.provider, e.kind.as_str(), &json, now);
        if let Some(key) = &envelope.r2_key {
            let bucket = env.bucket(BUCKET_PAYLOADS).map_err(|e| unavailable("store the large event", e))?;
            bucket.put(key, json).execute().await.map_err(|e| unavailable("store the large event", e))?;
        }
        batch = batch.message(MessageBuilder::new(envelope.to_json()).content_type(QueueContentType::Text).build());
    }
    let queue = env.queue(QUEUE_EVENTS).map_err(|e| unavailable("reach the events queue", e))?;
    queue.send_batch(batch.build()).await.map_err(|e| unavailable("enqueue the event", e))
}
