//! A JSON string literal decoded as its bytes arrive, in chunks of any size:
//! its escapes (`Unescaper`), and the base64 it holds (`Base64Decoder`).
//! Ingest uses them to hash a large string it never builds; an attachment's
//! link streams its bytes through both, from R2 to the client.

/// The bytes of the string a JSON literal (quotes included) stands for, as
/// its chunks arrive. Refuses what is not one literal: no opening quote, a
/// control character, a bad escape or surrogate, bytes after the closing quote.
#[derive(Debug, Default)]
pub struct Unescaper {
    state: State,
    /// A `\u` escape's hex digits so far.
    hex: Vec<u8>,
    /// A high surrogate waiting for its low half.
    high: Option<u32>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Open,
    Text,
    Escape,
    /// After a high surrogate's escape: expecting `\`, then `u`.
    LowSlash,
    LowU,
    Unicode,
    Closed,
}

impl Unescaper {
    /// Feeds the next chunk of the literal; the decoded bytes go to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut impl FnMut(&[u8])) -> Result<(), String> {
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            match self.state {
                State::Open if b == b'"' => self.state = State::Text,
                State::Open => return Err("not a JSON string".into()),
                State::Text => {
                    let run = chunk[i..].iter().position(|b| *b == b'\\' || *b == b'"' || *b < 0x20).unwrap_or(chunk.len() - i);
                    if run > 0 {
                        out(&chunk[i..i + run]);
                        i += run;
                        continue;
                    }
                    match b {
                        b'"' => self.state = State::Closed,
                        b'\\' => self.state = State::Escape,
                        _ => return Err("a control character in a string".into()),
                    }
                }
                State::Escape => {
                    let simple = match b {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            self.state = State::Unicode;
                            i += 1;
                            continue;
                        }
                        _ => return Err("an invalid escape in a string".into()),
                    };
                    out(&[simple]);
                    self.state = State::Text;
                }
                State::LowSlash if b == b'\\' => self.state = State::LowU,
                State::LowU if b == b'u' => self.state = State::Unicode,
                State::LowSlash | State::LowU => return Err("a lone surrogate in a string".into()),
                State::Unicode => {
                    self.hex.push(b);
                    if self.hex.len() == 4 {
                        self.unicode(out)?;
                    }
                }
                State::Closed => return Err("bytes after the end of a string".into()),
            }
            i += 1;
        }
        Ok(())
    }

    fn unicode(&mut self, out: &mut impl FnMut(&[u8])) -> Result<(), String> {
        let hex = std::str::from_utf8(&self.hex).ok().and_then(|h| u32::from_str_radix(h, 16).ok()).ok_or("a bad \\u escape")?;
        self.hex.clear();
        let code = match (self.high.take(), hex) {
            (None, 0xD800..=0xDBFF) => {
                self.high = Some(hex);
                self.state = State::LowSlash;
                return Ok(());
            }
            (Some(high), 0xDC00..=0xDFFF) => 0x10000 + ((high - 0xD800) << 10) + (hex - 0xDC00),
            (Some(_), _) | (None, 0xDC00..=0xDFFF) => return Err("a lone surrogate in a string".into()),
            (None, code) => code,
        };
        let c = char::from_u32(code).ok_or("a bad \\u escape")?;
        out(c.encode_utf8(&mut [0; 4]).as_bytes());
        self.state = State::Text;
        Ok(())
    }

    /// Checks that the literal ended with its closing quote.
    pub fn finish(&self) -> Result<(), String> {
        match self.state {
            State::Closed => Ok(()),
            _ => Err("the string ends before its closing quote".into()),
        }
    }
}

/// Each byte's value in base64: a sextet, or `PAD` (`=`, the end) or `SKIP` (outside the alphabet).
const SEXTET: [u8; 256] = {
    let mut t = [SKIP; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t[b'=' as usize] = PAD;
    t
};
const PAD: u8 = 0x80;
const SKIP: u8 = 0x81;

/// Base64 decoded as it arrives, as RFC 2045 §6.8 reads it: what is outside
/// the alphabet (white space, line breaks) is left out, `=` ends the data, and
/// a last group of two or three symbols still gives its one or two bytes.
#[derive(Debug, Default)]
pub struct Base64Decoder {
    bits: u32,
    symbols: u8,
    ended: bool,
    /// Bytes decoded so far.
    pub len: u64,
}

impl Base64Decoder {
    /// Decodes the next chunk, giving each group of three bytes to `emit`: four symbols at a time
    /// while they come in whole groups, one at a time around anything else.
    fn run(&mut self, chunk: &[u8], mut emit: impl FnMut([u8; 3])) {
        let mut i = 0;
        while i < chunk.len() && !self.ended {
            if self.symbols == 0 {
                if let Some(&[a, b, c, d]) = chunk.get(i..i + 4).and_then(|g| <&[u8; 4]>::try_from(g).ok()) {
                    let (a, b, c, d) = (SEXTET[a as usize], SEXTET[b as usize], SEXTET[c as usize], SEXTET[d as usize]);
                    if (a | b | c | d) & 0x80 == 0 {
                        let bits = (u32::from(a) << 18) | (u32::from(b) << 12) | (u32::from(c) << 6) | u32::from(d);
                        emit([(bits >> 16) as u8, (bits >> 8) as u8, bits as u8]);
                        self.len += 3;
                        i += 4;
                        continue;
                    }
                }
            }
            let b = chunk[i];
            i += 1;
            match SEXTET[b as usize] {
                PAD => self.ended = true,
                SKIP => {}
                v => {
                    self.bits = (self.bits << 6) | u32::from(v);
                    self.symbols += 1;
                    if self.symbols == 4 {
                        emit([(self.bits >> 16) as u8, (self.bits >> 8) as u8, self.bits as u8]);
                        self.len += 3;
                        (self.bits, self.symbols) = (0, 0);
                    }
                }
            }
        }
    }

    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() / 4 * 3 + 3);
        self.run(chunk, |g| out.extend_from_slice(&g));
    }

    /// Counts the next chunk's bytes (`len`) without keeping them.
    pub fn count(&mut self, chunk: &[u8]) {
        self.run(chunk, |_| {});
    }

    /// The last one or two bytes, from a final group of three or two symbols.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let tail: &[u8] = match self.symbols {
            2 => &[(self.bits >> 4) as u8],
            3 => &[(self.bits >> 10) as u8, (self.bits >> 2) as u8],
            _ => &[],
        };
        out.extend_from_slice(tail);
        self.len += tail.len() as u64;
        (self.bits, self.symbols, self.ended) = (0, 0, true);
    }
}

/// The bytes of a whole base64 text.
pub fn base64_bytes(text: &[u8]) -> Vec<u8> {
    let (mut d, mut out) = (Base64Decoder::default(), Vec::with_capacity(text.len() / 4 * 3 + 3));
    d.feed(text, &mut out);
    d.finish(&mut out);
    out
}

/// The length of what a base64 text decodes to, without keeping it.
pub fn base64_len(text: &[u8]) -> u64 {
    let mut d = Base64Decoder::default();
    d.count(text);
    d.finish(&mut Vec::new());
    d.len
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn unescape(literal: &[u8], chunk: usize) -> Result<Vec<u8>, String> {
        let (mut u, mut out) = (Unescaper::default(), Vec::new());
        for c in literal.chunks(chunk.max(1)) {
            u.feed(c, &mut |b: &[u8]| out.extend_from_slice(b))?;
        }
        u.finish().map(|()| out)
    }

    #[test]
    fn literals_decode_alike_in_any_chunks() {
        let s = "a\"b\\c/\u{8}\u{c}\n\r\t é😀 \u{1}";
        let literal = serde_json::to_string(s).unwrap();
        let escaped = r#""\u00e9\ud83d\ude00\/\u0041""#;
        for chunk in 1..12 {
            assert_eq!(unescape(literal.as_bytes(), chunk).unwrap(), s.as_bytes(), "chunks of {chunk}");
            assert_eq!(unescape(escaped.as_bytes(), chunk).unwrap(), "é😀/A".as_bytes());
        }
        for bad in [r#"abc"#, r#""abc"#, "\"a\nb\"", r#""\x""#, r#""\ud83d""#, r#""\ud83dx""#, r#""\ude00""#, r#""\u12G4""#, r#""a"b"#] {
            assert!(unescape(bad.as_bytes(), 1).is_err() && unescape(bad.as_bytes(), 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_decodes_as_the_standard_decoder_does_and_skips_what_is_not_base64() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for n in [0, 1, 2, 3, 4, 5, 999, 1000] {
            let text = base64::engine::general_purpose::STANDARD.encode(&bytes[..n]);
            let wrapped: Vec<u8> = text.as_bytes().chunks(76).flat_map(|l| [l, b"\r\n"].concat()).collect();
            for chunk in [1, 3, 7, 100] {
                let (mut d, mut out) = (Base64Decoder::default(), Vec::new());
                wrapped.chunks(chunk).for_each(|c| d.feed(c, &mut out));
                d.finish(&mut out);
                assert_eq!(out, &bytes[..n], "{n} bytes in chunks of {chunk}");
                assert_eq!(d.len, n as u64);
                assert_eq!(base64_len(text.as_bytes()), n as u64);
            }
        }
        assert_eq!(base64_bytes(b"QU JD\n"), b"ABC");
        assert_eq!(base64_bytes(b"QQ==QUJD"), b"A", "= ends the data");
        assert_eq!(base64_bytes(b"Q*U?J.D"), b"ABC", "what is outside the alphabet is left out");
        assert_eq!(base64_len(b"QUJ"), 2);
    }

    #[test]
    fn base64_sizes_match_decoding() {
        let e = base64::engine::general_purpose::STANDARD;
        for len in [0usize, 1, 2, 3, 4, 5, 100, 1001] {
            let data = vec![7u8; len];
            let text = e.encode(&data);
            assert_eq!(base64_len(text.as_bytes()), len as u64, "{len}");
            let wrapped: String = text.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\r\n");
            assert_eq!(base64_len(wrapped.as_bytes()), len as u64, "{len} wrapped");
        }
    }
}
