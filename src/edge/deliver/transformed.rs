//! A destination's transform carried out: the event read whole (a stored one from R2, when it is at most
//! `MAX_TRANSFORM_INPUT_BYTES`), its program run (`delivery::Transform`), its output the body.

use super::stored::{event_stream, EventJson};
use crate::delivery::{Transform, TransformOutput};
use crate::limits::{MAX_TRANSFORM_INPUT_BYTES, MAX_TRANSFORM_OUTPUT_BYTES};
use futures_util::StreamExt;

/// What a transform made of an event.
pub enum Transformed {
    /// The body to send.
    Body(EventJson),
    /// `null` or nothing: not sent to this destination.
    Filtered,
    /// The program failed, or the event or the output is too large: the delivery is dead (replayable).
    Failed(String),
    /// The stored event could not be read now: tried again later.
    Unreadable(String),
}

/// `t` applied to `event`, its output at most `max_body_bytes` (or `MAX_TRANSFORM_OUTPUT_BYTES`).
pub async fn transformed(t: &Transform, event: EventJson, max_body_bytes: Option<u64>) -> Transformed {
    let text = match event {
        EventJson::Inline(json) => json.into_bytes(),
        EventJson::Stored { bucket, key, parts, .. } => {
            let len = parts.len();
            if len > MAX_TRANSFORM_INPUT_BYTES {
                return Transformed::Failed(format!(
                    "the event is {len} bytes, over the {MAX_TRANSFORM_INPUT_BYTES} a transform reads; take its attachments as links (attachments = \"link\")"
                ));
            }
            let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            let mut stream = event_stream(&bucket, &key, &parts);
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => out.extend_from_slice(&c),
                    Err(e) => return Transformed::Unreadable(e.to_string()),
                }
            }
            out
        }
    };
    let max = max_body_bytes.map_or(MAX_TRANSFORM_OUTPUT_BYTES, |m| m.min(MAX_TRANSFORM_OUTPUT_BYTES));
    match t.apply(&text, usize::try_from(max).unwrap_or(usize::MAX)) {
        Ok(TransformOutput::Body(body)) => Transformed::Body(EventJson::Inline(body)),
        Ok(TransformOutput::Filtered) => Transformed::Filtered,
        Err(e) => Transformed::Failed(e),
    }
}
