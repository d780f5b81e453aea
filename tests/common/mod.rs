//! Shared by the native test files: a fixed clock, a test configuration, the
//! provider-side authentication of a request, and a JSON diff that names the
//! fields that differ.
#![allow(dead_code)]

use mailhook::config::Config;
use mailhook::providers::{Inbound, Provider};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[allow(unused_imports)] // each test file uses its own part
pub use mailhook::testkit::{
    as_sent_by, hex_hmac, Sent, ADM_TOOLS_TOKEN, IMPROVMX_IP, LONG_WINDOW, MAILEROO_SECRET, MAILTURA_SECRET, MAIL_PLUS_IP,
};

/// The fixed "now" of every native test: 2025-01-01T00:00:00Z, after every fixture.
pub const NOW: i64 = 1_735_689_600;

/// Every provider configured (see `mailhook::testkit`); `overrides` replace or remove (empty value) values.
pub fn config_with(overrides: &[(&str, &str)]) -> Config {
    mailhook::testkit::config_with(overrides).expect("test configuration is valid")
}

pub fn config() -> Config {
    config_with(&[])
}

/// Runs the pure pipeline on `body` as `provider` would send it.
pub fn ingest(provider: Provider, cfg: &Config, body: &[u8]) -> Result<Vec<Value>, mailhook::error::ApiError> {
    let sent = as_sent_by(provider, body);
    parse_events(mailhook::testkit::ingest_json(provider, cfg, &sent.inbound(body, NOW))?)
}

fn parse_events(events: Vec<Vec<u8>>) -> Result<Vec<Value>, mailhook::error::ApiError> {
    Ok(events.iter().map(|e| serde_json::from_slice(e).expect("events serialise to JSON")).collect())
}

pub fn ingest_with(
    provider: Provider,
    cfg: &Config,
    headers: &[(String, String)],
    client_ip: Option<&str>,
    body: &[u8],
) -> Result<Vec<Value>, mailhook::error::ApiError> {
    run(provider, cfg, headers, client_ip, None, NOW, body)
}

pub fn run(
    provider: Provider,
    cfg: &Config,
    headers: &[(String, String)],
    client_ip: Option<&str>,
    rdns: Option<bool>,
    now: i64,
    body: &[u8],
) -> Result<Vec<Value>, mailhook::error::ApiError> {
    let req = Inbound { rdns, ..Inbound::new(headers, client_ip, body, now) };
    parse_events(mailhook::testkit::ingest_json(provider, cfg, &req)?)
}

pub fn fixtures_dir(provider: Provider) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(provider.name())
}

/// What a source's fixtures are: JSON payloads, or raw mail (`.eml`) for mail the platform hands over.
pub fn input_ext(provider: Provider) -> &'static str {
    if provider.posts() {
        "json"
    } else {
        "eml"
    }
}

/// The names of a source's fixtures (without extension), sorted.
pub fn fixture_names(provider: Provider) -> Vec<String> {
    let dir = fixtures_dir(provider);
    let ext = format!(".{}", input_ext(provider));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|f| f.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(&ext) && !n.ends_with(".expected.json"))
        .map(|n| n.trim_end_matches(&ext).to_string())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixtures in {}", dir.display());
    names
}

pub fn fixture(provider: Provider, name: &str) -> Vec<u8> {
    let path = fixtures_dir(provider).join(format!("{name}.{}", input_ext(provider)));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every path at which `actual` differs from `expected`, with both values.
pub fn diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("$", expected, actual, &mut out);
    out
}

fn walk(path: &str, e: &Value, a: &Value, out: &mut Vec<String>) {
    match (e, a) {
        (Value::Object(eo), Value::Object(ao)) => {
            let keys: std::collections::BTreeSet<&String> = eo.keys().chain(ao.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                match (eo.get(k), ao.get(k)) {
                    (Some(ev), Some(av)) => walk(&p, ev, av, out),
                    (Some(ev), None) => out.push(format!("{p}: expected {ev}, missing")),
                    (None, Some(av)) => out.push(format!("{p}: not expected, got {av}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(ea), Value::Array(aa)) if ea.len() == aa.len() => {
            for (i, (ev, av)) in ea.iter().zip(aa).enumerate() {
                walk(&format!("{path}[{i}]"), ev, av, out);
            }
        }
        _ if e != a => out.push(format!("{path}: expected {e}, got {a}")),
        _ => {}
    }
}

/// The refusals every HMAC-signed provider must make, checked on `fixture`:
/// no signature, a wrong secret, a body changed by one byte, a signature over
/// re-serialised JSON (the Mailtura example's mistake), and a rotated secret
/// or upper-case hex that must still pass.
pub fn check_hmac_provider(provider: Provider, header: &str, secret_var: &str, fixture_name: &str) {
    let body = fixture(provider, fixture_name);
    let cfg = config();
    let secret = mailhook::testkit::test_value(secret_var).unwrap_or_else(|| panic!("testkit configures no {secret_var}"));
    let with_sig = |sig: &str| vec![(header.to_string(), sig.to_string())];
    let status = |headers: &[(String, String)], body: &[u8], cfg: &Config| {
        ingest_with(provider, cfg, headers, None, body).map(|_| 200).unwrap_or_else(|e| e.status())
    };

    assert_eq!(status(&with_sig(&hex_hmac(secret, &body)), &body, &cfg), 200, "the provider's own signature");
    assert_eq!(status(&with_sig(&hex_hmac(secret, &body).to_uppercase()), &body, &cfg), 200, "upper-case hex");
    assert_eq!(status(&[], &body, &cfg), 401, "no signature");
    assert_eq!(status(&with_sig(""), &body, &cfg), 401, "an empty signature");
    assert_eq!(status(&with_sig(&hex_hmac("wrong-secret", &body)), &body, &cfg), 401, "a wrong secret");
    let mut changed = body.clone();
    let i = changed.iter().position(|b| b.is_ascii_digit()).expect("the fixture has a digit");
    changed[i] = if changed[i] == b'9' { b'8' } else { changed[i] + 1 };
    assert_eq!(status(&with_sig(&hex_hmac(secret, &body)), &changed, &cfg), 401, "a body changed by one byte");
    let reserialised = serde_json::to_vec(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
    assert_ne!(reserialised, body);
    assert_eq!(status(&with_sig(&hex_hmac(secret, &reserialised)), &body, &cfg), 401, "a signature of re-serialised JSON");

    let rotated = config_with(&[(secret_var, &format!("new-secret,{secret}"))]);
    assert_eq!(status(&with_sig(&hex_hmac(secret, &body)), &body, &rotated), 200, "the old secret during rotation");
    assert_eq!(status(&with_sig(&hex_hmac("new-secret", &body)), &body, &rotated), 200, "the new secret during rotation");

    let unconfigured = config_with(&[(secret_var, "")]);
    let e = ingest_with(provider, &unconfigured, &with_sig(&hex_hmac(secret, &body)), None, &body).unwrap_err();
    assert_eq!((e.status(), e.code()), (503, "not_configured"));
    assert!(e.to_string().contains(secret_var), "{e}");
}

/// The age window of a signed provider: `at` is the fixture's own time.
pub fn check_age_window(provider: Provider, fixture_name: &str, at: i64) {
    let body = fixture(provider, fixture_name);
    let sent = as_sent_by(provider, &body);
    let cfg = config_with(&[("MAX_EVENT_AGE_SECONDS", "86400"), ("DEDUPE_TTL_SECONDS", "604800")]);
    let at_time =
        |now: i64| run(provider, &cfg, &sent.headers, sent.client_ip, sent.rdns, now, &body).map(|_| "ok").unwrap_or_else(|e| e.code());
    assert_eq!(at_time(at + 86_400), "ok", "a day old, as the providers' retries can be");
    assert_eq!(at_time(at + 86_401), "stale_event", "older than MAX_EVENT_AGE_SECONDS");
    assert_eq!(at_time(at - 300), "ok", "within clock skew");
    assert_eq!(at_time(at - 3600), "stale_event", "an hour in the future");
}
