//! Shared by the native test files: a fixed clock, a test configuration, the
//! provider-side authentication of a request, and a JSON diff that names the
//! fields that differ.
#![allow(dead_code)]

use mailhook::config::Config;
use mailhook::providers::{Inbound, Provider};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The fixed "now" of every native test: 2024-11-12T12:00:00Z.
pub const NOW: i64 = 1_731_412_800;

pub const ADM_TOOLS_TOKEN: &str = "test-adm-tools-token";

/// The variables every test starts from; `overrides` replace or remove (empty value) them.
pub fn config_with(overrides: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = [("ADM_TOOLS_WEBHOOK_TOKEN", ADM_TOOLS_TOKEN)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in overrides {
        vars.insert(k.to_string(), v.to_string());
    }
    Config::from_lookup(|k| vars.get(k).cloned()).expect("test configuration is valid")
}

pub fn config() -> Config {
    config_with(&[])
}

/// The headers `provider` sends with `body`, authenticated as it does.
pub fn provider_headers(provider: Provider, _body: &[u8]) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_string(), "application/json".to_string())];
    match provider {
        Provider::AdmTools => {
            h.push(("user-agent".into(), "adm.tools mail webhook".into()));
            h.push(("x-webhook-token".into(), ADM_TOOLS_TOKEN.into()));
        }
    }
    h
}

/// Runs the pure pipeline on `body` as `provider` would send it.
pub fn ingest(provider: Provider, cfg: &Config, body: &[u8]) -> Result<Vec<Value>, mailhook::error::ApiError> {
    let headers = provider_headers(provider, body);
    ingest_with(provider, cfg, &headers, None, body)
}

pub fn ingest_with(
    provider: Provider,
    cfg: &Config,
    headers: &[(String, String)],
    client_ip: Option<&str>,
    body: &[u8],
) -> Result<Vec<Value>, mailhook::error::ApiError> {
    let req = Inbound { headers, client_ip, body, now: NOW };
    let events = provider.ingest(cfg, &req)?;
    Ok(events.iter().map(|e| serde_json::from_str(&e.to_json()).expect("events serialise to JSON")).collect())
}

pub fn fixtures_dir(provider: Provider) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(provider.name())
}

pub fn fixture(provider: Provider, name: &str) -> Vec<u8> {
    let path = fixtures_dir(provider).join(format!("{name}.json"));
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
