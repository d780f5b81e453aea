//! `POST /admin/events/{id}/replay`: an event sent again from its first
//! attempt, each delivery marked `queued` before it is sent; and the marking,
//! sending and undoing that a bulk replay (`bulk.rs`) shares.

use super::events::envelope_of;
use super::{rows, Answer};
use crate::admin::{delivery_rows, EventQuery, MATERIALISE};
use crate::config::Config;
use crate::delivery::Envelope;
use crate::edge::env::{log, now_seconds, D1_DATABASE};
use crate::edge::eventlog;
use crate::edge::queue::send_all;
use crate::error::ApiError;
use crate::status::Status;
use serde::Deserialize;
use serde_json::json;
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
    // What filters read, in words: its type, its provider and its recipient's tag.
    let what = match &envelope.tag {
        Some(tag) => format!("{} events from {} with the recipient tag {tag:?}", row.kind, row.provider),
        None => format!("{} events from {} (without a recipient tag)", row.kind, row.provider),
    };
    let dests: Vec<&str> = match &q.destination {
        Some(name) => {
            let d = cfg.destination(name).ok_or_else(|| unknown_destination(name, cfg))?;
            if !d.takes(envelope.route()) {
                return Err(ApiError::BadRequest(format!(
                    "destination {name:?}'s filter does not take {what}; replay it to a destination that does"
                )));
            }
            vec![d.name.as_str()]
        }
        None => cfg.takers(envelope.route()),
    };
    if dests.is_empty() {
        return Err(ApiError::BadRequest(format!("no destination's filter takes {what}")));
    }
    let before: Vec<Delivery> =
        rows(env, format!("SELECT destination, status FROM {} AS d", delivery_rows("event_id = ?1")), &[JsValue::from_str(id)]).await?;
    let replays = envelope
        .for_replay()
        .fan_out(&dests)
        .into_iter()
        .map(|envelope| {
            let was = before.iter().find(|d| Some(d.destination.as_str()) == envelope.dest.as_deref()).map(|d| d.status);
            Replay { envelope, was }
        })
        .collect();
    let claimed = enqueue_replays(env, replays).await?;
    if claimed.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "every delivery of {id} to {} is still on its way (queued, held or retrying); a replay now would send it twice",
            dests.join(", ")
        )));
    }
    let replayed: Vec<&str> = claimed.iter().filter_map(|r| r.envelope.dest.as_deref()).collect();
    let on_their_way: Vec<&&str> = dests.iter().filter(|d| !replayed.contains(d)).collect();
    let mut body = json!({"status": "replayed", "ids": [id], "destinations": replayed});
    if !on_their_way.is_empty() {
        // Still queued, held or retrying there: not sent twice.
        body["on_their_way"] = json!(on_their_way);
    }
    Ok((202, body))
}

pub(super) fn unknown_destination(name: &str, cfg: &Config) -> ApiError {
    let known: Vec<&str> = cfg.destinations.iter().map(|d| d.name.as_str()).collect();
    ApiError::BadRequest(format!("there is no destination {name:?}; the destinations are {}", known.join(", ")))
}

/// A delivery to send again from its first attempt: its envelope (naming one
/// destination), and the status to put back if it is not sent (`None`: it had no row).
pub(super) struct Replay {
    pub envelope: Envelope,
    pub was: Option<Status>,
}

/// Marks each delivery `queued`, then sends those it claimed (`send_marked`); returns them.
async fn enqueue_replays(env: &Env, replays: Vec<Replay>) -> std::result::Result<Vec<Replay>, ApiError> {
    let claimed = mark(env, replays).await?;
    send_marked(env, &claimed).await?;
    Ok(claimed)
}

/// Claims each delivery for the replay: marks it `queued` (a row is made for a destination new
/// to the event) unless it is still on its way (queued, held or retrying: another replay, or the
/// consumer, has it), and brings its event's row up to date. Returns the deliveries it claimed;
/// all or none (what was claimed is undone if a batch fails).
pub(super) async fn mark(env: &Env, replays: Vec<Replay>) -> std::result::Result<Vec<Replay>, ApiError> {
    let total = replays.len();
    let db = env.d1(D1_DATABASE).map_err(|e| failed(&e, 0, total))?;
    let at = JsValue::from_f64(now_seconds() as f64);
    let mut claimed = Vec::new();
    let mut replays = replays.into_iter().peekable();
    while replays.peek().is_some() {
        let chunk: Vec<Replay> = replays.by_ref().take(100).collect();
        let mut marks = Vec::new();
        for r in &chunk {
            let (id, dest) = key(&r.envelope);
            // A delivery kept in its event's row gets a row of its own first, which the mark then changes.
            let own = db.prepare(MATERIALISE.as_str()).bind(&[id.clone(), dest.clone()]);
            marks.push(own.map_err(|e| failed(&e, 0, total))?);
            let mark = db.prepare(replayed_sql()).bind(&[id.clone(), dest, at.clone()]);
            marks.push(mark.map_err(|e| failed(&e, 0, total))?);
            marks.push(db.prepare(eventlog::SUMMARY.as_str()).bind(&[id, at.clone()]).map_err(|e| failed(&e, 0, total))?);
        }
        let results = match db.batch(marks).await {
            Ok(results) => results,
            Err(e) => {
                undo(env, &claimed).await;
                return Err(failed(&e, 0, total));
            }
        };
        for (i, r) in chunk.into_iter().enumerate() {
            let won = results.get(3 * i + 1).and_then(|res| res.results::<serde_json::Value>().ok()).is_some_and(|rows| !rows.is_empty());
            if won {
                claimed.push(r);
            }
        }
    }
    Ok(claimed)
}

/// Sends deliveries already marked `queued`, so no consumer can touch them
/// (no message names them yet). If a send fails, the marks of the deliveries
/// not sent are undone, and the answer says how many went out (a retry picks
/// up the rest: the sent ones are `queued`).
pub(super) async fn send_marked(env: &Env, replays: &[Replay]) -> std::result::Result<(), ApiError> {
    let bodies: Vec<String> = replays.iter().map(|r| r.envelope.to_json()).collect();
    let result = send_all(env, &bodies).await;
    let sent = result.as_ref().map_or_else(|p| p.sent, |_| replays.len());
    for r in &replays[..sent] {
        log(json!({"kind": "replay", "id": r.envelope.id, "dest": r.envelope.dest}));
    }
    match result {
        Ok(()) => Ok(()),
        Err(partial) => {
            undo(env, &replays[sent..]).await;
            Err(failed(&partial, sent, replays.len()))
        }
    }
}

/// Puts back the deliveries' statuses from before the replay (or removes the rows it made), best effort.
pub(super) async fn undo(env: &Env, replays: &[Replay]) {
    let at = JsValue::from_f64(now_seconds() as f64);
    let result = async {
        let db = env.d1(D1_DATABASE)?;
        for chunk in replays.chunks(100) {
            let mut undo = Vec::new();
            for r in chunk {
                let (id, dest) = key(&r.envelope);
                undo.push(match r.was {
                    Some(was) => db.prepare(undo_sql(true)).bind(&[id.clone(), dest, JsValue::from_str(was.as_str())])?,
                    None => db.prepare(undo_sql(false)).bind(&[id.clone(), dest])?,
                });
                undo.push(db.prepare(eventlog::SUMMARY.as_str()).bind(&[id, at.clone()])?);
            }
            db.batch(undo).await?;
        }
        Ok::<(), worker::Error>(())
    };
    if let Err(e) = result.await {
        // Left `queued` with nothing on the queue: `replay --dead` no longer finds them, `status=queued` does.
        log(json!({"kind": "event_log_failed", "stage": "replay_undo", "deliveries": replays.len(), "error": e.to_string()}));
    }
}

fn key(e: &Envelope) -> (JsValue, JsValue) {
    (JsValue::from_str(&e.id), JsValue::from_str(e.dest.as_deref().unwrap_or_default()))
}

/// A replay that could not be enqueued whole: logged, and said as it is.
fn failed(e: &dyn std::fmt::Display, sent: usize, total: usize) -> ApiError {
    log(json!({"kind": "replay_failed", "replayed": sent, "of": total, "error": e.to_string()}));
    ApiError::Unavailable(match sent {
        0 => "could not enqueue the replay; nothing was replayed, please retry".into(),
        n => format!(
            "could not enqueue the whole replay: {n} of {total} deliveries were replayed, the others are as they were; please retry"
        ),
    })
}

/// A replayed delivery is queued again (a row is made for a destination new to the event), unless it
/// is still on its way; the row comes back when it was claimed.
fn replayed_sql() -> String {
    let queued = Status::Queued.sql();
    format!(
        "INSERT INTO deliveries (event_id, destination, status, attempts, updated_at) VALUES (?1, ?2, {queued}, 0, ?3) \
         ON CONFLICT (event_id, destination) DO UPDATE SET status = {queued}, updated_at = ?3 \
         WHERE deliveries.status NOT IN {} RETURNING destination",
        Status::sql_list(&Status::UNFINISHED)
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
