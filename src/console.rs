//! The operator console (`/console/`): its routes, its session, the headers
//! its pages are served with, and the overview's numbers. Pure; the edge
//! serves the files (embedded at build time) and runs the queries.
//!
//! The session: signing in with an `ADMIN_TOKEN` value sets an HttpOnly,
//! SameSite=Strict cookie holding an expiry, a random id and an HMAC of both
//! keyed by that token, never the token itself; signing out records the id
//! (the edge keeps it in D1 until the session would have expired). The admin API takes the cookie in place
//! of `Authorization` only with the header `X-Mailhook-Console`, which a
//! page of another site cannot send without a CORS preflight that mailhook
//! never grants: no state-changing call can be made cross-site.

use crate::auth::{constant_time_eq, hmac_sha256, Secrets};
use crate::error::ApiError;
use crate::status::Status;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const COOKIE: &str = "mailhook_session";
/// The header every console call carries (see the module's documentation).
pub const HEADER: &str = "x-mailhook-console";
/// How long a session lasts.
pub const SESSION_SECONDS: i64 = 12 * 3600;

/// Every console response's policy: nothing from elsewhere, no inline script or style, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's page with its script and style inline, so that it loads in
/// one round trip, and the policy that allows exactly those two by their hash
/// (`CSP` with `'self'` replaced). `index` links them as `/console/app.css`
/// and `/console/app.js`; both stay served on their own too.
pub fn inline_page(index: &str, script: &str, style: &str) -> (String, String) {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let hash = |s: &str| format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s.as_bytes())));
    let page = index
        .replace(r#"<link rel="stylesheet" href="/console/app.css">"#, &format!("<style>{style}</style>"))
        .replace(r#"<script src="/console/app.js" defer></script>"#, "")
        .replace("</body>", &format!("<script>{script}</script>\n</body>"));
    let csp = CSP
        .replace("script-src 'self'", &format!("script-src {}", hash(script)))
        .replace("style-src 'self'", &format!("style-src {}", hash(style)));
    (page, csp)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Index,
    Script,
    Style,
}

impl Asset {
    pub fn content_type(self) -> &'static str {
        match self {
            Asset::Index => "text/html; charset=utf-8",
            Asset::Script => "text/javascript; charset=utf-8",
            Asset::Style => "text/css; charset=utf-8",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleRoute {
    /// `/console` → `/console/`.
    Redirect,
    Asset(Asset),
    /// `GET`: am I signed in; `POST`: sign in; `DELETE`: sign out.
    Session,
}

/// The console route of `path` (under `/console`), or 404 / 405.
pub fn route(method: &str, path: &str) -> Result<ConsoleRoute, ApiError> {
    let (route, allow) = match path {
        "/console" => (ConsoleRoute::Redirect, "GET, HEAD"),
        "/console/" | "/console/index.html" => (ConsoleRoute::Asset(Asset::Index), "GET, HEAD"),
        "/console/app.js" => (ConsoleRoute::Asset(Asset::Script), "GET, HEAD"),
        "/console/app.css" => (ConsoleRoute::Asset(Asset::Style), "GET, HEAD"),
        "/console/session" => {
            return match method {
                "GET" | "HEAD" | "POST" | "DELETE" => Ok(ConsoleRoute::Session),
                _ => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD, POST, DELETE" }),
            }
        }
        _ => return Err(ApiError::NotFound("no such console page; the console is at /console/".into())),
    };
    if matches!(method, "GET" | "HEAD") {
        Ok(route)
    } else {
        Err(ApiError::MethodNotAllowed { allow })
    }
}

fn session_mac(token: &str, expires: i64, id: &str) -> String {
    hex::encode(hmac_sha256(token.as_bytes(), &[b"mailhook console session ", expires.to_string().as_bytes(), b".", id.as_bytes()]))
}

/// A signed-in console: its session's id (random, from the edge) and when it ends. Signing out
/// records the id, so the session ends on the server too (`console_signouts`, until it expires).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub expires: i64,
}

/// A session `id` for whoever presented `token` (a value of `ADMIN_TOKEN`), as the cookie's value.
pub fn new_session(token: &str, id: &str, now: i64) -> String {
    let expires = now + SESSION_SECONDS;
    format!("v2.{expires}.{id}.{}", session_mac(token, expires, id))
}

/// The session `value` holds, when it was made with a current `ADMIN_TOKEN` value and has not
/// expired (whether it was signed out is the edge's to check). Rotating the token ends every
/// session made with the old value; a 0.5 session (`v1`, without an id) must sign in again.
pub fn session_of(tokens: &Secrets, value: &str, now: i64) -> Option<Session> {
    let mut parts = value.trim().splitn(4, '.');
    let (Some("v2"), Some(expires), Some(id), Some(mac)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let expires = expires.parse::<i64>().ok()?;
    let id_ok = (16..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !id_ok || expires <= now || expires > now + SESSION_SECONDS {
        return None;
    }
    tokens
        .iter()
        .any(|t| constant_time_eq(session_mac(t, expires, id).as_bytes(), mac.as_bytes()))
        .then(|| Session { id: id.to_string(), expires })
}

/// Every value of the cookie `name` in a `Cookie` header (a browser may send
/// several: one planted for a narrower path by a sibling site comes first).
pub fn cookies<'a>(header: Option<&'a str>, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    header.unwrap_or_default().split(';').filter_map(|c| c.trim().split_once('=')).filter(move |(k, _)| *k == name).map(|(_, v)| v)
}

/// The valid sessions among the cookies in `header`.
pub fn sessions(tokens: &Secrets, header: Option<&str>, now: i64) -> Vec<Session> {
    cookies(header, COOKIE).filter_map(|v| session_of(tokens, v, now)).collect()
}

/// The `Set-Cookie` of a session (`value`; empty ends it). `secure` over https.
pub fn set_cookie(value: &str, secure: bool) -> String {
    let age = if value.is_empty() { 0 } else { SESSION_SECONDS };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Max-Age={age}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

/// Who may call the admin API: a bearer token (`Ok(None)`), or a console
/// session with its header (`Ok(Some(sessions))`: the valid ones, which the
/// edge lets in unless all were signed out).
pub fn authorize(
    tokens: &Secrets,
    authorization: Option<&str>,
    cookies: Option<&str>,
    console_header: bool,
    now: i64,
) -> Result<Option<Vec<Session>>, ApiError> {
    if authorization.is_none() && !tokens.is_empty() && self::cookies(cookies, COOKIE).next().is_some() {
        if !console_header {
            return Err(ApiError::Unauthorized(format!("a console session needs the {HEADER} header")));
        }
        let valid = sessions(tokens, cookies, now);
        return match valid.is_empty() {
            false => Ok(Some(valid)),
            true => Err(ApiError::Unauthorized("the console session has expired or ADMIN_TOKEN changed; sign in again".into())),
        };
    }
    crate::admin::authorize(tokens, authorization).map(|()| None)
}

/// One row of the overview's query: events received in an hour, by provider and summary status.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct HourRow {
    pub start: i64,
    pub provider: String,
    pub status: Status,
    pub n: i64,
}

/// The first second of the 24 hours the overview shows (whole hours, the current one last).
pub fn window_start(now: i64) -> i64 {
    now.div_euclid(3600) * 3600 - 23 * 3600
}

/// The overview's numbers: 24 hours of counts by provider and by outcome,
/// and the delivery latency's percentiles (`latencies`, ms, in any order).
pub fn overview(now: i64, rows: &[HourRow], mut latencies: Vec<i64>) -> Value {
    let first = window_start(now);
    let mut hours: Vec<(BTreeMap<String, i64>, BTreeMap<String, i64>)> = vec![Default::default(); 24];
    let (mut by_provider, mut by_outcome, mut total) = (BTreeMap::<String, i64>::new(), BTreeMap::<String, i64>::new(), 0i64);
    for o in Status::ALL {
        by_outcome.insert(o.to_string(), 0);
    }
    for r in rows {
        let Ok(i) = usize::try_from((r.start - first).div_euclid(3600)) else { continue };
        let Some((providers, outcomes)) = hours.get_mut(i) else { continue };
        *providers.entry(r.provider.clone()).or_default() += r.n;
        *outcomes.entry(r.status.to_string()).or_default() += r.n;
        *by_provider.entry(r.provider.clone()).or_default() += r.n;
        *by_outcome.entry(r.status.to_string()).or_default() += r.n;
        total += r.n;
    }
    let hours: Vec<Value> = hours
        .into_iter()
        .enumerate()
        .map(|(i, (providers, mut outcomes))| {
            for o in Status::ALL {
                outcomes.entry(o.to_string()).or_default();
            }
            json!({"start": first + i as i64 * 3600, "providers": providers, "outcomes": outcomes})
        })
        .collect();
    latencies.sort_unstable();
    let pct = |p: usize| (!latencies.is_empty()).then(|| latencies[((latencies.len() - 1) * p).div_ceil(100)]);
    json!({
        "now": now,
        "hours": hours,
        "totals": {"events": total, "providers": by_provider, "outcomes": by_outcome},
        "latency_ms": {"count": latencies.len(), "p50": pct(50), "p90": pct(90), "p99": pct(99)},
        "providers": Map::new(),
        "destinations": Map::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_the_tokens_and_expire() {
        let tokens = Secrets::parse(Some("old-token, new-token"));
        let id = "0123456789abcdef0123456789abcdef";
        let s = new_session("new-token", id, 1000);
        assert!(s.starts_with("v2."));
        assert!(!s.contains("new-token"), "the cookie never holds the token");
        let session = Session { id: id.into(), expires: 1000 + SESSION_SECONDS };
        assert_eq!(session_of(&tokens, &s, 1000), Some(session.clone()));
        assert_eq!(session_of(&tokens, &s, 1000 + SESSION_SECONDS - 1), Some(session));
        assert_eq!(session_of(&tokens, &s, 1000 + SESSION_SECONDS), None, "expired");
        assert_eq!(session_of(&Secrets::parse(Some("other")), &s, 1000), None, "a rotated token ends it");
        let forged_expiry = s.replacen(&(1000 + SESSION_SECONDS).to_string(), &(1000 + 10 * SESSION_SECONDS).to_string(), 1);
        assert_eq!(session_of(&tokens, &forged_expiry, 1000), None);
        let other_id = s.replacen(id, "fedcba9876543210fedcba9876543210", 1);
        assert_eq!(session_of(&tokens, &other_id, 1000), None, "the id is signed: a signed-out session cannot be renamed");
        let old = format!("v1.{}.{}", 1000 + SESSION_SECONDS, "00".repeat(32));
        for junk in ["", "v1", "v2..", "v2.9999999999.00", "v2.x.y.z", "v2.99999999999999999999999.aa.bb", old.as_str()] {
            assert_eq!(session_of(&tokens, junk, 1000), None, "{junk}");
        }
    }

    #[test]
    fn cookie_sessions_need_the_console_header() {
        let tokens = Secrets::parse(Some("t"));
        let id = "00112233445566778899aabbccddeeff";
        let cookies = format!("a=b; {COOKIE}={}", new_session("t", id, 0));
        let signed_in = authorize(&tokens, None, Some(&cookies), true, 10).unwrap().unwrap();
        assert_eq!(signed_in.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [id]);
        assert_eq!(authorize(&tokens, None, Some(&cookies), false, 10).unwrap_err().status(), 401, "no header: a cross-site form");
        assert_eq!(authorize(&tokens, Some("Bearer t"), None, false, 10), Ok(None));
        assert_eq!(
            authorize(&Secrets::parse(None), None, Some(&cookies), true, 10).unwrap_err().status(),
            404,
            "console off without ADMIN_TOKEN"
        );
        assert_eq!(set_cookie("", true), format!("{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict; Secure"));
        // A cookie planted for a narrower path comes first: the valid one still counts.
        let planted = format!("{COOKIE}=junk; {COOKIE}={}", new_session("t", id, 0));
        assert_eq!(authorize(&tokens, None, Some(&planted), true, 10).unwrap().map(|s| s.len()), Some(1));
    }

    #[test]
    fn the_page_carries_its_script_and_style_allowed_by_hash() {
        let index = "<head><link rel=\"stylesheet\" href=\"/console/app.css\">\n<script src=\"/console/app.js\" defer></script></head><body></body>";
        let (page, csp) = inline_page(index, "go()", "p{}");
        assert_eq!(page, "<head><style>p{}</style>\n</head><body><script>go()</script>\n</body>");
        assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"), "{csp}");
        assert!(!csp.contains("'self'; style") && csp.contains("style-src 'sha256-") && csp.contains("connect-src 'self'"), "{csp}");
        // The real files: both links are replaced, and neither file can end its element early.
        let (page, _) =
            inline_page(include_str!("../console/index.html"), include_str!("../console/app.js"), include_str!("../console/app.css"));
        assert!(!page.contains("/console/app.js") && !page.contains("/console/app.css"));
        assert!(!include_str!("../console/app.js").contains("</script") && !include_str!("../console/app.css").contains("</style"));
    }

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/console/"), Ok(ConsoleRoute::Asset(Asset::Index)));
        assert_eq!(route("GET", "/console"), Ok(ConsoleRoute::Redirect));
        assert_eq!(route("DELETE", "/console/session"), Ok(ConsoleRoute::Session));
        assert_eq!(route("POST", "/console/app.js").unwrap_err().status(), 405);
        assert_eq!(route("GET", "/console/../admin").unwrap_err().status(), 404);
    }

    #[test]
    fn the_overview_counts_by_hour_provider_and_outcome() {
        let now = 100 * 3600 + 1800;
        let row = |h: i64, p: &str, s: &str, n: i64| HourRow { start: h * 3600, provider: p.into(), status: Status::parse(s).unwrap(), n };
        let rows = [
            row(100, "maileroo", "delivered", 3),
            row(100, "improvmx", "dead", 1),
            row(77, "maileroo", "delivered", 2),
            row(76, "x", "dead", 9),
        ];
        let v = overview(now, &rows, vec![300, 100, 200]);
        assert_eq!(v["hours"].as_array().unwrap().len(), 24);
        assert_eq!(v["hours"][23]["start"], 100 * 3600);
        assert_eq!(v["hours"][23]["providers"]["maileroo"], 3);
        assert_eq!(v["hours"][23]["outcomes"]["dead"], 1);
        assert_eq!(v["hours"][0]["providers"]["maileroo"], 2);
        assert_eq!(v["totals"]["events"], 6, "the hour before the window is not counted");
        assert_eq!(v["totals"]["outcomes"]["retrying"], 0);
        assert_eq!((v["latency_ms"]["p50"].as_i64(), v["latency_ms"]["p99"].as_i64()), (Some(200), Some(300)));
        assert!(overview(now, &[], Vec::new())["latency_ms"]["p50"].is_null());
    }
}
