//! `POST /admin/replay`: deliveries sent again in bulk. Each page is claimed
//! in one statement (marked `queued` as it is picked), so two bulk replays at
//! once never pick, and never send, the same delivery.

use super::replay::{send_marked, undo, unknown_destination, Replay};
use super::{bind, rows, storage, with_extra, Answer};
use crate::admin::{filter_rules, has_own_delivery, materialise_where, EventQuery, SqlValue, OWN_DELIVERY};
use crate::config::Config;
use crate::delivery::Envelope;
use crate::edge::env::{now_seconds, D1_DATABASE};
use crate::edge::eventlog;
use crate::error::ApiError;
use crate::status::Status;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use worker::wasm_bindgen::JsValue;
use worker::Env;

/// Replays every delivery that matches the filters (`status=dead`, `filtered` or
/// `delivered`: a queued, held or retrying one is still on the queue, and a
/// replay would send it twice), each to its own destination, or only those of
/// `destination=`; with `status=unrouted`, the unrouted events that a
/// destination's filter takes now, to each that does (so not with `destination=`). Only deliveries that a
/// configured destination's filter still takes are picked; the others are
/// counted in `skipped`. `before=` (this Worker's clock; the answer says which
/// it used, and the CLI passes it back) leaves out deliveries that changed
/// since, so replays that fail again are not picked again and a loop over pages ends.
pub(super) async fn many(query: &str, cfg: &Config, env: &Env) -> Answer {
    let q = bulk_query(query, cfg)?;
    let picked = Picked::new(&q, cfg, false);
    // Delivered deliveries kept in their events' rows: the page's get rows of their own first, which the claim then marks.
    let own = (q.status == Some(Status::Delivered)).then(|| Picked::new(&q, cfg, true));
    if let Some(own) = &own {
        own.materialise(env, q.limit).await?;
    }
    let replays = match q.status {
        Some(Status::Unrouted) => picked.claim_unrouted(env, &q, cfg).await?,
        was => picked.claim(env, q.limit, was).await?,
    };
    let replayed: Vec<Value> = replays.iter().map(|r| json!({"id": r.envelope.id, "destination": r.envelope.dest})).collect();
    let mut ids: Vec<String> = replays.iter().map(|r| r.envelope.id.clone()).collect();
    ids.dedup();
    send_marked(env, &replays).await?;
    // Replayed deliveries are `queued` now, so what still matches is what is left.
    let mut remaining = picked.count(env, &picked.pick()).await?;
    let mut skipped = picked.skipped(env).await?;
    if let Some(own) = &own {
        remaining += own.count(env, &own.pick()).await?;
        for (all, more) in skipped.iter_mut().zip(own.skipped(env).await?) {
            *all += more;
        }
    }
    let [destination_removed, filter_no_longer_takes, no_stored_payload] = skipped;
    Ok((
        202,
        json!({"status": "replayed", "count": replays.len(), "ids": ids, "deliveries": replayed, "remaining": remaining,
               "before": crate::time::to_rfc3339(q.before.unwrap_or_default()),
               "skipped": {"destination_removed": destination_removed, "filter_no_longer_takes": filter_no_longer_takes,
                           "no_stored_payload": no_stored_payload}}),
    ))
}

/// The filters of a bulk replay, checked, with the Worker's own cut-off when none was given.
fn bulk_query(query: &str, cfg: &Config) -> Result<EventQuery, ApiError> {
    let mut q = EventQuery::parse(query)?;
    match q.status {
        Some(s) if Status::REPLAYABLE.contains(&s) || s == Status::Unrouted => {}
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "bulk replay takes status=dead, delivered, filtered or unrouted: a {other} delivery is still on its way, and a replay would send it twice"
            )))
        }
        None => return Err(ApiError::BadRequest("bulk replay needs a `status` filter, e.g. status=dead".into())),
    }
    if let Some(name) = &q.destination {
        if q.status == Some(Status::Unrouted) {
            // Sent to one, it would no longer be unrouted, and the others that take it would never find it.
            return Err(ApiError::BadRequest(format!(
                "bulk replay of unrouted events sends each to every destination that takes it now; leave out destination={name}"
            )));
        }
        cfg.destination(name).ok_or_else(|| unknown_destination(name, cfg))?;
    }
    q.before.get_or_insert(now_seconds() + 1);
    Ok(q)
}

/// What a bulk replay picks, as SQL: deliveries (`deliveries d JOIN events e`, or with `own`, those
/// kept in their events' rows, `events e`) of the filters whose destination is configured and still takes the event;
/// for `status=unrouted`, events (`events e`) that a configured destination takes now. Each destination's filter is in one bound JSON parameter.
struct Picked {
    from: &'static str,
    filter: String,
    params: Vec<SqlValue>,
    takes: String,
    configured: String,
}

const DELIVERIES: &str = "FROM deliveries d JOIN events e ON e.id = d.event_id";

/// The stored envelopes' bytes a page of a bulk replay reads at most (the first one whatever its size):
/// the Worker holds a page's envelopes at once, about three times their size in Wasm memory (measured:
/// 300 envelopes of 110 KB took 97 MB of the isolate's 128), so a page stops short of `limit` when
/// its events are large; `remaining` says what is left, and the CLI asks again.
const PAGE_BYTES: u64 = 8 * 1024 * 1024;

/// The envelope bytes of the rows before this one, in the page's order `order`.
fn bytes_before(order: &str) -> String {
    format!("COALESCE(SUM(length(e.envelope)) OVER (ORDER BY {order} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)")
}
const EVENTS: &str = "FROM events e";

impl Picked {
    fn new(q: &EventQuery, cfg: &Config, own: bool) -> Self {
        let unrouted = q.status == Some(Status::Unrouted);
        let (filter, mut params) = match (unrouted, own) {
            // An unrouted event has no delivery yet: `destination=` names where it goes, not what it had.
            (true, _) => EventQuery { destination: None, before: None, ..q.clone() }.where_clause(),
            (false, false) => q.delivery_where_clause(),
            (false, true) => {
                let (filter, params) = q.delivery_where_clause_in(&OWN_DELIVERY);
                let own = has_own_delivery("e");
                (if filter.is_empty() { format!(" WHERE {own}") } else { format!("{filter} AND {own}") }, params)
            }
        };
        params.push(SqlValue::Text(filter_rules(cfg)));
        let n = params.len();
        // An unrouted event is picked when any configured destination takes it.
        let name = match (unrouted, own) {
            (true, _) => "json_extract(r.value, '$.name')",
            (false, true) => OWN_DELIVERY.destination,
            (false, false) => "d.destination",
        };
        let rule = format!("FROM json_each(?{n}) r WHERE json_extract(r.value, '$.name') = {name}");
        let takes = format!(
            "EXISTS (SELECT 1 {rule} \
               AND (json_extract(r.value, '$.providers') IS NULL OR e.provider IN (SELECT value FROM json_each(json_extract(r.value, '$.providers')))) \
               AND (json_extract(r.value, '$.types') IS NULL OR EXISTS (SELECT 1 FROM json_each(json_extract(r.value, '$.types')) t \
                    WHERE e.type LIKE t.value ESCAPE '\\')) \
               AND (json_extract(r.value, '$.recipient_tags') IS NULL OR EXISTS (SELECT 1 \
                    FROM json_each(json_extract(r.value, '$.recipient_tags')) t WHERE json_extract(e.envelope, '$.tag') LIKE t.value ESCAPE '\\')))"
        );
        let configured = format!("EXISTS (SELECT 1 {rule})");
        Picked { from: if unrouted || own { EVENTS } else { DELIVERIES }, filter, params, takes, configured }
    }

    /// Copies into `deliveries` the first `limit` deliveries kept in their events' rows that this picks
    /// (an `own` pick), in the order a page is claimed: every one a page could claim.
    async fn materialise(&self, env: &Env, limit: u32) -> Result<(), ApiError> {
        let sql = materialise_where(&self.pick(), &format!("ORDER BY e.received_at, e.id LIMIT ?{}", self.params.len() + 1));
        let db = env.d1(D1_DATABASE).map_err(storage)?;
        let result = db.prepare(sql).bind(&with_extra(&self.params, &[u64::from(limit)])).map_err(storage)?.run().await.map_err(storage)?;
        crate::edge::ops::d1(std::slice::from_ref(&result));
        Ok(())
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

    /// Claims the next `limit` deliveries, oldest first: marks them `queued` in
    /// the statement that picks them, then brings their events' rows up to date
    /// and reads the envelopes, each for its own destination from its first attempt.
    async fn claim(&self, env: &Env, limit: u32, was: Option<Status>) -> Result<Vec<Replay>, ApiError> {
        #[derive(Deserialize)]
        struct Claimed {
            event_id: String,
            destination: String,
        }
        let n = self.params.len();
        let sql = format!(
            "UPDATE deliveries SET status = {queued}, updated_at = ?{now} WHERE status != {queued} AND (event_id, destination) IN \
             (SELECT event_id, destination FROM (SELECT d.event_id, d.destination, {} AS bytes_before {DELIVERIES}{} \
               ORDER BY e.received_at, e.id, d.destination LIMIT ?{limit}) WHERE bytes_before < ?{budget}) \
             RETURNING event_id, destination",
            bytes_before("e.received_at, e.id, d.destination"),
            self.pick(),
            queued = Status::Queued.sql(),
            limit = n + 1,
            now = n + 2,
            budget = n + 3,
        );
        let now = now_seconds();
        let claimed: Vec<Claimed> = rows(env, sql, &with_extra(&self.params, &[u64::from(limit), now as u64, PAGE_BYTES])).await?;
        let mut ids: Vec<&str> = claimed.iter().map(|c| c.event_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let envelopes = summarise_and_read(env, &ids, now).await;
        let (mut replays, mut unreadable) = (Vec::new(), Vec::new());
        for c in claimed {
            let envelope = envelopes.as_ref().ok().and_then(|all| all.get(&c.event_id).cloned());
            let readable = envelope.is_some();
            let envelope = envelope.unwrap_or_else(|| Envelope::header(&c.event_id, "", "", 0));
            let r = Replay { envelope: Envelope { dest: Some(c.destination.clone()), dests: vec![c.destination], ..envelope }, was };
            match readable {
                true => replays.push(r),
                false => unreadable.push(r),
            }
        }
        if let Err(e) = envelopes {
            undo(env, &unreadable).await;
            return Err(e);
        }
        // A stored envelope that no longer reads as one (an old version's): left as it was.
        undo(env, &unreadable).await;
        Ok(replays)
    }

    /// Claims the next unrouted events, oldest first (marked `queued` in the
    /// statement that picks them), each for every destination that takes it
    /// now; their deliveries are then marked `queued`.
    async fn claim_unrouted(&self, env: &Env, q: &EventQuery, cfg: &Config) -> Result<Vec<Replay>, ApiError> {
        #[derive(Deserialize)]
        struct Claimed {
            id: String,
            envelope: String,
        }
        let n = self.params.len();
        let sql = format!(
            "UPDATE events SET status = {queued}, updated_at = ?{now} WHERE status = {unrouted} AND id IN \
             (SELECT id FROM (SELECT e.id, {} AS bytes_before {EVENTS}{} ORDER BY e.received_at, e.id LIMIT ?{limit}) \
               WHERE bytes_before < ?{budget}) \
             RETURNING id, envelope",
            bytes_before("e.received_at, e.id"),
            self.pick(),
            queued = Status::Queued.sql(),
            unrouted = Status::Unrouted.sql(),
            limit = n + 1,
            now = n + 2,
            budget = n + 3,
        );
        let now = now_seconds();
        let claimed: Vec<Claimed> = rows(env, sql, &with_extra(&self.params, &[u64::from(q.limit), now as u64, PAGE_BYTES])).await?;
        let mut replays = Vec::new();
        let mut back = Vec::new();
        for c in claimed {
            let Ok(e) = serde_json::from_str::<Envelope>(&c.envelope) else {
                back.push(c.id);
                continue;
            };
            match cfg.takers(e.route()) {
                dests if dests.is_empty() => back.push(c.id),
                dests => replays.extend(e.for_replay().fan_out(&dests).into_iter().map(|envelope| Replay { envelope, was: None })),
            }
        }
        if !back.is_empty() {
            // Read but not replayable after all (its envelope, or a filter SQL and Rust read apart): unrouted again.
            let list = serde_json::to_string(&back).unwrap_or_default();
            let sql = format!("UPDATE events SET status = {} WHERE id IN (SELECT value FROM json_each(?1))", Status::Unrouted.sql());
            let db = env.d1(D1_DATABASE).map_err(storage)?;
            db.prepare(sql).bind(&[JsValue::from_str(&list)]).map_err(storage)?.run().await.map_err(storage)?;
        }
        super::replay::mark(env, replays).await
    }

    /// How many rows (deliveries, or unrouted events) match the filters and the `WHERE` clause `filtered`.
    async fn count(&self, env: &Env, filtered: &str) -> Result<i64, ApiError> {
        let n: Option<i64> = env
            .d1(D1_DATABASE)
            .map_err(storage)?
            .prepare(format!("SELECT COUNT(*) AS total {}{filtered}", self.from))
            .bind(&bind(&self.params))
            .map_err(storage)?
            .first(Some("total"))
            .await
            .map_err(storage)?;
        Ok(n.unwrap_or(0))
    }

    /// What matches the filters but is never picked, by reason: its destination removed, its filter no
    /// longer taking it, no stored payload.
    async fn skipped(&self, env: &Env) -> Result<[i64; 3], ApiError> {
        let (takes, configured) = (&self.takes, &self.configured);
        Ok([
            self.count(env, &self.filtered(&format!("NOT {configured}"))).await?,
            self.count(env, &self.filtered(&format!("{configured} AND NOT {takes}"))).await?,
            self.count(env, &self.filtered(&format!("{takes} AND e.envelope IS NULL"))).await?,
        ])
    }
}

/// Brings the claimed events' rows up to date (`queued`) and reads their envelopes, in one batch.
async fn summarise_and_read(env: &Env, ids: &[&str], now: i64) -> Result<HashMap<String, Envelope>, ApiError> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
        envelope: Option<String>,
    }
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let db = env.d1(D1_DATABASE).map_err(storage)?;
    let at = JsValue::from_f64(now as f64);
    let mut batch = Vec::new();
    for id in ids {
        batch.push(db.prepare(eventlog::SUMMARY.as_str()).bind(&[JsValue::from_str(id), at.clone()]).map_err(storage)?);
    }
    let list = serde_json::to_string(ids).unwrap_or_default();
    batch.push(
        db.prepare("SELECT id, envelope FROM events WHERE id IN (SELECT value FROM json_each(?1))")
            .bind(&[JsValue::from_str(&list)])
            .map_err(storage)?,
    );
    let results = db.batch(batch).await.map_err(storage)?;
    let rows: Vec<Row> = results.last().map(|r| r.results()).transpose().map_err(storage)?.unwrap_or_default();
    Ok(rows.into_iter().filter_map(|r| Some((r.id, serde_json::from_str::<Envelope>(&r.envelope?).ok()?.for_replay()))).collect())
}
