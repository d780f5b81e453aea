//! `Content-Transfer-Encoding: x-uuencode` (also `x-uue`, `uuencode`, `uue`), which
//! mail-parser leaves as it came: the `begin MODE NAME` … `end` block decoded.

use mail_parser::{HeaderName, MessagePart};

/// A uuencoded part, decoded: its bytes, and the file name of its `begin` line.
pub struct Decoded<'a> {
    pub bytes: Vec<u8>,
    pub name: Option<&'a str>,
}

/// A part's `Content-Transfer-Encoding` as written, in lower case (mail-parser's own reading
/// forgets an encoding it could not apply).
pub fn transfer_encoding(raw: &[u8], part: &MessagePart) -> Option<String> {
    let encoding = part.headers.iter().find(|h| h.name == HeaderName::ContentTransferEncoding)?;
    let value = raw.get(encoding.offset_start as usize..encoding.offset_end as usize)?;
    Some(String::from_utf8_lossy(value).trim().to_ascii_lowercase())
}

/// The part's content decoded, when its transfer encoding says uuencode and it holds a `begin` line.
pub fn of_part<'a>(raw: &'a [u8], part: &MessagePart) -> Option<Decoded<'a>> {
    if !matches!(transfer_encoding(raw, part)?.as_str(), "x-uuencode" | "x-uue" | "uuencode" | "uue") {
        return None;
    }
    let end = (part.offset_end as usize).min(raw.len());
    decode(raw.get(part.offset_body as usize..end)?)
}

/// Decodes the first `begin` … `end` block of `text`; `None` without a `begin` line.
pub fn decode(text: &[u8]) -> Option<Decoded<'_>> {
    let mut lines = text.split(|c| *c == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let begin = lines.find(|l| l.starts_with(b"begin "))?;
    // `begin 644 name.txt`: the name is what follows the mode.
    let name = std::str::from_utf8(begin).ok().and_then(|b| b.splitn(3, ' ').nth(2)).map(str::trim).filter(|n| !n.is_empty());
    let mut bytes = Vec::new();
    for line in lines {
        if line.starts_with(b"end") && line.trim_ascii_end() == b"end" {
            break;
        }
        let Some((&first, rest)) = line.split_first() else { continue };
        let n = usize::from(first.wrapping_sub(b' ') & 0x3f);
        if n == 0 {
            continue;
        }
        let sextet = |c: u8| c.wrapping_sub(b' ') & 0x3f;
        let mut line_bytes = Vec::with_capacity(n + 2);
        for group in rest.chunks(4) {
            let g: Vec<u8> = (0..4).map(|i| sextet(group.get(i).copied().unwrap_or(b'`'))).collect();
            line_bytes.push((g[0] << 2) | (g[1] >> 4));
            line_bytes.push((g[1] << 4) | (g[2] >> 2));
            line_bytes.push((g[2] << 6) | g[3]);
        }
        line_bytes.truncate(n);
        bytes.extend_from_slice(&line_bytes);
    }
    Some(Decoded { bytes, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_classic_block() {
        // `uuencode` of "Cat" and of 45 bytes (a full line).
        let d = decode(b"begin 644 cat.txt\n#0V%T\n`\nend\n").unwrap();
        assert_eq!((d.bytes.as_slice(), d.name), (&b"Cat"[..], Some("cat.txt")));
        let line = b"begin 600 a.bin\r\nM86)C9&5F9VAI:FML;6YO<'%R<W1U=G=X>7I!0D-$149'2$E*2TQ-3D]045)3\r\n`\r\nend\r\n";
        assert_eq!(decode(line).unwrap().bytes, b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS");
        assert!(decode(b"no block here\n").is_none());
    }

    #[test]
    fn garbage_never_panics() {
        for junk in [&b"begin \n\xff\xfe\n"[..], b"begin 644\nM\n", b"begin 644 x\n~~~~~~~~\nend", b"begin"] {
            let _ = decode(junk);
        }
    }
}
