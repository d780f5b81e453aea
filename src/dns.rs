//! Reverse DNS for Mail-Plus, decided without I/O: the PTR name of an address,
//! the DNS-over-HTTPS (JSON API) URLs, answer parsing, the label-boundary
//! suffix match, and the forward-confirmation verdict. The edge does the fetches.
//!
//! Mail-Plus's own example accepts any name that merely *ends* with
//! `mail-plus.com`, so `evilmail-plus.com` passes; here the PTR name must end
//! in `.` + suffix, and its A/AAAA records must contain the same address.

use serde::Deserialize;
use std::net::IpAddr;

/// A DNS record type of the JSON API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    A = 1,
    Ptr = 12,
    Aaaa = 28,
}

impl RecordType {
    fn name(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Ptr => "PTR",
            Self::Aaaa => "AAAA",
        }
    }
}

/// `4.3.2.1.in-addr.arpa` or the IPv6 nibble form under `ip6.arpa`.
pub fn ptr_name(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0xf, byte >> 4] {
                    s.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    s.push('.');
                }
            }
            s + "ip6.arpa"
        }
    }
}

/// The forward record type that must contain `ip`.
pub fn forward_type(ip: IpAddr) -> RecordType {
    if ip.to_canonical().is_ipv4() {
        RecordType::A
    } else {
        RecordType::Aaaa
    }
}

/// `{doh_url}?name=…&type=…`, every parameter value percent-encoded, so no
/// name (even one that slipped past `valid_hostname`) can add or cut a parameter.
pub fn query_url(doh_url: &str, name: &str, rtype: RecordType) -> String {
    let sep = if doh_url.contains('?') { '&' } else { '?' };
    format!("{doh_url}{sep}name={}&type={}", crate::percent::percent_encode(name), rtype.name())
}

/// The longest DNS name in text form, without the root dot (RFC 1035 §2.3.4).
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// The name in canonical form (lower case, no trailing dot) when it is a
/// DNS hostname: LDH labels (letters, digits, inner hyphens) of 1 to 63
/// characters, 253 in all. Anything else (`&`, `#`, `/`, spaces, empty
/// labels, escapes) is `None`: a PTR answer is attacker-written, so a name
/// that is not a hostname is never matched, looked up or cached.
pub fn valid_hostname(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let ok = name.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_LABEL_LEN
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b.first() != Some(&b'-')
            && b.last() != Some(&b'-')
    });
    ok.then(|| name.to_ascii_lowercase())
}

#[derive(Deserialize)]
struct DohAnswer {
    #[serde(rename = "Status")]
    status: u32,
    #[serde(rename = "Answer", default)]
    answer: Vec<DohRecord>,
}

#[derive(Deserialize)]
struct DohRecord {
    #[serde(rename = "type")]
    rtype: u16,
    data: String,
}

/// The records of type `rtype` in a JSON API answer: `Ok(vec![])` for
/// NXDOMAIN or no records, `Err` when the resolver failed (so the caller can
/// answer 503 and let the provider retry rather than refuse the sender).
pub fn parse_answer(body: &[u8], rtype: RecordType) -> Result<Vec<String>, String> {
    let a: DohAnswer = serde_json::from_slice(body).map_err(|e| format!("the DoH answer is not JSON API: {e}"))?;
    match a.status {
        0 | 3 => Ok(a
            .answer
            .into_iter()
            .filter(|r| r.rtype == rtype as u16)
            .map(|r| {
                let d = r.data.trim();
                d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase()
            })
            .collect()),
        s => Err(format!("the resolver answered DNS status {s}")),
    }
}

/// True when `name` is a hostname (`valid_hostname`) that ends in `.` +
/// `suffix` on a label boundary (case-insensitive, one trailing dot
/// ignored): `mx1.mail-plus.com` passes; `evilmail-plus.com`,
/// `mail-plus.com.evil.net` and `attacker.example&x=.mail-plus.com` do not.
pub fn suffix_matches(name: &str, suffix: &str) -> bool {
    let (Some(name), Some(suffix)) = (valid_hostname(name.trim()), valid_hostname(suffix.trim().trim_start_matches('.'))) else {
        return false;
    };
    name.len() > suffix.len() + 1 && name.ends_with(&suffix) && name.as_bytes().get(name.len() - suffix.len() - 1) == Some(&b'.')
}

/// The names of a PTR answer worth a forward lookup: hostnames under
/// `suffix`, at most `max` of them (each costs a DoH fetch).
pub fn candidate_names(ptr_names: &[String], suffix: &str, max: usize) -> Vec<String> {
    let mut names: Vec<String> = ptr_names.iter().filter(|n| suffix_matches(n, suffix)).filter_map(|n| valid_hostname(n)).collect();
    names.dedup();
    names.truncate(max);
    names
}

/// True when the forward answer contains the client's own address.
pub fn forward_confirms(addresses: &[String], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    addresses.iter().any(|a| a.parse::<IpAddr>().is_ok_and(|x| x.to_canonical() == ip))
}

/// The KV key of a cached verdict.
pub fn cache_key(ip: IpAddr, suffix: &str) -> String {
    format!("rdns:{}:{}", suffix.to_ascii_lowercase(), ip.to_canonical())
}

/// How long a verdict is cached: a pass for an hour, a refusal for five
/// minutes (so a fixed DNS record is picked up soon). KV's minimum is 60 s.
pub fn cache_ttl(passed: bool) -> u64 {
    if passed {
        3600
    } else {
        300
    }
}

/// How many PTR names of one answer get a forward lookup: with the PTR
/// query itself, an unauthenticated request costs at most 3 DoH fetches.
pub const MAX_FORWARD_LOOKUPS: usize = 2;

/// Verdicts remembered by one isolate, refusals included, so a sender that
/// is refused once costs no DoH fetch and no KV write for `cache_ttl(false)`.
/// Bounded: when full, expired entries go first, then the oldest half.
#[derive(Debug, Default)]
pub struct VerdictCache {
    entries: std::collections::HashMap<String, (bool, i64)>,
}

impl VerdictCache {
    pub const CAPACITY: usize = 4096;

    /// The cached verdict of `key`, if it has not expired at `now` (Unix seconds).
    pub fn get(&self, key: &str, now: i64) -> Option<bool> {
        self.entries.get(key).filter(|(_, until)| *until > now).map(|(v, _)| *v)
    }

    pub fn put(&mut self, key: String, passed: bool, now: i64) {
        if self.entries.len() >= Self::CAPACITY {
            self.entries.retain(|_, (_, until)| *until > now);
        }
        if self.entries.len() >= Self::CAPACITY {
            let mut expiries: Vec<i64> = self.entries.values().map(|(_, until)| *until).collect();
            expiries.sort_unstable();
            let median = expiries[expiries.len() / 2];
            self.entries.retain(|_, (_, until)| *until > median);
        }
        let ttl = i64::try_from(cache_ttl(passed)).unwrap_or(i64::MAX);
        self.entries.insert(key, (passed, now.saturating_add(ttl)));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptr_names_v4_v6_and_mapped() {
        assert_eq!(ptr_name("192.0.2.1".parse().unwrap()), "1.2.0.192.in-addr.arpa");
        assert_eq!(ptr_name("::ffff:192.0.2.1".parse().unwrap()), "1.2.0.192.in-addr.arpa");
        assert_eq!(
            ptr_name("2001:db8::567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
        assert_eq!(forward_type("192.0.2.1".parse().unwrap()), RecordType::A);
        assert_eq!(forward_type("2001:db8::1".parse().unwrap()), RecordType::Aaaa);
    }

    #[test]
    fn query_urls() {
        assert_eq!(
            query_url("https://dns.example/dns-query", "1.2.0.192.in-addr.arpa", RecordType::Ptr),
            "https://dns.example/dns-query?name=1.2.0.192.in-addr.arpa&type=PTR"
        );
        assert_eq!(query_url("http://127.0.0.1:1/q?ct=x", "a.b", RecordType::A), "http://127.0.0.1:1/q?ct=x&name=a.b&type=A");
        // Found in review: a PTR name could add a parameter or cut the query.
        assert_eq!(
            query_url("https://d/q", "attacker.example&x=.mail-plus.com", RecordType::A),
            "https://d/q?name=attacker.example%26x%3D.mail-plus.com&type=A"
        );
        assert_eq!(query_url("https://d/q", "a#.b c/%", RecordType::A), "https://d/q?name=a%23.b%20c%2F%25&type=A");
    }

    #[test]
    fn only_hostnames_are_hostnames() {
        assert_eq!(valid_hostname("MX1.Mail-Plus.com.").as_deref(), Some("mx1.mail-plus.com"));
        assert_eq!(valid_hostname("a").as_deref(), Some("a"));
        let label63 = "a".repeat(63);
        assert!(valid_hostname(&format!("{label63}.com")).is_some());
        assert!(valid_hostname(&format!("{}a.com", label63)).is_none(), "a 64-character label");
        let long = vec!["a".repeat(61); 4].join(".") + ".com"; // 4 * 61 + 3 + 4 = 251
        assert!(valid_hostname(&long).is_some());
        assert!(valid_hostname(&(long + "xyz")).is_none(), "over 253");
        for bad in [
            "",
            ".",
            "attacker.example&x=.mail-plus.com",
            "attacker2.example#.mail-plus.com",
            "a..mail-plus.com",
            ".mail-plus.com",
            "-a.mail-plus.com",
            "a-.mail-plus.com",
            "a b.mail-plus.com",
            "a/b.mail-plus.com",
            "a\\.b.mail-plus.com",
            "a_b.mail-plus.com",
            "a.mail-plus.com..",
            "é.mail-plus.com",
            "a%2e.mail-plus.com",
            "a.mail-plus.com\0",
        ] {
            assert_eq!(valid_hostname(bad), None, "{bad:?}");
            assert!(!suffix_matches(bad, "mail-plus.com"), "{bad:?}");
        }
    }

    #[test]
    fn candidates_are_valid_matching_and_bounded() {
        let names: Vec<String> = [
            "attacker.example&x=.mail-plus.com",
            "x.evil.net",
            "mx1.mail-plus.com",
            "mx1.mail-plus.com.",
            "mx2.mail-plus.com",
            "mx3.mail-plus.com",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(candidate_names(&names, "mail-plus.com", 2), ["mx1.mail-plus.com", "mx2.mail-plus.com"]);
        assert!(candidate_names(&names, "", 2).is_empty());
    }

    #[test]
    fn suffix_on_a_label_boundary_only() {
        assert!(suffix_matches("mx1.mail-plus.com.", "mail-plus.com"));
        assert!(suffix_matches("A.B.MAIL-PLUS.COM", ".mail-plus.com"));
        for bad in [
            "evilmail-plus.com",
            "mail-plus.com",
            "x.mail-plus.com.evil.net",
            "x.evilmail-plus.com",
            "",
            "mail-plus.co",
            "x.mail-plus.com..",
        ] {
            assert!(!suffix_matches(bad, "mail-plus.com"), "{bad}");
        }
        assert!(!suffix_matches("x.mail-plus.com", ""));
    }

    #[test]
    fn answers_and_forward_confirmation() {
        let ptr = br#"{"Status":0,"Answer":[{"name":"1.2.0.192.in-addr.arpa.","type":12,"TTL":300,"data":"MX1.mail-plus.com."},{"name":"x","type":5,"data":"cname.example."}]}"#;
        assert_eq!(parse_answer(ptr, RecordType::Ptr).unwrap(), ["mx1.mail-plus.com"]);
        assert_eq!(parse_answer(br#"{"Status":3}"#, RecordType::Ptr).unwrap(), Vec::<String>::new());
        assert!(parse_answer(br#"{"Status":2}"#, RecordType::Ptr).is_err());
        assert!(parse_answer(b"<html>", RecordType::Ptr).is_err());
        let a = parse_answer(br#"{"Status":0,"Answer":[{"type":1,"data":"192.0.2.1"}]}"#, RecordType::A).unwrap();
        assert!(forward_confirms(&a, "192.0.2.1".parse().unwrap()));
        assert!(forward_confirms(&a, "::ffff:192.0.2.1".parse().unwrap()));
        assert!(!forward_confirms(&a, "192.0.2.2".parse().unwrap()));
        assert!(forward_confirms(&["2001:db8::1".into()], "2001:0db8:0::1".parse().unwrap()));
    }

    #[test]
    fn the_verdict_cache_expires_and_stays_bounded() {
        let mut c = VerdictCache::default();
        c.put("a".into(), false, 1000);
        assert_eq!(c.get("a", 1000), Some(false));
        assert_eq!(c.get("a", 1000 + 300), None);
        c.put("b".into(), true, 1000);
        assert_eq!(c.get("b", 1000 + 3599), Some(true));
        for i in 0..(VerdictCache::CAPACITY * 3) {
            c.put(format!("k{i}"), false, 2000 + i as i64);
        }
        assert!(c.len() <= VerdictCache::CAPACITY);
        assert_eq!(c.get(&format!("k{}", VerdictCache::CAPACITY * 3 - 1), 2000 + VerdictCache::CAPACITY as i64 * 3), Some(false));
    }
}
