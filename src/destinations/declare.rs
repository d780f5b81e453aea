//! Destinations read from the configuration: `DESTINATIONS` (a list of
//! tables in wrangler.toml, as JSON), then `origin` from `ORIGIN_URL`. Every
//! mistake names its destination and what to write instead.

use super::shape::{attachment_settings, format, transform};
use super::{secret_name, type_matches, valid_url, CircuitPolicy, Destination, Filter, LEGACY_NAME, MAX_NAME_LEN};
use crate::delivery::{check_schedule, parse_schedule};
use crate::event::EventType;
use crate::limits::MAX_QUEUE_DELAY_SECONDS;
use crate::providers::Provider;
use crate::values::{signing_keys, ConfigError};
use serde::Deserialize;
use serde_json::Value;

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
    recipient_tags: Option<Vec<String>>,
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
    attachments: Option<String>,
    max_body_bytes: Option<Number>,
    format: Option<String>,
    transform: Option<String>,
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
        let origin_max = get("ORIGIN_MAX_BODY_BYTES").map(|n| Number::S(n).get());
        let (attachments, max_body_bytes) = attachment_settings(get("ORIGIN_ATTACHMENTS").as_deref(), origin_max).map_err(|m| {
            ConfigError { var: if m.starts_with("max") { "ORIGIN_MAX_BODY_BYTES" } else { "ORIGIN_ATTACHMENTS" }, message: m }
        })?;
        let format = format(get("ORIGIN_FORMAT").as_deref()).map_err(|m| ConfigError { var: "ORIGIN_FORMAT", message: m })?;
        let transform =
            transform(get("ORIGIN_TRANSFORM").as_deref(), format).map_err(|m| ConfigError { var: "ORIGIN_TRANSFORM", message: m })?;
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
            attachments,
            max_body_bytes,
            format,
            transform,
        });
    }
    Ok(out)
}

fn declared_one(item: Value, defaults: &Defaults<'_>, get: &impl Fn(&str) -> Option<String>) -> Result<Destination, String> {
    let d: Declared = serde_json::from_value(item).map_err(|e| {
        format!("{e}; a destination takes name, url, filter (providers, types, recipient_tags), timeout_seconds, retry_schedule_seconds, circuit_failures, circuit_probe_seconds, attachments, max_body_bytes, format, transform")
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
        Some(f) => Filter {
            providers: f.providers.map(providers).transpose()?,
            types: f.types.map(types).transpose()?,
            recipient_tags: f.recipient_tags.map(recipient_tags).transpose()?,
        },
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
            "its signing secret {secret_var} is not set; run `npm run deploy`, which generates it, or `wrangler secret put {secret_var}` with a whsec_<base64> key (`npm run gen-secret`)"
        ));
    }
    let (attachments, max_body_bytes) = attachment_settings(d.attachments.as_deref(), d.max_body_bytes.as_ref().map(Number::get))?;
    let format = format(d.format.as_deref())?;
    let transform = transform(d.transform.as_deref(), format)?;
    Ok(Destination {
        name,
        url: Some(url),
        keys,
        secret_var,
        filter,
        timeout_seconds,
        retry_schedule,
        circuit,
        attachments,
        max_body_bytes,
        format,
        transform,
    })
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

/// The most tag patterns of one filter, and the longest (a local part is at most 64 octets).
const MAX_TAG_PATTERNS: usize = 100;
const MAX_TAG_PATTERN_LEN: usize = 64;

fn recipient_tags(list: Vec<String>) -> Result<Vec<String>, String> {
    let list = items(list, "recipient_tags")?;
    if list.len() > MAX_TAG_PATTERNS {
        return Err(format!("filter.recipient_tags lists {} patterns; at most {MAX_TAG_PATTERNS}", list.len()));
    }
    match list.iter().find(|t| t.len() > MAX_TAG_PATTERN_LEN || t.contains(['@', '"']) || t.chars().any(char::is_whitespace)) {
        Some(t) => Err(format!(
            "filter.recipient_tags: {t:?} is no tag pattern; write the part after the separator, with * for any run of characters, e.g. ticket-*"
        )),
        None => Ok(list),
    }
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
        assert!(d[0].filter.matches(Provider::Maileroo, "email.bounced", None));
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
        assert!(d[0].filter.matches(Provider::Maileroo, "email.bounced", None));
        assert!(!d[0].filter.matches(Provider::Maileroo, "email.delivered", None));
        assert!(d[1].filter.matches(Provider::ImprovMx, "email.received", None));
        assert!(!d[1].filter.matches(Provider::AdmTools, "email.received", None));
        assert_eq!((d[1].timeout_seconds, d[1].retry_schedule.clone(), d[1].keys.len()), (5, vec![1, 2], 2));
        assert_eq!(d[1].circuit, CircuitPolicy { failures: 3, probe_seconds: 30 });
        assert_eq!((d[0].timeout_seconds, d[0].retry_schedule.clone(), d[0].circuit.failures), (15, vec![5, 30], 10));
        assert_eq!(d[2].retry_schedule, vec![10, 20]);
        assert!(d[2].filter.matches(Provider::AdmTools, "mailbox.flags_changed", None));
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
            (r#"[{"name": "crm", "url": "https:///path"}]"#, "no host"),
            (r#"[{"name": "crm", "url": "https://user:pw@c.example/"}]"#, "user name or password"),
            (r#"[{"name": "crm", "url": "http://127.0.0.1:99999/x"}]"#, "the port must be"),
            (r#"[{"name": "crm", "url": "http://127.0.0.1:abc/x"}]"#, "the port must be"),
            (r#"[{"name": "crm", "url": "http://127.0.0.1:0/x"}]"#, "the port must be"),
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
            (r#"[{"name": "crm", "url": "https://c.example/", "retry_schedule_seconds": "5,86401"}]"#, "86401 is longer"),
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
    fn a_destination_takes_what_its_filter_does_and_any_unknown_provider() {
        let d = run(
            Some(r#"{"name": "crm", "url": "https://c.example/", "filter": {"providers": ["maileroo"]}}"#),
            &[("DESTINATION_CRM_SIGNING_SECRET", KEY)],
        )
        .unwrap()
        .remove(0);
        assert!(d.takes(route("maileroo", "email.bounced", None)));
        assert!(!d.takes(route("mailtura", "email.bounced", None)));
        assert!(d.takes(route("a-provider-since-removed", "email.bounced", None)));
    }

    fn route<'a>(provider: &'a str, kind: &'a str, tag: Option<&'a str>) -> crate::event::Route<'a> {
        crate::event::Route { provider, kind, tag }
    }

    #[test]
    fn a_filter_on_recipient_tags_takes_only_tagged_mail_that_matches() {
        let d = run(
            Some(r#"{"name": "desk", "url": "https://d.example/", "filter": {"recipient_tags": [" Ticket-* ", "vip"]}}"#),
            &[("DESTINATION_DESK_SIGNING_SECRET", KEY)],
        )
        .unwrap()
        .remove(0);
        assert!(d.takes(route("improvmx", "email.received", Some("ticket-4121"))));
        assert!(d.takes(route("email-routing", "email.received", Some("VIP"))));
        assert!(!d.takes(route("improvmx", "email.received", Some("news"))));
        assert!(!d.takes(route("improvmx", "email.received", None)), "no tag, not taken");
        for bad in [r#"[]"#, r#"["a b"]"#, r#"["x@y"]"#] {
            let e = err(
                &format!(r#"{{"name": "desk", "url": "https://d.example/", "filter": {{"recipient_tags": {bad}}}}}"#),
                &[("DESTINATION_DESK_SIGNING_SECRET", KEY)],
            );
            assert!(e.contains("recipient_tags"), "{e}");
        }
    }
}
