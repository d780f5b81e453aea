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
}
