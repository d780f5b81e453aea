//! One delivery, step by step: to its destination's lane, through its
//! circuit's gate, one attempt, its record, and what happens next (acked,
//! retried on the schedule, or dead). Messages of 0.2 fan out first.

use super::post::{post, prepare, Attempt, Prepared};
use super::stored::{as_taken, load_event};
use super::{ack, dead_letter, requeue, retry_later};
use crate::config::Config;
use crate::delivery::{classify, next_delay, Envelope, Outcome};
use crate::destinations::{gate, in_slow_lane, Circuit, Destination, Gate, LEGACY_NAME, SLOW_ATTEMPT_MS};
use crate::edge::env::{log, now_millis, now_seconds, wasm_kib, QUEUE_SLOW_EVENTS};
use crate::edge::queue::{send, send_all};
use crate::edge::{alerts, circuit, eventlog};
use crate::status::Status;
use serde_json::json;
use std::collections::HashMap;
use worker::{Env, RawMessage};

/// A delivery being handled: its message, its envelope and the envelope's JSON (what acking it costs, and its event-log record).
struct Delivery<'a> {
    msg: &'a RawMessage,
    envelope: Envelope,
    json: String,
    env: &'a Env,
}

impl Delivery<'_> {
    fn ack(&self) {
        ack(self.msg, self.json.len());
    }

    async fn requeue(&self, delay: u32) {
        requeue(self.msg, &self.envelope, self.json.len(), delay, self.env).await
    }

    async fn dead(self) {
        dead_letter(self.msg, self.envelope, self.json.len(), self.env).await
    }
}

pub async fn deliver(msg: &RawMessage, envelope: Envelope, json: String, cfg: &Config, env: &Env, circuits: &HashMap<String, Circuit>) {
    let mut d = Delivery { msg, envelope, json, env };
    let Some(name) = d.envelope.dest.clone() else { return fan_out(d, cfg).await };
    let Some(dest) = cfg.destination(&name) else {
        // Removed from the configuration: nothing here can deliver it. Dead, so
        // an operator sees it and can replay it to another destination.
        d.envelope.last_status = None;
        d.envelope.last_error = Some(format!("destination {name:?} is no longer configured; replay the event to another destination"));
        return d.dead().await;
    };
    let circuit = circuits.get(&dest.name).copied().unwrap_or_default();
    let now = now_seconds();
    if moved_to_slow_lane(&d, dest, circuit, now).await || !through_gate(&mut d, dest, circuit, now).await {
        return;
    }
    attempt(d, dest, circuit, cfg).await
}

/// A delivery to a destination that is failing or slow moves, unattempted and
/// uncounted, to the slow lane (see `super::lane`), which attempts it.
async fn moved_to_slow_lane(d: &Delivery<'_>, dest: &Destination, circuit: Circuit, now: i64) -> bool {
    if d.envelope.slow || !in_slow_lane(circuit, now) {
        return false;
    }
    let moved = Envelope { slow: true, ..d.envelope.clone() };
    match send(d.env, QUEUE_SLOW_EVENTS, &moved, None).await {
        Ok(()) => {
            d.ack();
            true
        }
        Err(e) => {
            log(json!({"kind": "slow_lane_unavailable", "id": d.envelope.id, "dest": dest.name, "error": e.to_string()}));
            false
        }
    }
}

/// True when the circuit lets this delivery be attempted now (closed, or this
/// one won the probe); otherwise it is put back for later, unattempted.
async fn through_gate(d: &mut Delivery<'_>, dest: &Destination, circuit: Circuit, now: i64) -> bool {
    let delay = match gate(circuit, dest.circuit, now, d.envelope.held) {
        Gate::Send => return true,
        Gate::Probe if circuit::claim_probe(d.env, dest, now).await => {
            log(json!({"kind": "circuit_probe", "dest": dest.name, "id": d.envelope.id}));
            return true;
        }
        // Another delivery won this probe; wait for the next.
        Gate::Probe => {
            match gate(Circuit { probe_at: now + i64::from(dest.circuit.probe_seconds), ..circuit }, dest.circuit, now, d.envelope.held) {
                Gate::Hold(delay) => delay,
                Gate::Send | Gate::Probe => {
                    retry_later(d.msg);
                    return false;
                }
            }
        }
        Gate::Hold(delay) => delay,
    };
    hold(d, delay).await;
    false
}

/// Puts a delivery back, unattempted, while its destination's circuit is open.
/// The first hold marks its row `held`; later ones write nothing.
async fn hold(d: &mut Delivery<'_>, delay: u32) {
    if d.envelope.held == 0 {
        eventlog::record_attempt(d.env, &d.envelope, &d.json, eventlog::Step::Held, Vec::new()).await;
    }
    log(json!({"kind": "delivery_held", "id": d.envelope.id, "dest": d.envelope.dest, "held": d.envelope.held + 1, "delay": delay}));
    d.envelope.held = d.envelope.held.saturating_add(1);
    d.requeue(delay).await;
}

/// One attempt: the event read, POSTed, recorded, and settled.
async fn attempt(mut d: Delivery<'_>, dest: &Destination, circuit: Circuit, cfg: &Config) {
    let event = match load_event(&d.envelope, d.env).await {
        Ok(j) => as_taken(j, dest, &d.envelope, cfg, now_seconds()),
        Err(e) => {
            log(json!({"kind": "event_unreadable", "id": d.envelope.id, "dest": dest.name, "error": e}));
            return retry_later(d.msg);
        }
    };
    // Made into the destination's shape first: what its transform filters out is not an attempt.
    let console = cfg.public_url.as_deref().map(|u| format!("{u}/console/"));
    let ready = match prepare(dest, &d.envelope.provider, event, console.as_deref()).await {
        Prepared::Ready(event, framing) => Ok((event, framing)),
        Prepared::Filtered => return filtered(d, dest).await,
        Prepared::Later(e) => {
            log(json!({"kind": "event_unreadable", "id": d.envelope.id, "dest": dest.name, "error": e}));
            return retry_later(d.msg);
        }
        Prepared::Dead(e) => Err(Attempt { hopeless: true, error: Some(e), ..Attempt::failed(String::new()) }),
        Prepared::Failed(e) => Err(Attempt::failed(e)),
    };
    d.envelope.attempt += 1;
    let started = now_millis();
    let answer = match (dest.problem(), ready) {
        (Some(problem), _) => Attempt::failed(problem),
        (None, Err(answer)) => answer,
        (None, Ok((event, framing))) => post(dest, &d.envelope.id, event, framing).await,
    };
    let ms = now_millis().saturating_sub(started);
    // No status (timeout, connection error, delivery not configured) is a retry; an event that cannot be made
    // into the destination's format is dead at once.
    let outcome = if answer.hopeless { Outcome::Permanent } else { classify(answer.status) };
    d.envelope.last_status = answer.status;
    d.envelope.last_error.clone_from(&answer.error);
    record(&d, dest, circuit, outcome, answer.status, ms).await;
    log(json!({
        "kind": "delivery_attempt",
        "id": d.envelope.id,
        "dest": dest.name,
        "provider": d.envelope.provider,
        "type": d.envelope.kind,
        "attempt": d.envelope.attempt,
        "status": answer.status,
        "error": answer.error,
        "outcome": format!("{outcome:?}").to_lowercase(),
        "ms": ms,
        "wasm_kib": wasm_kib(),
    }));
    settle(d, dest, outcome, answer.retry_after).await
}

/// The attempt in the event log, with the circuit's change in the same batch, and an alert when the circuit opened or closed.
async fn record(d: &Delivery<'_>, dest: &Destination, before: Circuit, outcome: Outcome, code: Option<u16>, ms: u64) {
    let status = if outcome == Outcome::Delivered { Status::Delivered } else { Status::Retrying };
    // An unconfigured `origin` is not a sick destination: its failures do not open the circuit. (Nor does a
    // permanent outcome, such as a transform's failure: `circuit::after` leaves the circuit for those.)
    let breaker = match dest.problem() {
        None => circuit::after(d.env, dest, outcome, ms > SLOW_ATTEMPT_MS, now_seconds()),
        Some(_) => None,
    };
    let has_breaker = breaker.is_some();
    let step = eventlog::Step::Attempt { status, code, ms };
    let results = eventlog::record_attempt(d.env, &d.envelope, &d.json, step, breaker.into_iter().collect()).await;
    if has_breaker {
        if let Some(alert) = circuit::log_change(dest, before, results.last()) {
            alerts::enqueue(d.env, &[alert]).await;
        }
    }
}

/// A delivery its destination's transform made nothing of: recorded as `filtered` and acked (tried again
/// when the record cannot be written, so the event never waits for it).
async fn filtered(d: Delivery<'_>, dest: &Destination) {
    if let Err(e) = eventlog::record(d.env, &d.envelope, &d.json, eventlog::Step::Filtered, Vec::new()).await {
        log(json!({"kind": "event_log_failed", "stage": "filtered", "id": d.envelope.id, "dest": dest.name, "error": e.to_string()}));
        return retry_later(d.msg);
    }
    log(
        json!({"kind": "delivery_filtered", "id": d.envelope.id, "dest": dest.name, "provider": d.envelope.provider, "type": d.envelope.kind}),
    );
    d.ack();
}

/// After the attempt: acked when delivered (a large event's R2 objects stay
/// for replay until the retention cron removes them), retried on the
/// destination's schedule, or dead when it ran out or the answer was final.
async fn settle(d: Delivery<'_>, dest: &Destination, outcome: Outcome, retry_after: Option<u32>) {
    match outcome {
        Outcome::Delivered => d.ack(),
        Outcome::Retry => {
            let jitter = getrandom::u32().map(|x| f64::from(x) / 4_294_967_296.0).unwrap_or(0.5);
            match next_delay(&dest.retry_schedule, d.envelope.attempt, retry_after, jitter) {
                Some(delay) => d.requeue(delay).await,
                None => d.dead().await,
            }
        }
        Outcome::Permanent => d.dead().await,
    }
}

/// A message of 0.2, before destinations: one message per destination whose
/// filter takes the event, sent together, then the original is acked.
async fn fan_out(d: Delivery<'_>, cfg: &Config) {
    let (envelope, env) = (&d.envelope, d.env);
    let dests = cfg.takers(envelope.route());
    if dests.is_empty() {
        // Kept as `unrouted` (replayable by id), and no longer waiting for the `origin` migration 0003 made of it.
        log(json!({"kind": "unrouted", "id": envelope.id, "provider": envelope.provider, "type": envelope.kind}));
        if let Err(e) = eventlog::record_unrouted(env, &[envelope]).await {
            log(json!({"kind": "event_log_failed", "stage": "unrouted", "id": envelope.id, "error": e.to_string()}));
            return retry_later(d.msg);
        }
        eventlog::forget_delivery(env, &envelope.id, LEGACY_NAME).await;
        return d.ack();
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
            d.ack()
        }
        Err(e) => {
            log(json!({"kind": "requeue_failed", "id": envelope.id, "error": e.to_string()}));
            retry_later(d.msg);
        }
    }
}
