//! Large email without copies.
//!
//! A 32 MiB inbound email is almost all a few huge JSON strings (attachments'
//! base64, text, html). Parsing them into owned strings and writing the event
//! JSON with `data.raw` held the email three or four times over. Instead:
//!
//! 1. `skeletonize` walks the body once, borrowing, and replaces each string
//!    at one of the provider's large paths with a marker, recording where its
//!    JSON literal lies in the body and what a normaliser needs to know of it
//!    (its SHA-256 and length, its base64-decoded length). The skeleton is small.
//! 2. The provider normalises the skeleton as usual: markers are opaque strings.
//! 3. `render` serialises an event and splits it at the markers into an
//!    `EventBody`: literal bytes and ranges of the request body. The edge
//!    stores it once in R2 (`stored_object`: a manifest, then the body) and
//!    the consumer streams it to the origin, signing as it reads.
//!
//! A large string goes to the origin as its JSON literal from the request,
//! escapes and all: the same string, never decoded and re-encoded.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::fmt;

/// One step of a large path: an object key, or any element of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    Key(&'static str),
    Any,
}

/// The path of a value that may be large, e.g. `attachments[*].content`.
pub type LargePath = &'static [Seg];

/// What the normaliser may ask about a large string it only sees as a marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRef {
    /// The range of its JSON literal (quotes included) in the body.
    pub start: u64,
    pub end: u64,
    /// SHA-256 of the decoded string.
    pub sha256: [u8; 32],
    /// Its length in bytes, decoded.
    pub len: u64,
    /// The length of what it decodes to as base64 (`mailauth::base64_decoded_len`).
    pub base64_len: u64,
}

/// The large strings of one body, and the markers that stand for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refs {
    nonce: String,
    items: Vec<TextRef>,
}

/// The first character of a marker: no JSON string from a provider starts
/// with the marker and the nonce, which is random for every request.
const MARK: char = '\u{1}';

/// Strings at large paths shorter than this (as JSON literals) stay in the skeleton.
pub const MIN_MARKED_BYTES: usize = 1024;

/// A message with more values at large paths (attachments, inlines, texts)
/// than this is refused: each costs memory at ingest and a part at delivery,
/// and no real email has so many.
pub const MAX_LARGE_VALUES: usize = 1000;

fn marker(nonce: &str, index: usize) -> String {
    format!("{MARK}mh:{nonce}:{index}")
}

impl Refs {
    /// The large string that `s` stands for, if it is a marker of this body.
    pub fn get(&self, s: &str) -> Option<&TextRef> {
        let rest = s.strip_prefix(MARK)?.strip_prefix("mh:")?.strip_prefix(self.nonce.as_str())?.strip_prefix(':')?;
        self.items.get(rest.parse::<usize>().ok()?)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

/// A body with its large strings replaced by markers.
#[derive(Debug)]
pub struct Skeleton {
    pub json: Vec<u8>,
    pub refs: Refs,
}

/// Replaces every string at one of `paths` in `body` by a marker (see
/// `Refs`). Only the way to the large paths is walked (as deep as the
/// longest path); everything else is copied as it stands. `nonce` must be unpredictable to the sender. Refuses what is not
/// JSON, with serde_json's message.
pub fn skeletonize(body: &[u8], paths: &[LargePath], nonce: &str) -> Result<Skeleton, String> {
    skeleton(body, paths, nonce, MIN_MARKED_BYTES)
}

fn skeleton(body: &[u8], paths: &[LargePath], nonce: &str, min_marked: usize) -> Result<Skeleton, String> {
    std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    let mut ctx = Ctx {
        body,
        paths,
        nonce,
        min_marked,
        out: Vec::with_capacity(body.len().min(64 * 1024)),
        items: Vec::new(),
        path: Vec::new(),
        seen: 0,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    Node { ctx: &mut ctx }.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(Skeleton { json: ctx.out, refs: Refs { nonce: nonce.to_string(), items: ctx.items } })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index,
}

struct Ctx<'a> {
    body: &'a [u8],
    paths: &'a [LargePath],
    nonce: &'a str,
    out: Vec<u8>,
    items: Vec<TextRef>,
    path: Vec<Step>,
    /// Values met at large paths, marked or not.
    seen: usize,
    min_marked: usize,
}

enum Place {
    /// Exactly at a large path.
    Large,
    /// On the way to one.
    Along,
    /// Elsewhere: copied as it is.
    Outside,
}

impl Ctx<'_> {
    fn place(&self) -> Place {
        let matches = |p: &LargePath| {
            p.len() >= self.path.len()
                && self.path.iter().zip(p.iter()).all(|(step, seg)| match (step, seg) {
                    (Step::Key(k), Seg::Key(s)) => k == s,
                    (Step::Index, Seg::Any) => true,
                    _ => false,
                })
        };
        let mut along = false;
        for p in self.paths.iter().filter(|p| matches(p)) {
            if p.len() == self.path.len() {
                return Place::Large;
            }
            along = true;
        }
        if along {
            Place::Along
        } else {
            Place::Outside
        }
    }

    fn offset_of(&self, raw: &str) -> Option<u64> {
        let start = (raw.as_ptr() as usize).checked_sub(self.body.as_ptr() as usize)?;
        (start.checked_add(raw.len())? <= self.body.len()).then_some(start as u64)
    }

    /// Writes `raw` (a JSON value from the body) or, when it is a string, its marker.
    fn large(&mut self, raw: &RawValue) -> Result<(), String> {
        self.seen += 1;
        if self.seen > MAX_LARGE_VALUES {
            return Err(format!("more than {MAX_LARGE_VALUES} attachments and texts in one message"));
        }
        let text = raw.get();
        // A short string costs less as itself than as a marker and a range.
        if !text.starts_with('"') || text.len() < self.min_marked {
            self.out.extend_from_slice(text.as_bytes());
            return Ok(());
        }
        let start = self.offset_of(text).ok_or("a large value was not borrowed from the body")?;
        let stats = string_stats(text)?;
        let index = self.items.len();
        self.items.push(TextRef { start, end: start + text.len() as u64, ..stats });
        serde_json::to_writer(&mut self.out, &marker(self.nonce, index)).map_err(|e| e.to_string())
    }
}

struct Node<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
}

impl<'c, 'a> DeserializeSeed<'a> for Node<'c, 'a> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        match self.ctx.place() {
            Place::Along => d.deserialize_any(self),
            Place::Large => {
                let raw = <&'a RawValue>::deserialize(d)?;
                self.ctx.large(raw).map_err(de::Error::custom)
            }
            Place::Outside => {
                let raw = <&'a RawValue>::deserialize(d)?;
                self.ctx.out.extend_from_slice(raw.get().as_bytes());
                Ok(())
            }
        }
    }
}

impl<'c, 'a> Node<'c, 'a> {
    fn write<T: Serialize + ?Sized, E: de::Error>(self, v: &T) -> Result<(), E> {
        serde_json::to_writer(&mut self.ctx.out, v).map_err(E::custom)
    }
}

impl<'c, 'a> Visitor<'a> for Node<'c, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.write(&v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.write(&v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.write(&v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.write(&v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.write(v)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.write(&())
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        self.ctx.out.push(b'{');
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            if !first {
                self.ctx.out.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut self.ctx.out, &key).map_err(de::Error::custom)?;
            self.ctx.out.push(b':');
            self.ctx.path.push(Step::Key(key));
            map.next_value_seed(Node { ctx: self.ctx })?;
            self.ctx.path.pop();
        }
        self.ctx.out.push(b'}');
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        self.ctx.out.push(b'[');
        self.ctx.path.push(Step::Index);
        let mut first = true;
        loop {
            let comma = self.ctx.out.len();
            if !first {
                self.ctx.out.push(b',');
            }
            if seq.next_element_seed(Node { ctx: self.ctx })?.is_none() {
                self.ctx.out.truncate(comma);
                break;
            }
            first = false;
        }
        self.ctx.path.pop();
        self.ctx.out.push(b']');
        Ok(())
    }
}

/// The SHA-256, length and base64-decoded length of the string that the
/// JSON literal `text` (quotes included) stands for, decoding escapes as it
/// goes, without building the string.
fn string_stats(text: &str) -> Result<TextRef, String> {
    let inner = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).ok_or("not a JSON string")?.as_bytes();
    let mut sha = Sha256::new();
    let (mut len, mut symbols) = (0u64, 0u64);
    let mut feed = |bytes: &[u8]| {
        sha.update(bytes);
        len += bytes.len() as u64;
        symbols += crate::mailauth::base64_symbols(bytes);
    };
    let mut i = 0;
    while i < inner.len() {
        let run = inner[i..].iter().position(|b| *b == b'\\' || *b < 0x20).unwrap_or(inner.len() - i);
        feed(&inner[i..i + run]);
        i += run;
        let Some(&b) = inner.get(i) else { break };
        if b < 0x20 {
            return Err("a control character in a string".into());
        }
        let esc = *inner.get(i + 1).ok_or("a string ends in a backslash")?;
        i += 2;
        let simple = match esc {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => return Err("an invalid escape in a string".into()),
        };
        if let Some(c) = simple {
            feed(&[c]);
            continue;
        }
        let hex4 = |at: usize| -> Result<u32, String> {
            let h = inner.get(at..at + 4).ok_or("a short \\u escape")?;
            let h = std::str::from_utf8(h).map_err(|_| "a bad \\u escape")?;
            u32::from_str_radix(h, 16).map_err(|_| "a bad \\u escape".into())
        };
        let unit = hex4(i)?;
        i += 4;
        let code = if (0xD800..0xDC00).contains(&unit) {
            if inner.get(i..i + 2) != Some(b"\\u") {
                return Err("a lone surrogate in a string".into());
            }
            let low = hex4(i + 2)?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err("a lone surrogate in a string".into());
            }
            i += 6;
            0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00..0xE000).contains(&unit) {
            return Err("a lone surrogate in a string".into());
        } else {
            unit
        };
        let c = char::from_u32(code).ok_or("a bad \\u escape")?;
        feed(c.encode_utf8(&mut [0; 4]).as_bytes());
    }
    Ok(TextRef { start: 0, end: 0, sha256: sha.finalize().into(), len, base64_len: symbols * 3 / 4 })
}

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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How the consumer reads a stored event's parts: one ranged read of the
/// body per run of parts whose ranges ascend (usually two: the large strings
/// in order, then `data.raw`), not one per part, which would cost a
/// subrequest per attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Lit(String),
    /// Read `start..end` of the body and keep the `pieces` of it, in order.
    Run {
        start: u64,
        end: u64,
        pieces: Vec<Piece>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Range([u64; 2]),
}

pub fn read_plan(parts: &[Part]) -> Vec<Read> {
    let mut plan = Vec::new();
    for part in parts {
        match (part, plan.last_mut()) {
            (Part::Lit(s), Some(Read::Run { pieces, .. })) => pieces.push(Piece::Lit(s.clone())),
            (Part::Lit(s), _) => plan.push(Read::Lit(s.clone())),
            (Part::Body([a, b]), _) if b <= a => {}
            (Part::Body([a, b]), Some(Read::Run { end, pieces, .. })) if *a >= *end => {
                pieces.push(Piece::Range([*a, *b]));
                *end = *b;
            }
            (Part::Body([a, b]), _) => plan.push(Read::Run { start: *a, end: *b, pieces: vec![Piece::Range([*a, *b])] }),
        }
    }
    plan
}

/// Turns the chunks of one run's read into the run's output.
#[derive(Debug)]
pub struct RunCursor {
    pieces: std::collections::VecDeque<Piece>,
    /// The body offset of the next byte read.
    pos: u64,
}

impl RunCursor {
    pub fn new(start: u64, pieces: Vec<Piece>) -> Self {
        RunCursor { pieces: pieces.into(), pos: start }
    }

    /// The output for the next `chunk` of the run: its literals and the bytes of its ranges, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let end = self.pos + chunk.len() as u64;
        while let Some(piece) = self.pieces.front() {
            match piece {
                Piece::Lit(s) => out.extend_from_slice(s.as_bytes()),
                Piece::Range([a, b]) => {
                    let (from, to) = ((*a).max(self.pos), (*b).min(end));
                    if from < to {
                        out.extend_from_slice(&chunk[(from - self.pos) as usize..(to - self.pos) as usize]);
                    }
                    if *b > end {
                        break;
                    }
                }
            }
            self.pieces.pop_front();
        }
        self.pos = end;
        out
    }

    /// What follows the run's last byte (its trailing literals), or an error
    /// when the read ended before a range did.
    pub fn finish(mut self) -> Result<Vec<u8>, String> {
        let out = self.feed(&[]);
        match self.pieces.is_empty() {
            true => Ok(out),
            false => Err(format!("the stored body ended at byte {} before its manifest's ranges did", self.pos)),
        }
    }
}

/// The first bytes of a stored event: a magic word and the manifest's length.
pub const STORED_HEADER_LEN: u64 = 8;
const STORED_MAGIC: &[u8; 4] = b"MHP1";

/// A stored event's manifest object: `STORED_HEADER_LEN` bytes of header,
/// then the manifest (`EventBody` as JSON), whose `Part::Body` ranges point
/// into the request body, stored beside it as its own object.
pub fn stored_prefix(event: &EventBody) -> Vec<u8> {
    let manifest = serde_json::to_vec(event).unwrap_or_default();
    let mut out = Vec::with_capacity(manifest.len() + STORED_HEADER_LEN as usize);
    out.extend_from_slice(STORED_MAGIC);
    out.extend_from_slice(&(manifest.len() as u32).to_be_bytes());
    out.extend_from_slice(&manifest);
    out
}

/// No manifest is larger: it holds an event's small fields and a range per large string.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// The manifest's length, from a stored event's first `STORED_HEADER_LEN`
/// bytes (`None` when they are not a stored event's, or claim an absurd size).
pub fn manifest_len(header: &[u8]) -> Option<u64> {
    let len: [u8; 4] = header.strip_prefix(STORED_MAGIC)?.get(..4)?.try_into().ok()?;
    Some(u64::from(u32::from_be_bytes(len))).filter(|l| *l <= MAX_MANIFEST_BYTES)
}

/// The manifest of a stored event, checked against the length of the body it points into.
pub fn parse_manifest(manifest: &[u8], body_len: u64) -> Result<EventBody, String> {
    let event: EventBody = serde_json::from_slice(manifest).map_err(|e| format!("the stored event's manifest is unreadable: {e}"))?;
    for p in &event.parts {
        if let Part::Body([a, b]) = p {
            if a > b || *b > body_len {
                return Err(format!("the stored event's manifest has a range {a}..{b} outside its {body_len}-byte body"));
            }
        }
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const PATHS: &[LargePath] = &[&[Seg::Key("text")], &[Seg::Key("attachments"), Seg::Any, Seg::Key("content")], &[Seg::Key("html")]];

    #[test]
    fn large_strings_become_markers_and_come_back_as_their_literals() {
        let body = br#"{"subject":"hi","text":"line one\nline \"two\" \u00e9\ud83d\ude00","attachments":[{"name":"a","content":"QUJD\/w=="},{"name":"b","content":null},{"content":7}],"html":{"not":"a string"}}"#;
        let sk = skeleton(body, PATHS, "n0nce", 0).unwrap();
        assert_eq!(sk.refs.len(), 2);
        let v: Value = serde_json::from_slice(&sk.json).unwrap();
        assert_eq!(v["subject"], "hi");
        assert_eq!(v["attachments"][1]["content"], Value::Null);
        assert_eq!(v["attachments"][2]["content"], 7);
        assert_eq!(v["html"], json!({"not": "a string"}));
        let text = sk.refs.get(v["text"].as_str().unwrap()).unwrap();
        let decoded = "line one\nline \"two\" é😀";
        assert_eq!(text.len, decoded.len() as u64);
        assert_eq!(text.sha256, <[u8; 32]>::from(Sha256::digest(decoded)));
        let content = sk.refs.get(v["attachments"][0]["content"].as_str().unwrap()).unwrap();
        assert_eq!(content.base64_len, 4, "QUJD/w== is ABC and one byte");
        assert_eq!(&body[content.start as usize..content.end as usize], br#""QUJD\/w==""#);

        // Rendered back, every marker is its literal and `raw` the body.
        let parts = render(&v, &sk.refs, Some([0, body.len() as u64]));
        let out: Value = serde_json::from_slice(&parts.materialise(body)).unwrap();
        let original: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(out["text"], original["text"]);
        assert_eq!(out["attachments"], original["attachments"]);
        assert_eq!(parts.len(), parts.materialise(body).len() as u64);
    }

    #[test]
    fn raw_goes_last_in_data() {
        let event = json!({"a": "e", "data": {"a": 1}}); // `data` last, as in an event
        let body = br#"{"x": 1}"#;
        let parts = render(&event, &Refs::default(), Some([0, body.len() as u64]));
        let v: Value = serde_json::from_slice(&parts.materialise(body)).unwrap();
        assert_eq!(v["data"]["raw"], json!({"x": 1}));
        assert_eq!(render(&event, &Refs::default(), None).materialise(body), serde_json::to_vec(&event).unwrap());
    }

    #[test]
    fn forged_or_foreign_markers_stay_text() {
        let body = br#"{"text":"big","subject":"\u0001mh:guess:0"}"#;
        let sk = skeleton(body, PATHS, "secret", 0).unwrap();
        let v: Value = serde_json::from_slice(&sk.json).unwrap();
        assert!(sk.refs.get(v["subject"].as_str().unwrap()).is_none());
        let out: Value = serde_json::from_slice(&render(&v, &sk.refs, None).materialise(body)).unwrap();
        assert_eq!(out["subject"], "\u{1}mh:guess:0");
        assert_eq!(out["text"], "big");
        // A marker of this body with an index it does not have stays text too.
        let fake = json!({"s": "\u{1}mh:secret:9"});
        assert_eq!(render(&fake, &sk.refs, None).materialise(body), serde_json::to_vec(&fake).unwrap());
    }

    #[test]
    fn what_is_not_json_is_refused() {
        for bad in [&b"{\"text\":\"a\\x\"}"[..], b"{\"text\":\"\\ud800\"}", b"{\"text\":\"a\x01\"}", b"{\"text\":1", b"\xff", b"[]x"] {
            assert!(skeleton(bad, PATHS, "n", 0).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // Deep nesting off the large paths is copied as it is (the provider's parse refuses it); it must not overflow.
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let _ = skeleton(deep.as_bytes(), PATHS, "n", 0);
        // Only the large paths are walked (the walk is as deep as the longest path); the rest is copied.
        let deep_along = "{\"attachments\":".to_string() + &"[".repeat(100_000) + &"]".repeat(100_000) + "}";
        let _ = skeleton(deep_along.as_bytes(), PATHS, "n", 0);
        assert!(skeleton(b"[1, 2]", PATHS, "n", 0).is_ok());
        assert!(skeleton(b"\"text\"", PATHS, "n", 0).is_ok());
    }

    #[test]
    fn short_strings_stay_and_too_many_values_are_refused() {
        let short = br#"{"text":"hello","attachments":[{"content":"QUJD"}]}"#;
        let sk = skeletonize(short, PATHS, "n").unwrap();
        assert!(sk.refs.is_empty());
        assert_eq!(sk.json, short.to_vec());
        let long = format!(r#"{{"text":"{}"}}"#, "a".repeat(MIN_MARKED_BYTES));
        assert_eq!(skeletonize(long.as_bytes(), PATHS, "n").unwrap().refs.len(), 1);
        // Found in review: 100 000 tiny attachments cost 18x the body in markers and parts.
        let many = format!(r#"{{"attachments":[{}]}}"#, vec![r#"{"content":"QUJD"}"#; MAX_LARGE_VALUES + 1].join(","));
        assert!(skeletonize(many.as_bytes(), PATHS, "n").unwrap_err().contains("more than"));
        let enough = format!(r#"{{"attachments":[{}]}}"#, vec![r#"{"content":"QUJD"}"#; MAX_LARGE_VALUES].join(","));
        assert!(skeletonize(enough.as_bytes(), PATHS, "n").is_ok());
    }

    #[test]
    fn reads_are_merged_into_ascending_runs_and_sliced_exactly() {
        let body = b"0123456789abcdefghij";
        let parts = vec![
            Part::Lit("{".into()),
            Part::Body([2, 4]),
            Part::Lit(",".into()),
            Part::Body([6, 9]),
            Part::Body([9, 9]),
            Part::Body([12, 15]),
            Part::Lit(",raw:".into()),
            Part::Body([0, 20]),
            Part::Lit("}".into()),
        ];
        let plan = read_plan(&parts);
        assert_eq!(plan.len(), 3, "{plan:?}");
        let want = EventBody { parts: parts.clone() }.materialise(body);
        for chunk in [1, 2, 3, 7, 20] {
            let mut out = Vec::new();
            for r in &plan {
                match r {
                    Read::Lit(s) => out.extend_from_slice(s.as_bytes()),
                    Read::Run { start, end, pieces } => {
                        let mut c = RunCursor::new(*start, pieces.clone());
                        for piece in body[*start as usize..*end as usize].chunks(chunk) {
                            out.extend(c.feed(piece));
                        }
                        out.extend(c.finish().unwrap());
                    }
                }
            }
            assert_eq!(out, want, "chunks of {chunk}");
        }
        // A read that ends short of a range is an error, not a short event.
        let mut c = RunCursor::new(0, vec![Piece::Range([0, 10])]);
        c.feed(b"01234");
        assert!(c.finish().is_err());
    }

    #[test]
    fn stored_objects_carry_their_manifest() {
        let e = EventBody { parts: vec![Part::Lit("{\"a\":".into()), Part::Body([3, 9]), Part::Lit("}".into())] };
        let prefix = stored_prefix(&e);
        let mlen = manifest_len(&prefix[..8]).unwrap();
        assert_eq!(mlen + 8, prefix.len() as u64);
        assert_eq!(parse_manifest(&prefix[8..], 9).unwrap(), e);
        assert!(parse_manifest(&prefix[8..], 8).is_err(), "a range past the body");
        assert_eq!(manifest_len(b"XXXX0000"), None);
        assert_eq!(manifest_len(b"MHP1\xff\xff\xff\xff"), None, "a corrupted length allocates nothing");
        assert!(parse_manifest(br#"{"parts":[{"body":[9,3]}]}"#, 100).is_err());
        assert!(parse_manifest(b"not json", 100).is_err());
    }
}
