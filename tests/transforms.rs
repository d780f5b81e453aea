//! The README's transform examples compile and do what it says, on the fixtures' canonical events.

use mailhook::delivery::{Transform, TransformOutput};
use serde_json::Value;

/// Every `transform = …` of the README (a TOML literal string, one line or `'''` lines).
fn readme_programs() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut out = Vec::new();
    let mut name = String::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if let Some(n) = line.strip_prefix("name = \"") {
            name = n.trim_end_matches('"').to_string();
        }
        let Some(rest) = line.strip_prefix("transform = ") else { continue };
        let program = if rest == "'''" {
            lines.by_ref().take_while(|l| *l != "'''").collect::<Vec<_>>().join("\n")
        } else {
            rest.trim_matches('\'').to_string()
        };
        out.push((name.clone(), program));
    }
    out
}

fn event(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{path}.expected.json", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn body(out: TransformOutput) -> Value {
    match out {
        TransformOutput::Body(b) => serde_json::from_str(&b).unwrap(),
        TransformOutput::Filtered => Value::Null,
    }
}

#[test]
fn the_readme_examples_do_what_it_says() {
    let programs: std::collections::HashMap<String, Transform> =
        readme_programs().into_iter().map(|(n, p)| (n.clone(), Transform::compile(&p).unwrap_or_else(|e| panic!("{n}: {e}")))).collect();
    assert_eq!(programs.len(), 3, "{:?}", programs.keys());
    let run = |name: &str, fixture: &str| body(programs[name].apply(&event(fixture), 1 << 20).unwrap());
    assert_eq!(
        run("bounce-alerts", "mailtura/bounced"),
        serde_json::json!({"text": "Bounce for user@example.com: Mailbox does not exist"})
    );
    assert_eq!(run("bounce-alerts", "mailtura/delivered"), Value::Null, "only bounces");
    let crm = run("crm", "mailtura/bounced");
    assert_eq!(crm["contact"], "user@example.com");
    assert_eq!(crm["event"], "bounced");
    assert_eq!(crm["provider"], "mailtura");
    for source in ["improvmx", "mail-plus", "email-routing"] {
        let reply = run("replies", &format!("{source}/reply"));
        assert!(reply["thread"].is_string() && reply["in_reply_to"].is_string(), "{source}: {reply}");
        assert!(reply["text"].as_str().is_some_and(|t| !t.is_empty() && !t.contains("wrote:")), "{source}: {reply}");
    }
    assert_eq!(run("replies", "improvmx/sample"), Value::Null, "not a reply");
}

#[test]
fn slack_text_is_escaped_by_the_example() {
    let (_, program) = readme_programs().into_iter().find(|(n, _)| n == "bounce-alerts").unwrap();
    let t = Transform::compile(&program).unwrap();
    let mut e: Value = serde_json::from_slice(&event("mailtura/bounced")).unwrap();
    e["data"]["bounce"]["reason"] = "<!channel> & <https://evil.example|click>".into();
    let out = body(t.apply(e.to_string().as_bytes(), 1 << 20).unwrap());
    assert_eq!(out["text"], "Bounce for user@example.com: &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;");
}
