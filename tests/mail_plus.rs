//! Mail-Plus, in three groups: configuration, every refusal, and events.
//! The reverse-DNS lookups themselves are the edge's (see the integration
//! tests with a DoH server); here the verdict is an input.

mod common;
use common::*;
use mailhook::config::Config;
use mailhook::providers::{Inbound, Provider};

const P: Provider = Provider::MailPlus;

fn check(cfg: &Config, ip: Option<&str>, rdns: Option<bool>) -> Result<(), &'static str> {
    let body = fixture(P, "sample");
    run(P, cfg, &[], ip, rdns, NOW, &body).map(|_| ()).map_err(|e| e.code())
}

fn mode(m: &str) -> Config {
    config_with(&[("MAIL_PLUS_VERIFY", m)])
}

// --- configuration ---

#[test]
fn each_mode_needs_its_settings() {
    let missing = |pairs: &[(&str, &str)]| P.missing_config(&config_with(pairs).providers).is_some();
    assert!(missing(&[("MAIL_PLUS_VERIFY", "ip"), ("MAIL_PLUS_ALLOWED_IPS", "")]));
    assert!(missing(&[("MAIL_PLUS_VERIFY", "rdns"), ("MAIL_PLUS_RDNS_SUFFIX", "")]));
    assert!(missing(&[("MAIL_PLUS_VERIFY", "ip+rdns"), ("MAIL_PLUS_ALLOWED_IPS", "")]));
    assert!(!missing(&[("MAIL_PLUS_VERIFY", "ip|rdns"), ("MAIL_PLUS_ALLOWED_IPS", "")]));
    assert!(missing(&[("MAIL_PLUS_VERIFY", "ip|rdns"), ("MAIL_PLUS_ALLOWED_IPS", ""), ("MAIL_PLUS_RDNS_SUFFIX", "")]));
    let e = run(
        P,
        &config_with(&[("MAIL_PLUS_VERIFY", "ip"), ("MAIL_PLUS_ALLOWED_IPS", "")]),
        &[],
        Some(MAIL_PLUS_IP),
        None,
        NOW,
        &fixture(P, "sample"),
    )
    .unwrap_err();
    assert_eq!((e.status(), e.code()), (503, "not_configured"));
}

#[test]
fn the_edge_is_asked_for_reverse_dns_only_when_the_mode_needs_it() {
    let ask = |cfg: &Config, ip: &str| {
        let req = Inbound::new(&[], Some(ip), b"", NOW);
        Provider::MailPlus.rdns_check(&cfg.providers, &req).map(|c| c.ip.to_string())
    };
    assert_eq!(ask(&mode("ip"), "203.0.113.9"), None);
    assert_eq!(ask(&mode("rdns"), "203.0.113.9").as_deref(), Some("203.0.113.9"));
    assert_eq!(ask(&mode("ip+rdns"), MAIL_PLUS_IP).as_deref(), Some(MAIL_PLUS_IP));
    // Found in review: an address that is not listed is refused in ip+rdns whatever its DNS says: no lookup.
    assert_eq!(ask(&mode("ip+rdns"), "198.51.100.7"), None);
    assert_eq!(ask(&mode("ip|rdns"), MAIL_PLUS_IP), None, "the allow-list already passed");
    assert_eq!(ask(&mode("ip|rdns"), "203.0.113.9").as_deref(), Some("203.0.113.9"));
    assert_eq!(ask(&mode("rdns"), "not-an-ip"), None);
}

// --- refusals ---

#[test]
fn every_mode_refuses_what_it_should() {
    let outside = Some("203.0.113.9");
    let inside = Some(MAIL_PLUS_IP);
    assert_eq!(check(&mode("ip"), inside, None), Ok(()));
    assert_eq!(check(&mode("ip"), outside, None), Err("forbidden"));
    assert_eq!(check(&mode("ip"), None, None), Err("forbidden"));
    assert_eq!(check(&mode("rdns"), outside, Some(true)), Ok(()));
    assert_eq!(check(&mode("rdns"), inside, Some(false)), Err("forbidden"));
    assert_eq!(check(&mode("rdns"), inside, None), Err("forbidden"));
    assert_eq!(check(&mode("ip+rdns"), inside, Some(true)), Ok(()));
    assert_eq!(check(&mode("ip+rdns"), inside, Some(false)), Err("forbidden"));
    assert_eq!(check(&mode("ip+rdns"), outside, Some(true)), Err("forbidden"));
    assert_eq!(check(&mode("ip|rdns"), inside, None), Ok(()));
    assert_eq!(check(&mode("ip|rdns"), outside, Some(true)), Ok(()));
    assert_eq!(check(&mode("ip|rdns"), outside, Some(false)), Err("forbidden"));
}

#[test]
fn a_body_with_none_of_the_fields_is_400() {
    for body in [&b"{}"[..], br#"{"unrelated":1}"#, b"[]", b"{", br#"{"subject":5}"#] {
        let e = run(P, &config(), &[], Some(MAIL_PLUS_IP), Some(true), NOW, body).unwrap_err();
        assert_eq!(e.code(), "bad_request", "{}", String::from_utf8_lossy(body));
    }
}

// --- events ---

#[test]
fn any_subset_of_fields_is_an_event() {
    let cfg = config();
    for name in ["sample", "header-only", "header-block", "minimal", "unicode"] {
        let e = &ingest(P, &cfg, &fixture(P, name)).unwrap()[0];
        assert_eq!(e["type"], "email.received", "{name}");
    }
}

#[test]
fn the_same_message_is_the_same_event() {
    let cfg = config();
    let a = ingest(P, &cfg, &fixture(P, "sample")).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&fixture(P, "sample")).unwrap();
    v["spam_score"] = 0.2.into();
    let b = ingest(P, &cfg, &serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(a[0]["id"], b[0]["id"], "identity is the Message-ID and the recipients");
}
