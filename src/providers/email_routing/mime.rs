//! Raw mail to Email Routing's payload: mail-parser, and the guard that runs
//! before it. Only in builds with the `mail` feature (the Worker's full
//! module): the ingest module never receives mail.

use super::*;
use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use mail_parser::{Encoding, Message, MessageParser, MessagePart, MimeHeaders, PartType};
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// This source's payload, made by `payload` from the raw message and read
/// back by `normalise`. Written by mailhook, not by the sender: the sender's
/// words are only its values.
#[derive(Serialize)]
struct PayloadOut<'a> {
    envelope_from: Option<&'a str>,
    envelope_to: Option<&'a str>,
    /// The content digest of the identity rule (docs/EVENTS.md, event ids).
    digest: String,
    headers: Vec<(&'a str, String)>,
    message_id: Option<&'a str>,
    subject: Option<&'a str>,
    from: Vec<Address>,
    to: Vec<Address>,
    cc: Vec<Address>,
    bcc: Vec<Address>,
    text: Option<Cow<'a, str>>,
    html: Option<Cow<'a, str>>,
    attachments: Vec<PartOut<'a>>,
}

#[derive(Serialize)]
struct PartOut<'a> {
    filename: Option<&'a str>,
    content_type: Option<String>,
    content_id: Option<&'a str>,
    inline: bool,
    size: u64,
    /// Base64 of the exact bytes, written straight into the payload (no copy of it is made).
    #[serde(serialize_with = "as_base64")]
    content: Cow<'a, [u8]>,
}

fn as_base64<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Base64Display::new(bytes, &STANDARD))
}

/// One linear pass over the message before the parser sees it, refusing for
/// good what would make the parser's time or memory grow far beyond the
/// message's size: over-long or RFC 2231 boundaries, declared boundaries that
/// never follow, too many parts, huge header blocks or MIME fields, and text
/// that would not fit the memory budget once decoded. Only header blocks are
/// read for declarations (the message's, and the lines after each delimiter
/// line up to a blank line), so a body that quotes MIME is never refused.
fn guard(raw: &[u8]) -> Result<(), ApiError> {
    let refuse = |why: String| Err(ApiError::BadRequest(format!("malformed or oversized MIME: {why}")));
    let (mut in_header, mut top, mut block, mut parts) = (true, true, 0usize, 0usize);
    let mut field: Vec<u8> = Vec::new();
    let mut declared = Declared::default();
    let mut lines = raw.split(|&c| c == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if in_header {
            let continuation = line.first().is_some_and(|c| *c == b' ' || *c == b'\t');
            if !continuation {
                check_field(&field, &mut declared)?;
                field.clear();
            }
            if line.is_empty() {
                in_header = false;
                continue;
            }
            block += line.len() + 1;
            let limit = if top { MAX_HEADER_BLOCK } else { MAX_PART_HEADER_BLOCK };
            if block > limit {
                return refuse(format!("a header block of more than {limit} bytes"));
            }
            if field.len() <= MAX_MIME_FIELD {
                field.extend_from_slice(line);
            }
            if lines.peek().is_none() {
                check_field(&field, &mut declared)?;
            }
            continue;
        }
        let Some(rest) = line.strip_prefix(b"--") else { continue };
        if rest.first().is_none_or(|c| c.is_ascii_whitespace()) {
            continue;
        }
        parts += 1;
        if parts > MAX_PARTS {
            return refuse(format!("more than {MAX_PARTS} parts"));
        }
        let rest = rest.trim_ascii_end();
        let closing = rest.strip_suffix(b"--").filter(|b| declared.known.contains(*b));
        let delimiter = closing.is_none() && declared.known.contains(rest);
        if let Some(b) = closing.or(delimiter.then_some(rest)) {
            declared.pending.remove(b);
        }
        if delimiter {
            // A part's header block follows its delimiter.
            (in_header, top, block) = (true, false, 0);
        }
    }
    let missing: usize = declared.pending.values().sum();
    if missing > MAX_MISSING_BOUNDARIES {
        return refuse(format!("{missing} declared boundaries never appear (mailhook takes at most {MAX_MISSING_BOUNDARIES})"));
    }
    // Text becomes UTF-8 (a byte that is not may become three), then is copied once more when
    // parts are joined; each part costs the parser a few hundred bytes.
    let high = raw.iter().filter(|b| **b >= 0x80).count();
    let bound = raw.len() + 2 * (raw.len() + 2 * high) + 512 * parts;
    if bound > MEMORY_BUDGET {
        return Err(ApiError::BadRequest(format!(
            "the message may take {bound} bytes once decoded; mailhook takes at most {MEMORY_BUDGET}"
        )));
    }
    Ok(())
}

/// The boundaries declared so far: all of them, and those no delimiter line has followed yet.
#[derive(Default)]
struct Declared {
    known: std::collections::HashSet<Vec<u8>>,
    pending: std::collections::HashMap<Vec<u8>, usize>,
}

/// Checks one header field (its lines joined) of a header block, and records the boundary it declares.
fn check_field(field: &[u8], declared: &mut Declared) -> Result<(), ApiError> {
    let refuse = |why: String| Err(ApiError::BadRequest(format!("malformed or oversized MIME: {why}")));
    let Some(colon) = field.iter().position(|c| *c == b':') else { return Ok(()) };
    let name = field[..colon].trim_ascii();
    if !(name.eq_ignore_ascii_case(b"content-type") || name.eq_ignore_ascii_case(b"content-disposition")) {
        return Ok(());
    }
    if field.len() > MAX_MIME_FIELD {
        return refuse(format!("a {} field of more than {MAX_MIME_FIELD} bytes", String::from_utf8_lossy(name)));
    }
    let value = &field[colon + 1..];
    let mut segments = 0;
    for param in value.split(|c| *c == b';') {
        let Some(eq) = param.iter().position(|c| *c == b'=') else { continue };
        let pname = param[..eq].trim_ascii().to_ascii_lowercase();
        if pname.contains(&b'*') {
            segments += 1;
            if segments > MAX_PARAMETER_SEGMENTS {
                return refuse(format!("more than {MAX_PARAMETER_SEGMENTS} RFC 2231 parameter segments in one field"));
            }
            if pname.starts_with(b"boundary") {
                return refuse("an RFC 2231 boundary parameter (boundary*)".into());
            }
            continue;
        }
        if pname != b"boundary" {
            continue;
        }
        let v = param[eq + 1..].trim_ascii();
        let v = v.strip_prefix(b"\"").map(|q| q.split(|c| *c == b'"').next().unwrap_or(q)).unwrap_or(v);
        if v.len() > MAX_BOUNDARY_LEN {
            return refuse(format!("a boundary of {} characters (RFC 2046 allows 70; mailhook takes {MAX_BOUNDARY_LEN})", v.len()));
        }
        *declared.pending.entry(v.to_vec()).or_default() += 1;
        declared.known.insert(v.to_vec());
    }
    Ok(())
}

/// The length of `s` as a JSON string's contents.
fn json_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// Parses the raw message into the payload.
pub(super) fn payload(req: &Inbound) -> Result<Vec<u8>, ApiError> {
    guard(req.body)?;
    let message = MessageParser::default()
        .parse(req.body)
        .filter(|m| !m.root_part().headers().is_empty())
        .ok_or_else(|| ApiError::BadRequest("not an email message: it has no header fields (RFC 5322)".into()))?;
    let raw: &[u8] = &message.raw_message;

    let headers: Vec<(&str, String)> =
        message.root_part().headers().iter().map(|h| (h.name.as_str(), unfold(raw, h.offset_start, h.offset_end))).collect();

    // Identity: the sender's headers (not the relays') and the body's bytes.
    let mut lines = Sha256::new();
    for (name, value) in headers.iter().filter(|(n, v)| !is_trace_header(n) && !is_cloudflare_dkim(n, v)) {
        lines.update(name.to_ascii_lowercase().as_bytes());
        lines.update(b":");
        lines.update(value.as_bytes());
        lines.update(b"\n");
    }
    let body_start = (message.root_part().offset_body as usize).min(raw.len());
    let body = raw.get(body_start..).unwrap_or_default();
    let digest = dedupe::content_digest([Some(lines.finalize().into()), Some(Sha256::digest(body).into())]);

    let out = PayloadOut {
        envelope_from: req.envelope.map(|e| e.from).filter(|s| !s.is_empty()),
        envelope_to: req.envelope.map(|e| e.to).filter(|s| !s.is_empty()),
        digest,
        message_id: message.message_id(),
        subject: message.subject(),
        from: addresses(message.from()),
        to: addresses(message.to()),
        cc: addresses(message.cc()),
        bcc: addresses(message.bcc()),
        text: joined(&message, &message.text_body, false),
        html: joined(&message, &message.html_body, true),
        attachments: message.attachments.iter().filter_map(|&i| message.parts.get(i as usize)).map(|p| attachment(raw, p)).collect(),
        headers,
    };
    if out.attachments.len() + 2 > crate::large::MAX_LARGE_VALUES {
        return Err(ApiError::BadRequest(format!(
            "the message has {} attachments; mailhook takes at most {}",
            out.attachments.len(),
            crate::large::MAX_LARGE_VALUES - 2
        )));
    }
    let (estimate, literal) = (out.estimated_len(), out.literal_len());
    if literal > MAX_LITERAL_BYTES {
        return Err(ApiError::BadRequest(format!(
            "the message's header fields and addresses take {literal} bytes as JSON; mailhook takes at most {MAX_LITERAL_BYTES}"
        )));
    }
    // What the parser made (decoded and converted parts), the copies made here, and the payload to come.
    let owned = |c: &Cow<[u8]>| if matches!(c, Cow::Owned(_)) { c.len() } else { 0 };
    let parsed: usize = message.parts.iter().map(parsed_len).sum::<usize>()
        + out.attachments.iter().map(|a| owned(&a.content)).sum::<usize>()
        + [&out.text, &out.html].iter().map(|t| t.as_ref().filter(|t| matches!(t, Cow::Owned(_))).map_or(0, |t| t.len())).sum::<usize>();
    if raw.len() + parsed + estimate > MEMORY_BUDGET {
        return Err(ApiError::BadRequest(format!(
            "the message takes {} bytes once decoded and written as JSON; mailhook takes at most {MEMORY_BUDGET}",
            raw.len() + parsed + estimate
        )));
    }
    // Sized up front: a 25 MiB message's payload grown by doubling would hold two copies at once.
    let mut json = Vec::with_capacity(estimate);
    serde_json::to_writer(&mut json, &out).map_err(|e| ApiError::BadRequest(format!("the message could not be represented: {e}")))?;
    Ok(json)
}

impl PayloadOut<'_> {
    /// The length of its JSON, about: base64 is 4/3 of the bytes, text is counted with its escapes.
    fn estimated_len(&self) -> usize {
        let text = |t: &Option<Cow<str>>| t.as_deref().map_or(0, json_len);
        let parts: usize = self.attachments.iter().map(|a| a.content.len().div_ceil(3) * 4).sum();
        self.literal_len() + text(&self.text) + text(&self.html) + parts
    }

    /// The length of what is not a large string (see `LARGE_PATHS`), about.
    fn literal_len(&self) -> usize {
        let opt = |t: Option<&str>| t.map_or(0, json_len);
        let addresses = |l: &[Address]| l.iter().map(|a| json_len(&a.email) + a.name.as_deref().map_or(0, json_len) + 32).sum::<usize>();
        let headers: usize = self.headers.iter().map(|(n, v)| json_len(n) + json_len(v) + 8).sum();
        let parts: usize = self
            .attachments
            .iter()
            .map(|a| 128 + opt(a.filename) + a.content_type.as_deref().map_or(0, json_len) + opt(a.content_id))
            .sum();
        4096 + headers
            + parts
            + opt(self.message_id)
            + opt(self.subject)
            + opt(self.envelope_from)
            + opt(self.envelope_to)
            + addresses(&self.from)
            + addresses(&self.to)
            + addresses(&self.cc)
            + addresses(&self.bcc)
    }
}

/// What the parser allocated for a part's content (borrowed content costs nothing), and its bookkeeping.
fn parsed_len(part: &MessagePart) -> usize {
    let content = match &part.body {
        PartType::Text(Cow::Owned(t)) | PartType::Html(Cow::Owned(t)) => t.len(),
        PartType::Binary(Cow::Owned(b)) | PartType::InlineBinary(Cow::Owned(b)) => b.len(),
        _ => 0,
    };
    content + 512
}

/// A header's raw value (after the colon), unfolded, as text (bytes that are not UTF-8 replaced).
fn unfold(raw: &[u8], start: u32, end: u32) -> String {
    let bytes = raw.get(start as usize..end as usize).unwrap_or_default();
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(line);
    }
    out
}

/// A `DKIM-Signature` Cloudflare adds when it relays (its `t=` differs on each attempt).
fn is_cloudflare_dkim(name: &str, value: &str) -> bool {
    name.eq_ignore_ascii_case("dkim-signature") && value.to_ascii_lowercase().replace(' ', "").contains("d=cloudflare-email.net")
}

fn addresses(list: Option<&mail_parser::Address>) -> Vec<Address> {
    list.map(|l| {
        l.iter()
            .filter_map(|a| {
                let email = a.address.as_deref()?.trim();
                let name = a.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
                (!email.is_empty()).then(|| Address { email: email.to_string(), name: name.map(String::from) })
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The body parts of one kind (`text/plain`, or `text/html`), in order: one
/// part as it is, several joined (a message can interleave text with images).
/// `None` when the message has none: html is never made from text, nor text from html.
fn joined<'a>(message: &'a Message<'a>, ids: &[u32], html: bool) -> Option<Cow<'a, str>> {
    let mut texts = ids.iter().filter_map(|&i| message.parts.get(i as usize)).filter_map(|p| match (&p.body, html) {
        (PartType::Html(t), true) | (PartType::Text(t), false) => Some(t),
        _ => None,
    });
    let first = texts.next()?;
    let rest: Vec<&Cow<str>> = texts.collect();
    if rest.is_empty() {
        return Some(Cow::Borrowed(first.as_ref()));
    }
    let mut all = first.to_string();
    for t in rest {
        if !all.ends_with('\n') {
            all.push('\n');
        }
        all.push_str(t);
    }
    Some(Cow::Owned(all))
}

fn attachment<'a>(raw: &'a [u8], part: &'a MessagePart<'a>) -> PartOut<'a> {
    let content = exact_bytes(raw, part);
    let content_type = media_type(part).or_else(|| part.is_message().then(|| "message/rfc822".to_string()));
    let inline = match part.content_disposition() {
        Some(d) if d.is_attachment() => false,
        Some(d) if d.is_inline() => true,
        _ => matches!(part.body, PartType::InlineBinary(_)) || part.content_id().is_some(),
    };
    PartOut { filename: part.attachment_name(), content_type, content_id: part.content_id(), inline, size: content.len() as u64, content }
}

/// A part's bytes as sent, transfer encoding undone and nothing else: a text
/// attachment keeps its charset (the parser would have converted it to UTF-8).
/// mail-parser's part ends before the line break that belongs to the next boundary.
fn exact_bytes<'a>(raw: &'a [u8], part: &'a MessagePart<'a>) -> Cow<'a, [u8]> {
    match &part.body {
        PartType::Text(_) | PartType::Html(_) => {
            let start = part.offset_body as usize;
            let end = (part.offset_end as usize).min(raw.len());
            let Some(encoded) = raw.get(start..end) else { return Cow::Borrowed(part.contents()) };
            // A part that could not be decoded is kept as it came.
            let encoding = if part.is_encoding_problem { Encoding::None } else { part.encoding };
            match encoding {
                Encoding::Base64 => mail_parser::decoders::base64::base64_decode(encoded).map(Cow::Owned),
                Encoding::QuotedPrintable => mail_parser::decoders::quoted_printable::quoted_printable_decode(encoded).map(Cow::Owned),
                Encoding::None => Some(Cow::Borrowed(encoded)),
            }
            .unwrap_or(Cow::Borrowed(part.contents()))
        }
        _ => Cow::Borrowed(part.contents()),
    }
}

/// A part's media type, with its `charset` for text (the bytes are kept in it).
fn media_type(part: &MessagePart) -> Option<String> {
    let ct = part.content_type()?;
    let mut t = match &ct.c_subtype {
        Some(sub) => format!("{}/{}", ct.c_type, sub),
        None => ct.c_type.to_string(),
    }
    .to_ascii_lowercase();
    if let Some(charset) = ct.attribute("charset").filter(|_| part.is_text()) {
        t.push_str("; charset=");
        t.push_str(&charset.to_ascii_lowercase());
    }
    Some(t)
}

/// Headers Cloudflare and other relays add on the way (they differ on each
/// delivery attempt), left out of the content digest so that a sender's
/// retry of the same message is a duplicate.
fn is_trace_header(name: &str) -> bool {
    const TRACE: [&str; 7] =
        ["received", "return-path", "delivered-to", "x-original-to", "received-spf", "authentication-results", "x-received"];
    let lower = name.to_ascii_lowercase();
    // `X-CF-*`: Cloudflare's own (its spam score, say), which may differ on the next attempt.
    TRACE.contains(&lower.as_str()) || lower.starts_with("arc-") || lower.starts_with("x-cf-")
}
