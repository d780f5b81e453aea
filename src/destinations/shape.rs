//! What a destination receives: the event's form (`format`, or a jq `transform` of it), and how its attachments
//! come (`attachments`, `max_body_bytes`; see `links`). Read here for declared destinations and for `origin` alike.

use super::AttachmentForm;
use crate::delivery::Transform;
pub use crate::event::Format;
use crate::limits::MAX_BODY_BYTES_LIMIT;
use std::rc::Rc;

/// `format`, in any case; unset is `cloudevents`.
pub fn format(raw: Option<&str>) -> Result<Format, String> {
    let raw = raw.map(|f| f.trim().to_ascii_lowercase()).unwrap_or_default();
    match Format::ALL.iter().find(|f| f.as_str() == raw) {
        Some(f) => Ok(*f),
        None if raw.is_empty() => Ok(Format::CloudEvents),
        None => {
            let all: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
            Err(format!("format = {raw:?}: write one of {}", all.join(", ")))
        }
    }
}

/// `transform`: a jq program, compiled once here (a mistake in it is a configuration error); blank is none. Its
/// output is the body, so it goes with the default format only.
pub fn transform(raw: Option<&str>, format: Format) -> Result<Option<Rc<Transform>>, String> {
    let Some(source) = raw.filter(|s| !s.trim().is_empty()) else { return Ok(None) };
    if format != Format::CloudEvents {
        return Err(format!(
            "transform and format = {:?} are both set; a transform's output is the body: leave format out",
            format.as_str()
        ));
    }
    Transform::compile(source).map(|t| Some(Rc::new(t))).map_err(|e| format!("transform: {e}"))
}

/// The smallest `max_body_bytes`: below it, every event with an attachment would go with links.
const MIN_MAX_BODY_BYTES: u64 = 16 * 1024;

/// `attachments` (`inline` or `link`, in any case) and `max_body_bytes` (a number, or a string of one).
pub fn attachment_settings(form: Option<&str>, max: Option<Option<u64>>) -> Result<(AttachmentForm, Option<u64>), String> {
    let form = match form.map(|f| f.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("inline") => AttachmentForm::Inline,
        Some("link") => AttachmentForm::Link,
        Some(other) => return Err(format!("attachments = {other:?}: write \"inline\" (in the event, the default) or \"link\"")),
    };
    let max = max
        .map(|n| n.filter(|v| (MIN_MAX_BODY_BYTES..=MAX_BODY_BYTES_LIMIT).contains(v)))
        .map(|v| v.ok_or(format!("max_body_bytes must be a whole number of bytes from {MIN_MAX_BODY_BYTES} to {MAX_BODY_BYTES_LIMIT}")))
        .transpose()?;
    Ok((form, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_named_in_any_case() {
        assert_eq!(format(None), Ok(Format::CloudEvents));
        assert_eq!(format(Some(" CloudEvents-Binary ")), Ok(Format::CloudEventsBinary));
        assert_eq!(format(Some("slack")), Ok(Format::Slack));
        assert!(format(Some("discord")).unwrap_err().contains("cloudevents, cloudevents-binary, slack"));
    }

    #[test]
    fn a_transform_is_the_body_so_it_goes_without_a_format() {
        assert!(transform(Some("   \n "), Format::Slack).unwrap().is_none(), "blank is none, whatever the format");
        assert!(transform(Some("."), Format::CloudEvents).unwrap().is_some());
        let e = transform(Some("."), Format::Slack).unwrap_err();
        assert!(e.contains("transform and format = \"slack\" are both set"), "{e}");
        assert!(transform(Some("{a: .b"), Format::CloudEvents).unwrap_err().starts_with("transform: syntax error"));
    }
}
