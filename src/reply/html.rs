//! The html rule of `reply`: cut before the element a client puts around the history, closing what is open.

/// The markers of the quoted history in HTML, as clients write them (lower case).
const HTML_MARKERS: &[&str] = &[
    "<div class=\"gmail_quote",
    "<div class=gmail_quote",
    "<blockquote type=\"cite\"",
    "<blockquote type=cite",
    "<div class=\"moz-cite-prefix",
    "<div id=\"divrplyfwdmsg\"",
    "<div id=\"appendonsend\"",
    "<div class=\"yahoo_quoted",
    "<div id=\"yahoo_quoted_",
];

/// The most elements open at the cut: real mail nests a few dozen; more is no place to cut (and would make
/// closing them, and matching each end tag, cost more than the message).
const MAX_OPEN: usize = 256;

/// Elements without an end tag.
const VOID: &[&str] = &["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"];

/// The longest element name closed at the cut (real ones are a few letters; `o:p` and the like are cut short).
const MAX_NAME_LEN: usize = 32;

/// The html before the first history marker, with the elements left open closed; `None` without a marker,
/// when the marker is inside a tag, a comment, a script or a style, or when text follows the marker's element
/// (answers between quotes, or below them: the sender's words are not all above).
pub(super) fn cut_html(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let marker = HTML_MARKERS.iter().filter_map(|m| lower.find(m)).min();
    let mut at = match (marker, outlook_header(&lower)) {
        // Outlook's header block: all that follows it is the history, by the client's own layout.
        (m, Some(o)) if m.is_none_or(|m| o < m) => o,
        (Some(m), _) if only_markup_after(&lower, m) => m,
        _ => return None,
    };
    // Outlook: the rule above the header block goes with it.
    if lower[at..].starts_with("<div id=\"divrplyfwdmsg\"") || lower[at..].starts_with("<div style=") || lower[at..].starts_with("<p") {
        if let Some(hr) = lower[..at].rfind("<hr") {
            if lower[hr..at].find('>').is_some_and(|e| lower[hr + e + 1..at].trim().is_empty()) {
                at = hr;
            }
        }
    }
    let open = open_elements(&lower[..at])?;
    let mut out = html[..at].to_string();
    for name in open.iter().rev() {
        out.push_str(&format!("</{name}>"));
    }
    Some(out)
}

/// The elements open at the end of `prefix` (lower case), outermost first; `None` when it ends inside a tag,
/// a comment, a script or a style, or more than `MAX_OPEN` are open (no safe place to cut).
fn open_elements(prefix: &str) -> Option<Vec<String>> {
    let mut stack: Vec<String> = Vec::new();
    let mut open: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut rest = prefix;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = &after[after.find("-->")? + 3..];
            continue;
        }
        let end = tag_end(rest)?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if name.is_empty() {
            continue; // <!doctype>, <?xml …?>
        }
        if name.len() > MAX_NAME_LEN {
            return None;
        }
        if closing {
            // Only an element that is open is looked for (an end tag of nothing open costs one lookup).
            if open.get(&name).is_some_and(|n| *n > 0) {
                if let Some(pos) = stack.iter().rposition(|n| *n == name) {
                    for gone in stack.drain(pos..) {
                        open.entry(gone).and_modify(|n| *n -= 1);
                    }
                }
            }
        } else if name == "script" || name == "style" {
            rest = &rest[rest.find(&format!("</{name}"))?..];
        } else if !VOID.contains(&name.as_str()) && !tag.ends_with('/') {
            if stack.len() == MAX_OPEN {
                return None;
            }
            *open.entry(name.clone()).or_default() += 1;
            stack.push(name);
        }
    }
    Some(stack)
}

/// How far after an element's start its header block is read, and how many elements are tried.
const HEADER_WINDOW: usize = 1500;
const MAX_HEADER_CANDIDATES: usize = 1000;

/// Where Outlook's header block of the history starts: the first `<div` or `<p` whose text begins with a header
/// block (From, Sent or Date, To or Subject; `text::is_header_block`), as Outlook's desktop client writes it.
fn outlook_header(lower: &str) -> Option<usize> {
    let starts = lower.match_indices('<').map(|(i, _)| i).filter(|&i| {
        let t = &lower[i + 1..];
        (t.starts_with("div") || t.starts_with('p'))
            && t[if t.starts_with('p') { 1 } else { 3 }..].starts_with([' ', '>', '\t', '\n', '\r'])
    });
    starts.take(MAX_HEADER_CANDIDATES).find(|&i| {
        let end = (i + HEADER_WINDOW).min(lower.len());
        let end = (end..=lower.len()).find(|&e| lower.is_char_boundary(e)).unwrap_or(lower.len());
        let text = text_lines(&lower[i..end]);
        let lines: Vec<&str> = text.lines().collect();
        lines.iter().position(|l| !l.trim().is_empty()).is_some_and(|first| super::text::is_header_block(&lines, first))
    })
}

/// The text of some html, a line break for each element that breaks a line, the common entities decoded.
fn text_lines(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let Some(end) = tag_end(&rest[lt..]) else { break };
        let tag = &rest[lt + 1..lt + end];
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if ["br", "p", "div", "tr", "li"].contains(&name.as_str()) {
            out.push('\n');
        }
        rest = &rest[lt + end + 1..];
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ").replace("&#160;", " ").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
}

/// Where the tag at the start of `rest` ends (its `>`), quoted attribute values skipped.
fn tag_end(rest: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in rest.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            (None, _) => {}
        }
    }
    None
}

/// True when nothing but markup, white space and more history (quotes: `blockquote`, or another marker's
/// element, as Thunderbird puts its quote after its `moz-cite-prefix`) follows the element that starts at
/// `at` (lower case).
fn only_markup_after(lower: &str, at: usize) -> bool {
    let Some(mut rest) = element_end(lower, at).map(|e| &lower[e..]) else { return false };
    while let Some(lt) = rest.find('<') {
        if !visible(&rest[..lt]).is_empty() {
            return false;
        }
        let after = &rest[lt..];
        let history = after.starts_with("<blockquote") || HTML_MARKERS.iter().any(|m| after.starts_with(m));
        rest = match after.strip_prefix("<!--") {
            Some(c) => c.find("-->").map_or("", |e| &c[e + 3..]),
            None if history => match element_end(after, 0) {
                Some(e) => &after[e..],
                None => return false,
            },
            None => tag_end(after).map_or("", |e| &after[e + 1..]),
        };
    }
    visible(rest).is_empty()
}

/// Where the element that starts at `at` ends (after its end tag): its end tags counted against its start
/// tags of the same name, in one pass; `None` when it never ends.
fn element_end(lower: &str, at: usize) -> Option<usize> {
    let name_end = lower[at + 1..].find(|c: char| !c.is_ascii_alphanumeric())?;
    let name = &lower[at + 1..at + 1 + name_end];
    let (open_tag, close_tag) = (format!("<{name}"), format!("</{name}"));
    let is = |t: &str, tag: &str| t.starts_with(tag) && !t[tag.len()..].starts_with(|c: char| c.is_ascii_alphanumeric());
    let mut depth = 0usize;
    let mut i = at + 1;
    loop {
        let lt = i + lower[i..].find('<')?;
        let t = &lower[lt..];
        if is(t, &close_tag) {
            if depth == 0 {
                return Some(lt + tag_end(t)? + 1);
            }
            depth -= 1;
        } else if is(t, &open_tag) {
            depth += 1;
        }
        i = lt + 1;
    }
}

/// Text with white space and non-breaking spaces left out.
fn visible(text: &str) -> String {
    text.replace("&nbsp;", "").replace("&#160;", "").chars().filter(|c| !c.is_whitespace()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_cut_at_the_clients_markers_and_closed() {
        let gmail = r#"<div dir="ltr">Thanks!</div><br><div class="gmail_quote"><div class="gmail_attr">On Mon, Ann wrote:</div><blockquote class="gmail_quote">x</blockquote></div>"#;
        assert_eq!(cut_html(gmail).as_deref(), Some(r#"<div dir="ltr">Thanks!</div><br>"#));
        let apple = r#"<html><body><div>Yes.</div><div><br><blockquote type="cite"><div>On Mon, Ann wrote:</div>x</blockquote></div></body></html>"#;
        assert_eq!(cut_html(apple).as_deref(), Some("<html><body><div>Yes.</div><div><br></div></body></html>"));
        let owa =
            r#"<div>Ok</div><hr style="display:inline-block;width:98%" tabindex="-1"><div id="divRplyFwdMsg" dir="ltr">From: Ann</div>"#;
        assert_eq!(cut_html(owa).as_deref(), Some("<div>Ok</div>"));
        assert_eq!(cut_html("<p>plain</p>"), None);
        let deep = format!("{}<div class=\"gmail_quote\">", "<div>".repeat(MAX_OPEN + 1));
        assert_eq!(cut_html(&deep), None, "nested too deep to cut");
        assert_eq!(cut_html(r#"<!-- <div class="gmail_quote"> --><p>x</p>"#), None, "inside a comment: not a place to cut");
        assert_eq!(cut_html(r#"<script>"<div class=\"gmail_quote\">"</script>"#), None);
        // In an attribute, or with the sender's words below or between the quotes: not cut.
        assert_eq!(cut_html(r#"<a title='x> <div class="gmail_quote"'>y</a>"#), None);
        let inline =
            r#"<div>See inline.</div><blockquote type="cite">Q1?</blockquote><div>Yes.</div><blockquote type="cite">Q2?</blockquote>"#;
        assert_eq!(cut_html(inline), None);
        let bottom = r#"<html><body><div class="moz-cite-prefix">On Mon, Ann wrote:</div><blockquote type="cite">Q?</blockquote><p>My answer.</p></body></html>"#;
        assert_eq!(cut_html(bottom), None);
        let nested = r#"<p>Ok</p><blockquote type="cite">a<blockquote type="cite">b</blockquote>c</blockquote>&nbsp;<br></body>"#;
        assert_eq!(cut_html(nested).as_deref(), Some("<p>Ok</p>"));
        // Outlook's desktop client: the header block and all below it.
        let outlook = concat!(
            r#"<div class=WordSection1><p class=MsoNormal>Sure.<o:p></o:p></p><p class=MsoNormal><o:p>&nbsp;</o:p></p>"#,
            r#"<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p class=MsoNormal><b>From:</b> Ann"#,
            r#" &lt;ann@example.net&gt;<br><b>Sent:</b> Monday, 1 December 2026 10:00<br><b>To:</b> Bob<br><b>Subject:</b> Plan</p></div>"#,
            r#"<p class=MsoNormal>Shall we?</p></div>"#
        );
        assert_eq!(
            cut_html(outlook).as_deref(),
            Some("<div class=WordSection1><p class=MsoNormal>Sure.<o:p></o:p></p></div>"),
            "from the first element whose text is the header block (the blank paragraph above it goes too)"
        );
        let memo = "<p>Memo</p><p>From: the board<br>To: all staff<br>Subject: parking</p><p>The car park closes.</p>";
        assert_eq!(cut_html(memo), None, "no date: no header block");
    }
}
