//! Authentication primitives: constant-time comparison, shared tokens with
//! rotation, and HMAC-SHA256 signatures over raw bytes.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;

/// Several comma-separated values of one secret: any one of them authenticates,
/// so a secret can be rotated without downtime.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(Vec<String>);

impl Secrets {
    pub fn parse(raw: Option<&str>) -> Self {
        Self(raw.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Only the values that `keep` keeps.
    pub fn retain(mut self, keep: impl Fn(&str) -> bool) -> Self {
        self.0.retain(|s| keep(s));
        self
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets(<{} redacted>)", self.0.len())
    }
}

pub type HmacSha256 = Hmac<Sha256>;

/// Compares two byte strings in time that depends only on their lengths (`subtle`).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
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

/// A comma-separated allow-list of addresses and CIDR ranges, IPv4 and IPv6
/// (`ipnet`). Each entry keeps its address family: an IPv4-mapped IPv6 entry
/// (`::ffff:192.0.2.1`, `::ffff:192.0.2.0/120`) is the IPv4 range it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpList(Vec<ipnet::IpNet>);

/// The bits of the IPv4-mapped prefix `::ffff:0:0/96`.
const MAPPED_PREFIX_LEN: u8 = 96;

impl IpList {
    /// Parses `15.237.103.194, 192.0.2.0/24, 2001:db8::/32, ::ffff:192.0.2.1`;
    /// empty items are skipped; the error names the bad entry and what to write.
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse_entry).collect::<Result<_, _>>().map(IpList)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when an entry is a `/0`: every address of its family passes.
    pub fn allows_a_whole_family(&self) -> bool {
        self.0.iter().any(|n| n.prefix_len() == 0)
    }

    /// True when `ip` (a textual address; IPv4-mapped IPv6 counts as IPv4) is in the list.
    pub fn contains(&self, ip: &str) -> bool {
        let Ok(ip) = ip.trim().parse::<std::net::IpAddr>() else { return false };
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }
}

fn parse_entry(entry: &str) -> Result<ipnet::IpNet, String> {
    use ipnet::{IpNet, Ipv4Net, Ipv6Net};
    use std::net::IpAddr;
    let (addr, len) = match entry.split_once('/') {
        Some((a, l)) => (a.trim(), Some(l.trim())),
        None => (entry, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| format!("{entry:?} is not an IP address or CIDR range"))?;
    let width: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => width,
        Some(l) => l.parse::<u8>().ok().filter(|l| *l <= width).ok_or_else(|| {
            format!("{entry:?} has a bad prefix length: an IPv{} prefix is 0 to {width}", if width == 32 { 4 } else { 6 })
        })?,
    };
    let net = match ip {
        IpAddr::V4(v4) => Ipv4Net::new(v4, len).map(IpNet::V4),
        // `::ffff:a.b.c.d` is how an IPv4 client is written in IPv6: the IPv4 range it names.
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if len >= MAPPED_PREFIX_LEN => Ipv4Net::new(v4, len - MAPPED_PREFIX_LEN).map(IpNet::V4),
            Some(_) => {
                return Err(format!(
                    "{entry:?} is an IPv4-mapped address with a prefix shorter than /96, which would mix IPv4 and IPv6; write the IPv4 range (a.b.c.d/N) or an IPv6 range outside ::ffff:0:0/96"
                ))
            }
            None => Ipv6Net::new(v6, len).map(IpNet::V6),
        },
    };
    net.map_err(|_| format!("{entry:?} has a bad prefix length"))
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
        for bad in [
            "1.2.3",
            "1.2.3.4/33",
            "::1/129",
            "1.2.3.4/x",
            "example.com",
            "::ffff:15.237.103.194/129",
            "::ffff:1.2.3.4/64",
            "1.2.3.4/",
            "/8",
            "1.2.3.4/-1",
        ] {
            let e = IpList::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn mapped_ipv6_entries_are_their_ipv4_range() {
        // Found in review: `::ffff:15.237.103.194` kept prefix 128 as IPv4, and `32 - 128` matched everything.
        let l = IpList::parse("::ffff:15.237.103.194").unwrap();
        assert!(l.contains("15.237.103.194"));
        assert!(l.contains("::ffff:15.237.103.194"));
        for other in ["15.237.103.195", "1.1.1.1", "0.0.0.0", "255.255.255.255", "::1", "::ffff:1.1.1.1"] {
            assert!(!l.contains(other), "{other}");
        }
        let l = IpList::parse("::FFFF:192.0.2.0/120, ::ffff:c633:6400/120").unwrap();
        assert!(l.contains("192.0.2.77") && l.contains("198.51.100.9"));
        assert!(!l.contains("192.0.3.1"));
        assert!(IpList::parse("::ffff:0.0.0.0/96").unwrap().contains("8.8.8.8"));
        assert!(IpList::parse("::ffff:0.0.0.0/96").unwrap().allows_a_whole_family());
        assert!(IpList::parse("10.0.0.0/8, ::/0").unwrap().allows_a_whole_family());
        assert!(!IpList::parse("10.0.0.0/8, 2001:db8::/32").unwrap().allows_a_whole_family());
        assert!(!IpList::parse("::ffff:0.0.0.0/96").unwrap().contains("2001:db8::1"));
    }

    #[test]
    fn odd_but_valid_spellings() {
        let l = IpList::parse(" , 192.0.2.1/32 ,, 2001:DB8::/32 , 10.0.0.0 / 8 ,").unwrap();
        for ip in ["192.0.2.1", "2001:db8::abcd", "10.255.0.1", " 10.0.0.1 "] {
            assert!(l.contains(ip), "{ip}");
        }
        assert!(IpList::parse("192.0.2.77/24").unwrap().contains("192.0.2.1"), "host bits are ignored");
        assert!(IpList::parse("::/0").unwrap().contains("2001:db8::1"));
        assert!(!IpList::parse("::/0").unwrap().contains("192.0.2.1"), "IPv6 /0 is IPv6 only");
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
