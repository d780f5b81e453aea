//! The ingest pipeline, decided once for every input, without I/O:
//!
//! - [`head`]: what a request needs before its body is read (configured? size?
//!   source address, token, signature present?), or the reverse-DNS check it must pass first ([`Rdns`]);
//! - [`plan`]: once the body is read, every I/O step of accepting it: the dedupe
//!   key of each event, the large events to store, the messages to enqueue (one
//!   per destination that takes the event), the events to keep as unrouted, and
//!   how long to remember their ids.
//!
//! Two thin executors carry the steps out, in the same order: the Worker's entry
//! module for webhooks (`src/entry.mjs`, through `abi`'s exports) and the edge for
//! mail the platform hands over (`edge/email.rs`). The order is the invariant:
//! no 200 unless every new event is on the queue. A dedupe read that fails
//! counts as "not seen" (a possible duplicate, never a lost event); a failure to
//! store or to enqueue answers 503 and marks nothing.

use crate::config::Config;
use crate::dedupe::dedupe_key;
use crate::delivery::{r2_body_key, r2_key, Envelope};
use crate::dns::{self, RecordType, VerdictCache};
use crate::error::ApiError;
use crate::large::stored_prefix;
use crate::providers::{Inbound, Provider, RdnsCheck};
use serde_json::value::RawValue;
use std::net::IpAddr;

/// What an unauthenticated sender's body may reserve before its bytes arrive.
pub const UNAUTHENTICATED_RESERVE: u64 = 64 * 1024;

/// Queue messages per `sendBatch`, and bytes per batch (Queues allows 100 and 256 KB).
pub const BATCH_COUNT: usize = 100;
pub const BATCH_BYTES: usize = 250_000;

/// The event-log row of an event that no destination takes (`status = 'unrouted'`),
/// bound to: id, provider, type, received_at, R2 key (or null), envelope JSON.
pub const RECORD_UNROUTED_SQL: &str =
    "INSERT INTO events (id, provider, type, received_at, status, attempts, payload_ref, envelope, updated_at) \
     VALUES (?1, ?2, ?3, ?4, 'unrouted', 0, ?5, ?6, ?4) ON CONFLICT (id) DO NOTHING";

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
    if let Some(missing) = provider.missing_config(cfg) {
        return Head::Refuse(ApiError::NotConfigured(missing));
    }
    let limit = provider.body_limit(cfg);
    if announced.is_some_and(|len| len > limit) {
        return Head::Refuse(ApiError::PayloadTooLarge { limit });
    }
    if req.rdns.is_none() {
        if let Some(check) = provider.rdns_check(cfg, req) {
            return Head::Rdns(check);
        }
    }
    if let Err(e) = provider.authenticate_head(cfg, req) {
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
    /// No destination takes it: kept in the event log as unrouted (`RECORD_UNROUTED_SQL`), this envelope its record.
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

/// The core's whole pipeline for a read body (`Provider::ingest`), and the
/// steps of accepting its events. `nonce` is 32 random hex digits: the
/// skeleton's markers, and (its first 16) the name of this stored copy, so two
/// requests accepted at once for one event never overwrite each other's objects.
pub fn plan(cfg: &Config, provider: Provider, req: &Inbound, nonce: &str) -> Result<Plan, ApiError> {
    let ingested = provider.ingest(cfg, req, nonce)?;
    let copy = nonce.get(..16).unwrap_or(nonce);
    let body = ingested.body(req.body);
    let mut events = Vec::with_capacity(ingested.events.len());
    for (e, json) in ingested.events.iter().zip(ingested.render()) {
        let kind = e.kind.as_str();
        let header = Envelope::header(&e.id, e.data.provider, kind, req.now);
        let dests = cfg.takers(provider.name(), kind);
        // Inline when it fits a queue message, otherwise stored in R2.
        let inline = match Envelope::fits_inline(&e.id, json.len()) {
            true => Some(inline_event(json.materialise(body), json.len())?),
            false => None,
        };
        let stored = inline.is_none().then(|| Stored {
            body_key: r2_body_key(&e.id, copy),
            manifest_key: r2_key(&e.id, copy),
            manifest: stored_prefix(&json),
        });
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

/// The ranges of `sizes` (messages' bytes) that go in one `sendBatch` each.
pub fn batches(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    crate::admin::batches(sizes, BATCH_COUNT, BATCH_BYTES)
}

/// One reverse-DNS check, as steps for the executor: it answers each
/// [`RdnsStep`] and passes the answer back to [`Rdns::step`] until `Done`.
///
/// The cost of one unauthenticated request is bounded: a cached verdict costs
/// nothing (isolate memory) or one KV read (a pass another isolate found);
/// otherwise one PTR fetch and at most `MAX_FORWARD_LOOKUPS` forward fetches.
/// Only passes are written to KV, so a stream of refused addresses writes nothing.
#[derive(Debug)]
pub struct Rdns {
    check: RdnsCheck,
    key: String,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    Start,
    Kv,
    Ptr,
    Forward { names: Vec<String>, next: usize },
    Done,
}

/// What the executor must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdnsStep {
    /// Read this KV key (a verdict another isolate cached), and answer `RdnsInput::Kv`.
    KvGet(String),
    /// GET this DoH URL (`accept: application/dns-json`), and answer `RdnsInput::Answer` or `Failed`.
    Fetch { url: String, name: String },
    /// The verdict; when `remember` is set, write that KV key as "pass" with that TTL.
    Done { passed: bool, remember: Option<(String, u64)> },
}

/// The executor's answer to the last step.
#[derive(Debug, Clone, Copy)]
pub enum RdnsInput<'a> {
    Start,
    /// The KV value, or `None` (absent, or the read failed).
    Kv(Option<&'a str>),
    Answer {
        status: u16,
        body: &'a [u8],
    },
    /// The fetch failed: a connection error, a timeout.
    Failed(&'a str),
}

impl Rdns {
    pub fn new(check: RdnsCheck) -> Self {
        let key = dns::cache_key(check.ip, &check.suffix);
        Rdns { check, key, stage: Stage::Start }
    }

    pub fn ip(&self) -> IpAddr {
        self.check.ip
    }

    /// The next step. A resolver failure is 503 (the provider retries), not a refusal.
    pub fn step(&mut self, input: RdnsInput, cache: &mut VerdictCache, now: i64) -> Result<RdnsStep, ApiError> {
        let ip = self.check.ip;
        match (std::mem::replace(&mut self.stage, Stage::Done), input) {
            (Stage::Start, RdnsInput::Start) => match cache.get(&self.key, now) {
                Some(passed) => Ok(RdnsStep::Done { passed, remember: None }),
                None => {
                    self.stage = Stage::Kv;
                    Ok(RdnsStep::KvGet(self.key.clone()))
                }
            },
            (Stage::Kv, RdnsInput::Kv(Some(v))) => {
                let passed = v == "pass";
                cache.put(self.key.clone(), passed, now);
                Ok(RdnsStep::Done { passed, remember: None })
            }
            (Stage::Kv, RdnsInput::Kv(None)) => {
                self.stage = Stage::Ptr;
                let name = dns::ptr_name(ip);
                Ok(RdnsStep::Fetch { url: dns::query_url(&self.check.doh_url, &name, RecordType::Ptr), name })
            }
            (Stage::Ptr, input) => {
                let names = dns::candidate_names(&answer(input, RecordType::Ptr)?, &self.check.suffix, dns::MAX_FORWARD_LOOKUPS);
                self.forward(names, 0, cache, now)
            }
            (Stage::Forward { names, next }, input) => {
                if dns::forward_confirms(&answer(input, dns::forward_type(ip))?, ip) {
                    Ok(self.finish(true, cache, now))
                } else {
                    self.forward(names, next, cache, now)
                }
            }
            (stage, _) => Err(ApiError::Unavailable(format!(
                "reverse DNS could not be checked (a step was answered out of order at {stage:?}); nothing was accepted, please retry"
            ))),
        }
    }

    /// The forward lookup of `names[next]`, or the verdict when none is left.
    fn forward(&mut self, names: Vec<String>, next: usize, cache: &mut VerdictCache, now: i64) -> Result<RdnsStep, ApiError> {
        match names.get(next) {
            Some(name) => {
                let (url, name) = (dns::query_url(&self.check.doh_url, name, dns::forward_type(self.check.ip)), name.clone());
                self.stage = Stage::Forward { names, next: next + 1 };
                Ok(RdnsStep::Fetch { url, name })
            }
            None => Ok(self.finish(false, cache, now)),
        }
    }

    fn finish(&mut self, passed: bool, cache: &mut VerdictCache, now: i64) -> RdnsStep {
        cache.put(self.key.clone(), passed, now);
        RdnsStep::Done { passed, remember: passed.then(|| (self.key.clone(), dns::cache_ttl(true))) }
    }
}

/// The records of a DoH answer, or 503.
fn answer(input: RdnsInput, rtype: RecordType) -> Result<Vec<String>, ApiError> {
    let unavailable =
        |why: String| ApiError::Unavailable(format!("reverse DNS could not be checked ({why}); nothing was accepted, please retry"));
    match input {
        RdnsInput::Answer { status: 200, body } => dns::parse_answer(body, rtype).map_err(unavailable),
        RdnsInput::Answer { status, .. } => Err(unavailable(format!("DoH answered HTTP {status}"))),
        RdnsInput::Failed(why) => Err(unavailable(why.to_string())),
        RdnsInput::Start | RdnsInput::Kv(_) => Err(unavailable("a DoH answer was expected".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn check() -> RdnsCheck {
        RdnsCheck { ip: "192.0.2.7".parse().unwrap(), suffix: "mail-plus.com".into(), doh_url: "https://doh.test/dns-query".into() }
    }

    fn json(records: &[(u16, &str)]) -> Vec<u8> {
        let answers: Vec<_> = records.iter().map(|(t, d)| serde_json::json!({"name": "x", "type": t, "data": d})).collect();
        serde_json::to_vec(&serde_json::json!({"Status": 0, "Answer": answers})).unwrap()
    }

    #[test]
    fn a_pass_takes_a_ptr_and_a_forward_lookup_and_is_remembered() {
        let mut cache = VerdictCache::default();
        let mut r = Rdns::new(check());
        assert_eq!(r.step(RdnsInput::Start, &mut cache, 0).unwrap(), RdnsStep::KvGet("rdns:mail-plus.com:192.0.2.7".into()));
        let RdnsStep::Fetch { url: ptr, .. } = r.step(RdnsInput::Kv(None), &mut cache, 0).unwrap() else { panic!("a PTR fetch") };
        assert!(ptr.contains("name=7.2.0.192.in-addr.arpa") && ptr.contains("type=PTR"), "{ptr}");
        let body = json(&[(12, "mx1.mail-plus.com.")]);
        let RdnsStep::Fetch { url: fwd, .. } = r.step(RdnsInput::Answer { status: 200, body: &body }, &mut cache, 0).unwrap() else {
            panic!()
        };
        assert!(fwd.contains("name=mx1.mail-plus.com") && fwd.contains("type=A"), "{fwd}");
        let body = json(&[(1, "192.0.2.7")]);
        let done = r.step(RdnsInput::Answer { status: 200, body: &body }, &mut cache, 0).unwrap();
        assert_eq!(done, RdnsStep::Done { passed: true, remember: Some(("rdns:mail-plus.com:192.0.2.7".into(), 3600)) });
        // The isolate remembers it: the next check costs nothing.
        let mut again = Rdns::new(check());
        assert_eq!(again.step(RdnsInput::Start, &mut cache, 10).unwrap(), RdnsStep::Done { passed: true, remember: None });
    }

    #[test]
    fn names_outside_the_suffix_cost_no_forward_lookup_and_refusals_are_not_written() {
        let mut cache = VerdictCache::default();
        let mut r = Rdns::new(check());
        r.step(RdnsInput::Start, &mut cache, 0).unwrap();
        r.step(RdnsInput::Kv(None), &mut cache, 0).unwrap();
        let body = json(&[(12, "evilmail-plus.com."), (12, "mail-plus.com.evil.net.")]);
        assert_eq!(
            r.step(RdnsInput::Answer { status: 200, body: &body }, &mut cache, 0).unwrap(),
            RdnsStep::Done { passed: false, remember: None }
        );
    }

    #[test]
    fn at_most_two_forward_lookups_and_resolver_failures_are_503() {
        let mut cache = VerdictCache::default();
        let mut r = Rdns::new(check());
        r.step(RdnsInput::Start, &mut cache, 0).unwrap();
        r.step(RdnsInput::Kv(None), &mut cache, 0).unwrap();
        let body = json(&[(12, "a.mail-plus.com"), (12, "b.mail-plus.com"), (12, "c.mail-plus.com")]);
        let mut fetches = 0;
        let mut step = r.step(RdnsInput::Answer { status: 200, body: &body }, &mut cache, 0).unwrap();
        while let RdnsStep::Fetch { .. } = step {
            fetches += 1;
            let wrong = json(&[(1, "198.51.100.1")]);
            step = r.step(RdnsInput::Answer { status: 200, body: &wrong }, &mut cache, 0).unwrap();
        }
        assert_eq!((fetches, step), (2, RdnsStep::Done { passed: false, remember: None }));

        let mut r = Rdns::new(check());
        let mut cache = VerdictCache::default();
        r.step(RdnsInput::Start, &mut cache, 0).unwrap();
        r.step(RdnsInput::Kv(None), &mut cache, 0).unwrap();
        let e = r.step(RdnsInput::Answer { status: 502, body: b"" }, &mut cache, 0).unwrap_err();
        assert_eq!(e.status(), 503);
        assert!(e.to_string().contains("HTTP 502"));
        // Out of order: 503, never a verdict.
        assert_eq!(r.step(RdnsInput::Start, &mut cache, 0).unwrap_err().status(), 503);
        let mut r = Rdns::new(check());
        r.step(RdnsInput::Start, &mut cache, 0).unwrap();
        r.step(RdnsInput::Kv(None), &mut cache, 0).unwrap();
        assert!(r.step(RdnsInput::Failed("timed out after 5 s"), &mut cache, 0).unwrap_err().to_string().contains("timed out"));
    }

    #[test]
    fn a_cached_kv_verdict_is_taken_as_written() {
        let mut cache = VerdictCache::default();
        let mut r = Rdns::new(check());
        r.step(RdnsInput::Start, &mut cache, 0).unwrap();
        assert_eq!(r.step(RdnsInput::Kv(Some("pass")), &mut cache, 0).unwrap(), RdnsStep::Done { passed: true, remember: None });
        let mut r = Rdns::new(check());
        let mut cache = VerdictCache::default();
        r.step(RdnsInput::Start, &mut cache, 0).unwrap();
        assert_eq!(r.step(RdnsInput::Kv(Some("fail")), &mut cache, 0).unwrap(), RdnsStep::Done { passed: false, remember: None });
    }
}
