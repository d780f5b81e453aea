//! Any body, authenticated as the provider chosen by its first byte, through
//! parse + normalise + serialisation: nothing may panic, and every event is valid JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailhook::providers::Provider;
use mailhook::testkit::{as_sent_by, config_with, ingest_json};

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else { return };
    let provider = Provider::ALL[usize::from(*first) % Provider::ALL.len()];
    let Ok(cfg) = config_with(&[]) else { return };
    let sent = as_sent_by(provider, body);
    let req = sent.inbound(body, 1_735_689_600);
    if let Ok(events) = ingest_json(provider, &cfg, &req) {
        for json in events {
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&json);
            assert!(parsed.is_ok(), "an event serialised to invalid JSON");
        }
    }
});
