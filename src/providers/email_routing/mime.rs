//! Raw mail to Email Routing's payload: mail-parser, after the guard (`guard.rs`)
//! has refused what it must not parse and repaired what it would misread.

use super::guard::guard;
use super::uuencode;
use super::*;
use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use mail_parser::{Encoding, HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType};
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
    let repaired = guard(req.body)?.apply(req.body);
    let message = MessageParser::default().parse(&repaired[..]).filter(|m| !m.root_part().headers().is_empty()).ok_or_else(|| {
        ApiError::BadRequest(
            "not an email message: its first line (after any blank ones) is no header field such as `From: …` (RFC 5322)".into(),
        )
    })?;
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
        from: addresses(&message, HeaderName::From),
        to: addresses(&message, HeaderName::To),
        cc: addresses(&message, HeaderName::Cc),
        bcc: addresses(&message, HeaderName::Bcc),
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

/// Every address of every `name` field, in order: a message may repeat `To` or `Cc` (RFC 5322 allows
/// one, but senders write several, and each list is meant).
fn addresses(message: &Message, name: HeaderName) -> Vec<Address> {
    message
        .header_values(name)
        .filter_map(|v| v.as_address())
        .flat_map(|l| l.iter())
        .filter_map(|a| {
            let email = a.address.as_deref()?.trim();
            let name = a.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
            (!email.is_empty()).then(|| Address { email: email.to_string(), name: name.map(String::from) })
        })
        .collect()
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
    // `Content-Transfer-Encoding: x-uuencode`, which mail-parser leaves encoded: decoded here, with the file name of its `begin` line.
    if let Some(uu) = uuencode::of_part(raw, part) {
        let content_type = media_type(part);
        let filename = part.attachment_name().or(uu.name);
        let inline = matches!(part.content_disposition(), Some(d) if d.is_inline());
        return PartOut {
            filename,
            content_type,
            content_id: part.content_id(),
            inline,
            size: uu.bytes.len() as u64,
            content: Cow::Owned(uu.bytes),
        };
    }
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
/// Base64 is decoded here for every part, as RFC 2045 §6.8 says: characters outside the alphabet
/// are ignored (mail-parser gave up on such a part and kept it as it came).
fn exact_bytes<'a>(raw: &'a [u8], part: &'a MessagePart<'a>) -> Cow<'a, [u8]> {
    let encoded = raw.get(part.offset_body as usize..(part.offset_end as usize).min(raw.len()));
    if let (Some(encoded), Some("base64")) = (encoded, uuencode::transfer_encoding(raw, part).as_deref()) {
        return Cow::Owned(crate::large::base64_bytes(encoded));
    }
    match (&part.body, encoded, part.encoding) {
        (PartType::Text(_) | PartType::Html(_), Some(encoded), encoding) => {
            // A part that could not be decoded is kept as it came.
            let decoded = match encoding {
                Encoding::QuotedPrintable if !part.is_encoding_problem => {
                    mail_parser::decoders::quoted_printable::quoted_printable_decode(encoded).map(Cow::Owned)
                }
                _ => Some(Cow::Borrowed(encoded)),
            };
            decoded.unwrap_or(Cow::Borrowed(part.contents()))
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
