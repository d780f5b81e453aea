//! The text rules of `reply`: where the quoted history starts, and the signature.

use super::words::*;

/// What the text rules found.
pub(super) struct Read {
    pub reply: Option<String>,
    /// True when a rule found quoted history.
    pub history: bool,
}

/// The rule that starts the quoted history at a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// "On … wrote:" on one line or wrapped over up to four: the number of lines.
    QuoteHeader(usize),
    /// A quote header that starts after the sender's text on the same line, at this byte.
    SharedLine(usize),
    /// A line of dashes around a few words: "-----Original Message-----", "---- Ann wrote ----".
    Separator,
    Forwarded,
    HeaderBlock,
    Quoted,
}

pub(super) fn read_text(text: &str) -> Read {
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let Some((mut at, rule)) = (0..lines.len()).find_map(|i| rule_at(&lines, i).map(|r| (i, r))) else {
        return Read { reply: Some(without_signature(&lines)), history: false };
    };
    // Outlook draws a rule of underscores above its header block.
    if rule == Rule::HeaderBlock && at > 0 && lines[at - 1].trim().len() >= 5 && lines[at - 1].trim().chars().all(|c| c == '_') {
        at -= 1;
    }
    let mut above: Vec<&str> = lines[..at].to_vec();
    if let Rule::SharedLine(cut) = rule {
        above.push(lines[at].get(..cut).unwrap_or_default().trim_end_matches(['-', ' ']));
    }
    if rule == Rule::Quoted && above.iter().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| looks_like_header(l)) {
        // Quotes under a line that reads like a header no rule knows (another language, another verb): unsure.
        return Read { reply: None, history: true };
    }
    if !is_blank(&above) {
        // Top-posting, unless the sender wrote more below the quotes: unsure then.
        return Read { reply: (!text_after_quotes(&lines[at..], rule)).then(|| without_signature(&above)), history: true };
    }
    // Bottom-posting: the history first, then the answer, if the history is one block.
    let reply = match rule {
        Rule::QuoteHeader(_) | Rule::Quoted => {
            let start = at + if let Rule::QuoteHeader(n) = rule { n } else { 0 };
            let end = (start..lines.len()).find(|&i| !is_quoted(lines[i]) && !lines[i].trim().is_empty()).unwrap_or(lines.len());
            let below = &lines[end..];
            match below.iter().any(|l| is_quoted(l)) || (0..below.len()).any(|i| rule_at(below, i).is_some()) {
                true => None,
                false => Some(without_signature(below)),
            }
        }
        // A forward or a separator with nothing above: the sender wrote nothing.
        Rule::Separator | Rule::Forwarded | Rule::SharedLine(_) => Some(String::new()),
        // Header fields first: a forward from Outlook, or a pasted log or memo; unsure.
        Rule::HeaderBlock => None,
    };
    Read { reply, history: true }
}

/// True when, below a quote header or a `>` line, the `>` lines are followed by text that is no signature
/// (an answer between quotes, a sign-off below them, or a `>` that was no quote): the sender's words are not
/// all above.
fn text_after_quotes(history: &[&str], rule: Rule) -> bool {
    let start = match rule {
        Rule::QuoteHeader(n) => n,
        Rule::Quoted | Rule::SharedLine(_) => usize::from(rule != Rule::Quoted),
        _ => return false,
    };
    let Some(rest) = history.get(start..) else { return false };
    let mut in_quote = false;
    for line in rest {
        if is_quoted(line) {
            in_quote = true;
        } else if !line.trim().is_empty() && in_quote {
            return !is_signature_start(line);
        }
    }
    false
}

fn rule_at(lines: &[&str], i: usize) -> Option<Rule> {
    let line = lines[i].trim();
    if line.is_empty() {
        return None;
    }
    if is_quoted(line) {
        return Some(Rule::Quoted);
    }
    // Every other rule needs a colon, a dash or an address's `>` in this line, or a header ending in the next three.
    let ends_header = |l: &&str| l.trim_end().ends_with([':', '>']);
    if !line.contains([':', '-', '>']) && !lines.iter().skip(i + 1).take(3).any(ends_header) {
        return None;
    }
    let lower = line.to_lowercase();
    let bare = lower.trim_matches(|c: char| c == '-' || c == ' ' || c == ':' || c == '_');
    if FORWARDED.contains(&bare) && (lower.starts_with("--") || lower.ends_with(':')) {
        return Some(Rule::Forwarded);
    }
    // "-----Original Message-----", "---- Ann wrote ----", "------On 12/29/1987, Ann wrote-----".
    let says = bare.trim_end_matches(':');
    let wrote = WROTE.iter().any(|w| says.ends_with(w)) && (OPENERS.iter().any(|o| says.starts_with(&o.to_lowercase())) || !dated(says));
    if lower.starts_with("--") && lower.ends_with("--") && (ORIGINAL.contains(&says) || wrote) {
        return Some(Rule::Separator);
    }
    if is_header_block(lines, i) {
        return Some(Rule::HeaderBlock);
    }
    if let Some(at) = shared_line(line) {
        return Some(Rule::SharedLine(at + (lines[i].len() - lines[i].trim_start().len())));
    }
    quote_header_from(lines, i).map(Rule::QuoteHeader)
}

/// The lines of a quote header that starts at line `i` (up to four, wrapped at a long name or address):
/// the shortest that ends at its last line, so that text above a header is never taken for its start.
fn quote_header_from(lines: &[&str], i: usize) -> Option<usize> {
    let next_text = |e: usize| lines.iter().skip(e + 1).find(|l| !l.trim().is_empty()).copied();
    let mut joined = String::new();
    for e in i..(i + 4).min(lines.len()) {
        if e > i && lines[e].trim().is_empty() {
            return None;
        }
        joined.push_str(lines[e].trim());
        joined.push(' ');
        if is_quote_header(joined.trim_end(), next_text(e), false) {
            let shorter = (i + 1..=e).any(|s| is_quote_header(&join(&lines[s..=e]), next_text(e), true));
            return (!shorter).then_some(e - i + 1);
        }
    }
    None
}

fn join(lines: &[&str]) -> String {
    lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
}

/// Where a dated quote header starts after other text on one line ("reply On Wed, … wrote:"): at a word
/// of `OPENERS`, in a line that does not start with one.
fn shared_line(line: &str) -> Option<usize> {
    if OPENERS.iter().any(|o| line.starts_with(o)) {
        return None;
    }
    let from = line.len().saturating_sub(MAX_HEADER_BYTES);
    OPENERS
        .iter()
        .filter_map(|o| {
            line.match_indices(o).map(|(at, _)| at).find(|&at| at > 0 && at >= from && is_quote_header(&line[at..], None, true))
        })
        .min()
}

/// The longest quote header read, in bytes (300 characters of at most 4 bytes).
const MAX_HEADER_BYTES: usize = 1200;

/// "On Tue, 5 Dec 2026 at 10:00, Ann <ann@example.net> wrote:" and its kin: at most 300 characters, with
/// a date (a digit outside addresses), ending in one of `WROTE` and a colon, and opened by a word of
/// `OPENERS`, holding an address or followed by quoted lines (so that prose such as "In 2019 the auditor
/// wrote:" is none); or, as Gmail in Russian and Ukrainian writes it, ending in an address and a colon; or,
/// as old Gmail did ("2011/4/7 Ann <ann@example.net>"), in an address: those two with quoted lines next.
/// Unless `strict`, an address with quoted lines next stands for the date ("Name <ann@example.com> wrote:").
fn is_quote_header(line: &str, next: Option<&str>, strict: bool) -> bool {
    let quoted_next = next.is_some_and(is_quoted);
    if line.len() > MAX_HEADER_BYTES || !line.ends_with([':', '>']) || !line.bytes().any(|b| b.is_ascii_digit() || b == b'@') {
        return false;
    }
    let addressed = !strict && line.contains('@') && quoted_next;
    if line.chars().count() > 300 || !(dated(line) || addressed) {
        return false;
    }
    let lower = line.to_lowercase();
    let Some(head) = lower.strip_suffix(':').map(str::trim_end) else {
        return lower.ends_with('>') && lower.contains('@') && quoted_next;
    };
    let opened = OPENERS.iter().any(|o| line.starts_with(o));
    let verb_inside = opened && WROTE.iter().any(|w| head.match_indices(w).any(|(at, _)| surrounded(head, at, w.len())));
    if head.ends_with('>') && head.contains('@') {
        // "вт, 5 дек. 2026 г. в 10:00, Анна <ann@example.net>:", "Am 5. Dez. um 10:00 schrieb Ann <ann@…>:"
        return quoted_next || verb_inside;
    }
    let verb = verb_inside || WROTE.iter().any(|w| head.ends_with(w));
    verb && (opened || head.contains('@') || quoted_next)
}

/// True when `head[at..at + len]` is a word: spaces on both sides.
fn surrounded(head: &str, at: usize, len: usize) -> bool {
    head[..at].ends_with(' ') && head[at + len..].starts_with(' ')
}

/// A dated line ending in a colon, or in an address: what an unknown client's quote header looks like.
fn looks_like_header(line: &str) -> bool {
    let t = line.trim_end();
    dated(t) && (t.ends_with(':') || (t.ends_with('>') && t.contains('@')))
}

/// A digit outside addresses: `<…>` and words with an `@`.
fn dated(line: &str) -> bool {
    let mut depth = 0u32;
    line.split_whitespace().any(|word| {
        let counted = depth == 0 && !word.contains('@') && !word.starts_with('<');
        depth = (depth + word.matches('<').count() as u32).saturating_sub(word.matches('>').count() as u32);
        counted && word.chars().any(|c| c.is_ascii_digit())
    })
}

/// A block of header fields, as Outlook and forwarding clients write the history's first lines: From, Sent
/// or Date, and To or Subject, in any order among its first seven lines (in the languages of `FROM`, `SENT`,
/// `TO`, `SUBJECT`; bold as `*From:*` when a client made text of Outlook's HTML). A memo (no From) or a
/// pasted log (no date) is none.
pub(super) fn is_header_block(lines: &[&str], i: usize) -> bool {
    let kind = |line: &str| {
        let l = label_of(line)?;
        [FROM, SENT, TO, SUBJECT].iter().position(|list| list.contains(&l.as_str()))
    };
    if kind(lines[i]).is_none() || (i > 0 && kind(lines[i - 1]).is_some()) {
        return false;
    }
    let mut found = [false; 4];
    for line in lines.iter().skip(i).take(7) {
        if let Some(k) = kind(line) {
            found[k] = true;
        }
    }
    found[0] && found[1] && (found[2] || found[3])
}

/// The label of a `Label: value` line, lower case, without bold markers.
fn label_of(line: &str) -> Option<String> {
    let line = line.trim().trim_start_matches('*');
    let (label, _) = line.split_once(':')?;
    let label = label.trim().trim_end_matches('*').trim();
    (label.chars().count() <= 20).then(|| label.to_lowercase())
}

fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

fn is_blank(lines: &[&str]) -> bool {
    lines.iter().all(|l| l.trim().is_empty())
}

fn is_signature_start(line: &str) -> bool {
    let t = line.trim_end();
    t == "--" || t == "-- " || line == "-- "
}

/// The lines up to a signature (`-- `, RFC 3676 §4.3, or `--`) or a mobile client's last line, trimmed.
fn without_signature(lines: &[&str]) -> String {
    let mut end = lines.iter().position(|l| is_signature_start(l)).unwrap_or(lines.len());
    while end > 0 && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    if end > 0 {
        let last = lines[end - 1].trim().to_lowercase();
        if SENT_FROM.iter().any(|s| last.starts_with(s)) && last.chars().count() <= 80 {
            end -= 1;
        }
    }
    let kept: Vec<&str> = lines[..end].iter().map(|l| l.trim_end()).collect();
    kept.join("\n").trim_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Option<String> {
        read_text(t).reply
    }

    #[test]
    fn top_posting_in_every_language_of_the_issue() {
        for header in [
            "On Tue, 5 Dec 2026 at 10:00, Ann <ann@example.net> wrote:",
            "Am 05.12.2026 um 10:00 schrieb Ann <ann@example.net>:",
            "Le mar. 5 déc. 2026 à 10:00, Ann <ann@example.net> a écrit :",
            "El mar, 5 dic 2026 a las 10:00, Ann (<ann@example.net>) escribió:",
            "5 декабря 2026 г., в 10:00, Анна <ann@example.net> написал(а):",
            "вт, 5 груд. 2026 р. о 10:00 Анна <ann@example.net> пише:",
            "вт, 5 дек. 2026 г. в 10:00, Анна <ann@example.net>:",
        ] {
            let mail = format!("Thanks, that works.\n\n{header}\n> Try this.\n> Ann\n");
            assert_eq!(text(&mail).as_deref(), Some("Thanks, that works."), "{header}");
        }
    }

    #[test]
    fn a_header_wrapped_over_lines_and_outlook_blocks() {
        let mail = "Fine by me.\n\nOn Tue, 5 Dec 2026 at 10:00, Ann Long-Name\n<ann@example.net> wrote:\n\n> Shall we?\n";
        assert_eq!(text(mail).as_deref(), Some("Fine by me."));
        let close = "Fine by me.\nOn Tue, 5 Dec 2026 at 10:00, Ann <ann@example.net> wrote:\n> Shall we?\n";
        assert_eq!(text(close).as_deref(), Some("Fine by me."), "a sentence right above is not part of the header");
        let outlook = "Yes.\r\n\r\n________________________________\r\nFrom: Ann <ann@example.net>\r\nSent: Tuesday, December 5, 2026 10:00\r\nTo: Bob\r\nSubject: Plan\r\n\r\nShall we?\r\n";
        assert_eq!(text(outlook).as_deref(), Some("Yes."));
        let german = "Ja.\n\nVon: Ann <ann@example.net>\nGesendet: Dienstag, 5. Dezember 2026 10:00\nAn: Bob\nBetreff: Plan\n";
        assert_eq!(text(german).as_deref(), Some("Ja."));
        let original = "Ok\n\n-----Original Message-----\nFrom: Ann\nwhatever\n";
        assert_eq!(text(original).as_deref(), Some("Ok"));
    }

    #[test]
    fn signatures_and_mobile_lines_are_not_the_reply() {
        assert_eq!(text("Done.\n\n-- \nBob\nACME\n").as_deref(), Some("Done."));
        assert_eq!(text("Done.\n\nSent from my iPhone\n").as_deref(), Some("Done."));
        assert_eq!(text("Done.\n--\nBob\n\nOn Mon, 1 Dec 2026, Ann wrote:\n> x\n").as_deref(), Some("Done."));
        assert_eq!(text("No quotes at all.\nTwo lines.\n").as_deref(), Some("No quotes at all.\nTwo lines."));
    }

    #[test]
    fn bottom_posting_inline_answers_and_forwards() {
        let bottom = "On Mon, 1 Dec 2026, Ann <ann@example.net> wrote:\n> Shall we?\n> Ann\n\nYes, let's.\n\n-- \nBob\n";
        assert_eq!(text(bottom).as_deref(), Some("Yes, let's."));
        let inline = "On Mon, 1 Dec 2026, Ann wrote:\n> First?\nYes.\n> Second?\nNo.\n";
        assert_eq!(text(inline), None, "answers between quotes: unsure");
        let inline_top = "See below.\n\nOn Mon, 1 Dec 2026, Ann wrote:\n> First?\nYes.\n> Second?\nNo.\n";
        assert_eq!(text(inline_top), None);
        let forward = "---------- Forwarded message ---------\nFrom: Ann <ann@example.net>\nDate: Mon, 1 Dec 2026\n\nHello\n";
        assert_eq!(text(forward).as_deref(), Some(""));
        let fwd_note = "FYI, see below.\n\nBegin forwarded message:\n\nFrom: Ann\n";
        assert_eq!(text(fwd_note).as_deref(), Some("FYI, see below."));
    }

    #[test]
    fn prose_memos_and_logs_keep_their_words() {
        for mail in [
            "Hi team,\n\nIn 2019 the auditor wrote:\nthe books are fine.\n\nRegards, Bob",
            "Hi,\n\nYesterday I wrote 3 scripts, here they are:\nscript one\nscript two",
            "Please send 2 copies to Ann <ann@example.com>:\nthe contract and the invoice.",
            "Memo\n\nDate: 5 May 2026\nTo: all staff\nSubject: parking\n\nThe car park closes.",
            "A list:\n---- 2 items I wrote ----\none\ntwo",
        ] {
            assert_eq!(text(mail).as_deref(), Some(mail), "{mail:?}");
        }
        let log = "Here is the log:\nFrom: cron@host\nTo: root\nSubject: job 5 failed\n\nexit 1";
        assert_eq!(text(log).as_deref(), Some(log), "no date: no header block");
        let forward = "From: Ann <ann@example.net>\nSent: Monday, 1 December 2026 10:00\nTo: Bob\nSubject: Plan\n\nShall we?";
        assert_eq!(text(forward), None, "header fields first: a forward, or pasted; unsure");
    }

    #[test]
    fn prose_is_not_a_quote_header() {
        let mail = "My colleague wrote:\nthe plan is fine.\n";
        assert_eq!(text(mail).as_deref(), Some("My colleague wrote:\nthe plan is fine."));
        let long = format!("{} wrote:\n> x\n", "a".repeat(400));
        assert_eq!(text(&long).unwrap(), format!("{} wrote:", "a".repeat(400)), "too long for a header: the quote alone is cut");
    }
}
