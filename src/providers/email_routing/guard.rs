//! One linear pass over a raw message before mail-parser sees it:
//!
//! - it refuses for good what would make the parser's time or memory grow far
//!   beyond the message's size: over-long or RFC 2231 boundaries, declared
//!   boundaries that never follow, too many parts, huge header blocks or MIME
//!   fields, text that would not fit the memory budget once decoded;
//! - it finds what RFC 5322 and RFC 2045 parsers recover from and mail-parser
//!   does not, and says how to repair it (`Repairs`): blank lines or an mbox
//!   `From ` line before the headers; a header line that is no header field
//!   (it ends the block: the body starts there, as Python's `email` reads it,
//!   where mail-parser went on reading headers and lost the text); an invalid
//!   `Content-Type` (`text/plain` instead, RFC 2045 §5.2, where mail-parser
//!   made the text an attachment); white space between encoded words inside a
//!   quoted parameter, as Outlook folds a long file name (kept by mail-parser
//!   as spaces in the name; RFC 2047 §6.2 says it is ignored).
//!
//! Only header blocks are read (the message's, and the lines after each
//! delimiter line of a declared boundary up to a blank line), so a body that
//! quotes MIME is never refused or changed.

use super::{
    MAX_BOUNDARY_LEN, MAX_HEADER_BLOCK, MAX_MIME_FIELD, MAX_MISSING_BOUNDARIES, MAX_PARAMETER_SEGMENTS, MAX_PARTS, MAX_PART_HEADER_BLOCK,
    MEMORY_BUDGET,
};
use crate::error::ApiError;
use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;

/// The edits that make a message what its sender meant, in order; and where its headers start.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    /// The offset of its first header line (after blank lines and an mbox `From ` line).
    pub start: usize,
    edits: Vec<(Range<usize>, Cow<'static, [u8]>)>,
}

impl Repairs {
    /// The message to parse: borrowed when nothing needs repair, else a repaired copy.
    pub fn apply<'a>(&self, raw: &'a [u8]) -> Cow<'a, [u8]> {
        let body = raw.get(self.start..).unwrap_or_default();
        if self.edits.is_empty() {
            return Cow::Borrowed(body);
        }
        let mut out = Vec::with_capacity(body.len() + 64 * self.edits.len());
        let mut at = self.start;
        for (range, with) in &self.edits {
            out.extend_from_slice(raw.get(at..range.start).unwrap_or_default());
            out.extend_from_slice(with.as_ref());
            at = range.end;
        }
        out.extend_from_slice(raw.get(at..).unwrap_or_default());
        Cow::Owned(out)
    }
}

fn refuse<T>(why: String) -> Result<T, ApiError> {
    Err(ApiError::BadRequest(format!("malformed or oversized MIME: {why}")))
}

/// The scan (see the module's doc): the repairs to make, or the refusal.
pub fn guard(raw: &[u8]) -> Result<Repairs, ApiError> {
    let mut repairs = Repairs { start: header_start(raw), edits: Vec::new() };
    let (mut in_header, mut top, mut block, mut parts) = (true, true, 0usize, 0usize);
    let mut field: Option<Range<usize>> = None;
    let mut scan = Scan::default();
    let mut pos = repairs.start;
    while pos < raw.len() {
        let end = raw[pos..].iter().position(|c| *c == b'\n').map_or(raw.len(), |i| pos + i);
        let start = pos;
        pos = end + 1;
        let crlf = raw[start..end].ends_with(b"\r");
        let line = &raw[start..end - usize::from(crlf)];
        let eol: &'static [u8] = if crlf { b"\r\n" } else { b"\n" };
        if in_header {
            let continuation = line.first().is_some_and(|c| *c == b' ' || *c == b'\t') && field.is_some();
            if !continuation {
                if let Some(f) = field.take() {
                    check_field(raw, f, &mut scan, &mut repairs)?;
                }
            }
            if line.is_empty() || (!continuation && !is_field_line(line)) {
                in_header = false;
                scan.open_declared()?;
                let embedded = std::mem::take(&mut scan.embedded);
                if line.is_empty() {
                    // An attached message's own header block follows its part's (with its own multiparts).
                    if embedded {
                        (in_header, block) = (true, 0);
                    }
                    continue;
                }
                // Not a header field: the block ends here and this line is the first of the body (a delimiter, maybe).
                repairs.edits.push((start..start, Cow::Borrowed(eol)));
            } else {
                block += line.len() + 1;
                let limit = if top { MAX_HEADER_BLOCK } else { MAX_PART_HEADER_BLOCK };
                if block > limit {
                    return refuse(format!("a header block of more than {limit} bytes"));
                }
                // The field's bytes as they came, without the line break of its last line.
                field.get_or_insert(start..start).end = start + line.len();
                continue;
            }
        }
        let Some(rest) = line.strip_prefix(b"--") else { continue };
        // RFC 2046 §5.1.1: white space after a boundary is transport padding.
        let bare = rest.trim_ascii_end();
        let (name, closing) = match bare.strip_suffix(b"--") {
            Some(b) if scan.open.iter().any(|o| o == b) => (b, true),
            _ => (bare, false),
        };
        let Some(at) = scan.open.iter().rposition(|o| o == name) else { continue };
        parts += 1;
        if parts > MAX_PARTS {
            return refuse(format!("more than {MAX_PARTS} parts"));
        }
        scan.seen.insert(name.to_vec());
        if bare.len() < rest.len() {
            repairs.edits.push((start + 2 + bare.len()..start + line.len(), Cow::Borrowed(b"")));
        }
        // An enclosing part's boundary ends the parts inside it that were never closed (as Python's
        // `email` reads them): their closing delimiters go first, innermost first.
        // (One whose boundary never came has no parts: it is text, below.)
        for inner in scan.open.drain(at + 1..).rev().filter(|b| scan.seen.contains(b)) {
            let mut close = Vec::with_capacity(inner.len() + 6);
            close.extend_from_slice(b"--");
            close.extend_from_slice(&inner);
            close.extend_from_slice(b"--");
            close.extend_from_slice(eol);
            repairs.edits.push((start..start, Cow::Owned(close)));
        }
        if closing {
            scan.open.truncate(at);
        } else {
            // A part's header block follows its delimiter.
            (in_header, top, block) = (true, false, 0);
        }
    }
    if let Some(f) = field.take() {
        check_field(raw, f, &mut scan, &mut repairs)?;
    }
    // RFC 2046 §5.1.1: a multipart without a boundary, or whose boundary never comes, is not one;
    // its body is text (as Python's `email` reads it; mail-parser found no parts and lost it).
    let missing: Vec<Range<usize>> =
        scan.multiparts.iter().filter(|(b, _)| b.as_ref().is_none_or(|b| !scan.seen.contains(b))).map(|(_, r)| r.clone()).collect();
    if missing.len() > MAX_MISSING_BOUNDARIES {
        return refuse(format!("{} declared boundaries never appear (mailhook takes at most {MAX_MISSING_BOUNDARIES})", missing.len()));
    }
    for range in missing {
        repairs.edits.push((range, Cow::Borrowed(b" text/plain")));
    }
    // Text becomes UTF-8 (a byte that is not may become three), then is copied once more when
    // parts are joined; each part costs the parser a few hundred bytes; a repaired message is a copy.
    let high = raw.iter().filter(|b| **b >= 0x80).count();
    let copy = if repairs.edits.is_empty() { 0 } else { raw.len() };
    let bound = raw.len() + copy + 2 * (raw.len() + 2 * high) + 512 * parts;
    if bound > MEMORY_BUDGET {
        return Err(ApiError::BadRequest(format!(
            "the message may take {bound} bytes once decoded; mailhook takes at most {MEMORY_BUDGET}"
        )));
    }
    // Stable: edits at one place (closing delimiters before a delimiter) keep their order.
    repairs.edits.sort_by_key(|(r, _)| r.start);
    Ok(repairs)
}

/// What the scan knows of the message's structure.
#[derive(Default)]
struct Scan {
    /// The multiparts whose body is being read, outermost first: their boundaries.
    open: Vec<Vec<u8>>,
    /// The boundary the header block being read declares, if it declares a multipart.
    declared: Option<Vec<u8>>,
    /// The header block being read declares an attached message (`message/rfc822`, `message/global`).
    embedded: bool,
    /// Every multipart `Content-Type`: its boundary (if any) and where its media type is written.
    multiparts: Vec<(Option<Vec<u8>>, Range<usize>)>,
    /// The boundaries a delimiter line followed.
    seen: HashSet<Vec<u8>>,
}

impl Scan {
    /// A header block ended: the multipart it declared is open from here.
    fn open_declared(&mut self) -> Result<(), ApiError> {
        if let Some(b) = self.declared.take() {
            if self.open.contains(&b) {
                return refuse(
                    "a nested multipart reuses the boundary of a part that encloses it, so its parts cannot be told apart".into(),
                );
            }
            // `--ab` is a delimiter of `ab` only, but a parser that matches a boundary by its start reads it
            // as one of `a` too: a nested boundary that begins an enclosing one makes the parts ambiguous.
            // (The reverse, `X` enclosing `X.REL`, is how Eudora writes them, and parsers agree on it.)
            if self.open.iter().any(|o| o.len() > b.len() && o.starts_with(&b)) {
                return refuse(
                    "a nested multipart's boundary is the beginning of an enclosing one's, so its parts cannot be told apart".into(),
                );
            }
            self.open.push(b);
        }
        Ok(())
    }
}

/// Where the headers start: after blank (or white-space-only) lines and an mbox `From ` line.
fn header_start(raw: &[u8]) -> usize {
    let mut pos = 0;
    let mut first = true;
    while pos < raw.len() {
        let end = raw[pos..].iter().position(|c| *c == b'\n').map_or(raw.len(), |i| pos + i);
        let line = &raw[pos..end];
        let skip = line.iter().all(u8::is_ascii_whitespace) || (first && line.starts_with(b"From "));
        if !skip {
            break;
        }
        first = false;
        pos = end + 1;
    }
    pos.min(raw.len())
}

/// A header field's first line: a name of printable characters but the colon, then a colon (RFC 5322 §2.2).
fn is_field_line(line: &[u8]) -> bool {
    match line.iter().position(|c| *c == b':') {
        Some(colon) => line[..colon].iter().all(|c| (0x21..=0x7e).contains(c)),
        None => false,
    }
}

/// Checks one header field (`raw[range]`, its lines as they came) of a header block, records
/// the boundary it declares, and the repairs of its `Content-Type` or encoded words.
fn check_field(raw: &[u8], range: Range<usize>, scan: &mut Scan, repairs: &mut Repairs) -> Result<(), ApiError> {
    let text = &raw[range.clone()];
    let Some(colon) = text.iter().position(|c| *c == b':') else { return Ok(()) };
    let name = text[..colon].trim_ascii();
    let content_type = name.eq_ignore_ascii_case(b"content-type");
    if !(content_type || name.eq_ignore_ascii_case(b"content-disposition")) {
        return Ok(());
    }
    if text.len() > MAX_MIME_FIELD {
        return refuse(format!("a {} field of more than {MAX_MIME_FIELD} bytes", String::from_utf8_lossy(name)));
    }
    let value_at = range.start + colon + 1;
    let value = &raw[value_at..range.end];
    if content_type {
        // RFC 2045 §5.2: an invalid media type is `text/plain` (its parameters, the charset among them, are kept).
        let kind = value.split(|c| *c == b';').next().unwrap_or_default();
        let lead = kind.len() - kind.trim_ascii_start().len();
        let media = value_at..value_at + kind.trim_ascii_end().len().max(lead);
        if !valid_media_type(kind.trim_ascii()) {
            repairs.edits.push((media, Cow::Borrowed(b" text/plain")));
        } else if [&b"message/rfc822"[..], b"message/global"].iter().any(|m| kind.trim_ascii().eq_ignore_ascii_case(m)) {
            scan.embedded = true;
        } else if kind.trim_ascii().to_ascii_lowercase().starts_with(b"multipart/") {
            let boundary = boundary_of(value);
            scan.declared.clone_from(&boundary);
            scan.multiparts.push((boundary, media));
        }
    }
    // RFC 2047 §6.2: white space between two encoded words is not part of the text.
    let mut i = 0;
    while let Some(at) = find(&value[i..], b"?=").map(|a| a + i + 2) {
        let gap = value[at..].iter().take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n')).count();
        if gap > 0 && value[at + gap..].starts_with(b"=?") {
            repairs.edits.push((value_at + at..value_at + at + gap, Cow::Borrowed(b"")));
        }
        i = at;
    }
    let joined: Vec<u8> = value.iter().copied().filter(|c| *c != b'\r' && *c != b'\n').collect();
    let mut segments = 0;
    for param in joined.split(|c| *c == b';') {
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
        let n = param_value(&param[eq + 1..]).len();
        if pname == b"boundary" && n > MAX_BOUNDARY_LEN {
            return refuse(format!("a boundary of {n} characters (RFC 2046 allows 70; mailhook takes {MAX_BOUNDARY_LEN})"));
        }
    }
    Ok(())
}

/// A parameter's value: quoted (up to its closing quote) or a token.
fn param_value(v: &[u8]) -> &[u8] {
    let v = v.trim_ascii();
    v.strip_prefix(b"\"").map(|q| q.split(|c| *c == b'"').next().unwrap_or(q)).unwrap_or(v)
}

/// The `boundary` parameter of a `Content-Type` value (its lines joined), if it has one.
fn boundary_of(value: &[u8]) -> Option<Vec<u8>> {
    let joined: Vec<u8> = value.iter().copied().filter(|c| *c != b'\r' && *c != b'\n').collect();
    joined.split(|c| *c == b';').skip(1).find_map(|param| {
        let eq = param.iter().position(|c| *c == b'=')?;
        let b = param_value(&param[eq + 1..]);
        (param[..eq].trim_ascii().eq_ignore_ascii_case(b"boundary") && !b.is_empty()).then(|| b.to_vec())
    })
}

/// `type/subtype`, each an RFC 2045 token.
fn valid_media_type(t: &[u8]) -> bool {
    let token = |s: &[u8]| !s.is_empty() && s.iter().all(|c| c.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(c));
    match t.iter().position(|c| *c == b'/') {
        Some(slash) => token(t[..slash].trim_ascii()) && token(t[slash + 1..].trim_ascii()),
        None => false,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(raw: &str) -> String {
        let r = guard(raw.as_bytes()).unwrap();
        String::from_utf8(r.apply(raw.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn a_line_that_is_no_header_field_starts_the_body() {
        assert_eq!(
            fixed("From: a@b.c\r\nSubject: hi\r\nno colon here\r\nmore\r\n"),
            "From: a@b.c\r\nSubject: hi\r\n\r\nno colon here\r\nmore\r\n"
        );
        assert_eq!(fixed("From: a@b.c\nbad name: x\n\nbody\n"), "From: a@b.c\n\nbad name: x\n\nbody\n");
        // Folded lines and a proper block are left as they are.
        let ok = "From: a@b.c\r\nSubject: a\r\n long\r\n\r\nbody: not a header\r\n";
        assert_eq!(fixed(ok), ok);
        assert_eq!(guard(ok.as_bytes()).unwrap(), Repairs::default());
    }

    #[test]
    fn blank_lines_and_an_mbox_line_before_the_headers_are_skipped() {
        assert_eq!(fixed(" \r\n\r\nFrom: a@b.c\r\n\r\nx\r\n"), "From: a@b.c\r\n\r\nx\r\n");
        assert_eq!(fixed("From a@b.c Mon Jan  1 00:00:00 2024\nFrom: a@b.c\n\nx\n"), "From: a@b.c\n\nx\n");
    }

    #[test]
    fn an_invalid_content_type_is_text_plain_with_its_parameters() {
        assert_eq!(fixed("Content-Type: text; charset=us-ascii\r\n\r\nx\r\n"), "Content-Type: text/plain; charset=us-ascii\r\n\r\nx\r\n");
        assert_eq!(fixed("Content-Type: ;\r\n\r\nx\r\n"), "Content-Type: text/plain;\r\n\r\nx\r\n");
        assert_eq!(fixed("Content-Type:\r\n\r\nx\r\n"), "Content-Type: text/plain\r\n\r\nx\r\n");
        let ok = "Content-Type: text/html; charset=utf-8\r\n\r\nx\r\n";
        assert_eq!(fixed(ok), ok);
    }

    #[test]
    fn encoded_words_in_a_parameter_are_joined() {
        let raw =
            "Content-Type: application/pdf;\r\n name=\"=?iso-8859-2?Q?Umowa_sygn?=\r\n       =?iso-8859-2?Q?=2E_2Ds.pdf?=\"\r\n\r\nx\r\n";
        assert_eq!(
            fixed(raw),
            "Content-Type: application/pdf;\r\n name=\"=?iso-8859-2?Q?Umowa_sygn?==?iso-8859-2?Q?=2E_2Ds.pdf?=\"\r\n\r\nx\r\n"
        );
        // A word and an encoded word keep their space.
        let word = "Content-Type: application/pdf; name=\"Umowa =?utf-8?Q?x?=\"\r\n\r\nx\r\n";
        assert_eq!(fixed(word), word);
    }

    #[test]
    fn part_header_blocks_are_repaired_too_and_bodies_never() {
        let raw = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text\r\nno colon\r\n\r\nx\r\n--b--\r\n";
        assert_eq!(
            fixed(raw),
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nno colon\r\n\r\nx\r\n--b--\r\n"
        );
        let quoted = "From: a@b.c\r\n\r\nContent-Type: text\r\nno colon\r\n";
        assert_eq!(fixed(quoted), quoted);
    }
}
