//! Email addresses as providers send them: `a@b`, `Name <a@b>`,
//! `"Last, First" <a@b>`, comma-separated lists of those, or JSON objects.

use crate::event::Address;
use serde_json::Value;

/// One address: `Name <a@b>`, `"Name" <a@b>`, `<a@b>` or `a@b`. `None` when empty.
pub fn parse_one(s: &str) -> Option<Address> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    match (s.rfind('<'), s.ends_with('>')) {
        (Some(lt), true) => {
            let email = s.get(lt + 1..s.len() - 1)?.trim();
            let name = unquote(s.get(..lt)?.trim());
            Some(Address { email: email.to_string(), name: (!name.is_empty()).then(|| name.to_string()) })
        }
        _ => Some(Address { email: s.to_string(), name: None }),
    }
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"').and_then(|r| r.strip_suffix('"')).unwrap_or(s).trim()
}

/// A comma-separated list; commas inside quotes or angle brackets do not split.
pub fn parse_list(s: &str) -> Vec<Address> {
    let (mut out, mut start, mut quoted, mut angle) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' | ';' if !quoted && !angle => {
                out.extend(s.get(start..i).and_then(parse_one));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.extend(s.get(start..).and_then(parse_one));
    out
}

/// Addresses from JSON: a string (a list), an object `{email|address, name}`,
/// or an array of either.
pub fn from_json(v: &Value) -> Vec<Address> {
    match v {
        Value::String(s) => parse_list(s),
        Value::Array(items) => items.iter().flat_map(from_json).collect(),
        Value::Object(o) => {
            let email = o.get("email").or_else(|| o.get("address")).and_then(Value::as_str);
            let name = o.get("name").and_then(Value::as_str).map(str::trim).filter(|n| !n.is_empty());
            match email.map(str::trim).filter(|e| !e.is_empty()) {
                Some(e) => vec![Address { email: e.to_string(), name: name.map(String::from) }],
                None => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(email: &str, name: Option<&str>) -> Address {
        Address { email: email.into(), name: name.map(String::from) }
    }

    #[test]
    fn single_addresses_in_every_form() {
        assert_eq!(parse_one("bob@example.com"), Some(a("bob@example.com", None)));
        assert_eq!(parse_one(" <bob@example.com> "), Some(a("bob@example.com", None)));
        assert_eq!(parse_one("Bob Smith <bob@example.com>"), Some(a("bob@example.com", Some("Bob Smith"))));
        assert_eq!(parse_one("\"Smith, Bob\" <bob@example.com>"), Some(a("bob@example.com", Some("Smith, Bob"))));
        assert_eq!(parse_one("Зоя Ёлкина <zoya@example.com>"), Some(a("zoya@example.com", Some("Зоя Ёлкина"))));
        assert_eq!(parse_one("  "), None);
    }

    #[test]
    fn lists_split_outside_quotes_only() {
        let l = parse_list("\"Smith, Bob\" <bob@example.com>, ann@example.com;  ,Eve <eve@example.com>");
        assert_eq!(l, vec![a("bob@example.com", Some("Smith, Bob")), a("ann@example.com", None), a("eve@example.com", Some("Eve"))]);
        assert!(parse_list("").is_empty());
    }

    #[test]
    fn json_shapes() {
        use serde_json::json;
        assert_eq!(from_json(&json!({"email": "x@y.z", "name": ""})), vec![a("x@y.z", None)]);
        assert_eq!(from_json(&json!([{"address": "x@y.z", "name": "X"}, "w@y.z"])), vec![a("x@y.z", Some("X")), a("w@y.z", None)]);
        assert!(from_json(&json!(42)).is_empty());
        assert!(from_json(&json!({"name": "nobody"})).is_empty());
    }
}
