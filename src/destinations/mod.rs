//! Destinations: where events go, decided without I/O.
//!
//! An event goes to every destination whose filter takes its provider, type
//! and recipient tag, each delivery with its own signing keys, timeout, retry schedule,
//! dead letter and circuit breaker. Destinations are declared in
//! `wrangler.toml` as `DESTINATIONS` (a list of tables); `ORIGIN_URL` and
//! `ORIGIN_SIGNING_SECRET` alone are the destination `origin`, as before.
//!
//! Here: what a destination is and which events it takes. `declare`: reading
//! them from the configuration; `shape`: the form of what each receives; `url`: their URLs; `circuit`: the
//! circuit breaker's gate and the slow lane.

mod circuit;
mod declare;
mod shape;
mod url;

pub use circuit::*;
pub use declare::{parse, Defaults};
pub use shape::Format;
pub use url::valid_url;

use crate::conversation::tag_matches;
use crate::event::Route;
use crate::providers::Provider;
use crate::values::SigningKey;

/// The destination that `ORIGIN_URL` and `ORIGIN_SIGNING_SECRET` declare.
pub const LEGACY_NAME: &str = "origin";

/// The longest destination name: it becomes part of a secret's name and of log lines.
pub const MAX_NAME_LEN: usize = 32;

/// Which events a destination takes. `None` takes every provider (or type, or tag).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    pub providers: Option<Vec<Provider>>,
    /// Exact types (`email.bounced`), prefixes (`email.*`) or `*`, lower case.
    pub types: Option<Vec<String>>,
    /// Patterns of the recipient's tag (`ticket-*`; `conversation::tag_matches`): an event without a tag is not taken.
    pub recipient_tags: Option<Vec<String>>,
}

impl Filter {
    pub fn matches(&self, provider: Provider, kind: &str, tag: Option<&str>) -> bool {
        self.takes_kind(provider, kind)
            && self.recipient_tags.as_ref().is_none_or(|ps| tag.is_some_and(|t| ps.iter().any(|p| tag_matches(p, t))))
    }

    fn takes_kind(&self, provider: Provider, kind: &str) -> bool {
        self.providers.as_ref().is_none_or(|ps| ps.contains(&provider))
            && self.types.as_ref().is_none_or(|ts| ts.iter().any(|t| type_matches(t, kind)))
    }

    /// True when some event that mailhook emits passes the filter.
    fn matches_anything(&self) -> bool {
        Provider::ALL.iter().any(|p| p.event_types().iter().any(|t| self.takes_kind(*p, t.as_str())))
    }
}

/// `email.*` takes every type under `email.`; `*` takes all.
pub fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

/// How a destination takes attachments' bytes (`attachments`; see `links`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachmentForm {
    /// In the event, base64: today's behaviour.
    #[default]
    Inline,
    /// As signed links to the Worker.
    Link,
}

impl AttachmentForm {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentForm::Inline => "inline",
            AttachmentForm::Link => "link",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Destination {
    /// Lower case: letters, digits and `-`.
    pub name: String,
    /// `None` only for `origin` without `ORIGIN_URL` (see `problem`).
    pub url: Option<String>,
    pub keys: Vec<SigningKey>,
    /// The secret that holds `keys`.
    pub secret_var: String,
    pub filter: Filter,
    pub timeout_seconds: u32,
    pub retry_schedule: Vec<u32>,
    pub circuit: CircuitPolicy,
    pub attachments: AttachmentForm,
    /// An event longer than this is delivered with its attachments as links.
    pub max_body_bytes: Option<u64>,
    /// The form of the body it receives (`delivery::format`).
    pub format: Format,
    /// The jq program whose output is its body, instead of the event (`delivery::Transform`).
    pub transform: Option<std::rc::Rc<crate::delivery::Transform>>,
}

impl Destination {
    /// True when an event of `len` bytes goes to this destination with its attachments as links.
    pub fn links(&self, len: u64) -> bool {
        self.attachments == AttachmentForm::Link || self.max_body_bytes.is_some_and(|max| len > max)
    }

    /// True when some event may go to this destination with links.
    pub fn may_link(&self) -> bool {
        self.attachments == AttachmentForm::Link || self.max_body_bytes.is_some()
    }

    /// `None` when deliveries can be attempted, or what is missing. Only the
    /// `origin` destination can be incomplete: a declared one that is
    /// incomplete is a configuration error.
    pub fn problem(&self) -> Option<String> {
        if self.url.is_none() {
            Some("ORIGIN_URL is not set: set it in wrangler.toml [vars] to the URL that receives events, or declare DESTINATIONS".into())
        } else if self.keys.is_empty() {
            Some(format!("{0} is not set: run `npm run deploy`, which generates it, or `wrangler secret put {0}` with a whsec_<base64> key (`npm run gen-secret`)", self.secret_var))
        } else {
            None
        }
    }

    /// True when this destination takes the event. A provider no longer known
    /// (its stored events are still replayed) is taken by every destination.
    pub fn takes(&self, r: Route<'_>) -> bool {
        Provider::from_name(r.provider).is_none_or(|p| self.filter.matches(p, r.kind, r.tag))
    }

    /// The URL without its query and fragment (which may hold a credential), for `/healthz` and logs.
    pub fn display_url(&self) -> String {
        self.url.as_deref().map(|u| u.split(['?', '#']).next().unwrap_or("").to_string()).unwrap_or_default()
    }
}

/// The secret that holds a declared destination's signing keys:
/// `crm-eu` → `DESTINATION_CRM_EU_SIGNING_SECRET`.
pub fn secret_name(name: &str) -> String {
    format!("DESTINATION_{}_SIGNING_SECRET", name.to_ascii_uppercase().replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(type_matches("*", "mailbox.flags_changed"));
        assert!(type_matches("email.*", "email.received"));
        assert!(!type_matches("email.*", "mailbox.message_added"));
        assert!(type_matches("email.received", "email.received"));
        assert!(!type_matches("email.received", "email.received.x"));
    }
}
