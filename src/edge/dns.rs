//! Reverse DNS over DoH for Mail-Plus: the fetches the core's `dns` module
//! asks for, and the verdict cache in KV (`rdns:{suffix}:{ip}`).

use super::{fetch_with_timeout, log, KV_DEDUPE};
use crate::config::Config;
use crate::dns::{cache_key, cache_ttl, forward_confirms, forward_type, parse_answer, ptr_name, query_url, suffix_matches, RecordType};
use crate::error::ApiError;
use serde_json::json;
use std::net::IpAddr;
use worker::{Env, Headers, Method, Request, RequestInit};

const DOH_TIMEOUT_SECONDS: u32 = 5;
/// A PTR record set may name several hosts; forward-check at most this many.
const MAX_NAMES: usize = 4;

/// True when `ip`'s PTR name is under `MAIL_PLUS_RDNS_SUFFIX` and resolves back
/// to `ip`. A resolver failure is 503 (the provider retries), not a refusal.
pub async fn verify(ip: IpAddr, cfg: &Config, env: &Env) -> Result<bool, ApiError> {
    let suffix = cfg.mail_plus_rdns_suffix.as_deref().unwrap_or_default();
    let key = cache_key(ip, suffix);
    let kv = env.kv(KV_DEDUPE).ok();
    if let Some(kv) = &kv {
        if let Ok(Some(v)) = kv.get(&key).text().await {
            return Ok(v == "pass");
        }
    }
    let names = query(cfg, &ptr_name(ip), RecordType::Ptr).await?;
    let mut passed = false;
    for name in names.iter().filter(|n| suffix_matches(n, suffix)).take(MAX_NAMES) {
        if forward_confirms(&query(cfg, name, forward_type(ip)).await?, ip) {
            passed = true;
            break;
        }
    }
    if let Some(kv) = &kv {
        let verdict = if passed { "pass" } else { "fail" };
        if let Ok(put) = kv.put(&key, verdict) {
            let _ = put.expiration_ttl(cache_ttl(passed)).execute().await;
        }
    }
    log(json!({"kind": "rdns", "ip": ip.to_string(), "passed": passed}));
    Ok(passed)
}

async fn query(cfg: &Config, name: &str, rtype: RecordType) -> Result<Vec<String>, ApiError> {
    let unavailable = |why: String| {
        log(json!({"kind": "doh_failed", "name": name, "error": why}));
        ApiError::Unavailable(format!("reverse DNS could not be checked ({why}); nothing was accepted, please retry"))
    };
    let headers = Headers::new();
    headers.set("accept", "application/dns-json").map_err(|e| unavailable(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let req = Request::new_with_init(&query_url(&cfg.doh_url, name, rtype), &init).map_err(|e| unavailable(format!("DOH_URL: {e}")))?;
    let mut resp = fetch_with_timeout(req, DOH_TIMEOUT_SECONDS).await.map_err(unavailable)?;
    if resp.status_code() != 200 {
        return Err(unavailable(format!("DoH answered HTTP {}", resp.status_code())));
    }
    let body = resp.bytes().await.map_err(|e| unavailable(e.to_string()))?;
    parse_answer(&body, rtype).map_err(unavailable)
}
