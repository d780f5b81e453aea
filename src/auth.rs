//! Authentication primitives: constant-time comparison, shared tokens with
//! rotation, and HMAC-SHA256 signatures over raw bytes.

use crate::config::Secrets;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub type HmacSha256 = Hmac<Sha256>;

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// True when `presented` equals any configured token. Both sides are hashed
/// first, so neither the comparison time nor an early length mismatch tells
/// an attacker how long the real token is; every configured value is checked.
pub fn token_matches(tokens: &Secrets, presented: &str) -> bool {
    let p = Sha256::digest(presented.as_bytes());
    tokens
        .iter()
        .fold(false, |found, t| found | constant_time_eq(&Sha256::digest(t.as_bytes()), &p))
}

/// HMAC-SHA256 of the concatenated `parts` with `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        unreachable!("HMAC accepts keys of any length")
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Verifies a hex HMAC-SHA256 signature (either case) of the raw body against
/// every configured secret, in constant time.
pub fn verify_hex_hmac(secrets: &Secrets, body: &[u8], signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex.trim().to_ascii_lowercase()) else {
        return false;
    };
    secrets
        .iter()
        .fold(false, |ok, s| ok | constant_time_eq(&hmac_sha256(s.as_bytes(), &[body]), &sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn any_rotated_token_matches() {
        let t = Secrets::parse(Some("old,new"));
        assert!(token_matches(&t, "old"));
        assert!(token_matches(&t, "new"));
        assert!(!token_matches(&t, "ol"));
        assert!(!token_matches(&t, ""));
        assert!(!token_matches(&Secrets::parse(None), ""));
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn hex_signatures_accept_either_case_and_any_secret() {
        let s = Secrets::parse(Some("wrong,Jefe"));
        let body = b"what do ya want for nothing?";
        let sig = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert!(verify_hex_hmac(&s, body, sig));
        assert!(verify_hex_hmac(&s, body, &sig.to_uppercase()));
        assert!(!verify_hex_hmac(&s, b"what do ya want for nothing!", sig));
        assert!(!verify_hex_hmac(&s, body, "zz"));
        assert!(!verify_hex_hmac(&s, body, ""));
    }
}
