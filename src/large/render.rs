//! Step 3: an event's JSON as parts, literal bytes and ranges of the body,
//! with every marker replaced by the literal it stands for.

use super::{marker, Refs, TextRef};
use serde::{Deserialize, Serialize};

/// One part of an event's JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// Bytes of the event itself (UTF-8 JSON text).
    Lit(String),
    /// A range of the request body.
    Body([u64; 2]),
}

/// An event's JSON as parts: what is written once and streamed to the origin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBody {
    pub parts: Vec<Part>,
}

impl EventBody {
    /// The length of the JSON, in bytes.
    pub fn len(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Lit(s) => s.len() as u64,
                Part::Body([a, b]) => b.saturating_sub(*a),
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole JSON, for an event small enough to travel inline.
    pub fn materialise(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.extend_from_slice(s.as_bytes()),
                Part::Body([a, b]) => out.extend_from_slice(body.get(*a as usize..*b as usize).unwrap_or_default()),
            }
        }
        out
    }

    fn push_lit(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(bytes);
        match self.parts.last_mut() {
            Some(Part::Lit(s)) => s.push_str(&text),
            _ => self.parts.push(Part::Lit(text.into_owned())),
        }
    }
}

/// The event's JSON as parts: its serialisation, with every marker of
/// `refs` replaced by the literal it stands for, and `raw` (a range of the
/// body: the provider's payload) as `data.raw`.
pub fn render<T: Serialize>(event: &T, refs: &Refs, raw: Option<[u64; 2]>) -> EventBody {
    let Ok(json) = serde_json::to_vec(event) else { return EventBody::default() };
    let mut out = EventBody::default();
    let (json, tail): (&[u8], &[u8]) = match raw {
        // `data` is the event's last field and `raw` goes last in it, so the JSON ends in `}}`.
        Some(_) if json.ends_with(b"}}") => (&json[..json.len() - 2], b"}}"),
        _ => (&json, b""),
    };
    let needle = format!("\"\\u0001mh:{}:", refs.nonce);
    let mut rest = json;
    while let Some(at) = (!refs.is_empty()).then(|| find(rest, needle.as_bytes())).flatten() {
        let after = &rest[at + needle.len()..];
        let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
        let item = std::str::from_utf8(&after[..digits]).ok().and_then(|d| d.parse::<usize>().ok()).and_then(|i| refs.items.get(i));
        match (item, after.get(digits)) {
            (Some(r), Some(b'"')) => {
                out.push_lit(&rest[..at]);
                out.parts.push(Part::Body([r.start, r.end]));
                rest = &after[digits + 1..];
            }
            _ => {
                out.push_lit(&rest[..at + needle.len()]);
                rest = after;
            }
        }
    }
    out.push_lit(rest);
    if let (Some(range), false) = (raw, tail.is_empty()) {
        out.push_lit(b",\"raw\":");
        out.parts.push(Part::Body(range));
        out.push_lit(tail);
    }
    out
}

/// The reverse of `render`: the event's JSON with each range of the body replaced by a marker of the
/// returned `Refs` (only their ranges are known), so that the event can be read and changed as JSON
/// and rendered again. `nonce` must be unpredictable to whoever wrote the body.
pub fn unrender(event: &EventBody, nonce: &str) -> (Vec<u8>, Refs) {
    let mut refs = Refs { nonce: nonce.to_string(), items: Vec::new() };
    let mut json = Vec::with_capacity(event.parts.iter().map(|p| if let Part::Lit(s) = p { s.len() } else { 32 }).sum());
    for p in &event.parts {
        match p {
            Part::Lit(s) => json.extend_from_slice(s.as_bytes()),
            Part::Body([start, end]) => {
                let _ = serde_json::to_writer(&mut json, &marker(nonce, refs.items.len()));
                refs.items.push(TextRef { start: *start, end: *end, sha256: [0; 32], len: 0, base64_len: 0, base64_sha256: [0; 32] });
            }
        }
    }
    (json, refs)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::large::*;
    use serde_json::{json, Value};

    #[test]
    fn raw_goes_last_in_data() {
        let event = json!({"a": "e", "data": {"a": 1}}); // `data` last, as in an event
        let body = br#"{"x": 1}"#;
        let parts = render(&event, &Refs::default(), Some([0, body.len() as u64]));
        let v: Value = serde_json::from_slice(&parts.materialise(body)).unwrap();
        assert_eq!(v["data"]["raw"], json!({"x": 1}));
        assert_eq!(render(&event, &Refs::default(), None).materialise(body), serde_json::to_vec(&event).unwrap());
    }
}
