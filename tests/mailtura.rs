//! Mailtura, in three groups: configuration, every refusal, and events.

mod common;
use common::*;
use mailhook::providers::Provider;

const P: Provider = Provider::Mailtura;

// --- configuration and refusals ---

#[test]
fn signatures_over_the_raw_body_only() {
    check_hmac_provider(P, "x-mailtura-signature", "MAILTURA_WEBHOOK_SECRET", "delivered");
}

#[test]
fn the_timestamp_window() {
    check_age_window(P, "bounced", 1_735_552_810); // 2024-12-30T10:00:10Z
}

#[test]
fn a_missing_timestamp_or_type_or_foreign_body_is_400() {
    let cfg = config();
    for body in [&br#"{"id":"e1","type":"email.sent"}"#[..], br#"{"id":"e1","timestamp":"2024-12-30T10:00:00Z"}"#, b"[]", b"{", b""] {
        let e = ingest(P, &cfg, body).unwrap_err();
        assert_eq!(e.code(), "bad_request", "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn a_sha256_prefixed_signature_is_accepted() {
    let body = fixture(P, "opened");
    let h = vec![("x-mailtura-signature".to_string(), format!("sha256={}", hex_hmac(MAILTURA_SECRET, &body)))];
    assert!(ingest_with(P, &config(), &h, None, &body).is_ok());
}

// --- events ---

#[test]
fn a_retry_of_the_same_event_has_the_same_id() {
    let a = ingest(P, &config(), &fixture(P, "delivered")).unwrap();
    let b = ingest(P, &config(), &fixture(P, "event-structure")).unwrap();
    assert_eq!(a[0]["id"], b[0]["id"], "same Mailtura id, same event");
    let c = ingest(P, &config(), &fixture(P, "opened")).unwrap();
    assert_ne!(a[0]["id"], c[0]["id"]);
}

#[test]
fn unknown_types_keep_their_word_and_raw_payload() {
    let e = &ingest(P, &config(), &fixture(P, "unknown-type")).unwrap()[0];
    assert_eq!(e["type"], "email.unknown");
    assert_eq!(e["data"]["provider_event_type"], "email.unsubscribed");
    assert_eq!(e["data"]["raw"]["data"]["listId"], "news");
}
