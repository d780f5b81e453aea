//! adm.tools mailbox webhooks (its webhook documentation, §4.9.10).
//!
//! Authenticated by the `X-Webhook-Token` header, whose value is shown in the
//! "Token" column of the Webhooks list. The payload is JSON with `mailbox`,
//! `uid`, `tstamp`, `event`, `folder`, `flags`, and for `new` also `from`,
//! `to`, `subject`, `snippet` and `message_id`. adm.tools resends once after
//! 15 minutes on anything but 200.

use super::payload::parse_json;
use super::{Auth, Inbound, Normalised, Setting, Source};
use crate::address;
use crate::dedupe;
use crate::error::ApiError;
use crate::event::{Event, EventData, EventType, Mailbox};
use crate::values::{ConfigError, Lookup};
use serde::Deserialize;
use serde_json::Value;

pub const NAME: &str = AdmTools::NAME;

pub struct AdmTools;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `ADM_TOOLS_ACCOUNT_ID`, served at `/webhook-confirm.txt`.
    pub account_id: Option<String>,
}

impl Source for AdmTools {
    const NAME: &'static str = "adm-tools";
    const TITLE: &'static str = "adm.tools";
    const EVENT_TYPES: &'static [EventType] =
        &[EventType::Received, EventType::MessageAdded, EventType::FlagsChanged, EventType::MessageDeleted, EventType::Unknown];
    /// The value shown in the "Token" column of its Webhooks list.
    const AUTH: Auth = Auth::Token { header: "X-Webhook-Token", secret: "ADM_TOOLS_WEBHOOK_TOKEN" };
    const SETUP: &'static str = "the token shown in the adm.tools Webhooks list";
    /// Its own id of the hook, when it sends one.
    const HEADERS: &'static [&'static str] = &["x-webhook-id"];
    const SETTINGS: &'static [Setting] = &[Setting::var("ADM_TOOLS_ACCOUNT_ID")];
    type Settings = Settings;

    fn settings(get: &Lookup) -> Result<Settings, ConfigError> {
        Ok(Settings { account_id: get("ADM_TOOLS_ACCOUNT_ID") })
    }

    fn normalise(_: &Settings, req: &Inbound) -> Result<Normalised, ApiError> {
        normalise(req).map(Normalised::new)
    }
}

#[derive(Deserialize)]
struct Payload {
    mailbox: String,
    event: String,
    #[serde(default)]
    uid: Value,
    #[serde(default)]
    tstamp: Value,
    folder: Option<String>,
    #[serde(default)]
    flags: Value,
    from: Option<String>,
    to: Option<String>,
    subject: Option<String>,
    snippet: Option<String>,
    message_id: Option<String>,
}

/// The provider's word → ours. `flags-set` covers both flag changes and
/// permanent deletion; the docs say deletion shows as the `\Deleted` flag.
fn event_type(event: &str, flags: &[String]) -> EventType {
    match event {
        "new" => EventType::Received,
        "create" => EventType::MessageAdded,
        "flags-set" if flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")) => EventType::MessageDeleted,
        "flags-set" => EventType::FlagsChanged,
        _ => EventType::Unknown,
    }
}

/// Flags arrive as a JSON array, or as one string (`"\\Seen \\Flagged"`).
fn flags(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(String::from).collect(),
        Value::String(s) => s.split([' ', ',']).filter(|f| !f.is_empty()).map(String::from).collect(),
        _ => Vec::new(),
    }
}

/// `uid` is a number or a string; both become a string.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn normalise(req: &Inbound) -> Result<Vec<Event>, ApiError> {
    let p: Payload = parse_json(NAME, req.json)?;
    let flags = flags(&p.flags);
    let kind = event_type(&p.event, &flags);
    let uid = scalar(&p.uid);
    let tstamp = scalar(&p.tstamp);

    // Identity (docs/EVENTS.md, event ids): mailbox, uid, event and tstamp; the raw body
    // when uid or tstamp is missing, since then nothing else identifies it.
    let id = match (&uid, &tstamp) {
        (Some(uid), Some(ts)) => dedupe::event_id(NAME, &[&p.mailbox, uid, &p.event, ts]),
        _ => dedupe::event_id_from_body(NAME, req.body),
    };

    let mut data = EventData::new(NAME);
    data.provider_event_type = Some(p.event);
    data.message_id = p.message_id.as_deref().and_then(crate::event::message_id);
    data.from = p.from.as_deref().and_then(address::parse_one);
    data.to = p.to.as_deref().map(address::parse_list).unwrap_or_default();
    data.subject = p.subject;
    data.recipient = Some(p.mailbox.clone());
    if let Some(hook) = req.header("x-webhook-id") {
        data.metadata.insert("webhook_id".into(), Value::String(hook.to_string()));
    }
    data.mailbox = Some(Mailbox { address: Some(p.mailbox), folder: p.folder, uid, flags, snippet: p.snippet });
    let time = crate::time::from_json(&p.tstamp);
    Ok(vec![Event::new(id, kind, time, data)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_documented_event() {
        let f = |s: &str| flags(&Value::String(s.into()));
        assert_eq!(event_type("new", &[]), EventType::Received);
        assert_eq!(event_type("create", &[]), EventType::MessageAdded);
        assert_eq!(event_type("flags-set", &f("\\Seen")), EventType::FlagsChanged);
        assert_eq!(event_type("flags-set", &f("\\Seen \\Deleted")), EventType::MessageDeleted);
        assert_eq!(event_type("flags-set", &f("\\deleted")), EventType::MessageDeleted);
        assert_eq!(event_type("moved", &[]), EventType::Unknown);
    }

    #[test]
    fn flags_as_array_or_string() {
        assert_eq!(flags(&serde_json::json!(["\\Seen", 3, "\\Flagged"])), ["\\Seen", "\\Flagged"]);
        assert_eq!(flags(&serde_json::json!("\\Seen,\\Flagged  \\Answered")), ["\\Seen", "\\Flagged", "\\Answered"]);
        assert!(flags(&Value::Null).is_empty());
    }
}
