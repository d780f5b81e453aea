//! The event log in D1 (`migrations/`): a row per event, written at its first
//! delivery step, a row per destination it goes to (`deliveries`), one per
//! attempt, dead letters, and retention. Writes that only serve operators are best effort (logged
//! on failure); the dead-letter record is not (its caller retries).

use super::env::{log, now_millis, now_seconds, BUCKET_PAYLOADS, D1_DATABASE};
use crate::admin::{delivery_rows, MATERIALISE};
use crate::delivery::{r2_bytes_key, r2_raw_key, Envelope};
use crate::destinations::LEGACY_NAME;
use crate::status::Status;
use serde_json::json;
use std::sync::LazyLock;
use worker::wasm_bindgen::JsValue;
use worker::{D1PreparedStatement, D1Result, Env, Result};

fn text(s: &str) -> JsValue {
    JsValue::from_str(s)
}

fn int(n: i64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn opt_text(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::NULL, JsValue::from_str)
}

/// What one step of a delivery writes.
pub enum Step {
    /// An attempt was made: its answer (`None`: no answer) and duration.
    Attempt { status: Status, code: Option<u16>, ms: u64 },
    /// Held back, unattempted, by the destination's open circuit.
    Held,
    /// Dead: the schedule ran out, or the destination refused it for good.
    Dead,
    /// Not sent: the destination's transform made nothing of the event.
    Filtered,
}

/// The delivery's row becomes, on conflict: after an attempt, one more attempt; held, only
/// its status; filtered, its status without the last answer; dead, the larger attempt count (the dead
/// letter's is since the last replay).
const ON_ATTEMPT: &str = "status = excluded.status, attempts = deliveries.attempts + 1, last_status = excluded.last_status, \
     last_error = excluded.last_error, updated_at = excluded.updated_at, \
     first_ok_ms = CASE WHEN deliveries.attempts = 0 THEN excluded.first_ok_ms ELSE deliveries.first_ok_ms END, \
     first_ok_status = CASE WHEN deliveries.attempts = 0 THEN excluded.first_ok_status ELSE deliveries.first_ok_status END, \
     first_ok_duration_ms = CASE WHEN deliveries.attempts = 0 THEN excluded.first_ok_duration_ms ELSE deliveries.first_ok_duration_ms END";
const ON_HELD: &str = "status = excluded.status, updated_at = excluded.updated_at";
const ON_FILTERED: &str = "status = excluded.status, last_status = NULL, last_error = NULL, updated_at = excluded.updated_at";
const ON_DEAD: &str =
    "status = excluded.status, attempts = MAX(deliveries.attempts, excluded.attempts), last_status = excluded.last_status, \
     last_error = excluded.last_error, updated_at = excluded.updated_at";

/// The event's status and attempts, summarising its deliveries `rows` (each a status and attempts):
/// unrouted without any, retrying while any is retrying or held, then queued
/// while any is, then dead if any died, filtered if every other was, else delivered. The retention cron reads
/// it, so an event is never removed while a destination still waits for it.
fn summary_of(rows: &str) -> String {
    use Status::*;
    format!(
        "(SELECT CASE WHEN COUNT(*) = 0 THEN {unrouted} WHEN SUM(status IN {waiting}) > 0 THEN {retrying} \
           WHEN SUM(status = {queued}) > 0 THEN {queued} WHEN SUM(status = {dead}) > 0 THEN {dead} \
           WHEN SUM(status = {delivered}) = 0 AND SUM(status = {filtered}) > 0 THEN {filtered} ELSE {delivered} END \
           FROM {rows} AS d), \
         (SELECT COALESCE(SUM(attempts), 0) FROM {rows} AS d)",
        unrouted = Unrouted.sql(),
        waiting = Status::sql_list(&[Retrying, Held]),
        retrying = Retrying.sql(),
        queued = Queued.sql(),
        dead = Dead.sql(),
        delivered = Delivered.sql(),
        filtered = Filtered.sql(),
    )
}

/// Brings an existing event's row up to date with its deliveries (`?2`: now).
pub static SUMMARY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE events SET (status, attempts) = ({}), updated_at = MAX(updated_at, ?2) WHERE id = ?1",
        summary_of(&delivery_rows("event_id = ?1"))
    )
});

/// This step is the event's first logged and a first attempt that succeeded, so its delivery is kept in
/// the event's row (`admin::deliveries`): `?{f}` is 1 for a successful attempt, event `?1` has no row yet,
/// and its delivery to `?{dest}` none either (a replay marked while retention removed the event would leave one).
fn own_step(f: u8, dest: u8) -> String {
    format!(
        "(?{f} = 1 AND NOT EXISTS (SELECT 1 FROM events WHERE id = ?1) \
          AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1 AND destination = ?{dest}))"
    )
}

/// Writes the event's row after its deliveries' rows: new (with the envelope,
/// for replay, and its delivery when it is its own: `?10` to `?13`, `own_step(14, 10)`),
/// or brought up to date, in one statement either way.
static EVENT_ROW: LazyLock<String> = LazyLock::new(|| {
    let own = own_step(14, 10);
    let rows = format!(
        "(SELECT status, attempts FROM {} UNION ALL SELECT {}, 1 WHERE {own})",
        delivery_rows("event_id = ?1"),
        Status::Delivered.sql()
    );
    format!(
        "INSERT INTO events (id, status, attempts, provider, type, received_at, received_ms, payload_ref, envelope, last_status, \
           last_error, updated_at, ok_destination, first_ok_ms, first_ok_status, first_ok_duration_ms) \
         SELECT ?1, {}, ?2, ?3, CAST(?4 AS INTEGER) / 1000, ?4, ?5, ?6, ?7, ?8, ?9, \
           CASE WHEN {own} THEN ?10 END, CASE WHEN {own} THEN ?11 END, CASE WHEN {own} THEN ?12 END, CASE WHEN {own} THEN ?13 END \
         WHERE true \
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts, \
           received_ms = COALESCE(events.received_ms, excluded.received_ms), \
           last_status = COALESCE(excluded.last_status, events.last_status), last_error = COALESCE(excluded.last_error, events.last_error), \
           updated_at = MAX(events.updated_at, excluded.updated_at)",
        summary_of(&rows)
    )
});

/// Deliveries waiting for their first attempt, to each destination of the JSON list `?2`; existing rows,
/// and a delivery kept in the event's row, are left as they are.
static QUEUED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO deliveries (event_id, destination, status, attempts, updated_at) \
         SELECT ?1, value, {}, 0, ?3 FROM json_each(?2) \
           WHERE NOT EXISTS (SELECT 1 FROM events WHERE id = ?1 AND ok_destination = value) \
         ON CONFLICT (event_id, destination) DO NOTHING",
        Status::Queued.sql()
    )
});

/// Records one step of `e`'s delivery to its destination, with `extra`
/// statements (the circuit's) in the same batch: a queued row for each other
/// destination the event was sent to, this delivery's row, the attempt, and
/// the event's row (new, with `envelope_json` for replay, or updated).
pub async fn record(env: &Env, e: &Envelope, envelope_json: &str, step: Step, extra: Vec<D1PreparedStatement>) -> Result<Vec<D1Result>> {
    let db = env.d1(D1_DATABASE)?;
    let now_ms = now_millis() as i64;
    let now = now_ms.div_euclid(1000);
    let dest = e.dest.as_deref().unwrap_or(LEGACY_NAME);
    let received_ms = e.received_ms().unwrap_or(now_ms);
    // A delivery kept in the event's row is copied into `deliveries` before this step changes it.
    let mut statements = vec![db.prepare(MATERIALISE.as_str()).bind(&[text(&e.id), text(dest)])?];
    // The other destinations the event went to, queued unless they have a row: one statement for any number.
    let others: Vec<&str> = e.dests.iter().map(String::as_str).filter(|d| *d != dest).collect();
    if !others.is_empty() {
        let list = serde_json::to_string(&others).unwrap_or_default();
        statements.push(db.prepare(QUEUED.as_str()).bind(&[text(&e.id), text(&list), int(now)])?);
    }
    let (status, attempts, on_conflict) = match step {
        Step::Attempt { status, .. } => (status, 1, ON_ATTEMPT),
        Step::Held => (Status::Held, 0, ON_HELD),
        Step::Filtered => (Status::Filtered, 0, ON_FILTERED),
        Step::Dead => (Status::Dead, i64::from(e.attempt), ON_DEAD),
    };
    let (last_status, last_error) = match step {
        Step::Held | Step::Filtered => (JsValue::NULL, JsValue::NULL),
        _ => (e.last_status.map_or(JsValue::NULL, |s| int(i64::from(s))), opt_text(e.last_error.as_deref())),
    };
    // A successful attempt, as the delivery row keeps it when it was the delivery's first (`first_ok_*`),
    // or the event's row when it is also the first step logged of the event (`own_step`).
    let first_ok = match step {
        Step::Attempt { status: Status::Delivered, code, ms } => {
            [int(now_ms), code.map_or(JsValue::NULL, |c| int(i64::from(c))), int(ms as i64)]
        }
        _ => [JsValue::NULL, JsValue::NULL, JsValue::NULL],
    };
    let ok = int(i64::from(matches!(step, Step::Attempt { status: Status::Delivered, .. })));
    statements.push(
        db.prepare(format!(
            "INSERT INTO deliveries (event_id, destination, status, attempts, last_status, last_error, updated_at, \
               first_ok_ms, first_ok_status, first_ok_duration_ms) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE NOT {} \
             ON CONFLICT (event_id, destination) DO UPDATE SET {on_conflict}",
            own_step(11, 2)
        ))
        .bind(&[
            text(&e.id),
            text(dest),
            text(status.as_str()),
            int(attempts),
            last_status.clone(),
            last_error.clone(),
            int(now),
            first_ok[0].clone(),
            first_ok[1].clone(),
            first_ok[2].clone(),
            ok.clone(),
        ])?,
    );
    if let Step::Attempt { code, ms, .. } = step {
        // Not when the delivery's row or the event's holds it (its first attempt, a success): failures, later attempts and replays.
        statements.push(
            db.prepare(format!(
                "INSERT OR REPLACE INTO delivery_attempts (event_id, destination, attempt, at_ms, status_code, duration_ms, error) \
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE NOT EXISTS (SELECT 1 FROM deliveries \
                   WHERE event_id = ?1 AND destination = ?2 AND attempts = 1 AND first_ok_ms IS NOT NULL) AND NOT {}",
                own_step(8, 2)
            ))
            .bind(&[
                text(&e.id),
                text(dest),
                int(i64::from(e.attempt)),
                int(now_ms),
                code.map_or(JsValue::NULL, |c| int(i64::from(c))),
                int(ms as i64),
                opt_text(e.last_error.as_deref()),
                ok.clone(),
            ])?,
        );
    }
    let [first_ok_ms, first_ok_status, first_ok_duration] = first_ok;
    statements.push(db.prepare(EVENT_ROW.as_str()).bind(&[
        text(&e.id),
        text(&e.provider),
        text(&e.kind),
        int(received_ms),
        opt_text(e.r2_key.as_deref()),
        text(envelope_json),
        last_status,
        last_error,
        int(now),
        text(dest),
        first_ok_ms,
        first_ok_status,
        first_ok_duration,
        ok,
    ])?);
    statements.extend(extra);
    let results = db.batch(statements).await?;
    super::ops::d1(&results);
    Ok(results)
}

/// Which of `deliveries` (each an event and its destination) are delivered already: one query for a
/// queue batch. Unreadable, none are (the delivery goes on: an origin may see it twice, never not at all).
pub async fn delivered<M, J>(env: &Env, deliveries: &[(M, Envelope, J)]) -> std::collections::HashSet<(String, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct Row {
        event_id: String,
        destination: String,
    }
    let pairs: Vec<(&str, &str)> = deliveries.iter().filter_map(|(_, e, _)| Some((e.id.as_str(), e.dest.as_deref()?))).collect();
    if pairs.is_empty() {
        return Default::default();
    }
    let list = serde_json::to_string(&pairs).unwrap_or_default();
    let read = async {
        let r = env
            .d1(D1_DATABASE)?
            .prepare(format!(
                "SELECT event_id, destination FROM {} AS d",
                delivery_rows(&format!(
                    "status = {} AND (event_id, destination) IN \
                     (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1))",
                    Status::Delivered.sql()
                ))
            ))
            .bind(&[text(&list)])?
            .all()
            .await?;
        super::ops::d1(std::slice::from_ref(&r));
        r.results::<Row>()
    };
    match read.await {
        Ok(rows) => rows.into_iter().map(|r| (r.event_id, Some(r.destination))).collect(),
        Err(e) => {
            log(json!({"kind": "event_log_unreadable", "stage": "delivered", "error": e.to_string()}));
            Default::default()
        }
    }
}

/// Records an attempt; the event log only serves operators, so a failure is logged, not retried.
pub async fn record_attempt(env: &Env, e: &Envelope, envelope_json: &str, step: Step, extra: Vec<D1PreparedStatement>) -> Vec<D1Result> {
    match record(env, e, envelope_json, step, extra).await {
        Ok(r) => r,
        Err(err) => {
            log(json!({"kind": "event_log_failed", "stage": "attempt", "id": e.id, "dest": e.dest, "error": err.to_string()}));
            Vec::new()
        }
    }
}

/// Events that no destination takes: their rows, status `unrouted`, with the envelope for a replay.
pub async fn record_unrouted(env: &Env, envelopes: &[&Envelope]) -> Result<()> {
    let db = env.d1(D1_DATABASE)?;
    let now_ms = now_millis() as i64;
    let statements = envelopes
        .iter()
        .map(|e| {
            db.prepare(UNROUTED.as_str()).bind(&[
                text(&e.id),
                text(&e.provider),
                text(&e.kind),
                int(e.received_ms().unwrap_or(now_ms)),
                opt_text(e.r2_key.as_deref()),
                text(&e.to_json()),
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    let results = db.batch(statements).await?;
    super::ops::d1(&results);
    Ok(())
}

/// The row of an event that no destination takes, bound to: id, provider, type,
/// when it was accepted (ms), its R2 key (or null), its envelope (for a replay).
static UNROUTED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO events (id, provider, type, received_at, received_ms, status, attempts, payload_ref, envelope, updated_at) \
         VALUES (?1, ?2, ?3, CAST(?4 AS INTEGER) / 1000, ?4, {}, 0, ?5, ?6, CAST(?4 AS INTEGER) / 1000) ON CONFLICT (id) DO NOTHING",
        Status::Unrouted.sql()
    )
});

/// A queue message that is no envelope, kept as a dead event (its provider and type `(malformed)`)
/// with its text as it came: listed among the dead letters, never replayable (it names nothing to deliver).
pub async fn record_malformed(env: &Env, id: &str, text: &str, why: &str) -> Result<()> {
    let db = env.d1(D1_DATABASE)?;
    let now_ms = now_millis() as i64;
    let result = db.prepare(MALFORMED.as_str()).bind(&[self::text(id), int(now_ms), self::text(text), self::text(why)])?.run().await?;
    super::ops::d1(std::slice::from_ref(&result));
    Ok(())
}

static MALFORMED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO events (id, provider, type, received_at, received_ms, status, attempts, envelope, last_error, updated_at) \
         VALUES (?1, '(malformed)', '(malformed)', CAST(?2 AS INTEGER) / 1000, ?2, {}, 0, ?3, ?4, CAST(?2 AS INTEGER) / 1000) \
         ON CONFLICT (id) DO NOTHING",
        Status::Dead.sql()
    )
});

/// Removes a delivery that can no longer happen (its destination is gone)
/// and brings the event's row up to date. Best effort: logged on failure.
pub async fn forget_delivery(env: &Env, id: &str, dest: &str) {
    let result = async {
        let db = env.d1(D1_DATABASE)?;
        let results = db
            .batch(vec![
                db.prepare("DELETE FROM deliveries WHERE event_id = ?1 AND destination = ?2").bind(&[text(id), text(dest)])?,
                db.prepare(SUMMARY.as_str()).bind(&[text(id), int(now_seconds())])?,
            ])
            .await?;
        super::ops::d1(&results);
        Ok::<_, worker::Error>(())
    }
    .await;
    if let Err(e) = result {
        log(json!({"kind": "event_log_failed", "stage": "forget", "id": id, "dest": dest, "error": e.to_string()}));
    }
}

/// Marks a delivery dead. Its caller retries the message when this fails.
pub async fn record_dead(env: &Env, e: &Envelope) -> Result<()> {
    record(env, e, &e.to_json(), Step::Dead, Vec::new()).await.map(|_| ())
}

/// The rows the retention cron may remove: finished (delivered or dead) and
/// untouched since `?1`. A queued or retrying event (a replay included) keeps
/// its row and its R2 payload however old it is, and a replay moves
/// `updated_at`, so an event replayed near the cutoff is not removed under it.
static EXPIRED: LazyLock<String> = LazyLock::new(|| {
    use Status::*;
    format!(
        "status IN {} AND updated_at < ?1 \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status IN {})",
        Status::sql_list(&[Delivered, Dead, Unrouted, Filtered]),
        Status::sql_list(&Status::UNFINISHED)
    )
});

/// Deletes the expired rows (see `EXPIRED`) with their attempts, and the R2
/// objects they reference; returns how many events were removed.
pub async fn remove_older_than(env: &Env, cutoff: i64) -> Result<usize> {
    let expired = EXPIRED.as_str();
    #[derive(serde::Deserialize)]
    struct Row {
        payload_ref: Option<String>,
    }
    let db = env.d1(D1_DATABASE)?;
    let refs: Vec<Row> = db
        .prepare(format!("SELECT payload_ref FROM events WHERE {expired} AND payload_ref IS NOT NULL"))
        .bind(&[int(cutoff)])?
        .all()
        .await?
        .results()?;
    // A large event is its manifest and, beside it, the request body (and received mail's raw message, if kept).
    let keys: Vec<String> = refs
        .into_iter()
        .filter_map(|r| r.payload_ref)
        .flat_map(|k| {
            let bytes = r2_bytes_key(&k);
            match bytes == k {
                true => vec![k],
                false => [Some(bytes), r2_raw_key(&k), Some(k)].into_iter().flatten().collect(),
            }
        })
        .collect();
    if !keys.is_empty() {
        let bucket = env.bucket(BUCKET_PAYLOADS)?;
        for chunk in keys.chunks(1000) {
            bucket.delete_multiple(chunk.to_vec()).await?;
        }
    }
    let results = db
        .batch(vec![
            db.prepare(format!("DELETE FROM delivery_attempts WHERE event_id IN (SELECT id FROM events WHERE {expired})"))
                .bind(&[int(cutoff)])?,
            db.prepare(format!("DELETE FROM deliveries WHERE event_id IN (SELECT id FROM events WHERE {expired})")).bind(&[int(cutoff)])?,
            db.prepare(format!("DELETE FROM events WHERE {expired}")).bind(&[int(cutoff)])?,
        ])
        .await?;
    super::ops::d1(&results);
    let removed = results.get(2).and_then(|r| r.meta().ok().flatten()).and_then(|m| m.changes).unwrap_or(0);
    Ok(removed)
}
