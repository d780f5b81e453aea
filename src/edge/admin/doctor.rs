//! `GET /admin/doctor`: what the doctor (`admin::findings`) reads: the migrations applied, the circuits, the dead
//! deliveries by destination, `ALERT_URL`, and the retention cron's last run.

use super::Answer;
use crate::admin::{findings, Facts};
use crate::config::Config;
use crate::edge::circuit;
use crate::edge::env::{now_seconds, var_text, D1_DATABASE};
use crate::status::Status;
use serde::Deserialize;
use serde_json::json;
use worker::Env;

pub(super) async fn examine(cfg: &Config, env: &Env) -> Answer {
    #[derive(Deserialize)]
    struct Migration {
        name: String,
    }
    #[derive(Deserialize)]
    struct Dead {
        destination: String,
        n: u64,
    }
    let db = env.d1(D1_DATABASE).ok();
    let applied = match &db {
        Some(db) => match db.prepare("SELECT name FROM d1_migrations").all().await.and_then(|r| r.results::<Migration>()) {
            Ok(rows) => Some(rows.into_iter().map(|m| m.name).collect()),
            Err(_) => None,
        },
        None => None,
    };
    // Dead deliveries are in the partial index of unfinished ones (a delivery kept in its event's row never is).
    let dead_sql = format!(
        "SELECT destination, COUNT(*) AS n FROM deliveries WHERE status = {} AND status != {} GROUP BY destination",
        Status::Dead.sql(),
        Status::Delivered.sql()
    );
    let dead = match &db {
        Some(db) => db.prepare(dead_sql).all().await.and_then(|r| r.results::<Dead>()).unwrap_or_default(),
        None => Vec::new(),
    };
    let facts = Facts {
        applied,
        circuits: circuit::load(env).await,
        dead: dead.into_iter().map(|d| (d.destination, d.n)).collect(),
        alert_url: var_text(env, "ALERT_URL"),
        retention: crate::edge::retention::seen(env).await,
        now: now_seconds(),
    };
    let found = findings(cfg, &facts);
    Ok((200, json!({"version": crate::VERSION, "findings": found})))
}
