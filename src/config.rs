//! Every variable and secret, read once into a typed, validated `Config`.
//!
//! The edge hands in a lookup over the Worker's environment; the core parses
//! and checks it, so a bad value is a clear error naming the variable instead
//! of a surprise at delivery time. Secrets never appear in `Debug` output.

pub use crate::auth::Secrets;
use crate::auth::MAX_CLOCK_SKEW_SECONDS;
use crate::delivery::{parse_schedule, schedule_span_seconds, DEFAULT_RETRY_SCHEDULE};
use crate::destinations::{self, CircuitPolicy, Defaults, Destination, DEFAULT_CIRCUIT_FAILURES, DEFAULT_CIRCUIT_PROBE_SECONDS};
use crate::event::Route;
use crate::limits::{KV_MIN_TTL_SECONDS, MAX_BODY_BYTES_LIMIT, MAX_QUEUE_DELAY_SECONDS};
pub use crate::values::ConfigError;
use crate::values::{boolean, number};

/// `DEAD_LETTER_QUEUE`'s default, as in wrangler.toml. The consumer reads the
/// variable itself, so that it records dead letters even when the rest of the
/// configuration is broken.
pub const DEFAULT_DEAD_LETTER_QUEUE: &str = "mailhook-dead-letters";

/// What LOG_RETENTION_DAYS must exceed the retry schedule's span by.
pub const RETENTION_MARGIN_SECONDS: u64 = 86_400;

#[derive(Debug, Clone)]
pub struct Config {
    pub max_body_bytes: u64,
    pub max_event_age_seconds: u64,
    pub dedupe_ttl_seconds: u64,
    pub include_raw: bool,

    /// Each source's own settings (see `providers::Source::settings`), and its token or signing secret.
    pub providers: crate::providers::Settings,

    /// Where events go (see `destinations`): the declared `DESTINATIONS`,
    /// and `origin` (`ORIGIN_URL`) when it is set or nothing is declared.
    pub destinations: Vec<Destination>,
    /// The default retry schedule (`RETRY_SCHEDULE_SECONDS`).
    pub retry_schedule: Vec<u32>,
    /// Bearer tokens of `/admin`; the API is off while empty.
    pub admin_tokens: Secrets,
    pub log_retention_days: u32,
    /// `RECIPIENT_TAG_SEPARATOR`: the characters that start a recipient's tag (`conversation`).
    pub tag_separators: String,
    /// Attachments by link (`links`): `PUBLIC_URL`, checked when a destination may take links
    /// (`None` while unset, or while no destination does and it is not a URL).
    pub public_url: Option<String>,
    /// `LINK_SIGNING_KEY`: the first signs links, any verifies one.
    pub link_keys: Secrets,
    /// `ATTACHMENT_LINK_SECONDS`: how long a link lives, at most until the event's retention ends.
    pub link_seconds: u64,
}

impl Config {
    /// Reads every variable through `get` (unset and empty are the same) and
    /// validates the whole, naming the first variable that is wrong.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let raw_tag_separators = get("RECIPIENT_TAG_SEPARATOR");
        let get = |name: &str| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let cfg = Config {
            max_body_bytes: number(&get, "MAX_BODY_BYTES", 33_554_432)?,
            max_event_age_seconds: number(&get, "MAX_EVENT_AGE_SECONDS", 86_400)?,
            dedupe_ttl_seconds: number(&get, "DEDUPE_TTL_SECONDS", 604_800)?,
            include_raw: boolean(&get, "INCLUDE_RAW", true)?,
            providers: crate::providers::Settings::from_lookup(&get)?,
            destinations: Vec::new(),
            retry_schedule: schedule(get("RETRY_SCHEDULE_SECONDS").as_deref())?,
            admin_tokens: Secrets::parse(get("ADMIN_TOKEN").as_deref()),
            log_retention_days: number(&get, "LOG_RETENTION_DAYS", 30)?,
            // Unset is `+`; empty (unlike the other variables) turns tags off.
            tag_separators: crate::conversation::tag_separators(raw_tag_separators.as_deref())?,
            public_url: get("PUBLIC_URL"),
            link_keys: Secrets::parse(get("LINK_SIGNING_KEY").as_deref()),
            link_seconds: number(&get, "ATTACHMENT_LINK_SECONDS", crate::links::DEFAULT_LINK_SECONDS)?,
        };
        let timeout_seconds = number(&get, "ORIGIN_TIMEOUT_SECONDS", 15)?;
        if !(1..=300).contains(&timeout_seconds) {
            return Err(ConfigError { var: "ORIGIN_TIMEOUT_SECONDS", message: format!("{timeout_seconds} is outside 1 to 300") });
        }
        let circuit = CircuitPolicy {
            failures: number(&get, "CIRCUIT_FAILURES", DEFAULT_CIRCUIT_FAILURES)?,
            probe_seconds: number(&get, "CIRCUIT_PROBE_SECONDS", DEFAULT_CIRCUIT_PROBE_SECONDS)?,
        };
        if circuit.failures == 0 {
            return Err(ConfigError { var: "CIRCUIT_FAILURES", message: "must be at least 1".into() });
        }
        if !(1..=MAX_QUEUE_DELAY_SECONDS).contains(&circuit.probe_seconds) {
            return Err(ConfigError { var: "CIRCUIT_PROBE_SECONDS", message: format!("must be 1 to {MAX_QUEUE_DELAY_SECONDS}") });
        }
        let defaults = Defaults { timeout_seconds, retry_schedule: &cfg.retry_schedule, circuit };
        let destinations = destinations::parse(get("DESTINATIONS").as_deref(), &defaults, &get)?;
        Config { destinations, ..cfg }.validate()
    }

    /// The names of the destinations that take the event.
    pub fn takers(&self, route: Route<'_>) -> Vec<&str> {
        self.destinations.iter().filter(|d| d.takes(route)).map(|d| d.name.as_str()).collect()
    }

    /// The destination called `name`.
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.name == name)
    }

    fn validate(self) -> Result<Self, ConfigError> {
        if !(1..=MAX_BODY_BYTES_LIMIT).contains(&self.max_body_bytes) {
            return Err(ConfigError {
                var: "MAX_BODY_BYTES",
                message: format!(
                    "{} is outside 1 to {MAX_BODY_BYTES_LIMIT} (100 MiB, the largest request body Workers accept on most plans)",
                    self.max_body_bytes
                ),
            });
        }
        if self.dedupe_ttl_seconds < KV_MIN_TTL_SECONDS {
            return Err(ConfigError {
                var: "DEDUPE_TTL_SECONDS",
                message: format!("{} is below Workers KV's minimum TTL of {KV_MIN_TTL_SECONDS} seconds", self.dedupe_ttl_seconds),
            });
        }
        // A signed event is accepted from `skew` seconds before its own time
        // until `max_age` after it: that whole window must fit in the dedupe
        // window, or a replay after its key expired would be accepted again.
        let acceptable_for = self.max_event_age_seconds.checked_add(MAX_CLOCK_SKEW_SECONDS.unsigned_abs());
        if acceptable_for.is_none_or(|a| a > self.dedupe_ttl_seconds) {
            let acceptable_for = acceptable_for.map_or_else(|| "a larger number".into(), |a| a.to_string());
            return Err(ConfigError {
                var: "MAX_EVENT_AGE_SECONDS",
                message: format!(
                    "{} plus the {MAX_CLOCK_SKEW_SECONDS} s allowed for clocks ahead exceeds DEDUPE_TTL_SECONDS ({}): a replayed event older than the dedupe window would be accepted again; lower MAX_EVENT_AGE_SECONDS or raise DEDUPE_TTL_SECONDS to at least {acceptable_for}",
                    self.max_event_age_seconds, self.dedupe_ttl_seconds
                ),
            });
        }
        // The retention cron must not remove an event's row and payload while
        // the schedule may still be retrying it.
        let span = self.destinations.iter().map(|d| schedule_span_seconds(&d.retry_schedule)).max().unwrap_or(0);
        let needed = span.max(schedule_span_seconds(&self.retry_schedule)) + RETENTION_MARGIN_SECONDS;
        let needed_days = needed.div_ceil(86_400);
        if u64::from(self.log_retention_days) < needed_days {
            return Err(ConfigError {
                var: "LOG_RETENTION_DAYS",
                message: format!(
                    "{} is shorter than the longest retry schedule (RETRY_SCHEDULE_SECONDS or a destination's) can take (up to {} s with jitter) plus a day; set it to at least {needed_days}",
                    self.log_retention_days,
                    needed - RETENTION_MARGIN_SECONDS
                ),
            });
        }
        self.check_links()
    }

    /// A destination that may take links needs the Worker's public URL and a key to sign them.
    fn check_links(mut self) -> Result<Self, ConfigError> {
        let Some(d) = self.destinations.iter().find(|d| d.may_link()) else {
            // Only the console makes links then: never with a key short enough to guess, nor served by one.
            self.public_url = self.public_url.and_then(|u| public_url(&u).ok());
            self.link_keys = self.link_keys.retain(|k| k.len() >= MIN_LINK_KEY_LEN);
            return Ok(self);
        };
        let err = |var, message| Err(ConfigError { var, message });
        let Some(raw) = self.public_url.as_deref() else {
            return err(
                "PUBLIC_URL",
                format!(
                    "destination {:?} takes attachments as links, which are URLs of this Worker; set PUBLIC_URL to its https:// address",
                    d.name
                ),
            );
        };
        self.public_url = Some(public_url(raw).map_err(|message| ConfigError { var: "PUBLIC_URL", message })?);
        if self.link_keys.is_empty() {
            return err("LINK_SIGNING_KEY", format!("destination {:?} takes attachments as links, which are signed with it; run `npm run deploy`, which generates it, or `wrangler secret put LINK_SIGNING_KEY` with a random value (`npm run gen-secret`)", d.name));
        }
        if self.link_keys.iter().any(|k| k.len() < MIN_LINK_KEY_LEN) {
            return err(
                "LINK_SIGNING_KEY",
                format!("each key must be at least {MIN_LINK_KEY_LEN} characters (a short one can be guessed from one link); `npm run gen-secret` makes one"),
            );
        }
        if !(60..=MAX_LINK_SECONDS).contains(&self.link_seconds) {
            return err("ATTACHMENT_LINK_SECONDS", format!("{} is outside 60 to {MAX_LINK_SECONDS} (a year)", self.link_seconds));
        }
        Ok(self)
    }

    /// Until when a link made at `now` for an event accepted at `received` (Unix seconds) is good: at most
    /// `link_seconds`, and never past the event's retention (`LOG_RETENTION_DAYS` after it was accepted).
    pub fn link_expires(&self, received: i64, now: i64) -> i64 {
        let ttl = i64::try_from(self.link_seconds).unwrap_or(i64::MAX);
        now.saturating_add(ttl).min(received.saturating_add(i64::from(self.log_retention_days) * 86_400))
    }

    /// Valid settings that an operator should look at twice, for `/healthz`.
    pub fn warnings(&self) -> Vec<String> {
        crate::providers::Provider::ALL.iter().flat_map(|p| p.warnings(&self.providers)).collect()
    }

    /// `None` when every destination can be delivered to, or what is missing.
    pub fn delivery_problem(&self) -> Option<String> {
        self.destinations.iter().find_map(Destination::problem)
    }
}

/// The shortest key that may sign links.
const MIN_LINK_KEY_LEN: usize = 32;

/// The longest a link may live.
const MAX_LINK_SECONDS: u64 = 365 * 86_400;

/// `PUBLIC_URL` without a trailing `/`: the Worker's origin, https:// (http:// only on this machine), with no
/// credentials, path, query or fragment (the Worker's routes are at its root).
fn public_url(raw: &str) -> Result<String, String> {
    let url = destinations::valid_url(raw)?;
    let lower = url.to_ascii_lowercase();
    let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| lower.strip_prefix(p).is_some_and(|r| r.is_empty() || r.starts_with([':', '/'])));
    let origin = url.trim_end_matches('/');
    let after_scheme = origin.split_once("://").map_or("", |(_, rest)| rest);
    if after_scheme.contains(['/', '?', '#', '@']) || !(lower.starts_with("https://") || local) {
        return Err(format!(
            "{raw:?} must be the Worker's https:// address, such as https://mailhook.example.workers.dev, with no path, user, ? or #"
        ));
    }
    Ok(origin.to_string())
}

fn schedule(raw: Option<&str>) -> Result<Vec<u32>, ConfigError> {
    parse_schedule(raw.unwrap_or(DEFAULT_RETRY_SCHEDULE)).map_err(|message| ConfigError { var: "RETRY_SCHEDULE_SECONDS", message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_contract_defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.max_body_bytes, 33_554_432);
        assert_eq!(c.max_event_age_seconds, 86_400);
        assert_eq!(c.dedupe_ttl_seconds, 604_800);
        assert_eq!(c.destinations.len(), 1);
        assert_eq!((c.destinations[0].name.as_str(), c.destinations[0].timeout_seconds), ("origin", 15));
        assert_eq!(c.destinations[0].circuit, CircuitPolicy { failures: 10, probe_seconds: 60 });
        assert!(c.include_raw);
        assert!(c.providers.secrets(crate::providers::Provider::AdmTools).is_empty());
        assert!(c.retry_schedule.iter().map(|d| u64::from(*d)).sum::<u64>() >= 86_400);
        assert!(c.delivery_problem().is_some());
        assert!(c.providers.improvmx.contains("15.237.103.194"));
        assert_eq!(c.providers.mail_plus.verify, crate::providers::mail_plus::VerifyMode::Rdns);
    }

    #[test]
    fn the_readme_schedule_table_is_the_default() {
        let readme = include_str!("../README.md");
        let row = readme.lines().find(|l| l.starts_with("| delay (s) |")).expect("README has the schedule table");
        let delays: Vec<u32> = row.split('|').filter_map(|c| c.trim().parse().ok()).collect();
        assert_eq!(delays, cfg(&[]).unwrap().retry_schedule);
    }

    #[test]
    fn secrets_split_on_commas_and_never_print() {
        let c = cfg(&[("ADM_TOOLS_WEBHOOK_TOKEN", " old-token , new-token ,")]).unwrap();
        assert_eq!(c.providers.secrets(crate::providers::Provider::AdmTools).iter().collect::<Vec<_>>(), ["old-token", "new-token"]);
        let debug = format!("{c:?}");
        assert!(!debug.contains("old-token") && !debug.contains("new-token"), "{debug}");
    }

    #[test]
    fn age_longer_than_dedupe_window_is_refused() {
        let e = cfg(&[("MAX_EVENT_AGE_SECONDS", "700000")]).unwrap_err();
        assert_eq!(e.var, "MAX_EVENT_AGE_SECONDS");
        assert!(e.to_string().contains("DEDUPE_TTL_SECONDS"));
        assert_eq!(cfg(&[("DEDUPE_TTL_SECONDS", "30"), ("MAX_EVENT_AGE_SECONDS", "10")]).unwrap_err().var, "DEDUPE_TTL_SECONDS");
    }

    #[test]
    fn an_allow_everything_list_is_a_warning() {
        assert!(cfg(&[]).unwrap().warnings().is_empty());
        let w = cfg(&[("IMPROVMX_ALLOWED_IPS", "15.237.103.194, ::ffff:0.0.0.0/96")]).unwrap().warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("IMPROVMX_ALLOWED_IPS"), "{w:?}");
    }

    #[test]
    fn odd_but_valid_suffixes_are_one_name() {
        for (raw, want) in
            [("Mail-Plus.COM.", "mail-plus.com"), (".mail-plus.com", "mail-plus.com"), (" mx.mail-plus.com ", "mx.mail-plus.com")]
        {
            assert_eq!(cfg(&[("MAIL_PLUS_RDNS_SUFFIX", raw)]).unwrap().providers.mail_plus.rdns_suffix.as_deref(), Some(want), "{raw}");
        }
    }

    #[test]
    fn the_clock_skew_allowance_counts_against_the_dedupe_window() {
        // Found in review: equal values let an event stamped 300 s ahead be accepted again after its key expired.
        let e = cfg(&[("MAX_EVENT_AGE_SECONDS", "86400"), ("DEDUPE_TTL_SECONDS", "86400")]).unwrap_err();
        assert_eq!(e.var, "MAX_EVENT_AGE_SECONDS");
        assert!(e.message.contains("86700"), "{e}");
        assert!(cfg(&[("MAX_EVENT_AGE_SECONDS", "86100"), ("DEDUPE_TTL_SECONDS", "86400")]).is_ok());
        assert!(cfg(&[("MAX_EVENT_AGE_SECONDS", "86101"), ("DEDUPE_TTL_SECONDS", "86400")]).is_err());
        assert!(cfg(&[("MAX_EVENT_AGE_SECONDS", "18446744073709551615"), ("DEDUPE_TTL_SECONDS", "18446744073709551615")]).is_err());
    }

    #[test]
    fn retention_must_outlast_the_retry_schedule() {
        // Found in review: 1 day with a 48-hour schedule was accepted.
        let two_days = "43200,43200,43200,43200";
        let e = cfg(&[("LOG_RETENTION_DAYS", "1"), ("RETRY_SCHEDULE_SECONDS", two_days)]).unwrap_err();
        assert_eq!(e.var, "LOG_RETENTION_DAYS");
        // Four 12-hour delays, each up to 14.4 h with jitter, and a day: 4 days.
        assert!(e.message.contains("at least 4"), "{e}");
        assert!(cfg(&[("LOG_RETENTION_DAYS", "4"), ("RETRY_SCHEDULE_SECONDS", two_days)]).is_ok());
        // The default schedule (~33 h with jitter) needs 3 days.
        assert_eq!(cfg(&[("LOG_RETENTION_DAYS", "2")]).unwrap_err().var, "LOG_RETENTION_DAYS");
        assert!(cfg(&[("LOG_RETENTION_DAYS", "3")]).is_ok());
        assert!(cfg(&[("LOG_RETENTION_DAYS", "2"), ("RETRY_SCHEDULE_SECONDS", "1,1,1")]).is_ok());
        assert_eq!(
            cfg(&[("LOG_RETENTION_DAYS", "1"), ("RETRY_SCHEDULE_SECONDS", "1,1,1")]).unwrap_err().var,
            "LOG_RETENTION_DAYS",
            "the margin is a day"
        );
        assert_eq!(cfg(&[("LOG_RETENTION_DAYS", "0"), ("RETRY_SCHEDULE_SECONDS", "")]).unwrap_err().var, "LOG_RETENTION_DAYS");
    }

    #[test]
    fn retention_must_outlast_every_destinations_schedule() {
        let long =
            r#"[{"name": "slow", "url": "https://s.example/", "retry_schedule_seconds": [43200, 43200, 43200, 43200, 43200, 43200]}]"#;
        let secret = ("DESTINATION_SLOW_SIGNING_SECRET", "whsec_c2Vjb25k");
        let e = cfg(&[("DESTINATIONS", long), secret, ("LOG_RETENTION_DAYS", "4")]).unwrap_err();
        assert_eq!(e.var, "LOG_RETENTION_DAYS");
        assert!(e.message.contains("at least 5"), "{e}");
        assert!(cfg(&[("DESTINATIONS", long), secret, ("LOG_RETENTION_DAYS", "5")]).is_ok());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("MAX_BODY_BYTES", "lots"),
            ("MAX_BODY_BYTES", "0"),
            ("MAX_BODY_BYTES", "4000000000"),
            ("INCLUDE_RAW", "maybe"),
            ("ORIGIN_SIGNING_SECRET", "whsec_!!!"),
            ("RETRY_SCHEDULE_SECONDS", "5,never"),
            ("RETRY_SCHEDULE_SECONDS", "5,86401"),
            ("ORIGIN_URL", "ftp://x"),
            ("ORIGIN_TIMEOUT_SECONDS", "0"),
            ("ORIGIN_TIMEOUT_SECONDS", "301"),
            ("CIRCUIT_FAILURES", "0"),
            ("CIRCUIT_PROBE_SECONDS", "86401"),
            ("DESTINATIONS", "[{}]"),
            ("IMPROVMX_ALLOWED_IPS", "15.237.103.194,10.0.0.0/40"),
            ("MAIL_PLUS_ALLOWED_IPS", "mail-plus.com"),
            ("MAIL_PLUS_VERIFY", "dns"),
            ("MAIL_PLUS_RDNS_SUFFIX", "*.mail-plus.com"),
            ("MAIL_PLUS_RDNS_SUFFIX", "mail-plus.com, mail-plus.net"),
            ("MAIL_PLUS_RDNS_SUFFIX", "."),
            ("MAIL_PLUS_RDNS_SUFFIX", "com"),
            ("DOH_URL", "dns.example"),
        ] {
            assert_eq!(cfg(&[(var, value)]).unwrap_err().var, var, "{var}={value}");
        }
    }

    #[test]
    fn signing_keys_decode_with_or_without_prefix() {
        let c =
            cfg(&[("ORIGIN_URL", "http://127.0.0.1:8789/"), ("ORIGIN_SIGNING_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,c2Vjb25k")])
                .unwrap();
        assert_eq!(c.destinations[0].keys.len(), 2);
        assert_eq!(c.destinations[0].keys[1].bytes(), b"second");
        assert_eq!(c.delivery_problem(), None);
        assert!(!format!("{c:?}").contains("MfKQ"));
    }

    #[test]
    fn destinations_that_take_links_need_the_public_url_and_a_key() {
        let key = ("DESTINATION_DESK_SIGNING_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let desk = |extra: &str| format!(r#"[{{"name": "desk", "url": "https://d.example/"{extra}}}]"#);
        let links = desk(r#", "attachments": " Link ", "max_body_bytes": "1048576""#);
        let public = ("PUBLIC_URL", "https://mh.example.com/");
        let k = ("LINK_SIGNING_KEY", "k1-0123456789abcdef0123456789abcdef,k0-0123456789abcdef0123456789abcdef");
        let c = cfg(&[("DESTINATIONS", &links), key, public, k]).unwrap();
        assert_eq!(cfg(&[("DESTINATIONS", &links), key, public, ("LINK_SIGNING_KEY", "short")]).unwrap_err().var, "LINK_SIGNING_KEY");
        let d = c.destination("desk").unwrap();
        assert_eq!((d.attachments, d.max_body_bytes), (crate::destinations::AttachmentForm::Link, Some(1_048_576)));
        assert_eq!(c.public_url.as_deref(), Some("https://mh.example.com"));
        assert_eq!(c.link_expires(1_000, 2_000), 2_000 + 7 * 86_400);
        assert_eq!(c.link_expires(1_000, 1_000 + 29 * 86_400), 1_000 + 30 * 86_400, "never past the retention");
        assert_eq!(cfg(&[("DESTINATIONS", &links), key, public]).unwrap_err().var, "LINK_SIGNING_KEY");
        assert_eq!(cfg(&[("DESTINATIONS", &links), key, k]).unwrap_err().var, "PUBLIC_URL");
        for bad in [
            "http://mh.example.com",
            "https://mh.example.com/?a=b",
            "mh.example.com",
            "https://mh.example.com/mailhook",
            "https://u:p@mh.example.com",
        ] {
            let e = cfg(&[("DESTINATIONS", &links), key, ("PUBLIC_URL", bad), k]).unwrap_err();
            assert_eq!(e.var, "PUBLIC_URL", "{bad}");
        }
        assert!(cfg(&[("DESTINATIONS", &links), key, ("PUBLIC_URL", "http://127.0.0.1:8787"), k]).is_ok());
        for bad in [r#", "attachments": "url""#, r#", "max_body_bytes": 100"#, r#", "max_body_bytes": "1 MB""#] {
            let e = cfg(&[("DESTINATIONS", &desk(bad)), key, public, k]).unwrap_err().to_string();
            assert!(e.contains("attachments") || e.contains("max_body_bytes"), "{e}");
        }
        // Without such a destination, nothing is required, and a PUBLIC_URL that is no URL is ignored.
        let c = cfg(&[("DESTINATIONS", &desk("")), key, ("PUBLIC_URL", "not a url")]).unwrap();
        assert_eq!(c.public_url, None);
        let c = cfg(&[("DESTINATIONS", &desk("")), key, public, ("LINK_SIGNING_KEY", "short,0123456789abcdef0123456789abcdef")]).unwrap();
        assert_eq!(c.link_keys.len(), 1, "a key too short neither signs nor verifies the console's links");
        let c = cfg(&[("ORIGIN_URL", "http://127.0.0.1:1/"), ("ORIGIN_MAX_BODY_BYTES", "65536"), public, k]).unwrap();
        assert!(c.destination("origin").unwrap().links(65_537) && !c.destination("origin").unwrap().links(65_536));
        assert_eq!(cfg(&[("ORIGIN_URL", "http://127.0.0.1:1/"), ("ORIGIN_ATTACHMENTS", "links")]).unwrap_err().var, "ORIGIN_ATTACHMENTS");
        assert_eq!(
            cfg(&[("ORIGIN_URL", "http://127.0.0.1:1/"), ("ORIGIN_MAX_BODY_BYTES", "1 MB")]).unwrap_err().var,
            "ORIGIN_MAX_BODY_BYTES"
        );
    }

    #[test]
    fn a_destination_names_its_format() {
        let key = ("DESTINATION_DESK_SIGNING_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let desk = |f: &str| format!(r#"[{{"name": "desk", "url": "https://d.example/", "format": "{f}"}}]"#);
        assert_eq!(cfg(&[("DESTINATIONS", &desk("SLACK")), key]).unwrap().destinations[0].format, crate::event::Format::Slack);
        assert!(cfg(&[("DESTINATIONS", &desk("xml")), key]).unwrap_err().to_string().contains("format = \"xml\""));
        let c = cfg(&[("ORIGIN_URL", "http://127.0.0.1:1/"), ("ORIGIN_FORMAT", "cloudevents-binary")]).unwrap();
        assert_eq!(c.destination("origin").unwrap().format, crate::event::Format::CloudEventsBinary);
        assert_eq!(cfg(&[("ORIGIN_URL", "http://127.0.0.1:1/"), ("ORIGIN_FORMAT", "binary")]).unwrap_err().var, "ORIGIN_FORMAT");
    }
}
