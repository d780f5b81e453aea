//! Who may reach the console and the admin API, beyond the token: the
//! per-address limits (`crate::ratelimit`, Cloudflare's Rate Limiting
//! binding) and the console sessions signed out on the server (`console_signouts` in D1).

use super::env::{log, now_seconds, D1_DATABASE};
use crate::console::Session;
use crate::error::ApiError;
use crate::ratelimit::{client_key, Limit};
use serde_json::json;
use worker::wasm_bindgen::JsValue;
use worker::{Env, Request};

/// Counts the request against `limit` for its client's address; refuses it (429) past the limit.
/// Without the binding (a wrangler.toml from before 0.6), or if it fails, the request goes on.
pub async fn limit(env: &Env, limit: Limit, req: &Request) -> Result<(), ApiError> {
    let Ok(limiter) = env.rate_limiter(limit.binding()) else { return Ok(()) };
    let ip = req.headers().get("cf-connecting-ip").ok().flatten();
    match limiter.limit(client_key(limit, ip.as_deref())).await {
        Ok(outcome) if !outcome.success => {
            log(json!({"kind": "rate_limited", "limit": limit.binding(), "ip": ip}));
            Err(ApiError::TooManyRequests { what: limit.what().into(), retry_after: limit.retry_after() })
        }
        Ok(_) => Ok(()),
        Err(e) => {
            log(json!({"kind": "rate_limit_failed", "limit": limit.binding(), "error": e.to_string()}));
            Ok(())
        }
    }
}

/// The sessions of `sessions` that were not signed out; an error when D1 cannot say (the admin API needs it anyway).
pub async fn live(env: &Env, sessions: Vec<Session>) -> Result<Vec<Session>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Row {
        id: String,
    }
    let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
    let list = serde_json::to_string(&ids).unwrap_or_default();
    let unavailable = |e: worker::Error| {
        log(json!({"kind": "session_check_failed", "error": e.to_string()}));
        ApiError::Unavailable(
            "the console's sessions (D1) could not be read; check the DB binding and that migrations/ were applied".into(),
        )
    };
    let out: Vec<Row> = env
        .d1(D1_DATABASE)
        .map_err(unavailable)?
        .prepare("SELECT id FROM console_signouts WHERE id IN (SELECT value FROM json_each(?1))")
        .bind(&[JsValue::from_str(&list)])
        .map_err(unavailable)?
        .all()
        .await
        .map_err(unavailable)?
        .results()
        .map_err(unavailable)?;
    Ok(sessions.into_iter().filter(|s| !out.iter().any(|o| o.id == s.id)).collect())
}

/// Records `sessions` as signed out, until they would have expired.
pub async fn sign_out(env: &Env, sessions: &[Session]) -> Result<(), ApiError> {
    let unavailable = |e: worker::Error| {
        log(json!({"kind": "sign_out_failed", "error": e.to_string()}));
        ApiError::Unavailable("could not end the session on the server (D1); the cookie is still valid, please retry".into())
    };
    let db = env.d1(D1_DATABASE).map_err(unavailable)?;
    let mut statements = Vec::new();
    for s in sessions {
        let bound = db
            .prepare("INSERT INTO console_signouts (id, expires) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING")
            .bind(&[JsValue::from_str(&s.id), JsValue::from_f64(s.expires as f64)]);
        statements.push(bound.map_err(unavailable)?);
    }
    if !statements.is_empty() {
        db.batch(statements).await.map_err(unavailable)?;
    }
    Ok(())
}

/// Forgets the sign-outs of sessions that have expired anyway (the retention cron).
pub async fn forget_expired_sign_outs(env: &Env) -> worker::Result<()> {
    let now = JsValue::from_f64(now_seconds() as f64);
    env.d1(D1_DATABASE)?.prepare("DELETE FROM console_signouts WHERE expires < ?1").bind(&[now])?.run().await.map(drop)
}
