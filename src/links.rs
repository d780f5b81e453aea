//! Attachments by link (README, "Attachments by link").
//!
//! A destination that takes attachments as links (`attachments = "link"`, or
//! an event over its `max_body_bytes`) receives each stored attachment's
//! `content_base64` as null and a `url`: `PUBLIC_URL/attachments/{name}`,
//! whose query names the R2 object and the range of the attachment's JSON
//! literal in it, and when the link expires, signed with an HMAC of
//! `LINK_SIGNING_KEY`. The Worker serves it by streaming that range through
//! `large::Unescaper` and `large::Base64Decoder`, so it needs no lookup and
//! keeps no copy. A link cannot be bent to another range, object, name or
//! time without the key, and it never outlives the event's retention.
//!
//! Here: the link (`Link`), what it is answered with (`disposition`), and an
//! event's linked form (`linked`).

use crate::auth::{constant_time_eq, hmac_sha256, Secrets};
use crate::large::{render, unrender, EventBody, Refs};
use crate::percent::{percent_decode, percent_encode};
use serde_json::Value;

/// Where links are served.
pub const LINK_PATH: &str = "/attachments/";

/// How long a link lives by default (`ATTACHMENT_LINK_SECONDS`): a week.
pub const DEFAULT_LINK_SECONDS: u64 = 7 * 86_400;

/// The longest name a link serves its attachment under.
const MAX_NAME_CHARS: usize = 120;

/// One attachment's link: a range of an R2 object (its JSON literal) and the name it is served under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub object: String,
    pub start: u64,
    pub end: u64,
    /// Unix seconds.
    pub expires: i64,
    /// What `safe_name` made of the attachment's filename.
    pub name: String,
    /// The attachment's length decoded (its `size`), sent as `Content-Length` so that a download cut short is seen.
    pub size: Option<u64>,
}

/// Why a link is refused. Both get the same answer: a link reveals nothing of why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Invalid,
    Expired,
}

impl Link {
    fn mac(&self, key: &str) -> [u8; 32] {
        let fields = ("mailhook attachment link 1", &self.object, self.start, self.end, self.expires, &self.name, self.size);
        hmac_sha256(key.as_bytes(), &[&serde_json::to_vec(&fields).unwrap_or_default()])
    }

    /// The link's URL under `base` (`PUBLIC_URL`), signed with the first of `keys`.
    pub fn url(&self, base: &str, keys: &Secrets) -> String {
        let sig = keys.iter().next().map(|k| hex::encode(self.mac(k))).unwrap_or_default();
        let size = self.size.map(|z| format!("&z={z}")).unwrap_or_default();
        format!(
            "{}{LINK_PATH}{}?o={}&r={}-{}{size}&x={}&s={sig}",
            base.trim_end_matches('/'),
            percent_encode(&self.name),
            percent_encode(&self.object),
            self.start,
            self.end,
            self.expires
        )
    }

    /// The link a request for `path` (after `LINK_PATH`) and `query` stands for, if one of `keys` signed it and it has not expired.
    pub fn verify(path: &str, query: &str, keys: &Secrets, now: i64) -> Result<Link, Refused> {
        let (link, sig) = Self::parse(path, query).ok_or(Refused::Invalid)?;
        let sig = hex::decode(sig).map_err(|_| Refused::Invalid)?;
        if !keys.iter().fold(false, |ok, k| ok | constant_time_eq(&link.mac(k), &sig)) {
            return Err(Refused::Invalid);
        }
        if link.expires <= now {
            return Err(Refused::Expired);
        }
        Ok(link)
    }

    fn parse(path: &str, query: &str) -> Option<(Link, String)> {
        let name = decode_path(path)?;
        let (mut object, mut range, mut expires, mut sig, mut size) = (None, None, None, None, None);
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            let slot = match k {
                "o" => &mut object,
                "r" => &mut range,
                "x" => &mut expires,
                "s" => &mut sig,
                "z" => &mut size,
                _ => continue,
            };
            if slot.replace(percent_decode(v)?).is_some() {
                return None;
            }
        }
        let (start, end) = range?.split_once('-').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))?;
        let size = match size {
            Some(z) => Some(z.parse().ok()?),
            None => None,
        };
        let link = Link { object: object?, start, end, expires: expires?.parse().ok()?, name, size };
        (start < end && link.object.starts_with("events/") && link.object.ends_with(".body")).then_some((link, sig?))
    }
}

/// A path segment percent-decoded (`+` is itself here, unlike in a query).
fn decode_path(s: &str) -> Option<String> {
    percent_decode(&s.replace('+', "%2B")).filter(|n| !n.is_empty() && !n.contains('/'))
}

/// True for a format character that shows nothing but changes what is shown: a soft hyphen, a zero width,
/// a bidi mark or override, a line or paragraph separator, a byte-order mark.
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// A filename safe to serve an attachment under: its last path component, without control or format
/// characters (bidi overrides, say), quotes, backslashes, leading dots or surrounding white space, at most
/// `MAX_NAME_CHARS` characters; `attachment` when nothing is left (so never `.` or `..`, which URLs collapse).
pub fn safe_name(filename: Option<&str>) -> String {
    let last = filename.unwrap_or_default().rsplit(['/', '\\']).next().unwrap_or_default();
    let kept: String = last.chars().filter(|c| !c.is_control() && !is_invisible(*c) && !matches!(c, '"' | '\\' | ';')).collect();
    let mut name = kept.as_str();
    while name.trim().trim_start_matches('.') != name {
        name = name.trim().trim_start_matches('.');
    }
    let name: String = name.chars().take(MAX_NAME_CHARS).collect();
    match name.trim_end() {
        "" => "attachment".into(),
        n => n.to_string(),
    }
}

/// The headers an attachment is served with: a download under its name, never a page of the Worker's
/// origin (no type to sniff, no script to run, nothing cached on the way).
pub fn served_headers(name: &str) -> Vec<(&'static str, String)> {
    let name = safe_name(Some(name));
    let ascii: String = name.chars().map(|c| if c.is_ascii_graphic() && c != '%' || c == ' ' { c } else { '_' }).collect();
    vec![
        ("content-type", "application/octet-stream".into()),
        ("content-disposition", format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{}", percent_encode(&name))),
        ("x-content-type-options", "nosniff".into()),
        ("content-security-policy", "sandbox; default-src 'none'".into()),
        ("cache-control", "private, no-store".into()),
        ("referrer-policy", "no-referrer".into()),
        ("cross-origin-resource-policy", "same-origin".into()),
    ]
}

/// What `linked` needs besides the event: the base of its links and their key, the R2 object its
/// ranges point into, and when they expire.
pub struct Linking<'a> {
    pub base: &'a str,
    pub keys: &'a Secrets,
    pub object: &'a str,
    pub expires: i64,
}

/// The event's linked form: every attachment whose bytes are a range of the stored body gets a `url`
/// and null `content_base64` (one small enough to be in the event itself keeps it), and `data.raw`
/// (the provider's payload, holding the message again) is left out; text and html stay. `None` when the
/// parts are no received mail (an event of 0.1, say): it is delivered as it is. Its keys come out in
/// another order than the event's (JSON objects have none).
pub fn linked(parts: &EventBody, l: &Linking<'_>, nonce: &str) -> Option<EventBody> {
    let (json, refs) = unrender(parts, nonce);
    let mut event: Value = serde_json::from_slice(&json).ok()?;
    drop_raw(&mut event)?;
    link_attachments(&mut event, &refs, l);
    Some(render(&event, &refs, None))
}

/// An inline event of received mail without `data.raw` (its attachments, in the event, stay there); `None`
/// for any other event, or JSON that is no event.
pub fn without_raw(json: &str) -> Option<String> {
    let mut event: Value = serde_json::from_str(json).ok()?;
    drop_raw(&mut event)?;
    serde_json::to_string(&event).ok()
}

/// Leaves out `data.raw` of received mail; `None` when the event is not received mail.
fn drop_raw(event: &mut Value) -> Option<()> {
    let data = event.get_mut("data")?.as_object_mut()?;
    data.get("inbound")?.as_object()?;
    data.remove("raw");
    Some(())
}

/// A stored event as the console shows it: its attachments linked (`l`, when links can be made) and
/// every other large string (a long text or html, `data.raw`) replaced by a note of its length.
pub fn shown(parts: &EventBody, l: Option<&Linking<'_>>, nonce: &str) -> Option<Value> {
    let (json, refs) = unrender(parts, nonce);
    let mut event: Value = serde_json::from_slice(&json).ok()?;
    if let Some(l) = l {
        link_attachments(&mut event, &refs, l);
    }
    fn notes(v: &mut Value, refs: &Refs) {
        match v {
            Value::String(s) => {
                if let Some(r) = refs.get(s) {
                    *v = Value::String(format!("({} bytes of JSON, kept in R2)", r.end - r.start));
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| notes(i, refs)),
            Value::Object(map) => map.values_mut().for_each(|i| notes(i, refs)),
            _ => {}
        }
    }
    notes(&mut event, &refs);
    Some(event)
}

/// Links every attachment of `event` whose bytes are a range of the body (`refs`); true when there was one.
fn link_attachments(event: &mut Value, refs: &Refs, l: &Linking<'_>) -> bool {
    let attachments = event.pointer_mut("/data/inbound/attachments").and_then(Value::as_array_mut);
    let mut any = false;
    for a in attachments.into_iter().flatten().filter_map(Value::as_object_mut) {
        let Some(r) = a.get("content_base64").and_then(Value::as_str).and_then(|c| refs.get(c)) else { continue };
        let name = safe_name(a.get("filename").and_then(Value::as_str));
        // Events before 0.7 (no `sha256`) counted `size` another way for base64 with stray characters: no length then.
        let size = a.get("sha256").and_then(Value::as_str).and(a.get("size")).and_then(Value::as_u64);
        let link = Link { object: l.object.to_string(), start: r.start, end: r.end, expires: l.expires, name, size };
        a.insert("url".into(), Value::String(link.url(l.base, l.keys)));
        a.insert("content_base64".into(), Value::Null);
        any = true;
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::large::Part;

    fn keys() -> Secrets {
        Secrets::parse(Some("new-key,old-key"))
    }

    fn link() -> Link {
        Link { object: "events/evt_1.c0.body".into(), start: 10, end: 99, expires: 2_000, name: "report été.pdf".into(), size: Some(66) }
    }

    fn split(url: &str) -> (&str, &str) {
        let rest = url.split_once(LINK_PATH).unwrap().1;
        rest.split_once('?').unwrap()
    }

    #[test]
    fn a_link_verifies_until_it_expires_and_not_when_any_part_of_it_changes() {
        let url = link().url("https://mh.example/", &keys());
        assert!(
            url.starts_with("https://mh.example/attachments/report%20%C3%A9t%C3%A9.pdf?o=events%2Fevt_1.c0.body&r=10-99&z=66&x=2000&s="),
            "{url}"
        );
        let (path, query) = split(&url);
        assert_eq!(Link::verify(path, query, &keys(), 1_999), Ok(link()));
        assert_eq!(Link::verify(path, query, &Secrets::parse(Some("new-key")), 1_999), Ok(link()));
        assert_eq!(Link::verify(path, query, &keys(), 2_000), Err(Refused::Expired));
        assert_eq!(Link::verify(path, query, &Secrets::parse(Some("other")), 1), Err(Refused::Invalid));
        let tampered = [
            query.replace("r=10-99", "r=0-99"),
            query.replace("x=2000", "x=9999"),
            query.replace("evt_1", "evt_2"),
            query.replace("&s=", "&s=00"),
            format!("{query}&o=events%2Fevt_2.c0.body"),
            query.replace("r=10-99", "r=99-10"),
            query.replace("z=66", "z=67"),
            query.replace("z=66&", ""),
        ];
        for q in &tampered {
            assert_eq!(Link::verify(path, q, &keys(), 1), Err(Refused::Invalid), "{q}");
        }
        assert_eq!(Link::verify("other.pdf", query, &keys(), 1), Err(Refused::Invalid));
        assert_eq!(Link::verify("", query, &keys(), 1), Err(Refused::Invalid));
        // A link to anything but an event's body is never made, nor served.
        let foreign = Link { object: "events/evt_1.c0.parts".into(), ..link() };
        let url = foreign.url("https://mh.example", &keys());
        let (path, query) = split(&url);
        assert_eq!(Link::verify(path, query, &keys(), 1), Err(Refused::Invalid));
    }

    #[test]
    fn names_are_safe_to_serve() {
        assert_eq!(safe_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(safe_name(Some("C:\\x\\a\"b;c\r\n.html")), "abc.html");
        assert_eq!(safe_name(Some(".htaccess")), "htaccess");
        for dots in [". .", ". ..", ".\u{a0}.", "..", " . \u{202e}. "] {
            assert_eq!(safe_name(Some(dots)), "attachment", "{dots:?}");
        }
        assert_eq!(safe_name(Some("\u{202e}gnp.exe")), "gnp.exe");
        assert_eq!(safe_name(Some("  ")), "attachment");
        assert_eq!(safe_name(None), "attachment");
        assert_eq!(safe_name(Some(&"x".repeat(500))).len(), MAX_NAME_CHARS);
        let h = served_headers("évil\".html");
        let cd = &h.iter().find(|(k, _)| *k == "content-disposition").unwrap().1;
        assert_eq!(cd, "attachment; filename=\"_vil.html\"; filename*=UTF-8''%C3%A9vil.html");
        assert!(h.iter().any(|(k, v)| *k == "content-security-policy" && v.starts_with("sandbox")));
    }

    #[test]
    fn the_linked_form_links_stored_attachments_and_drops_raw() {
        let body = br#"{"a":"QUJD","b":"BIG-HTML"}"#;
        let lit = |s: &str| Part::Lit(s.into());
        let parts = EventBody {
            parts: vec![
                lit(r#"{"id":"e","data":{"inbound":{"html":"#),
                Part::Body([16, 26]),
                lit(r#","attachments":[{"filename":"a.txt","size":3,"sha256":"b5d4","content_base64":"#),
                Part::Body([5, 11]),
                lit(r#"},{"filename":null,"content_base64":"c21hbGw="}]},"raw":"#),
                Part::Body([0, body.len() as u64]),
                lit("}}"),
            ],
        };
        let keys = keys();
        let l = Linking { base: "https://mh.example", keys: &keys, object: "events/e.c0.body", expires: 50 };
        let out = linked(&parts, &l, "n0nce").unwrap();
        let v: Value = serde_json::from_slice(&out.materialise(body)).unwrap();
        assert!(v["data"].get("raw").is_none());
        assert_eq!(v["data"]["inbound"]["html"], "BIG-HTML");
        let a = &v["data"]["inbound"]["attachments"];
        assert_eq!(a[0]["content_base64"], Value::Null);
        assert_eq!(a[0]["size"], 3);
        let url = a[0]["url"].as_str().unwrap();
        let (path, query) = split(url);
        assert_eq!(
            Link::verify(path, query, &keys, 49).unwrap(),
            Link { object: "events/e.c0.body".into(), start: 5, end: 11, expires: 50, name: "a.txt".into(), size: Some(3) }
        );
        assert_eq!(a[1]["content_base64"], "c21hbGw=", "an attachment in the event itself stays there");
        assert!(a[1].get("url").is_none_or(Value::is_null));
        // The console's view: attachments linked, other large strings noted, nothing read from R2.
        let v = shown(&parts, Some(&l), "n1").unwrap();
        assert_eq!(v["data"]["inbound"]["html"], "(10 bytes of JSON, kept in R2)");
        assert_eq!(v["data"]["raw"], format!("({} bytes of JSON, kept in R2)", body.len()));
        assert!(v["data"]["inbound"]["attachments"][0]["url"].as_str().unwrap().starts_with("https://mh.example/attachments/a.txt?"));
        assert_eq!(
            shown(&parts, None, "n1").unwrap()["data"]["inbound"]["attachments"][0]["content_base64"],
            "(6 bytes of JSON, kept in R2)"
        );
        // Not received mail: delivered as it is. Received mail with nothing to link still leaves out data.raw.
        assert_eq!(linked(&EventBody { parts: vec![Part::Body([0, 5])] }, &l, "n"), None);
        assert_eq!(
            without_raw(r#"{"data":{"inbound":{"attachments":[]},"raw":{"x":1}}}"#).unwrap(),
            r#"{"data":{"inbound":{"attachments":[]}}}"#
        );
        assert_eq!(without_raw(r#"{"data":{"inbound":null,"raw":{"x":1}}}"#), None);
    }
}
