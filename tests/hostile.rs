//! Regression tests for what a review found by attacking mailhook (issue 9),
//! where the logic is pure: forged inbound mail reusing a genuine Message-ID,
//! `null` in optional containers, and reverse-DNS names that are not hostnames.
//! The parts that cross the edge are in `tests/integration/security.test.mjs`.

mod common;
use common::*;
use mailhook::providers::Provider;
use serde_json::Value;

fn ids(provider: Provider, body: &Value) -> Vec<String> {
    let events = ingest(provider, &config(), &serde_json::to_vec(body).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", provider.name()));
    events.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

fn fixture_json(provider: Provider, name: &str) -> Value {
    serde_json::from_slice(&fixture(provider, name)).unwrap()
}

/// A forged message with a genuine Message-ID and recipients, but other content,
/// is another event: it cannot make the genuine one a duplicate. The same
/// message sent again (the provider's retry) still is one.
#[test]
fn a_known_message_id_does_not_suppress_genuine_mail() {
    for (provider, name, text_field) in [(Provider::ImprovMx, "sample", "text"), (Provider::MailPlus, "sample", "body")] {
        let genuine = fixture_json(provider, name);
        let mut forged = genuine.clone();
        forged[text_field] = Value::String("Your account is locked; sign in at https://attacker.example".into());
        let genuine_id = ids(provider, &genuine);
        assert_ne!(genuine_id, ids(provider, &forged), "{}: a forgery reusing the Message-ID", provider.name());
        assert_eq!(genuine_id, ids(provider, &genuine.clone()), "{}: a retry", provider.name());
        // A retry whose timestamp differs (it is not part of the message) is still a duplicate.
        let mut later = genuine.clone();
        later["timestamp"] = Value::from(1_735_000_000);
        assert_eq!(genuine_id, ids(provider, &later), "{}: a retry with a new timestamp", provider.name());
    }
    // An attachment changed by one byte is another message.
    let genuine = fixture_json(Provider::ImprovMx, "sample");
    let mut forged = genuine.clone();
    let content = forged["attachments"][0]["content"].as_str().unwrap().to_string();
    forged["attachments"][0]["content"] = Value::String(format!("A{}", &content[1..]));
    assert_ne!(content, forged["attachments"][0]["content"].as_str().unwrap());
    assert_ne!(ids(Provider::ImprovMx, &genuine), ids(Provider::ImprovMx, &forged));
}

/// Found in review: the digest did not tell an inline from an attachment, nor
/// covered content ids, recipient names or the return path.
#[test]
fn every_part_of_a_message_counts_in_its_id() {
    let genuine = fixture_json(Provider::ImprovMx, "sample");
    let id = ids(Provider::ImprovMx, &genuine);
    let mut moved = genuine.clone();
    let part = moved["inlines"].as_array_mut().unwrap().remove(0);
    moved["attachments"].as_array_mut().unwrap().insert(0, part);
    assert_ne!(id, ids(Provider::ImprovMx, &moved), "an inline sent as an attachment");
    for (path, value) in [("/inlines/0/cid", "other-cid"), ("/to/0/name", "Someone Else"), ("/return-path/email", "x@attacker.example")] {
        let mut changed = genuine.clone();
        *changed.pointer_mut(path).unwrap_or_else(|| panic!("{path}")) = Value::String(value.into());
        assert_ne!(id, ids(Provider::ImprovMx, &changed), "{path}");
    }
}

/// Sets every object or array value (at the top level and one level down) to
/// `null` in turn; the provider must still accept the event (a refusal makes
/// the provider give up after its retries: a lost event).
#[test]
fn null_in_an_optional_container_is_absent() {
    let cfg = config();
    let mut checked = 0;
    for provider in Provider::ALL {
        for entry in std::fs::read_dir(fixtures_dir(provider)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let Some(stem) = name.strip_suffix(".json").filter(|s| !s.ends_with(".expected")) else { continue };
            let original = fixture_json(provider, stem);
            let mut paths: Vec<Vec<String>> = Vec::new();
            if let Value::Object(top) = &original {
                for (k, v) in top {
                    if v.is_object() || v.is_array() {
                        paths.push(vec![k.clone()]);
                    }
                    if let Value::Object(inner) = v {
                        for (k2, v2) in inner {
                            if v2.is_object() || v2.is_array() {
                                paths.push(vec![k.clone(), k2.clone()]);
                            }
                        }
                    }
                }
            }
            for path in paths {
                let mut v = original.clone();
                let mut slot = &mut v;
                for k in &path {
                    slot = slot.get_mut(k).unwrap();
                }
                *slot = Value::Null;
                let body = serde_json::to_vec(&v).unwrap();
                if let Err(e) = ingest(provider, &cfg, &body) {
                    panic!("{}/{name}: {} = null was refused: {e}", provider.name(), path.join("."));
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} containers were nulled");
}

#[test]
fn named_null_containers_found_in_review() {
    let cfg = config();
    let mut maileroo = fixture_json(Provider::Maileroo, "delivered");
    maileroo["event_data"] = Value::Null;
    let e = &ingest(Provider::Maileroo, &cfg, &serde_json::to_vec(&maileroo).unwrap()).unwrap()[0];
    assert_eq!(e["type"], "email.delivered");
    assert_eq!(e["data"]["to"], serde_json::json!([]));

    let mut improvmx = fixture_json(Provider::ImprovMx, "sample");
    improvmx["inlines"] = Value::Null;
    improvmx["attachments"] = serde_json::json!([null, {"name": "a.txt", "type": "text/plain", "content": "aGk="}]);
    let e = &ingest(Provider::ImprovMx, &cfg, &serde_json::to_vec(&improvmx).unwrap()).unwrap()[0];
    let attachments = e["data"]["inbound"]["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0]["size"], 2);

    let mut mailtura = fixture_json(Provider::Mailtura, "delivered");
    mailtura["data"] = Value::Null;
    assert!(ingest(Provider::Mailtura, &cfg, &serde_json::to_vec(&mailtura).unwrap()).is_ok());

    // An empty container in any spelling is absent too (found in review: PHP writes an empty map as `[]`).
    for empty in [serde_json::json!([]), serde_json::json!({}), serde_json::json!("")] {
        let mut m = fixture_json(Provider::Maileroo, "delivered");
        m["event_data"] = empty.clone();
        assert!(ingest(Provider::Maileroo, &cfg, &serde_json::to_vec(&m).unwrap()).is_ok(), "event_data: {empty}");
        let mut t = fixture_json(Provider::Mailtura, "delivered");
        t["data"] = empty.clone();
        assert!(ingest(Provider::Mailtura, &cfg, &serde_json::to_vec(&t).unwrap()).is_ok(), "data: {empty}");
        let mut i = fixture_json(Provider::ImprovMx, "sample");
        i["inlines"] = empty.clone();
        assert!(ingest(Provider::ImprovMx, &cfg, &serde_json::to_vec(&i).unwrap()).is_ok(), "inlines: {empty}");
    }
}

#[test]
fn signature_and_token_are_checked_before_the_body() {
    // `authenticate_head` runs with no body: a request without its signature,
    // token or allowed address is refused before anything is buffered.
    let cfg = config();
    let head = |provider: Provider, headers: &[(String, String)], ip: Option<&str>| {
        let req = mailhook::providers::Inbound::new(headers, ip, b"", NOW);
        provider.authenticate_head(&cfg.providers, &req).map_err(|e| e.status())
    };
    let h = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    assert_eq!(head(Provider::Maileroo, &[], None), Err(401));
    assert_eq!(head(Provider::Maileroo, &h("x-maileroo-signature", " "), None), Err(401));
    assert_eq!(head(Provider::Maileroo, &h("x-maileroo-signature", "abcd"), None), Ok(()), "verified once the body is read");
    assert_eq!(head(Provider::Mailtura, &[], None), Err(401));
    assert_eq!(head(Provider::AdmTools, &h("x-webhook-token", "wrong"), None), Err(401));
    assert_eq!(head(Provider::AdmTools, &h("x-webhook-token", ADM_TOOLS_TOKEN), None), Ok(()));
    assert_eq!(head(Provider::ImprovMx, &[], Some("198.51.100.1")), Err(403));
    assert_eq!(head(Provider::ImprovMx, &[], Some(IMPROVMX_IP)), Ok(()));
    assert_eq!(head(Provider::MailPlus, &[], Some("198.51.100.1")), Err(403));
}

/// Found in issue 23's review debts: a large event whose fields other than its large strings (an
/// ImprovMX or Mail-Plus message's headers) passed 16 MiB made a manifest the consumer refused to
/// read, so an event was accepted that could never be delivered. It is refused (400) instead.
#[test]
fn headers_too_large_for_a_manifest_are_refused_not_stored() {
    use mailhook::pipeline::plan;
    let header = "x".repeat(64 * 1024);
    for provider in [Provider::ImprovMx, Provider::MailPlus] {
        let mut body = fixture_json(provider, "sample");
        let headers: serde_json::Map<String, Value> = (0..80).map(|i| (format!("X-Pad-{i}"), Value::String(header.clone()))).collect();
        body[if provider == Provider::ImprovMx { "headers" } else { "header" }] = Value::Object(headers);
        let raw = serde_json::to_vec(&body).unwrap();
        let sent = as_sent_by(provider, &raw);
        let e = plan(&config(), provider, &sent.inbound(&raw, NOW), mailhook::testkit::TEST_NONCE, NOW * 1000).unwrap_err();
        assert_eq!(e.status(), 400, "{}: {e}", provider.name());
        assert!(e.to_string().contains("4194304"), "{e}");
        // Headers within the limit, on a large message, are stored as before.
        body[if provider == Provider::ImprovMx { "headers" } else { "header" }] = serde_json::json!({"X-Pad": header});
        body[if provider == Provider::ImprovMx { "text" } else { "body" }] = Value::String("y".repeat(300 * 1024));
        let raw = serde_json::to_vec(&body).unwrap();
        let sent = as_sent_by(provider, &raw);
        let p = plan(&config(), provider, &sent.inbound(&raw, NOW), mailhook::testkit::TEST_NONCE, NOW * 1000).unwrap();
        assert!(p.events[0].stored.is_some(), "{}: a large event is stored", provider.name());
    }
}

/// Found in the review of attachments by link: a header nested ~124 levels deep parsed at ingest, but the event
/// (two levels deeper) could not be read back, so its links were silently not made. Such nesting is refused.
#[test]
fn payloads_nested_deeper_than_any_provider_sends_are_refused() {
    let mut body = fixture_json(Provider::ImprovMx, "sample");
    let deep = |n: usize| serde_json::from_str::<Value>(&format!("{}{}", "[".repeat(n), "]".repeat(n))).unwrap();
    body["headers"]["X-Deep"] = deep(70);
    let e = ingest(Provider::ImprovMx, &config(), &serde_json::to_vec(&body).unwrap()).unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
    assert!(e.to_string().contains("64 levels"), "{e}");
    body["headers"]["X-Deep"] = deep(20);
    assert!(ingest(Provider::ImprovMx, &config(), &serde_json::to_vec(&body).unwrap()).is_ok(), "a little nesting is fine");
}
