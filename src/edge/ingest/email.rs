//! Email Routing's `email` handler: the message the platform hands over goes
//! through the pipeline a webhook goes through (`ingest::accept`), as the
//! source `Provider::email_handler` names.
//!
//! What the handler's end means to the sending server (workerd; Miniflare
//! answers `/cdn-cgi/handler/email` the same way: tests/integration):
//! - it returns: the message is taken (SMTP 250);
//! - it called `setReject(reason)`: a permanent failure (5xx), the sender
//!   bounces the message: only for what can never be taken (too large, not mail);
//! - it throws: a temporary failure (4xx), the sending server keeps the
//!   message and tries again later: for everything that may pass then (a
//!   queue, R2 or KV failure, a broken configuration, a stream that broke).
//!
//! So no message is dropped in silence: it is on the queue, or its sender knows.

use super::body::{read_stream, Length};
use super::{accept, Taken};
use crate::edge::env::{config, log, now_millis, now_seconds, wasm_kib};
use crate::edge::ops;
use crate::error::ApiError;
use crate::providers::{Inbound, Provider, SmtpEnvelope};
use js_sys::Promise;
use serde_json::json;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::Env;

#[wasm_bindgen]
extern "C" {
    /// The `ForwardableEmailMessage` the platform hands over, bound here with
    /// loose types (nothing it holds can panic the handler) and with
    /// `setReject`'s result, which must be awaited where it is a promise (locally it is an RPC call).
    pub type IncomingEmail;
    #[wasm_bindgen(method, getter, js_name = from)]
    fn envelope_from(this: &IncomingEmail) -> JsValue;
    #[wasm_bindgen(method, getter, js_name = to)]
    fn envelope_to(this: &IncomingEmail) -> JsValue;
    #[wasm_bindgen(method, getter)]
    fn raw(this: &IncomingEmail) -> JsValue;
    #[wasm_bindgen(method, getter, js_name = rawSize)]
    fn raw_size(this: &IncomingEmail) -> JsValue;
    #[wasm_bindgen(method, catch, js_name = setReject)]
    fn set_reject(this: &IncomingEmail, reason: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn forward(this: &IncomingEmail, rcpt_to: &str) -> Result<JsValue, JsValue>;
}

/// How a message ends.
enum Outcome {
    /// On the queue (or already seen): `accepted` or `duplicate`.
    Taken(Taken),
    /// Permanently refused, with the reason the sender reads in its bounce.
    Reject(ApiError),
    /// Temporarily refused: the sending server retries.
    Defer(ApiError),
}

/// The Worker's `email` export (the shim worker-build generates wires it to
/// the entrypoint's `email` method). Not `#[event(email)]`: in workers-rs 0.8
/// that panics on `Err`, which resets the instance and kills its other requests.
#[wasm_bindgen(wasm_bindgen_futures = ::worker::wasm_bindgen_futures)]
pub async fn email(message: IncomingEmail, env: Env, _ctx: JsValue) -> Result<JsValue, JsValue> {
    ops::request();
    let started = now_millis();
    let size = message.raw_size().as_f64();
    let outcome = receive(&message, &env).await;
    let (status, code, ids) = match &outcome {
        Outcome::Taken(t) => (t.status, None, t.ids.clone()),
        Outcome::Reject(e) => ("rejected", Some(e.code()), Vec::new()),
        Outcome::Defer(e) => ("deferred", Some(e.code()), Vec::new()),
    };
    log(json!({
        "kind": "email",
        "provider": Provider::email_handler().map(Provider::name),
        "status": status,
        "code": code,
        "ids": ids,
        "size": size,
        "ms": now_millis().saturating_sub(started),
        "wasm_kib": wasm_kib(),
        "ops": ops::take(),
    }));
    match outcome {
        Outcome::Taken(..) => Ok(JsValue::UNDEFINED),
        Outcome::Reject(e) => match message.set_reject(&reject_reason(&e)) {
            // Locally an RPC call, whose result is a thenable, not a `Promise`: resolve whatever it is.
            Ok(done) => {
                JsFuture::from(Promise::resolve(&done)).await?;
                Ok(JsValue::UNDEFINED)
            }
            // Could not refuse it for good: refuse it for now, and the sender tries again.
            Err(err) => Err(err),
        },
        Outcome::Defer(e) => Err(js_sys::Error::new(&format!("mailhook could not take the message now, try again later: {e}")).into()),
    }
}

/// What the sender reads in its bounce.
fn reject_reason(e: &ApiError) -> String {
    match e {
        ApiError::PayloadTooLarge { limit } => {
            format!("message too large: this address takes messages of at most {limit} bytes (mailhook MAX_BODY_BYTES)")
        }
        e => format!("message refused: {e}"),
    }
}

async fn receive(message: &IncomingEmail, env: &Env) -> Outcome {
    let Some(provider) = Provider::email_handler() else {
        return Outcome::Reject(ApiError::NotFound("this Worker takes no mail".into()));
    };
    let cfg = match config(env) {
        Ok(c) => c,
        Err(e) => return Outcome::Defer(ApiError::NotConfigured(e.to_string())),
    };
    if let Some(missing) = provider.missing_config(&cfg.providers) {
        return Outcome::Defer(ApiError::NotConfigured(missing));
    }
    let limit = provider.body_limit(cfg.max_body_bytes);
    let size = message.raw_size().as_f64().filter(|n| n.is_finite() && *n >= 0.0).map(|n| n as u64);
    if size.is_some_and(|n| n > limit) {
        return Outcome::Reject(ApiError::PayloadTooLarge { limit });
    }
    let from = message.envelope_from().as_string().unwrap_or_default();
    let to = message.envelope_to().as_string().unwrap_or_default();
    // `rawSize` sizes the buffer and refuses early; it is not held to the byte (the stream is what counts).
    let body = match read_stream(message.raw().dyn_into().ok(), limit, Length::Unknown, size.unwrap_or(0).min(limit)).await {
        Ok(b) => b,
        Err(e @ ApiError::PayloadTooLarge { .. }) => return Outcome::Reject(e),
        // A stream that broke or ended short: the next delivery may be whole.
        Err(e) => return Outcome::Defer(ApiError::Unavailable(format!("the message could not be read ({e})"))),
    };
    let inbound = Inbound { envelope: Some(SmtpEnvelope { from: &from, to: &to }), ..Inbound::new(&[], None, &body, now_seconds()) };
    let taken = match accept(env, provider, &cfg, &inbound).await {
        Ok(taken) => taken,
        Err(e @ (ApiError::NotConfigured(_) | ApiError::Unavailable(_))) => return Outcome::Defer(e),
        Err(e) => return Outcome::Reject(e),
    };
    // A copy to a mailbox, as an Email Routing rule would: best effort once the
    // event is queued. Cloudflare refuses to forward some mail (unauthenticated,
    // say); deferring it would have its sender retry for days a message whose
    // event was delivered at once.
    if let Some(rcpt) = provider.forward_to(&cfg.providers) {
        if let Err(e) = forward(message, rcpt).await {
            log(json!({"kind": "forward_failed", "ids": taken.ids, "error": e}));
        }
    }
    Outcome::Taken(taken)
}

async fn forward(message: &IncomingEmail, rcpt: &str) -> Result<(), String> {
    let done = message.forward(rcpt).map_err(|e| format!("{e:?}"))?;
    JsFuture::from(Promise::resolve(&done)).await.map_err(|e| format!("{e:?}"))?;
    Ok(())
}
