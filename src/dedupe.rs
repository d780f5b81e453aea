//! Stable event ids and the KV keys that drop duplicates.
//!
//! An id is a hash of the provider's own identity for an event, so a
//! provider's retry of the same event gets the same id, the same dedupe key,
//! and the same `webhook-id` at the origin.

use sha2::{Digest, Sha256};

/// `evt_` and 128 bits of SHA-256 over the provider name and the identifying
/// parts, each length-prefixed so that `("ab","c")` and `("a","bc")` differ.
pub fn event_id(provider: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in std::iter::once(provider).chain(parts.iter().copied()) {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    format!("evt_{}", hex::encode(&h.finalize()[..16]))
}

/// The id of an event that carries no identity of its own: its raw bytes.
pub fn event_id_from_body(provider: &str, body: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(body));
    event_id(provider, &["body-sha256", &digest])
}

/// A digest of a message's content, for `inbound_id`, from the SHA-256 of
/// each part (`Inbound::text_sha256`, which also knows the large strings of
/// `large`); an absent part is distinct from an empty one.
pub fn content_digest(parts: impl IntoIterator<Item = Option<[u8; 32]>>) -> String {
    let mut h = Sha256::new();
    for part in parts {
        match part {
            None => h.update([0u8]),
            Some(digest) => {
                h.update([1u8]);
                h.update(digest);
            }
        }
    }
    hex::encode(h.finalize())
}

/// SHA-256 of a message's headers (as JSON; the map is ordered by name), for
/// `content_digest`: with them, a forgery must also copy every header of the
/// genuine message, its `Received` chain and DKIM signatures included.
pub fn headers_sha256(headers: &serde_json::Map<String, serde_json::Value>) -> [u8; 32] {
    Sha256::digest(serde_json::to_vec(headers).unwrap_or_default()).into()
}

/// The id of received mail (docs/EVENTS.md, event ids). Its Message-ID is chosen by
/// whoever sends the mail, so the id also covers the recipients (lower
/// case, in any order) and a digest of the content (`content_digest`): the
/// provider's retry of the same message is a duplicate, while a forged
/// message that reuses a genuine Message-ID is a different event and cannot
/// suppress the genuine one.
pub fn inbound_id(provider: &str, message_id: &str, recipients: &[String], content_digest: &str) -> String {
    let mut r: Vec<String> = recipients.iter().map(|a| a.trim().to_ascii_lowercase()).collect();
    r.sort();
    r.dedup();
    event_id(provider, &["inbound", message_id, &r.join(","), content_digest])
}

/// The Workers KV key that marks an event id as accepted.
pub fn dedupe_key(event_id: &str) -> String {
    format!("dedupe:{event_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_unambiguous() {
        let a = event_id("adm-tools", &["ab", "c"]);
        assert_eq!(a, event_id("adm-tools", &["ab", "c"]));
        assert_ne!(a, event_id("adm-tools", &["a", "bc"]));
        assert_ne!(a, event_id("maileroo", &["ab", "c"]));
        assert!(a.starts_with("evt_") && a.len() == 36, "{a}");
        assert_eq!(event_id_from_body("x", b"{}"), event_id_from_body("x", b"{}"));
        assert_ne!(event_id_from_body("x", b"{}"), event_id_from_body("x", b"{ }"));
        assert_eq!(dedupe_key("evt_1"), "dedupe:evt_1");
    }

    #[test]
    fn inbound_ids_cover_recipients_and_content() {
        let sha = |s: &str| -> [u8; 32] { Sha256::digest(s.as_bytes()).into() };
        let body = |b: &'static str| content_digest([Some(sha("from@x")), Some(sha(b))]);
        let rc = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let genuine = inbound_id("p", "<a@b>", &rc(&["B@x", "a@x"]), &body("hello"));
        assert_eq!(genuine, inbound_id("p", "<a@b>", &rc(&["a@x", "b@X"]), &body("hello")), "a retry, recipients in another order");
        assert_ne!(genuine, inbound_id("p", "<a@b>", &rc(&["a@x", "b@x"]), &body("forged")), "a forgery reusing the Message-ID");
        assert_ne!(genuine, inbound_id("p", "<a@b>", &rc(&["a@x"]), &body("hello")), "another recipient");
        assert_ne!(content_digest([None]), content_digest([Some(sha(""))]));
        assert_ne!(content_digest([Some(sha("ab")), Some(sha("c"))]), content_digest([Some(sha("a")), Some(sha("bc"))]));
        assert_ne!(content_digest([Some(sha("a")), None]), content_digest([None, Some(sha("a"))]));
    }
}
