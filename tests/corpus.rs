//! Real mail, written by others: every message of `fixtures/corpus/` (the test
//! data of CPython's `email` package and of the mail-parser crate; sources and
//! licences in `fixtures/corpus/SOURCES.md`) through Email Routing's pipeline,
//! each either taken, with every attachment's bytes equal to what CPython's
//! `email` reads (`tests/corpus/reference.py`) and its text present, or refused
//! with a reason the README lists. No message may be taken with content missing.
//! `CORPUS_ONLY=NAME cargo test --test corpus -- --nocapture` prints what each side read of one message.

mod common;

use base64::Engine as _;
use common::*;
use mailhook::providers::Provider;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// Where CPython's reading is the wrong one, said why: the message is still taken, and its parts checked by hand here.
const CPYTHON_MISREADS: [(&str, &str); 1] = [(
    "mail-parser/thirdparty-012.eml",
    "its boundary is quoted over two lines (RFC 5322 folding); CPython keeps the line break in it, finds no part and reads the \
     whole body as one text, where mailhook unfolds it and reads the parts",
)];

/// The refusals a corpus message may meet, as the README lists them ("What a sender is told").
const LISTED_REFUSALS: [&str; 3] = ["not an email message", "malformed or oversized MIME", "the message is empty"];

fn reference() -> BTreeMap<String, Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(root.join("tests/corpus/reference.py"))
        .arg(root.join("fixtures/corpus"))
        .output()
        .expect("python3 runs tests/corpus/reference.py (CPython's email package is the independent reading)");
    assert!(out.status.success(), "reference.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("reference.py prints JSON")
}

/// What mailhook made of one message: its attachments' SHA-256, media types and text (normalised, for
/// text attachments), its text and html.
struct Taken {
    attachments: Vec<(String, String, String)>,
    text: bool,
    body: String,
}

fn take(raw: &[u8]) -> Result<Taken, String> {
    let events = ingest(Provider::EmailRouting, &config(), raw).map_err(|e| e.to_string())?;
    let inbound = &events[0]["data"]["inbound"];
    let attachments = inbound["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let bytes = base64::engine::general_purpose::STANDARD.decode(a["content_base64"].as_str().unwrap_or_default()).unwrap();
            (
                hex::encode(Sha256::digest(&bytes)),
                a["content_type"].as_str().unwrap_or_default().to_string(),
                normalised(&String::from_utf8_lossy(&bytes)),
            )
        })
        .collect();
    let present = |v: &Value| v.as_str().is_some_and(|t| !t.trim().is_empty());
    let body = format!("{}\n{}", inbound["text"].as_str().unwrap_or_default(), inbound["html"].as_str().unwrap_or_default());
    Ok(Taken { attachments, text: present(&inbound["text"]) || present(&inbound["html"]), body: normalised(&body) })
}

/// Text compared without its line ends and white space (parsers differ in where a part's last line break belongs).
fn normalised(t: &str) -> String {
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn every_real_message_is_taken_whole_or_refused_for_a_listed_reason() {
    let reference = reference();
    assert!(reference.len() >= 100, "the corpus has {} messages; the issue asks for at least 100", reference.len());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/corpus");
    let (mut taken, mut refused, mut problems) = (0, BTreeMap::<String, String>::new(), Vec::new());
    let only = std::env::var("CORPUS_ONLY").ok();
    for (name, want) in &reference {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let raw = std::fs::read(root.join(name)).unwrap();
        if only.is_some() {
            let events = ingest(Provider::EmailRouting, &config(), &raw);
            if let Ok(e) = &events {
                for a in e[0]["data"]["inbound"]["attachments"].as_array().unwrap() {
                    let bytes = base64::engine::general_purpose::STANDARD.decode(a["content_base64"].as_str().unwrap_or_default()).unwrap();
                    println!(
                        "{name}: {} {} {} bytes, ends {:?}",
                        a["filename"],
                        a["content_type"],
                        bytes.len(),
                        String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(30)..])
                    );
                }
            }
            println!("{name}: python {want}");
        }
        let got = match take(&raw) {
            Ok(t) => t,
            Err(why) => {
                if !LISTED_REFUSALS.iter().any(|r| why.starts_with(r)) {
                    problems.push(format!("{name}: refused for a reason the README does not list: {why}"));
                }
                refused.insert(name.clone(), why);
                continue;
            }
        };
        taken += 1;
        if let Some((_, why)) = CPYTHON_MISREADS.iter().find(|(n, _)| n == name) {
            assert!(got.attachments.len() >= 2, "{name} ({why}): its parts are attachments");
            continue;
        }
        let mine: HashSet<&str> = got.attachments.iter().map(|(sha, _, _)| sha.as_str()).collect();
        for a in want["attachments"].as_array().unwrap() {
            // A text part with a file name but shown inline may be in the event's text rather than its attachments.
            let in_text = a["text"].as_str().is_some_and(|t| got.body.contains(&normalised(t)));
            if !mine.contains(a["sha256"].as_str().unwrap()) && !in_text {
                problems.push(format!("{name}: attachment {} ({}, {} bytes) is missing or differs", a["filename"], a["type"], a["size"]));
            }
        }
        // What CPython reads as attachments or as body text: an attachment of the event must be one of them, byte for byte.
        let parts = want["attachments"].as_array().unwrap().iter().chain(want["texts"].as_array().unwrap());
        let theirs: HashSet<&str> = parts.clone().filter_map(|a| a["sha256"].as_str()).collect();
        // A text part at the very end of a message that never closed it: parsers differ on its last line break.
        let their_texts: HashSet<String> = parts.filter_map(|a| a["text"].as_str()).map(normalised).collect();
        let messages = got.attachments.iter().filter(|(_, t, _)| t.starts_with("message/")).count();
        for (sha, kind, text) in &got.attachments {
            let same_text = kind.starts_with("text/") && their_texts.contains(text);
            if !kind.starts_with("message/") && !theirs.contains(sha.as_str()) && !same_text {
                problems.push(format!("{name}: an attachment ({kind}) that CPython does not read as one"));
            }
        }
        if messages != want["messages"].as_u64().unwrap() as usize {
            problems.push(format!("{name}: {messages} attached messages, CPython reads {}", want["messages"]));
        }
        // Text nested deeper than the first multipart may be an attachment of the event: still there.
        let text_attachment = got.attachments.iter().any(|(_, kind, text)| kind.starts_with("text/") && their_texts.contains(text));
        if want["text"].as_bool().unwrap() && !got.text && !text_attachment {
            problems.push(format!("{name}: CPython reads text, the event has none"));
        }
    }
    println!("corpus: {} messages, {taken} taken, {} refused: {refused:#?}", reference.len(), refused.len());
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}
