//! The ingest module's exports (`build/ingest.wasm`, this crate built
//! `--no-default-features`): the webhook path's pure core behind a few
//! synchronous functions, for the Worker's entry module (`src/entry.mjs`),
//! which does the I/O (`pipeline`'s steps). No wasm-bindgen and no async:
//! bytes cross in linear memory. An input is written into the buffer
//! `mh_input` returns; an answer is JSON in the buffer `mh_output` points at,
//! `len` bytes long as the call returned. A request lives under a handle from
//! `mh_begin` until `mh_end`; its body, and the manifests of its large events,
//! stay at the addresses the answers name until then.
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

#[derive(Default)]
struct State {
    config: Option<Result<Config, ConfigError>>,
    input: Vec<u8>,
    output: Vec<u8>,
    requests: Vec<Option<Request>>,
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
    std::panic::set_hook(Box::new(|info| PANIC.with(|p| *p.borrow_mut() = info.to_string())));
    with(|s| {
        s.input.truncate(len);
        let vars: HashMap<String, String> = serde_json::from_slice(&s.input).unwrap_or_default();
        let cfg = Config::from_lookup(|name| vars.get(name).cloned());
        let answer = match &cfg {
            Ok(_) => Answer::Ready {},
            Err(e) => Answer::Misconfigured { error: e.to_string() },
        };
        s.config = Some(cfg);
        write(&mut s.output, &answer)
    })
}

/// The message of the panic that trapped the last call (the entry then starts a new instance).
#[no_mangle]
pub extern "C" fn mh_panic() -> usize {
    let message = PANIC.with(|p| std::mem::take(&mut *p.borrow_mut()));
    with(|s| {
        s.output = message.into_bytes();
        s.output.len()
    })
}

/// A request's head: the input (`len` bytes) is its path, then each header's
/// name and value, each on a line of its own. Answers `Refuse`, `Check` (a
/// reverse-DNS check first, with `mh_rdns`) or `Read`.
#[no_mangle]
pub extern "C" fn mh_begin(len: usize) -> usize {
    with(|s| {
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
        let h = s.insert(Request { provider, headers, rdns: None, check: None, body: Vec::new(), plan: None });
        s.head(h, None)
    })
}

/// The answer to a reverse-DNS step of request `h`: `kind` 0 starts the check,
/// 1 is a KV value (the input; `status` 0 when absent or unreadable), 2 a DoH
/// answer (the input) with its HTTP `status`, 3 a failed fetch (the input says why).
/// Answers the next step (`KvGet`, `Fetch`), or, with the verdict, what `mh_begin` answers.
#[no_mangle]
pub extern "C" fn mh_rdns(h: u32, kind: u32, status: u32, now: f64) -> usize {
    with(|s| {
        let input = std::mem::take(&mut s.input);
        let text = String::from_utf8_lossy(&input);
        let answer = match kind {
            0 => RdnsInput::Start,
            1 => RdnsInput::Kv((status != 0).then_some(&*text)),
            2 => RdnsInput::Answer { status: u16::try_from(status).unwrap_or(0), body: &input },
            _ => RdnsInput::Failed(&text),
        };
        let State { requests, verdicts, output, .. } = s;
        let Some(req) = requests.get_mut(h as usize).and_then(Option::as_mut) else {
            return write(output, &Answer::refuse(&unknown_handle(), None));
        };
        let Some(check) = req.check.as_mut() else { return write(output, &Answer::refuse(&unknown_handle(), None)) };
        let ip = check.ip().to_string();
        match check.step(answer, verdicts, now as i64) {
            Ok(RdnsStep::KvGet(key)) => write(output, &Answer::KvGet { key }),
            Ok(RdnsStep::Fetch(url)) => write(output, &Answer::Fetch { url }),
            Ok(RdnsStep::Done { passed, remember }) => {
                req.rdns = Some(passed);
                req.check = None;
                s.head(h, Some(Verdict { ip, passed, remember }))
            }
            Err(e) => {
                let provider = Some(req.provider.name());
                requests[h as usize] = None;
                write(output, &Answer::refuse(&e, provider))
            }
        }
    })
}

/// Makes request `h`'s body `len` bytes long (zeroed), and says where it is;
/// the caller copies the body there (the address holds until the next `mh_body` of `h`).
#[no_mangle]
pub extern "C" fn mh_body(h: u32, len: usize) -> *mut u8 {
    with(|s| match s.requests.get_mut(h as usize).and_then(Option::as_mut) {
        Some(req) => {
            req.body.resize(len, 0);
            req.body.as_mut_ptr()
        }
        None => std::ptr::null_mut(),
    })
}

/// Reserves room for request `h`'s body to grow to `len` bytes without moving.
#[no_mangle]
pub extern "C" fn mh_reserve(h: u32, len: usize) {
    with(|s| {
        if let Some(req) = s.requests.get_mut(h as usize).and_then(Option::as_mut) {
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
        let Some(req) = requests.get_mut(h as usize).and_then(Option::as_mut) else {
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

/// Forgets request `h` (its body and plan).
#[no_mangle]
pub extern "C" fn mh_end(h: u32) {
    with(|s| {
        if let Some(slot) = s.requests.get_mut(h as usize) {
            *slot = None;
        }
        while s.requests.last().is_some_and(Option::is_none) {
            s.requests.pop();
        }
    })
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
        output.extend_from_slice(br#"{"refuse":{"status":503,"code":"unavailable","body":"{}"}}"#);
    }
    output.len()
}

impl State {
    fn insert(&mut self, req: Request) -> u32 {
        let at = match self.requests.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.requests.push(None);
                self.requests.len() - 1
            }
        };
        self.requests[at] = Some(req);
        at as u32
    }

    /// What request `h` needs before its body, as an answer (a refusal forgets the request).
    fn head(&mut self, h: u32, rdns: Option<Verdict>) -> usize {
        let req = self.requests.get(h as usize).and_then(Option::as_ref);
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
                if let Some(slot) = self.requests.get_mut(h as usize) {
                    *slot = None;
                }
                Answer::Refuse { refuse: Refusal::of(&e), provider, rdns }
            }
            Head::Rdns(check) => {
                if let Some(req) = self.requests.get_mut(h as usize).and_then(Option::as_mut) {
                    req.check = Some(Rdns::new(check));
                }
                Answer::Check { h, provider }
            }
            Head::Read { limit, reserve } => {
                Answer::Read { h, provider, announced, limit, reserve, too_large: Refusal::of(&ApiError::PayloadTooLarge { limit }), rdns }
            }
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
    },
    Read {
        h: u32,
        provider: Option<&'static str>,
        /// `Content-Length`, when it is a number: the body must be exactly this long.
        announced: Option<u64>,
        limit: u64,
        reserve: u64,
        too_large: Refusal,
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
                    messages: &e.messages,
                    sizes: e.messages.iter().map(String::len).collect(),
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
    messages: &'a [String],
    /// Each message's bytes (what `batch` counts).
    sizes: Vec<usize>,
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
