//! A destination's URL: what `fetch` will take, checked once with the WHATWG
//! URL parser (the `url` crate, the rules `fetch` itself follows), and the few
//! spellings refused besides as likely mistakes.

use url::{Host, ParseError, Url};

/// An absolute http(s) URL that `fetch` takes, trimmed. Refused besides:
/// credentials (mailhook sends none), port 0, spaces, control characters,
/// backslashes and broken percent-escapes anywhere, an empty label
/// (`a..b`) and an IPv4 address not written as four numbers (`1.2.3`).
pub fn valid_url(raw: &str) -> Result<String, String> {
    let text = raw.trim();
    // The URL itself is never quoted: this message reaches the public /healthz, and a URL can hold a secret.
    let bad = |why: &str| Err(format!("its URL is not an absolute http:// or https:// URL: {why}"));
    let lower = text.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")) else {
        return bad("it must start with http:// or https://");
    };
    if text.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
        return bad("it has spaces, control characters or backslashes");
    }
    let b = text.as_bytes();
    if text
        .match_indices('%')
        .any(|(i, _)| !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)))
    {
        return bad("a % is not followed by two hex digits");
    }
    if rest.starts_with('/') {
        return bad("it has no host after the //");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let written = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if written.starts_with('[') && written.split_once(']').is_some_and(|(_, after)| !after.is_empty() && !after.starts_with(':')) {
        return bad("the port must be a number from 1 to 65535");
    }
    let url = match Url::parse(text) {
        Ok(u) => u,
        Err(ParseError::InvalidPort) => return bad("the port must be a number from 1 to 65535"),
        Err(ParseError::InvalidIpv6Address) => return bad("the IPv6 address in [ ] is not valid"),
        Err(ParseError::EmptyHost) => return bad("it has no host"),
        Err(_) => return bad("the host is not a hostname or an IP address"),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return bad("it has a user name or password before the host, which mailhook never sends; take them out of the URL");
    }
    if url.port() == Some(0) {
        return bad("the port must be a number from 1 to 65535");
    }
    // As written: the parser reads `1.2.3` as 1.2.0.3 and keeps `a..b`; both are more likely typing mistakes than intent.
    let written_host = if written.starts_with('[') { written } else { written.rsplit_once(':').map_or(written, |(h, _)| h) };
    match url.host() {
        Some(Host::Ipv4(ip)) if written_host.trim_end_matches('.') != ip.to_string() => {
            bad("the host is not a hostname or an IP address (write an IPv4 address as four numbers)")
        }
        Some(Host::Domain(_)) if written_host.trim_end_matches('.').split('.').any(str::is_empty) => {
            bad("the host is not a hostname or an IP address (it has an empty label)")
        }
        Some(_) => Ok(text.to_string()),
        None => bad("it has no host"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_but_valid_urls() {
        for url in [
            "HTTPS://CRM.Example.COM./Hooks?a=%20b",
            "http://127.0.0.1:8789/events",
            "http://[::1]:8080/",
            "http://[2001:db8::1]/x",
            "https://my_host.internal/x",
            "https://x.example",
            "https://bücher.example/",
            " https://x.example/#frag ",
            // An empty port is the scheme's default, as `fetch` reads it.
            "http://127.0.0.1:/x",
            "https://x.example:443/",
        ] {
            assert_eq!(valid_url(url).as_deref(), Ok(url.trim()), "{url}");
        }
    }

    #[test]
    fn credentials_are_refused_in_words_that_agree() {
        for url in ["https://user:pw@c.example/", "https://user@c.example/", "https://:pw@c.example/"] {
            let e = valid_url(url).unwrap_err();
            assert!(e.contains("user name or password") && !e.contains("no credentials"), "{url}: {e}");
            assert!(!e.contains("c.example"), "the URL is never quoted: {e}");
        }
    }
}
