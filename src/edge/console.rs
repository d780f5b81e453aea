//! The operator console (see `crate::console`): its three files, embedded at
//! build time (bench/NOTES.md says what they add to the Worker) and served as
//! one page (script and style inline, allowed by their hashes), and its session. Off (404) while `ADMIN_TOKEN` is unset, like the admin API.

use super::access;
use super::env::{json_response, now_seconds, refuse};
use crate::auth::token_matches;
use crate::config::Config;
use crate::console::{inline_page, new_session, sessions, set_cookie, Asset, ConsoleRoute, CSP, HEADER};
use crate::error::ApiError;
use crate::ratelimit::Limit;
use serde::Deserialize;
use serde_json::json;
use worker::{Env, Request, Response, Result};

const INDEX: &str = include_str!("../../console/index.html");
/// The largest sign-in body read.
const SIGN_IN_MAX_BYTES: u64 = 4096;
const SCRIPT: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/app.css");

pub async fn handle(route: ConsoleRoute, mut req: Request, cfg: &Config, env: &Env) -> Result<Response> {
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
        ConsoleRoute::Session => match session(&mut req, cfg, env).await {
            Ok(r) => r,
            Err(e) => refuse(&e)?,
        },
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

/// `/console/session`: `POST` signs in (a few tries a minute per address), `DELETE` signs out (on the
/// server too), `GET` says whether the cookie is a live session.
async fn session(req: &mut Request, cfg: &Config, env: &Env) -> std::result::Result<Response, ApiError> {
    let now = now_seconds();
    // The URL as text: `Request::url` would bring the `url` crate back into the Worker (about 90 KB).
    let https = req.inner().url().starts_with("https:");
    let cookies = req.headers().get("cookie").ok().flatten();
    let method = req.method().to_string();
    if method != "GET" && method != "HEAD" && req.headers().get(HEADER).ok().flatten().is_none() {
        // Signing in or out from another site's form (login CSRF) is not possible.
        return Err(ApiError::Forbidden(format!("the console sends the {HEADER} header; this request came from elsewhere")));
    }
    let built = |e: worker::Error| ApiError::Unavailable(format!("the console's answer could not be built: {e}"));
    match method.as_str() {
        "POST" => {
            #[derive(Deserialize)]
            struct SignIn {
                token: String,
            }
            access::limit(env, Limit::SignIn, req).await?;
            // A token is short: nothing larger is read (a large body would grow the isolate's memory for good).
            let announced = req.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse::<u64>().ok());
            let too_large = || ApiError::BadRequest(format!("a sign-in is {{\"token\": …}} of at most {SIGN_IN_MAX_BYTES} bytes"));
            if announced.is_some_and(|n| n > SIGN_IN_MAX_BYTES) {
                return Err(too_large());
            }
            let length = super::ingest::body::Length::Unknown;
            let body = match super::ingest::body::read_stream(req.inner().body(), SIGN_IN_MAX_BYTES, length, SIGN_IN_MAX_BYTES).await {
                Ok(b) => b,
                Err(ApiError::PayloadTooLarge { .. }) => return Err(too_large()),
                Err(e) => return Err(e),
            };
            let form: Option<SignIn> = serde_json::from_slice(&body).ok();
            let Some(token) = form.map(|f| f.token.trim().to_string()).filter(|t| !t.is_empty()) else {
                return Err(ApiError::BadRequest("send {\"token\": \"<ADMIN_TOKEN>\"}".into()));
            };
            if !token_matches(&cfg.admin_tokens, &token) {
                return Err(ApiError::Unauthorized("that is not a value of ADMIN_TOKEN".into()));
            }
            let mut id = [0u8; 16];
            getrandom::fill(&mut id).map_err(|e| ApiError::Unavailable(format!("no randomness for a session id ({e}); please retry")))?;
            let mut r = Response::empty().map_err(built)?.with_status(204);
            r.headers_mut().set("Set-Cookie", &set_cookie(&new_session(&token, &hex::encode(id), now), https)).map_err(built)?;
            Ok(r)
        }
        "DELETE" => {
            access::limit(env, Limit::Admin, req).await?;
            access::sign_out(env, &sessions(&cfg.admin_tokens, cookies.as_deref(), now)).await?;
            let mut r = Response::empty().map_err(built)?.with_status(204);
            r.headers_mut().set("Set-Cookie", &set_cookie("", https)).map_err(built)?;
            Ok(r)
        }
        _ => {
            access::limit(env, Limit::Admin, req).await?;
            let valid = sessions(&cfg.admin_tokens, cookies.as_deref(), now);
            if !valid.is_empty() && !access::live(env, valid).await?.is_empty() {
                return json_response(200, &json!({"signed_in": true})).map_err(built);
            }
            Err(ApiError::Unauthorized("sign in with a value of ADMIN_TOKEN".into()))
        }
    }
}
