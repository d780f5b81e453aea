//! What the core reads of each message of fixtures/corpus/, as Email Routing's pipeline takes it
//! natively (tests/corpus.rs checks that against CPython's `email`): for each message, its event id and
//! the SHA-256 of its text, its html and each attachment, or the reason it is refused. The integration
//! test tests/integration/corpus.test.mjs hands every message to the built Worker's `email` handler and
//! compares what reaches the origin with this.
//!
//! `cargo run --example corpus -- fixtures/corpus` prints JSON, keyed by path below the folder.

use base64::Engine as _;
use mailhook::providers::Provider;
use mailhook::testkit::{as_sent_by, config_with, ingest_json};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn messages(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            messages(&path, out);
        } else if path.extension().is_some_and(|e| e == "eml") {
            out.push(path);
        }
    }
}

/// The core's reading of one message.
fn reading(raw: &[u8]) -> Value {
    let Ok(cfg) = config_with(&[]) else { return json!({"error": "the test configuration is invalid"}) };
    let sent = as_sent_by(Provider::EmailRouting, raw);
    let events = match ingest_json(Provider::EmailRouting, &cfg, &sent.inbound(raw, 1_700_000_000)) {
        Ok(events) => events,
        Err(e) => return json!({"refused": e.to_string()}),
    };
    let Some(event) = events.first().and_then(|e| serde_json::from_slice::<Value>(e).ok()) else {
        return json!({"error": "no event"});
    };
    let inbound = &event["data"]["inbound"];
    let text = |field: &str| inbound[field].as_str().map(|t| sha(t.as_bytes()));
    let mut attachments: Vec<String> = inbound["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let bytes =
                base64::engine::general_purpose::STANDARD.decode(a["content_base64"].as_str().unwrap_or_default()).unwrap_or_default();
            sha(&bytes)
        })
        .collect();
    attachments.sort();
    json!({"id": event["id"], "text": text("text"), "html": text("html"), "attachments": attachments})
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fixtures/corpus".into()));
    let mut paths = Vec::new();
    messages(&dir, &mut paths);
    paths.sort();
    let mut out = Map::new();
    for path in paths {
        let name = path.strip_prefix(&dir).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        let value = match std::fs::read(&path) {
            Ok(raw) => reading(&raw),
            Err(e) => json!({"error": e.to_string()}),
        };
        out.insert(name, value);
    }
    println!("{}", serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default());
}
