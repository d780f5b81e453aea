//! Delivery to the origin, decided without I/O: the queue envelope, Standard
//! Webhooks signing, what an answer means, and when to try again.

use crate::auth::HmacSha256;
use crate::config::{SigningKey, MAX_QUEUE_DELAY_SECONDS};
use base64::Engine as _;
use hmac::Mac;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Cloudflare Queues refuses messages over 128 KB; leave room for its own framing.
pub const MAX_INLINE_ENVELOPE_BYTES: usize = 120_000;

/// Queues bill each 64 KB (of 1,000 bytes) of a message, with ~100 bytes of metadata, as one operation.
pub fn queue_units(bytes: usize) -> u64 {
    ((bytes as u64 + 100).div_ceil(64_000)).max(1)
}

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
    pub fn header(id: &str, provider: &str, kind: &str, received_at: i64) -> Self {
        Envelope {
            id: id.to_string(),
            provider: provider.to_string(),
            kind: kind.to_string(),
            dest: None,
            dests: Vec::new(),
            attempt: 0,
            slow: false,
            held: 0,
            received_at,
            event: None,
            r2_key: None,
            last_status: None,
            last_error: None,
        }
    }

    /// True when an event of `event_len` bytes travels inline (a queue message holds at most 128 KB).
    pub fn fits_inline(id: &str, event_len: u64) -> bool {
        // ~200 bytes of envelope fields around the event.
        event_len.saturating_add(200 + id.len() as u64) <= MAX_INLINE_ENVELOPE_BYTES as u64
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

/// True when the R2 object at `key` is a manifest (see `r2_key`), false when
/// it is an event's whole JSON.
pub fn is_stored_parts(key: &str) -> bool {
    key.ends_with(".parts")
}

/// The `webhook-signature` header: `v1,<base64>` per key, space-separated.
pub fn sign(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signer = Signer::new(keys, msg_id, timestamp);
    signer.update(body);
    signer.finish()
}

/// The Standard Webhooks signature of a body that streams by in parts
/// (a large event read from R2): HMAC-SHA256 of `{id}.{timestamp}.{body}`
/// with every key, so nothing holds the whole body.
pub struct Signer {
    macs: Vec<HmacSha256>,
}

impl Signer {
    pub fn new(keys: &[SigningKey], msg_id: &str, timestamp: i64) -> Self {
        let prefix = format!("{msg_id}.{timestamp}.");
        let macs = keys
            .iter()
            .filter_map(|k| {
                let mut mac = HmacSha256::new_from_slice(k.bytes()).ok()?;
                mac.update(prefix.as_bytes());
                Some(mac)
            })
            .collect();
        Signer { macs }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        for mac in &mut self.macs {
            mac.update(chunk);
        }
    }

    /// The `webhook-signature` header.
    pub fn finish(self) -> String {
        self.macs
            .into_iter()
            .map(|m| format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What one attempt's result means (CONTRACT §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// 408, 429, 5xx, timeout, connection error.
    Retry,
    /// 410 and other 4xx (and anything else unexpected, like a 3xx we do not follow).
    Permanent,
}

/// `status` is `None` when no answer came (timeout or connection error).
pub fn classify(status: Option<u16>) -> Outcome {
    match status {
        None => Outcome::Retry,
        Some(200..=299) => Outcome::Delivered,
        Some(408 | 429 | 500..=599) => Outcome::Retry,
        Some(_) => Outcome::Permanent,
    }
}

/// How far a retry delay is spread either way, so that a recovering origin
/// is not hit by every retry at once.
pub const JITTER_FRACTION: f64 = 0.2;

/// The longest the schedule can take from the first attempt to the last:
/// every delay at its most jittered, each within the Queues maximum.
pub fn schedule_span_seconds(schedule: &[u32]) -> u64 {
    schedule.iter().map(|d| ((f64::from(*d) * (1.0 + JITTER_FRACTION)).ceil() as u64).min(u64::from(MAX_QUEUE_DELAY_SECONDS))).sum()
}

/// The delay before retry number `attempt` (1-based: the first retry follows
/// attempt 1), or `None` when the schedule is exhausted.
///
/// `jitter` is a sample in `[0, 1)`: the delay is spread by ±`JITTER_FRACTION`. `Retry-After` is a
/// lower bound. The result never exceeds the Queues maximum delay.
pub fn next_delay(schedule: &[u32], attempt: u32, retry_after: Option<u32>, jitter: f64) -> Option<u32> {
    let base = *schedule.get(usize::try_from(attempt).ok()?.checked_sub(1)?)?;
    let spread = f64::from(base) * JITTER_FRACTION * (2.0 * jitter.clamp(0.0, 1.0) - 1.0);
    let jittered = (f64::from(base) + spread).round().max(0.0) as u32;
    Some(jittered.max(retry_after.unwrap_or(0)).min(MAX_QUEUE_DELAY_SECONDS))
}

/// `Retry-After` as delay-seconds or an HTTP date, in seconds from `now`.
pub fn parse_retry_after(value: &str, now: i64) -> Option<u32> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.min(u64::from(MAX_QUEUE_DELAY_SECONDS)) as u32);
    }
    let at = parse_http_date(v)?;
    Some(at.saturating_sub(now).clamp(0, i64::from(MAX_QUEUE_DELAY_SECONDS)) as u32)
}

/// IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7).
fn parse_http_date(v: &str) -> Option<i64> {
    let mut it = v.split_ascii_whitespace();
    let (_weekday, day, month, year, time, zone) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    if zone != "GMT" || it.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let m = MONTHS.iter().position(|x| *x == month)? + 1;
    let day: u32 = day.parse().ok()?;
    let year: u32 = year.parse().ok()?;
    crate::time::parse_rfc3339(&format!("{year:04}-{m:02}-{day:02}T{time}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> Vec<SigningKey> {
        crate::config::signing_keys("ORIGIN_SIGNING_SECRET", Some(secret)).unwrap()
    }

    #[test]
    fn signs_the_standard_webhooks_vector() {
        // The Standard Webhooks reference test vector.
        let k = keys("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = sign(&k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_streamed_signature_is_the_whole_body_signature() {
        let k = keys("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_c2Vjb25k");
        let body = br#"{"test": 2432232314}"#;
        let mut s = Signer::new(&k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330);
        for chunk in body.chunks(3) {
            s.update(chunk);
        }
        assert_eq!(s.finish(), sign(&k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body));
    }

    #[test]
    fn one_signature_per_rotated_key() {
        let k = keys("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_c2Vjb25k");
        let sig = sign(&k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        let parts: Vec<_> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(parts[1].starts_with("v1,") && parts[1] != parts[0]);
    }

    #[test]
    fn classifies_every_answer() {
        assert_eq!(classify(Some(200)), Outcome::Delivered);
        assert_eq!(classify(Some(204)), Outcome::Delivered);
        for s in [None, Some(408), Some(429), Some(500), Some(503), Some(599)] {
            assert_eq!(classify(s), Outcome::Retry, "{s:?}");
        }
        // Redirects are never followed: a 3xx is permanent (found in review).
        for s in [400, 401, 404, 410, 422, 300, 301, 302, 303, 304, 307, 308] {
            assert_eq!(classify(Some(s)), Outcome::Permanent, "{s}");
        }
    }

    #[test]
    fn schedule_jitter_retry_after_and_exhaustion() {
        let s = [10, 100, 50_000];
        assert_eq!(next_delay(&s, 0, None, 0.5), None);
        assert_eq!(next_delay(&s, 1, None, 0.5), Some(10));
        assert_eq!(next_delay(&s, 2, None, 0.0), Some(80));
        assert_eq!(next_delay(&s, 2, None, 0.999_999), Some(120));
        assert_eq!(next_delay(&s, 2, Some(600), 0.5), Some(600));
        assert_eq!(next_delay(&s, 3, None, 0.5), Some(MAX_QUEUE_DELAY_SECONDS));
        assert_eq!(next_delay(&s, 4, None, 0.5), None);
    }

    #[test]
    fn retry_after_in_both_forms() {
        let now = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(120));
        assert_eq!(parse_retry_after("999999", now), Some(MAX_QUEUE_DELAY_SECONDS));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now), Some(120));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(0));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:51:37 PST", now), None);
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
