//! The sources: one module each, implementing `Source` (everything about
//! itself), and one registry line each (`registry!`), from which the provider
//! list, routes, `/healthz`, settings and every dispatch are derived. Nothing
//! here knows KV, queues or HTTP.
//!
//! `ingest` is the pure half of the pipeline, written once:
//! configured? → size → authenticate → parse → normalise → replay window.
//! The edge then dedupes, enqueues and answers.

pub mod adm_tools;
pub mod email_routing;
pub mod improvmx;
pub mod mail_plus;
pub mod maileroo;
pub mod mailtura;

use crate::auth::{check_age, verify_hex_hmac, IpList, Secrets};
use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::event::{Event, EventType};
use crate::large::{render, skeletonize, EventBody, LargePath, Refs};
use serde::Deserialize as _;
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// What a source of events declares about itself. Everything about one
/// provider lives in its module's implementation: its name (the route),
/// event types, authentication (and so its replay window), settings with
/// their validation and setup message, and normalisation. The registry
/// (`registry!` below) is the one list of sources; the rest is derived.
pub trait Source {
    /// The route segment (`/webhooks/{NAME}`), the `source` suffix and `data.provider`.
    const NAME: &'static str;
    /// Every type its events can have (destination filters are checked against it).
    const EVENT_TYPES: &'static [EventType];
    /// How its requests are authenticated.
    const AUTH: Auth;
    /// Strings of its payload that may be large: normalised as markers, never copied (see `large`).
    const LARGE_PATHS: &'static [LargePath] = &[];
    /// Its variables and secrets (the README's configuration table and `.dev.vars.example` list each).
    const SETTINGS: &'static [Setting];
    /// Its settings, parsed and validated.
    type Settings: std::fmt::Debug + Clone;
    /// Reads its settings through `get` (unset and empty are the same); a bad value names its variable.
    fn settings(get: &Lookup) -> Result<Self::Settings, ConfigError>;
    /// `None` when requests can be authenticated, or what to set (its setup message).
    fn missing(s: &Self::Settings) -> Option<String>;
    /// Valid settings that an operator should look at twice (`/healthz` `warnings`).
    fn warnings(_s: &Self::Settings) -> Vec<String> {
        Vec::new()
    }
    /// A reverse-DNS check the edge must make before `authenticate_head`, if this request needs one.
    fn rdns_check(_s: &Self::Settings, _req: &Inbound) -> Option<RdnsCheck> {
        None
    }
    /// What is checked before the body is read: the source address, the token,
    /// the presence of a signature (`Auth::SignedBody` checks that generically).
    fn authenticate_head(_s: &Self::Settings, _req: &Inbound) -> Result<(), ApiError> {
        Ok(())
    }
    /// For `Auth::SignedBody`: the values of its secret (any one verifies).
    fn signing_secrets(_s: &Self::Settings) -> Option<&Secrets> {
        None
    }
    /// For a source whose input is not its JSON payload (`Auth::Platform`: raw
    /// mail), that payload, made from `req.body`; the pipeline then runs on it
    /// (its large strings as markers, its bytes stored for a large event).
    fn payload(_s: &Self::Settings, _req: &Inbound) -> Result<Option<Vec<u8>>, ApiError> {
        Ok(None)
    }
    /// The canonical events, and for `Auth::SignedBody` the signed payload's own time.
    fn normalise(s: &Self::Settings, req: &Inbound) -> Result<Normalised, ApiError>;
    /// For mail the platform hands over: the address a copy of each message is forwarded to.
    fn forward_to(_s: &Self::Settings) -> Option<&str> {
        None
    }
}

/// How a source's requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The source address or a token, checked before the body is read (`authenticate_head`).
    BeforeBody,
    /// A hex HMAC-SHA256 of the raw body in `header`, with any value of the secret `secret`.
    /// The payload's own time (`time_field`, which `normalise` returns) must be within
    /// `MAX_EVENT_AGE_SECONDS`: the pipeline checks it, so no signed source can skip its replay window.
    SignedBody { header: &'static str, secret: &'static str, time_field: &'static str },
    /// Handed over by the platform itself (Email Routing's `email` handler),
    /// not posted: no route, so nothing for a sender to authenticate as. What
    /// a sender wrote in the message is checked by the source (its auth verdicts).
    Platform,
}

/// A variable or secret of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub secret: bool,
}

impl Setting {
    pub const fn var(name: &'static str) -> Self {
        Setting { name, secret: false }
    }

    pub const fn secret(name: &'static str) -> Self {
        Setting { name, secret: true }
    }
}

/// Reads a variable or secret; unset and empty are the same (`None`).
pub type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// A reverse-DNS check of the client address: its PTR must be a name under
/// `suffix` that resolves back to it (over the DoH JSON API at `doh_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdnsCheck {
    pub ip: IpAddr,
    pub suffix: String,
    pub doh_url: String,
}

/// What `Source::normalise` returns.
#[derive(Debug)]
pub struct Normalised {
    pub events: Vec<Event>,
    /// The payload's own time, Unix seconds (what `Auth::SignedBody`'s replay window checks).
    pub time: Option<i64>,
}

impl Normalised {
    pub fn new(events: Vec<Event>) -> Self {
        Normalised { events, time: None }
    }
}

macro_rules! count {
    () => { 0usize };
    ($x:ident $($rest:ident)*) => { 1usize + count!($($rest)*) };
}

/// The one list of sources: a variant of `Provider` and a field of
/// `Settings` each, and every dispatch from one to its module.
macro_rules! registry {
    ($($variant:ident => $module:ident :: $source:ident),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Provider {
            $($variant),*
        }

        /// Every source's settings.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $(pub $module: <$module::$source as Source>::Settings),*
        }

        impl Settings {
            pub fn from_lookup(get: &Lookup) -> Result<Self, ConfigError> {
                Ok(Settings { $($module: <$module::$source as Source>::settings(get)?),* })
            }
        }

        impl Provider {
            pub const ALL: [Provider; count!($($variant)*)] = [$(Provider::$variant),*];

            /// The route segment, `source` suffix and `data.provider` value.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => <$module::$source as Source>::NAME),* }
            }

            /// Every event type the provider's events can have.
            pub fn event_types(self) -> &'static [EventType] {
                match self { $(Self::$variant => <$module::$source as Source>::EVENT_TYPES),* }
            }

            pub fn auth(self) -> Auth {
                match self { $(Self::$variant => <$module::$source as Source>::AUTH),* }
            }

            pub fn large_paths(self) -> &'static [LargePath] {
                match self { $(Self::$variant => <$module::$source as Source>::LARGE_PATHS),* }
            }

            pub fn settings(self) -> &'static [Setting] {
                match self { $(Self::$variant => <$module::$source as Source>::SETTINGS),* }
            }

            /// `None` when the provider can authenticate requests, or what to set.
            pub fn missing_config(self, cfg: &Config) -> Option<String> {
                match self { $(Self::$variant => <$module::$source as Source>::missing(&cfg.providers.$module)),* }
            }

            pub fn warnings(self, cfg: &Config) -> Vec<String> {
                match self { $(Self::$variant => <$module::$source as Source>::warnings(&cfg.providers.$module)),* }
            }

            /// The reverse-DNS check the edge must make before `authenticate_head`, if any.
            pub fn rdns_check(self, cfg: &Config, req: &Inbound) -> Option<RdnsCheck> {
                match self { $(Self::$variant => <$module::$source as Source>::rdns_check(&cfg.providers.$module, req)),* }
            }

            fn head(self, cfg: &Config, req: &Inbound) -> Result<(), ApiError> {
                match self { $(Self::$variant => <$module::$source as Source>::authenticate_head(&cfg.providers.$module, req)),* }
            }

            fn signing_secrets(self, cfg: &Config) -> Option<&Secrets> {
                match self { $(Self::$variant => <$module::$source as Source>::signing_secrets(&cfg.providers.$module)),* }
            }

            fn payload(self, cfg: &Config, req: &Inbound) -> Result<Option<Vec<u8>>, ApiError> {
                match self { $(Self::$variant => <$module::$source as Source>::payload(&cfg.providers.$module, req)),* }
            }

            /// Where a copy of each message goes (mail the platform hands over), if anywhere.
            pub fn forward_to(self, cfg: &Config) -> Option<&str> {
                match self { $(Self::$variant => <$module::$source as Source>::forward_to(&cfg.providers.$module)),* }
            }

            pub fn normalise(self, cfg: &Config, req: &Inbound) -> Result<Normalised, ApiError> {
                match self { $(Self::$variant => <$module::$source as Source>::normalise(&cfg.providers.$module, req)),* }
            }
        }
    };
}

registry! {
    MailPlus => mail_plus::MailPlus,
    Mailtura => mailtura::Mailtura,
    Maileroo => maileroo::Maileroo,
    ImprovMx => improvmx::ImprovMx,
    AdmTools => adm_tools::AdmTools,
    EmailRouting => email_routing::EmailRouting,
}

/// Delivery events signed over the body (Mailtura, Maileroo) are a few KB;
/// their bodies are read before they can be authenticated, so they are capped here.
pub const SIGNED_BODY_MAX_BYTES: u64 = 1024 * 1024;

/// What the edge hands the core of one inbound request.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Header names in lower case, as the Fetch API yields them.
    pub headers: &'a [(String, String)],
    /// `CF-Connecting-IP`, never `X-Forwarded-For`.
    pub client_ip: Option<&'a str>,
    /// The request body as received: what signatures and body-derived ids cover.
    pub body: &'a [u8],
    /// What a normaliser parses: the body, or its skeleton (see `large`),
    /// whose large strings are markers that `refs` resolves.
    pub json: &'a [u8],
    pub refs: Option<&'a Refs>,
    /// The edge's reverse-DNS verdict, when `mail_plus::rdns_lookup` asked for one.
    pub rdns: Option<bool>,
    /// The SMTP envelope of a message the platform handed over (`Auth::Platform`).
    pub envelope: Option<SmtpEnvelope<'a>>,
    /// Unix seconds: the core never reads a clock.
    pub now: i64,
}

/// `MAIL FROM` and `RCPT TO` of a message, as the receiving server saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmtpEnvelope<'a> {
    pub from: &'a str,
    pub to: &'a str,
}

impl<'a> Inbound<'a> {
    /// A request whose body is parsed as it is (no skeleton yet).
    pub fn new(headers: &'a [(String, String)], client_ip: Option<&'a str>, body: &'a [u8], now: i64) -> Self {
        Inbound { headers, client_ip, body, json: body, refs: None, rdns: None, envelope: None, now }
    }

    /// SHA-256 of a string of the payload (of the large string a marker stands for).
    pub fn text_sha256(&self, s: &str) -> [u8; 32] {
        match self.refs.and_then(|r| r.get(s)) {
            Some(r) => r.sha256,
            None => Sha256::digest(s.as_bytes()).into(),
        }
    }

    /// The decoded length of a base64 string of the payload.
    pub fn base64_len(&self, s: &str) -> u64 {
        match self.refs.and_then(|r| r.get(s)) {
            Some(r) => r.base64_len,
            None => crate::mailauth::base64_decoded_len(s),
        }
    }

    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl Provider {
    /// The source named `name`, whichever way its events come (filters, the event log).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// The provider of `/webhooks/{route}` (a source the platform feeds has no route).
    pub fn from_route(route: &str) -> Option<Self> {
        Self::from_name(route).filter(|p| p.posts())
    }

    /// True when its events are posted to `/webhooks/{name}`; false when the platform hands them over.
    pub fn posts(self) -> bool {
        self.auth() != Auth::Platform
    }

    /// The source of mail that the platform hands to the Worker's `email` handler.
    pub fn email_handler() -> Option<Self> {
        Self::ALL.iter().copied().find(|p| !p.posts())
    }

    /// What is checked before the body is read (`req.body` is empty here):
    /// the source address, the token, that a signature is present. A request
    /// that fails it costs no body buffering.
    pub fn authenticate_head(self, cfg: &Config, req: &Inbound) -> Result<(), ApiError> {
        if let Auth::SignedBody { header, .. } = self.auth() {
            signature(req, header)?;
        }
        self.head(cfg, req)
    }

    /// True when `authenticate_head` is the whole authentication (source
    /// address or token), so the body is only read from a known sender.
    pub fn authenticated_before_body(self) -> bool {
        matches!(self.auth(), Auth::BeforeBody | Auth::Platform)
    }

    /// The largest body taken: `MAX_BODY_BYTES`, but at most
    /// `SIGNED_BODY_MAX_BYTES` where the signature can only be checked once
    /// the whole body is read (anyone can make mailhook read that much).
    pub fn body_limit(self, cfg: &Config) -> u64 {
        if self.authenticated_before_body() {
            cfg.max_body_bytes
        } else {
            cfg.max_body_bytes.min(SIGNED_BODY_MAX_BYTES)
        }
    }

    /// The whole authentication, body included: for a signed source, the HMAC of the body.
    pub fn authenticate(self, cfg: &Config, req: &Inbound) -> Result<(), ApiError> {
        self.authenticate_head(cfg, req)?;
        match self.auth() {
            Auth::BeforeBody | Auth::Platform => Ok(()),
            Auth::SignedBody { header, secret, .. } => {
                let secrets = self.signing_secrets(cfg).ok_or_else(|| ApiError::NotConfigured(format!("{secret} is not set")))?;
                hmac_header(secrets, req, header, secret)
            }
        }
    }

    /// The events of a request, normalised, with the replay window of a signed source checked.
    fn events(self, cfg: &Config, req: &Inbound) -> Result<Vec<Event>, ApiError> {
        let n = self.normalise(cfg, req)?;
        if let Auth::SignedBody { time_field, .. } = self.auth() {
            check_age(n.time, req.now, cfg.max_event_age_seconds, time_field)?;
        }
        Ok(n.events)
    }

    /// The pure pipeline: every check and the canonical events, or the refusal.
    /// `nonce` (random, per request) makes the skeleton's markers unguessable.
    /// Render the events with `Ingested::render`.
    pub fn ingest(self, cfg: &Config, req: &Inbound, nonce: &str) -> Result<Ingested, ApiError> {
        if let Some(missing) = self.missing_config(cfg) {
            return Err(ApiError::NotConfigured(missing));
        }
        if req.body.len() as u64 > self.body_limit(cfg) {
            return Err(ApiError::PayloadTooLarge { limit: self.body_limit(cfg) });
        }
        self.authenticate(cfg, req)?;
        if req.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest(if self.posts() {
                "the body is empty; expected the provider's JSON payload".into()
            } else {
                "the message is empty".into()
            }));
        }
        // A source whose input is not its payload makes it first; `data.raw` is
        // then left out: the payload is mailhook's, not what the sender sent.
        let payload = self.payload(cfg, req)?;
        let (req, raw) = match &payload {
            Some(p) => (Inbound { body: p, json: p, ..*req }, None),
            None => (*req, raw_range(cfg, req.body)),
        };
        let paths = self.large_paths();
        if paths.is_empty() {
            return Ok(Ingested { events: self.events(cfg, &req)?, refs: Refs::default(), raw, payload });
        }
        let skeleton = skeletonize(req.body, paths, nonce).map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
        let events = self.events(cfg, &Inbound { json: &skeleton.json, refs: Some(&skeleton.refs), ..req })?;
        Ok(Ingested { events, refs: skeleton.refs, raw, payload })
    }
}

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

/// The signature in `header`, or 401 when it is missing or empty.
pub fn signature<'a>(req: &Inbound<'a>, header: &str) -> Result<&'a str, ApiError> {
    // Some senders prefix the algorithm, as in `sha256=…`.
    req.header(header)
        .map(|s| s.trim())
        .map(|s| s.strip_prefix("sha256=").unwrap_or(s))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::Unauthorized(format!("the {header} header is missing; the provider signs every request with it")))
}

/// Checks a hex HMAC-SHA256 signature of the raw body in `header`
/// against every value of the secret named `var`.
pub fn hmac_header(secrets: &Secrets, req: &Inbound, header: &str, var: &str) -> Result<(), ApiError> {
    if verify_hex_hmac(secrets, req.body, signature(req, header)?) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(format!(
            "{header} does not match an HMAC-SHA256 of the raw body with {var}; check that the secret is the provider's current one"
        )))
    }
}

/// Checks that the client address (`CF-Connecting-IP`) is in `list`.
pub fn ip_allowed(list: &IpList, req: &Inbound, var: &str) -> Result<(), ApiError> {
    match req.client_ip {
        Some(ip) if list.contains(ip) => Ok(()),
        Some(ip) => Err(ApiError::Forbidden(format!("source address {ip} is not in {var}"))),
        None => Err(ApiError::Forbidden("the request has no CF-Connecting-IP, so its source cannot be checked".into())),
    }
}

/// The event id from the provider's own event id, or from the raw body when
/// the payload carries none (CONTRACT §4).
pub fn id_from(provider: &str, own_id: Option<&str>, body: &[u8]) -> String {
    match own_id.filter(|id| !id.is_empty()) {
        Some(id) => crate::dedupe::event_id(provider, &[id]),
        None => crate::dedupe::event_id_from_body(provider, body),
    }
}

/// For `#[serde(default, deserialize_with = "null_as_empty")]` on an optional
/// container: `null`, `[]`, `{}` and `""` are the same as absent (the provider
/// docs never say a container may be empty or `null`; PHP writes an empty map
/// as `[]`; refusing it would lose the event).
pub fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    use serde_json::Value;
    match Value::deserialize(d)? {
        Value::Null => Ok(T::default()),
        Value::Array(a) if a.is_empty() => Ok(T::default()),
        Value::Object(o) if o.is_empty() => Ok(T::default()),
        Value::String(s) if s.is_empty() => Ok(T::default()),
        v => serde_json::from_value(v).map_err(serde::de::Error::custom),
    }
}

/// Parses the body as JSON, or says where it is not.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(provider: &str, body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(if e.is_data() {
            format!("the body is JSON but not a {provider} payload: {e}")
        } else {
            format!("the body is not valid JSON: {e}")
        })
    })
}
