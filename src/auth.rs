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
    tokens.iter().fold(false, |found, t| found | constant_time_eq(&Sha256::digest(t.as_bytes()), &p))
}

/// HMAC-SHA256 of the concatenated `parts` with `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else { unreachable!("HMAC accepts keys of any length") };
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
    secrets.iter().fold(false, |ok, s| ok | constant_time_eq(&hmac_sha256(s.as_bytes(), &[body]), &sig))
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

/// A comma-separated allow-list of addresses and CIDR ranges, IPv4 and IPv6.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpList(Vec<(std::net::IpAddr, u8)>);

impl IpList {
    /// Parses `15.237.103.194, 192.0.2.0/24, 2001:db8::/32`; the error names the bad entry.
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|entry| {
                let (addr, len) = match entry.split_once('/') {
                    Some((a, l)) => (a, Some(l)),
                    None => (entry, None),
                };
                let ip: std::net::IpAddr = addr.trim().parse().map_err(|_| format!("{entry:?} is not an IP address or CIDR range"))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let len = match len {
                    None => max,
                    Some(l) => {
                        l.trim().parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| format!("{entry:?} has a bad prefix length"))?
                    }
                };
                Ok((ip, len))
            })
            .collect::<Result<_, _>>()
            .map(IpList)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `ip` (a textual address; IPv4-mapped IPv6 counts as IPv4) is in the list.
    pub fn contains(&self, ip: &str) -> bool {
        let Ok(ip) = ip.trim().parse::<std::net::IpAddr>() else { return false };
        let ip = ip.to_canonical();
        self.0.iter().any(|(net, len)| in_network(ip, *net, *len))
    }
}

fn in_network(ip: std::net::IpAddr, net: std::net::IpAddr, len: u8) -> bool {
    use std::net::IpAddr::{V4, V6};
    let (a, n, bits) = match (ip, net.to_canonical()) {
        (V4(a), V4(n)) => (u128::from(u32::from(a)), u128::from(u32::from(n)), 32),
        (V6(a), V6(n)) => (u128::from(a), u128::from(n), 128),
        _ => return false,
    };
    let shift = bits - u32::from(len);
    shift >= bits || (a >> shift) == (n >> shift)
}

/// How far in the future a provider's timestamp may be (clock skew).
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

/// Refuses an event whose own time is older than `max_age` or from the future.
pub fn check_age(event_time: Option<i64>, now: i64, max_age: u64, field: &str) -> Result<(), crate::error::ApiError> {
    use crate::error::ApiError;
    let t = event_time.ok_or_else(|| ApiError::BadRequest(format!("the event has no valid `{field}`; it is needed to refuse replays")))?;
    let age = now.saturating_sub(t);
    if age > i64::try_from(max_age).unwrap_or(i64::MAX) {
        return Err(ApiError::StaleEvent(format!(
            "`{field}` is {age} s old, more than MAX_EVENT_AGE_SECONDS ({max_age}); a replay of an old event is refused"
        )));
    }
    if age < -MAX_CLOCK_SKEW_SECONDS {
        return Err(ApiError::StaleEvent(format!("`{field}` is {} s in the future; check the sender's clock", -age)));
    }
    Ok(())
}

#[cfg(test)]
mod ip_tests {
    use super::*;

    #[test]
    fn single_addresses_and_cidr_ranges() {
        let l = IpList::parse("15.237.103.194, 192.0.2.0/24,2001:db8::/32 ,::1").unwrap();
        for ip in ["15.237.103.194", "192.0.2.0", "192.0.2.255", "2001:db8:ffff::1", "::1", "::ffff:15.237.103.194"] {
            assert!(l.contains(ip), "{ip}");
        }
        for ip in ["15.237.103.195", "192.0.3.1", "2001:db9::1", "::2", "", "not-an-ip", "15.237.103.194, 1.1.1.1"] {
            assert!(!l.contains(ip), "{ip}");
        }
        assert!(IpList::parse("0.0.0.0/0").unwrap().contains("8.8.8.8"));
        assert!(!IpList::parse("0.0.0.0/0").unwrap().contains("::1"));
        assert!(IpList::parse("::/0").unwrap().contains("2001:db8::1"));
        assert!(IpList::parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in ["1.2.3", "1.2.3.4/33", "::1/129", "1.2.3.4/x", "example.com"] {
            let e = IpList::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn age_window() {
        let now = 1_000_000;
        assert!(check_age(Some(now - 100), now, 100, "t").is_ok());
        assert_eq!(check_age(Some(now - 101), now, 100, "t").unwrap_err().code(), "stale_event");
        assert!(check_age(Some(now + MAX_CLOCK_SKEW_SECONDS), now, 100, "t").is_ok());
        assert_eq!(check_age(Some(now + MAX_CLOCK_SKEW_SECONDS + 1), now, 100, "t").unwrap_err().code(), "stale_event");
        assert_eq!(check_age(None, now, 100, "t").unwrap_err().code(), "bad_request");
        // An attacker's extreme timestamps: refused, no overflow.
        assert_eq!(check_age(Some(i64::MIN), now, 100, "t").unwrap_err().code(), "stale_event");
        assert_eq!(check_age(Some(i64::MAX), now, 100, "t").unwrap_err().code(), "stale_event");
        assert_eq!(check_age(Some(i64::MIN), i64::MAX, u64::MAX, "t").map_err(|e| e.code()), Ok(()));
    }
}
