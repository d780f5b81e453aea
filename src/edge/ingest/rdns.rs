//! The I/O of a reverse-DNS check (Mail-Plus): the core's `pipeline::Rdns`
//! says each step (a KV read of a verdict another isolate cached, a DoH
//! query), this does it and hands the answer back, until the verdict.

use super::body::{read_stream, Length};
use crate::dns::VerdictCache;
use crate::edge::binding::{binding, kv_get, kv_put};
use crate::edge::env::{fetch_with_timeout, log, now_seconds, KV_DEDUPE};
use crate::edge::ops;
use crate::error::ApiError;
use crate::pipeline::{Rdns, RdnsInput, RdnsStep};
use crate::providers::RdnsCheck;
use serde_json::json;
use std::cell::RefCell;
use worker::{Env, Headers, Method, Request, RequestInit, ResponseBody};

const DOH_TIMEOUT_SECONDS: u32 = 5;

/// A DoH answer is a few hundred bytes; a resolver that sends more is not read further.
const DOH_MAX_BYTES: u64 = 64 * 1024;

thread_local! {
    /// This isolate's verdicts, refusals included (see `VerdictCache`).
    static VERDICTS: RefCell<VerdictCache> = RefCell::new(VerdictCache::default());
}

/// The verdict of `check`: true when the client's PTR name is under the
/// suffix and resolves back to it. A resolver failure is 503 (the provider retries).
pub async fn verify(check: RdnsCheck, env: &Env) -> Result<bool, ApiError> {
    let kv = binding(env, KV_DEDUPE);
    let mut rdns = Rdns::new(check);
    let mut fetched = false;
    let mut step = VERDICTS.with(|c| rdns.step(RdnsInput::Start, &mut c.borrow_mut(), now_seconds()))?;
    loop {
        step = match step {
            RdnsStep::KvGet(key) => {
                let value = match &kv {
                    Some(kv) => {
                        ops::kv_read();
                        kv_get(kv, &key).await.ok().flatten()
                    }
                    None => None,
                };
                VERDICTS.with(|c| rdns.step(RdnsInput::Kv(value.as_deref()), &mut c.borrow_mut(), now_seconds()))?
            }
            RdnsStep::Fetch { url, name } => {
                fetched = true;
                let answer = query(&url).await;
                if let Err(why) = &answer {
                    // The name, not the URL: DOH_URL may carry a token.
                    log(json!({"kind": "doh_failed", "name": name, "error": why}));
                }
                let input = match &answer {
                    Ok((status, body)) => RdnsInput::Answer { status: *status, body },
                    Err(why) => RdnsInput::Failed(why),
                };
                VERDICTS.with(|c| rdns.step(input, &mut c.borrow_mut(), now_seconds()))?
            }
            RdnsStep::Done { passed, remember } => {
                if fetched {
                    log(json!({"kind": "rdns", "ip": rdns.ip().to_string(), "passed": passed}));
                }
                if let (Some((key, ttl)), Some(kv)) = (remember, &kv) {
                    ops::kv_write();
                    let _ = kv_put(kv, &key, "pass", ttl).await;
                }
                return Ok(passed);
            }
        };
    }
}

/// GETs a DoH URL: its status and at most `DOH_MAX_BYTES` of its body, or why
/// it failed (never the URL, which may carry a token, nor the runtime's text, which may quote it).
async fn query(url: &str) -> Result<(u16, Vec<u8>), String> {
    let headers = Headers::new();
    headers.set("accept", "application/dns-json").map_err(|_| "the DoH request could not be made".to_string())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let req = Request::new_with_init(url, &init).map_err(|_| "DOH_URL could not be requested".to_string())?;
    ops::subrequest();
    let resp = fetch_with_timeout(req, DOH_TIMEOUT_SECONDS).await.map_err(|e| match e.starts_with("timed out") {
        true => e,
        false => "connection error".to_string(),
    })?;
    let status = resp.status_code();
    let too_large = || format!("the DoH answer could not be read, or is over {DOH_MAX_BYTES} bytes");
    let body = match resp.body() {
        ResponseBody::Stream(stream) => {
            read_stream(Some(stream.clone()), DOH_MAX_BYTES, Length::Unknown, 0).await.map_err(|_| too_large())?
        }
        ResponseBody::Body(bytes) if bytes.len() as u64 <= DOH_MAX_BYTES => bytes.clone(),
        ResponseBody::Body(_) => return Err(too_large()),
        ResponseBody::Empty => Vec::new(),
    };
    Ok((status, body))
}
