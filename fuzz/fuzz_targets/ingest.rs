//! Any body, authenticated as the provider chosen by its first byte, through
//! parse + normalise + serialisation: nothing may panic, and every event is valid JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailhook::providers::{raw_payload, Inbound, Provider};
use mailhook::testkit::{as_sent_by, config_with};

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else { return };
    let provider = Provider::ALL[usize::from(*first) % Provider::ALL.len()];
    let Ok(cfg) = config_with(&[]) else { return };
    let sent = as_sent_by(provider, body);
    let req = Inbound { headers: &sent.headers, client_ip: sent.client_ip, body, now: 1_735_689_600, rdns: sent.rdns };
    if let Ok(events) = provider.ingest(&cfg, &req) {
        for e in events {
            let json = e.to_json_with_raw(raw_payload(&cfg, body));
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(&json);
            assert!(parsed.is_ok(), "an event serialised to invalid JSON");
        }
    }
});
