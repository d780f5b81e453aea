//! What the daily retention cron records of its runs (in KV: when it started, and when and how it finished), and
//! what the doctor makes of that: never run, running, stopped half way, late, or failing.

use super::finding::{finding, Finding, Level};
use serde::{Deserialize, Serialize};

/// A finished run, as the cron records it under `RetentionRun::KEY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRun {
    /// When it finished, in seconds.
    pub at: i64,
    /// Its failures, if any stage failed.
    pub error: Option<String>,
}

impl RetentionRun {
    /// The last finished run.
    pub const KEY: &'static str = "retention:last-run";
    /// When the last run started (seconds): a run that started and never finished was cut short.
    pub const START_KEY: &'static str = "retention:last-start";
    /// Kept far past every limit below (one key each, rewritten daily): a cron stopped for months still shows as stopped.
    pub const TTL_SECONDS: u64 = 400 * 86_400;
    /// Older than this, the daily cron has missed a run.
    pub const LATE_SECONDS: i64 = 2 * 86_400;
    /// Started longer ago than this without finishing, a run was cut short (a run takes seconds to minutes).
    pub const UNFINISHED_SECONDS: i64 = 3600;
}

/// What the edge read of the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetentionSeen {
    /// KV could not be read (or is not bound): the doctor cannot tell.
    Unreadable,
    Seen {
        started: Option<i64>,
        finished: Option<RetentionRun>,
    },
}

const TRIGGER: &str = "check that wrangler.toml [triggers] crons has \"17 3 * * *\" and run npm run deploy; `npx wrangler tail` shows its \"retention\" lines";

/// The doctor's finding about the retention cron, if any.
pub fn retention_finding(seen: &RetentionSeen, now: i64) -> Option<Finding> {
    let (started, finished) = match seen {
        RetentionSeen::Unreadable => {
            return Some(finding(
                Level::Warning,
                "the retention cron's record could not be read (KV), so whether it runs is unknown".into(),
                "check the DEDUPE binding in wrangler.toml (npm run deploy writes it); `npx wrangler tail` shows the cron's \"retention\" lines",
            ))
        }
        RetentionSeen::Seen { started, finished } => (*started, finished.as_ref()),
    };
    let ago = |t: i64| now.saturating_sub(t);
    if let Some(s) = started.filter(|s| finished.is_none_or(|f| f.at < *s) && ago(*s) > RetentionRun::UNFINISHED_SECONDS) {
        return Some(finding(
            Level::Error,
            format!("the retention cron started at {} and did not finish (cut short by a CPU or time limit, or an exception)", crate::time::to_rfc3339(s)),
            "`npx wrangler tail` at 03:17 UTC shows how far it gets; a long backlog is removed over several runs, so tell us if it never finishes",
        ));
    }
    let Some(run) = finished else {
        if started.is_some() {
            return None; // running now
        }
        return Some(finding(
            Level::Warning,
            "the retention cron has not run yet (daily at 03:17 UTC): the event log and R2 are not trimmed until it does".into(),
            format!("nothing to do on a Worker deployed less than a day ago; otherwise {TRIGGER}. Locally wrangler dev runs no crons: curl 'http://127.0.0.1:8787/cdn-cgi/handler/scheduled?cron=17+3+*+*+*'"),
        ));
    };
    let when = crate::time::to_rfc3339(run.at);
    if ago(run.at) > RetentionRun::LATE_SECONDS {
        let days = ago(run.at) as f64 / 86_400.0;
        return Some(finding(
            Level::Error,
            format!("the retention cron last ran at {when}, {days:.1} days ago: the event log and R2 grow without bound"),
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

    const T: i64 = 1_700_000_000;

    fn seen(started: Option<i64>, at: Option<i64>, error: Option<&str>) -> RetentionSeen {
        RetentionSeen::Seen { started, finished: at.map(|at| RetentionRun { at, error: error.map(str::to_string) }) }
    }

    #[test]
    fn never_run_running_cut_short_late_or_failing() {
        assert_eq!(retention_finding(&seen(Some(T), Some(T), None), T + 86_400), None);
        let never = retention_finding(&seen(None, None, None), T).unwrap();
        assert_eq!(never.level, Level::Warning);
        assert!(never.what.contains("has not run yet"));
        assert_eq!(retention_finding(&seen(Some(T), None, None), T + 60), None, "running now");
        let cut = retention_finding(&seen(Some(T + 86_400), Some(T), None), T + 86_400 + 7200).unwrap();
        assert_eq!(cut.level, Level::Error);
        assert!(cut.what.contains("did not finish"), "{cut:?}");
        let late = retention_finding(&seen(Some(T), Some(T), None), T + 3 * 86_400 + 43_200).unwrap();
        assert_eq!(late.level, Level::Error);
        assert!(late.what.contains("3.5 days ago") && late.fix.contains("17 3 * * *"), "{late:?}");
        let failed = retention_finding(&seen(Some(T), Some(T), Some("D1_ERROR: overloaded")), T + 60).unwrap();
        assert_eq!(failed.level, Level::Error);
        assert!(failed.what.ends_with("failed at 2023-11-14T22:13:20Z: D1_ERROR: overloaded"), "{failed:?}");
        assert_eq!(retention_finding(&RetentionSeen::Unreadable, T).unwrap().level, Level::Warning);
        // A record or a clock far off either way never panics.
        for (started, at, now) in [(i64::MAX, i64::MIN, i64::MIN), (i64::MIN, i64::MAX, i64::MAX), (0, i64::MIN, i64::MAX)] {
            let _ = retention_finding(&seen(Some(started), Some(at), Some("x")), now);
        }
    }
}
