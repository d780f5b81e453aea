//! Sending to the queues: one envelope (a retry, a hold, a move to the slow
//! lane, a dead letter), or many bodies in as few batches as Queues allow.
//! Every message is text: the envelope's JSON (see `delivery::Envelope`).

use super::binding::{binding, queue_send, queue_send_batch};
use super::env::QUEUE_EVENTS;
use super::ops;
use crate::delivery::Envelope;
use worker::{Env, Error, Result};

fn queue(env: &Env, name: &str) -> Result<worker::wasm_bindgen::JsValue> {
    binding(env, name).ok_or_else(|| Error::RustError(format!("the {name} queue binding is missing; bind it as in wrangler.toml")))
}

/// Sends `envelope` to the queue bound as `name`, after `delay` seconds.
pub async fn send(env: &Env, name: &str, envelope: &Envelope, delay: Option<u32>) -> Result<()> {
    let body = envelope.to_json();
    ops::queue_write(body.len());
    queue_send(&queue(env, name)?, &body, delay).await.map_err(Error::RustError)
}

/// Sends every body to the events queue, in as few batches as Queues allow.
pub async fn send_all(env: &Env, bodies: &[String]) -> Result<()> {
    let queue = queue(env, QUEUE_EVENTS)?;
    if let [body] = bodies {
        // One message (the usual event, one destination): a plain send.
        ops::queue_write(body.len());
        return queue_send(&queue, body, None).await.map_err(Error::RustError);
    }
    for range in crate::pipeline::batches(&bodies.iter().map(String::len).collect::<Vec<_>>()) {
        bodies[range.clone()].iter().for_each(|b| ops::queue_write(b.len()));
        queue_send_batch(&queue, &bodies[range]).await.map_err(Error::RustError)?;
    }
    Ok(())
}
