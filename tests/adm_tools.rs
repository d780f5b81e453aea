//! adm.tools, in three groups: configuration, every refusal, and events.

mod common;
use common::*;
use mailhook::dedupe::event_id;
use mailhook::error::ApiError;
use mailhook::providers::Provider;

const P: Provider = Provider::AdmTools;

fn headers_with_token(token: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(t) = token {
        h.push(("x-webhook-token".into(), t.into()));
    }
    h
}

fn refused(cfg: &mailhook::config::Config, headers: &[(String, String)], body: &[u8]) -> ApiError {
    match ingest_with(P, cfg, headers, None, body) {
        Err(e) => e,
        Ok(events) => panic!("accepted, expected a refusal: {events:?}"),
    }
}

// --- configuration ---

#[test]
fn without_a_token_the_route_fails_closed_with_503() {
    let cfg = config_with(&[("ADM_TOOLS_WEBHOOK_TOKEN", "")]);
    let e = refused(&cfg, &headers_with_token(Some("")), &fixture(P, "new"));
    assert_eq!((e.status(), e.code()), (503, "not_configured"));
    assert!(e.to_string().contains("ADM_TOOLS_WEBHOOK_TOKEN"), "{e}");
}

#[test]
fn every_rotated_token_authenticates() {
    let cfg = config_with(&[("ADM_TOOLS_WEBHOOK_TOKEN", "old-token,new-token")]);
    for t in ["old-token", "new-token"] {
        assert!(ingest_with(P, &cfg, &headers_with_token(Some(t)), None, &fixture(P, "new")).is_ok(), "{t}");
    }
}

#[test]
fn include_raw_false_omits_the_payload() {
    let cfg = config_with(&[("INCLUDE_RAW", "false")]);
    let events = ingest(P, &cfg, &fixture(P, "new")).unwrap();
    assert!(events[0]["data"].get("raw").is_none());
}

// --- refusals ---

#[test]
fn a_missing_or_wrong_token_is_401() {
    let cfg = config();
    let body = fixture(P, "new");
    for token in [None, Some(""), Some("wrong"), Some("test-adm-tools-toke"), Some("test-adm-tools-token-and-more")] {
        let e = refused(&cfg, &headers_with_token(token), &body);
        assert_eq!((e.status(), e.code()), (401, "unauthorized"), "{token:?}");
    }
}

#[test]
fn the_token_is_checked_before_the_body() {
    let e = refused(&config(), &headers_with_token(Some("wrong")), b"");
    assert_eq!(e.status(), 401);
}

#[test]
fn empty_invalid_or_foreign_bodies_are_400() {
    let cfg = config();
    let h = headers_with_token(Some(ADM_TOOLS_TOKEN));
    for body in [
        &b""[..],
        b"  \n",
        b"{",
        b"not json",
        b"[1,2]",
        b"{}",
        br#"{"mailbox":"a@b.c"}"#,
        br#"{"event":"new"}"#,
        br#"{"mailbox":1,"event":"new"}"#,
    ] {
        let e = refused(&cfg, &h, body);
        assert_eq!((e.status(), e.code()), (400, "bad_request"), "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn a_body_over_max_body_bytes_is_413() {
    let cfg = config_with(&[("MAX_BODY_BYTES", "64")]);
    let e = refused(&cfg, &headers_with_token(Some(ADM_TOOLS_TOKEN)), &fixture(P, "new"));
    assert_eq!((e.status(), e.code()), (413, "payload_too_large"));
}

// --- events ---

#[test]
fn a_retry_of_the_same_event_has_the_same_id() {
    let cfg = config();
    let a = ingest(P, &cfg, &fixture(P, "new")).unwrap();
    // The same event re-sent with other whitespace and key order.
    let resent = br#"{"event":"new","tstamp":1731402000,"uid":4127,"mailbox":"info@example.com.ua"}"#;
    let b = ingest(P, &cfg, resent).unwrap();
    assert_eq!(a[0]["id"], b[0]["id"]);
    assert_eq!(a[0]["id"], event_id("adm-tools", &["info@example.com.ua", "4127", "new", "1731402000"]));
}

#[test]
fn different_events_of_one_message_have_different_ids() {
    let cfg = config();
    let ids: std::collections::HashSet<String> = ["new", "flags-set", "flags-set-deleted", "unknown-event"]
        .iter()
        .map(|f| ingest(P, &cfg, &fixture(P, f)).unwrap()[0]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 4);
}

#[test]
fn the_raw_payload_is_kept_as_received() {
    let body = fixture(P, "new-unicode");
    let events = ingest(P, &config(), &body).unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(events[0]["data"]["raw"], raw);
}

#[test]
fn the_webhook_id_header_is_kept_in_metadata() {
    let mut h = headers_with_token(Some(ADM_TOOLS_TOKEN));
    h.push(("x-webhook-id".into(), "1842".into()));
    let events = ingest_with(P, &config(), &h, None, &fixture(P, "create")).unwrap();
    assert_eq!(events[0]["data"]["metadata"]["webhook_id"], "1842");
}
