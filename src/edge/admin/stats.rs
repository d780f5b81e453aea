//! `GET /admin/stats`: the console's overview.

use super::{rows, Answer};
use crate::admin::has_own_delivery;
use crate::config::Config;
use crate::edge::env::now_seconds;
use crate::edge::health;
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;
use worker::Env;

/// The rows the overview reads: events are logged in about the order they arrive (the rowid), so the
/// window's are after the last row logged an hour before it. The log has no index by time (one more row
/// written per event): this reads the window's rows, not the whole log.
const WINDOW: &str = "rowid > COALESCE((SELECT rowid FROM events WHERE received_at < ?1 - 3600 ORDER BY rowid DESC LIMIT 1), 0)";

/// The console's overview: 24 hours of events by hour, provider and outcome,
/// delivery latency (received to first successful attempt), and health.
pub(super) async fn overview(cfg: &Config, env: &Env) -> Answer {
    #[derive(Deserialize)]
    struct Latency {
        ms: i64,
    }
    let now = now_seconds();
    let since = JsValue::from_f64(crate::console::window_start(now) as f64);
    let hours: Vec<crate::console::HourRow> = rows(
        env,
        format!(
            "SELECT (received_at / 3600) * 3600 AS start, provider, status, COUNT(*) AS n FROM events \
             WHERE received_at >= ?1 AND {WINDOW} GROUP BY start, provider, status"
        ),
        std::slice::from_ref(&since),
    )
    .await?;
    // From acceptance to the end of the first 2xx attempt, in milliseconds (kept in the delivery row when it
    // was the first attempt, or in the event's row when it was also the event's first step logged, else among
    // the attempts); the latest 10 000 deliveries. From the window's events
    // to their deliveries (CROSS JOIN keeps that order: from all deliveries, it was 15 to 25 times slower).
    let latencies: Vec<Latency> = rows(
        env,
        format!(
            "SELECT ms FROM (SELECT e.received_at, COALESCE(d.first_ok_ms, (SELECT MIN(a.at_ms) FROM delivery_attempts a \
               WHERE a.event_id = d.event_id AND a.destination = d.destination AND a.status_code BETWEEN 200 AND 299)) \
               - COALESCE(e.received_ms, e.received_at * 1000) AS ms \
             FROM events e CROSS JOIN deliveries d ON d.event_id = e.id WHERE e.received_at >= ?1 AND {WINDOW} \
             UNION ALL SELECT e.received_at, e.first_ok_ms - COALESCE(e.received_ms, e.received_at * 1000) AS ms \
             FROM events e WHERE e.received_at >= ?1 AND {WINDOW} AND {}) \
             WHERE ms IS NOT NULL ORDER BY received_at DESC LIMIT 10000",
            has_own_delivery("e")
        ),
        &[since],
    )
    .await?;
    let mut body = crate::console::overview(now, &hours, latencies.into_iter().map(|l| l.ms.max(0)).collect());
    body["providers"] = health::providers_health(cfg);
    body["destinations"] = health::destinations_health(cfg, env).await;
    // The console's lists of statuses, spelled by the Worker.
    body["statuses"] = serde_json::json!(crate::status::Status::ALL);
    Ok((200, body))
}
