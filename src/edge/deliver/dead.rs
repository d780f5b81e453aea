//! The dead-letter consumer: each dead delivery recorded in the event log,
//! where an operator finds it and replays it, and told to alerts.

use super::{ack, envelope_of, retry_dead_letter_later};
use crate::alerts::Item;
use crate::config::Config;
use crate::delivery::Envelope;
use crate::destinations::LEGACY_NAME;
use crate::edge::env::log;
use crate::edge::eventlog;
use serde_json::json;
use worker::{Env, RawMessage};

/// Records a dead event in the event log (D1, status `dead`), where an
/// operator can list it and from where it can be replayed. Envelopes arrive
/// here from `dead_letter` (with the last status and error), or from the queue
/// itself when it gave up on a message after `max_retries` infrastructure failures.
/// Returns the alerts of what it recorded (one per destination).
pub async fn record(msg: &RawMessage, cfg: Option<&Config>, env: &Env) -> Vec<Item> {
    let Some((mut envelope, text)) = envelope_of(msg, env).await else { return Vec::new() };
    if envelope.last_error.is_none() {
        envelope.last_error = Some("the queue gave up after max_retries infrastructure failures".into());
    }
    // A message of 0.2 names no destination: it is dead at every destination that
    // takes it (so a bulk replay finds it), or at `origin` when none does.
    let dests: Vec<String> = match (&envelope.dest, cfg) {
        (Some(d), _) => vec![d.clone()],
        (None, Some(cfg)) => cfg.takers(envelope.route()).into_iter().map(String::from).collect(),
        (None, None) => Vec::new(),
    };
    let dests = if dests.is_empty() { vec![LEGACY_NAME.to_string()] } else { dests };
    let mut result = Ok(());
    for d in &dests {
        let one = Envelope { dest: Some(d.clone()), ..envelope.clone() };
        if let Err(e) = eventlog::record_dead(env, &one).await {
            result = Err(e);
        }
    }
    match result {
        Ok(()) => {
            log(json!({"kind": "dead_letter", "id": envelope.id, "dest": dests, "provider": envelope.provider, "type": envelope.kind,
                       "attempts": envelope.attempt, "last_status": envelope.last_status, "last_error": envelope.last_error}));
            ack(msg, text.len());
            dests
                .into_iter()
                .map(|destination| Item::Dead {
                    id: envelope.id.clone(),
                    provider: envelope.provider.clone(),
                    r#type: envelope.kind.clone(),
                    destination,
                    error: envelope.last_error.clone(),
                })
                .collect()
        }
        Err(e) => {
            log(json!({"kind": "dead_letter_record_failed", "id": envelope.id, "error": e.to_string()}));
            retry_dead_letter_later(msg);
            Vec::new()
        }
    }
}
