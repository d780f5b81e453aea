//! ImprovMX, in three groups: configuration, every refusal, and events.

mod common;
use base64::Engine as _;
use common::*;
use mailhook::providers::Provider;

const P: Provider = Provider::ImprovMx;

fn from_ip(cfg: &mailhook::config::Config, ip: Option<&str>, body: &[u8]) -> Result<Vec<serde_json::Value>, mailhook::error::ApiError> {
    ingest_with(P, cfg, &[("x-forwarded-for".into(), IMPROVMX_IP.into())], ip, body)
}

// --- configuration ---

#[test]
fn the_documented_address_is_the_default() {
    let cfg = config();
    assert!(from_ip(&cfg, Some("15.237.103.194"), &fixture(P, "sample")).is_ok());
}

#[test]
fn cidr_ranges_and_ipv6_can_be_allowed() {
    let cfg = config_with(&[("IMPROVMX_ALLOWED_IPS", "198.51.100.0/24, 2001:db8:1::/48")]);
    for ip in ["198.51.100.77", "2001:db8:1::5"] {
        assert!(from_ip(&cfg, Some(ip), &fixture(P, "sample")).is_ok(), "{ip}");
    }
    assert_eq!(from_ip(&cfg, Some("15.237.103.194"), &fixture(P, "sample")).unwrap_err().status(), 403);
}

// --- refusals ---

#[test]
fn any_other_source_is_403_and_x_forwarded_for_is_ignored() {
    let cfg = config();
    for ip in [Some("15.237.103.195"), Some("127.0.0.1"), Some("::1"), Some("garbage"), None] {
        let e = from_ip(&cfg, ip, &fixture(P, "sample")).unwrap_err();
        assert_eq!((e.status(), e.code()), (403, "forbidden"), "{ip:?}");
    }
}

#[test]
fn a_body_that_is_not_an_improvmx_email_is_400() {
    for body in [&b"{}"[..], b"[]", br#"{"subject":"x"}"#, br#"{"headers":"nope"}"#, b"{"] {
        let e = from_ip(&config(), Some(IMPROVMX_IP), body).unwrap_err();
        assert_eq!(e.code(), "bad_request", "{}", String::from_utf8_lossy(body));
    }
}

// --- events ---

#[test]
fn a_several_megabyte_attachment_is_kept_byte_for_byte() {
    let bytes: Vec<u8> = (0..6 * 1024 * 1024 + 7).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let body = serde_json::to_vec(&serde_json::json!({
        "headers": {"Delivered-To": "big@example.org"},
        "to": [{"name": null, "email": "big@example.org"}],
        "from": {"name": "Big Sender", "email": "big@example.net"},
        "subject": "A large attachment", "message-id": "<big-1@example.net>", "timestamp": 1_700_000_000,
        "attachments": [{"type": "application/octet-stream", "name": "blob.bin", "content": b64, "encoding": "binary"}],
    }))
    .unwrap();
    let e = &from_ip(&config(), Some(IMPROVMX_IP), &body).unwrap()[0];
    let att = &e["data"]["inbound"]["attachments"][0];
    assert_eq!(att["size"], bytes.len() as u64);
    assert_eq!(att["inline"], false);
    let decoded = base64::engine::general_purpose::STANDARD.decode(att["content_base64"].as_str().unwrap()).unwrap();
    assert!(decoded == bytes, "attachment bytes changed");
}

#[test]
fn the_same_message_for_two_aliases_is_two_events_and_a_retry_is_one() {
    let cfg = config();
    let sample = fixture(P, "sample");
    let a = from_ip(&cfg, Some(IMPROVMX_IP), &sample).unwrap();
    let again = from_ip(&cfg, Some(IMPROVMX_IP), &sample).unwrap();
    assert_eq!(a[0]["id"], again[0]["id"]);
    let mut other: serde_json::Value = serde_json::from_slice(&sample).unwrap();
    other["headers"]["Delivered-To"] = "other-alias@example.org".into();
    let b = from_ip(&cfg, Some(IMPROVMX_IP), &serde_json::to_vec(&other).unwrap()).unwrap();
    assert_ne!(a[0]["id"], b[0]["id"]);
}

#[test]
fn spf_and_dkim_come_from_the_headers() {
    let e = &from_ip(&config(), Some(IMPROVMX_IP), &fixture(P, "sample")).unwrap()[0];
    assert_eq!(e["data"]["inbound"]["auth"], serde_json::json!({"spf": "pass", "dkim": "none", "dmarc": null}));
    assert_eq!(e["data"]["inbound"]["sender_ip"], "192.0.2.25");
    assert_eq!(e["data"]["inbound"]["headers"]["Received-SPF"].as_array().map(Vec::len), Some(1), "arrays stay arrays");
}

/// Attachments by link serve ranges of a stored body: mail with attachments for a destination that takes links is
/// stored in R2 even when it is small, and the rest is not.
#[test]
fn mail_with_attachments_for_a_destination_taking_links_is_stored() {
    use mailhook::pipeline::plan;
    let desk = r#"[{"name": "desk", "url": "https://desk.example/", "attachments": "link", "filter": {"providers": ["improvmx"]}}]"#;
    let key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let vars = [
        ("DESTINATIONS", desk),
        ("DESTINATION_DESK_SIGNING_SECRET", key),
        ("PUBLIC_URL", "https://mh.example"),
        ("LINK_SIGNING_KEY", "a-link-signing-key-of-32-characters-at-least"),
    ];
    let stored = |cfg: &mailhook::config::Config, body: &[u8]| {
        let sent = as_sent_by(Provider::ImprovMx, body);
        plan(cfg, Provider::ImprovMx, &sent.inbound(body, NOW), mailhook::testkit::TEST_NONCE, NOW * 1000).unwrap().events[0]
            .stored
            .is_some()
    };
    let sample = fixture(Provider::ImprovMx, "sample");
    assert!(stored(&config_with(&vars), &sample), "small, with attachments, for links: stored");
    assert!(!stored(&config(), &sample), "the same for inline destinations: inline");
    let mut bare: serde_json::Value = serde_json::from_slice(&sample).unwrap();
    bare["attachments"] = serde_json::Value::Array(Vec::new());
    bare["inlines"] = serde_json::Value::Array(Vec::new());
    assert!(!stored(&config_with(&vars), &serde_json::to_vec(&bare).unwrap()), "no attachments: inline");
}
