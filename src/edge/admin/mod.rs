//! The operator API over the event log (README "Admin API"), one file per
//! resource: `events` (list, show), `replay` (one event, or in bulk),
//! `destinations`, `stats` (the console's overview), `bodies` (what destinations receive), `doctor`. Off without
//! `ADMIN_TOKEN`; every answer is JSON, never cached.

mod bodies;
mod bulk;
mod destinations;
mod doctor;
mod events;
mod replay;
mod stats;

use crate::admin::{AdminRoute, SqlValue};
use crate::config::Config;
use crate::edge::env::{json_response, log, now_seconds, refuse, D1_DATABASE};
use crate::edge::ops;
use crate::error::ApiError;
use serde_json::{json, Value};
use worker::wasm_bindgen::JsValue;
use worker::{Env, Request, Response, Result};

/// A resource's answer: a status and its JSON, or the refusal.
type Answer = std::result::Result<(u16, Value), ApiError>;

pub async fn handle(route: AdminRoute, req: &Request, cfg: &Config, env: &Env) -> Result<Response> {
    let auth = req.headers().get("authorization").ok().flatten();
    let cookies = req.headers().get("cookie").ok().flatten();
    let console_header = req.headers().get(crate::console::HEADER).ok().flatten().is_some();
    if cfg.admin_tokens.is_empty() {
        // Off: answered before anything is counted or read.
        return refuse(&crate::admin::authorize(&cfg.admin_tokens, auth.as_deref()).err().unwrap_or(ApiError::NotFound(String::new())));
    }
    if let Err(e) = crate::edge::access::limit(env, crate::ratelimit::Limit::Admin, req).await {
        return refuse(&e);
    }
    let signed_in = match crate::console::authorize(&cfg.admin_tokens, auth.as_deref(), cookies.as_deref(), console_header, now_seconds()) {
        Ok(Some(sessions)) => crate::edge::access::live(env, sessions).await.and_then(|live| match live.is_empty() {
            true => Err(ApiError::Unauthorized("this console session was signed out; sign in again".into())),
            false => Ok(()),
        }),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = signed_in {
        return refuse(&e);
    }
    let url = req.inner().url();
    let query = crate::admin::query_of(&url);
    let result = match route {
        AdminRoute::ListEvents => events::list(query, env).await,
        AdminRoute::GetEvent(id) => events::show(&id, env).await,
        AdminRoute::ReplayEvent(id) => replay::one(&id, query, cfg, env).await,
        AdminRoute::BulkReplay => bulk::many(query, cfg, env).await,
        AdminRoute::Destinations => destinations::list(cfg, env).await,
        AdminRoute::Stats => stats::overview(cfg, env).await,
        AdminRoute::EventBodies(id) => bodies::of_event(&id, cfg, env).await,
        AdminRoute::Doctor => doctor::examine(cfg, env).await,
        AdminRoute::Preview(name) => match req.clone()?.text().await {
            Ok(body) => bodies::preview(&name, body, cfg).await,
            Err(e) => Err(ApiError::BadRequest(format!("the request's body could not be read ({e})"))),
        },
    };
    let mut resp = match result {
        Ok((status, body)) => json_response(status, &body)?,
        Err(e) => refuse(&e)?,
    };
    // Event data, for whoever holds the token: never kept by a cache, never sniffed as anything else.
    resp.headers_mut().set("Cache-Control", "no-store")?;
    resp.headers_mut().set("X-Content-Type-Options", "nosniff")?;
    Ok(resp)
}

pub(super) fn storage(e: worker::Error) -> ApiError {
    log(json!({"kind": "admin_storage_failed", "error": e.to_string()}));
    ApiError::Unavailable("the event log (D1) could not be read; check the DB binding and that migrations/ were applied".into())
}

/// Every row of `sql` with `params` bound.
pub(super) async fn rows<T: serde::de::DeserializeOwned>(
    env: &Env,
    sql: String,
    params: &[JsValue],
) -> std::result::Result<Vec<T>, ApiError> {
    let result = env.d1(D1_DATABASE).map_err(storage)?.prepare(sql).bind(params).map_err(storage)?.all().await.map_err(storage)?;
    // The rows D1 read for it go into the request's `ops` (what the admin API costs).
    ops::d1(std::slice::from_ref(&result));
    result.results().map_err(storage)
}

/// How many events match `filter` (a `WHERE` clause and its parameters).
pub(super) async fn count(env: &Env, filter: &str, params: &[SqlValue]) -> std::result::Result<i64, ApiError> {
    let total: Option<i64> = env
        .d1(D1_DATABASE)
        .map_err(storage)?
        .prepare(format!("SELECT COUNT(*) AS total FROM events{filter}"))
        .bind(&bind(params))
        .map_err(storage)?
        .first(Some("total"))
        .await
        .map_err(storage)?;
    Ok(total.unwrap_or(0))
}

/// The filter's parameters, then `extra` (LIMIT, OFFSET), as bound values.
pub(super) fn with_extra(params: &[SqlValue], extra: &[u64]) -> Vec<JsValue> {
    let mut all = bind(params);
    all.extend(extra.iter().map(|n| JsValue::from_f64(*n as f64)));
    all
}

pub(super) fn bind(params: &[SqlValue]) -> Vec<JsValue> {
    params
        .iter()
        .map(|p| match p {
            SqlValue::Text(s) => JsValue::from_str(s),
            SqlValue::Int(n) => JsValue::from_f64(*n as f64),
        })
        .collect()
}
