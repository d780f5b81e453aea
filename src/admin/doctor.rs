//! `GET /admin/doctor` (`npm run mailhook -- doctor`): what is wrong with a running mailhook, each finding with its fix,
//! decided here from what the edge read (the configuration, the migrations applied, the circuits, the dead letters,
//! `ALERT_URL`, the retention cron's last run).

use super::cron::{retention_finding, RetentionSeen};
use super::finding::{finding, Finding, Level};
use crate::config::Config;
use crate::destinations::Circuit;
use crate::providers::Provider;
use std::collections::HashMap;

/// The migrations this version needs, in order (`migrations/`; `tests/structure.rs` holds the two lists together).
pub const MIGRATIONS: [&str; 9] = [
    "0001_dead_letters.sql",
    "0002_event_log.sql",
    "0003_destinations.sql",
    "0004_alerts.sql",
    "0005_milliseconds.sql",
    "0006_half_open.sql",
    "0007_fewer_rows.sql",
    "0008_console_signouts.sql",
    "0009_two_rows.sql",
];

/// What the edge read for the doctor.
pub struct Facts {
    /// The migrations applied (`d1_migrations`), or `None` when D1 could not be read.
    pub applied: Option<Vec<String>>,
    pub circuits: HashMap<String, Circuit>,
    /// Dead deliveries by destination.
    pub dead: HashMap<String, u64>,
    /// `ALERT_URL`, as set (blank: none).
    pub alert_url: Option<String>,
    /// What the retention cron recorded of its runs.
    pub retention: RetentionSeen,
    /// Now, in seconds.
    pub now: i64,
}

/// Every finding, errors first.
pub fn findings(cfg: &Config, facts: &Facts) -> Vec<Finding> {
    use Level::*;
    let mut out = Vec::new();
    match &facts.applied {
        None => out.push(finding(
            Error,
            "the event log (D1) could not be read".into(),
            "check the DB binding in wrangler.toml and that the database exists (`npx wrangler d1 list`)",
        )),
        Some(applied) => {
            for m in MIGRATIONS.iter().filter(|m| !applied.iter().any(|a| a == *m)) {
                out.push(finding(
                    Error,
                    format!("migration {m} is not applied"),
                    "run `npm run deploy`, which applies them before it deploys (or `npx wrangler d1 migrations apply mailhook --remote`; locally, `npm start` applies them)",
                ));
            }
        }
    }
    for d in &cfg.destinations {
        if let Some(problem) = d.problem() {
            out.push(finding(
                Error,
                format!("destination {:?} cannot be delivered to: {problem}", d.name),
                "set what it names, then deploy",
            ));
        }
        let c = facts.circuits.get(&d.name).copied().unwrap_or_default();
        if c.open {
            out.push(finding(
                Warning,
                format!(
                    "destination {:?}'s circuit is open after {} failed attempts; its deliveries are held, the next probe at {}",
                    d.name,
                    c.failures,
                    crate::time::to_rfc3339(c.probe_at)
                ),
                "make its URL answer 2xx; `npm run mailhook -- destinations` shows it, and the first success closes the circuit",
            ));
        }
        if let Some(n) = facts.dead.get(&d.name).filter(|n| **n > 0) {
            out.push(finding(
                Warning,
                format!("destination {:?} has {n} dead deliveries", d.name),
                format!(
                    "see why with `npm run mailhook -- export --status dead --destination {0}`; once fixed, `npm run mailhook -- replay --dead --destination {0}`",
                    d.name
                ),
            ));
        }
    }
    for p in Provider::ALL {
        if let Some(missing) = p.missing_config(&cfg.providers) {
            out.push(finding(Warning, missing, format!("if {} sends to this Worker, set what it names; otherwise ignore this", p.title())));
        }
    }
    for w in cfg.warnings() {
        out.push(finding(Warning, w, "see the README's Configuration"));
    }
    out.extend(retention_finding(&facts.retention, facts.now));
    match facts.alert_url.as_deref().map(str::trim) {
        None | Some("") => out.push(finding(
            Warning,
            "ALERT_URL is not set: nobody is told when deliveries die or a circuit opens".into(),
            "set ALERT_URL in wrangler.toml [vars] to a Slack-compatible or JSON webhook (README, Operating it)",
        )),
        Some(url) => {
            if let Err(e) = crate::destinations::valid_url(url) {
                out.push(finding(Error, format!("ALERT_URL: {e}"), "set ALERT_URL to an absolute http(s) URL"));
            }
        }
    }
    out.sort_by_key(|f| f.level != Error);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let get = |k: &str| match k {
            "ORIGIN_URL" => Some("https://origin.example/hook".to_string()),
            "ORIGIN_SIGNING_SECRET" => Some(format!("whsec_{}", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")),
            "MAILTURA_WEBHOOK_SECRET" => Some("s".repeat(32)),
            _ => None,
        };
        Config::from_lookup(get).unwrap()
    }

    fn facts() -> Facts {
        Facts {
            applied: Some(MIGRATIONS.iter().map(|m| m.to_string()).collect()),
            circuits: HashMap::new(),
            dead: HashMap::new(),
            alert_url: Some("https://alerts.example/hook".into()),
            retention: RetentionSeen::Seen {
                started: Some(1_700_000_000),
                finished: Some(super::super::cron::RetentionRun { at: 1_700_000_000, error: None }),
            },
            now: 1_700_000_000 + 86_400,
        }
    }

    #[test]
    fn each_finding_says_its_fix() {
        let cfg = cfg();
        let all = findings(&cfg, &facts());
        assert!(all.iter().all(|f| f.level == Level::Warning), "{all:?}");
        let mut f = facts();
        f.applied.as_mut().unwrap().retain(|m| m != "0009_two_rows.sql");
        f.dead.insert("origin".into(), 3);
        f.circuits.insert("origin".into(), Circuit { open: true, failures: 10, probe_at: 1_700_000_000, ..Default::default() });
        f.alert_url = None;
        let all = findings(&cfg, &f);
        assert_eq!(all[0].level, Level::Error);
        assert_eq!(all[0].what, "migration 0009_two_rows.sql is not applied");
        assert!(all[0].fix.contains("d1 migrations apply"));
        assert!(all
            .iter()
            .any(|x| x.what.contains("\"origin\" has 3 dead deliveries") && x.fix.contains("replay --dead --destination origin")));
        assert!(all.iter().any(|x| x.what.contains("circuit is open after 10")));
        assert!(all.iter().any(|x| x.what.starts_with("ALERT_URL is not set")));
        assert!(findings(&cfg, &Facts { applied: None, ..facts() })[0].what.contains("could not be read"));
    }
}
