//! Parsers for what inbound mail carries: `Authentication-Results`,
//! `Received-SPF`, raw header blocks, and the decoded size of base64 content.

use crate::event::AuthResults;
use serde_json::{Map, Value};

/// `spf`, `dkim` and `dmarc` results of an `Authentication-Results` value
/// (RFC 8601): `authserv-id; spf=pass (…) smtp.mailfrom=…; dkim=none`.
/// The first result of each method counts.
pub fn authentication_results(value: &str) -> AuthResults {
    let mut out = AuthResults::default();
    for clause in value.split(';').skip(1) {
        let Some((method, rest)) = clause.trim().split_once('=') else { continue };
        let result = rest.split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("").to_ascii_lowercase();
        if result.is_empty() {
            continue;
        }
        let slot = match method.trim().to_ascii_lowercase().as_str() {
            "spf" => &mut out.spf,
            "dkim" => &mut out.dkim,
            "dmarc" => &mut out.dmarc,
            _ => continue,
        };
        slot.get_or_insert(result);
    }
    out
}

const SPF_RESULTS: [&str; 7] = ["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"];

/// The result word and the `client-ip` of a `Received-SPF` value (RFC 7208 §9.1).
pub fn received_spf(value: &str) -> (Option<String>, Option<String>) {
    let word = value.split_whitespace().next().map(str::to_ascii_lowercase).filter(|w| SPF_RESULTS.contains(&w.as_str()));
    let ip = value.split("client-ip=").nth(1).and_then(|rest| {
        let ip = rest.split(|c: char| c == ';' || c.is_whitespace()).next()?.trim();
        ip.parse::<std::net::IpAddr>().ok().map(|_| ip.to_string())
    });
    (word, ip)
}

/// The first value of a header in a JSON header map (string or array of strings), by any case of its name.
pub fn header<'a>(headers: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    let v = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))?.1;
    match v {
        Value::String(s) => Some(s),
        Value::Array(a) => a.iter().find_map(Value::as_str),
        _ => None,
    }
}

/// A raw header block (`Name: value` lines, continuation lines folded in)
/// as a JSON map; a repeated name becomes an array of its values in order.
pub fn parse_header_block(block: &str) -> Map<String, Value> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let mut map = Map::new();
    for (name, value) in fields {
        match map.get_mut(&name) {
            None => {
                map.insert(name, Value::String(value));
            }
            Some(Value::Array(a)) => a.push(Value::String(value)),
            Some(prev) => *prev = Value::Array(vec![prev.take(), Value::String(value)]),
        }
    }
    map
}

/// The decoded length of base64 text, without decoding or copying it.
/// Whitespace (line breaks of MIME base64) is ignored; so is padding.
pub fn base64_decoded_len(text: &str) -> u64 {
    base64_symbols(text.as_bytes()) * 3 / 4
}

/// The base64 symbols in `bytes` (padding and white space left out): three
/// bytes decoded for every four. Counted in parts by `large` for strings it never builds.
pub fn base64_symbols(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b != b'=' && !b.is_ascii_whitespace()).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn authentication_results_from_improvmx() {
        let v = "mx1.improvmx.com; spf=pass (improvmx.com: domain of example.com designates 192.0.2.1 as permitted sender) smtp.mailfrom=example.com; dkim=none";
        let r = authentication_results(v);
        assert_eq!((r.spf.as_deref(), r.dkim.as_deref(), r.dmarc.as_deref()), (Some("pass"), Some("none"), None));
        let r = authentication_results("mx.example; DKIM=Pass header.d=a.b; dkim=fail; dmarc=fail(p=reject); arc=none");
        assert_eq!((r.spf, r.dkim.as_deref(), r.dmarc.as_deref()), (None, Some("pass"), Some("fail")));
        assert_eq!(authentication_results(""), AuthResults::default());
        assert_eq!(authentication_results("x; spf=; ; =pass"), AuthResults::default());
    }

    #[test]
    fn received_spf_word_and_client_ip() {
        let v = "pass (improvmx.com: domain of example.com designates 192.0.2.1 as permitted sender) receiver=mx1.improvmx.com; client-ip=192.0.2.1; helo=example.com;";
        assert_eq!(received_spf(v), (Some("pass".into()), Some("192.0.2.1".into())));
        assert_eq!(received_spf("SoftFail client-ip=2001:db8::1"), (Some("softfail".into()), Some("2001:db8::1".into())));
        assert_eq!(received_spf("maybe client-ip=xxx.xxx.xxx.xxx;"), (None, None));
        assert_eq!(received_spf(""), (None, None));
    }

    #[test]
    fn header_blocks_fold_and_repeat() {
        let m = parse_header_block(
            "From: a@b.c\r\nSubject: Hello\r\n  world\r\nReceived: one\r\nReceived: two\r\nReceived: three\r\nbogus line\r\n",
        );
        assert_eq!(m["Subject"], "Hello world");
        assert_eq!(m["Received"], serde_json::json!(["one", "two", "three"]));
        assert_eq!(header(&m, "from"), Some("a@b.c"));
        assert_eq!(header(&m, "received"), Some("one"));
        assert_eq!(header(&m, "to"), None);
    }

    #[test]
    fn base64_sizes_match_decoding() {
        let e = base64::engine::general_purpose::STANDARD;
        for len in [0usize, 1, 2, 3, 4, 5, 100, 1001] {
            let data = vec![7u8; len];
            let text = e.encode(&data);
            assert_eq!(base64_decoded_len(&text), len as u64, "{len}");
            let wrapped: String = text.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\r\n");
            assert_eq!(base64_decoded_len(&wrapped), len as u64, "{len} wrapped");
        }
    }
}
