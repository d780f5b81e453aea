//! The operator console (see `crate::console`): its three files, embedded at
//! build time (bench/NOTES.md says what they add to the Worker) and served as
//! one page (script and style inline, allowed by their hashes), and its session. Off (404) while `ADMIN_TOKEN` is unset, like the admin API.

use super::env::{json_response, now_seconds, refuse};
use crate::auth::token_matches;
use crate::config::Config;
use crate::console::{any_session_valid, inline_page, new_session, set_cookie, Asset, ConsoleRoute, CSP, HEADER};
use crate::error::ApiError;
use serde::Deserialize;
use serde_json::json;
use worker::{Request, Response, Result};

const INDEX: &str = include_str!("../../console/index.html");
/// The largest sign-in body read.
const SIGN_IN_MAX_BYTES: u64 = 4096;
const SCRIPT: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/app.css");

pub async fn handle(route: ConsoleRoute, mut req: Request, cfg: &Config) -> Result<Response> {
    if cfg.admin_tokens.is_empty() {
        return refuse(&ApiError::NotFound("the console is off: set ADMIN_TOKEN to turn it on".into()));
    }
    let resp = match route {
        ConsoleRoute::Redirect => {
            let mut r = Response::empty()?.with_status(301);
            r.headers_mut().set("Location", "/console/")?;
            r
        }
        ConsoleRoute::Asset(Asset::Index) => {
            let (page, csp) = PAGE.with(|p| p.get_or_init(|| inline_page(INDEX, SCRIPT, STYLE)).clone());
            let mut r = Response::ok(page)?;
            r.headers_mut().set("Content-Type", Asset::Index.content_type())?;
            r.headers_mut().set("Cache-Control", "no-cache")?;
            return secure(r, &csp);
        }
        ConsoleRoute::Asset(a) => {
            let body = if a == Asset::Script { SCRIPT } else { STYLE };
            let mut r = Response::ok(body)?;
            r.headers_mut().set("Content-Type", a.content_type())?;
            r.headers_mut().set("Cache-Control", "no-cache")?;
            r
        }
        ConsoleRoute::Session => session(&mut req, cfg).await?,
    };
    secure(resp, CSP)
}

thread_local! {
    /// The page with its script and style inline, and its policy: made once per isolate.
    static PAGE: std::cell::OnceCell<(String, String)> = const { std::cell::OnceCell::new() };
}

/// The headers of every console response (its refusals included: see `fetch`).
pub fn secure(mut resp: Response, csp: &str) -> Result<Response> {
    let h = resp.headers_mut();
    h.set("Content-Security-Policy", csp)?;
    h.set("X-Content-Type-Options", "nosniff")?;
    h.set("X-Frame-Options", "DENY")?;
    h.set("Referrer-Policy", "no-referrer")?;
    h.set("Cross-Origin-Opener-Policy", "same-origin")?;
    h.set("Cross-Origin-Resource-Policy", "same-origin")?;
    Ok(resp)
}

async fn session(req: &mut Request, cfg: &Config) -> Result<Response> {
    let now = now_seconds();
    // The URL as text: `Request::url` would bring the `url` crate back into the Worker (about 90 KB).
    let https = req.inner().url().starts_with("https:");
    let cookies = req.headers().get("cookie").ok().flatten();
    let method = req.method().to_string();
    if method != "GET" && method != "HEAD" && req.headers().get(HEADER).ok().flatten().is_none() {
        // Signing in or out from another site's form (login CSRF) is not possible.
        return refuse(&ApiError::Forbidden(format!("the console sends the {HEADER} header; this request came from elsewhere")));
    }
    match method.as_str() {
        "POST" => {
            #[derive(Deserialize)]
            struct SignIn {
                token: String,
            }
            // A token is short: nothing larger is read (a large body would grow the isolate's memory for good).
            let announced = req.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse::<u64>().ok());
            let too_large = || refuse(&ApiError::BadRequest(format!("a sign-in is {{\"token\": …}} of at most {SIGN_IN_MAX_BYTES} bytes")));
            if announced.is_some_and(|n| n > SIGN_IN_MAX_BYTES) {
                return too_large();
            }
            let body = match super::ingest::body::read_stream(
                req.inner().body(),
                SIGN_IN_MAX_BYTES,
                super::ingest::body::Length::Unknown,
                SIGN_IN_MAX_BYTES,
            )
            .await
            {
                Ok(b) => b,
                Err(ApiError::PayloadTooLarge { .. }) => return too_large(),
                Err(e) => return refuse(&e),
            };
            let form: Option<SignIn> = serde_json::from_slice(&body).ok();
            let Some(token) = form.map(|f| f.token.trim().to_string()).filter(|t| !t.is_empty()) else {
                return refuse(&ApiError::BadRequest("send {\"token\": \"<ADMIN_TOKEN>\"}".into()));
            };
            if !token_matches(&cfg.admin_tokens, &token) {
                return refuse(&ApiError::Unauthorized("that is not a value of ADMIN_TOKEN".into()));
            }
            let mut r = Response::empty()?.with_status(204);
            r.headers_mut().set("Set-Cookie", &set_cookie(&new_session(&token, now), https))?;
            Ok(r)
        }
        "DELETE" => {
            let mut r = Response::empty()?.with_status(204);
            r.headers_mut().set("Set-Cookie", &set_cookie("", https))?;
            Ok(r)
        }
        _ if any_session_valid(&cfg.admin_tokens, cookies.as_deref(), now) => json_response(200, &json!({"signed_in": true})),
        _ => refuse(&ApiError::Unauthorized("sign in with a value of ADMIN_TOKEN".into())),
    }
}
