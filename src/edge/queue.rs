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

/// A send of many bodies that failed: how many were on the queue before it failed (the first `sent`), and why.
#[derive(Debug)]
pub struct Partial {
    pub sent: usize,
    pub error: Error,
}

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (after {} sent)", self.error, self.sent)
    }
}

/// Sends every body to the events queue, in as few batches as Queues allow.
pub async fn send_all(env: &Env, bodies: &[String]) -> std::result::Result<(), Partial> {
    let queue = queue(env, QUEUE_EVENTS).map_err(|error| Partial { sent: 0, error })?;
    if let [body] = bodies {
        // One message (the usual event, one destination): a plain send.
        ops::queue_write(body.len());
        return queue_send(&queue, body, None).await.map_err(|e| Partial { sent: 0, error: Error::RustError(e) });
    }
    for range in crate::pipeline::batches(&bodies.iter().map(String::len).collect::<Vec<_>>()) {
        bodies[range.clone()].iter().for_each(|b| ops::queue_write(b.len()));
        let start = range.start;
        queue_send_batch(&queue, &bodies[range]).await.map_err(|e| Partial { sent: start, error: Error::RustError(e) })?;
    }
    Ok(())
}
