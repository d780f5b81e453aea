//! The providers: one module each, with two entry points
//! (`authenticate`, `normalise`) and nothing about KV, queues or HTTP.
//!
//! `ingest` is the pure half of the pipeline, written once:
//! configured? → size → authenticate → parse → normalise. The edge then
//! dedupes, enqueues and answers.

pub mod adm_tools;
pub mod improvmx;
pub mod mail_plus;
pub mod maileroo;
pub mod mailtura;

use crate::auth::{verify_hex_hmac, IpList};
use crate::config::{Config, Secrets};
use crate::error::ApiError;
use crate::event::{Event, EventType};
use crate::large::{render, skeletonize, EventBody, LargePath, Refs};
use serde::Deserialize as _;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    MailPlus,
    Mailtura,
    Maileroo,
    ImprovMx,
    AdmTools,
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
    /// Unix seconds: the core never reads a clock.
    pub now: i64,
}

impl<'a> Inbound<'a> {
    /// A request whose body is parsed as it is (no skeleton yet).
    pub fn new(headers: &'a [(String, String)], client_ip: Option<&'a str>, body: &'a [u8], now: i64) -> Self {
        Inbound { headers, client_ip, body, json: body, refs: None, rdns: None, now }
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
    pub const ALL: [Provider; 5] = [Provider::MailPlus, Provider::Mailtura, Provider::Maileroo, Provider::ImprovMx, Provider::AdmTools];

    /// The provider of `/webhooks/{route}`.
    pub fn from_route(route: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == route)
    }

    /// The route segment, `source` suffix and `data.provider` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::MailPlus => mail_plus::NAME,
            Self::Mailtura => mailtura::NAME,
            Self::Maileroo => maileroo::NAME,
            Self::ImprovMx => improvmx::NAME,
            Self::AdmTools => adm_tools::NAME,
        }
    }

    /// Every event type the provider's events can have (destination filters are checked against it).
    pub fn event_types(self) -> &'static [EventType] {
        match self {
            Self::MailPlus => mail_plus::EVENT_TYPES,
            Self::Mailtura => mailtura::EVENT_TYPES,
            Self::Maileroo => maileroo::EVENT_TYPES,
            Self::ImprovMx => improvmx::EVENT_TYPES,
            Self::AdmTools => adm_tools::EVENT_TYPES,
        }
    }

    /// `None` when the provider can authenticate requests, or what to set.
    pub fn missing_config(self, cfg: &Config) -> Option<&'static str> {
        match self {
            Self::MailPlus => mail_plus::missing_config(cfg),
            Self::Mailtura => cfg.mailtura_secrets.is_empty().then_some(
                "Mailtura is not configured: set MAILTURA_WEBHOOK_SECRET (`wrangler secret put MAILTURA_WEBHOOK_SECRET`) to the webhook's signing secret",
            ),
            Self::Maileroo => cfg.maileroo_secrets.is_empty().then_some(
                "Maileroo is not configured: set MAILEROO_WEBHOOK_SECRET (`wrangler secret put MAILEROO_WEBHOOK_SECRET`) to the shared secret from its dashboard",
            ),
            Self::ImprovMx => cfg.improvmx_allowed_ips.is_empty().then_some(
                "ImprovMX is not configured: set IMPROVMX_ALLOWED_IPS (ImprovMX posts from 15.237.103.194)",
            ),
            Self::AdmTools => cfg.adm_tools_tokens.is_empty().then_some(
                "adm.tools is not configured: set ADM_TOOLS_WEBHOOK_TOKEN (`wrangler secret put ADM_TOOLS_WEBHOOK_TOKEN`) to the token shown in its Webhooks list",
            ),
        }
    }

    /// What is checked before the body is read (`req.body` is empty here):
    /// the source address, the token, that a signature is present. A request
    /// that fails it costs no body buffering.
    pub fn authenticate_head(self, cfg: &Config, req: &Inbound) -> Result<(), ApiError> {
        match self {
            Self::MailPlus => mail_plus::authenticate(cfg, req),
            Self::Mailtura => signature(req, mailtura::SIGNATURE_HEADER).map(|_| ()),
            Self::Maileroo => signature(req, maileroo::SIGNATURE_HEADER).map(|_| ()),
            Self::ImprovMx => improvmx::authenticate(cfg, req),
            Self::AdmTools => adm_tools::authenticate(cfg, req),
        }
    }

    /// True when `authenticate_head` is the whole authentication (source
    /// address or token), so the body is only read from a known sender.
    pub fn authenticated_before_body(self) -> bool {
        match self {
            Self::MailPlus | Self::ImprovMx | Self::AdmTools => true,
            Self::Mailtura | Self::Maileroo => false,
        }
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

    /// The whole authentication, body included.
    pub fn authenticate(self, cfg: &Config, req: &Inbound) -> Result<(), ApiError> {
        match self {
            Self::MailPlus => mail_plus::authenticate(cfg, req),
            Self::Mailtura => mailtura::authenticate(cfg, req),
            Self::Maileroo => maileroo::authenticate(cfg, req),
            Self::ImprovMx => improvmx::authenticate(cfg, req),
            Self::AdmTools => adm_tools::authenticate(cfg, req),
        }
    }

    pub fn normalise(self, cfg: &Config, req: &Inbound) -> Result<Vec<Event>, ApiError> {
        match self {
            Self::MailPlus => mail_plus::normalise(cfg, req),
            Self::Mailtura => mailtura::normalise(cfg, req),
            Self::Maileroo => maileroo::normalise(cfg, req),
            Self::ImprovMx => improvmx::normalise(cfg, req),
            Self::AdmTools => adm_tools::normalise(cfg, req),
        }
    }

    /// The strings of this provider's payload that may be large (attachments,
    /// text, html): normalised as markers, never copied (see `large`).
    pub fn large_paths(self) -> &'static [LargePath] {
        match self {
            Self::MailPlus => mail_plus::LARGE_PATHS,
            Self::ImprovMx => improvmx::LARGE_PATHS,
            Self::Mailtura | Self::Maileroo | Self::AdmTools => &[],
        }
    }

    /// The pure pipeline: every check and the canonical events, or the refusal.
    /// `nonce` (random, per request) makes the skeleton's markers unguessable.
    /// Render the events with `Ingested::render`.
    pub fn ingest(self, cfg: &Config, req: &Inbound, nonce: &str) -> Result<Ingested, ApiError> {
        if let Some(missing) = self.missing_config(cfg) {
            return Err(ApiError::NotConfigured(missing.into()));
        }
        if req.body.len() as u64 > self.body_limit(cfg) {
            return Err(ApiError::PayloadTooLarge { limit: self.body_limit(cfg) });
        }
        self.authenticate_head(cfg, req)?;
        self.authenticate(cfg, req)?;
        if req.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest("the body is empty; expected the provider's JSON payload".into()));
        }
        let paths = self.large_paths();
        if paths.is_empty() {
            return Ok(Ingested { events: self.normalise(cfg, req)?, refs: Refs::default(), raw: raw_range(cfg, req.body) });
        }
        let skeleton = skeletonize(req.body, paths, nonce).map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
        let events = self.normalise(cfg, &Inbound { json: &skeleton.json, refs: Some(&skeleton.refs), ..*req })?;
        Ok(Ingested { events, refs: skeleton.refs, raw: raw_range(cfg, req.body) })
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
}

impl Ingested {
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
