//! Parsers for what inbound mail carries: `Authentication-Results`,
//! `Received-SPF`, raw header blocks, and the decoded size of base64 content.

use crate::event::AuthResults;
use serde_json::{Map, Value};

/// `spf`, `dkim` and `dmarc` results of an `Authentication-Results` value
/// (RFC 8601): `authserv-id; spf=pass (…) smtp.mailfrom=…; dkim=none`.
/// Comments are dropped first (they quote what the sender wrote, `;` and
/// `=` included). The first result of each method counts; for SPF, a result
/// about the HELO name only (`smtp.helo`, checked beside MAIL FROM) does not:
/// anyone can pass it with their own host name.
pub fn authentication_results(value: &str) -> AuthResults {
    let mut out = AuthResults::default();
    // Comments the sender could have unbalanced: no verdict rather than a misread one.
    let Some(value) = strip_comments(value) else { return out };
    for clause in split_outside_quotes(&value, ';').into_iter().skip(1) {
        let Some((method, rest)) = clause.trim().split_once('=') else { continue };
        let mut words = rest.split_whitespace();
        let result = words.next().unwrap_or("").to_ascii_lowercase();
        if result.is_empty() {
            continue;
        }
        let props: Vec<String> = words.map(str::to_ascii_lowercase).collect();
        let about = |p: &str| props.iter().any(|w| w.starts_with(p));
        let slot = match method.trim().to_ascii_lowercase().as_str() {
            "spf" if about("smtp.helo=") && !about("smtp.mailfrom=") => continue,
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

/// The result word and the `client-ip` of a `Received-SPF` value (RFC 7208
/// §9.1): the word, then a comment (which quotes the sender's MAIL FROM, so
/// it is dropped), then `key=value` pairs, read outside quoted strings.
pub fn received_spf(value: &str) -> (Option<String>, Option<String>) {
    let Some(stripped) = strip_comments(value) else { return (None, None) };
    let word = stripped.split_whitespace().next().map(str::to_ascii_lowercase).filter(|w| SPF_RESULTS.contains(&w.as_str()));
    // Two `client-ip=` anywhere (one of them the sender's words): no address rather than the wrong one.
    if value.to_ascii_lowercase().matches("client-ip").count() > 1 {
        return (word, None);
    }
    // `key=value` pairs, separated by `;` or white space, outside quoted strings.
    let ip = split_outside_quotes(&stripped, ';').into_iter().flat_map(|chunk| split_outside_quotes(chunk, ' ')).find_map(|pair| {
        let (key, ip) = pair.trim().split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("client-ip") {
            return None;
        }
        let ip = ip.trim();
        ip.parse::<std::net::IpAddr>().ok().map(|_| ip.to_string())
    });
    (word, ip)
}

/// The text without its RFC 5322 comments (parenthesised, nested, with
/// `\\` escapes), quoted strings kept as they are. `None` when the comments
/// do not close or hold a quote: they then quote a sender's address in a way
/// that cannot be told apart from the server's own words.
pub fn strip_comments(s: &str) -> Option<String> {
    let (mut out, mut depth, mut quoted, mut escaped) = (String::with_capacity(s.len()), 0usize, false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth > 0 => return None,
            '"' => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(' ');
                }
            }
            ')' if !quoted => return None,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    (depth == 0 && !quoted).then_some(out)
}

/// `s` split at `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
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
    header_map(fields)
}

/// Header fields in order as a JSON map (`data.inbound.headers`): a repeated
/// name becomes an array of its values in order.
pub fn header_map(fields: impl IntoIterator<Item = (String, String)>) -> Map<String, Value> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn what_the_sender_wrote_does_not_count() {
        // Cloudflare checks HELO and MAIL FROM; only MAIL FROM's result is SPF's verdict.
        let cf = "mx.cloudflare.net; dkim=pass header.d=a.example; dmarc=fail header.from=victim.example; \
                  spf=pass (mx.cloudflare.net: postmaster@evil.example designates 203.0.113.5 as permitted sender) smtp.helo=evil.example; \
                  spf=softfail (mx.cloudflare.net: domain of transitioning ceo@victim.example does not designate 203.0.113.5) smtp.mailfrom=ceo@victim.example";
        assert_eq!(authentication_results(cf).spf.as_deref(), Some("softfail"));
        // A comment with `;` and `spf=pass` in it (it quotes the sender).
        let quoted = "mx.cloudflare.net; dkim=none (no signature; spf=pass dmarc=pass); spf=fail smtp.mailfrom=x@y";
        let r = authentication_results(quoted);
        assert_eq!((r.spf.as_deref(), r.dkim.as_deref(), r.dmarc), (Some("fail"), Some("none"), None));
        // MAIL FROM is echoed in Received-SPF's comment and envelope-from: neither sets client-ip.
        let forged = r#"pass (mx.cloudflare.net: domain of "client-ip=198.51.100.66 x"@attacker.example designates 203.0.113.5 as permitted sender) receiver=mx.cloudflare.net; client-ip=203.0.113.5; envelope-from="client-ip=6.6.6.6@attacker.example"; helo=h;"#;
        assert_eq!(received_spf(forged), (None, None), "a quote inside the comment: fail closed");
        let twice = "pass (mx.cloudflare.net: domain of client-ip=6.6.6.6@attacker.example designates 203.0.113.5) receiver=mx.cloudflare.net; client-ip=203.0.113.5;";
        assert_eq!(received_spf(twice), (Some("pass".into()), None), "client-ip twice: no address rather than the wrong one");
        let plain = "pass (mx.cloudflare.net: domain of a@example.net designates 203.0.113.5 as permitted sender) receiver=mx.cloudflare.net; client-ip=203.0.113.5; envelope-from=\"a@example.net\";";
        assert_eq!(received_spf(plain).1.as_deref(), Some("203.0.113.5"));
        assert_eq!(strip_comments(r#"a (b (c) d) "e (f)" g\(h"#).as_deref(), Some(r#"a   "e (f)" g\(h"#));
        // A sender's quoted address inside the server's comment: no verdict, rather than a misread one.
        let desync = r#"pass (mx.cloudflare.net: domain of "x) client-ip=6.6.6.6; y"@evil.example designates 203.0.113.5) receiver=mx.cloudflare.net; client-ip=203.0.113.5;"#;
        assert_eq!(received_spf(desync).1, None);
        let helo =
            r#"mx.cloudflare.net; spf=fail (mx.cloudflare.net: domain of "a) smtp.helo=x; spf=pass; b"@victim.example) smtp.mailfrom=x"#;
        assert_eq!(authentication_results(helo), AuthResults::default());
        assert_eq!(
            authentication_results(r#"mx; spf=softfail (domain of "a(b"@evil.example) smtp.mailfrom=x; dkim=fail"#),
            AuthResults::default()
        );
        assert_eq!(strip_comments("a (b"), None);
        assert_eq!(strip_comments("a ) b"), None);
        // One clause about both MAIL FROM and HELO is MAIL FROM's; pairs may be separated by spaces.
        assert_eq!(
            authentication_results("mx; spf=pass smtp.mailfrom=a@example.com smtp.helo=mail.example.com").spf.as_deref(),
            Some("pass")
        );
        let spaced = "pass (mx.example: domain of a@example.com designates 192.0.2.1 as permitted sender) client-ip=192.0.2.1 envelope-from=a@example.com helo=h";
        assert_eq!(received_spf(spaced).1.as_deref(), Some("192.0.2.1"));
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
}
