//! The ingest module's exports (`build/ingest.wasm`, this crate built
//! `--no-default-features`): the webhook path's pure core behind a few
//! synchronous functions, for the Worker's entry module (`src/entry.mjs`),
//! which does the I/O (`pipeline`'s steps). No wasm-bindgen and no async:
//! bytes cross in linear memory. An input is written into the buffer
//! `mh_input` returns; an answer is JSON in the buffer `mh_output` points at,
//! `len` bytes long as the call returned. A request lives under a handle from
//! `mh_begin` until `mh_end`; its body, and the manifests of its large events,
//! stay at the addresses the answers name until then. A handle names its slot
//! and the slot's generation, so a handle that was ended never reaches the
//! request that reuses its slot; a request unused for `STALE_SECONDS` (its
//! sender gone: the runtime cancels a request whose client disconnects, and
//! its `mh_end` never comes) is forgotten by the next `mh_begin`.
//!
//! The sequence for one request: `mh_begin` (the head: refuse, check reverse DNS
//! with `mh_rdns`, or read the body) → `mh_body` (where to put the body) →
//! `mh_ingest` (the plan) → `mh_end`.

use crate::config::{Config, ConfigError};
use crate::dns::VerdictCache;
use crate::error::ApiError;
use crate::pipeline::{self, Head, Plan, Rdns, RdnsInput, RdnsStep};
use crate::providers::{Inbound, Provider};
use crate::routes::{route, Route};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;

struct Request {
    provider: Provider,
    /// Unix seconds when it was last used (the `now` of the calls naming it).
    touched: i64,
    /// Header names in lower case (as the Fetch API yields them).
    headers: Vec<(String, String)>,
    rdns: Option<bool>,
    check: Option<Rdns>,
    body: Vec<u8>,
    plan: Option<Plan>,
}

impl Request {
    fn inbound(&self, now: i64) -> Inbound<'_> {
        let client_ip = self.headers.iter().find(|(k, _)| k == "cf-connecting-ip").map(|(_, v)| v.as_str());
        Inbound { rdns: self.rdns, ..Inbound::new(&self.headers, client_ip, &self.body, now) }
    }
}

/// A request unused this long is forgotten (`mh_begin`): no webhook sender waits that long for an answer.
const STALE_SECONDS: i64 = 600;

/// The requests in flight, by handle: slot (low 16 bits) and the slot's
/// generation (high 16 bits). Slots are never removed, so a generation is never reused early.
#[derive(Default)]
struct Requests {
    slots: Vec<(u16, Option<Request>)>,
}

impl Requests {
    fn slot(h: u32) -> (usize, u16) {
        ((h & 0xffff) as usize, (h >> 16) as u16)
    }

    fn get(&self, h: u32) -> Option<&Request> {
        let (at, generation) = Self::slot(h);
        self.slots.get(at).filter(|(g, _)| *g == generation).and_then(|(_, r)| r.as_ref())
    }

    /// Request `h`, marked as used at `now`.
    fn get_mut(&mut self, h: u32, now: i64) -> Option<&mut Request> {
        let (at, generation) = Self::slot(h);
        let req = self.slots.get_mut(at).filter(|(g, _)| *g == generation).and_then(|(_, r)| r.as_mut())?;
        req.touched = now;
        Some(req)
    }

    fn remove(&mut self, h: u32) {
        let (at, generation) = Self::slot(h);
        if let Some((g, slot)) = self.slots.get_mut(at) {
            if *g == generation {
                *slot = None;
            }
        }
    }

    /// A handle for `req`; `None` when 65 536 requests are in flight. A slot
    /// whose generation is spent is retired, so no handle is ever issued twice.
    fn insert(&mut self, req: Request) -> Option<u32> {
        let at = match self.slots.iter().position(|(g, r)| r.is_none() && *g < u16::MAX) {
            Some(i) => i,
            None if self.slots.len() <= 0xffff => {
                self.slots.push((0, None));
                self.slots.len() - 1
            }
            None => return None,
        };
        let slot = self.slots.get_mut(at)?;
        slot.0 += 1;
        slot.1 = Some(req);
        Some((u32::from(slot.0) << 16) | at as u32)
    }

    /// Forgets the requests unused since `before`.
    fn forget_idle(&mut self, before: i64) {
        for (_, slot) in &mut self.slots {
            if slot.as_ref().is_some_and(|r| r.touched < before) {
                *slot = None;
            }
        }
    }
}

#[derive(Default)]
struct State {
    config: Option<Result<Config, ConfigError>>,
    input: Vec<u8>,
    output: Vec<u8>,
    requests: Requests,
    verdicts: VerdictCache,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
    /// The last panic's message (kept apart: a panic happens while `STATE` is borrowed).
    static PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

/// Makes the input buffer `len` bytes long; the caller writes the input there.
#[no_mangle]
pub extern "C" fn mh_input(len: usize) -> *mut u8 {
    with(|s| {
        s.input.clear();
        s.input.resize(len, 0);
        s.input.as_mut_ptr()
    })
}

/// Where the last answer is.
#[no_mangle]
pub extern "C" fn mh_output() -> *const u8 {
    with(|s| s.output.as_ptr())
}

/// Reads the configuration, once per instance: the input (`len` bytes) is a
/// JSON object of every variable and secret as text. Its error, if any, answers every request (503).
#[no_mangle]
pub extern "C" fn mh_init(len: usize) -> usize {
    // The first message: a trap leaves STATE borrowed, so a later call panics
    // again ("already borrowed") before the instance is replaced.
    std::panic::set_hook(Box::new(|info| {
        PANIC.with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                if p.is_empty() {
                    *p = info.to_string();
                }
            }
        })
    }));
    with(|s| {
        s.input.truncate(len);
        let vars: HashMap<String, String> = match serde_json::from_slice(&s.input) {
            Ok(vars) => vars,
            Err(e) => {
                // The entry module's bug, not the operator's: say so rather than run on defaults.
                let error = format!("the ingest module could not read the variables ({e}); this is a bug in mailhook, please report it");
                s.config = None;
                return write(&mut s.output, &Answer::Misconfigured { error });
            }
        };
        let cfg = Config::from_lookup(|name| vars.get(name).cloned());
        let answer = match &cfg {
            Ok(_) => Answer::Ready {},
            Err(e) => Answer::Misconfigured { error: e.to_string() },
        };
        s.config = Some(cfg);
        write(&mut s.output, &answer)
    })
}

/// The length of the message of the panic that trapped the last call, at
/// `mh_panic_message` (the entry then starts a new instance). `STATE` is not
/// touched: the panic left it borrowed.
#[no_mangle]
pub extern "C" fn mh_panic() -> usize {
    PANIC.with(|p| p.try_borrow().map_or(0, |m| m.len()))
}

/// Where the last panic's message is (see `mh_panic`).
#[no_mangle]
pub extern "C" fn mh_panic_message() -> *const u8 {
    PANIC.with(|p| p.try_borrow().map_or(std::ptr::null(), |m| m.as_ptr()))
}

/// A request's head: the input (`len` bytes) is its path, then each header's
/// name and value, each on a line of its own; `now` Unix seconds. Answers
/// `Refuse`, `Check` (a reverse-DNS check first, with `mh_rdns`) or `Read`.
#[no_mangle]
pub extern "C" fn mh_begin(len: usize, now: f64) -> usize {
    with(|s| {
        let now = now as i64;
        s.requests.forget_idle(now.saturating_sub(STALE_SECONDS));
        s.input.truncate(len);
        let text = String::from_utf8_lossy(&s.input).into_owned();
        let mut lines = text.split('\n');
        let path = lines.next().unwrap_or_default();
        let provider = match route("POST", path) {
            Ok(Route::Webhook(p)) => p,
            Ok(_) | Err(_) => return write(&mut s.output, &Answer::refuse(&ApiError::NotFound, None)),
        };
        let mut headers = Vec::new();
        while let (Some(name), Some(value)) = (lines.next(), lines.next()) {
            headers.push((name.to_string(), value.to_string()));
        }
        let req = Request { provider, touched: now, headers, rdns: None, check: None, body: Vec::new(), plan: None };
        let Some(h) = s.requests.insert(req) else {
            let busy = ApiError::Unavailable("too many requests in flight; please retry".into());
            return write(&mut s.output, &Answer::refuse(&busy, Some(provider.name())));
        };
        s.head(h, None, now)
    })
}

/// The answer to a reverse-DNS step of request `h`: `kind` 0 starts the check,
/// 1 is a KV value (the input; `status` 0 when absent or unreadable), 2 a DoH
/// answer (the input) with its HTTP `status`, 3 a failed fetch (the input says why).
/// Answers the next step (`KvGet`, `Fetch`), or, with the verdict, what `mh_begin` answers.
#[no_mangle]
pub extern "C" fn mh_rdns(h: u32, kind: u32, status: u32, now: f64) -> usize {
    with(|s| {
        let now = now as i64;
        let input = std::mem::take(&mut s.input);
        let text = String::from_utf8_lossy(&input);
        let answer = match kind {
            0 => RdnsInput::Start,
            1 => RdnsInput::Kv((status != 0).then_some(&*text)),
            2 => RdnsInput::Answer { status: u16::try_from(status).unwrap_or(0), body: &input },
            _ => RdnsInput::Failed(&text),
        };
        let State { requests, verdicts, output, .. } = s;
        let Some(req) = requests.get_mut(h, now) else {
            return write(output, &Answer::refuse(&unknown_handle(), None));
        };
        let Some(check) = req.check.as_mut() else { return write(output, &Answer::refuse(&unknown_handle(), None)) };
        let ip = check.ip().to_string();
        match check.step(answer, verdicts, now) {
            Ok(RdnsStep::KvGet(key)) => write(output, &Answer::KvGet { key }),
            Ok(RdnsStep::Fetch { url, name }) => write(output, &Answer::Fetch { url, name }),
            Ok(RdnsStep::Done { passed, remember }) => {
                req.rdns = Some(passed);
                req.check = None;
                s.head(h, Some(Verdict { ip, passed, remember }), now)
            }
            Err(e) => {
                let provider = Some(req.provider.name());
                requests.remove(h);
                write(output, &Answer::refuse(&e, provider))
            }
        }
    })
}

/// Makes request `h`'s body `len` bytes long (zeroed), and says where it is
/// (null when `h` is gone); the caller copies the body there (the address
/// holds until the next `mh_body` of `h`). `now`: Unix seconds.
#[no_mangle]
pub extern "C" fn mh_body(h: u32, len: usize, now: f64) -> *mut u8 {
    with(|s| match s.requests.get_mut(h, now as i64) {
        Some(req) => {
            req.body.resize(len, 0);
            req.body.as_mut_ptr()
        }
        None => std::ptr::null_mut(),
    })
}

/// Reserves room for request `h`'s body to grow to `len` bytes without moving.
#[no_mangle]
pub extern "C" fn mh_reserve(h: u32, len: usize, now: f64) {
    with(|s| {
        if let Some(req) = s.requests.get_mut(h, now as i64) {
            req.body.reserve(len.saturating_sub(req.body.len()));
        }
    })
}

/// The plan of request `h`, whose body is in place: the input is 16 random
/// bytes, `now` Unix seconds. Answers `Refuse` or `Plan`.
#[no_mangle]
pub extern "C" fn mh_ingest(h: u32, now: f64) -> usize {
    with(|s| {
        let nonce = hex::encode(s.input.get(..16).unwrap_or_default());
        let State { config, requests, output, .. } = s;
        let Some(req) = requests.get_mut(h, now as i64) else {
            return write(output, &Answer::refuse(&unknown_handle(), None));
        };
        let provider = Some(req.provider.name());
        let planned = match config {
            _ if nonce.len() != 32 => Err(ApiError::Unavailable("no randomness for this request; please retry".into())),
            Some(Ok(cfg)) => pipeline::plan(cfg, req.provider, &req.inbound(now as i64), &nonce),
            Some(Err(e)) => Err(ApiError::NotConfigured(e.to_string())),
            None => Err(not_initialised()),
        };
        match planned {
            Ok(plan) => {
                let plan = req.plan.insert(plan);
                write(output, &Answer::plan(plan, &req.body))
            }
            Err(e) => write(output, &Answer::refuse(&e, provider)),
        }
    })
}

/// Marks request `h` as in use at `now`: 1 while it is there (the addresses
/// its plan named still hold until the next call into this module), 0 once forgotten.
#[no_mangle]
pub extern "C" fn mh_touch(h: u32, now: f64) -> u32 {
    with(|s| u32::from(s.requests.get_mut(h, now as i64).is_some()))
}

/// The refusal (413) of a body over `limit` bytes: answers `Refuse`.
#[no_mangle]
pub extern "C" fn mh_too_large(limit: f64) -> usize {
    with(|s| write(&mut s.output, &Answer::refuse(&ApiError::PayloadTooLarge { limit: limit as u64 }, None)))
}

/// Forgets request `h` (its body and plan).
#[no_mangle]
pub extern "C" fn mh_end(h: u32) {
    with(|s| s.requests.remove(h))
}

fn unknown_handle() -> ApiError {
    ApiError::Unavailable("the request's state was lost; nothing was accepted, please retry".into())
}

fn not_initialised() -> ApiError {
    ApiError::NotConfigured("the ingest module was not initialised (mh_init)".into())
}

/// Writes `answer` as JSON into `output`; its length.
fn write(output: &mut Vec<u8>, answer: &Answer) -> usize {
    output.clear();
    if serde_json::to_writer(&mut *output, answer).is_err() {
        output.clear();
        output.extend_from_slice(
            br#"{"refuse":{"status":503,"code":"unavailable","body":"{\"error\":{\"code\":\"unavailable\",\"message\":\"mailhook could not answer this request; nothing was accepted, please retry\"}}"}}"#,
        );
    }
    output.len()
}

impl State {
    /// What request `h` needs before its body, as an answer (a refusal forgets the request).
    fn head(&mut self, h: u32, rdns: Option<Verdict>, now: i64) -> usize {
        let req = self.requests.get(h);
        let provider = req.map(|r| r.provider.name());
        let announced = req.and_then(|r| pipeline::announced_len(&r.inbound(0)));
        let decision = match (&self.config, req) {
            (Some(Ok(cfg)), Some(req)) => pipeline::head(cfg, req.provider, &req.inbound(0), announced),
            (_, None) => Head::Refuse(unknown_handle()),
            (Some(Err(e)), _) => Head::Refuse(ApiError::NotConfigured(e.to_string())),
            (None, _) => Head::Refuse(not_initialised()),
        };
        let answer = match decision {
            Head::Refuse(e) => {
                self.requests.remove(h);
                Answer::Refuse { refuse: Refusal::of(&e), provider, rdns }
            }
            Head::Rdns(check) => {
                if let Some(req) = self.requests.get_mut(h, now) {
                    req.check = Some(Rdns::new(check));
                }
                Answer::Check { h, provider }
            }
            Head::Read { limit, reserve } => Answer::Read { h, provider, announced, limit, reserve, rdns },
        };
        write(&mut self.output, &answer)
    }
}

#[derive(Serialize)]
struct Refusal {
    status: u16,
    code: &'static str,
    /// The response body, `{"error":{"code":…,"message":…}}`.
    body: String,
}

impl Refusal {
    fn of(e: &ApiError) -> Self {
        Refusal { status: e.status(), code: e.code(), body: serde_json::to_string(&e.body()).unwrap_or_default() }
    }
}

#[derive(Serialize)]
struct Verdict {
    ip: String,
    passed: bool,
    remember: Option<(String, u64)>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Answer<'a> {
    Ready {},
    Misconfigured {
        error: String,
    },
    Refuse {
        refuse: Refusal,
        provider: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        rdns: Option<Verdict>,
    },
    /// Start the reverse-DNS check: `mh_rdns(h, 0, …)`.
    Check {
        h: u32,
        provider: Option<&'static str>,
    },
    KvGet {
        key: String,
    },
    Fetch {
        url: String,
        /// The name asked for (for the log: the URL may carry a token).
        name: String,
    },
    Read {
        h: u32,
        provider: Option<&'static str>,
        /// `Content-Length`, when it is a number: the body must be exactly this long.
        announced: Option<u64>,
        /// The most the body may be (`mh_too_large` words the refusal).
        limit: u64,
        reserve: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        rdns: Option<Verdict>,
    },
    Plan(PlanOut<'a>),
}

impl Answer<'_> {
    fn refuse(e: &ApiError, provider: Option<&'static str>) -> Self {
        Answer::Refuse { refuse: Refusal::of(e), provider, rdns: None }
    }

    fn plan<'a>(plan: &'a Plan, received: &'a [u8]) -> Answer<'a> {
        let body = plan.body(received);
        Answer::Plan(PlanOut {
            ids: plan.ids(),
            ttl: plan.ttl,
            data: (body.as_ptr() as usize, body.len()),
            unrouted_sql: plan.events.iter().any(|e| e.unrouted.is_some()).then_some(pipeline::RECORD_UNROUTED_SQL),
            batch: (pipeline::BATCH_COUNT, pipeline::BATCH_BYTES),
            events: plan
                .events
                .iter()
                .map(|e| EventOut {
                    id: &e.id,
                    kind: e.kind,
                    key: &e.key,
                    messages: e.messages.iter().map(|m| (m.as_ptr() as usize, m.len())).collect(),
                    units: e.messages.iter().map(|m| crate::delivery::queue_units(m.len())).collect(),
                    stored: e.stored.as_ref().map(|s| StoredOut {
                        body: &s.body_key,
                        parts: &s.manifest_key,
                        manifest: (s.manifest.as_ptr() as usize, s.manifest.len()),
                    }),
                    unrouted: e.unrouted.as_ref().map(|u| (u.r2_key.as_deref(), u.received_at, u.to_json())),
                })
                .collect(),
        })
    }
}

#[derive(Serialize)]
struct PlanOut<'a> {
    ids: Vec<&'a str>,
    ttl: u64,
    /// Where a stored event's body is (address, length).
    data: (usize, usize),
    events: Vec<EventOut<'a>>,
    unrouted_sql: Option<&'static str>,
    /// Messages and bytes per `sendBatch`.
    batch: (usize, usize),
}

#[derive(Serialize)]
struct EventOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    key: &'a str,
    /// Each message, JSON text (address, length; its bytes are what `batch` counts).
    messages: Vec<(usize, usize)>,
    /// Each message's queue operations (per 64 KB), for the log's `ops`.
    units: Vec<u64>,
    stored: Option<StoredOut<'a>>,
    /// The R2 key, received time and envelope of its unrouted row.
    unrouted: Option<(Option<&'a str>, i64, String)>,
}

#[derive(Serialize)]
struct StoredOut<'a> {
    body: &'a str,
    parts: &'a str,
    manifest: (usize, usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(touched: i64) -> Request {
        Request { provider: Provider::ALL[0], touched, headers: Vec::new(), rdns: None, check: None, body: Vec::new(), plan: None }
    }

    #[test]
    fn an_ended_handle_never_reaches_the_request_that_reuses_its_slot() {
        let mut r = Requests::default();
        let a = r.insert(request(0)).unwrap();
        r.remove(a);
        let b = r.insert(request(0)).unwrap();
        assert_eq!(a & 0xffff, b & 0xffff, "the slot is reused");
        assert_ne!(a, b, "under another generation");
        assert!(r.get(a).is_none() && r.get_mut(a, 0).is_none());
        r.remove(a); // a late mh_end of the first request
        assert!(r.get(b).is_some(), "the second request is untouched");
    }

    #[test]
    fn a_slot_is_retired_before_its_generation_wraps() {
        let mut r = Requests::default();
        let mut first = None;
        for _ in 0..u16::MAX {
            let h = r.insert(request(0)).unwrap();
            first.get_or_insert(h);
            assert_eq!(h & 0xffff, 0);
            r.remove(h);
        }
        let h = r.insert(request(0)).unwrap();
        assert_eq!(h & 0xffff, 1, "slot 0 spent all its generations");
        assert!(r.get(first.unwrap()).is_none());
    }

    #[test]
    fn idle_requests_are_forgotten_and_used_ones_kept() {
        let mut r = Requests::default();
        let idle = r.insert(request(100)).unwrap();
        let busy = r.insert(request(100)).unwrap();
        assert!(r.get_mut(busy, 900).is_some());
        r.forget_idle(900 - STALE_SECONDS);
        assert!(r.get(idle).is_none());
        assert!(r.get(busy).is_some());
    }

    #[test]
    fn a_malformed_variables_object_is_a_configuration_error_not_defaults() {
        let vars = br#"{"MAX_EVENT_AGE_SECONDS":3600}"#;
        let ptr = mh_input(vars.len());
        // SAFETY: mh_input made the input buffer `vars.len()` bytes long at `ptr`.
        unsafe { std::ptr::copy_nonoverlapping(vars.as_ptr(), ptr, vars.len()) };
        let len = mh_init(vars.len());
        drop(std::panic::take_hook()); // mh_init's hook keeps messages for mh_panic; tests want them printed
        let answer = with(|s| String::from_utf8_lossy(&s.output[..len]).into_owned());
        assert!(answer.contains("could not read the variables"), "{answer}");
        assert!(with(|s| s.config.is_none()));
    }
}
