//! What a destination would receive of an event now, as the console's event page and `npm run mailhook --
//! transform` show it: the same steps as an attempt (`as_taken`, then `post::prepare`) without sending.

use super::post::{prepare, Framing, Prepared};
use super::stored::{as_taken, event_stream, EventJson};
use crate::config::Config;
use crate::delivery::Envelope;
use crate::destinations::Destination;
use crate::edge::env::now_seconds;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// The most of a body shown.
const PREVIEW_BYTES: usize = 64 * 1024;

/// `dest`'s body of `event` (of `envelope`): its content type, its headers and its first `PREVIEW_BYTES`, or
/// `filtered`, or the error an attempt would record.
pub async fn body_for(dest: &Destination, envelope: &Envelope, event: EventJson, cfg: &Config) -> Value {
    let mut out = json!({
        "destination": dest.name,
        "format": dest.format.as_str(),
        "transform": dest.transform.as_ref().map(|t| t.source()),
        "filtered": false,
        "error": null,
    });
    let event = as_taken(event, dest, envelope, cfg, now_seconds());
    let console = cfg.public_url.as_deref().map(|u| format!("{u}/console/"));
    let (event, Framing { content_type, headers }) = match prepare(dest, &envelope.provider, event, console.as_deref()).await {
        Prepared::Ready(event, framing) => (event, framing),
        Prepared::Filtered => {
            out["filtered"] = json!(true);
            return out;
        }
        Prepared::Dead(e) | Prepared::Later(e) | Prepared::Failed(e) => {
            out["error"] = json!(e);
            return out;
        }
    };
    let len = event.len();
    let head = match event {
        EventJson::Inline(json) => json.into_bytes(),
        EventJson::Stored { bucket, key, parts, .. } => {
            let mut head = Vec::new();
            let mut stream = event_stream(&bucket, &key, &parts);
            while head.len() < PREVIEW_BYTES {
                match stream.next().await {
                    Some(Ok(chunk)) => head.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        out["error"] = json!(format!("the stored event could not be read: {e}"));
                        return out;
                    }
                    None => break,
                }
            }
            head
        }
    };
    out["content_type"] = json!(content_type);
    out["headers"] = headers.into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>().into();
    out["bytes"] = json!(len);
    out["truncated"] = json!(len > PREVIEW_BYTES as u64);
    out["body"] = json!(String::from_utf8_lossy(&head[..head.len().min(PREVIEW_BYTES)]));
    out
}
