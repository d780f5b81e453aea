//! `GET /admin/destinations`: each destination's settings, its circuit and
//! how many deliveries it has in each status.

use super::{rows, Answer};
use crate::admin::delivery_rows;
use crate::config::Config;
use crate::status::Status;
use serde::Deserialize;
use serde_json::{json, Value};
use worker::Env;

/// Each destination: its settings, its circuit and how many deliveries it has in each status.
pub(super) async fn list(cfg: &Config, env: &Env) -> Answer {
    #[derive(Deserialize)]
    struct Count {
        destination: String,
        status: Status,
        n: i64,
    }
    #[derive(Deserialize)]
    struct CircuitRow {
        destination: String,
        open: i64,
        failures: i64,
        opened_at: Option<i64>,
        probe_at: Option<i64>,
    }
    let counts: Vec<Count> = rows(
        env,
        format!("SELECT destination, status, COUNT(*) AS n FROM {} AS d GROUP BY destination, status", delivery_rows("true")),
        &[],
    )
    .await?;
    let circuits: Vec<CircuitRow> = rows(env, "SELECT destination, open, failures, opened_at, probe_at FROM circuits".into(), &[]).await?;
    let list: Vec<Value> = cfg
        .destinations
        .iter()
        .map(|d| {
            let c = circuits.iter().find(|c| c.destination == d.name);
            let open = c.is_some_and(|c| c.open != 0);
            let deliveries: serde_json::Map<String, Value> =
                counts.iter().filter(|c| c.destination == d.name).map(|c| (c.status.to_string(), json!(c.n))).collect();
            json!({
                "name": d.name,
                "url": d.display_url(),
                "problem": d.problem(),
                "filter": {
                    "providers": d.filter.providers.as_ref().map(|ps| ps.iter().map(|p| p.name()).collect::<Vec<_>>()),
                    "types": d.filter.types,
                    "recipient_tags": d.filter.recipient_tags,
                },
                "timeout_seconds": d.timeout_seconds,
                "retry_schedule_seconds": d.retry_schedule,
                "attachments": d.attachments.as_str(),
                "max_body_bytes": d.max_body_bytes,
                "format": d.format.as_str(),
                "transform": d.transform.as_ref().map(|t| t.source()),
                "circuit": {
                    "state": if open { "open" } else { "closed" },
                    "failures": c.map_or(0, |c| c.failures),
                    "opens_after": d.circuit.failures,
                    "probe_seconds": d.circuit.probe_seconds,
                    "opened_at": c.and_then(|c| c.opened_at).filter(|_| open).map(crate::time::to_rfc3339),
                    "next_probe": c.and_then(|c| c.probe_at).filter(|_| open).map(crate::time::to_rfc3339),
                },
                "deliveries": deliveries,
            })
        })
        .collect();
    Ok((200, json!({"destinations": list})))
}
