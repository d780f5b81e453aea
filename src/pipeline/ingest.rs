//! The pure half of the pipeline, written once for every source:
//! configured? → size → authenticate → parse → normalise → replay window → where it belongs.
//! Its events are rendered as parts (see `large`), which `plan` turns into steps.

use crate::auth::check_age;
use crate::config::Config;
use crate::conversation;
use crate::error::ApiError;
use crate::event::{Event, EventData};
use crate::large::{render, skeletonize, EventBody, Refs};
use crate::limits::MAX_JSON_DEPTH;
use crate::providers::payload::nested_deeper_than;
use crate::providers::{Auth, Inbound, Provider};
use crate::reply;

/// The events of one request, and what rendering them needs.
#[derive(Debug)]
pub struct Ingested {
    pub events: Vec<Event>,
    /// The large strings the events' markers stand for.
    pub refs: Refs,
    /// The range of the body that is `data.raw`, unless `INCLUDE_RAW=false`.
    pub raw: Option<[u64; 2]>,
    /// The payload made from the input (`Source::payload`): the body the events' parts refer to.
    pub payload: Option<Vec<u8>>,
}

impl Ingested {
    /// What the events' parts are ranges of (and what a large event stores): the payload made, or the body received.
    pub fn body<'b>(&'b self, received: &'b [u8]) -> &'b [u8] {
        self.payload.as_deref().unwrap_or(received)
    }

    /// Each event's JSON as parts: literal bytes and ranges of the body.
    pub fn render(&self) -> Vec<EventBody> {
        self.events.iter().map(|e| render(e, &self.refs, self.raw)).collect()
    }
}

/// Every check and the canonical events of one input, or the refusal.
/// `nonce` (random, per request) makes the skeleton's markers unguessable.
pub fn ingest(cfg: &Config, provider: Provider, req: &Inbound, nonce: &str) -> Result<Ingested, ApiError> {
    let settings = &cfg.providers;
    if let Some(missing) = provider.missing_config(settings) {
        return Err(ApiError::NotConfigured(missing));
    }
    let limit = provider.body_limit(cfg.max_body_bytes);
    if req.body.len() as u64 > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    provider.authenticate(settings, req)?;
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(if provider.posts() {
            "the body is empty; expected the provider's JSON payload".into()
        } else {
            "the message is empty".into()
        }));
    }
    // A source whose input is not its payload makes it first; `data.raw` is
    // then left out: the payload is mailhook's, not what the sender sent.
    let payload = provider.payload(settings, req)?;
    let (req, raw) = match &payload {
        Some(p) => (Inbound { body: p, json: p, ..*req }, None),
        None => (*req, raw_range(cfg, req.body)),
    };
    if payload.is_none() && nested_deeper_than(req.body, MAX_JSON_DEPTH) {
        return Err(ApiError::BadRequest(format!(
            "the body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels, which no provider's payload does"
        )));
    }
    let paths = provider.large_paths();
    if paths.is_empty() {
        return Ok(Ingested { events: events(cfg, provider, &req)?, refs: Refs::default(), raw, payload });
    }
    let skeleton = skeletonize(req.body, paths, nonce).map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    let events = events(cfg, provider, &Inbound { json: &skeleton.json, refs: Some(&skeleton.refs), ..req })?;
    Ok(Ingested { events, refs: skeleton.refs, raw, payload })
}

/// The events of a request, normalised, with the replay window of a signed source checked.
fn events(cfg: &Config, provider: Provider, req: &Inbound) -> Result<Vec<Event>, ApiError> {
    let mut n = provider.normalise(&cfg.providers, req)?;
    if let Auth::SignedBody { time_field, .. } = provider.auth() {
        check_age(n.time, req.now, cfg.max_event_age_seconds, time_field)?;
    }
    for e in &mut n.events {
        belongs(cfg, req, &mut e.data);
    }
    Ok(n.events)
}

/// Where an event belongs, the same for every source: the recipient's tag, and a received message's thread
/// from its header fields (a source that carries none has no thread) and reply from its bodies.
fn belongs(cfg: &Config, req: &Inbound, data: &mut EventData) {
    data.recipient_tag = data.recipient.as_deref().and_then(|r| conversation::recipient_tag(r, &cfg.tag_separators));
    if let Some(inbound) = &data.inbound {
        data.thread = conversation::thread(&inbound.headers, data.message_id.as_deref());
        let max = reply::MAX_REPLY_INPUT_BYTES;
        let text = inbound.text.as_deref().and_then(|s| req.text_at_most(s, max));
        let html = inbound.html.as_deref().and_then(|s| req.text_at_most(s, max));
        data.reply = reply::reply(text.as_deref(), html.as_deref());
    }
}

/// The range of the body that is `data.raw`: the body itself without
/// surrounding white space (it parsed as JSON, so it is JSON text), unless `INCLUDE_RAW=false`.
fn raw_range(cfg: &Config, body: &[u8]) -> Option<[u64; 2]> {
    if !cfg.include_raw || std::str::from_utf8(body).is_err() {
        return None;
    }
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = body.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    Some([start as u64, end as u64])
}
