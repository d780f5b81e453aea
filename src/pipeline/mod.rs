//! The ingest pipeline, decided once for every input, without I/O:
//!
//! - [`head`]: what a request needs before its body is read (configured? size?
//!   source address, token, signature present?), or the reverse-DNS check it must pass first ([`Rdns`]);
//! - [`plan`]: once the body is read, every I/O step of accepting it: the dedupe
//!   key of each event, the large events to store, the messages to enqueue (one
//!   per destination that takes the event), the events to keep as unrouted, and
//!   how long to remember their ids.
//!
//! One thin executor carries the steps out, for webhooks and for mail the
//! platform hands over alike (`edge/ingest`). The order is the invariant:
//! no 200 unless every new event is on the queue. A dedupe read that fails
//! counts as "not seen" (a possible duplicate, never a lost event); a failure to
//! store or to enqueue answers 503 and marks nothing.

mod ingest;
mod rdns;

pub use ingest::{ingest, Ingested};
pub use rdns::{Rdns, RdnsInput, RdnsStep};

use crate::config::Config;
use crate::dedupe::dedupe_key;
use crate::delivery::{r2_body_key, r2_key, r2_raw_key, Envelope};
use crate::error::ApiError;
use crate::event::Format;
use crate::large::stored_prefix;
use crate::limits::{BATCH_BYTES, BATCH_COUNT, MAX_LITERAL_BYTES};
use crate::providers::{Inbound, Provider, RdnsCheck};
use serde_json::value::RawValue;

/// What an unauthenticated sender's body may reserve before its bytes arrive.
pub const UNAUTHENTICATED_RESERVE: u64 = 64 * 1024;

/// What to do before the body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// Answer with this refusal; the body is never read.
    Refuse(ApiError),
    /// Check the client's reverse DNS first (`Rdns`), then ask again with its verdict in `Inbound::rdns`.
    Rdns(RdnsCheck),
    /// Read the body: refuse it (413) as soon as it passes `limit`; allocate at most `reserve` before its bytes arrive.
    Read { limit: u64, reserve: u64 },
}

/// Everything that needs no body comes first, so a request that is too large,
/// from the wrong address or without its token or signature costs no
/// buffering: the announced size, the source address (and Mail-Plus's reverse
/// DNS), the token, the presence of a signature.
pub fn head(cfg: &Config, provider: Provider, req: &Inbound, announced: Option<u64>) -> Head {
    if let Some(missing) = provider.missing_config(&cfg.providers) {
        return Head::Refuse(ApiError::NotConfigured(missing));
    }
    let limit = provider.body_limit(cfg.max_body_bytes);
    if announced.is_some_and(|len| len > limit) {
        return Head::Refuse(ApiError::PayloadTooLarge { limit });
    }
    if req.rdns.is_none() {
        if let Some(check) = provider.rdns_check(&cfg.providers, req) {
            return Head::Rdns(check);
        }
    }
    if let Err(e) = provider.authenticate_head(&cfg.providers, req) {
        return Head::Refuse(e);
    }
    // A known sender's body is read into one buffer of its announced size; an
    // unauthenticated one's grows only as its bytes arrive.
    let reserve = if provider.authenticated_before_body() { limit } else { UNAUTHENTICATED_RESERVE };
    Head::Read { limit, reserve }
}

/// The announced body size: `Content-Length`, when it is a number.
pub fn announced_len(req: &Inbound) -> Option<u64> {
    req.header("content-length").and_then(|v| v.trim().parse::<u64>().ok())
}

/// Every I/O step of accepting one input, in order (see the module's doc).
#[derive(Debug)]
pub struct Plan {
    pub provider: &'static str,
    pub events: Vec<Planned>,
    /// How long the dedupe keys of new events live (`DEDUPE_TTL_SECONDS`).
    pub ttl: u64,
    /// The payload made from the input (`Source::payload`, mail): what a stored
    /// event's body is. `None`: the body as received.
    pub payload: Option<Vec<u8>>,
}

/// One event of a plan.
#[derive(Debug)]
pub struct Planned {
    pub id: String,
    pub kind: &'static str,
    /// Its dedupe key: an event whose key is present was accepted before.
    pub key: String,
    /// Too large for a queue message: stored in R2 first (the body, then its manifest).
    pub stored: Option<Stored>,
    /// One queue message per destination that takes it, as JSON text.
    pub messages: Vec<String>,
    /// No destination takes it: kept in the event log as unrouted, this envelope its record.
    pub unrouted: Option<Envelope>,
}

/// A large event's objects: the body as received (or the payload made) under
/// `body_key`, then the manifest of its parts under `manifest_key`, so a
/// manifest never points at a missing body.
#[derive(Debug)]
pub struct Stored {
    pub body_key: String,
    pub manifest_key: String,
    pub manifest: Vec<u8>,
    /// Received mail's raw message, kept beside them for a destination that takes the provider's payload
    /// (`delivery::r2_raw_key`): the body is mailhook's payload made from it, not what the sender sent.
    pub raw_key: Option<String>,
}

impl Plan {
    pub fn ids(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.id.as_str()).collect()
    }

    /// What a stored event's body is: the payload made, or `received`.
    pub fn body<'b>(&'b self, received: &'b [u8]) -> &'b [u8] {
        self.payload.as_deref().unwrap_or(received)
    }
}

/// An inline event's JSON as mailhook rendered it, checked in one pass
/// before it goes into its messages or its unrouted record: a render that
/// failed (empty), a range past the body (short) or any other defect is a
/// refusal (503, nothing accepted), never a message the consumer could not read.
fn inline_event(json: Vec<u8>, expected: u64) -> Result<Box<RawValue>, ApiError> {
    String::from_utf8(json)
        .ok()
        .filter(|text| text.len() as u64 == expected && text.starts_with('{'))
        .and_then(|text| RawValue::from_string(text).ok())
        .ok_or_else(|| {
            ApiError::Unavailable("mailhook could not render this event (a bug, logged); nothing was accepted, please retry".into())
        })
}

/// The core's whole pipeline for a read body (`ingest`), and the
/// steps of accepting its events. `nonce` is 32 random hex digits: the
/// skeleton's markers, and (its first 16) the name of this stored copy, so two
/// requests accepted at once for one event never overwrite each other's objects.
/// `received_ms`: when it was accepted (Unix milliseconds), kept in its envelope.
pub fn plan(cfg: &Config, provider: Provider, req: &Inbound, nonce: &str, received_ms: i64) -> Result<Plan, ApiError> {
    let ingested = ingest(cfg, provider, req, nonce)?;
    let copy = nonce.get(..16).unwrap_or(nonce);
    let body = ingested.body(req.body);
    let mut events = Vec::with_capacity(ingested.events.len());
    for (e, json) in ingested.events.iter().zip(ingested.render()) {
        let kind = e.kind.as_str();
        let header = Envelope {
            tag: e.data.recipient_tag.clone(),
            thread: e.data.thread.as_ref().map(|t| t.id.clone()),
            ..Envelope::header(&e.id, e.data.provider, kind, received_ms)
        };
        let dests = cfg.takers(header.route());
        // Inline when it fits a queue message, otherwise stored in R2; stored too when a destination that
        // takes it will take its attachments as links, which serve ranges of the stored body (`links`).
        // Stored too when a destination takes the provider's payload: the stored body for a webhook; for mail
        // (whose body is a payload made from it) the raw message, stored beside it.
        let takers: Vec<_> = dests.iter().filter_map(|d| cfg.destination(d)).collect();
        let links = has_attachments(e) && takers.iter().any(|d| d.links(json.len()));
        let payload_kept = takers.iter().any(|d| d.format == Format::Provider);
        let inline = match Envelope::fits_inline(&e.id, json.len()) && !links && !payload_kept {
            true => Some(inline_event(json.materialise(body), json.len())?),
            false => None,
        };
        let stored = match inline {
            Some(_) => None,
            None => {
                let manifest_key = r2_key(&e.id, copy);
                let raw_key = (payload_kept && ingested.payload.is_some()).then(|| r2_raw_key(&manifest_key)).flatten();
                Some(Stored { body_key: r2_body_key(&e.id, copy), manifest_key, manifest: manifest(&json)?, raw_key })
            }
        };
        let envelope = Envelope { r2_key: stored.as_ref().map(|s| s.manifest_key.clone()), ..header };
        let (messages, unrouted) = if dests.is_empty() {
            // Accepted (the provider must not send it again), and kept in the event log,
            // so that it can be found and replayed once a destination takes it.
            (Vec::new(), Some(Envelope { event: inline, ..envelope }))
        } else {
            // Each message is the envelope's JSON with the checked event spliced in (not serialised again).
            let event = inline.as_deref().map(RawValue::get);
            (envelope.fan_out(&dests).iter().map(|m| m.to_json_with(event)).collect(), None)
        };
        events.push(Planned { id: e.id.clone(), kind, key: dedupe_key(&e.id), stored, messages, unrouted });
    }
    Ok(Plan { provider: provider.name(), events, ttl: cfg.dedupe_ttl_seconds, payload: ingested.payload })
}

/// True when a received message has an attachment whose bytes are in the event.
fn has_attachments(e: &crate::event::Event) -> bool {
    e.data.inbound.as_ref().is_some_and(|i| i.attachments.iter().any(|a| a.content_base64.is_some()))
}

/// A large event's manifest, or 400 when its fields other than the large strings (every header of an
/// inbound message, its addresses) pass `MAX_LITERAL_BYTES`: the consumer reads a manifest whole, so one
/// it could not read would never be delivered. (Email Routing refuses such a message before this.)
fn manifest(json: &crate::large::EventBody) -> Result<Vec<u8>, ApiError> {
    let manifest = stored_prefix(json);
    if manifest.len() > MAX_LITERAL_BYTES {
        return Err(ApiError::BadRequest(format!(
            "the event's fields other than its text, html and attachments take {} bytes (its headers, say); mailhook takes at most {MAX_LITERAL_BYTES}",
            manifest.len()
        )));
    }
    Ok(manifest)
}

/// The ranges of `sizes` (messages' bytes) that go in one `sendBatch` each.
pub fn batches(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    batches_of(sizes, BATCH_COUNT, BATCH_BYTES)
}

/// Splits messages of the given sizes into batches that a queue's `sendBatch`
/// takes: at most `max_count` messages and `max_bytes` in all (Queues: 100, 256 KB).
fn batches_of(sizes: &[usize], max_count: usize, max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, size) in sizes.iter().enumerate() {
        if i > start && (i - start == max_count || bytes + size > max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_bytes() {
        assert_eq!(batches_of(&[10; 250], 100, 1_000_000), vec![0..100, 100..200, 200..250]);
        assert_eq!(batches_of(&[120_000, 120_000, 120_000], 100, 256_000), vec![0..2, 2..3]);
        assert_eq!(batches_of(&[300_000, 1], 100, 256_000), vec![0..1, 1..2]);
        assert!(batches_of(&[], 100, 256_000).is_empty());
    }

    #[test]
    fn an_inline_event_that_is_not_whole_json_is_refused_not_queued() {
        let ok = br#"{"a":[1,"x"]}"#.to_vec();
        assert_eq!(inline_event(ok.clone(), ok.len() as u64).unwrap().get(), r#"{"a":[1,"x"]}"#);
        for (bad, expected) in
            [(b"".to_vec(), 0), (br#"{"a":1"#.to_vec(), 6), (br#"{"a":1}"#.to_vec(), 9), (br#"{"a":1}}"#.to_vec(), 8), (b"[1]".to_vec(), 3)]
        {
            let e = inline_event(bad.clone(), expected).unwrap_err();
            assert_eq!(e.status(), 503, "{:?}", String::from_utf8_lossy(&bad));
        }
    }
}
