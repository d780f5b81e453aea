//! The KV and Queue calls of every event, made on the binding objects
//! themselves: a method called with a plain options object, with no serde
//! round trip through `JsValue` (workers-rs builds each call's options with
//! `serde_wasm_bindgen`, which the profile of a webhook showed).

use js_sys::{Array, Function, Object, Promise, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::Env;

/// A binding of the Worker's environment, by name (`None` when it is not bound).
pub fn binding(env: &Env, name: &str) -> Option<JsValue> {
    Reflect::get(env, &JsValue::from_str(name)).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

/// Calls `object.method(args…)` and awaits the promise it returns.
async fn call(object: &JsValue, method: &str, args: &[&JsValue]) -> Result<JsValue, String> {
    let f: Function =
        Reflect::get(object, &JsValue::from_str(method)).and_then(JsCast::dyn_into).map_err(|_| format!("the binding has no {method}"))?;
    let result = match args {
        [a] => f.call1(object, a),
        [a, b] => f.call2(object, a, b),
        [a, b, c] => f.call3(object, a, b, c),
        _ => f.call0(object),
    }
    .map_err(text)?;
    JsFuture::from(Promise::resolve(&result)).await.map_err(text)
}

/// What a JavaScript error says (its message), for logs.
fn text(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).or_else(|| e.as_string()).unwrap_or_else(|| format!("{e:?}"))
}

/// `{ key: value, … }`
fn options(pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o
}

/// A KV value as text, or `None` when the key is absent.
pub async fn kv_get(kv: &JsValue, key: &str) -> Result<Option<String>, String> {
    Ok(call(kv, "get", &[&JsValue::from_str(key)]).await?.as_string())
}

/// Writes a KV value that expires after `ttl` seconds.
pub async fn kv_put(kv: &JsValue, key: &str, value: &str, ttl: u64) -> Result<(), String> {
    let opts = options(&[("expirationTtl", JsValue::from_f64(ttl as f64))]);
    call(kv, "put", &[&JsValue::from_str(key), &JsValue::from_str(value), &opts]).await.map(drop)
}

/// Sends one text message to a queue, after `delay` seconds.
pub async fn queue_send(queue: &JsValue, body: &str, delay: Option<u32>) -> Result<(), String> {
    let mut pairs = vec![("contentType", JsValue::from_str("text"))];
    if let Some(d) = delay {
        pairs.push(("delaySeconds", JsValue::from_f64(f64::from(d))));
    }
    call(queue, "send", &[&JsValue::from_str(body), &options(&pairs)]).await.map(drop)
}

/// Sends text messages to a queue in one `sendBatch`.
pub async fn queue_send_batch(queue: &JsValue, bodies: &[String]) -> Result<(), String> {
    let messages: Array = bodies
        .iter()
        .map(|b| JsValue::from(options(&[("body", JsValue::from_str(b)), ("contentType", JsValue::from_str("text"))])))
        .collect();
    call(queue, "sendBatch", &[&messages]).await.map(drop)
}
