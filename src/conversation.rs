//! Where a received message belongs in an application: its conversation
//! (`data.thread`, from Message-ID, In-Reply-To and References) and its
//! mailbox tag (`data.recipient_tag`, `support+ticket-4121@` → `ticket-4121`).

use crate::event::{message_id, Thread};
use crate::values::ConfigError;
use serde_json::Value;
use std::collections::BTreeMap;

/// The most References kept: the first (the conversation's root) and the
/// latest, as RFC 5322 §3.6.4 suggests a client trims a long list.
pub const MAX_REFERENCES: usize = 100;

/// The longest msg-id read, brackets included: a line's 998 octets (RFC 5322 §2.1.1). So a thread id
/// fits in a queue message's envelope whatever the message says.
pub const MAX_MSG_ID_LEN: usize = 998;

/// `RECIPIENT_TAG_SEPARATOR`'s default.
pub const DEFAULT_TAG_SEPARATORS: &str = "+";

/// The characters `RECIPIENT_TAG_SEPARATOR` may hold (each one a separator, as
/// Postfix's `recipient_delimiter`).
const TAG_SEPARATORS: &str = "+-=_";

/// The message's thread, from its header fields (name in any case; a
/// repeated field's values in order). `None` for a message with none of
/// Message-ID, In-Reply-To and References that can be read.
pub fn thread(headers: &BTreeMap<String, Value>, own_id: Option<&str>) -> Option<Thread> {
    let in_reply_to = msg_ids(&field(headers, "In-Reply-To")).into_iter().next();
    let mut references = msg_ids(&field(headers, "References"));
    if references.len() > MAX_REFERENCES {
        references.drain(1..references.len() - (MAX_REFERENCES - 1));
    }
    let id = references.first().or(in_reply_to.as_ref()).cloned().or_else(|| own_id.and_then(readable))?;
    Some(Thread { id, in_reply_to, references })
}

/// Every value of the field `name`, joined by a space.
fn field(headers: &BTreeMap<String, Value>, name: &str) -> String {
    let values = headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).flat_map(|(_, v)| match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    });
    values.collect::<Vec<_>>().join(" ")
}

/// The msg-ids of a field, each as `<left@right>`: every `<…>` outside
/// comments and quoted strings (the obsolete forms put a phrase or a comment
/// beside them, RFC 5322 §4.5.4), white space inside one removed (a folded
/// id), one longer than `MAX_MSG_ID_LEN` left out. A field with no `<…>` at all, as some clients send it, is read as
/// ids separated by white space or commas, each holding an `@`.
pub fn msg_ids(field: &str) -> Vec<String> {
    let (mut ids, mut depth, mut quoted, mut escaped) = (Vec::new(), 0u32, false, false);
    let mut current: Option<String> = None;
    for c in field.chars() {
        if escaped {
            escaped = false;
            if let Some(id) = current.as_mut() {
                id.push(c);
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => escaped = true,
            '"' if depth == 0 && current.is_none() => quoted = !quoted,
            '(' if !quoted && current.is_none() => depth += 1,
            ')' if !quoted && current.is_none() && depth > 0 => depth -= 1,
            '<' if !quoted && depth == 0 => current = Some(String::new()),
            '>' if current.is_some() => ids.extend(current.take().and_then(|id| readable(&id))),
            c if c.is_whitespace() => {}
            c => {
                if let Some(id) = current.as_mut() {
                    id.push(c);
                }
            }
        }
    }
    if ids.is_empty() && !field.contains('<') {
        ids = field
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| t.contains('@') && !t.contains(['<', '>']))
            .filter_map(readable)
            .collect();
    }
    ids
}

/// A msg-id as `<left@right>`, unless it is longer than `MAX_MSG_ID_LEN` or holds a control character
/// (which no id may, RFC 5322 §3.6.4 and RFC 6532; each would take 6 bytes of JSON in an envelope).
fn readable(id: &str) -> Option<String> {
    message_id(id).filter(|id| id.len() <= MAX_MSG_ID_LEN && !id.chars().any(char::is_control))
}

/// The separators of `RECIPIENT_TAG_SEPARATOR`: one or more of `+ - = _`,
/// each a separator; empty turns tags off.
pub fn tag_separators(value: Option<&str>) -> Result<String, ConfigError> {
    let value = value.unwrap_or(DEFAULT_TAG_SEPARATORS).trim();
    if value.chars().all(|c| TAG_SEPARATORS.contains(c)) {
        Ok(value.to_string())
    } else {
        Err(ConfigError {
            var: "RECIPIENT_TAG_SEPARATOR",
            message: format!("must be one or more of {TAG_SEPARATORS:?} (each a separator, as Postfix's recipient_delimiter), e.g. \"+\" or \"+-\", or empty for no tags; it is {value:?}"),
        })
    }
}

/// The longest local part (RFC 5321 §4.5.3.1.1): a longer one is no mailbox, and has no tag.
const MAX_LOCAL_PART_LEN: usize = 64;

/// The tag of `recipient`: what follows the first separator in its local part
/// (quotes around the local part removed). `None` without a separator, when
/// nothing follows it, when it holds a control character (which no mailbox
/// does; SQLite's `LIKE` would read it apart from Rust), or when the local
/// part is longer than a mailbox's.
pub fn recipient_tag(recipient: &str, separators: &str) -> Option<String> {
    let (local, _domain) = recipient.trim().rsplit_once('@')?;
    let local = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')).unwrap_or(local);
    if local.len() > MAX_LOCAL_PART_LEN {
        return None;
    }
    let (_, tag) = local.split_once(|c| separators.contains(c))?;
    (!tag.is_empty() && !tag.chars().any(char::is_control)).then(|| tag.to_string())
}

/// `ticket-*` matches `ticket-4121`: `*` is any run of characters, the rest
/// is compared without regard to ASCII case (as the event log's `LIKE` does).
pub fn tag_matches(pattern: &str, tag: &str) -> bool {
    let (p, t) = (pattern.to_ascii_lowercase(), tag.to_ascii_lowercase());
    let mut parts = p.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = t.strip_prefix(first) else { return false };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else { return rest.is_empty() };
    for part in parts {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_thread_is_its_first_reference_else_what_it_answers_else_itself() {
        let t = thread(&headers(json!({"in-reply-to": "<b@x>", "References": "<a@x>\r\n <b@x>"})), Some("<c@x>")).unwrap();
        assert_eq!((t.id.as_str(), t.in_reply_to.as_deref(), t.references.len()), ("<a@x>", Some("<b@x>"), 2));
        let t = thread(&headers(json!({"In-Reply-To": "<b@x>"})), Some("<c@x>")).unwrap();
        assert_eq!(t.id, "<b@x>");
        assert!(t.references.is_empty());
        let t = thread(&headers(json!({"Subject": "hi"})), Some("c@x")).unwrap();
        assert_eq!((t.id.as_str(), t.in_reply_to), ("<c@x>", None));
        assert!(thread(&headers(json!({})), None).is_none());
        // Repeated fields are read in order.
        let t = thread(&headers(json!({"References": ["<a@x>", "<b@x>"]})), None).unwrap();
        assert_eq!(t.references, ["<a@x>", "<b@x>"]);
    }

    #[test]
    fn msg_ids_as_clients_write_them() {
        assert_eq!(msg_ids("<a@x> <b@x>"), ["<a@x>", "<b@x>"]);
        assert_eq!(msg_ids("<a@x>,<b@x>"), ["<a@x>", "<b@x>"], "commas, as some clients send");
        assert_eq!(msg_ids("<a\r\n @x>"), ["<a@x>"], "folded inside an id");
        assert_eq!(msg_ids("Your message of \"Mon, <not@an.id>\" <a@x> (sent <nor@this>)"), ["<a@x>"]);
        assert_eq!(msg_ids("a@x b@x"), ["<a@x>", "<b@x>"], "without brackets");
        assert_eq!(msg_ids("a@x, b@x"), ["<a@x>", "<b@x>"]);
        assert!(msg_ids("no ids here").is_empty());
        assert!(msg_ids("<> <   >").is_empty());
        assert!(msg_ids("<unclosed@x").is_empty());
        assert_eq!(msg_ids("(a \\) comment) <a@x>"), ["<a@x>"]);
        assert_eq!(msg_ids(&format!("<{}@x> <b@x>", "a".repeat(2000))), ["<b@x>"], "longer than a line");
        assert_eq!(msg_ids("<a\u{1}@x> <b@x>"), ["<b@x>"], "a control character");
        assert!(msg_ids("a@x>").is_empty(), "half a bracket is no id");
    }

    #[test]
    fn a_long_reference_list_keeps_its_root_and_latest() {
        let list: Vec<String> = (0..1000).map(|i| format!("<{i}@x>")).collect();
        let t = thread(&headers(json!({"References": list.join(" ")})), None).unwrap();
        assert_eq!(t.references.len(), MAX_REFERENCES);
        assert_eq!((t.references[0].as_str(), t.references[1].as_str()), ("<0@x>", "<901@x>"));
        assert_eq!(t.references.last().unwrap(), "<999@x>");
        assert_eq!(t.id, "<0@x>");
    }

    #[test]
    fn tags() {
        assert_eq!(recipient_tag("support+ticket-4121@example.com", "+").as_deref(), Some("ticket-4121"));
        assert_eq!(recipient_tag("support+a+b@example.com", "+").as_deref(), Some("a+b"), "after the first");
        assert_eq!(recipient_tag("support-ticket-4121@example.com", "-").as_deref(), Some("ticket-4121"));
        assert_eq!(recipient_tag("support-x+y@example.com", "+-").as_deref(), Some("x+y"));
        assert_eq!(recipient_tag("\"support+x y\"@example.com", "+").as_deref(), Some("x y"));
        assert_eq!(recipient_tag("support@example+x.com", "+"), None, "not in the domain");
        assert_eq!(recipient_tag("support+@example.com", "+"), None);
        assert_eq!(recipient_tag("support+x@example.com", ""), None, "off");
        assert_eq!(recipient_tag("not an address", "+"), None);
        assert_eq!(recipient_tag("vip+a\u{0}x@example.com", "+"), None, "a control character");
        assert_eq!(recipient_tag(&format!("a+{}@example.com", "b".repeat(63)), "+"), None, "longer than a local part");
    }

    #[test]
    fn separators_are_checked() {
        assert_eq!(tag_separators(None).unwrap(), "+");
        assert_eq!(tag_separators(Some(" - ")).unwrap(), "-");
        assert_eq!(tag_separators(Some("+-")).unwrap(), "+-");
        assert_eq!(tag_separators(Some("")).unwrap(), "");
        let e = tag_separators(Some("+.")).unwrap_err();
        assert_eq!(e.var, "RECIPIENT_TAG_SEPARATOR");
        assert!(e.message.contains("\"+.\""), "{}", e.message);
    }

    #[test]
    fn tag_patterns() {
        assert!(tag_matches("ticket-*", "ticket-4121"));
        assert!(tag_matches("Ticket-*", "TICKET-1"));
        assert!(tag_matches("*", "x"));
        assert!(tag_matches("*-4121", "ticket-4121"));
        assert!(tag_matches("t*-*1", "ticket-4121"));
        assert!(tag_matches("news", "NEWS"));
        assert!(!tag_matches("news", "newsletter"));
        assert!(!tag_matches("ticket-*", "support"));
        assert!(!tag_matches("a*a", "a"), "the two ends cannot overlap");
        assert!(tag_matches("a*a", "aa"));
    }
}
