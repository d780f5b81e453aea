//! A stored event read back for delivery: inline in its envelope, or a
//! manifest and the body beside it in R2, streamed one ascending run of the
//! body at a time (`large::read_plan`), so no copy of it is ever whole in memory.

use crate::config::Config;
use crate::delivery::{is_stored_parts, r2_bytes_key, Envelope, Signer};
use crate::destinations::Destination;
use crate::edge::env::{log, nonce, BUCKET_PAYLOADS};
use crate::edge::ops;
use crate::large::{manifest_len, parse_manifest, read_plan, EventBody, Part, Read, RunCursor, STORED_HEADER_LEN};
use crate::links::{linked, without_raw, Linking};
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde_json::json;
use std::pin::Pin;
use worker::{Bucket, ByteStream, Env, Range};

/// An event's JSON: inline in its envelope, or parts of an R2 object (see `large`).
pub enum EventJson {
    Inline(String),
    /// `body_len`: the length of the body object the parts are ranges of (for a webhook, its request's body).
    Stored {
        bucket: Bucket,
        key: String,
        parts: EventBody,
        body_len: u64,
    },
}

impl EventJson {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            EventJson::Inline(json) => json.len() as u64,
            EventJson::Stored { parts, .. } => parts.len(),
        }
    }
}

pub async fn load_event(envelope: &Envelope, env: &Env) -> Result<EventJson, String> {
    if let Some(raw) = &envelope.event {
        return Ok(EventJson::Inline(raw.get().to_string()));
    }
    let key = envelope.r2_key.clone().ok_or("the envelope has neither an event nor an R2 key")?;
    let bucket = env.bucket(BUCKET_PAYLOADS).map_err(|e| e.to_string())?;
    let bytes_key = r2_bytes_key(&key);
    ops::r2_class_b();
    let size = bucket
        .head(bytes_key.as_str())
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("R2 object {bytes_key} is missing"))?
        .size();
    let parts = if is_stored_parts(&key) {
        let header = read_range(&bucket, &key, 0, STORED_HEADER_LEN).await?;
        let len = manifest_len(&header).ok_or_else(|| format!("R2 object {key} is not a stored event"))?;
        parse_manifest(&read_range(&bucket, &key, STORED_HEADER_LEN, len).await?, size)?
    } else {
        // Stored by 0.1: the event's whole JSON.
        EventBody { parts: vec![Part::Body([0, size])] }
    };
    Ok(EventJson::Stored { bucket, key: bytes_key, parts, body_len: size })
}

/// The event as `dest` takes it: received mail with its attachments as links, and without `data.raw`,
/// when the destination wants links for it (`links`). An inline event (accepted before the destination
/// asked for links, or mail without attachments) can have no links: it goes without `data.raw`.
pub fn as_taken(event: EventJson, dest: &Destination, envelope: &Envelope, cfg: &Config, now: i64) -> EventJson {
    let len = event.len();
    if !dest.links(len) {
        return event;
    }
    let mut taken = event;
    match &mut taken {
        EventJson::Inline(json) => {
            if json.contains("\"content_base64\":\"") {
                log(json!({"kind": "links_unavailable", "id": envelope.id, "dest": dest.name, "why": "the event is not stored in R2"}));
            }
            if let Some(without) = without_raw(json) {
                *json = without;
            }
        }
        EventJson::Stored { key, parts, .. } => {
            if let Some(base) = cfg.public_url.as_deref() {
                let l = Linking { base, keys: &cfg.link_keys, object: key, expires: cfg.link_expires(envelope.received_at, now) };
                match linked(parts, &l, &nonce()) {
                    Some(linked) => *parts = linked,
                    None if envelope.kind == "email.received" => {
                        log(
                            json!({"kind": "links_unavailable", "id": envelope.id, "dest": dest.name, "why": "the stored event is not readable as received mail"}),
                        );
                    }
                    None => {}
                }
            }
        }
    }
    let bytes = taken.len();
    if bytes != len {
        log(json!({"kind": "linked", "id": envelope.id, "dest": dest.name, "bytes": bytes, "was": len}));
    }
    if let Some(max) = dest.max_body_bytes.filter(|max| bytes > *max) {
        // Text and html are never links: a message whose bodies alone pass the limit goes as it is.
        log(json!({"kind": "over_max_body_bytes", "id": envelope.id, "dest": dest.name, "bytes": bytes, "max": max}));
    }
    taken
}

/// `length` bytes of an R2 object from `offset`, as one buffer (for small ranges: the header and manifest).
async fn read_range(bucket: &Bucket, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    let mut stream = range_stream(bucket.clone(), key.to_string(), offset, length).await?;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    if out.len() as u64 != length {
        return Err(format!("R2 object {key} is shorter than its manifest says"));
    }
    Ok(out)
}

pub async fn range_stream(bucket: Bucket, key: String, offset: u64, length: u64) -> Result<ByteStream, String> {
    ops::r2_class_b();
    let object = bucket
        .get(key.as_str())
        .range(Range::OffsetWithLength { offset, length })
        .execute()
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("R2 object {key} is missing"))?;
    object.body().ok_or_else(|| format!("R2 object {key} has no body"))?.stream().map_err(|e| e.to_string())
}

type Chunks = Pin<Box<dyn Stream<Item = worker::Result<Vec<u8>>>>>;

/// The event's JSON as a stream of chunks: the literal parts, and the body
/// read from R2 one ascending run at a time (`large::read_plan`).
pub fn event_stream(bucket: &Bucket, key: &str, parts: &EventBody) -> Chunks {
    let (bucket, key) = (bucket.clone(), key.to_string());
    let each = move |read: Read| -> Chunks {
        match read {
            Read::Lit(s) => Box::pin(futures_util::stream::once(async move { Ok(s.into_bytes()) })),
            Read::Run { start, end, pieces } => {
                let (bucket, key) = (bucket.clone(), key.clone());
                Box::pin(
                    futures_util::stream::once(async move {
                        let bytes = range_stream(bucket, key, start, end - start).await.map_err(worker::Error::RustError)?;
                        Ok::<_, worker::Error>(run_output(bytes, RunCursor::new(start, pieces)))
                    })
                    .try_flatten(),
                )
            }
        }
    };
    Box::pin(futures_util::stream::iter(read_plan(&parts.parts)).map(each).flatten())
}

/// The chunks of one run's read, through its cursor, then its trailing literals.
fn run_output(bytes: ByteStream, cursor: RunCursor) -> Chunks {
    Box::pin(futures_util::stream::unfold((bytes, Some(cursor)), |(mut bytes, cursor)| async move {
        let mut cursor = cursor?;
        match bytes.next().await {
            Some(Ok(chunk)) => {
                let out = cursor.feed(&chunk);
                Some((Ok(out), (bytes, Some(cursor))))
            }
            Some(Err(e)) => Some((Err(e), (bytes, None))),
            None => Some((cursor.finish().map_err(worker::Error::RustError), (bytes, None))),
        }
    }))
}

/// The `webhook-signature` of a stored event: a first pass over its parts,
/// which also checks that they are as long as the manifest says (a short
/// body would otherwise break the second pass's fixed-length stream).
pub async fn sign_stored(
    dest: &Destination,
    id: &str,
    timestamp: i64,
    bucket: &Bucket,
    key: &str,
    parts: &EventBody,
) -> Result<String, String> {
    let mut signer = Signer::new(&dest.keys, id, timestamp);
    let mut stream = event_stream(bucket, key, parts);
    let mut read = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        read += chunk.len() as u64;
        signer.update(&chunk);
    }
    if read != parts.len() {
        return Err(format!("the stored event is {read} bytes, not the {} its manifest says", parts.len()));
    }
    Ok(signer.finish())
}
