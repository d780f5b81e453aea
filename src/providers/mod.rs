//! The providers: one module each, with two entry points
//! (`authenticate`, `normalise`) and nothing about KV, queues or HTTP.
//!
//! `ingest` is the pure half of the pipeline, written once:
//! configured? → size → authenticate → parse → normalise. The edge then
//! dedupes, enqueues and answers.

pub mod adm_tools;

use crate::config::Config;
use crate::error::ApiError;
use crate::event::Event;
use serde_json::value::RawValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
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
    /// Unix seconds: the core never reads a clock.
    pub now: i64,
}

impl Inbound<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Provider {
    pub const ALL: [Provider; 1] = [Provider::AdmTools];

    /// The provider of `/webhooks/{route}`.
    pub fn from_route(route: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == route)
    }

    /// The route segment, `source` suffix and `data.provider` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::AdmTools => "adm-tools",
        }
    }

    /// `None` when the provider can authenticate requests, or what to set.
    pub fn missing_config(self, cfg: &Config) -> Option<&'static str> {
        match self {
            Self::AdmTools => cfg.adm_tools_tokens.is_empty().then_some(
                "adm.tools is not configured: set ADM_TOOLS_WEBHOOK_TOKEN (`wrangler secret put ADM_TOOLS_WEBHOOK_TOKEN`) to the token shown in its Webhooks list",
            ),
        }
    }

    pub fn authenticate(self, cfg: &Config, req: &Inbound) -> Result<(), ApiError> {
        match self {
            Self::AdmTools => adm_tools::authenticate(cfg, req),
        }
    }

    pub fn normalise(self, cfg: &Config, req: &Inbound) -> Result<Vec<Event>, ApiError> {
        match self {
            Self::AdmTools => adm_tools::normalise(cfg, req),
        }
    }

    /// The pure pipeline: every check and the canonical events, or the refusal.
    pub fn ingest(self, cfg: &Config, req: &Inbound) -> Result<Vec<Event>, ApiError> {
        if let Some(missing) = self.missing_config(cfg) {
            return Err(ApiError::NotConfigured(missing.into()));
        }
        if req.body.len() as u64 > cfg.max_body_bytes {
            return Err(ApiError::PayloadTooLarge { limit: cfg.max_body_bytes });
        }
        self.authenticate(cfg, req)?;
        if req.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest("the body is empty; expected the provider's JSON payload".into()));
        }
        let mut events = self.normalise(cfg, req)?;
        if cfg.include_raw {
            let raw: Option<Box<RawValue>> = serde_json::from_slice::<&RawValue>(req.body).ok().map(|r| r.to_owned());
            for e in events.iter_mut().filter(|e| e.data.raw.is_none()) {
                e.data.raw.clone_from(&raw);
            }
        }
        Ok(events)
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
