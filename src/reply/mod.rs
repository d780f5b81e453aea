//! The reply without its quotes (`data.reply`): what the sender wrote above
//! the quoted history and the signature, by named rules. `None` when unsure,
//! never a wrong cut.
//!
//! Text: the history starts at the first line that a rule names (a quote
//! header such as "On … wrote:" in the languages below, an Outlook header
//! block, an "Original Message" or forwarding line, or a `>` line); the
//! signature at `-- ` or a mobile client's "Sent from my …". A message that
//! starts with the quote and answers below it (bottom-posting) is read below
//! it; one that answers between quotes (inline) is `None`. HTML is cut only
//! at the elements that clients put around the history (`gmail_quote`,
//! `blockquote type="cite"`, `moz-cite-prefix`, `divRplyFwdMsg`,
//! `appendonsend`, `yahoo_quoted`), and the elements left open are closed.

mod html;
mod text;
mod words;

use crate::event::Reply;
use html::cut_html;
use text::{read_text, Read};

/// The longest body read for a reply; a longer one has none (`None`): the
/// cost is a copy of the body, and such a message is rarely a reply.
pub const MAX_REPLY_INPUT_BYTES: usize = 256 * 1024;

/// The longest reply field kept, as JSON: a longer one is `None` (it is a copy of the body beside it in
/// the event, and the event's fields other than its bodies are bounded).
pub const MAX_REPLY_JSON_BYTES: usize = 64 * 1024;

/// The reply of a message with these bodies; `None` when neither gives one.
pub fn reply(text: Option<&str>, html: Option<&str>) -> Option<Reply> {
    let read = text.filter(|t| t.len() <= MAX_REPLY_INPUT_BYTES).map(read_text);
    let html = html.filter(|h| h.len() <= MAX_REPLY_INPUT_BYTES);
    let html = match (html.and_then(cut_html), &read) {
        (Some(cut), _) => Some(cut),
        // No history in the text, nor a place to cut the html: the sender wrote all of it.
        (None, Some(Read { history: false, .. })) => html.map(str::to_string),
        (None, _) => None,
    };
    let kept = |s: Option<String>| s.filter(|s| json_len(s) <= MAX_REPLY_JSON_BYTES);
    let (text, html) = (kept(read.and_then(|r| r.reply)), kept(html));
    (text.is_some() || html.is_some()).then_some(Reply { text, html })
}

/// The length of `s` as a JSON string (quotes included), as serde_json writes it, without writing it.
fn json_len(s: &str) -> usize {
    2 + s
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_of_both_bodies() {
        let r =
            reply(Some("Hi\n\nOn Mon, 1 Dec 2026, Ann wrote:\n> x\n"), Some("<p>Hi</p><blockquote type=\"cite\">x</blockquote>")).unwrap();
        assert_eq!((r.text.as_deref(), r.html.as_deref()), (Some("Hi"), Some("<p>Hi</p>")));
        // History in the text but no marker in the html: the html is not guessed.
        let r = reply(Some("Hi\n\nOn Mon, 1 Dec 2026, Ann wrote:\n> x\n"), Some("<p>Hi</p><p>On Mon, Ann wrote: x</p>")).unwrap();
        assert_eq!(r.html, None);
        // No history anywhere: the whole of both.
        let r = reply(Some("Hello"), Some("<p>Hello</p>")).unwrap();
        assert_eq!((r.text.as_deref(), r.html.as_deref()), (Some("Hello"), Some("<p>Hello</p>")));
        assert!(reply(None, None).is_none());
        assert!(reply(Some(&"x".repeat(MAX_REPLY_INPUT_BYTES + 1)), None).is_none());
        assert!(reply(Some(&"\u{1}".repeat(20_000)), None).is_none(), "120 KB as JSON: longer than a reply is kept");
        for s in ["", "a\"b\\c\n\u{1}\u{8}é€😀/"] {
            assert_eq!(json_len(s), serde_json::to_string(s).unwrap().len(), "{s:?}");
        }
    }
}
