//! The edge: wasm32 only. Moves bytes between the Workers runtime and the
//! core, and owns every binding. No decisions live here that the core could
//! make; the one error → Response map is `env::refuse`.
//!
//! - `ingest/`: a webhook or a message, through the core's plan (dedupe, R2, the queue);
//! - `deliver/`: the queue consumers: each delivery signed and sent, retried, held or dead-lettered;
//! - `admin/`: the operator API, one file per resource; `console.rs`: the operator console;
//! - `eventlog.rs`, `circuit.rs`, `alerts.rs`: the event log, the circuit breaker's state and alerts, in D1;
//! - `links.rs`: attachments served by their signed links;
//! - `health.rs`, `ops.rs`, `env.rs`: `/healthz`, the operation counts, what all of them share.

mod access;
mod admin;
mod alerts;
mod binding;
mod circuit;
mod console;
mod deliver;
mod env;
mod eventlog;
mod health;
mod ingest;
mod links;
mod ops;
mod queue;
mod retention;

use crate::error::ApiError;
use crate::routes::{route, Route};
use env::{config, now_millis, refuse, wasm_kib};
use worker::{event, Context, Env, MessageBatch, Request, Result, ScheduleContext, ScheduledEvent};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// Every request: its route, its handler, and one log line of what it was, how it ended and what it cost.
/// The request is taken as the runtime's own object: a webhook reads only its method, URL, the headers
/// the core needs and its body (workers-rs's `Request` would read `request.cf` and build more first).
#[event(fetch)]
async fn fetch(raw: web_sys::Request, env: Env, _ctx: Context) -> Result<web_sys::Response> {
    ops::request();
    let started = now_millis();
    let method = raw.method();
    let url = raw.url();
    let path = crate::routes::path_of(&url).to_string();
    // An attachment's link names its file: the log keeps only the route.
    let logged_path = if path.starts_with(crate::links::LINK_PATH) { crate::links::LINK_PATH } else { &path };
    let mut provider = None;
    let mut ids = Vec::new();
    // A webhook's answer is made as the runtime's own response, without workers-rs's builder.
    let refused = |e: ApiError| Ok::<_, worker::Error>((env::refusal(&e)?, Some(e.code())));
    let (resp, code): (web_sys::Response, _) = match route(&method, &path) {
        Err(e) if path == "/console" || path.starts_with("/console/") => {
            (console::secure(refuse(&e)?, crate::console::CSP)?.into(), Some(e.code()))
        }
        Err(e) => refused(e)?,
        Ok(Route::Health) => (health::health(&env).await?.into(), None),
        Ok(Route::Confirm) => (health::confirm(&env)?.into(), None),
        Ok(Route::Attachment) => (links::serve(&method, &url, &path, &env).await?, None),
        Ok(Route::Webhook(p)) => {
            provider = Some(p.name());
            match ingest::webhook::handle(p, &raw, &env).await {
                Ok(taken) => {
                    let body = serde_json::json!({"status": taken.status, "ids": taken.ids}).to_string();
                    ids = taken.ids;
                    (env::json_answer(200, &body)?, None)
                }
                Err(e) => refused(e)?,
            }
        }
        Ok(Route::Console(r)) => match config(&env) {
            Ok(cfg) => (console::handle(r, Request::from(raw), &cfg, &env).await?.into(), None),
            Err(e) => refused(ApiError::NotConfigured(e.to_string()))?,
        },
        Ok(Route::Admin(r)) => match config(&env) {
            Ok(cfg) => (admin::handle(r, &Request::from(raw), &cfg, &env).await?.into(), None),
            Err(e) => refused(ApiError::NotConfigured(e.to_string()))?,
        },
    };
    env::log_line(&RequestLine {
        kind: "request",
        method: &method,
        path: logged_path,
        provider,
        status: resp.status(),
        code,
        ids: &ids,
        ms: now_millis().saturating_sub(started),
        wasm_kib: wasm_kib(),
        ops: ops::take(),
    });
    Ok(resp)
}

/// The log line of a request (written from a struct: no map of its fields is built).
#[derive(serde::Serialize)]
struct RequestLine<'a> {
    kind: &'static str,
    method: &'a str,
    path: &'a str,
    provider: Option<&'static str>,
    status: u16,
    code: Option<&'static str>,
    ids: &'a [String],
    ms: u64,
    wasm_kib: usize,
    ops: ops::Ops,
}

/// The crons: each minute, alerts (`alerts::CRON`); daily, retention (`retention::run`).
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    ops::request();
    if event.cron() == alerts::CRON {
        alerts::flush(&env).await;
        return;
    }
    retention::run(&env).await;
}

#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
    // Never return Err: in workers-rs 0.8 that resets the instance and redoes
    // the whole batch. Each message is acked or retried on its own.
    ops::request();
    deliver::handle(batch, &env).await;
    Ok(())
}
