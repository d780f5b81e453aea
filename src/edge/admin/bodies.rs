//! What destinations receive: `GET /admin/events/{id}/bodies` (each destination that takes a logged event, as
//! it would receive it now: the console's event page) and `POST /admin/destinations/{name}/preview` (one
//! destination's body of the canonical event posted, for `npm run mailhook -- transform`).

use super::events::envelope_of;
use super::replay::unknown_destination;
use super::Answer;
use crate::config::Config;
use crate::delivery::Envelope;
use crate::edge::deliver::{body_for, load_event, EventJson};
use crate::error::ApiError;
use crate::limits::MAX_TRANSFORM_INPUT_BYTES;
use serde_json::{json, Value};
use worker::Env;

pub(super) async fn of_event(id: &str, cfg: &Config, env: &Env) -> Answer {
    let (_, stored) = envelope_of(id, env).await?;
    let envelope = stored
        .and_then(|e| serde_json::from_str::<Envelope>(&e).ok())
        .ok_or_else(|| ApiError::BadRequest(format!("{id}'s stored payload cannot be read")))?;
    let mut bodies = Vec::new();
    for dest in cfg.destinations.iter().filter(|d| d.takes(envelope.route())) {
        let event = load_event(&envelope, env)
            .await
            .map_err(|e| ApiError::Unavailable(format!("{id}'s stored event could not be read ({e}); try again")))?;
        bodies.push(body_for(dest, &envelope, event, cfg).await);
    }
    Ok((200, json!({"id": id, "bodies": bodies})))
}

pub(super) async fn preview(name: &str, body: String, cfg: &Config) -> Answer {
    let dest = cfg.destination(name).ok_or_else(|| unknown_destination(name, cfg))?;
    if body.len() as u64 > MAX_TRANSFORM_INPUT_BYTES {
        return Err(ApiError::BadRequest(format!("the event is over {MAX_TRANSFORM_INPUT_BYTES} bytes")));
    }
    let event: Value = serde_json::from_str(&body)
        .map_err(|e| ApiError::BadRequest(format!("post a canonical event's JSON, e.g. fixtures/mailtura/bounced.expected.json ({e})")))?;
    let field = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let received = event["time"].as_str().and_then(crate::time::parse_rfc3339).unwrap_or_default();
    let envelope = Envelope {
        tag: event["data"]["recipient_tag"].as_str().map(String::from),
        ..Envelope::header(&field(&event["id"]), &field(&event["data"]["provider"]), &field(&event["type"]), received * 1000)
    };
    Ok((200, body_for(dest, &envelope, EventJson::Inline(body), cfg).await))
}
