//! `GET /healthz` (public: whether each source can authenticate, each
//! destination's circuit, the configuration's warnings, never a URL or a
//! secret) and adm.tools' `GET /webhook-confirm.txt`.

use super::circuit;
use super::env::{config, json_response, refuse, QUEUE_SLOW_EVENTS};
use crate::config::Config;
use crate::error::ApiError;
use crate::providers::Provider;
use worker::{Env, Response, Result};

pub async fn health(env: &Env) -> Result<Response> {
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
             run `npm run deploy`, which creates mailhook-events-slow, with the binding of wrangler.toml"
        ));
    }
    w
}

/// Each source and whether it can authenticate requests (`/healthz`, the console's overview).
pub fn providers_health(cfg: &Config) -> serde_json::Value {
    Provider::ALL
        .iter()
        .map(|p| (p.name().to_string(), serde_json::json!({"configured": p.missing_config(&cfg.providers).is_none()})))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Each destination, its settings' problem and its circuit. Not its URL:
/// `/healthz` is public, and a URL's path or host can be a secret (a Slack
/// webhook's is); `/admin/destinations` shows it.
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

pub fn confirm(env: &Env) -> Result<Response> {
    let account = config(env).ok().and_then(|c| c.providers.adm_tools.account_id.clone());
    match account {
        Some(id) => {
            let mut resp = Response::ok(id)?;
            resp.headers_mut().set("Content-Type", "text/plain; charset=utf-8")?;
            Ok(resp)
        }
        None => refuse(&ApiError::NotFound("no account id to confirm: set ADM_TOOLS_ACCOUNT_ID".into())),
    }
}
