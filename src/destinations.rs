//! Destinations: where events go, decided without I/O.
//!
//! An event goes to every destination whose filter takes its provider and
//! type, each delivery with its own signing keys, timeout, retry schedule,
//! dead letter and circuit breaker. Destinations are declared in
//! `wrangler.toml` as `DESTINATIONS` (a list of tables); `ORIGIN_URL` and
//! `ORIGIN_SIGNING_SECRET` alone are the destination `origin`, as before.

use crate::config::{signing_keys, ConfigError, SigningKey, DEFAULT_RETRY_SCHEDULE, MAX_QUEUE_DELAY_SECONDS};
use crate::event::EventType;
use crate::providers::Provider;
use serde::Deserialize;
use serde_json::Value;

/// The destination that `ORIGIN_URL` and `ORIGIN_SIGNING_SECRET` declare.
pub const LEGACY_NAME: &str = "origin";

/// The longest destination name: it becomes part of a secret's name and of log lines.
pub const MAX_NAME_LEN: usize = 32;

/// Defaults of the circuit breaker (`CIRCUIT_FAILURES`, `CIRCUIT_PROBE_SECONDS`).
pub const DEFAULT_CIRCUIT_FAILURES: u32 = 10;
pub const DEFAULT_CIRCUIT_PROBE_SECONDS: u32 = 60;

/// The longest a held delivery waits before it looks at the circuit again, in
/// probe intervals (10 minutes with the default interval).
pub const MAX_HOLD_PROBES: u32 = 10;

/// Which events a destination takes. `None` takes every provider (or type).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    pub providers: Option<Vec<Provider>>,
    /// Exact types (`email.bounced`), prefixes (`email.*`) or `*`, lower case.
    pub types: Option<Vec<String>>,
}

impl Filter {
    pub fn matches(&self, provider: Provider, kind: &str) -> bool {
        self.providers.as_ref().is_none_or(|ps| ps.contains(&provider))
            && self.types.as_ref().is_none_or(|ts| ts.iter().any(|t| type_matches(t, kind)))
    }

    /// True when some event that mailhook emits passes the filter.
    fn matches_anything(&self) -> bool {
        Provider::ALL.iter().any(|p| p.event_types().iter().any(|t| self.matches(*p, t.as_str())))
    }
}

/// `email.*` takes every type under `email.`; `*` takes all.
pub fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

/// When a destination's circuit opens, and how often it is probed then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// Consecutive failed attempts (no answer, 408, 429, 5xx) that open it.
    pub failures: u32,
    /// While open, one delivery is tried per this many seconds.
    pub probe_seconds: u32,
}

#[derive(Debug, Clone)]
pub struct Destination {
    /// Lower case: letters, digits and `-`.
    pub name: String,
    /// `None` only for `origin` without `ORIGIN_URL` (see `problem`).
    pub url: Option<String>,
    pub keys: Vec<SigningKey>,
    /// The secret that holds `keys`.
    pub secret_var: String,
    pub filter: Filter,
    pub timeout_seconds: u32,
    pub retry_schedule: Vec<u32>,
    pub circuit: CircuitPolicy,
}

impl Destination {
    /// `None` when deliveries can be attempted, or what is missing. Only the
    /// `origin` destination can be incomplete: a declared one that is
    /// incomplete is a configuration error.
    pub fn problem(&self) -> Option<String> {
        if self.url.is_none() {
            Some("ORIGIN_URL is not set: set it in wrangler.toml [vars] to the URL that receives events, or declare DESTINATIONS".into())
        } else if self.keys.is_empty() {
            Some(format!("{0} is not set: run `wrangler secret put {0}` with a whsec_<base64> key (`npm run gen-secret`)", self.secret_var))
        } else {
            None
        }
    }

    /// True when this destination takes an event of the provider named
    /// `provider` (its route name) and type `kind`. A provider no longer known
    /// (its stored events are still replayed) is taken by every destination.
    pub fn takes(&self, provider: &str, kind: &str) -> bool {
        Provider::from_name(provider).is_none_or(|p| self.filter.matches(p, kind))
    }

    /// The URL without its query and fragment (which may hold a credential), for `/healthz` and logs.
    pub fn display_url(&self) -> String {
        self.url.as_deref().map(|u| u.split(['?', '#']).next().unwrap_or("").to_string()).unwrap_or_default()
    }
}

/// The secret that holds a declared destination's signing keys:
/// `crm-eu` → `DESTINATION_CRM_EU_SIGNING_SECRET`.
pub fn secret_name(name: &str) -> String {
    format!("DESTINATION_{}_SIGNING_SECRET", name.to_ascii_uppercase().replace('-', "_"))
}

/// The settings every destination falls back to.
pub struct Defaults<'a> {
    pub timeout_seconds: u32,
    pub retry_schedule: &'a [u32],
    pub circuit: CircuitPolicy,
}

const VAR: &str = "DESTINATIONS";

fn error(message: String) -> ConfigError {
    ConfigError { var: VAR, message }
}

/// A number written as a number or as a string of one (`15`, `"15"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    N(u64),
    S(String),
}

impl Number {
    fn get(&self) -> Option<u64> {
        match self {
            Number::N(n) => Some(*n),
            Number::S(s) => s.trim().parse().ok(),
        }
    }
}

/// A retry schedule as a list of seconds or a comma-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Schedule {
    List(Vec<Number>),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclaredFilter {
    providers: Option<Vec<String>>,
    types: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Declared {
    name: String,
    url: String,
    filter: Option<DeclaredFilter>,
    timeout_seconds: Option<Number>,
    retry_schedule_seconds: Option<Schedule>,
    circuit_failures: Option<Number>,
    circuit_probe_seconds: Option<Number>,
}

/// The destinations: those declared in `declared` (the JSON of `DESTINATIONS`),
/// then `origin` when `ORIGIN_URL` is set or nothing is declared. Secrets and
/// `ORIGIN_*` come through `get`. Every mistake names its destination.
pub fn parse(
    declared: Option<&str>,
    defaults: &Defaults<'_>,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<Destination>, ConfigError> {
    let mut out: Vec<Destination> = Vec::new();
    if let Some(raw) = declared {
        let list: Value = serde_json::from_str(raw).map_err(|e| {
            error(format!("is not a list of destinations ({e}); declare each as a [[vars.DESTINATIONS]] table in wrangler.toml"))
        })?;
        let items = match list {
            Value::Array(items) => items,
            Value::Object(_) => vec![list],
            _ => return Err(error("must be a list of tables with name, url and filter (see the README's Destinations)".into())),
        };
        for (i, item) in items.into_iter().enumerate() {
            let label = item.get("name").and_then(Value::as_str).map_or_else(|| format!("#{}", i + 1), |n| format!("{n:?}"));
            let d = declared_one(item, defaults, get).map_err(|m| error(format!("destination {label}: {m}")))?;
            if out.iter().any(|o| o.name == d.name) {
                return Err(error(format!("destination {label}: the name is used twice; give each destination its own name")));
            }
            out.push(d);
        }
    }
    let origin_url = get("ORIGIN_URL");
    if origin_url.is_some() || out.is_empty() {
        if out.iter().any(|o| o.name == LEGACY_NAME) {
            return Err(error(format!(
                "destination \"{LEGACY_NAME}\": the name is taken by ORIGIN_URL; rename the declared one or remove ORIGIN_URL"
            )));
        }
        let url = match origin_url {
            Some(u) => Some(valid_url(&u).map_err(|m| ConfigError { var: "ORIGIN_URL", message: m })?),
            None => None,
        };
        out.push(Destination {
            name: LEGACY_NAME.into(),
            url,
            keys: signing_keys("ORIGIN_SIGNING_SECRET", get("ORIGIN_SIGNING_SECRET").as_deref())?,
            secret_var: "ORIGIN_SIGNING_SECRET".into(),
            filter: Filter::default(),
            timeout_seconds: defaults.timeout_seconds,
            retry_schedule: defaults.retry_schedule.to_vec(),
            circuit: defaults.circuit,
        });
    }
    Ok(out)
}

fn declared_one(item: Value, defaults: &Defaults<'_>, get: &impl Fn(&str) -> Option<String>) -> Result<Destination, String> {
    let d: Declared = serde_json::from_value(item).map_err(|e| {
        format!("{e}; a destination takes name, url, filter (providers, types), timeout_seconds, retry_schedule_seconds, circuit_failures, circuit_probe_seconds")
    })?;
    let name = d.name.trim().to_ascii_lowercase();
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.starts_with('-')
        || name.ends_with('-')
        || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!("the name must be 1 to {MAX_NAME_LEN} letters, digits and inner hyphens, like crm or support-desk"));
    }
    let url = valid_url(&d.url)?;
    let filter = match d.filter {
        None => Filter::default(),
        Some(f) => Filter { providers: f.providers.map(providers).transpose()?, types: f.types.map(types).transpose()? },
    };
    if !filter.matches_anything() {
        return Err("the filter matches no event any of its providers sends; see the README's table of event types per provider".into());
    }
    let number = |n: Option<Number>, key: &str, default: u32, range: std::ops::RangeInclusive<u32>| -> Result<u32, String> {
        match n {
            None => Ok(default),
            Some(n) => n
                .get()
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| range.contains(v))
                .ok_or_else(|| format!("{key} must be a whole number from {} to {}", range.start(), range.end())),
        }
    };
    let timeout_seconds = number(d.timeout_seconds, "timeout_seconds", defaults.timeout_seconds, 1..=300)?;
    let retry_schedule = match d.retry_schedule_seconds {
        None => defaults.retry_schedule.to_vec(),
        Some(Schedule::Text(t)) => parse_schedule(&t)?,
        Some(Schedule::List(l)) => {
            let list = l.iter().map(Number::get).collect::<Option<Vec<u64>>>().ok_or("retry_schedule_seconds must list whole seconds")?;
            check_schedule(list)?
        }
    };
    let circuit = CircuitPolicy {
        failures: number(d.circuit_failures, "circuit_failures", defaults.circuit.failures, 1..=1_000_000)?,
        probe_seconds: number(
            d.circuit_probe_seconds,
            "circuit_probe_seconds",
            defaults.circuit.probe_seconds,
            1..=MAX_QUEUE_DELAY_SECONDS,
        )?,
    };
    let secret_var = secret_name(&name);
    let keys = signing_keys("DESTINATIONS", get(&secret_var).as_deref()).map_err(|e| format!("{}: {}", secret_var, e.message))?;
    if keys.is_empty() {
        return Err(format!(
            "its signing secret {secret_var} is not set; run `wrangler secret put {secret_var}` with a whsec_<base64> key (`npm run gen-secret`)"
        ));
    }
    Ok(Destination { name, url: Some(url), keys, secret_var, filter, timeout_seconds, retry_schedule, circuit })
}

/// An absolute http(s) URL that `new URL()` and `fetch` take: a host (a
/// hostname, a dotted IPv4 address or a bracketed IPv6 one), an optional
/// port of 1 to 65535, no credentials, and no spaces, controls or broken
/// percent-escapes anywhere. Trimmed.
pub fn valid_url(raw: &str) -> Result<String, String> {
    let url = raw.trim();
    // The URL itself is never quoted: this message reaches the public /healthz, and a URL can hold a secret.
    let bad = |why: &str| Err(format!("its URL is not an absolute http:// or https:// URL: {why}"));
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")) else {
        return bad("it must start with http:// or https://");
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
        return bad("it has spaces, control characters or backslashes");
    }
    let b = url.as_bytes();
    for (i, _) in url.match_indices('%') {
        if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)) {
            return bad("a % is not followed by two hex digits");
        }
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return bad("it has credentials before the host (and no credentials)");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let Some((_, after)) = v6.split_once(']').filter(|(a, _)| a.parse::<std::net::Ipv6Addr>().is_ok()) else {
                return bad("the IPv6 address in [ ] is not valid");
            };
            // After `]`: nothing, or `:port` (anything else is refused as a port).
            ("v6", (!after.is_empty()).then(|| after.strip_prefix(':').unwrap_or("!")))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if let Some(p) = port {
        if !(!p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|c| c.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65_535).contains(&n)))
        {
            return bad("the port must be a number from 1 to 65535");
        }
    }
    if host != "v6" {
        let name = host.strip_suffix('.').unwrap_or(host);
        // As the URL standard reads a host: a last label of digits (or 0x…) makes it an IPv4 address.
        let numeric =
            name.split('.').next_back().is_some_and(|l| !l.is_empty() && (l.bytes().all(|c| c.is_ascii_digit()) || l.starts_with("0x")));
        let ok = if numeric {
            name.parse::<std::net::Ipv4Addr>().is_ok()
        } else {
            !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_'))
        };
        if !ok {
            return bad("the host is not a hostname or an IP address");
        }
    }
    Ok(url.to_string())
}

fn items(list: Vec<String>, what: &str) -> Result<Vec<String>, String> {
    let out: Vec<String> = list.iter().map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect();
    if out.is_empty() {
        return Err(format!("filter.{what} is empty, which takes nothing; leave it out to take every one"));
    }
    Ok(out)
}

fn providers(list: Vec<String>) -> Result<Vec<Provider>, String> {
    items(list, "providers")?
        .iter()
        .map(|p| {
            Provider::from_name(p).ok_or_else(|| {
                let known: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
                format!("filter.providers: {p:?} is not a provider; use {}", known.join(", "))
            })
        })
        .collect()
}

fn types(list: Vec<String>) -> Result<Vec<String>, String> {
    let list = items(list, "types")?;
    for t in &list {
        let known = EventType::ALL.iter().any(|k| type_matches(t, k.as_str()));
        let well_formed = !t[..t.len().saturating_sub(1)].contains('*') && (t == "*" || !t.ends_with('*') || t.ends_with(".*"));
        if !known || !well_formed {
            let all: Vec<&str> = EventType::ALL.iter().map(|k| k.as_str()).collect();
            return Err(format!("filter.types: {t:?} matches no event type; use one of {}, or a prefix such as email.*", all.join(", ")));
        }
    }
    Ok(list)
}

/// A comma-separated retry schedule (`RETRY_SCHEDULE_SECONDS`'s form).
pub fn parse_schedule(raw: &str) -> Result<Vec<u32>, String> {
    let list = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().map_err(|_| format!("{s:?} is not a number of seconds")))
        .collect::<Result<Vec<u64>, _>>()?;
    check_schedule(list)
}

fn check_schedule(list: Vec<u64>) -> Result<Vec<u32>, String> {
    list.into_iter()
        .map(|d| {
            u32::try_from(d).ok().filter(|d| *d <= MAX_QUEUE_DELAY_SECONDS).ok_or_else(|| {
                format!("{d} is longer than the Queues maximum delay of {MAX_QUEUE_DELAY_SECONDS} s; split it into several entries")
            })
        })
        .collect()
}

/// The default schedule, parsed.
pub fn default_schedule() -> Vec<u32> {
    parse_schedule(DEFAULT_RETRY_SCHEDULE).unwrap_or_default()
}

/// A destination's circuit, as stored (`circuits` in D1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Circuit {
    pub open: bool,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// While open: when the next probe may go, Unix seconds.
    pub probe_at: i64,
    /// Its deliveries go to the slow lane until then (Unix seconds): set by
    /// each failed or slow attempt, so one success does not bring a flaky
    /// destination back among the healthy ones.
    pub slow_until: i64,
}

/// How long a failed attempt (or one slower than `SLOW_ATTEMPT_MS`) keeps a destination in the slow lane.
pub const SLOW_LANE_QUIET_SECONDS: i64 = 600;

/// A successful attempt slower than this counts as slow.
pub const SLOW_ATTEMPT_MS: u64 = 2_000;

/// True when `circuit`'s destination belongs in the slow lane at `now`: it is
/// failing, or failed or was slow within `SLOW_LANE_QUIET_SECONDS`.
pub fn in_slow_lane(circuit: Circuit, now: i64) -> bool {
    circuit.failures > 0 || circuit.slow_until > now
}

/// What to do with a delivery, given its destination's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed: attempt it.
    Send,
    /// Open and due for a probe: attempt it if this delivery wins the probe.
    Probe,
    /// Open: put it back, unattempted, for this many seconds.
    Hold(u32),
}

/// The gate of a delivery held `held` times already. A held delivery comes
/// back at the next probe time, later each time it is held (doubling, at most
/// `MAX_HOLD_PROBES` intervals), so a long outage costs few queue operations,
/// and it flows again at most that long after a probe closes the circuit.
pub fn gate(circuit: Circuit, policy: CircuitPolicy, now: i64, held: u32) -> Gate {
    if !circuit.open {
        return Gate::Send;
    }
    if now >= circuit.probe_at {
        return Gate::Probe;
    }
    let until_probe = u32::try_from(circuit.probe_at.saturating_sub(now)).unwrap_or(u32::MAX);
    let backoff = policy.probe_seconds.saturating_mul(1u32 << held.min(16));
    let cap = policy.probe_seconds.saturating_mul(MAX_HOLD_PROBES).min(MAX_QUEUE_DELAY_SECONDS);
    Gate::Hold(until_probe.max(backoff).clamp(1, cap.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn defaults() -> Defaults<'static> {
        Defaults { timeout_seconds: 15, retry_schedule: &[5, 30], circuit: CircuitPolicy { failures: 10, probe_seconds: 60 } }
    }

    fn run(declared: Option<&str>, vars: &[(&str, &str)]) -> Result<Vec<Destination>, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse(declared, &defaults(), &|k: &str| map.get(k).cloned())
    }

    fn err(declared: &str, vars: &[(&str, &str)]) -> String {
        run(Some(declared), vars).unwrap_err().to_string()
    }

    #[test]
    fn origin_alone_is_one_destination_taking_everything() {
        let d = run(None, &[("ORIGIN_URL", "http://127.0.0.1:8789/events"), ("ORIGIN_SIGNING_SECRET", KEY)]).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].name, "origin");
        assert_eq!(d[0].problem(), None);
        assert!(d[0].filter.matches(Provider::Maileroo, "email.bounced"));
        // Nothing set: still one destination, whose problem says what to set.
        let d = run(None, &[]).unwrap();
        assert!(d[0].problem().unwrap().contains("ORIGIN_URL"));
        let d = run(None, &[("ORIGIN_URL", "https://x.example/")]).unwrap();
        assert!(d[0].problem().unwrap().contains("wrangler secret put ORIGIN_SIGNING_SECRET"));
    }

    #[test]
    fn declared_destinations_with_filters_and_their_own_settings() {
        let declared = r#"[
            {"name": "CRM", "url": "https://crm.example/hooks?token=abc", "filter": {"types": ["email.bounced", "email.complained"]}},
            {"name": "support", "url": "https://desk.example/in", "filter": {"providers": ["ImprovMX", ""], "types": ["email.*"]},
             "timeout_seconds": "5", "retry_schedule_seconds": "1, 2,", "circuit_failures": 3, "circuit_probe_seconds": 30},
            {"name": "analytics", "url": "https://a.example/", "retry_schedule_seconds": [10, 20]}
        ]"#;
        let d = run(
            Some(declared),
            &[
                ("DESTINATION_CRM_SIGNING_SECRET", KEY),
                ("DESTINATION_SUPPORT_SIGNING_SECRET", "whsec_c2Vjb25k, whsec_dGhpcmQ="),
                ("DESTINATION_ANALYTICS_SIGNING_SECRET", KEY),
            ],
        )
        .unwrap();
        assert_eq!(d.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["crm", "support", "analytics"], "no origin without ORIGIN_URL");
        assert_eq!(d[0].display_url(), "https://crm.example/hooks");
        assert!(d[0].filter.matches(Provider::Maileroo, "email.bounced"));
        assert!(!d[0].filter.matches(Provider::Maileroo, "email.delivered"));
        assert!(d[1].filter.matches(Provider::ImprovMx, "email.received"));
        assert!(!d[1].filter.matches(Provider::AdmTools, "email.received"));
        assert_eq!((d[1].timeout_seconds, d[1].retry_schedule.clone(), d[1].keys.len()), (5, vec![1, 2], 2));
        assert_eq!(d[1].circuit, CircuitPolicy { failures: 3, probe_seconds: 30 });
        assert_eq!((d[0].timeout_seconds, d[0].retry_schedule.clone(), d[0].circuit.failures), (15, vec![5, 30], 10));
        assert_eq!(d[2].retry_schedule, vec![10, 20]);
        assert!(d[2].filter.matches(Provider::AdmTools, "mailbox.flags_changed"));
    }

    #[test]
    fn origin_url_beside_declared_destinations_stays_a_destination() {
        let d = run(
            Some(r#"{"name": "crm", "url": "https://crm.example/"}"#),
            &[("DESTINATION_CRM_SIGNING_SECRET", KEY), ("ORIGIN_URL", "https://o.example/"), ("ORIGIN_SIGNING_SECRET", KEY)],
        )
        .unwrap();
        assert_eq!(d.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["crm", "origin"]);
    }

    #[test]
    fn every_bad_declaration_names_its_destination_and_the_fix() {
        let s = [("DESTINATION_CRM_SIGNING_SECRET", KEY)];
        for (declared, want) in [
            (r#"[{"name": "crm", "url": "https://c.example/", "urll": 1}]"#, "unknown field `urll`"),
            (r#"[{"name": "crm", "url": "https://c.example/", "filter": {"type": ["email.*"]}}]"#, "unknown field `type`"),
            (r#"[{"name": "crm", "url": "ftp://c.example/"}]"#, "not an absolute http"),
            (r#"[{"name": "crm", "url": "https:///path"}]"#, "not an absolute http"),
            (r#"[{"name": "crm", "url": "https://user:pw@c.example/"}]"#, "no credentials"),
            (r#"[{"name": "crm", "url": "http://127.0.0.1:99999/x"}]"#, "the port must be"),
            (r#"[{"name": "crm", "url": "http://127.0.0.1:abc/x"}]"#, "the port must be"),
            (r#"[{"name": "crm", "url": "http://127.0.0.1:/x"}]"#, "the port must be"),
            (r#"[{"name": "crm", "url": "http://[::1/x"}]"#, "IPv6"),
            (r#"[{"name": "crm", "url": "http://[::1]x/"}]"#, "the port must be"),
            (r#"[{"name": "crm", "url": "http://ex%zzample.com/"}]"#, "two hex digits"),
            (r#"[{"name": "crm", "url": "http://ex ample.com/"}]"#, "spaces"),
            (r#"[{"name": "crm", "url": "http://1.2.3/"}]"#, "not a hostname or an IP"),
            (r#"[{"name": "crm", "url": "http://example.0x10/hook"}]"#, "not a hostname or an IP"),
            (r#"[{"name": "crm", "url": "http://a..b/"}]"#, "not a hostname or an IP"),
            (r#"[{"name": "crm", "url": "https://c.example/"}, {"name": "CRM ", "url": "https://d.example/"}]"#, "used twice"),
            (
                r#"[{"name": "crm", "url": "https://c.example/", "filter": {"types": ["email.bounce"]}}]"#,
                "\"email.bounce\" matches no event type",
            ),
            (r#"[{"name": "crm", "url": "https://c.example/", "filter": {"types": ["email*"]}}]"#, "matches no event type"),
            (r#"[{"name": "crm", "url": "https://c.example/", "filter": {"types": ["*.bounced"]}}]"#, "matches no event type"),
            (r#"[{"name": "crm", "url": "https://c.example/", "filter": {"types": [" ", ""]}}]"#, "filter.types is empty"),
            (r#"[{"name": "crm", "url": "https://c.example/", "filter": {"providers": ["sendgrid"]}}]"#, "\"sendgrid\" is not a provider"),
            (
                r#"[{"name": "crm", "url": "https://c.example/", "filter": {"providers": ["adm-tools"], "types": ["email.bounced"]}}]"#,
                "matches no event any of its providers sends",
            ),
            (r#"[{"name": "crm", "url": "https://c.example/", "timeout_seconds": 0}]"#, "timeout_seconds must be"),
            (r#"[{"name": "crm", "url": "https://c.example/", "retry_schedule_seconds": "5,86400"}]"#, "86400 is longer"),
            (r#"[{"name": "crm", "url": "https://c.example/", "circuit_failures": "many"}]"#, "circuit_failures must be"),
            (r#"[{"name": "crm_eu", "url": "https://c.example/"}]"#, "the name must be"),
            (r#"[{"name": "-crm", "url": "https://c.example/"}]"#, "the name must be"),
            (r#"[{"url": "https://c.example/"}]"#, "destination #1: missing field `name`"),
            (r#"[{"name": "origin", "url": "https://c.example/"}]"#, "DESTINATION_ORIGIN_SIGNING_SECRET is not set"),
            (r#""crm""#, "must be a list"),
            ("[{", "is not a list of destinations"),
        ] {
            let e = err(declared, &s);
            assert!(e.starts_with("configuration error in DESTINATIONS"), "{e}");
            assert!(!e.contains("c.example/") && !e.contains("127.0.0.1"), "the URL is never quoted: {e}");
            assert!(e.contains(want), "{declared}: {e}");
            if declared.contains("\"crm\"") && !declared.starts_with('"') {
                assert!(e.contains("destination \"crm\"") || e.contains("destination \"CRM \""), "{e}");
            }
        }
        let e = err(r#"[{"name": "crm", "url": "https://c.example/"}]"#, &[]);
        assert!(e.contains("destination \"crm\"") && e.contains("wrangler secret put DESTINATION_CRM_SIGNING_SECRET"), "{e}");
        let e = err(r#"[{"name": "crm", "url": "https://c.example/"}]"#, &[("DESTINATION_CRM_SIGNING_SECRET", "whsec_!!")]);
        assert!(e.contains("destination \"crm\"") && e.contains("DESTINATION_CRM_SIGNING_SECRET"), "{e}");
        let e = run(
            Some(r#"[{"name": "origin", "url": "https://c.example/"}]"#),
            &[("DESTINATION_ORIGIN_SIGNING_SECRET", KEY), ("ORIGIN_URL", "https://o.example/")],
        )
        .unwrap_err();
        assert!(e.message.contains("taken by ORIGIN_URL"), "{e}");
    }

    #[test]
    fn odd_but_valid_urls() {
        for url in [
            "HTTPS://CRM.Example.COM./Hooks?a=%20b",
            "http://127.0.0.1:8789/events",
            "http://[::1]:8080/",
            "http://[2001:db8::1]/x",
            "https://my_host.internal/x",
            "https://x.example",
            "https://bücher.example/",
            " https://x.example/#frag ",
        ] {
            assert_eq!(valid_url(url).as_deref(), Ok(url.trim()), "{url}");
        }
    }

    #[test]
    fn a_destination_takes_what_its_filter_does_and_any_unknown_provider() {
        let d = run(
            Some(r#"{"name": "crm", "url": "https://c.example/", "filter": {"providers": ["maileroo"]}}"#),
            &[("DESTINATION_CRM_SIGNING_SECRET", KEY)],
        )
        .unwrap()
        .remove(0);
        assert!(d.takes("maileroo", "email.bounced"));
        assert!(!d.takes("mailtura", "email.bounced"));
        assert!(d.takes("a-provider-since-removed", "email.bounced"));
    }

    #[test]
    fn wildcards() {
        assert!(type_matches("*", "mailbox.flags_changed"));
        assert!(type_matches("email.*", "email.received"));
        assert!(!type_matches("email.*", "mailbox.message_added"));
        assert!(type_matches("email.received", "email.received"));
        assert!(!type_matches("email.received", "email.received.x"));
    }

    #[test]
    fn a_failing_or_recently_slow_destination_stays_in_the_slow_lane() {
        assert!(!in_slow_lane(Circuit::default(), 1000));
        assert!(in_slow_lane(Circuit { failures: 1, ..Circuit::default() }, 1000));
        assert!(in_slow_lane(Circuit { slow_until: 1001, ..Circuit::default() }, 1000), "a success does not end the quiet period");
        assert!(!in_slow_lane(Circuit { slow_until: 1000, ..Circuit::default() }, 1000));
    }

    #[test]
    fn the_circuit_holds_deliveries_until_a_probe_is_due() {
        let policy = CircuitPolicy { failures: 3, probe_seconds: 60 };
        assert_eq!(gate(Circuit::default(), policy, 1000, 0), Gate::Send);
        let open = Circuit { open: true, failures: 3, probe_at: 1060, ..Circuit::default() };
        assert_eq!(gate(open, policy, 1060, 0), Gate::Probe);
        assert_eq!(gate(open, policy, 1000, 0), Gate::Hold(60));
        assert_eq!(gate(open, policy, 1050, 0), Gate::Hold(60), "at least one probe interval");
        assert_eq!(gate(open, policy, 1000, 1), Gate::Hold(120));
        assert_eq!(gate(open, policy, 1000, 3), Gate::Hold(480));
        assert_eq!(gate(open, policy, 1000, 4), Gate::Hold(600), "at most ten intervals");
        assert_eq!(gate(open, policy, 1000, u32::MAX), Gate::Hold(600));
        let slow = CircuitPolicy { failures: 3, probe_seconds: 3600 };
        assert_eq!(gate(Circuit { open: true, failures: 3, probe_at: 4600, ..Circuit::default() }, slow, 1000, 5), Gate::Hold(36_000));
        assert_eq!(
            gate(
                Circuit { open: true, failures: 3, probe_at: 4600, ..Circuit::default() },
                CircuitPolicy { failures: 3, probe_seconds: 43_200 },
                1000,
                5
            ),
            Gate::Hold(MAX_QUEUE_DELAY_SECONDS)
        );
        let fast = CircuitPolicy { failures: 1, probe_seconds: 1 };
        assert_eq!(gate(Circuit { open: true, failures: 1, probe_at: 1001, ..Circuit::default() }, fast, 1000, 0), Gate::Hold(1));
        assert_eq!(gate(Circuit { open: true, failures: 1, probe_at: 1001, ..Circuit::default() }, fast, 1000, 9), Gate::Hold(10));
        assert_eq!(gate(Circuit { open: true, failures: 1, probe_at: i64::MAX, ..Circuit::default() }, fast, i64::MIN, 0), Gate::Hold(10));
    }
}
