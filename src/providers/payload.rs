//! What every normaliser needs of a payload: JSON parsed with a reason when
//! it is not, empty containers taken as absent, and the event id.

use crate::error::ApiError;
use serde::Deserialize as _;

/// The event id from the provider's own event id, or from the raw body when
/// the payload carries none (see `dedupe`).
pub fn id_from(provider: &str, own_id: Option<&str>, body: &[u8]) -> String {
    match own_id.filter(|id| !id.is_empty()) {
        Some(id) => crate::dedupe::event_id(provider, &[id]),
        None => crate::dedupe::event_id_from_body(provider, body),
    }
}

/// For `#[serde(default, deserialize_with = "null_as_empty")]` on an optional
/// container: `null`, `[]`, `{}` and `""` are the same as absent (the provider
/// docs never say a container may be empty or `null`; PHP writes an empty map
/// as `[]`; refusing it would lose the event).
pub fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    use serde_json::Value;
    match Value::deserialize(d)? {
        Value::Null => Ok(T::default()),
        Value::Array(a) if a.is_empty() => Ok(T::default()),
        Value::Object(o) if o.is_empty() => Ok(T::default()),
        Value::String(s) if s.is_empty() => Ok(T::default()),
        v => serde_json::from_value(v).map_err(serde::de::Error::custom),
    }
}

/// True when `json` nests arrays and objects deeper than `max` (strings and their escapes skipped).
pub fn nested_deeper_than(json: &[u8], max: usize) -> bool {
    let (mut depth, mut i) = (0usize, 0);
    while let Some(&b) = json.get(i) {
        i += 1;
        match b {
            // A string: skipped to its closing quote in runs (an attachment's base64 is most of a large body).
            b'"' => loop {
                let Some(at) = json.get(i..).and_then(|rest| rest.iter().position(|c| *c == b'"' || *c == b'\\')) else { return false };
                i += at + 1;
                match json[i - 1] {
                    b'\\' => i += 1,
                    _ => break,
                }
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses the body as JSON, or says where it is not.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(provider: &str, body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(if e.is_data() {
            format!("the body is JSON but not a {provider} payload: {e}")
        } else {
            format!("the body is not valid JSON: {e}")
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn nesting_is_counted_outside_strings() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!super::nested_deeper_than(deep(64).as_bytes(), 64));
        assert!(super::nested_deeper_than(deep(65).as_bytes(), 64));
        assert!(!super::nested_deeper_than(format!(r#"{{"a":"{}\"[[","b":[]}}"#, "[".repeat(100)).as_bytes(), 2));
        for cut in [&b"[\"\\"[..], b"[\"abc"] {
            assert!(!super::nested_deeper_than(cut, 1), "{:?}", String::from_utf8_lossy(cut));
        }
        assert!(super::nested_deeper_than(b"\"\\\\\"[[", 1), "an escaped backslash ends no string");
    }
}
