//! Large email without copies.
//!
//! A 32 MiB inbound email is almost all a few huge JSON strings (attachments'
//! base64, text, html). Parsing them into owned strings and writing the event
//! JSON with `data.raw` held the email three or four times over. Instead:
//!
//! 1. `skeletonize` walks the body once, borrowing, and replaces each string
//!    at one of the provider's large paths with a marker, recording where its
//!    JSON literal lies in the body and what a normaliser needs to know of it
//!    (its SHA-256 and length, its base64-decoded length). The skeleton is small.
//! 2. The provider normalises the skeleton as usual: markers are opaque strings.
//! 3. `render` serialises an event and splits it at the markers into an
//!    `EventBody`: literal bytes and ranges of the request body. The edge
//!    stores it once in R2 (`stored_object`: a manifest, then the body) and
//!    the consumer streams it to the origin, signing as it reads.
//!
//! A large string goes to the origin as its JSON literal from the request,
//! escapes and all: the same string, never decoded and re-encoded.
//!
//! Here: the markers and what they stand for. `skeleton`: step 1; `render`:
//! step 3; `stored`: the stored layout, and how the consumer reads it back.

mod literal;
mod render;
mod skeleton;
mod stored;

pub use literal::{base64_bytes, base64_len, Base64Decoder, Unescaper};
pub use render::{render, unrender, EventBody, Part};
pub use skeleton::{skeletonize, Skeleton};
pub use stored::{manifest_len, parse_manifest, read_plan, stored_prefix, Piece, Read, RunCursor, STORED_HEADER_LEN};

/// One step of a large path: an object key, or any element of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    Key(&'static str),
    Any,
}

/// The path of a value that may be large, e.g. `attachments[*].content`.
pub type LargePath = &'static [Seg];

/// What the normaliser may ask about a large string it only sees as a marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRef {
    /// The range of its JSON literal (quotes included) in the body.
    pub start: u64,
    pub end: u64,
    /// SHA-256 of the decoded string.
    pub sha256: [u8; 32],
    /// Its length in bytes, decoded.
    pub len: u64,
    /// The length of what it decodes to as base64 (`literal::base64_len`), and that's SHA-256.
    pub base64_len: u64,
    pub base64_sha256: [u8; 32],
}

/// The large strings of one body, and the markers that stand for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refs {
    nonce: String,
    items: Vec<TextRef>,
}

/// The first character of a marker: no JSON string from a provider starts
/// with the marker and the nonce, which is random for every request.
const MARK: char = '\u{1}';

/// Strings at large paths shorter than this (as JSON literals) stay in the skeleton.
pub const MIN_MARKED_BYTES: usize = 1024;

/// A message with more values at large paths (attachments, inlines, texts)
/// than this is refused: each costs memory at ingest and a part at delivery,
/// and no real email has so many.
pub const MAX_LARGE_VALUES: usize = 1000;

fn marker(nonce: &str, index: usize) -> String {
    format!("{MARK}mh:{nonce}:{index}")
}

impl Refs {
    /// The large string that `s` stands for, if it is a marker of this body.
    pub fn get(&self, s: &str) -> Option<&TextRef> {
        let rest = s.strip_prefix(MARK)?.strip_prefix("mh:")?.strip_prefix(self.nonce.as_str())?.strip_prefix(':')?;
        self.items.get(rest.parse::<usize>().ok()?)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}
