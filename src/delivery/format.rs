//! The body a destination receives, by its `format`: the CloudEvent as it is (structured mode), CloudEvents'
//! HTTP binary mode, or a Slack-compatible message. Decided without I/O over the event's parts (`large`), so
//! a stored event's large strings stay ranges of its body, streamed as before.

use crate::event::Format;
use crate::large::{render, unrender, EventBody};
use crate::links::is_invisible;
use crate::percent::percent_encode;
use serde_json::Value;

/// What goes to the destination: the body's content type, the headers that say more, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shaped {
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: EventBody,
}

/// The provider's payload as a stored event's body object holds it: the request's body, all `len` bytes of it.
pub fn provider_payload(len: u64) -> Shaped {
    Shaped {
        content_type: "application/json".into(),
        headers: Vec::new(),
        body: EventBody { parts: vec![crate::large::Part::Body([0, len])] },
    }
}

/// The event (its parts) as `format` sends it (`Format::Provider`: `provider_payload`). `console` is the console's address (`PUBLIC_URL/console/`), for
/// Slack's link to the event. `nonce` is unpredictable to whoever wrote the event's strings.
pub fn shape(format: Format, event: EventBody, console: Option<&str>, nonce: &str) -> Result<Shaped, String> {
    let json = || "application/json".to_string();
    if format == Format::CloudEvents {
        return Ok(Shaped { content_type: json(), headers: Vec::new(), body: event });
    }
    let (text, refs) = unrender(&event, nonce);
    let mut ce: Value = serde_json::from_slice(&text).map_err(|e| format!("the event is not readable as JSON ({e})"))?;
    let attributes = ce.as_object_mut().ok_or("the event is not a JSON object")?;
    match format {
        Format::CloudEvents => unreachable!("returned above"),
        Format::Provider => Err("the provider's payload is a range of the stored body, not made from the event".into()),
        Format::CloudEventsBinary => {
            let data = attributes.remove("data").unwrap_or(Value::Null);
            let content_type = attributes.remove("datacontenttype").and_then(|v| v.as_str().map(String::from)).unwrap_or_else(json);
            // An attribute too long for a header (a sender's Message-ID as `subject`, say) is left out: only
            // optional ones can be (`id`, `source`, `type` and `specversion` are mailhook's, and short).
            let headers =
                attributes.iter().map(|(k, v)| (format!("ce-{k}"), header_value(v))).filter(|(_, v)| v.len() <= MAX_HEADER_BYTES).collect();
            Ok(Shaped { content_type, headers, body: render(&data, &refs, None) })
        }
        Format::Slack => {
            let message = serde_json::json!({ "text": slack_text(&ce, console) });
            Ok(Shaped { content_type: json(), headers: Vec::new(), body: render(&message, &refs, None) })
        }
    }
}

/// An attribute as an HTTP header value (CloudEvents HTTP binding, 3.1.3.2): a string as it is, other values as
/// their JSON; space, `"`, `%` and whatever is not printable ASCII percent-encoded (UTF-8).
fn header_value(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '!'..='~' if c != '"' && c != '%' => out.push(c),
            _ => out.push_str(&percent_encode(c.encode_utf8(&mut [0; 4]))),
        }
    }
    out
}

/// The longest `ce-*` header value: servers refuse longer header lines (nginx: 8 KB, Node: 16 KB for all).
const MAX_HEADER_BYTES: usize = 4096;

/// The longest field of a Slack message, in characters; the most recipients it names; the longest message.
const MAX_FIELD_CHARS: usize = 300;
const MAX_RECIPIENTS: usize = 10;
const MAX_TEXT_CHARS: usize = 4000;

/// A string from the event, as Slack shows it: `&`, `<` and `>` escaped (so no mention, link or command can be
/// made of it), on one line, without invisible format characters (bidi overrides, zero widths), at most `MAX_FIELD_CHARS`.
fn escaped(s: &str) -> String {
    let flat: String =
        s.chars().filter(|c| !is_invisible(*c)).map(|c| if c.is_control() { ' ' } else { c }).take(MAX_FIELD_CHARS).collect();
    flat.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// What happened, in one Slack message: the type and source, who wrote to whom about what, a bounce's reason,
/// and a link to the event in the console.
fn slack_text(ce: &Value, console: Option<&str>) -> String {
    let s = |v: &Value| v.as_str().map(escaped);
    let data = &ce["data"];
    let mut lines = vec![format!(
        "*{}* from {}",
        s(&ce["type"]).unwrap_or_else(|| "an event".into()),
        s(&data["provider"]).unwrap_or_else(|| "an unknown source".into())
    )];
    let all: Vec<String> = data["to"].as_array().into_iter().flatten().filter_map(|a| s(&a["email"])).collect();
    let mut to: Vec<String> = all.iter().take(MAX_RECIPIENTS).cloned().collect();
    if all.len() > MAX_RECIPIENTS {
        to.push(format!("and {} more", all.len() - MAX_RECIPIENTS));
    }
    match (s(&data["from"]["email"]), to.is_empty()) {
        (Some(from), false) => lines.push(format!("{from} → {}", to.join(", "))),
        (Some(from), true) => lines.push(format!("from {from}")),
        (None, false) => lines.push(format!("to {}", to.join(", "))),
        (None, true) => {
            if let Some(r) = s(&data["recipient"]) {
                lines.push(format!("to {r}"));
            }
        }
    }
    if let Some(subject) = s(&data["subject"]) {
        lines.push(format!("“{subject}”"));
    }
    let bounce = &data["bounce"];
    if bounce.is_object() {
        let kind = s(&bounce["kind"]).map(|k| format!(" ({k})")).unwrap_or_default();
        let why = [s(&bounce["reason"]), s(&bounce["diagnostic_code"])].into_iter().flatten().collect::<Vec<_>>().join(": ");
        lines.push(format!("bounce{kind}{}", if why.is_empty() { String::new() } else { format!(": {why}") }));
    }
    if let Some(url) = s(&data["click"]["url"]) {
        lines.push(format!("clicked {url}"));
    }
    // The sender's part, cut to `MAX_TEXT_CHARS` where no entity (`&amp;`) is split; then the Worker's own link.
    let mut text: String = lines.join("\n").chars().take(MAX_TEXT_CHARS).collect();
    if let Some(amp) = text.rfind('&').filter(|at| !text[*at..].contains(';')) {
        text.truncate(amp);
    }
    if let (Some(console), Some(id)) = (console, ce["id"].as_str()) {
        text.push_str(&format!("\n<{console}#/events/{}|Open in mailhook>", percent_encode(id)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::large::Part;
    use serde_json::json;

    fn event() -> EventBody {
        let ce = json!({
            "specversion": "1.0", "id": "evt_1", "source": "/providers/mailtura", "type": "email.bounced",
            "time": "2026-12-06T01:00:00Z", "subject": "<m 1@example.com>", "datacontenttype": "application/json",
            "data": {"provider": "mailtura", "from": {"email": "a@example.com"}, "to": [{"email": "b@example.com"}],
                     "subject": "<!channel> & <https://evil.example|click>", "bounce": {"kind": "hard", "reason": "no such user", "diagnostic_code": null},
                     "big": "MARK"}
        });
        let text = serde_json::to_string(&ce).unwrap();
        let (a, b) = text.split_once("\"MARK\"").unwrap();
        EventBody { parts: vec![Part::Lit(a.into()), Part::Body([0, 7]), Part::Lit(b.into())] }
    }

    #[test]
    fn binary_mode_has_the_attributes_as_headers_and_data_as_the_body() {
        let s = shape(Format::CloudEventsBinary, event(), None, "n0nce").unwrap();
        assert_eq!(s.content_type, "application/json");
        let h = |k: &str| s.headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(h("ce-id"), Some("evt_1"));
        assert_eq!(h("ce-specversion"), Some("1.0"));
        assert_eq!(h("ce-subject"), Some("<m%201@example.com>"), "a space is percent-encoded");
        assert_eq!(h("ce-datacontenttype"), None);
        assert_eq!(h("ce-data"), None);
        // A Message-ID too long for a header: the optional attribute is left out, the event still goes.
        let mut long: Value = serde_json::from_slice(&event().materialise(b"\"large\"")).unwrap();
        long["subject"] = json!(format!("<{}@x>", "a".repeat(20_000)));
        let s2 = shape(Format::CloudEventsBinary, EventBody { parts: vec![Part::Lit(long.to_string())] }, None, "n").unwrap();
        assert!(s2.headers.iter().all(|(k, v)| k != "ce-subject" && v.len() <= MAX_HEADER_BYTES));
        assert!(s2.headers.iter().any(|(k, _)| k == "ce-id"));
        // The large string is still a range of the body.
        let body = s.body.materialise(b"\"large\"");
        let data: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(data["big"], "large");
        assert_eq!(data["bounce"]["kind"], "hard");
    }

    #[test]
    fn slack_says_what_happened_and_escapes_what_the_sender_wrote() {
        let s = shape(Format::Slack, event(), Some("https://mh.example/console/"), "n0nce").unwrap();
        let v: Value = serde_json::from_slice(&s.body.materialise(b"")).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(text.starts_with("*email.bounced* from mailtura\na@example.com → b@example.com\n"), "{text}");
        assert!(text.contains("“&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;”"), "{text}");
        assert!(text.contains("bounce (hard): no such user"), "{text}");
        assert!(text.ends_with("<https://mh.example/console/#/events/evt_1|Open in mailhook>"), "{text}");
        assert!(!text.contains("<!channel>") && !text.contains("<https://evil"));
        // Many recipients are counted, not listed; a long message is cut without splitting an entity.
        let slack = |amps: usize| {
            let mut many: Value = serde_json::from_slice(&event().materialise(b"\"large\"")).unwrap();
            many["data"]["to"] = (0..400).map(|i| json!({"email": format!("{}{i}@example.com", "&".repeat(amps))})).collect();
            let parts = EventBody { parts: vec![Part::Lit(many.to_string())] };
            let body = shape(Format::Slack, parts, None, "n").unwrap().body.materialise(b"");
            serde_json::from_slice::<Value>(&body).unwrap()["text"].as_str().unwrap().to_string()
        };
        assert!(slack(1).contains("&amp;9@example.com, and 390 more"), "{}", slack(1));
        let long = slack(200);
        assert!(long.chars().count() <= MAX_TEXT_CHARS && !long.contains("more"), "{}", long.len());
        assert!(long.rfind('&').is_none_or(|at| long[at..].starts_with("&amp;")), "no entity split");
        assert_eq!(shape(Format::CloudEvents, event(), None, "n").unwrap().body, event());
        assert!(shape(Format::Provider, event(), None, "n").is_err(), "the provider's payload is not made from the event");
        assert_eq!(provider_payload(42).body.parts, vec![Part::Body([0, 42])]);
    }
}
