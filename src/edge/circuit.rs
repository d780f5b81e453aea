//! Each destination's circuit breaker, kept in D1 (`circuits`).
//!
//! D1, not KV: the breaker counts consecutive failures from many consumer
//! invocations at once and must let exactly `HALF_OPEN_PROBES` through per interval.
//! KV is eventually consistent (another location may not see a write for up
//! to 60 s) and takes one write per key per second, so counts would be lost
//! and several probes sent. D1 has one primary: an `UPDATE … SET failures =
//! failures + 1` is atomic, and a conditional `UPDATE … WHERE probe_at <= now`
//! is a claim that counts its winners. Its writes ride in the batch that writes
//! the event log anyway, and a batch reads every circuit in one query. A
//! Durable Object would also be consistent, at the price of a second storage
//! product, a request per delivery and its duration charges.

use super::env::{log, D1_DATABASE};
use crate::alerts::Item;
use crate::delivery::Outcome;
use crate::destinations::{Circuit, Destination, HALF_OPEN_PROBES, SLOW_LANE_QUIET_SECONDS};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use worker::wasm_bindgen::JsValue;
use worker::{D1PreparedStatement, D1Result, Env};

#[derive(Deserialize)]
struct Row {
    destination: String,
    open: i64,
    failures: i64,
    probe_at: Option<i64>,
    slow_until: Option<i64>,
}

impl Row {
    fn circuit(&self) -> Circuit {
        Circuit {
            open: self.open != 0,
            failures: u32::try_from(self.failures).unwrap_or(u32::MAX),
            probe_at: self.probe_at.unwrap_or(0),
            slow_until: self.slow_until.unwrap_or(0),
        }
    }
}

/// Every destination's circuit. When D1 cannot be read, every circuit counts
/// as closed: deliveries go on rather than wait for the breaker's storage.
pub async fn load(env: &Env) -> HashMap<String, Circuit> {
    let result = async {
        let r = env.d1(D1_DATABASE)?.prepare("SELECT destination, open, failures, probe_at, slow_until FROM circuits").all().await?;
        super::ops::d1(std::slice::from_ref(&r));
        r.results::<Row>()
    }
    .await;
    match result {
        Ok(rows) => rows.iter().map(|r| (r.destination.clone(), r.circuit())).collect(),
        Err(e) => {
            log(json!({"kind": "circuit_unreadable", "error": e.to_string()}));
            HashMap::new()
        }
    }
}

/// Claims one of the open circuit's probes due at or before `now`: true for
/// the `HALF_OPEN_PROBES` callers that win them; the last moves the next
/// probes an interval on. (A failed probe leaves `probe_at`: see `after`.)
pub async fn claim_probe(env: &Env, dest: &Destination, now: i64) -> bool {
    let result = async {
        let r = env
            .d1(D1_DATABASE)?
            .prepare(
                "UPDATE circuits SET probes = CASE WHEN probes + 1 >= ?4 THEN 0 ELSE probes + 1 END, \
                 probe_at = CASE WHEN probes + 1 >= ?4 THEN ?2 + ?3 ELSE probe_at END, updated_at = ?2 \
                 WHERE destination = ?1 AND open = 1 AND probe_at <= ?2",
            )
            .bind(&[
                JsValue::from_str(&dest.name),
                JsValue::from_f64(now as f64),
                JsValue::from_f64(f64::from(dest.circuit.probe_seconds)),
                JsValue::from_f64(f64::from(HALF_OPEN_PROBES)),
            ])?
            .run()
            .await?;
        super::ops::d1(std::slice::from_ref(&r));
        Ok::<_, worker::Error>(r.meta()?.and_then(|m| m.changes).unwrap_or(0) == 1)
    }
    .await;
    result.unwrap_or_else(|e| {
        log(json!({"kind": "circuit_unreadable", "dest": dest.name, "error": e.to_string()}));
        true
    })
}

/// The statement that records an attempt's outcome in the circuit, if any:
/// a success closes it (written only when it was not closed and clean), a
/// failure (no answer, 408, 429, 5xx) counts and opens it at the threshold
/// (its first probes an interval later; a failed probe of an open circuit
/// leaves them to `claim_probe`, so one poison event cannot use up the interval). A permanent
/// refusal (410, other 4xx) is an answer about one event, not the
/// destination's health: it neither counts nor closes. A failure, or a success
/// slower than `SLOW_ATTEMPT_MS` (`slow`), also keeps the destination in the
/// slow lane for `SLOW_LANE_QUIET_SECONDS`.
pub fn after(env: &Env, dest: &Destination, outcome: Outcome, slow: bool, now: i64) -> Option<D1PreparedStatement> {
    let db = env.d1(D1_DATABASE).ok()?;
    let name = JsValue::from_str(&dest.name);
    let now_v = JsValue::from_f64(now as f64);
    let quiet = JsValue::from_f64((now + SLOW_LANE_QUIET_SECONDS) as f64);
    let statement = match outcome {
        // Slow but delivered: closed and clean, and in the slow lane for a while.
        Outcome::Delivered if slow => db
            .prepare(
                "INSERT INTO circuits (destination, open, failures, slow_until, updated_at) VALUES (?1, 0, 0, ?3, ?2) \
                 ON CONFLICT (destination) DO UPDATE SET open = 0, failures = 0, opened_at = NULL, probe_at = NULL, probes = 0, slow_until = ?3, \
                 updated_at = ?2 RETURNING open, failures",
            )
            .bind(&[name, now_v, quiet]),
        Outcome::Delivered => db
            .prepare(
                "INSERT INTO circuits (destination, open, failures, updated_at) VALUES (?1, 0, 0, ?2) \
                 ON CONFLICT (destination) DO UPDATE SET open = 0, failures = 0, opened_at = NULL, probe_at = NULL, probes = 0, updated_at = ?2 \
                 WHERE circuits.open = 1 OR circuits.failures > 0 RETURNING open, failures",
            )
            .bind(&[name, now_v]),
        Outcome::Retry => db
            .prepare(
                "INSERT INTO circuits (destination, open, failures, opened_at, probe_at, slow_until, updated_at) \
                 VALUES (?1, ?3 <= 1, 1, CASE WHEN ?3 <= 1 THEN ?2 END, CASE WHEN ?3 <= 1 THEN ?2 + ?4 END, ?5, ?2) \
                 ON CONFLICT (destination) DO UPDATE SET failures = circuits.failures + 1, \
                   open = CASE WHEN circuits.failures + 1 >= ?3 THEN 1 ELSE circuits.open END, \
                   opened_at = CASE WHEN circuits.open = 0 AND circuits.failures + 1 >= ?3 THEN ?2 ELSE circuits.opened_at END, \
                   probe_at = CASE WHEN circuits.open = 0 AND circuits.failures + 1 >= ?3 THEN ?2 + ?4 ELSE circuits.probe_at END, \
                   probes = CASE WHEN circuits.open = 0 THEN 0 ELSE circuits.probes END, slow_until = ?5, updated_at = ?2 \
                 RETURNING open, failures",
            )
            .bind(&[
                name,
                now_v,
                JsValue::from_f64(f64::from(dest.circuit.failures)),
                JsValue::from_f64(f64::from(dest.circuit.probe_seconds)),
                quiet,
            ]),
        Outcome::Permanent => return None,
    };
    statement.ok()
}

/// Logs a circuit that changed state, from the result of `after`'s statement,
/// and returns the alert that says so.
pub fn log_change(dest: &Destination, before: Circuit, result: Option<&D1Result>) -> Option<Item> {
    #[derive(Deserialize)]
    struct After {
        open: i64,
        failures: i64,
    }
    let after = result.and_then(|r| r.results::<After>().ok()).and_then(|rows| rows.into_iter().next())?;
    if (after.open != 0) == before.open {
        return None;
    }
    let kind = if after.open != 0 { "circuit_opened" } else { "circuit_closed" };
    log(json!({"kind": kind, "dest": dest.name, "failures": after.failures}));
    // `before` is the batch's view: other failures of the same batch also see it closed. Only
    // the attempt that reached the threshold tells; `alerts::message` keeps one line per destination besides.
    if after.open != 0 && after.failures != i64::from(dest.circuit.failures) {
        return None;
    }
    Some(if after.open != 0 {
        Item::CircuitOpen { destination: dest.name.clone(), failures: u32::try_from(after.failures).unwrap_or(u32::MAX) }
    } else {
        Item::CircuitClosed { destination: dest.name.clone() }
    })
}
