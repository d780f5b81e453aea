//! Maileroo, in three groups: configuration, every refusal, and events.

mod common;
use common::*;
use mailhook::providers::Provider;

const P: Provider = Provider::Maileroo;

// --- configuration and refusals ---

#[test]
fn signatures_over_the_raw_body_only() {
    check_hmac_provider(P, "x-maileroo-signature", "MAILEROO_WEBHOOK_SECRET", "delivered");
}

#[test]
fn the_event_time_window() {
    check_age_window(P, "deferred", 1_710_545_557);
}

#[test]
fn a_missing_event_time_or_type_or_foreign_body_is_400() {
    let cfg = config();
    for body in [
        &br#"{"event_type":"delivered"}"#[..],
        br#"{"event_time":1710545542}"#,
        br#"{"event_type":"delivered","event_time":"later"}"#,
        b"null",
        b"",
    ] {
        let e = ingest(P, &cfg, body).unwrap_err();
        assert_eq!(e.code(), "bad_request", "{}", String::from_utf8_lossy(body));
    }
}

// --- events ---

#[test]
fn ids_follow_event_id() {
    let cfg = config();
    let a = ingest(P, &cfg, &fixture(P, "delivered")).unwrap();
    let resent = br#"{"event_type":"delivered","event_time":1710545542,"event_id":"abcd1234efgh5678ijkl9101"}"#;
    assert_eq!(a[0]["id"], ingest(P, &cfg, resent).unwrap()[0]["id"]);
}

#[test]
fn every_shape_of_event_data() {
    let cfg = config();
    let deferred = &ingest(P, &cfg, &fixture(P, "deferred")).unwrap()[0];
    assert_eq!(deferred["data"]["to"][0]["email"], "example@email.com", "to as a string");
    let delivered = &ingest(P, &cfg, &fixture(P, "delivered")).unwrap()[0];
    assert_eq!(delivered["data"]["from"]["email"], "sender@examplemail.com", "from as an array");
    let clicked = &ingest(P, &cfg, &fixture(P, "clicked")).unwrap()[0];
    assert_eq!(clicked["data"]["click"]["url"], "https://example.com/confirm/link");
    assert_eq!(clicked["data"]["client"]["ip"], "103.120.6.123");
    assert_eq!(clicked["data"]["metadata"]["message_reference_id"], "0ed7094bf9509ac3145c4aa97182be44");
}
