//! A large event as stored in R2 (a manifest beside the body) and how the
//! consumer reads it back: one ranged read per ascending run of parts.

use super::{EventBody, Part};

/// How the consumer reads a stored event's parts: one ranged read of the
/// body per run of parts whose ranges ascend (usually two: the large strings
/// in order, then `data.raw`), not one per part, which would cost a
/// subrequest per attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Lit(String),
    /// Read `start..end` of the body and keep the `pieces` of it, in order.
    Run {
        start: u64,
        end: u64,
        pieces: Vec<Piece>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Range([u64; 2]),
}

pub fn read_plan(parts: &[Part]) -> Vec<Read> {
    let mut plan = Vec::new();
    for part in parts {
        match (part, plan.last_mut()) {
            (Part::Lit(s), Some(Read::Run { pieces, .. })) => pieces.push(Piece::Lit(s.clone())),
            (Part::Lit(s), _) => plan.push(Read::Lit(s.clone())),
            (Part::Body([a, b]), _) if b <= a => {}
            (Part::Body([a, b]), Some(Read::Run { end, pieces, .. })) if *a >= *end => {
                pieces.push(Piece::Range([*a, *b]));
                *end = *b;
            }
            (Part::Body([a, b]), _) => plan.push(Read::Run { start: *a, end: *b, pieces: vec![Piece::Range([*a, *b])] }),
        }
    }
    plan
}

/// Turns the chunks of one run's read into the run's output.
#[derive(Debug)]
pub struct RunCursor {
    pieces: std::collections::VecDeque<Piece>,
    /// The body offset of the next byte read.
    pos: u64,
}

impl RunCursor {
    pub fn new(start: u64, pieces: Vec<Piece>) -> Self {
        RunCursor { pieces: pieces.into(), pos: start }
    }

    /// The output for the next `chunk` of the run: its literals and the bytes of its ranges, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let end = self.pos + chunk.len() as u64;
        while let Some(piece) = self.pieces.front() {
            match piece {
                Piece::Lit(s) => out.extend_from_slice(s.as_bytes()),
                Piece::Range([a, b]) => {
                    let (from, to) = ((*a).max(self.pos), (*b).min(end));
                    if from < to {
                        out.extend_from_slice(&chunk[(from - self.pos) as usize..(to - self.pos) as usize]);
                    }
                    if *b > end {
                        break;
                    }
                }
            }
            self.pieces.pop_front();
        }
        self.pos = end;
        out
    }

    /// What follows the run's last byte (its trailing literals), or an error
    /// when the read ended before a range did.
    pub fn finish(mut self) -> Result<Vec<u8>, String> {
        let out = self.feed(&[]);
        match self.pieces.is_empty() {
            true => Ok(out),
            false => Err(format!("the stored body ended at byte {} before its manifest's ranges did", self.pos)),
        }
    }
}

/// The first bytes of a stored event: a magic word and the manifest's length.
pub const STORED_HEADER_LEN: u64 = 8;
const STORED_MAGIC: &[u8; 4] = b"MHP1";

/// A stored event's manifest object: `STORED_HEADER_LEN` bytes of header,
/// then the manifest (`EventBody` as JSON), whose `Part::Body` ranges point
/// into the request body, stored beside it as its own object.
pub fn stored_prefix(event: &EventBody) -> Vec<u8> {
    let manifest = serde_json::to_vec(event).unwrap_or_default();
    let mut out = Vec::with_capacity(manifest.len() + STORED_HEADER_LEN as usize);
    out.extend_from_slice(STORED_MAGIC);
    out.extend_from_slice(&(manifest.len() as u32).to_be_bytes());
    out.extend_from_slice(&manifest);
    out
}

/// No manifest is larger: it holds an event's small fields and a range per large string.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// The manifest's length, from a stored event's first `STORED_HEADER_LEN`
/// bytes (`None` when they are not a stored event's, or claim an absurd size).
pub fn manifest_len(header: &[u8]) -> Option<u64> {
    let len: [u8; 4] = header.strip_prefix(STORED_MAGIC)?.get(..4)?.try_into().ok()?;
    Some(u64::from(u32::from_be_bytes(len))).filter(|l| *l <= MAX_MANIFEST_BYTES)
}

/// The manifest of a stored event, checked against the length of the body it points into.
pub fn parse_manifest(manifest: &[u8], body_len: u64) -> Result<EventBody, String> {
    let event: EventBody = serde_json::from_slice(manifest).map_err(|e| format!("the stored event's manifest is unreadable: {e}"))?;
    for p in &event.parts {
        if let Part::Body([a, b]) = p {
            if a > b || *b > body_len {
                return Err(format!("the stored event's manifest has a range {a}..{b} outside its {body_len}-byte body"));
            }
        }
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::large::*;

    #[test]
    fn reads_are_merged_into_ascending_runs_and_sliced_exactly() {
        let body = b"0123456789abcdefghij";
        let parts = vec![
            Part::Lit("{".into()),
            Part::Body([2, 4]),
            Part::Lit(",".into()),
            Part::Body([6, 9]),
            Part::Body([9, 9]),
            Part::Body([12, 15]),
            Part::Lit(",raw:".into()),
            Part::Body([0, 20]),
            Part::Lit("}".into()),
        ];
        let plan = read_plan(&parts);
        assert_eq!(plan.len(), 3, "{plan:?}");
        let want = EventBody { parts: parts.clone() }.materialise(body);
        for chunk in [1, 2, 3, 7, 20] {
            let mut out = Vec::new();
            for r in &plan {
                match r {
                    Read::Lit(s) => out.extend_from_slice(s.as_bytes()),
                    Read::Run { start, end, pieces } => {
                        let mut c = RunCursor::new(*start, pieces.clone());
                        for piece in body[*start as usize..*end as usize].chunks(chunk) {
                            out.extend(c.feed(piece));
                        }
                        out.extend(c.finish().unwrap());
                    }
                }
            }
            assert_eq!(out, want, "chunks of {chunk}");
        }
        // A read that ends short of a range is an error, not a short event.
        let mut c = RunCursor::new(0, vec![Piece::Range([0, 10])]);
        c.feed(b"01234");
        assert!(c.finish().is_err());
    }
    #[test]
    fn stored_objects_carry_their_manifest() {
        let e = EventBody { parts: vec![Part::Lit("{\"a\":".into()), Part::Body([3, 9]), Part::Lit("}".into())] };
        let prefix = stored_prefix(&e);
        let mlen = manifest_len(&prefix[..8]).unwrap();
        assert_eq!(mlen + 8, prefix.len() as u64);
        assert_eq!(parse_manifest(&prefix[8..], 9).unwrap(), e);
        assert!(parse_manifest(&prefix[8..], 8).is_err(), "a range past the body");
        assert_eq!(manifest_len(b"XXXX0000"), None);
        assert_eq!(manifest_len(b"MHP1\xff\xff\xff\xff"), None, "a corrupted length allocates nothing");
        assert!(parse_manifest(br#"{"parts":[{"body":[9,3]}]}"#, 100).is_err());
        assert!(parse_manifest(b"not json", 100).is_err());
    }
}
