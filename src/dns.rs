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

/// `{doh_url}?name=…&type=…` (names here are ASCII labels and dots: no escaping needed).
pub fn query_url(doh_url: &str, name: &str, rtype: RecordType) -> String {
    let sep = if doh_url.contains('?') { '&' } else { '?' };
    format!("{doh_url}{sep}name={name}&type={}", rtype.name())
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
            .map(|r| r.data.trim().trim_end_matches('.').to_ascii_lowercase())
            .collect()),
        s => Err(format!("the resolver answered DNS status {s}")),
    }
}

/// True when `name` ends in `.` + `suffix` on a label boundary (case-insensitive,
/// trailing dots ignored): `mx1.mail-plus.com` passes, `evilmail-plus.com` and
/// `mail-plus.com.evil.net` do not.
pub fn suffix_matches(name: &str, suffix: &str) -> bool {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let suffix = suffix.trim().trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
    !suffix.is_empty() && name.len() > suffix.len() + 1 && name.ends_with(&format!(".{suffix}"))
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
    }

    #[test]
    fn suffix_on_a_label_boundary_only() {
        assert!(suffix_matches("mx1.mail-plus.com.", "mail-plus.com"));
        assert!(suffix_matches("A.B.MAIL-PLUS.COM", ".mail-plus.com"));
        for bad in ["evilmail-plus.com", "mail-plus.com", "x.mail-plus.com.evil.net", "x.evilmail-plus.com", "", "mail-plus.co"] {
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
}
