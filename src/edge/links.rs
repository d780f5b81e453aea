//! `GET /attachments/…`: an attachment served by its signed link (`links`),
//! streamed from R2 through the JSON literal's unescaping and base64
//! decoding, a chunk at a time: no copy of it is ever whole in memory.

use super::deliver::range_stream;
use super::env::{config, now_seconds, refusal, BUCKET_PAYLOADS};
use crate::error::ApiError;
use crate::large::{Base64Decoder, Unescaper};
use crate::links::{served_headers, Link, LINK_PATH};
use futures_util::StreamExt;
use worker::{ByteStream, Env, FixedLengthStream, Headers, Response, Result};

pub async fn serve(method: &str, url: &str, path: &str, env: &Env) -> Result<web_sys::Response> {
    let cfg = match config(env) {
        Ok(c) => c,
        Err(e) => return refusal(&ApiError::NotConfigured(e.to_string())),
    };
    let name = path.strip_prefix(LINK_PATH).unwrap_or_default();
    let query = url.split_once('?').map_or("", |(_, q)| q.split('#').next().unwrap_or_default());
    // A link that is not one, or has expired, says no more than that.
    let Ok(link) = Link::verify(name, query, &cfg.link_keys, now_seconds()) else {
        return refusal(&ApiError::Forbidden(
            "this link is not valid or has expired; a replay of the event to its destination gives fresh links".into(),
        ));
    };
    let headers = Headers::new();
    for (k, v) in served_headers(&link.name) {
        headers.set(k, &v)?;
    }
    // HEAD says what a GET would send, without reading R2.
    if method == "HEAD" {
        if let Some(size) = link.size {
            headers.set("content-length", &size.to_string())?;
        }
        return Ok(Response::empty()?.with_headers(headers).into());
    }
    let bytes = match env.bucket(BUCKET_PAYLOADS) {
        Ok(bucket) => range_stream(bucket, link.object.clone(), link.start, link.end - link.start).await,
        Err(e) => Err(e.to_string()),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) if e.ends_with("is missing") => {
            return refusal(&ApiError::NotFound("the attachment is no longer kept (LOG_RETENTION_DAYS)".into()))
        }
        Err(e) => return refusal(&ApiError::Unavailable(format!("the attachment could not be read ({e}); please retry"))),
    };
    // With its length known, the body is a fixed-length stream (`Content-Length`): a read that fails or
    // decodes to another length breaks the download, so a client never takes a short file for the whole.
    let Some(size) = link.size else { return Ok(Response::from_stream(decoded(bytes))?.with_headers(headers).into()) };
    let body = worker::worker_sys::FixedLengthStream::from(FixedLengthStream::wrap(decoded(bytes), size)).readable();
    let init = web_sys::ResponseInit::new();
    init.set_headers(headers.as_ref());
    web_sys::Response::new_with_opt_readable_stream_and_init(Some(&body), &init).map_err(worker::Error::from)
}

/// The attachment's bytes: the literal's chunks unescaped and base64-decoded as they arrive.
/// A literal that is not one ends the stream with an error (the client sees a broken download, never wrong bytes).
fn decoded(bytes: ByteStream) -> impl futures_util::Stream<Item = Result<Vec<u8>>> {
    let state = Some((bytes, Unescaper::default(), Base64Decoder::default()));
    futures_util::stream::unfold(state, |state| async move {
        let (mut bytes, mut unescaper, mut base64) = state?;
        let mut out = Vec::new();
        match bytes.next().await {
            Some(Ok(chunk)) => match unescaper.feed(&chunk, &mut |b: &[u8]| base64.feed(b, &mut out)) {
                Ok(()) => Some((Ok(out), Some((bytes, unescaper, base64)))),
                Err(e) => Some((Err(worker::Error::RustError(e)), None)),
            },
            Some(Err(e)) => Some((Err(e), None)),
            None => match unescaper.finish() {
                Ok(()) => {
                    base64.finish(&mut out);
                    Some((Ok(out), None))
                }
                Err(e) => Some((Err(worker::Error::RustError(e)), None)),
            },
        }
    })
}
