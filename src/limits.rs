//! The platform's limits that mailhook's design meets, in one place, each
//! with where Cloudflare documents it.

/// The longest delay of a queue message or retry (Queues `delaySeconds`, for `send` and `retry` alike):
/// 24 hours (Cloudflare's Queues limits page, read 2026-12-05; it was 12 hours before).
pub const MAX_QUEUE_DELAY_SECONDS: u32 = 86_400;

/// Cloudflare Queues refuses messages over 128 KB; leave room for its own framing.
pub const MAX_INLINE_ENVELOPE_BYTES: usize = 120_000;

/// Messages per `sendBatch`, and bytes per batch (Queues allows 100 and 256 KB).
pub const BATCH_COUNT: usize = 100;
pub const BATCH_BYTES: usize = 250_000;

/// The largest request body Workers accept on most plans (100 MiB): `MAX_BODY_BYTES` at most.
pub const MAX_BODY_BYTES_LIMIT: u64 = 100 * 1024 * 1024;

/// Bodies signed over their bytes are read before they can be authenticated,
/// so they are capped here (delivery events are a few KB).
pub const SIGNED_BODY_MAX_BYTES: u64 = 1024 * 1024;

/// A large event's manifest: its fields other than its large strings (headers, addresses, subject),
/// which the consumer reads whole (`large::stored`, which refuses to read one over 16 MiB).
pub const MAX_LITERAL_BYTES: usize = 4 * 1024 * 1024;

/// The largest event a destination's transform reads (the isolate's 128 MB hold it about four times over, as
/// text, as jaq's values and as the output); a larger one can take its attachments as links.
pub const MAX_TRANSFORM_INPUT_BYTES: u64 = 8 * 1024 * 1024;

/// The largest output of a transform, unless the destination's `max_body_bytes` says less.
pub const MAX_TRANSFORM_OUTPUT_BYTES: u64 = 8 * 1024 * 1024;

/// Workers KV's shortest TTL.
pub const KV_MIN_TTL_SECONDS: u64 = 60;

/// Queues bill each 64 KB (of 1,000 bytes) of a message, with ~100 bytes of metadata, as one operation.
pub fn queue_units(bytes: usize) -> u64 {
    ((bytes as u64 + 100).div_ceil(64_000)).max(1)
}

/// The deepest nesting of arrays and objects a provider's payload may have. Real payloads are a few levels deep;
/// the event wraps a payload's values in up to five more (`data.inbound.headers`, `data.raw`), and every later
/// reading of the event (links, the console) must stay within serde_json's limit of 128.
pub const MAX_JSON_DEPTH: usize = 64;
