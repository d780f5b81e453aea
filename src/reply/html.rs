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

/// The html before the first history marker, with the elements left open closed; `None` without a marker,
/// or when the marker is inside a comment, a script or a style.
pub(super) fn cut_html(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let mut at = HTML_MARKERS.iter().filter_map(|m| lower.find(m)).min()?;
    // Outlook on the web: the rule above the header block goes with it.
    if lower[at..].starts_with("<div id=\"divrplyfwdmsg\"") {
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
    let mut rest = prefix;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = &after[after.find("-->")? + 3..];
            continue;
        }
        let end = rest.find('>')?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if name.is_empty() {
            continue; // <!doctype>, <?xml …?>
        }
        if closing {
            if let Some(pos) = stack.iter().rposition(|n| *n == name) {
                stack.truncate(pos);
            }
        } else if name == "script" || name == "style" {
            rest = &rest[rest.find(&format!("</{name}"))?..];
        } else if !VOID.contains(&name.as_str()) && !tag.ends_with('/') {
            if stack.len() == MAX_OPEN {
                return None;
            }
            stack.push(name);
        }
    }
    Some(stack)
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
    }
}
