//! The one body reader: a request's body, a message's raw stream, a DoH
//! answer or a console sign-in, bounded as its bytes arrive.

use crate::error::ApiError;
use js_sys::{Promise, Reflect, Uint8Array};
use web_sys::{ReadableStream, ReadableStreamByobReader, ReadableStreamDefaultReader};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

/// Reads a body, refusing it (413) as soon as it passes `limit`, whatever
/// `Content-Length` said, chunked or not, and (400) when it ends other than
/// its announced length (`length`), as a client that gave up mid-body would.
/// `reserve` bounds what is allocated before the bytes arrive. A body framed
/// by its `Content-Length` alone (`Length::Framed`: no `Transfer-Encoding`)
/// ends with its last announced byte: the runtime's parser reads no further,
/// so the read that would only say "done" is not made.
///
/// The body is read with a BYOB reader into one 64 KiB buffer that goes
/// back and forth, each chunk copied into Wasm: no JavaScript buffer per
/// chunk waits for the garbage collector, so a 32 MiB email costs its size
/// in Wasm and almost nothing in the JS heap (BENCHMARKS.md). A stream
/// without BYOB support (a message's stream passed over RPC, locally) is
/// read chunk by chunk.
pub async fn read_stream(stream: Option<ReadableStream>, limit: u64, length: Length, reserve: u64) -> Result<Vec<u8>, ApiError> {
    let announced = match length {
        Length::Framed(n) | Length::Announced(n) => Some(n),
        Length::Unknown => None,
    };
    fn unreadable<E>(_: E) -> ApiError {
        ApiError::BadRequest("the request body could not be read; send it again".into())
    }
    let limit_len = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut body = Vec::with_capacity(usize::try_from(announced.unwrap_or(0).min(reserve).min(limit)).unwrap_or(0));
    let Some(stream) = stream else {
        return Ok(body); // no body at all
    };
    // A small announced body needs no 64 KiB buffer (zeroed for every request); never below 4 KiB, so a
    // body longer than it announced (chunked beside a small Content-Length) costs no more reads than 4 KiB each.
    let chunk = announced.map_or(READ_CHUNK_BYTES, |n| u32::try_from(n).unwrap_or(u32::MAX).clamp(MIN_CHUNK_BYTES, READ_CHUNK_BYTES));
    let mut reader = Reader::of(&stream, chunk).map_err(unreadable)?;
    while let Some(chunk) = reader.next().await.map_err(unreadable)? {
        let n = chunk.length() as usize;
        if body.len().saturating_add(n) > limit_len {
            reader.cancel();
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let start = body.len();
        body.resize(start + n, 0);
        chunk.copy_to(&mut body[start..]);
        if matches!(length, Length::Framed(n) if body.len() as u64 == n) {
            break;
        }
        reader.give_back(&chunk);
    }
    if announced.is_some_and(|n| n != body.len() as u64) {
        return Err(ApiError::BadRequest("the body is not as long as its Content-Length says; send it again".into()));
    }
    Ok(body)
}

/// What is known of a body's length before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Nothing (a stream of mail, a chunked request).
    Unknown,
    /// A `Content-Length` beside other framing (`Transfer-Encoding`): the body must end there, but is read to its end.
    Announced(u64),
    /// A `Content-Length` that frames the body by itself.
    Framed(u64),
}

const READ_CHUNK_BYTES: u32 = 64 * 1024;
const MIN_CHUNK_BYTES: u32 = 4 * 1024;

/// A stream's reader: BYOB into one buffer (of `size` bytes) that goes back and forth, or the default reader.
enum Reader {
    Byob { reader: ReadableStreamByobReader, view: Uint8Array, size: u32 },
    Default(ReadableStreamDefaultReader),
}

impl Reader {
    fn of(stream: &ReadableStream, size: u32) -> Result<Self, JsValue> {
        Ok(match byob_reader(stream) {
            Some(reader) => Reader::Byob { reader, view: Uint8Array::new_with_length(size), size },
            None => Reader::Default(ReadableStreamDefaultReader::new(stream)?),
        })
    }

    /// The next chunk, or `None` at the end.
    async fn next(&mut self) -> Result<Option<Uint8Array>, JsValue> {
        let read: Promise = match self {
            Reader::Byob { reader, view, .. } => reader.read_with_array_buffer_view(view),
            Reader::Default(reader) => reader.read(),
        };
        let result = JsFuture::from(read).await?;
        if Reflect::get(&result, &JsValue::from_str("done"))?.as_bool().unwrap_or(true) {
            return Ok(None);
        }
        Ok(Some(Reflect::get(&result, &JsValue::from_str("value"))?.dyn_into()?))
    }

    /// A BYOB read hands its buffer back, detached from the view: read into it again.
    fn give_back(&mut self, chunk: &Uint8Array) {
        if let Reader::Byob { view, size, .. } = self {
            *view = Uint8Array::new_with_byte_offset_and_length(&chunk.buffer(), 0, *size);
        }
    }

    fn cancel(&self) {
        let _ = match self {
            Reader::Byob { reader, .. } => reader.cancel(),
            Reader::Default(reader) => reader.cancel(),
        };
    }
}

/// A BYOB reader of `stream`, when it is a byte stream (request bodies in workerd are).
fn byob_reader(stream: &ReadableStream) -> Option<ReadableStreamByobReader> {
    let options = web_sys::ReadableStreamGetReaderOptions::new();
    options.set_mode(web_sys::ReadableStreamReaderMode::Byob);
    // Called through Reflect so that a stream without BYOB support throws into a Result, not a panic.
    let get_reader: js_sys::Function = Reflect::get(stream, &JsValue::from_str("getReader")).ok()?.dyn_into().ok()?;
    get_reader.call1(stream, &options).ok()?.dyn_into().ok()
}
