//! `POST /admin/events/{id}/replay` and `POST /admin/replay`: deliveries
//! sent again from their first attempt, each marked `queued` before it is sent.

use super::events::envelope_of;
use super::{bind, rows, storage, with_extra, Answer};
use crate::admin::{filter_rules, EventQuery, SqlValue};
use crate::config::Config;
use crate::delivery::Envelope;
use crate::edge::env::{log, now_seconds, D1_DATABASE};
use crate::edge::eventlog;
use crate::edge::queue::send_all;
use crate::error::ApiError;
use crate::status::Status;
use serde::Deserialize;
use serde_json::{json, Value};
use worker::wasm_bindgen::JsValue;
use worker::Env;

/// Replays one event to `destination=` of the query, or to every destination whose filter takes it.
pub(super) async fn one(id: &str, query: &str, cfg: &Config, env: &Env) -> Answer {
    #[derive(Deserialize)]
    struct Delivery {
        destination: String,
        status: Status,
    }
    let q = EventQuery::parse(query)?;
    let (row, envelope) = envelope_of(id, env).await?;
    let env_json = envelope.ok_or_else(|| ApiError::BadRequest(format!("{id} has no stored payload to replay")))?;
    let envelope = serde_json::from_str::<Envelope>(&env_json)
        .map_err(|_| ApiError::BadRequest(format!("{id}'s stored payload cannot be read; it cannot be replayed")))?;
    let dests: Vec<&str> = match &q.destination {
        Some(name) => {
            let d = cfg.destination(name).ok_or_else(|| unknown_destination(name, cfg))?;
            if !d.takes(&row.provider, &row.kind) {
                return Err(ApiError::BadRequest(format!(
                    "destination {name:?}'s filter does not take {} events from {}; replay it to a destination that does",
                    row.kind, row.provider
                )));
            }
            vec![d.name.as_str()]
        }
        None => cfg.takers(&row.provider, &row.kind),
    };
    if dests.is_empty() {
        return Err(ApiError::BadRequest(format!("no destination's filter takes {} events from {}", row.kind, row.provider)));
    }
    let before: Vec<Delivery> =
        rows(env, "SELECT destination, status FROM deliveries WHERE event_id = ?1".into(), &[JsValue::from_str(id)]).await?;
    let replays = envelope
        .for_replay()
        .fan_out(&dests)
        .into_iter()
        .map(|e| {
            let was = before.iter().find(|d| Some(d.destination.as_str()) == e.dest.as_deref()).map(|d| d.status);
            (e, was)
        })
        .collect();
    enqueue_replays(env, replays).await?;
    Ok((202, json!({"status": "replayed", "ids": [id], "destinations": dests})))
}

fn unknown_destination(name: &str, cfg: &Config) -> ApiError {
    let known: Vec<&str> = cfg.destinations.iter().map(|d| d.name.as_str()).collect();
    ApiError::BadRequest(format!("there is no destination {name:?}; the destinations are {}", known.join(", ")))
}

/// Replays every delivery that matches the filters (`status=dead` or
/// `delivered`: a queued, held or retrying one is still on the queue, and a
/// replay would send it twice), each to its own destination, or only those of
/// `destination=`. Only deliveries that a configured destination's filter
/// still takes are picked; the others are counted in `skipped`. `before=`
/// (this Worker's clock; the answer says which it used, and the CLI passes it
/// back) leaves out deliveries that changed since, so replays that fail again
/// are not picked again and a loop over pages ends.
pub(super) async fn many(query: &str, cfg: &Config, env: &Env) -> Answer {
    let q = bulk_query(query, cfg)?;
    let picked = Picked::new(&q, cfg);
    let replays = picked.next_page(env, q.limit).await?;
    let replayed: Vec<Value> = replays.iter().map(|(e, _)| json!({"id": e.id, "destination": e.dest})).collect();
    let mut ids: Vec<String> = replays.iter().map(|(e, _)| e.id.clone()).collect();
    ids.dedup();
    let count = replays.len();
    enqueue_replays(env, replays).await?;
    // Replayed deliveries are `queued` now, so what still matches is what is left.
    let remaining = picked.count(env, &picked.pick()).await?;
    Ok((
        202,
        json!({"status": "replayed", "count": count, "ids": ids, "deliveries": replayed, "remaining": remaining,
               "before": crate::time::to_rfc3339(q.before.unwrap_or_default()), "skipped": picked.skipped(env).await?}),
    ))
}

/// The filters of a bulk replay, checked, with the Worker's own cut-off when none was given.
fn bulk_query(query: &str, cfg: &Config) -> Result<EventQuery, ApiError> {
    let mut q = EventQuery::parse(query)?;
    match q.status {
        Some(s) if Status::REPLAYABLE.contains(&s) => {}
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
            "bulk replay takes status=dead or status=delivered: a {other} delivery is still on its way, and a replay would send it twice"
        )))
        }
        None => return Err(ApiError::BadRequest("bulk replay needs a `status` filter, e.g. status=dead".into())),
    }
    if let Some(name) = &q.destination {
        cfg.destination(name).ok_or_else(|| unknown_destination(name, cfg))?;
    }
    q.before.get_or_insert(now_seconds() + 1);
    Ok(q)
}

/// The deliveries a bulk replay picks, as SQL over `deliveries d JOIN events e`:
/// those of the filters whose destination is configured and still takes the
/// event (each configured destination's filter is one bound JSON parameter).
struct Picked {
    filter: String,
    params: Vec<SqlValue>,
    takes: String,
    configured: String,
}

const PICKED_FROM: &str = "FROM deliveries d JOIN events e ON e.id = d.event_id";

impl Picked {
    fn new(q: &EventQuery, cfg: &Config) -> Self {
        let (filter, mut params) = q.delivery_where_clause();
        params.push(SqlValue::Text(filter_rules(cfg)));
        let n = params.len();
        let takes = format!(
            "EXISTS (SELECT 1 FROM json_each(?{n}) r WHERE json_extract(r.value, '$.name') = d.destination \
               AND (json_extract(r.value, '$.providers') IS NULL OR e.provider IN (SELECT value FROM json_each(json_extract(r.value, '$.providers')))) \
               AND (json_extract(r.value, '$.types') IS NULL OR EXISTS (SELECT 1 FROM json_each(json_extract(r.value, '$.types')) t \
                    WHERE e.type LIKE t.value ESCAPE '\\')))"
        );
        let configured = format!("EXISTS (SELECT 1 FROM json_each(?{n}) r WHERE json_extract(r.value, '$.name') = d.destination)");
        Picked { filter, params, takes, configured }
    }

    /// The filters' `WHERE` with `cond` added.
    fn filtered(&self, cond: &str) -> String {
        if self.filter.is_empty() {
            format!(" WHERE {cond}")
        } else {
            format!("{} AND {cond}", self.filter)
        }
    }

    /// What is picked: taken by a configured destination, with a stored payload to replay.
    fn pick(&self) -> String {
        self.filtered(&format!("{} AND e.envelope IS NOT NULL", self.takes))
    }

    /// The next `limit` deliveries to replay, oldest first, each as its envelope from the first attempt and its status before.
    async fn next_page(&self, env: &Env, limit: u32) -> Result<Vec<(Envelope, Option<Status>)>, ApiError> {
        #[derive(Deserialize)]
        struct Row {
            destination: String,
            status: Status,
            envelope: String,
        }
        let sql = format!(
            "SELECT d.destination, d.status, e.envelope {PICKED_FROM}{} ORDER BY e.received_at, e.id, d.destination LIMIT ?{}",
            self.pick(),
            self.params.len() + 1
        );
        let found: Vec<Row> = rows(env, sql, &with_extra(&self.params, &[u64::from(limit)])).await?;
        Ok(found
            .into_iter()
            .filter_map(|r| {
                let e = serde_json::from_str::<Envelope>(&r.envelope).ok()?.for_replay();
                Some((Envelope { dest: Some(r.destination.clone()), dests: vec![r.destination], ..e }, Some(r.status)))
            })
            .collect())
    }

    /// How many deliveries match the filters and the `WHERE` clause `filtered`.
    async fn count(&self, env: &Env, filtered: &str) -> Result<i64, ApiError> {
        let n: Option<i64> = env
            .d1(D1_DATABASE)
            .map_err(storage)?
            .prepare(format!("SELECT COUNT(*) AS total {PICKED_FROM}{filtered}"))
            .bind(&bind(&self.params))
            .map_err(storage)?
            .first(Some("total"))
            .await
            .map_err(storage)?;
        Ok(n.unwrap_or(0))
    }

    /// The deliveries that match the filters but are never picked, by reason.
    async fn skipped(&self, env: &Env) -> Result<Value, ApiError> {
        let (takes, configured) = (&self.takes, &self.configured);
        Ok(json!({
            "destination_removed": self.count(env, &self.filtered(&format!("NOT {configured}"))).await?,
            "filter_no_longer_takes": self.count(env, &self.filtered(&format!("{configured} AND NOT {takes}"))).await?,
            "no_stored_payload": self.count(env, &self.filtered(&format!("{takes} AND e.envelope IS NULL"))).await?,
        }))
    }
}

/// Sends each envelope (one event to one destination; with the delivery's
/// status before, if it had a row) again from its first attempt. Each
/// delivery is marked `queued` first, so no consumer can have touched it yet;
/// if a send fails, the marks of the deliveries not sent are undone, and the
/// answer says how many went out (a retry picks up the rest: the sent ones are `queued`).
async fn enqueue_replays(env: &Env, replays: Vec<(Envelope, Option<Status>)>) -> std::result::Result<(), ApiError> {
    let total = replays.len();
    let mut done = 0;
    let failed = |e: &dyn std::fmt::Display, done: usize| {
        log(json!({"kind": "replay_failed", "replayed": done, "of": total, "error": e.to_string()}));
        ApiError::Unavailable(match done {
            0 => "could not enqueue the replay; nothing was replayed, please retry".into(),
            n => format!(
                "could not enqueue the whole replay: {n} of {total} deliveries were replayed, the others are as they were; please retry"
            ),
        })
    };
    let unavailable = |e: worker::Error| failed(&e, 0);
    let db = env.d1(D1_DATABASE).map_err(unavailable)?;
    let bodies: Vec<String> = replays.iter().map(|(e, _)| e.to_json()).collect();
    for range in crate::pipeline::batches(&bodies.iter().map(String::len).collect::<Vec<_>>()) {
        let chunk = &replays[range.clone()];
        let at = JsValue::from_f64(now_seconds() as f64);
        let key = |e: &Envelope| (JsValue::from_str(&e.id), JsValue::from_str(e.dest.as_deref().unwrap_or_default()));
        let mut marks = Vec::new();
        for (e, _) in chunk {
            let (id, dest) = key(e);
            marks.push(db.prepare(replayed_sql()).bind(&[id.clone(), dest, at.clone()]).map_err(unavailable)?);
            marks.push(db.prepare(eventlog::SUMMARY.as_str()).bind(&[id, at.clone()]).map_err(unavailable)?);
        }
        db.batch(marks).await.map_err(|e| failed(&e, done))?;
        if let Err(partial) = send_all(env, &bodies[range]).await {
            let mut undo = Vec::new();
            for (e, was) in chunk.iter().skip(partial.sent) {
                let (id, dest) = key(e);
                let statement = match was {
                    Some(was) => db.prepare(undo_sql(true)).bind(&[id.clone(), dest, JsValue::from_str(was.as_str())]),
                    None => db.prepare(undo_sql(false)).bind(&[id.clone(), dest]),
                };
                undo.push(statement.map_err(|e| failed(&e, done + partial.sent))?);
                undo.push(db.prepare(eventlog::SUMMARY.as_str()).bind(&[id, at.clone()]).map_err(|e| failed(&e, done + partial.sent))?);
            }
            if let Err(u) = db.batch(undo).await {
                // Left `queued` with nothing on the queue: `replay --dead` no longer finds them, `status=queued` does.
                log(json!({"kind": "event_log_failed", "stage": "replay_undo", "error": u.to_string()}));
            }
            return Err(failed(&partial, done + partial.sent));
        }
        for (e, _) in chunk {
            log(json!({"kind": "replay", "id": e.id, "dest": e.dest}));
        }
        done += chunk.len();
    }
    Ok(())
}

/// A replayed delivery is queued again (a row is made for a destination new to the event).
fn replayed_sql() -> String {
    let queued = Status::Queued.sql();
    format!(
        "INSERT INTO deliveries (event_id, destination, status, attempts, updated_at) VALUES (?1, ?2, {queued}, 0, ?3) \
         ON CONFLICT (event_id, destination) DO UPDATE SET status = {queued}, updated_at = ?3"
    )
}

/// Undoes `replayed_sql` after a failed send: the status it had (`?3`), or no row. (`updated_at` keeps the
/// replay's time, which only delays the retention cron.)
fn undo_sql(had_row: bool) -> String {
    let queued = Status::Queued.sql();
    match had_row {
        true => format!("UPDATE deliveries SET status = ?3 WHERE event_id = ?1 AND destination = ?2 AND status = {queued}"),
        false => format!("DELETE FROM deliveries WHERE event_id = ?1 AND destination = ?2 AND status = {queued} AND attempts = 0"),
    }
}
