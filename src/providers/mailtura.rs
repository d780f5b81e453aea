//! Mailtura delivery events (its webhook documentation).
//!
//! Signed with `X-Mailtura-Signature`: hex HMAC-SHA256 of the raw body with
//! the webhook secret. Mailtura's own Node example signs `JSON.stringify` of
//! the parsed body and compares with `===`: both wrong (re-serialisation
//! changes bytes; `===` leaks timing). We use the raw bytes, constant time.
//! `type` comes as `email.delivered` or, in its webhook config, `delivered`.

use super::payload::{id_from, null_as_empty, parse_json};
use super::{Auth, Inbound, Normalised, Setting, Source};
use crate::error::ApiError;
use crate::event::{Address, Bounce, Click, Client, Event, EventData, EventType};
use crate::values::{ConfigError, Lookup};
use serde::Deserialize;
use serde_json::Value;

pub const NAME: &str = Mailtura::NAME;

pub struct Mailtura;

impl Source for Mailtura {
    const NAME: &'static str = "mailtura";
    const TITLE: &'static str = "Mailtura";
    const EVENT_TYPES: &'static [EventType] = &[
        EventType::Sent,
        EventType::Delivered,
        EventType::Opened,
        EventType::Clicked,
        EventType::Bounced,
        EventType::Complained,
        EventType::Failed,
        EventType::Unknown,
    ];
    /// Hex HMAC-SHA256 of the raw body.
    const AUTH: Auth = Auth::SignedBody { header: "X-Mailtura-Signature", secret: "MAILTURA_WEBHOOK_SECRET", time_field: "timestamp" };
    const SETUP: &'static str = "the webhook's signing secret";
    const SETTINGS: &'static [Setting] = &[];
    type Settings = ();

    fn settings(_: &Lookup) -> Result<(), ConfigError> {
        Ok(())
    }

    fn normalise(_: &(), req: &Inbound) -> Result<Normalised, ApiError> {
        normalise(req)
    }
}

#[derive(Deserialize)]
struct Payload {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    timestamp: Value,
    #[serde(default, deserialize_with = "null_as_empty")]
    data: Data,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Data {
    email_id: Option<String>,
    recipient: Option<String>,
    subject: Option<String>,
    url: Option<String>,
    user_agent: Option<String>,
    ip_address: Option<String>,
    bounce_type: Option<String>,
    reason: Option<String>,
    diagnostic_code: Option<String>,
    message_id: Option<String>,
}

fn event_type(kind: &str) -> EventType {
    match kind.strip_prefix("email.").unwrap_or(kind) {
        "sent" => EventType::Sent,
        "delivered" => EventType::Delivered,
        "opened" => EventType::Opened,
        "clicked" => EventType::Clicked,
        "bounced" => EventType::Bounced,
        "complained" => EventType::Complained,
        "failed" => EventType::Failed,
        _ => EventType::Unknown,
    }
}

/// `bounceType` is `hard` or `soft` in the docs; other words are kept as no kind.
pub fn bounce_kind(word: Option<&str>) -> Option<&'static str> {
    match word.map(str::to_ascii_lowercase).as_deref() {
        Some("hard" | "permanent") => Some("hard"),
        Some("soft" | "transient" | "temporary") => Some("soft"),
        _ => None,
    }
}

fn normalise(req: &Inbound) -> Result<Normalised, ApiError> {
    let p: Payload = parse_json(NAME, req.json)?;
    let time = crate::time::from_json(&p.timestamp);
    let kind = event_type(&p.kind);
    let id = id_from(NAME, p.id.as_deref(), req.body);
    let d = p.data;
    let mut data = EventData::new(NAME);
    data.provider_event_type = Some(p.kind);
    data.provider_event_id = p.id;
    data.message_id = d.message_id.as_deref().and_then(crate::event::message_id);
    if let Some(email_id) = d.email_id {
        data.metadata.insert("email_id".into(), Value::String(email_id));
    }
    data.to = d.recipient.iter().map(|r| Address { email: r.clone(), name: None }).collect();
    data.recipient = d.recipient;
    data.subject = d.subject;
    if kind == EventType::Bounced {
        data.bounce = Some(Bounce { kind: bounce_kind(d.bounce_type.as_deref()), reason: d.reason, diagnostic_code: d.diagnostic_code });
    } else if kind == EventType::Failed && (d.reason.is_some() || d.diagnostic_code.is_some()) {
        data.bounce = Some(Bounce { kind: None, reason: d.reason, diagnostic_code: d.diagnostic_code });
    }
    if d.url.is_some() {
        data.click = Some(Click { url: d.url });
    }
    if d.ip_address.is_some() || d.user_agent.is_some() {
        data.client = Some(Client { ip: d.ip_address, user_agent: d.user_agent });
    }
    Ok(Normalised { events: vec![Event::new(id, kind, time, data)], time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_documented_type_with_or_without_prefix() {
        for (word, t) in [
            ("sent", EventType::Sent),
            ("delivered", EventType::Delivered),
            ("opened", EventType::Opened),
            ("clicked", EventType::Clicked),
            ("bounced", EventType::Bounced),
            ("complained", EventType::Complained),
            ("failed", EventType::Failed),
        ] {
            assert_eq!(event_type(word), t);
            assert_eq!(event_type(&format!("email.{word}")), t);
        }
        assert_eq!(event_type("email.unsubscribed"), EventType::Unknown);
        assert_eq!(event_type("email."), EventType::Unknown);
    }

    #[test]
    fn bounce_kinds() {
        assert_eq!(bounce_kind(Some("HARD")), Some("hard"));
        assert_eq!(bounce_kind(Some("soft")), Some("soft"));
        assert_eq!(bounce_kind(Some("undetermined")), None);
        assert_eq!(bounce_kind(None), None);
    }
}
