//! Delivery to a destination, decided without I/O: the queue envelope and
//! where a large event lives (here), the body each destination's format makes
//! (`format`), Standard Webhooks signing (`signing`), what an answer means and
//! when to try again (`retry`), and a destination's jq `transform`.

mod format;
mod retry;
mod signing;
mod transform;

pub use format::{provider_payload, shape, Shaped};
pub use retry::*;
pub use signing::{sign, Signer};
pub use transform::{Output as TransformOutput, Transform, MAX_STEPS};

use crate::conversation::MAX_MSG_ID_LEN;
use crate::event::Route;
use crate::limits::MAX_INLINE_ENVELOPE_BYTES;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const USER_AGENT: &str = concat!("mailhook/", env!("CARGO_PKG_VERSION"));

/// One queue message: an event to deliver to one destination, and how many
/// attempts that delivery has had.
///
/// Sent as a JSON string (content type `text`): workers-rs 0.8's `Message`
/// has no `attempts` getter, so a retry is a fresh message carrying
/// `attempt + 1`, sent with the schedule's delay, and the old one is acked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    pub provider: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The recipient's tag (`data.recipient_tag`), which destination filters read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The conversation's id (`data.thread.id`), which the event log filters by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// The destination of this delivery. Messages of 0.2 have none: the
    /// consumer sends those to every destination whose filter takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    /// Every destination the event was sent to at once (its event-log rows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dests: Vec<String>,
    /// Delivery attempts already made (since the last replay).
    pub attempt: u32,
    /// In the slow lane (`SLOW_EVENTS`): moved there because its destination
    /// was failing or slow; it stays there, whichever queue it arrives from.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub slow: bool,
    /// Times this delivery was held back by its destination's open circuit
    /// (held deliveries are not attempted and do not count as attempts).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held: u32,
    /// When mailhook accepted the event, Unix seconds.
    #[serde(default)]
    pub received_at: i64,
    /// The same to the millisecond (messages before 0.5 have only `received_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_ms: Option<i64>,
    /// The canonical event, unless it lives in R2 under `r2_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r2_key: Option<String>,
    /// Set on the way to the dead-letter queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Envelope {
    /// An envelope of a new event without the event: `to_json_with` adds it.
    pub fn header(id: &str, provider: &str, kind: &str, received_ms: i64) -> Self {
        Envelope {
            id: id.to_string(),
            provider: provider.to_string(),
            kind: kind.to_string(),
            tag: None,
            thread: None,
            dest: None,
            dests: Vec::new(),
            attempt: 0,
            slow: false,
            held: 0,
            received_at: received_ms.div_euclid(1000),
            received_ms: Some(received_ms),
            event: None,
            r2_key: None,
            last_status: None,
            last_error: None,
        }
    }

    /// When mailhook accepted the event, Unix milliseconds, if the envelope says.
    pub fn received_ms(&self) -> Option<i64> {
        self.received_ms.or_else(|| (self.received_at > 0).then(|| self.received_at.saturating_mul(1000)))
    }

    /// What destination filters read of this event.
    pub fn route(&self) -> Route<'_> {
        Route { provider: &self.provider, kind: &self.kind, tag: self.tag.as_deref() }
    }

    /// True when an event of `event_len` bytes travels inline (a queue message holds at most 128 KB).
    pub fn fits_inline(id: &str, event_len: u64) -> bool {
        // ~200 bytes of envelope fields around the event, a tag and a thread id (with no control
        // character in them, JSON escapes at most double them: `"` and `\`).
        event_len.saturating_add(200 + 2 * (64 + MAX_MSG_ID_LEN as u64) + id.len() as u64) <= MAX_INLINE_ENVELOPE_BYTES as u64
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The JSON of this envelope (whose `event` is `None`) with `event`, JSON
    /// text already checked (`pipeline::plan`), spliced in as its `event`.
    pub fn to_json_with(&self, event: Option<&str>) -> String {
        let mut json = self.to_json();
        // An envelope that has its event already keeps it (a second `event` key would make it unreadable).
        if let (Some(event), Some(b'}'), None) = (event, json.as_bytes().last(), &self.event) {
            json.pop();
            json.reserve(event.len() + 10);
            json.push_str(",\"event\":");
            json.push_str(event);
            json.push('}');
        }
        json
    }

    /// The same event, to be delivered again from the first attempt.
    pub fn for_replay(mut self) -> Self {
        self.attempt = 0;
        self.held = 0;
        self.slow = false;
        self.last_status = None;
        self.last_error = None;
        self
    }

    /// One message per destination in `dests`, each naming all of them.
    pub fn fan_out(&self, dests: &[&str]) -> Vec<Envelope> {
        let all: Vec<String> = dests.iter().map(|d| d.to_string()).collect();
        dests.iter().map(|d| Envelope { dest: Some(d.to_string()), dests: all.clone(), ..self.clone() }).collect()
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where a large event's manifest is kept in R2 (until the retention cron
/// removes it): `large::stored_prefix`, listing the event's JSON as literals
/// and ranges of the request body, which is kept beside it (`r2_body_key`).
/// Events stored by 0.1 (`events/{id}.json`, the whole JSON) are still read.
pub fn r2_key(event_id: &str, copy: &str) -> String {
    format!("events/{event_id}.{copy}.parts")
}

/// The request body of a large event, which its manifest's ranges point into.
pub fn r2_body_key(event_id: &str, copy: &str) -> String {
    format!("events/{event_id}.{copy}.body")
}

/// The R2 object that holds the bytes of a stored event's parts: the body
/// beside a manifest (`.parts`), or the object itself (0.1's `.json`).
pub fn r2_bytes_key(key: &str) -> String {
    match key.strip_suffix(".parts") {
        Some(stem) => format!("{stem}.body"),
        None => key.to_string(),
    }
}

/// The raw message of received mail beside a manifest (`.parts`): kept for a destination that takes the
/// provider's payload (`format = "provider"`), which for Email Routing is the message itself.
pub fn r2_raw_key(key: &str) -> Option<String> {
    key.strip_suffix(".parts").or_else(|| key.strip_suffix(".body")).map(|stem| format!("{stem}.eml"))
}

/// The key an event's row refers to (`payload_ref`) for any of the event's
/// R2 objects: a body's manifest, or the object itself. `None` for a key that is no event's.
pub fn r2_ref_of(object_key: &str) -> Option<String> {
    let name = object_key.strip_prefix("events/")?;
    match name.rsplit_once('.') {
        Some((stem, "body" | "eml")) => Some(format!("events/{stem}.parts")),
        Some((_, "parts" | "json")) => Some(object_key.to_string()),
        _ => None,
    }
}

/// True when the R2 object at `key` is a manifest (see `r2_key`), false when
/// it is an event's whole JSON.
pub fn is_stored_parts(key: &str) -> bool {
    key.ends_with(".parts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_of_an_event_maps_to_the_key_its_row_refers_to() {
        assert_eq!(r2_raw_key("events/evt_1.c0.parts").as_deref(), Some("events/evt_1.c0.eml"));
        assert_eq!(r2_raw_key("events/evt_1.c0.body").as_deref(), Some("events/evt_1.c0.eml"));
        assert_eq!(r2_ref_of("events/evt_1.c0.eml").as_deref(), Some("events/evt_1.c0.parts"));
        let (parts, body) = (r2_key("evt_1", "c0"), r2_body_key("evt_1", "c0"));
        assert_eq!(r2_ref_of(&parts).as_deref(), Some(parts.as_str()));
        assert_eq!(r2_ref_of(&body).as_deref(), Some(parts.as_str()));
        assert_eq!(r2_ref_of("events/evt_0.json").as_deref(), Some("events/evt_0.json"));
        for other in ["events/evt_1", "events/x.tmp", "other/evt_1.c0.parts", ""] {
            assert_eq!(r2_ref_of(other), None, "{other}");
        }
    }

    #[test]
    fn large_events_go_to_r2_and_small_ones_inline() {
        let small = Envelope::header("evt_1", "adm-tools", "email.received", 0);
        assert!(Envelope::fits_inline("evt_1", 7));
        let back: Envelope = serde_json::from_str(&small.to_json_with(Some(r#"{"a":1}"#))).unwrap();
        assert_eq!((back.event.unwrap().get(), back.r2_key), (r#"{"a":1}"#, None));
        assert!(!Envelope::fits_inline("evt_2", MAX_INLINE_ENVELOPE_BYTES as u64));
        let big = Envelope { r2_key: Some(r2_key("evt_2", "c0")), ..Envelope::header("evt_2", "adm-tools", "email.received", 0) };
        let back: Envelope = serde_json::from_str(&big.to_json_with(None)).unwrap();
        assert_eq!((back.event.is_none(), back.r2_key.as_deref()), (true, Some("events/evt_2.c0.parts")));
        assert!(is_stored_parts("events/evt_2.parts") && !is_stored_parts("events/evt_2.json"));
        assert_eq!(r2_bytes_key("events/evt_2.c0.parts"), r2_body_key("evt_2", "c0"));
        assert_eq!(r2_bytes_key("events/evt_2.json"), "events/evt_2.json");
        assert!(big.to_json().len() < 300);
    }

    #[test]
    fn one_message_per_destination_all_naming_the_same_event() {
        let e = Envelope::header("evt_1", "maileroo", "email.bounced", 7);
        let out: Vec<Envelope> =
            e.fan_out(&["crm", "analytics"]).iter().map(|m| serde_json::from_str(&m.to_json_with(Some(r#"{"a":1}"#))).unwrap()).collect();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].dest.as_deref(), Some("analytics"));
        assert_eq!(out[0].dests, ["crm", "analytics"]);
        assert!(out.iter().all(|o| o.id == "evt_1" && o.event.as_ref().unwrap().get() == r#"{"a":1}"#));
        // 0.2's messages have no destination, and read back as such.
        let old: Envelope = serde_json::from_str(r#"{"id":"evt_1","provider":"p","type":"t","attempt":2}"#).unwrap();
        assert_eq!((old.dest, old.dests.len(), old.held), (None, 0, 0));
        let held = Envelope { held: 3, ..out[0].clone() }.for_replay();
        assert_eq!((held.held, held.attempt), (0, 0));
    }
}
