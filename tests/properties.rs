//! Robustness: no input may panic. Property tests over every provider's
//! parse + normalise (arbitrary bytes, authenticated so that they reach the
//! parser, and fixtures with fields replaced by arbitrary JSON) and over
//! every header and value parser. They run in `npm test`; the long runs are
//! the fuzz targets in `fuzz/` (see BENCHMARKS.md).

mod common;
use common::*;
use mailhook::providers::Provider;
use proptest::prelude::*;
use serde_json::Value;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_-]{0,12}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A source's JSON fixtures (none for raw mail: see `mail_takes_mutated_fixtures`).
fn fixtures(p: Provider) -> Vec<Value> {
    if !p.posts() {
        return Vec::new();
    }
    fixture_names(p).iter().map(|n| serde_json::from_slice(&fixture(p, n)).unwrap()).collect()
}

/// Replaces the value at a path chosen by `pick` with `new`, recursing into objects.
fn mutate(v: &mut Value, pick: &[usize], new: Value) {
    match (v, pick.split_first()) {
        (Value::Object(m), Some((i, rest))) if !m.is_empty() => {
            let key = m.keys().nth(i % m.len()).cloned().unwrap();
            let child = m.get_mut(&key).unwrap();
            if rest.is_empty() || !child.is_object() {
                *child = new;
            } else {
                mutate(child, rest, new);
            }
        }
        (v, _) => *v = new,
    }
}

fn never_panics(p: Provider, body: &[u8]) {
    let cfg = config();
    let _ = ingest(p, &cfg, body);
    let sent = as_sent_by(p, body);
    let _ = run(p, &cfg, &sent.headers, sent.client_ip, Some(false), NOW, body);
    // Never panics, and every event it makes is JSON (`ingest` parses each).
    let _ = mailhook::testkit::ingest_json(p, &cfg, &sent.inbound(body, NOW));
}

proptest! {
    // 256 cases each by default; PROPTEST_CASES=N for a longer run.
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn providers_take_any_bytes(body in prop::collection::vec(any::<u8>(), 0..512), p in 0..Provider::ALL.len()) {
        never_panics(Provider::ALL[p], &body);
    }

    #[test]
    fn providers_take_any_json(v in arb_json(), p in 0..Provider::ALL.len()) {
        never_panics(Provider::ALL[p], &serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn providers_take_mutated_fixtures(p in 0..Provider::ALL.len(), f in any::<usize>(), pick in prop::collection::vec(any::<usize>(), 1..4), new in arb_json()) {
        let provider = Provider::ALL[p];
        let all = fixtures(provider);
        if !all.is_empty() {
            let mut v = all[f % all.len()].clone();
            mutate(&mut v, &pick, new);
            never_panics(provider, &serde_json::to_vec(&v).unwrap());
        }
    }

    /// Raw mail with bytes overwritten, cut or spliced anywhere: boundaries,
    /// encodings, headers and charsets broken in every way.
    #[test]
    fn mail_takes_mutated_fixtures(f in any::<usize>(), edits in prop::collection::vec((any::<usize>(), 0usize..64, prop::collection::vec(any::<u8>(), 0..24)), 1..8)) {
        for provider in Provider::ALL.into_iter().filter(|p| !p.posts()) {
            let names = fixture_names(provider);
            let mut mail = fixture(provider, &names[f % names.len()]);
            for (at, cut, with) in &edits {
                let at = at % (mail.len() + 1);
                let end = (at + cut).min(mail.len());
                mail.splice(at..end, with.iter().copied());
            }
            never_panics(provider, &mail);
        }
    }

    #[test]
    fn header_parsers_take_any_text(s in ".{0,300}", now in any::<i64>()) {
        mailhook::testkit::exercise_parsers(&s, s.as_bytes(), now);
    }

    #[test]
    fn header_parsers_take_header_shaped_text(method in "[a-zA-Z]{1,8}", result in "[a-zA-Z]{0,10}", junk in "[ -~]{0,40}") {
        let ar = format!("mx.example; {method}={result} ({junk}); {junk}={result}");
        let parsed = mailhook::mailauth::authentication_results(&ar);
        prop_assert!(parsed.spf.iter().chain(&parsed.dkim).chain(&parsed.dmarc).all(|r| !r.is_empty()));
        let _ = mailhook::mailauth::received_spf(&format!("{result} {junk} client-ip={junk};"));
        let _ = mailhook::delivery::parse_retry_after(&format!("{method}, {result} {junk} GMT"), 0);
    }

    #[test]
    fn json_timestamps_take_any_json(v in arb_json()) {
        let _ = mailhook::time::from_json(&v);
        let _ = mailhook::address::from_json(&v);
    }

    #[test]
    fn rfc3339_round_trips(t in -62_135_596_800i64..253_402_300_799) {
        prop_assert_eq!(mailhook::time::parse_rfc3339(&mailhook::time::to_rfc3339(t)), Some(t));
    }

    #[test]
    fn retry_delays_stay_within_the_queue_limit(schedule in prop::collection::vec(0u32..=86_400, 0..12), attempt in any::<u32>(), ra in any::<Option<u32>>(), j in any::<f64>()) {
        if let Some(d) = mailhook::delivery::next_delay(&schedule, attempt, ra, j) {
            prop_assert!(d <= mailhook::limits::MAX_QUEUE_DELAY_SECONDS);
        }
    }

    #[test]
    fn cidr_membership_matches_arithmetic(net in any::<u32>(), len in 0u8..=32, ip in any::<u32>()) {
        let list = mailhook::auth::IpList::parse(&format!("{}/{len}", std::net::Ipv4Addr::from(net))).unwrap();
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
        prop_assert_eq!(list.contains(&std::net::Ipv4Addr::from(ip).to_string()), (ip & mask) == (net & mask));
    }

    /// Every written form of an IPv4 entry (dotted, IPv4-mapped dotted, mapped
    /// hex, upper case) and every prefix 0..=128: parsed only when the prefix
    /// fits the family, and then matching exactly the arithmetic range.
    #[test]
    fn ipv4_entries_in_every_form(net in any::<u32>(), len in 0u8..=128, ip in any::<u32>(), probe_mapped in any::<bool>()) {
        let a = std::net::Ipv4Addr::from(net);
        let hex = format!("{:x}:{:x}", net >> 16, net & 0xffff);
        let probe = if probe_mapped { format!("::ffff:{}", std::net::Ipv4Addr::from(ip)) } else { std::net::Ipv4Addr::from(ip).to_string() };
        for (entry, v4_len) in [
            (format!("{a}/{len}"), Some(len).filter(|l| *l <= 32)),
            (format!("::ffff:{a}/{len}"), len.checked_sub(96)),
            (format!("::FFFF:{}/{len}", hex.to_uppercase()), len.checked_sub(96)),
            (format!("0:0:0:0:0:ffff:{a}/{len}"), len.checked_sub(96)),
        ] {
            match (mailhook::auth::IpList::parse(&entry), v4_len) {
                (Ok(list), Some(l)) => {
                    let mask = if l == 0 { 0 } else { u32::MAX << (32 - u32::from(l)) };
                    prop_assert_eq!(list.contains(&probe), (ip & mask) == (net & mask), "{} contains {}", entry, probe);
                    prop_assert!(!list.contains("2001:db8::1"), "{} must not match IPv6", entry);
                }
                (Err(e), None) => prop_assert!(e.contains(&entry), "{}", e),
                (r, l) => prop_assert!(false, "{}: parsed {:?}, expected an IPv4 /{:?}", entry, r.is_ok(), l),
            }
        }
    }

    #[test]
    fn ipv6_entries_in_every_form(net in any::<u128>(), len in 0u8..=129, ip in any::<u128>()) {
        let a = std::net::Ipv6Addr::from(net);
        prop_assume!(a.to_ipv4_mapped().is_none());
        let expanded = a.segments().iter().map(|s| format!("{s:04X}")).collect::<Vec<_>>().join(":");
        for entry in [format!("{a}/{len}"), format!("{expanded}/{len}"), format!(" {}/ {len} ,", a.to_string().to_uppercase())] {
            match mailhook::auth::IpList::parse(&entry) {
                Ok(list) => {
                    prop_assert!(len <= 128);
                    let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
                    let probe = std::net::Ipv6Addr::from(ip);
                    let expected = (ip & mask) == (net & mask) && probe.to_ipv4_mapped().is_none();
                    prop_assert_eq!(list.contains(&probe.to_string()), expected, "{} contains {}", entry, probe);
                    prop_assert!(!list.contains("192.0.2.1"), "{} must not match IPv4", entry);
                }
                Err(e) => {
                    prop_assert!(len > 128, "{}: {}", entry, e);
                    prop_assert!(e.contains(entry.trim().trim_end_matches(',').trim()), "{}", e);
                }
            }
        }
    }
}

proptest! {
    /// What a link serves (an attachment's JSON literal, unescaped and base64-decoded a chunk at a time) is the
    /// attachment's bytes, however the sender escaped or wrapped its base64, and in whatever chunks R2 hands it over.
    #[test]
    fn a_literal_streamed_in_chunks_decodes_to_its_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        escapes in prop::collection::vec(0u8..4, 0..900),
        chunk in 1usize..64,
    ) {
        use base64::Engine as _;
        use mailhook::large::{Base64Decoder, Unescaper};
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let mut literal = String::from("\"");
        for (i, c) in text.chars().enumerate() {
            match escapes.get(i).copied().unwrap_or(0) {
                1 => literal.push_str(&format!("\\u{:04x}", c as u32)),
                2 if c == '/' => literal.push_str("\\/"),
                3 if i % 76 == 75 => literal.push_str(&format!("{c}\\r\\n")),
                _ => literal.push(c),
            }
        }
        literal.push('"');
        let (mut u, mut d, mut out) = (Unescaper::default(), Base64Decoder::default(), Vec::new());
        for piece in literal.as_bytes().chunks(chunk) {
            u.feed(piece, &mut |b: &[u8]| d.feed(b, &mut out)).unwrap();
        }
        u.finish().unwrap();
        d.finish(&mut out);
        prop_assert_eq!(&out, &bytes);
        prop_assert_eq!(d.len, bytes.len() as u64);
    }
}
