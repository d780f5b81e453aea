//! The edge: wasm32 only. Moves bytes between the Workers runtime and the
//! core, and owns every binding. No decisions live here that the core could
//! make; the one error → Response map is `refuse`.

mod admin;
mod alerts;
mod circuit;
mod console;
mod consumer;
mod email;
mod eventlog;
mod ingest;
mod ops;

use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::providers::Provider;
use crate::routes::{route, Route};
use serde::Serialize;
use std::cell::OnceCell;
use std::rc::Rc;
use worker::{
    console_log, event, AbortController, Context, Delay, Env, Fetch, MessageBatch, Request, Response, Result, ScheduleContext,
    ScheduledEvent,
};

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

/// One structured log line. Callers pass ids, codes and numbers, never a
/// secret or a message body.
pub fn log(fields: serde_json::Value) {
    console_log!("{}", fields);
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

/// The one place a refusal becomes a response.
pub fn refuse(err: &ApiError) -> Result<Response> {
    let mut resp = json_response(err.status(), &err.body())?;
    if let ApiError::MethodNotAllowed { allow } = err {
        resp.headers_mut().set("Allow", allow)?;
    }
    Ok(resp)
}

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    ops::request();
    let started = now_millis();
    let method = req.method().to_string();
    let path = req.path();
    let (resp, provider) = match route(&method, &path) {
        Err(e) if path == "/console" || path.starts_with("/console/") => (console::secure(refuse(&e)?, crate::console::CSP)?, None),
        Err(e) => (refuse(&e)?, None),
        Ok(Route::Health) => (health(&env).await?, None),
        Ok(Route::Confirm) => (confirm(&env)?, None),
        // The entry module (src/entry.mjs) takes every webhook before this Worker sees it.
        Ok(Route::Webhook(p)) => (
            refuse(&ApiError::NotConfigured(
                "webhooks are taken by the Worker's entry module: set main = \"build/entry.mjs\" in wrangler.toml".into(),
            ))?,
            Some(p.name()),
        ),
        Ok(Route::Console(r)) => match config(&env) {
            Ok(cfg) => (console::handle(r, req, &cfg).await?, None),
            Err(e) => (refuse(&ApiError::NotConfigured(e.to_string()))?, None),
        },
        Ok(Route::Admin(r)) => match config(&env) {
            Ok(cfg) => (admin::handle(r, &req, &cfg, &env).await?, None),
            Err(e) => (refuse(&ApiError::NotConfigured(e.to_string()))?, None),
        },
    };
    log(serde_json::json!({
        "kind": "request",
        "method": method,
        "path": path,
        "provider": provider,
        "status": resp.status_code(),
        "ids": [],
        "ms": now_millis().saturating_sub(started),
        "wasm_kib": wasm_kib(),
        "ops": ops::take(),
    }));
    Ok(resp)
}

async fn health(env: &Env) -> Result<Response> {
    let cfg = match config(env) {
        Ok(c) => c,
        Err(e) => {
            return json_response(503, &serde_json::json!({"status": "misconfigured", "version": crate::VERSION, "error": e.to_string()}))
        }
    };
    json_response(
        200,
        &serde_json::json!({
            "status": "ok",
            "version": crate::VERSION,
            "providers": providers_health(&cfg),
            "delivery": {"configured": cfg.delivery_problem().is_none(), "problem": cfg.delivery_problem()},
            "destinations": destinations_health(&cfg, env).await,
            "warnings": warnings(&cfg, env),
        }),
    )
}

/// The configuration's warnings, and a missing slow-lane queue binding (deliveries then go on in the main lane).
fn warnings(cfg: &Config, env: &Env) -> Vec<String> {
    let mut w = cfg.warnings();
    if env.queue(QUEUE_SLOW_EVENTS).is_err() {
        w.push(format!(
            "the {QUEUE_SLOW_EVENTS} queue binding is missing: a failing destination's deliveries stay among the healthy ones; \
             create mailhook-events-slow and bind it as in wrangler.toml"
        ));
    }
    w
}

/// Each destination, its settings' problem and its circuit. Not its URL:
/// `/healthz` is public, and a URL's path or host can be a secret (a Slack
/// webhook's is); `/admin/destinations` shows it.
/// Each source and whether it can authenticate requests (`/healthz`, the console's overview).
pub fn providers_health(cfg: &Config) -> serde_json::Value {
    Provider::ALL
        .iter()
        .map(|p| (p.name().to_string(), serde_json::json!({"configured": p.missing_config(cfg).is_none()})))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

pub async fn destinations_health(cfg: &Config, env: &Env) -> serde_json::Value {
    let circuits = circuit::load(env).await;
    cfg.destinations
        .iter()
        .map(|d| {
            let c = circuits.get(&d.name).copied().unwrap_or_default();
            let state = if d.problem().is_some() {
                "unconfigured"
            } else if c.open {
                "open"
            } else {
                "closed"
            };
            (
                d.name.clone(),
                serde_json::json!({
                                        "configured": d.problem().is_none(),
                    "problem": d.problem(),
                    "circuit": state,
                    "failures": c.failures,
                    "next_probe": c.open.then(|| crate::time::to_rfc3339(c.probe_at)),
                }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn confirm(env: &Env) -> Result<Response> {
    let account = config(env).ok().and_then(|c| c.providers.adm_tools.account_id.clone());
    match account {
        Some(id) => {
            let mut resp = Response::ok(id)?;
            resp.headers_mut().set("Content-Type", "text/plain; charset=utf-8")?;
            Ok(resp)
        }
        None => refuse(&ApiError::NotFound),
    }
}

/// The crons: each minute, alerts (`alerts::CRON`); daily, retention: removes
/// event-log rows older than LOG_RETENTION_DAYS and the R2 objects they reference.
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    ops::request();
    if event.cron() == alerts::CRON {
        alerts::flush(&env).await;
        return;
    }
    let days = match config(&env) {
        Ok(c) => c.log_retention_days,
        Err(e) => {
            log(serde_json::json!({"kind": "retention_skipped", "error": e.to_string()}));
            return;
        }
    };
    let cutoff = now_seconds() - i64::from(days) * 86_400;
    match eventlog::remove_older_than(&env, cutoff).await {
        Ok(n) => log(serde_json::json!({"kind": "retention", "removed": n, "cutoff": crate::time::to_rfc3339(cutoff)})),
        Err(e) => log(serde_json::json!({"kind": "retention_failed", "error": e.to_string()})),
    }
}

#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
    // Never return Err: in workers-rs 0.8 that resets the instance and redoes
    // the whole batch. Each message is acked or retried on its own.
    ops::request();
    consumer::handle(batch, &env).await;
    Ok(())
}
