//! The queue consumers: delivery to each destination (`attempt`, `post`,
//! `stored`, `transformed`), and the dead-letter record (`dead`); and what a destination would receive (`preview`).
//!
//! Each message is handled on its own and concurrently, acked or retried by
//! itself, so one slow or broken message neither delays nor redoes the rest.
//! A retry is a fresh message carrying `attempt + 1`, sent with the schedule's
//! delay, after which the original is acked (see `delivery::Envelope`).

mod attempt;
mod dead;
mod post;
mod preview;
mod stored;
mod transformed;

pub(super) use preview::body_for;
pub(super) use stored::{load_event, range_stream, EventJson};

use crate::alerts::Item;
use crate::config::DEFAULT_DEAD_LETTER_QUEUE;
use crate::delivery::Envelope;
use crate::edge::env::{config, log, var_text, QUEUE_DEAD_LETTERS, QUEUE_EVENTS, QUEUE_SLOW_EVENTS};
use crate::edge::queue::send;
use crate::edge::{alerts, circuit, eventlog, ops};
use futures_util::future::join_all;
use serde_json::json;
use std::collections::HashSet;
use worker::{Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder, RawMessage};

/// How long to wait before looking at a message again after an
/// infrastructure failure (R2, queue send, bad configuration).
const INFRA_RETRY_SECONDS: u32 = 30;

pub async fn handle(batch: MessageBatch<String>, env: &Env) {
    // Dead letters are recorded whatever the configuration: a broken deploy
    // must not make the queue drop them (they wait in D1 for a replay).
    let dead_letter_queue = var_text(env, "DEAD_LETTER_QUEUE")
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty())
        .unwrap_or(DEFAULT_DEAD_LETTER_QUEUE.into());
    let dead_letters = batch.queue() == dead_letter_queue;
    let cfg = match config(env) {
        Ok(c) => c,
        Err(e) if dead_letters => {
            log(json!({"kind": "consumer_misconfigured", "error": e.to_string()}));
            let messages: Vec<RawMessage> = batch.raw_iter().collect();
            let alerts: Vec<Item> = join_all(messages.iter().map(|m| dead::record(m, None, env))).await.into_iter().flatten().collect();
            alerts::enqueue(env, &alerts).await;
            return;
        }
        Err(e) => {
            // Retried, then dead-lettered by the queue (max_retries): recorded above, replayable once fixed.
            log(json!({"kind": "consumer_misconfigured", "error": e.to_string()}));
            batch.retry_all_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(INFRA_RETRY_SECONDS).build());
            return;
        }
    };
    let messages: Vec<RawMessage> = batch.raw_iter().collect();
    let alerts: Vec<Item> = if dead_letters {
        join_all(messages.iter().map(|m| dead::record(m, Some(&cfg), env))).await.into_iter().flatten().collect()
    } else {
        let parsed: Vec<_> = join_all(messages.iter().map(|m| envelope_of(m, env))).await;
        let deliveries: Vec<(&RawMessage, Envelope, String)> =
            messages.iter().zip(parsed).filter_map(|(m, p)| p.map(|(e, json)| (m, e, json))).collect();
        // Every destination's circuit, and which of the batch's deliveries are done already, read once for the batch.
        let (circuits, done) = futures_util::join!(circuit::load(env), eventlog::delivered(env, &deliveries));
        let mut seen = HashSet::new();
        let mut todo = Vec::new();
        for (m, e, json) in deliveries {
            let key = (e.id.clone(), e.dest.clone());
            // A second copy of an event accepted twice at once (KV cannot tell them apart in time): the
            // delivery is done, or its other copy is in this batch. Its webhook-id would be the same; mailhook
            // does not lean on every origin checking it.
            if e.dest.is_some() && (done.contains(&key) || !seen.insert(key)) {
                log(json!({"kind": "already_delivered", "id": e.id, "dest": e.dest}));
                ack(m, json.len());
                continue;
            }
            todo.push((m, e, json));
        }
        join_all(todo.into_iter().map(|(m, e, json)| attempt::deliver(m, e, json, &cfg, env, &circuits))).await;
        Vec::new()
    };
    // One outbox write for the batch's dead letters; the minute cron tells them as one message.
    alerts::enqueue(env, &alerts).await;
    log(json!({"kind": "batch", "queue": batch.queue(), "messages": messages.len(), "ops": ops::take()}));
}

pub(super) fn retry_later(msg: &RawMessage) {
    msg.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(INFRA_RETRY_SECONDS).build());
}

/// How long a dead letter that could not be recorded (D1 down or full) waits before the next try. The
/// dead-letter queue's consumer has no queue after it (Queues deletes what passes its `max_retries`, 100),
/// so its tries are spread over a day: 100 of them every 15 minutes ride out a 25-hour outage of D1.
const DEAD_LETTER_RETRY_SECONDS: u32 = 900;

pub(super) fn retry_dead_letter_later(msg: &RawMessage) {
    msg.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(DEAD_LETTER_RETRY_SECONDS).build());
}

pub(super) fn ack(msg: &RawMessage, size: usize) {
    ops::queue_delete(size);
    msg.ack();
}

/// The envelope of a message and its JSON text.
/// A message that is not one (not text, or not an envelope) is dead-lettered with its text: nothing
/// can deliver it, and retrying it would loop, but it is kept where an operator sees it (`None` here).
pub(super) async fn envelope_of(msg: &RawMessage, env: &Env) -> Option<(Envelope, String)> {
    let text = msg.body().as_string();
    ops::queue_read(text.as_ref().map_or(0, String::len));
    let why = match &text {
        Some(t) => match serde_json::from_str::<Envelope>(t) {
            Ok(envelope) => return text.map(|t| (envelope, t)),
            Err(e) => format!("the queue message is not a mailhook envelope ({e})"),
        },
        None => "the queue message is not text".to_string(),
    };
    let id = format!("malformed_{}", msg.id());
    log(json!({"kind": "malformed_message", "id": id, "error": why}));
    let kept = text.unwrap_or_else(|| as_text(&msg.body()));
    match eventlog::record_malformed(env, &id, &kept, &why).await {
        Ok(()) => msg.ack(),
        Err(e) => {
            log(json!({"kind": "dead_letter_record_failed", "id": id, "error": e.to_string()}));
            retry_later(msg);
        }
    }
    None
}

/// A message body that is not text, as text to keep: bytes as `base64:…`, anything else as its JSON.
fn as_text(body: &worker::wasm_bindgen::JsValue) -> String {
    use base64::Engine as _;
    use worker::wasm_bindgen::JsCast as _;
    if body.is_instance_of::<js_sys::ArrayBuffer>() || body.is_instance_of::<js_sys::Uint8Array>() {
        let bytes = js_sys::Uint8Array::new(body).to_vec();
        return format!("base64:{}", base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    js_sys::JSON::stringify(body)
        .ok()
        .and_then(|s| s.as_string())
        .unwrap_or_else(|| "(a value that is neither text, bytes nor JSON)".into())
}

/// The queue a delivery's retries and holds go to. A delivery to a destination
/// that is failing or slow (`destinations::in_slow_lane`) moves, unattempted
/// and uncounted, to the slow lane (`SLOW_EVENTS`, its own queue and
/// consumer) and stays there (`Envelope::slow`), so that its timeouts never
/// hold up a batch of healthy destinations' deliveries: a batch ends when its
/// slowest message does. The lane is the envelope's, not the queue's name, so
/// no setting can make a message bounce between the two.
pub(super) fn lane(envelope: &Envelope) -> &'static str {
    if envelope.slow {
        QUEUE_SLOW_EVENTS
    } else {
        QUEUE_EVENTS
    }
}

/// Puts a delivery back on its lane, to be looked at again after `delay` seconds.
pub(super) async fn requeue(msg: &RawMessage, envelope: &Envelope, size: usize, delay: u32, env: &Env) {
    match send(env, lane(envelope), envelope, Some(delay)).await {
        Ok(()) => ack(msg, size),
        Err(e) => {
            // The original comes back with the same attempt count: an extra
            // attempt at worst, never a lost event.
            log(json!({"kind": "requeue_failed", "id": envelope.id, "error": e.to_string()}));
            msg.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(delay).build());
        }
    }
}

/// Sends a delivery that will not be attempted again to the dead-letter queue, whose consumer records it.
pub(super) async fn dead_letter(msg: &RawMessage, envelope: Envelope, size: usize, env: &Env) {
    match send(env, QUEUE_DEAD_LETTERS, &envelope, None).await {
        Ok(()) => ack(msg, size),
        Err(e) => {
            log(json!({"kind": "dead_letter_failed", "id": envelope.id, "error": e.to_string()}));
            retry_later(msg);
        }
    }
}
