//! `GET /admin/doctor` (`npm run mailhook -- doctor`): what is wrong with a running mailhook, each finding with its fix,
//! decided here from what the edge read (the configuration, the migrations applied, the circuits, the dead letters,
//! `ALERT_URL`, the retention cron's last run).

use crate::config::Config;
use crate::destinations::Circuit;
use crate::providers::Provider;
use serde::Serialize;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Something does not work: fix it.
    Error,
    /// It works, but look at it.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Level,
    /// What is wrong.
    pub what: String,
    /// What to do about it.
    pub fix: String,
}

/// What the edge read for the doctor.
pub struct Facts {
    /// The migrations applied (`d1_migrations`), or `None` when D1 could not be read.
    pub applied: Option<Vec<String>>,
    pub circuits: HashMap<String, Circuit>,
    /// Dead deliveries by destination.
    pub dead: HashMap<String, u64>,
    /// `ALERT_URL`, as set (blank: none).
    pub alert_url: Option<String>,
    /// The retention cron's last run, as it recorded it (`None`: it never ran, or its record expired).
    pub retention: Option<RetentionRun>,
    /// Now, in seconds.
    pub now: i64,
}

/// What the daily retention cron records of its run (in KV, `RetentionRun::KEY`), for the doctor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RetentionRun {
    /// When it ran, in seconds.
    pub at: i64,
    /// Its first failure, if any stage failed.
    pub error: Option<String>,
}

impl RetentionRun {
    pub const KEY: &'static str = "retention:last-run";
    /// Kept longer than the doctor's limit, so that a cron that stopped shows as stopped, not as never run.
    pub const TTL_SECONDS: u64 = 30 * 86_400;
    /// Older than this, the daily cron has missed a run.
    pub const LATE_SECONDS: i64 = 2 * 86_400;
}

fn finding(level: Level, what: String, fix: impl Into<String>) -> Finding {
    Finding { level, what, fix: fix.into() }
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
    out.extend(retention(facts));
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

/// The retention cron: never run, late, or failing.
fn retention(facts: &Facts) -> Option<Finding> {
    const TRIGGER: &str = "check that wrangler.toml [triggers] crons has \"17 3 * * *\" and run npm run deploy; `npx wrangler tail` shows its \"retention\" lines";
    let Some(run) = &facts.retention else {
        return Some(finding(
            Level::Warning,
            "the retention cron has not run yet (daily at 03:17 UTC): the event log and R2 are not trimmed until it does".into(),
            format!("nothing to do on a Worker deployed less than a day ago; otherwise {TRIGGER}. Locally wrangler dev runs no crons: curl 'http://127.0.0.1:8787/cdn-cgi/handler/scheduled?cron=17+3+*+*+*'"),
        ));
    };
    let when = crate::time::to_rfc3339(run.at);
    if facts.now - run.at > RetentionRun::LATE_SECONDS {
        let days = (facts.now - run.at) / 86_400;
        return Some(finding(
            Level::Error,
            format!("the retention cron last ran at {when}, {days} days ago: the event log and R2 grow without bound"),
            TRIGGER,
        ));
    }
    run.error.as_ref().map(|e| {
        finding(
            Level::Error,
            format!("the retention cron failed at {when}: {e}"),
            "fix what it names (D1 or R2 unavailable is retried by the next day's run); `npx wrangler tail` shows the run",
        )
    })
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
            retention: Some(RetentionRun { at: 1_700_000_000, error: None }),
            now: 1_700_000_000 + 86_400,
        }
    }

    #[test]
    fn the_retention_cron_never_run_late_or_failing() {
        let cfg = cfg();
        let named = |f: Facts| findings(&cfg, &f).into_iter().filter(|x| x.what.contains("retention cron")).collect::<Vec<_>>();
        assert!(named(facts()).is_empty());
        let never = named(Facts { retention: None, ..facts() });
        assert_eq!(never[0].level, Level::Warning);
        assert!(never[0].what.contains("has not run yet"));
        let late = named(Facts { now: 1_700_000_000 + 3 * 86_400, ..facts() });
        assert_eq!(late[0].level, Level::Error);
        assert!(late[0].what.contains("3 days ago") && late[0].fix.contains("17 3 * * *"), "{late:?}");
        let failed =
            named(Facts { retention: Some(RetentionRun { at: 1_700_000_000, error: Some("D1_ERROR: overloaded".into()) }), ..facts() });
        assert_eq!(failed[0].level, Level::Error);
        assert!(failed[0].what.ends_with("failed at 2023-11-14T22:13:20Z: D1_ERROR: overloaded"), "{failed:?}");
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
