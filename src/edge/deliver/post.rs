//! One attempt: the event made into the destination's shape (`prepare`), then POSTed to it, signed with its
//! keys (Standard Webhooks), within its timeout, redirects not followed.

use super::stored::{event_stream, sign_stored, EventJson};
use super::transformed::{transformed, Transformed};
use crate::delivery::{parse_retry_after, provider_payload, r2_raw_key, shape, sign, Shaped, USER_AGENT};
use crate::destinations::Destination;
use crate::edge::env::{fetch_with_timeout, nonce, now_seconds};
use crate::edge::ops;
use crate::event::Format;
use crate::large::{EventBody, Part};
use worker::wasm_bindgen::JsValue;
use worker::{FixedLengthStream, Headers, Method, Request, RequestInit, RequestRedirect};

/// The result of one POST to a destination.
pub struct Attempt {
    pub status: Option<u16>,
    pub retry_after: Option<u32>,
    pub error: Option<String>,
    /// Nothing sent, and trying again cannot help (the event cannot be made into the destination's format).
    pub hopeless: bool,
}

impl Attempt {
    /// No answer: a timeout, a connection error, a destination that cannot be sent to.
    pub fn failed(error: String) -> Self {
        Attempt { status: None, retry_after: None, error: Some(error), hopeless: false }
    }
}

/// What a format says about its body besides the body: its content type and extra headers.
pub struct Framing {
    pub content_type: String,
    pub headers: Vec<(String, String)>,
}

/// The event in the destination's format (`delivery::shape`), and its framing. `provider`: the event's source.
fn shaped(event: EventJson, format: Format, provider: &str, console: Option<&str>) -> Result<(EventJson, Framing), String> {
    if format == Format::CloudEvents {
        return Ok((event, Framing { content_type: "application/json".into(), headers: Vec::new() }));
    }
    Ok(match event {
        EventJson::Inline(_) if format == Format::Provider => {
            return Err("the provider's payload was not kept for this event (accepted before a destination took format provider); replay it to another destination".into())
        }
        EventJson::Inline(json) => {
            let Shaped { content_type, headers, body } = shape(format, EventBody { parts: vec![Part::Lit(json)] }, console, &nonce())?;
            let json = String::from_utf8(body.materialise(&[])).map_err(|e| e.to_string())?;
            (EventJson::Inline(json), Framing { content_type, headers })
        }
        EventJson::Stored { bucket, key, parts, body_len } => {
            let Shaped { content_type, headers, body } = match format {
                // Received mail's payload is its raw message, once `raw_message` pointed the event at it.
                Format::Provider if provider == EMAIL_ROUTING => match key.ends_with(".eml") {
                    true => Shaped { content_type: "message/rfc822".into(), ..provider_payload(body_len) },
                    false => return Err(NOT_KEPT.into()),
                },
                Format::Provider => provider_payload(body_len),
                _ => shape(format, parts, console, &nonce())?,
            };
            (EventJson::Stored { bucket, key, body_len, parts: body }, Framing { content_type, headers })
        }
    })
}

/// The source whose provider payload is the raw message it received (`pipeline` keeps it beside the event).
const EMAIL_ROUTING: &str = crate::providers::email_routing::NAME;

const NOT_KEPT: &str =
    "Email Routing's raw message was not kept for this event (accepted before a destination took format provider); replay it to another destination";

/// For a destination that takes the provider's payload, received mail's stored event pointed at its raw message
/// (`delivery::r2_raw_key`), kept when it was accepted for such a destination. `Err`: why not, and whether trying
/// again can help (R2 could not be read) or not (it was not kept).
async fn raw_message(event: EventJson, format: Format, provider: &str) -> Result<EventJson, (String, bool)> {
    if format != Format::Provider || provider != EMAIL_ROUTING {
        return Ok(event);
    }
    let not_kept = || (NOT_KEPT.to_string(), true);
    let EventJson::Stored { bucket, key, .. } = event else { return Err(not_kept()) };
    let raw = r2_raw_key(&key).ok_or_else(not_kept)?;
    ops::r2_class_b();
    let size = match bucket.head(raw.as_str()).await {
        Ok(Some(object)) => object.size(),
        Ok(None) => return Err(not_kept()),
        Err(e) => return Err((format!("the raw message could not be read: {e}"), false)),
    };
    Ok(EventJson::Stored { bucket, key: raw, parts: EventBody { parts: vec![Part::Body([0, size])] }, body_len: size })
}

/// What an attempt would send of an event, or why nothing is sent.
pub enum Prepared {
    /// The body in the destination's shape, and its framing.
    Ready(EventJson, Framing),
    /// Its transform made nothing of it: not sent, and no attempt.
    Filtered,
    /// Nothing can be sent, and trying again cannot help: dead at once.
    Dead(String),
    /// The stored event could not be read now: tried again later, and no attempt.
    Later(String),
    /// R2 could not be read now: a failed attempt, tried again on the schedule.
    Failed(String),
}

/// The event (of source `provider`, as `dest` takes it: `as_taken`) in `dest`'s shape: its transform's output, or
/// the event in its format (for Email Routing's provider payload, its raw message). The attempt and the console's
/// preview both go through here. `console` is the console's address (Slack's link to the event).
pub async fn prepare(dest: &Destination, provider: &str, event: EventJson, console: Option<&str>) -> Prepared {
    let event = match dest.transform.as_deref() {
        None => event,
        Some(t) => match transformed(t, event, dest.max_body_bytes).await {
            Transformed::Body(body) => body,
            Transformed::Filtered => return Prepared::Filtered,
            Transformed::Failed(e) => return Prepared::Dead(format!("the transform of destination {}: {e}", dest.name)),
            Transformed::Unreadable(e) => return Prepared::Later(e),
        },
    };
    let event = match raw_message(event, dest.format, provider).await {
        Ok(e) => e,
        Err((e, true)) => return Prepared::Dead(e),
        Err((e, false)) => return Prepared::Failed(e),
    };
    match shaped(event, dest.format, provider, console) {
        Ok((event, framing)) => Prepared::Ready(event, framing),
        Err(e) => Prepared::Dead(format!("the event could not be made into format {}: {e}", dest.format.as_str())),
    }
}

/// POSTs the prepared event (`prepare`) to `dest`.
pub async fn post(dest: &Destination, id: &str, event: EventJson, framing: Framing) -> Attempt {
    let failed = Attempt::failed;
    let Some(url) = dest.url.as_deref() else { return failed("ORIGIN_URL is not set".into()) };
    let Framing { content_type, headers: extra } = framing;
    let timestamp = now_seconds();
    // A stored event is signed in a first pass over R2 and streamed in a
    // second, so no copy of it is ever whole in memory.
    let (signature, body) = match event {
        EventJson::Inline(json) => (sign(&dest.keys, id, timestamp, json.as_bytes()), JsValue::from_str(&json)),
        EventJson::Stored { bucket, key, parts, .. } => {
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
        ("content-type", content_type),
        ("user-agent", USER_AGENT.to_string()),
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ];
    for (k, v) in set.iter().map(|(k, v)| (*k, v.as_str())).chain(extra.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        if let Err(e) = headers.set(k, v) {
            return failed(format!("could not set header {k}: {e}"));
        }
    }
    let mut init = RequestInit::new();
    // Redirects are not followed: a 3xx is the origin's answer, a permanent
    // failure (README, Delivery). Following one would log a GET's 200 as delivered,
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
            Attempt { status: Some(status), retry_after, error, hopeless: false }
        }
        Err(e) => failed(format!("{e} (the timeout of destination {} is {} s)", dest.name, dest.timeout_seconds)),
    }
}
