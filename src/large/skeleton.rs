//! Step 1: a body with its large strings replaced by markers, walked once,
//! borrowing, only as deep as the large paths go.

use super::literal::{Base64Decoder, Unescaper};
use super::{marker, LargePath, Refs, Seg, TextRef, MAX_LARGE_VALUES, MIN_MARKED_BYTES};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::fmt;

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

/// The SHA-256 and length of the string that the JSON literal `text` (quotes
/// included) stands for, and the length and SHA-256 of what it decodes to as
/// base64 (an attachment's bytes), decoding as it goes, without building either.
fn string_stats(text: &str) -> Result<TextRef, String> {
    let (mut sha, mut bytes_sha, mut len) = (Sha256::new(), Sha256::new(), 0u64);
    let (mut unescaper, mut base64, mut decoded) = (Unescaper::default(), Base64Decoder::default(), Vec::new());
    unescaper.feed(text.as_bytes(), &mut |chunk: &[u8]| {
        sha.update(chunk);
        len += chunk.len() as u64;
        // A piece at a time, so that what is decoded is never held whole (an attachment can be 25 MB).
        for piece in chunk.chunks(64 * 1024) {
            decoded.clear();
            base64.feed(piece, &mut decoded);
            bytes_sha.update(&decoded);
        }
    })?;
    unescaper.finish()?;
    decoded.clear();
    base64.finish(&mut decoded);
    bytes_sha.update(&decoded);
    Ok(TextRef { start: 0, end: 0, sha256: sha.finalize().into(), len, base64_len: base64.len, base64_sha256: bytes_sha.finalize().into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::large::*;
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
}
