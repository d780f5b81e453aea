//! What every part of the edge shares: the bindings' names, the configuration
//! (read once per isolate), the clock, the log line, a fetch with a timeout,
//! and the one place a refusal becomes a response.

use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use serde::Serialize;
use std::cell::OnceCell;
use std::rc::Rc;
use worker::{console_log, AbortController, Delay, Env, Fetch, Request, Response, Result};

/// Binding names, as declared in `wrangler.toml`.
pub const KV_DEDUPE: &str = "DEDUPE";
pub const QUEUE_EVENTS: &str = "EVENTS";
pub const QUEUE_SLOW_EVENTS: &str = "SLOW_EVENTS";
pub const QUEUE_DEAD_LETTERS: &str = "DEAD_LETTERS";
pub const BUCKET_PAYLOADS: &str = "PAYLOADS";
pub const D1_DATABASE: &str = "DB";

thread_local! {
    /// Variables cannot change within an isolate, so they are parsed once.
    static CONFIG: OnceCell<std::result::Result<Rc<Config>, ConfigError>> = const { OnceCell::new() };
}

pub fn config(env: &Env) -> std::result::Result<Rc<Config>, ConfigError> {
    CONFIG.with(|c| c.get_or_init(|| Config::from_lookup(|name| var_text(env, name)).map(Rc::new)).clone())
}

/// A variable or secret as text: strings as they are, structured `[vars]`
/// (`DESTINATIONS`, a list of tables in wrangler.toml) as their JSON.
pub fn var_text(env: &Env, name: &str) -> Option<String> {
    let v = js_sys::Reflect::get(env, &worker::wasm_bindgen::JsValue::from_str(name)).ok()?;
    if v.is_undefined() || v.is_null() {
        return None;
    }
    v.as_string().or_else(|| js_sys::JSON::stringify(&v).ok().and_then(|s| s.as_string()))
}

/// The Wasm linear memory in KiB. It only grows, so this is the instance's peak so far.
pub fn wasm_kib() -> usize {
    core::arch::wasm32::memory_size(0) * 64
}

pub fn now_millis() -> u64 {
    worker::Date::now().as_millis()
}

pub fn now_seconds() -> i64 {
    (now_millis() / 1000) as i64
}

/// A nonce for markers (`large`): 128 random bits, so no sender can write one.
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Without randomness, the time still differs from anything a sender could have predicted exactly.
        bytes[..8].copy_from_slice(&now_millis().to_le_bytes());
    }
    hex::encode(bytes)
}

/// One structured log line. Callers pass ids, codes and numbers, never a
/// secret or a message body.
pub fn log(fields: serde_json::Value) {
    console_log!("{}", fields);
}

/// One structured log line, from any serialisable struct.
pub fn log_line<T: Serialize>(line: &T) {
    if let Ok(text) = serde_json::to_string(line) {
        console_log!("{}", text);
    }
}

/// Sends `request`, giving up after `seconds`; the error says which way it failed.
pub async fn fetch_with_timeout(request: Request, seconds: u32) -> std::result::Result<Response, String> {
    use futures_util::future::{select, Either};
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let send = Box::pin(fetch.send_with_signal(&signal));
    let timeout = Box::pin(Delay::from(std::time::Duration::from_secs(u64::from(seconds))));
    let result = select(send, timeout).await;
    match result {
        Either::Left((Ok(resp), _)) => Ok(resp),
        Either::Left((Err(e), _)) => Err(format!("connection error: {e}")),
        Either::Right(_) => {
            controller.abort();
            Err(format!("timed out after {seconds} s"))
        }
    }
}

pub fn json_response<T: Serialize>(status: u16, body: &T) -> Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}

/// A JSON answer as the runtime's own response (the webhook path's: no builder, no copy of the body).
pub fn json_answer(status: u16, body: &str) -> Result<web_sys::Response> {
    json_answer_with(status, body, &[])
}

fn json_answer_with(status: u16, body: &str, extra: &[(&str, &str)]) -> Result<web_sys::Response> {
    let headers = web_sys::Headers::new()?;
    headers.set("content-type", "application/json")?;
    for (k, v) in extra {
        headers.set(k, v)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    init.set_headers(&headers);
    Ok(web_sys::Response::new_with_opt_str_and_init(Some(body), &init)?)
}

/// A refusal as the runtime's own response: the same answer `refuse` makes.
pub fn refusal(err: &ApiError) -> Result<web_sys::Response> {
    let body = serde_json::to_string(&err.body()).unwrap_or_default();
    match err {
        ApiError::MethodNotAllowed { allow } => json_answer_with(err.status(), &body, &[("Allow", allow)]),
        _ => json_answer(err.status(), &body),
    }
}

/// The one place a refusal becomes a response (workers-rs's, for the routes built with it; `refusal` is the same).
pub fn refuse(err: &ApiError) -> Result<Response> {
    let mut resp = json_response(err.status(), &err.body())?;
    if let ApiError::MethodNotAllowed { allow } = err {
        resp.headers_mut().set("Allow", allow)?;
    }
    if let ApiError::TooManyRequests { retry_after, .. } = err {
        resp.headers_mut().set("Retry-After", &retry_after.to_string())?;
    }
    Ok(resp)
}
