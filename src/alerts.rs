//! Alerts: what reaches a person when an event dies or a destination goes
//! down. Items wait in the event log's outbox (D1) and a cron sends what has
//! gathered once a minute as one message, so a hundred dead letters in a
//! minute make one message, not a hundred. The message is Slack-compatible
//! (`text`) and carries the items for a program (`mailhook`).
//!
//! Pure: what an item is, and the message for a batch of them.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How many items a message lists; the rest are counted.
pub const LISTED: usize = 20;
/// How many waiting items one flush takes; more wait for the next minute.
pub const PER_FLUSH: usize = 1000;

/// One thing to tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    /// An event dead-lettered at a destination.
    Dead { id: String, provider: String, r#type: String, destination: String, error: Option<String> },
    /// A destination's circuit opened after `failures` consecutive failures.
    CircuitOpen { destination: String, failures: u32 },
    /// A destination's circuit closed again.
    CircuitClosed { destination: String },
}

/// The message for `items` (oldest first), with `more` items beyond them not
/// taken this time. `console` is the console's URL (`PUBLIC_URL` + `/console/`),
/// for links to each event.
pub fn message(items: &[Item], more: usize, console: Option<&str>) -> Value {
    let link = |id: &str| console.map(|c| format!("{c}#/events/{}", crate::percent::percent_encode(id)));
    let dead: Vec<&Item> = items.iter().filter(|i| matches!(i, Item::Dead { .. })).collect();
    let mut lines = Vec::new();
    if !dead.is_empty() {
        let n = dead.len();
        lines.push(format!("mailhook: {n} dead letter{} (an event that a destination will not get)", if n == 1 { "" } else { "s" }));
        for item in dead.iter().take(LISTED) {
            if let Item::Dead { id, provider, r#type, destination, error } = item {
                let error = error.as_deref().map(|e| format!(": {}", slack(&one_line(e)))).unwrap_or_default();
                let at = link(id).map(|u| format!(" <{u}|{}>", slack(id))).unwrap_or_else(|| format!(" {}", slack(id)));
                lines.push(format!("• {} {} to {}{at}{error}", slack(provider), slack(r#type), slack(destination)));
            }
        }
        if n > LISTED {
            lines.push(format!("… and {} more", n - LISTED));
        }
    }
    // One line per destination: its last state in the batch (several consumers may each see a change).
    let mut circuits: Vec<(&str, String)> = Vec::new();
    for item in items {
        let (destination, line) = match item {
            Item::CircuitOpen { destination, failures } => (
                destination,
                format!(
                    "mailhook: destination {} is down ({failures} failures in a row); its deliveries are held and probed",
                    slack(destination)
                ),
            ),
            Item::CircuitClosed { destination } => {
                (destination, format!("mailhook: destination {} is back; held deliveries go out", slack(destination)))
            }
            Item::Dead { .. } => continue,
        };
        circuits.retain(|(d, _)| *d != destination.as_str());
        circuits.push((destination, line));
    }
    lines.extend(circuits.into_iter().map(|(_, line)| line));
    if more > 0 {
        lines.push(format!("({more} more alerts follow in the next message)"));
    }
    let listed: Vec<Value> = items
        .iter()
        .map(|i| {
            let mut v = serde_json::to_value(i).unwrap_or(Value::Null);
            if let (Some(url), Value::Object(o)) = (link_of(i, &link), &mut v) {
                o.insert("url".into(), Value::String(url));
            }
            v
        })
        .collect();
    json!({
        "text": lines.join("\n"),
        "mailhook": {"dead": dead.len(), "items": listed, "more": more},
    })
}

/// The console link of a dead event, when there is a console to link to.
fn link_of(item: &Item, link: &impl Fn(&str) -> Option<String>) -> Option<String> {
    match item {
        Item::Dead { id, .. } => link(id),
        _ => None,
    }
}

/// Text as Slack shows it: `&`, `<` and `>` escaped, so that no value becomes a mention or a link.
fn slack(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A value on one line, at most 300 characters (errors can be long, and are an origin's words).
fn one_line(s: &str) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match flat.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(i: usize) -> Item {
        Item::Dead {
            id: format!("evt_{i:04}"),
            provider: "maileroo".into(),
            r#type: "email.delivered".into(),
            destination: "crm".into(),
            error: Some("status 500\nfrom origin".into()),
        }
    }

    #[test]
    fn a_burst_is_one_message_listing_some_and_counting_all() {
        let items: Vec<Item> = (0..100).map(dead).collect();
        let m = message(&items, 0, Some("https://hook.example/console/"));
        let text = m["text"].as_str().unwrap();
        assert!(text.starts_with("mailhook: 100 dead letters (an event that a destination will not get)\n"), "{text}");
        assert_eq!(text.matches('•').count(), LISTED);
        assert!(text.contains("… and 80 more"));
        assert!(text.contains("<https://hook.example/console/#/events/evt_0000|evt_0000>: status 500 from origin"), "{text}");
        assert_eq!(m["mailhook"]["dead"], 100);
        assert_eq!(m["mailhook"]["items"].as_array().unwrap().len(), 100);
        assert_eq!(m["mailhook"]["items"][0]["url"], "https://hook.example/console/#/events/evt_0000");
    }

    #[test]
    fn circuits_and_no_console() {
        let m = message(&[Item::CircuitOpen { destination: "crm".into(), failures: 10 }, dead(1)], 5, None);
        let text = m["text"].as_str().unwrap();
        assert!(text.contains("1 dead letter (an event that a destination will not get)\n• maileroo email.delivered to crm evt_0001: status 500 from origin"), "{text}");
        assert!(text.contains("destination crm is down (10 failures in a row)"));
        assert!(text.contains("5 more alerts follow"));
        assert!(m["mailhook"]["items"][1].get("url").is_none());
    }

    #[test]
    fn one_line_per_destination_and_nothing_becomes_a_link() {
        let open = |n| Item::CircuitOpen { destination: "crm".into(), failures: n };
        let m = message(&[open(10), open(11), Item::CircuitClosed { destination: "crm".into() }, open(12)], 0, None);
        let text = m["text"].as_str().unwrap();
        assert_eq!(text.matches("destination crm").count(), 1, "{text}");
        assert!(text.contains("(12 failures in a row)"));
        let evil = Item::Dead {
            id: "e".into(),
            provider: "p".into(),
            r#type: "t".into(),
            destination: "d".into(),
            error: Some("<!channel> & <https://x|y>".into()),
        };
        let text = message(&[evil], 0, None)["text"].as_str().unwrap().to_string();
        assert!(text.contains("&lt;!channel&gt; &amp; &lt;https://x|y&gt;") && !text.contains("<!channel>"), "{text}");
    }

    #[test]
    fn long_errors_are_cut_and_ids_escaped() {
        let long = Item::Dead {
            id: "evt_a b".into(),
            provider: "p".into(),
            r#type: "t".into(),
            destination: "d".into(),
            error: Some("x".repeat(1000)),
        };
        let m = message(&[long], 0, Some("c/"));
        let text = m["text"].as_str().unwrap();
        assert!(text.contains("c/#/events/evt_a%20b"));
        assert!(text.len() < 450, "{}", text.len());
    }
}
