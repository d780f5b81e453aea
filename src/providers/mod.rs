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
use crate::event::Event;
use serde::Deserialize as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    MailPlus,
    Mailtura,
    Maileroo,
    ImprovMx,
    AdmTools,
}

/// What the edge hands the core of one inbound request.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Header names in lower case, as the Fetch API yields them.
    pub headers: &'a [(String, String)],
    /// `CF-Connecting-IP`, never `X-Forwarded-For`.
    pub client_ip: Option<&'a str>,
    pub body: &'a [u8],
    /// The edge's reverse-DNS verdict, when `mail_plus::rdns_lookup` asked for one.
    pub rdns: Option<bool>,
    /// Unix seconds: the core never reads a clock.
    pub now: i64,
}

impl<'a> Inbound<'a> {
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

    /// The pure pipeline: every check and the canonical events, or the refusal.
    /// Serialise them with `Event::to_json_with_raw(raw_payload(cfg, body))`.
    pub fn ingest(self, cfg: &Config, req: &Inbound) -> Result<Vec<Event>, ApiError> {
        if let Some(missing) = self.missing_config(cfg) {
            return Err(ApiError::NotConfigured(missing.into()));
        }
        if req.body.len() as u64 > cfg.max_body_bytes {
            return Err(ApiError::PayloadTooLarge { limit: cfg.max_body_bytes });
        }
        self.authenticate_head(cfg, req)?;
        self.authenticate(cfg, req)?;
        if req.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest("the body is empty; expected the provider's JSON payload".into()));
        }
        self.normalise(cfg, req)
    }
}

/// The `data.raw` of this request's events: the body itself (it parsed as
/// JSON, so it is valid JSON text), unless `INCLUDE_RAW=false`.
pub fn raw_payload<'a>(cfg: &Config, body: &'a [u8]) -> Option<&'a str> {
    if !cfg.include_raw {
        return None;
    }
    std::str::from_utf8(body).ok().map(str::trim).filter(|b| !b.is_empty())
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
/// container: `null` is the same as absent (the provider docs never say a
/// container may be `null`, and refusing it would lose the event).
pub fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
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
