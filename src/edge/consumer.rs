//! The queue consumers: delivery to the origin, and the dead-letter record.
//!
//! Each message is handled on its own and concurrently, acked or retried by
//! itself, so one slow or broken message neither delays nor redoes the rest.
//! A retry is a fresh message carrying `attempt + 1`, sent with the schedule's
//! delay, after which the original is acked (see `delivery::Envelope`).

use super::{
    circuit, config, eventlog, fetch_with_timeout, log, now_millis, now_seconds, ops, var_text, wasm_kib, BUCKET_PAYLOADS,
    QUEUE_DEAD_LETTERS, QUEUE_EVENTS, QUEUE_SLOW_EVENTS,
};
use crate::alerts::Item;
use crate::config::{Config, DEFAULT_DEAD_LETTER_QUEUE};
use crate::delivery::{
    classify, is_stored_parts, next_delay, parse_retry_after, r2_bytes_key, sign, Envelope, Outcome, Signer, USER_AGENT,
};
use crate::destinations::{gate, in_slow_lane, Circuit, Destination, Gate, LEGACY_NAME, SLOW_ATTEMPT_MS};
use crate::large::{manifest_len, parse_manifest, read_plan, EventBody, Part, Read, RunCursor, STORED_HEADER_LEN};
use futures_util::future::join_all;
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::pin::Pin;
use worker::wasm_bindgen::JsValue;
use worker::{
    BatchMessageBuilder, Bucket, ByteStream, Env, FixedLengthStream, Headers, MessageBatch, MessageBuilder, MessageExt, Method,
    QueueContentType, QueueRetryOptionsBuilder, Range, RawMessage, Request, RequestInit, RequestRedirect,
};

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
            let alerts: Vec<Item> = join_all(messages.iter().map(|m| record_dead(m, None, env))).await.into_iter().flatten().collect();
            super::alerts::enqueue(env, &alerts).await;
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
    // Every destination's circuit, read once for the batch.
    let circuits = if dead_letters { HashMap::new() } else { circuit::load(env).await };
    let alerts: Vec<Item> = join_all(messages.iter().map(|m| async {
        if dead_letters {
            record_dead(m, Some(&cfg), env).await
        } else {
            deliver(m, &cfg, env, &circuits).await;
            Vec::new()
        }
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    // One outbox write for the batch's dead letters; the minute cron tells them as one message.
    super::alerts::enqueue(env, &alerts).await;
    log(json!({"kind": "batch", "queue": batch.queue(), "messages": messages.len(), "ops": ops::take()}));
}

fn retry_later(msg: &RawMessage) {
    msg.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(INFRA_RETRY_SECONDS).build());
}

fn ack(msg: &RawMessage, size: usize) {
    ops::queue_delete(size);
    msg.ack();
}

/// The envelope of a message and its JSON text.
fn envelope_of(msg: &RawMessage) -> Option<(Envelope, String)> {
    let text = msg.body().as_string();
    ops::queue_read(text.as_ref().map_or(0, String::len));
    let parsed = text.and_then(|text| Some((serde_json::from_str::<Envelope>(&text).ok()?, text)));
    if parsed.is_none() {
        // Not ours: nothing can ever deliver it, so retrying would loop forever.
        log(json!({"kind": "malformed_message", "message_id": msg.id()}));
        msg.ack();
    }
    parsed
}

/// The queue a delivery's retries and holds go to. A delivery to a destination
/// that is failing or slow (`destinations::in_slow_lane`) moves, unattempted
/// and uncounted, to the slow lane (`SLOW_EVENTS`, its own queue and
/// consumer) and stays there (`Envelope::slow`), so that its timeouts never
/// hold up a batch of healthy destinations' deliveries: a batch ends when its
/// slowest message does. The lane is the envelope's, not the queue's name, so
/// no setting can make a message bounce between the two.
fn lane(envelope: &Envelope) -> &'static str {
    if envelope.slow {
        QUEUE_SLOW_EVENTS
    } else {
        QUEUE_EVENTS
    }
}

/// The result of one POST to the origin.
struct Attempt {
    status: Option<u16>,
    retry_after: Option<u32>,
    error: Option<String>,
}

async fn deliver(msg: &RawMessage, cfg: &Config, env: &Env, circuits: &HashMap<String, Circuit>) {
    let Some((mut envelope, envelope_json)) = envelope_of(msg) else { return };
    let size = envelope_json.len();
    let Some(name) = envelope.dest.clone() else { return fan_out(msg, envelope, size, cfg, env).await };
    let Some(dest) = cfg.destination(&name) else {
        // Removed from the configuration: nothing here can deliver it. Dead, so
        // an operator sees it and can replay it to another destination.
        envelope.last_status = None;
        envelope.last_error = Some(format!("destination {name:?} is no longer configured; replay the event to another destination"));
        return dead_letter(msg, envelope, size, env).await;
    };
    let now = now_seconds();
    let before = circuits.get(&dest.name).copied().unwrap_or_default();
    if !envelope.slow && in_slow_lane(before, now) {
        // Not attempted here, and not counted: the slow lane attempts it (and gates it on the circuit).
        let moved = Envelope { slow: true, ..envelope.clone() };
        match send(env, QUEUE_SLOW_EVENTS, &moved, None).await {
            Ok(()) => return ack(msg, size),
            Err(e) => log(json!({"kind": "slow_lane_unavailable", "id": envelope.id, "dest": dest.name, "error": e.to_string()})),
        }
    }
    match gate(before, dest.circuit, now, envelope.held) {
        Gate::Send => {}
        Gate::Probe if circuit::claim_probe(env, dest, now).await => {
            log(json!({"kind": "circuit_probe", "dest": dest.name, "id": envelope.id}));
        }
        Gate::Probe => {
            // Another delivery won this probe; wait for the next.
            let next = Circuit { probe_at: now + i64::from(dest.circuit.probe_seconds), ..before };
            let Gate::Hold(delay) = gate(next, dest.circuit, now, envelope.held) else { return retry_later(msg) };
            return hold(msg, envelope, &envelope_json, delay, env).await;
        }
        Gate::Hold(delay) => return hold(msg, envelope, &envelope_json, delay, env).await,
    }
    let event = match load_event(&envelope, env).await {
        Ok(j) => j,
        Err(e) => {
            log(json!({"kind": "event_unreadable", "id": envelope.id, "dest": dest.name, "error": e}));
            return retry_later(msg);
        }
    };
    envelope.attempt += 1;
    let started = now_millis();
    let attempt = match dest.problem() {
        Some(problem) => Attempt { status: None, retry_after: None, error: Some(problem) },
        None => post(dest, &envelope.id, event).await,
    };
    // No status (timeout, connection error, delivery not configured) is a retry.
    let outcome = classify(attempt.status);
    let ms = now_millis().saturating_sub(started);
    envelope.last_status = attempt.status;
    envelope.last_error.clone_from(&attempt.error);
    let status = match outcome {
        Outcome::Delivered => "delivered",
        _ => "retrying",
    };
    // An unconfigured `origin` is not a sick destination: its failures do not open the circuit.
    let breaker = if dest.problem().is_none() { circuit::after(env, dest, outcome, ms > SLOW_ATTEMPT_MS, now_seconds()) } else { None };
    let has_breaker = breaker.is_some();
    let step = eventlog::Step::Attempt { status, code: attempt.status, ms };
    let results = eventlog::record_attempt(env, &envelope, &envelope_json, step, breaker.into_iter().collect()).await;
    if has_breaker {
        if let Some(alert) = circuit::log_change(dest, before, results.last()) {
            super::alerts::enqueue(env, &[alert]).await;
        }
    }
    log(json!({
        "kind": "delivery_attempt",
        "id": envelope.id,
        "dest": dest.name,
        "provider": envelope.provider,
        "type": envelope.kind,
        "attempt": envelope.attempt,
        "status": attempt.status,
        "error": attempt.error,
        "outcome": format!("{outcome:?}").to_lowercase(),
        "ms": ms,
        "wasm_kib": wasm_kib(),
    }));

    match outcome {
        // A large event's R2 object stays for replay until the retention cron removes it.
        Outcome::Delivered => ack(msg, size),
        Outcome::Retry => {
            let jitter = getrandom::u32().map(|x| f64::from(x) / 4_294_967_296.0).unwrap_or(0.5);
            match next_delay(&dest.retry_schedule, envelope.attempt, attempt.retry_after, jitter) {
                Some(delay) => requeue(msg, &envelope, size, delay, env).await,
                None => dead_letter(msg, envelope, size, env).await,
            }
        }
        Outcome::Permanent => dead_letter(msg, envelope, size, env).await,
    }
}

/// Puts a delivery back, unattempted, while its destination's circuit is open.
/// The first hold marks its row `held`; later ones write nothing.
async fn hold(msg: &RawMessage, mut envelope: Envelope, envelope_json: &str, delay: u32, env: &Env) {
    if envelope.held == 0 {
        eventlog::record_attempt(env, &envelope, envelope_json, eventlog::Step::Held, Vec::new()).await;
    }
    log(json!({"kind": "delivery_held", "id": envelope.id, "dest": envelope.dest, "held": envelope.held + 1, "delay": delay}));
    envelope.held = envelope.held.saturating_add(1);
    requeue(msg, &envelope, envelope_json.len(), delay, env).await;
}

/// A message of 0.2, before destinations: one message per destination whose
/// filter takes the event, sent together, then the original is acked.
async fn fan_out(msg: &RawMessage, envelope: Envelope, size: usize, cfg: &Config, env: &Env) {
    let dests = cfg.takers(&envelope.provider, &envelope.kind);
    if dests.is_empty() {
        // Kept as `unrouted` (replayable by id), and no longer waiting for the `origin` migration 0003 made of it.
        log(json!({"kind": "unrouted", "id": envelope.id, "provider": envelope.provider, "type": envelope.kind}));
        if let Err(e) = eventlog::record_unrouted(env, &[&envelope]).await {
            log(json!({"kind": "event_log_failed", "stage": "unrouted", "id": envelope.id, "error": e.to_string()}));
            return retry_later(msg);
        }
        eventlog::forget_delivery(env, &envelope.id, LEGACY_NAME).await;
        return ack(msg, size);
    }
    // `origin` goes on where 0.2 left off; a destination new to the event starts at its first attempt.
    let out: Vec<Envelope> = envelope
        .fan_out(&dests)
        .into_iter()
        .map(|e| if e.dest.as_deref() == Some(LEGACY_NAME) { e } else { Envelope { attempt: 0, ..e } })
        .collect();
    let bodies: Vec<String> = out.iter().map(Envelope::to_json).collect();
    match send_all(env, &bodies).await {
        Ok(()) => {
            if !dests.contains(&LEGACY_NAME) {
                // Migration 0003 made the 0.2 event's row a delivery to `origin`, which no longer exists:
                // drop it, or the event would wait for it forever (and never expire).
                eventlog::forget_delivery(env, &envelope.id, LEGACY_NAME).await;
            }
            ack(msg, size)
        }
        Err(e) => {
            log(json!({"kind": "requeue_failed", "id": envelope.id, "error": e.to_string()}));
            retry_later(msg);
        }
    }
}

/// An event's JSON: inline in its envelope, or parts of an R2 object (see `large`).
enum EventJson {
    Inline(String),
    Stored { bucket: Bucket, key: String, parts: EventBody },
}

async fn load_event(envelope: &Envelope, env: &Env) -> Result<EventJson, String> {
    if let Some(raw) = &envelope.event {
        return Ok(EventJson::Inline(raw.get().to_string()));
    }
    let key = envelope.r2_key.clone().ok_or("the envelope has neither an event nor an R2 key")?;
    let bucket = env.bucket(BUCKET_PAYLOADS).map_err(|e| e.to_string())?;
    let bytes_key = r2_bytes_key(&key);
    ops::r2_class_b();
    let size = bucket
        .head(bytes_key.as_str())
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("R2 object {bytes_key} is missing"))?
        .size();
    let parts = if is_stored_parts(&key) {
        let header = read_range(&bucket, &key, 0, STORED_HEADER_LEN).await?;
        let len = manifest_len(&header).ok_or_else(|| format!("R2 object {key} is not a stored event"))?;
        parse_manifest(&read_range(&bucket, &key, STORED_HEADER_LEN, len).await?, size)?
    } else {
        // Stored by 0.1: the event's whole JSON.
        EventBody { parts: vec![Part::Body([0, size])] }
    };
    Ok(EventJson::Stored { bucket, key: bytes_key, parts })
}

/// `length` bytes of an R2 object from `offset`, as one buffer (for small ranges: the header and manifest).
async fn read_range(bucket: &Bucket, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    let mut stream = range_stream(bucket.clone(), key.to_string(), offset, length).await?;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    if out.len() as u64 != length {
        return Err(format!("R2 object {key} is shorter than its manifest says"));
    }
    Ok(out)
}

async fn range_stream(bucket: Bucket, key: String, offset: u64, length: u64) -> Result<ByteStream, String> {
    ops::r2_class_b();
    let object = bucket
        .get(key.as_str())
        .range(Range::OffsetWithLength { offset, length })
        .execute()
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("R2 object {key} is missing"))?;
    object.body().ok_or_else(|| format!("R2 object {key} has no body"))?.stream().map_err(|e| e.to_string())
}

type Chunks = Pin<Box<dyn Stream<Item = worker::Result<Vec<u8>>>>>;

/// The event's JSON as a stream of chunks: the literal parts, and the body
/// read from R2 one ascending run at a time (`large::read_plan`).
fn event_stream(bucket: &Bucket, key: &str, parts: &EventBody) -> Chunks {
    let (bucket, key) = (bucket.clone(), key.to_string());
    let each = move |read: Read| -> Chunks {
        match read {
            Read::Lit(s) => Box::pin(futures_util::stream::once(async move { Ok(s.into_bytes()) })),
            Read::Run { start, end, pieces } => {
                let (bucket, key) = (bucket.clone(), key.clone());
                Box::pin(
                    futures_util::stream::once(async move {
                        let bytes = range_stream(bucket, key, start, end - start).await.map_err(worker::Error::RustError)?;
                        Ok::<_, worker::Error>(run_output(bytes, RunCursor::new(start, pieces)))
                    })
                    .try_flatten(),
                )
            }
        }
    };
    Box::pin(futures_util::stream::iter(read_plan(&parts.parts)).map(each).flatten())
}

/// The chunks of one run's read, through its cursor, then its trailing literals.
fn run_output(bytes: ByteStream, cursor: RunCursor) -> Chunks {
    Box::pin(futures_util::stream::unfold((bytes, Some(cursor)), |(mut bytes, cursor)| async move {
        let mut cursor = cursor?;
        match bytes.next().await {
            Some(Ok(chunk)) => {
                let out = cursor.feed(&chunk);
                Some((Ok(out), (bytes, Some(cursor))))
            }
            Some(Err(e)) => Some((Err(e), (bytes, None))),
            None => Some((cursor.finish().map_err(worker::Error::RustError), (bytes, None))),
        }
    }))
}

/// The `webhook-signature` of a stored event: a first pass over its parts,
/// which also checks that they are as long as the manifest says (a short
/// body would otherwise break the second pass's fixed-length stream).
async fn sign_stored(
    dest: &Destination,
    id: &str,
    timestamp: i64,
    bucket: &Bucket,
    key: &str,
    parts: &EventBody,
) -> Result<String, String> {
    let mut signer = Signer::new(&dest.keys, id, timestamp);
    let mut stream = event_stream(bucket, key, parts);
    let mut read = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        read += chunk.len() as u64;
        signer.update(&chunk);
    }
    if read != parts.len() {
        return Err(format!("the stored event is {read} bytes, not the {} its manifest says", parts.len()));
    }
    Ok(signer.finish())
}

async fn post(dest: &Destination, id: &str, event: EventJson) -> Attempt {
    let failed = |error: String| Attempt { status: None, retry_after: None, error: Some(error) };
    let Some(url) = dest.url.as_deref() else { return failed("ORIGIN_URL is not set".into()) };
    let timestamp = now_seconds();
    // A stored event is signed in a first pass over R2 and streamed in a
    // second, so no copy of it is ever whole in memory.
    let (signature, body) = match event {
        EventJson::Inline(json) => (sign(&dest.keys, id, timestamp, json.as_bytes()), JsValue::from_str(&json)),
        EventJson::Stored { bucket, key, parts } => {
            let signature = match sign_stored(dest, id, timestamp, &bucket, &key, &parts).await {
                Ok(s) => s,
                Err(e) => return failed(format!("the stored event could not be read: {e}")),
            };
            let stream = FixedLengthStream::wrap(event_stream(&bucket, &key, &parts), parts.len());
            (signature, worker::worker_sys::FixedLengthStream::from(stream).readable().into())
        }
    };
    let headers = Headers::new();
    let set = [
        ("content-type", "application/json".to_string()),
        ("user-agent", USER_AGENT.to_string()),
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ];
    for (k, v) in &set {
        if let Err(e) = headers.set(k, v) {
            return failed(format!("could not set header {k}: {e}"));
        }
    }
    let mut init = RequestInit::new();
    // Redirects are not followed: a 3xx is the origin's answer, a permanent
    // failure (CONTRACT §5). Following one would log a GET's 200 as delivered,
    // or re-POST the signed event to wherever the Location points.
    init.with_method(Method::Post).with_headers(headers).with_redirect(RequestRedirect::Manual).with_body(Some(body));
    let request = match Request::new_with_init(url, &init) {
        Ok(r) => r,
        Err(e) => return failed(format!("the URL of destination {} could not be requested: {e}", dest.name)),
    };
    ops::subrequest();
    match fetch_with_timeout(request, dest.timeout_seconds).await {
        Ok(resp) => {
            let status = resp.status_code();
            let retry_after = resp.headers().get("retry-after").ok().flatten().and_then(|v| parse_retry_after(&v, timestamp));
            let error = (!(200..300).contains(&status)).then(|| format!("{} answered HTTP {status}", dest.name));
            Attempt { status: Some(status), retry_after, error }
        }
        Err(e) => failed(format!("{e} (the timeout of destination {} is {} s)", dest.name, dest.timeout_seconds)),
    }
}

async fn send(env: &Env, binding: &str, envelope: &Envelope, delay: Option<u32>) -> worker::Result<()> {
    let body = envelope.to_json();
    ops::queue_write(body.len());
    let mut builder = MessageBuilder::new(body).content_type(QueueContentType::Text);
    if let Some(d) = delay {
        builder = builder.delay_seconds(d);
    }
    env.queue(binding)?.send(builder.build()).await
}

/// Sends every body to the events queue, in as few batches as Queues allow.
pub async fn send_all(env: &Env, bodies: &[String]) -> worker::Result<()> {
    let queue = env.queue(QUEUE_EVENTS)?;
    for range in crate::pipeline::batches(&bodies.iter().map(String::len).collect::<Vec<_>>()) {
        let mut batch = BatchMessageBuilder::<String>::new();
        for body in &bodies[range] {
            ops::queue_write(body.len());
            batch = batch.message(MessageBuilder::new(body.clone()).content_type(QueueContentType::Text).build());
        }
        queue.send_batch(batch.build()).await?;
    }
    Ok(())
}

async fn requeue(msg: &RawMessage, envelope: &Envelope, size: usize, delay: u32, env: &Env) {
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

async fn dead_letter(msg: &RawMessage, envelope: Envelope, size: usize, env: &Env) {
    match send(env, QUEUE_DEAD_LETTERS, &envelope, None).await {
        Ok(()) => ack(msg, size),
        Err(e) => {
            log(json!({"kind": "dead_letter_failed", "id": envelope.id, "error": e.to_string()}));
            retry_later(msg);
        }
    }
}

/// Records a dead event in the event log (D1, status `dead`), where an
/// operator can list it and from where it can be replayed. Envelopes arrive
/// here from `dead_letter` (with the last status and error), or from the queue
/// itself when it gave up on a message after `max_retries` infrastructure failures.
/// Returns the alerts of what it recorded (one per destination).
async fn record_dead(msg: &RawMessage, cfg: Option<&Config>, env: &Env) -> Vec<Item> {
    let Some((mut envelope, text)) = envelope_of(msg) else { return Vec::new() };
    if envelope.last_error.is_none() {
        envelope.last_error = Some("the queue gave up after max_retries infrastructure failures".into());
    }
    // A message of 0.2 names no destination: it is dead at every destination that
    // takes it (so a bulk replay finds it), or at `origin` when none does.
    let dests: Vec<String> = match (&envelope.dest, cfg) {
        (Some(d), _) => vec![d.clone()],
        (None, Some(cfg)) => cfg.takers(&envelope.provider, &envelope.kind).into_iter().map(String::from).collect(),
        (None, None) => Vec::new(),
    };
    let dests = if dests.is_empty() { vec![LEGACY_NAME.to_string()] } else { dests };
    let mut result = Ok(());
    for d in &dests {
        let one = Envelope { dest: Some(d.clone()), ..envelope.clone() };
        if let Err(e) = eventlog::record_dead(env, &one).await {
            result = Err(e);
        }
    }
    match result {
        Ok(()) => {
            log(json!({"kind": "dead_letter", "id": envelope.id, "dest": dests, "provider": envelope.provider, "type": envelope.kind,
                       "attempts": envelope.attempt, "last_status": envelope.last_status, "last_error": envelope.last_error}));
            ack(msg, text.len());
            dests
                .into_iter()
                .map(|destination| Item::Dead {
                    id: envelope.id.clone(),
                    provider: envelope.provider.clone(),
                    r#type: envelope.kind.clone(),
                    destination,
                    error: envelope.last_error.clone(),
                })
                .collect()
        }
        Err(e) => {
            log(json!({"kind": "dead_letter_record_failed", "id": envelope.id, "error": e.to_string()}));
            retry_later(msg);
            Vec::new()
        }
    }
}
