//! Reverse DNS over DoH for Mail-Plus: the fetches the core's `dns` module
//! asks for, and the verdict cache in KV (`rdns:{suffix}:{ip}`).

use super::{fetch_with_timeout, log, now_seconds, KV_DEDUPE};
use crate::dns::{
    cache_key, cache_ttl, candidate_names, forward_confirms, forward_type, parse_answer, ptr_name, query_url, RecordType, VerdictCache,
    MAX_FORWARD_LOOKUPS,
};
use crate::error::ApiError;
use crate::providers::RdnsCheck;
use serde_json::json;
use std::cell::RefCell;
use worker::{Env, Headers, Method, Request, RequestInit};

const DOH_TIMEOUT_SECONDS: u32 = 5;

thread_local! {
    /// This isolate's verdicts, refusals included (see `VerdictCache`).
    static VERDICTS: RefCell<VerdictCache> = RefCell::new(VerdictCache::default());
}

/// True when `ip`'s PTR name is under `MAIL_PLUS_RDNS_SUFFIX` and resolves back
/// to `ip`. A resolver failure is 503 (the provider retries), not a refusal.
///
/// The cost of one unauthenticated request is bounded: a cached verdict costs
/// nothing (isolate memory) or one KV read (a pass another isolate found);
/// otherwise one PTR fetch and at most `MAX_FORWARD_LOOKUPS` forward fetches.
/// Only passes are written to KV, so a stream of refused addresses writes nothing.
pub async fn verify(check: &RdnsCheck, env: &Env) -> Result<bool, ApiError> {
    let (ip, suffix) = (check.ip, check.suffix.as_str());
    let key = cache_key(ip, suffix);
    if let Some(v) = VERDICTS.with(|c| c.borrow().get(&key, now_seconds())) {
        return Ok(v);
    }
    let kv = env.kv(KV_DEDUPE).ok();
    if let Some(kv) = &kv {
        if let Ok(Some(v)) = kv.get(&key).text().await {
            let passed = v == "pass";
            VERDICTS.with(|c| c.borrow_mut().put(key, passed, now_seconds()));
            return Ok(passed);
        }
    }
    let names = query(&check.doh_url, &ptr_name(ip), RecordType::Ptr).await?;
    let mut passed = false;
    for name in candidate_names(&names, suffix, MAX_FORWARD_LOOKUPS) {
        if forward_confirms(&query(&check.doh_url, &name, forward_type(ip)).await?, ip) {
            passed = true;
            break;
        }
    }
    if passed {
        if let Some(kv) = &kv {
            if let Ok(put) = kv.put(&key, "pass") {
                let _ = put.expiration_ttl(cache_ttl(true)).execute().await;
            }
        }
    }
    VERDICTS.with(|c| c.borrow_mut().put(key, passed, now_seconds()));
    log(json!({"kind": "rdns", "ip": ip.to_string(), "passed": passed}));
    Ok(passed)
}

async fn query(doh_url: &str, name: &str, rtype: RecordType) -> Result<Vec<String>, ApiError> {
    let unavailable = |why: String| {
        log(json!({"kind": "doh_failed", "name": name, "error": why}));
        ApiError::Unavailable(format!("reverse DNS could not be checked ({why}); nothing was accepted, please retry"))
    };
    let headers = Headers::new();
    headers.set("accept", "application/dns-json").map_err(|e| unavailable(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let req = Request::new_with_init(&query_url(doh_url, name, rtype), &init).map_err(|e| unavailable(format!("DOH_URL: {e}")))?;
    let mut resp = fetch_with_timeout(req, DOH_TIMEOUT_SECONDS).await.map_err(unavailable)?;
    if resp.status_code() != 200 {
        return Err(unavailable(format!("DoH answered HTTP {}", resp.status_code())));
    }
    let body = resp.bytes().await.map_err(|e| unavailable(e.to_string()))?;
    parse_answer(&body, rtype).map_err(unavailable)
}
