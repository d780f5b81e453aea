//! The reply without its quotes (`data.reply`), on replies this project did not
//! write: the test data of talon (Mailgun, Apache-2.0), planer (MIT) and
//! quotequail (MIT), kept in `fixtures/replies/` with `SOURCES.md` and their
//! licences. Each case's expectation is what its library's own test says.
//!
//! A case is right (the reply is what the library's test expects), unsure
//! (mailhook says null) or wrong (a cut that differs). The counts are printed
//! (BENCHMARKS.md, "The reply") and held: a change that makes more cases
//! wrong, or fewer right, fails here.

mod common;
use common::*;
use mailhook::providers::Provider;
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
struct Case {
    name: String,
    input: String,
    expected: String,
    kind: String,
    #[serde(default)]
    features: Vec<String>,
    #[serde(default)]
    absent: Option<String>,
    client: String,
    language: String,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Right,
    Unsure,
    Wrong,
    /// The library keeps a forwarded message as the reply; mailhook's reply is what was written above it.
    Forward,
}

/// Lines without trailing white space, and no blank lines at either end.
fn tidy(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim_end).collect();
    lines.join("\n").trim_matches('\n').to_string()
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The text of an html reply: tags, comments, styles and scripts dropped, line-breaking tags as line breaks, the
/// common entities decoded.
fn text_of_html(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let lower = rest[lt..].to_ascii_lowercase();
        let skip = [("<!--", "-->"), ("<style", "</style>"), ("<script", "</script>")]
            .iter()
            .find(|(open, _)| lower.starts_with(open))
            .map(|(_, close)| lower.find(close).map_or(rest.len() - lt, |e| e + close.len()));
        if let Some(n) = skip {
            rest = &rest[lt + n..];
            continue;
        }
        let Some(gt) = rest[lt..].find('>') else { break };
        let tag = rest[lt + 1..lt + gt].to_ascii_lowercase();
        if ["br", "/p", "/div", "p ", "p", "div", "/li", "/tr"].iter().any(|t| tag == *t || tag.starts_with(&format!("{t} "))) {
            out.push('\n');
        }
        rest = &rest[lt + gt + 1..];
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}

fn judge(case: &Case, ours: Option<String>, expected: &str, input: &str) -> Verdict {
    let Some(ours) = ours else { return Verdict::Unsure };
    let has = |f: &str| case.features.iter().any(|x| x == f);
    // A forward: the library keeps the forwarded message (whole, or what it reads as the reply inside it); mailhook's
    // reply is what was written above it.
    let kept_whole = tidy(expected) == tidy(input) && tidy(expected).starts_with(&tidy(&ours)) && tidy(&ours) != tidy(expected);
    if has("forwarded") && (kept_whole || (squeeze(&ours).is_empty() && !squeeze(expected).is_empty())) {
        return Verdict::Forward;
    }
    let squeezed = has("whitespace-insensitive") || has("expected-from-html") || case.input.ends_with(".html");
    let norm = |s: &str| if squeezed { squeeze(s) } else { tidy(s) };
    let (ours, expected) = (norm(&ours), norm(expected));
    let right = match case.kind.as_str() {
        _ if has("contains-only") => ours.contains(&expected) && case.absent.as_deref().is_none_or(|a| !ours.contains(&norm(a))),
        "prefix" => ours.starts_with(&expected),
        // The libraries keep a signature that mailhook leaves out: right when ours is the expectation up to it.
        _ if has("signature-kept") => ours == expected || (!ours.is_empty() && expected.starts_with(&ours)),
        _ => ours == expected,
    };
    if right {
        Verdict::Right
    } else {
        Verdict::Wrong
    }
}

fn ours(case: &Case, input: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(input);
    if case.input.ends_with(".eml") {
        let events = ingest(Provider::EmailRouting, &config(), input).ok()?;
        let reply = events.first()?.get("data")?.get("reply")?;
        return reply.get("text")?.as_str().map(String::from);
    }
    if case.input.ends_with(".html") {
        return mailhook::reply::reply(None, Some(&text)).and_then(|r| r.html).map(|h| text_of_html(&h));
    }
    mailhook::reply::reply(Some(&text), None).and_then(|r| r.text)
}

#[test]
fn replies_of_other_projects_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/replies");
    let cases: Vec<Case> = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut counts = [0usize; 4];
    let mut by: std::collections::BTreeMap<String, [usize; 4]> = Default::default();
    let mut wrong = Vec::new();
    for case in &cases {
        let input = std::fs::read(dir.join(&case.input)).unwrap();
        let expected = String::from_utf8(std::fs::read(dir.join(&case.expected)).unwrap()).unwrap();
        let got = ours(case, &input);
        let verdict = judge(case, got.clone(), &expected, &String::from_utf8_lossy(&input));
        if verdict == Verdict::Unsure && std::env::var_os("REPLY_DEBUG").is_some() {
            println!("unsure: {}", case.name);
        }
        if verdict == Verdict::Wrong {
            wrong.push(case.name.as_str());
            if std::env::var_os("REPLY_DEBUG").is_some() {
                println!("=== {}\n--- ours:\n{}\n--- expected:\n{expected}", case.name, got.unwrap_or_default());
            }
        }
        let i = verdict as usize;
        counts[i] += 1;
        by.entry(format!("client {}", case.client)).or_default()[i] += 1;
        by.entry(format!("language {}", case.language)).or_default()[i] += 1;
        by.entry(format!("input {}", case.input.rsplit('.').next().unwrap_or_default())).or_default()[i] += 1;
    }
    let [right, unsure, bad, forward] = counts;
    println!(
        "replies: {} cases, {right} right, {unsure} unsure (null), {bad} wrong: {wrong:?}, {forward} forwards kept whole by the library",
        cases.len()
    );
    for (k, [r, u, w, f]) in &by {
        println!("  {k}: {r} right, {u} unsure, {w} wrong, {f} forwards");
    }
    assert_eq!(cases.len(), 160);
    assert!(
        right >= RIGHT_AT_LEAST && bad <= WRONG_AT_MOST,
        "{right} right (held: {RIGHT_AT_LEAST}), {bad} wrong (held: {WRONG_AT_MOST}): {wrong:?}"
    );
}

/// The counts this change holds (see the module's comment).
const RIGHT_AT_LEAST: usize = 128;
const WRONG_AT_MOST: usize = 2;
