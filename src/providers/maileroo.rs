//! Maileroo delivery events (its webhook documentation).
//!
//! Signed with `X-Maileroo-Signature`: hex HMAC-SHA256 of the raw body with
//! the shared secret. Maileroo retries only on non-200, for about 14 hours,
//! with the original `event_time`, so the age window must cover that.
//! `event_data` varies by event: `from`/`to` as arrays or a string, `ip` and
//! `user_agent` for opens, `original_url` for clicks, `reason` for deferrals.

use super::payload::{id_from, null_as_empty, parse_json};
use super::{Auth, Inbound, Normalised, Setting, Source};
use crate::address;
use crate::error::ApiError;
use crate::event::{Bounce, Click, Client, Event, EventData, EventType};
use crate::values::{ConfigError, Lookup};
use serde::Deserialize;
use serde_json::Value;

pub const NAME: &str = Maileroo::NAME;

pub struct Maileroo;

impl Source for Maileroo {
    const NAME: &'static str = "maileroo";
    const TITLE: &'static str = "Maileroo";
    const EVENT_TYPES: &'static [EventType] = &[
        EventType::Queued,
        EventType::Delivered,
        EventType::Rejected,
        EventType::Deferred,
        EventType::Bounced,
        EventType::Opened,
        EventType::Clicked,
        EventType::Complained,
        EventType::Unknown,
    ];
    /// Hex HMAC-SHA256 of the raw body.
    const AUTH: Auth = Auth::SignedBody { header: "X-Maileroo-Signature", secret: "MAILEROO_WEBHOOK_SECRET", time_field: "event_time" };
    const SETUP: &'static str = "the shared secret from its dashboard";
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
    event_type: String,
    event_id: Option<String>,
    #[serde(default)]
    event_time: Value,
    message_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    event_data: EventFields,
    #[serde(default)]
    tags: Value,
    #[serde(default)]
    domain_id: Value,
    #[serde(default)]
    user_id: Value,
    #[serde(default)]
    message_reference_id: Value,
    #[serde(default)]
    subject: Option<String>,
}

#[derive(Deserialize, Default)]
struct EventFields {
    #[serde(default)]
    from: Value,
    #[serde(default)]
    to: Value,
    ip: Option<String>,
    user_agent: Option<String>,
    original_url: Option<String>,
    url: Option<String>,
    reason: Option<String>,
    subject: Option<String>,
}

/// The provider's word → ours. `failed` is, in Maileroo's words, "a permanent
/// failure… also called a bounce"; `rejected` is a suppression before sending.
fn event_type(word: &str) -> EventType {
    match word {
        "accepted" => EventType::Queued,
        "delivered" => EventType::Delivered,
        "rejected" => EventType::Rejected,
        "deferred" => EventType::Deferred,
        "failed" => EventType::Bounced,
        "opened" => EventType::Opened,
        "clicked" => EventType::Clicked,
        "complained" => EventType::Complained,
        _ => EventType::Unknown,
    }
}

/// The SMTP reply code at the start of a reason: `452-4.2.2 The recipient's…` → `452 4.2.2`.
pub fn smtp_code(reason: &str) -> Option<String> {
    let mut words = reason.trim_start().splitn(2, [' ', '-']);
    let basic = words.next().filter(|w| w.len() == 3 && w.bytes().all(|b| b.is_ascii_digit()))?;
    let enhanced = words.next().and_then(|rest| rest.split_whitespace().next()).filter(|e| {
        let parts: Vec<&str> = e.split('.').collect();
        parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    Some(match enhanced {
        Some(e) => format!("{basic} {e}"),
        None => basic.to_string(),
    })
}

/// `tags` is `null` in the samples; an array of strings or a single string otherwise.
fn tags(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(String::from).collect(),
        Value::String(s) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn normalise(req: &Inbound) -> Result<Normalised, ApiError> {
    let p: Payload = parse_json(NAME, req.json)?;
    let time = crate::time::from_json(&p.event_time);
    let kind = event_type(&p.event_type);
    let id = id_from(NAME, p.event_id.as_deref(), req.body);
    let f = p.event_data;
    let mut data = EventData::new(NAME);
    data.provider_event_type = Some(p.event_type);
    data.provider_event_id = p.event_id;
    data.message_id = p.message_id.as_deref().and_then(crate::event::message_id);
    data.from = address::from_json(&f.from).into_iter().next();
    data.to = address::from_json(&f.to);
    data.recipient = data.to.first().map(|a| a.email.clone());
    data.subject = p.subject.or(f.subject);
    data.tags = tags(&p.tags);
    if let Value::Object(_) = p.tags {
        data.metadata.insert("tags".into(), p.tags);
    }
    for (key, value) in [("domain_id", p.domain_id), ("user_id", p.user_id), ("message_reference_id", p.message_reference_id)] {
        if !value.is_null() {
            data.metadata.insert(key.into(), value);
        }
    }
    // A reason is a bounce's reason: hard for `failed`, soft for `deferred`,
    // of no kind for `rejected` (a suppression, not a delivery attempt).
    let bounce_kind = match kind {
        EventType::Bounced => Some(Some("hard")),
        EventType::Deferred => Some(Some("soft")),
        EventType::Rejected => Some(None),
        _ => None,
    };
    if let Some(bk) = bounce_kind {
        let code = f.reason.as_deref().and_then(smtp_code);
        data.bounce = Some(Bounce { kind: bk, reason: f.reason, diagnostic_code: code });
    }
    let url = f.original_url.or(f.url);
    if url.is_some() {
        data.click = Some(Click { url });
    }
    if f.ip.is_some() || f.user_agent.is_some() {
        data.client = Some(Client { ip: f.ip, user_agent: f.user_agent });
    }
    Ok(Normalised { events: vec![Event::new(id, kind, time, data)], time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_documented_type() {
        for (word, t) in [
            ("accepted", EventType::Queued),
            ("delivered", EventType::Delivered),
            ("rejected", EventType::Rejected),
            ("deferred", EventType::Deferred),
            ("failed", EventType::Bounced),
            ("opened", EventType::Opened),
            ("clicked", EventType::Clicked),
            ("complained", EventType::Complained),
        ] {
            assert_eq!(event_type(word), t, "{word}");
        }
        assert_eq!(event_type("unsubscribed"), EventType::Unknown);
    }

    #[test]
    fn smtp_codes_from_reasons() {
        assert_eq!(smtp_code("452-4.2.2 The recipient's inbox is out of storage space.").as_deref(), Some("452 4.2.2"));
        assert_eq!(smtp_code("550 5.1.1 User unknown").as_deref(), Some("550 5.1.1"));
        assert_eq!(smtp_code("421 Try again later").as_deref(), Some("421"));
        assert_eq!(smtp_code("Mailbox full"), None);
        assert_eq!(smtp_code(""), None);
    }

    #[test]
    fn tags_in_every_shape() {
        assert!(tags(&Value::Null).is_empty());
        assert_eq!(tags(&serde_json::json!(["a", 1, "b"])), ["a", "b"]);
        assert_eq!(tags(&serde_json::json!("welcome")), ["welcome"]);
    }
}
