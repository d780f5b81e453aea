//! The canonical event: CloudEvents 1.0, structured JSON (docs/EVENTS.md).
//!
//! Fields a provider does not send are `null` or empty, never invented; the
//! optional CloudEvents attributes (`time`, `subject`) are omitted instead.

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Our event vocabulary. Every provider word maps to one of these, and an
/// unknown word to `Unknown` (refusing it would make the provider retry forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Received,
    Queued,
    Sent,
    Delivered,
    Deferred,
    Bounced,
    Rejected,
    Failed,
    Opened,
    Clicked,
    Complained,
    MessageAdded,
    FlagsChanged,
    MessageDeleted,
    Unknown,
}

impl EventType {
    pub const ALL: [EventType; 15] = [
        Self::Received,
        Self::Queued,
        Self::Sent,
        Self::Delivered,
        Self::Deferred,
        Self::Bounced,
        Self::Rejected,
        Self::Failed,
        Self::Opened,
        Self::Clicked,
        Self::Complained,
        Self::MessageAdded,
        Self::FlagsChanged,
        Self::MessageDeleted,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "email.received",
            Self::Queued => "email.queued",
            Self::Sent => "email.sent",
            Self::Delivered => "email.delivered",
            Self::Deferred => "email.deferred",
            Self::Bounced => "email.bounced",
            Self::Rejected => "email.rejected",
            Self::Failed => "email.failed",
            Self::Opened => "email.opened",
            Self::Clicked => "email.clicked",
            Self::Complained => "email.complained",
            Self::MessageAdded => "mailbox.message_added",
            Self::FlagsChanged => "mailbox.flags_changed",
            Self::MessageDeleted => "mailbox.message_deleted",
            Self::Unknown => "email.unknown",
        }
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub email: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bounce {
    /// `"hard"`, `"soft"`, or `None` when the provider does not say.
    pub kind: Option<&'static str>,
    pub reason: Option<String>,
    pub diagnostic_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Click {
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// adm.tools mailbox events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mailbox {
    pub address: Option<String>,
    pub folder: Option<String>,
    pub uid: Option<String>,
    pub flags: Vec<String>,
    pub snippet: Option<String>,
}

/// Received mail (Mail-Plus, ImprovMX).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Inbound {
    /// Header name → one value, or several values in order.
    pub headers: BTreeMap<String, Value>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    pub auth: Option<AuthResults>,
    pub spam: Option<Spam>,
    pub sender_ip: Option<String>,
}

/// The form of the body a destination receives (its `format`; `delivery::shape`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The CloudEvent as JSON (structured mode), the default.
    #[default]
    CloudEvents,
    /// CloudEvents' HTTP binary mode: the attributes as `ce-*` headers, `data` as the body.
    CloudEventsBinary,
    /// A Slack-compatible message (`{"text": …}`) saying what happened.
    Slack,
    /// The provider's payload, the request's body exactly as received.
    Provider,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::CloudEvents, Format::CloudEventsBinary, Format::Slack, Format::Provider];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::CloudEvents => "cloudevents",
            Format::CloudEventsBinary => "cloudevents-binary",
            Format::Slack => "slack",
            Format::Provider => "provider",
        }
    }
}

/// What destination filters read of an event: its provider (route name), type and recipient tag.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub provider: &'a str,
    pub kind: &'a str,
    pub tag: Option<&'a str>,
}

/// What the sender of received mail wrote, without the quoted history and the signature (`reply`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub text: Option<String>,
    pub html: Option<String>,
}

/// A received message's conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Thread {
    /// The conversation's id: the first of References, else In-Reply-To, else the message's own Message-ID.
    pub id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attachment {
    pub filename: Option<String>,
    pub content_type: Option<String>,
    /// The bytes' length and SHA-256 (lower-case hex), whichever form they take.
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub content_id: Option<String>,
    pub inline: bool,
    /// The bytes, in the event (base64); or null, and `url` a link that serves them (`links`).
    pub content_base64: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct AuthResults {
    pub spf: Option<String>,
    pub dkim: Option<String>,
    pub dmarc: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spam {
    pub score: Option<f64>,
    pub verdict: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventData {
    pub provider: &'static str,
    pub provider_event_type: Option<String>,
    pub provider_event_id: Option<String>,
    pub message_id: Option<String>,
    pub from: Option<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub recipient: Option<String>,
    /// The recipient's mailbox tag (`support+ticket-4121@` → `ticket-4121`; `conversation`).
    pub recipient_tag: Option<String>,
    pub subject: Option<String>,
    /// The conversation of received mail (`conversation`); null for other events.
    pub thread: Option<Thread>,
    /// What the sender of received mail wrote, without quotes (`reply`); null for other events or when unsure.
    pub reply: Option<Reply>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    pub bounce: Option<Bounce>,
    pub click: Option<Click>,
    pub client: Option<Client>,
    pub inbound: Option<Inbound>,
    pub mailbox: Option<Mailbox>,
    // `raw`, the provider's payload as received, is spliced in by
    // `large::render` as a range of the request's own bytes, never copied.
}

impl EventData {
    pub fn new(provider: &'static str) -> Self {
        Self {
            provider,
            provider_event_type: None,
            provider_event_id: None,
            message_id: None,
            from: None,
            to: Vec::new(),
            cc: Vec::new(),
            bcc: Vec::new(),
            recipient: None,
            recipient_tag: None,
            subject: None,
            thread: None,
            reply: None,
            tags: Vec::new(),
            metadata: Map::new(),
            bounce: None,
            click: None,
            client: None,
            inbound: None,
            mailbox: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub specversion: &'static str,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When the provider says it happened, RFC 3339 UTC. Omitted when
    /// unknown: the CloudEvents SDKs refuse `null` optional attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The Message-ID, when known; omitted otherwise, like `time`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub datacontenttype: &'static str,
    pub data: EventData,
}

impl Event {
    /// An event of `kind` from `provider`, happened at `time` (Unix seconds).
    /// Its `subject` follows `data.message_id`.
    pub fn new(id: String, kind: EventType, time: Option<i64>, data: EventData) -> Self {
        Self {
            specversion: "1.0",
            id,
            source: format!("/providers/{}", data.provider),
            kind,
            time: time.and_then(crate::time::to_rfc3339_checked),
            subject: data.message_id.clone(),
            datacontenttype: "application/json",
            data,
        }
    }

    /// The event's JSON without `data.raw` (see `large::render` for the event with it).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A Message-ID in its angle-bracketed form, so that `<a@b>` and `a@b` from
/// two providers name the same message.
pub fn message_id(s: &str) -> Option<String> {
    let s = s.trim();
    let bare = s.strip_prefix('<').and_then(|r| r.strip_suffix('>')).unwrap_or(s).trim();
    (!bare.is_empty()).then(|| format!("<{bare}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_the_contract_shape() {
        let mut data = EventData::new("maileroo");
        data.message_id = Some("<a@b>".into());
        let e = Event::new("evt_1".into(), EventType::Delivered, Some(1_710_545_542), data);
        let v: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "email.delivered");
        assert_eq!(v["source"], "/providers/maileroo");
        assert_eq!(v["time"], "2024-03-15T23:32:22Z");
        assert_eq!(v["subject"], "<a@b>");
        assert_eq!(v["data"]["bounce"], Value::Null);
        assert_eq!(v["data"]["cc"], serde_json::json!([]));
        assert!(v["data"].get("raw").is_none());
        // Optional CloudEvents attributes are omitted, never null (docs/EVENTS.md).
        let bare: Value =
            serde_json::from_str(&Event::new("evt_2".into(), EventType::Unknown, None, EventData::new("x")).to_json()).unwrap();
        assert!(bare.get("time").is_none() && bare.get("subject").is_none(), "{bare}");
        let raw = br#"{"a": [1, "}}"]}"#;
        let parts = crate::large::render(&e, &crate::large::Refs::default(), Some([0, raw.len() as u64]));
        let with_raw: Value = serde_json::from_slice(&parts.materialise(raw)).unwrap();
        assert_eq!(with_raw["data"]["raw"], serde_json::json!({"a": [1, "}}"]}));
        assert_eq!(with_raw["data"]["provider"], "maileroo");
    }
}
