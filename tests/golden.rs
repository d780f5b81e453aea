//! Golden events: every `fixtures/<provider>/NAME.json` (or `NAME.eml`, raw
//! mail the platform hands over), authenticated as the provider does it, must
//! produce exactly `NAME.expected.json` (the event, or an array when a payload
//! holds several). Differences are listed by field.
//!
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the expected files;
//! review the diff before committing it.

mod common;
use common::*;
use mailhook::providers::Provider;
use serde_json::Value;

#[test]
fn every_fixture_produces_its_expected_event() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let cfg = config();
    let mut failures = Vec::new();
    let mut checked = 0;
    for provider in Provider::ALL {
        let dir = fixtures_dir(provider);
        for stem in fixture_names(provider) {
            let name = format!("{stem}.{}", input_ext(provider));
            let stem = stem.as_str();
            let body = fixture(provider, stem);
            let mut events = match ingest(provider, &cfg, &body) {
                Ok(e) => e,
                Err(e) => {
                    failures.push(format!("{}/{name}: refused: {e}", provider.name()));
                    continue;
                }
            };
            // Destination filters are checked against each provider's list of types: it must hold every type it emits.
            for e in &events {
                let kind = e["type"].as_str().unwrap_or_default();
                if !provider.event_types().iter().any(|t| t.as_str() == kind) {
                    failures.push(format!("{}/{name}: {kind} is missing from its EVENT_TYPES", provider.name()));
                }
            }
            let actual = if events.len() == 1 { events.remove(0) } else { Value::Array(events) };
            let expected_path = dir.join(format!("{stem}.expected.json"));
            if update {
                let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
                std::fs::write(&expected_path, text).unwrap();
            }
            let expected: Value = match std::fs::read(&expected_path) {
                Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{}: {e}", expected_path.display())),
                Err(_) => {
                    failures.push(format!("{}/{stem}.expected.json is missing", provider.name()));
                    continue;
                }
            };
            for d in diff(&expected, &actual) {
                failures.push(format!("{}/{name}: {d}", provider.name()));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{} fixture(s) differ:\n{}", failures.len(), failures.join("\n"));
    assert!(checked > 0);
}
