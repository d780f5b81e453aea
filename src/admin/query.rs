//! The event-log query of `GET /admin/events` and `POST /admin/replay`: its
//! filters, parsed from the query string, as SQL with every value bound.

use super::{delivery_rows, DeliveryColumns, DELIVERY_ROW};
use crate::error::ApiError;
use crate::status::Status;

pub const MAX_LIMIT: u32 = 1000;
pub const DEFAULT_LIMIT: u32 = 100;

/// Filters of `GET /admin/events` and `POST /admin/replay`. `status` and
/// `destination` select events by their deliveries: `status=dead` is every
/// event with a dead delivery, `destination=crm&status=dead` those dead at crm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    pub provider: Option<String>,
    pub kind: Option<String>,
    pub status: Option<Status>,
    pub destination: Option<String>,
    /// A conversation's id (`data.thread.id`), as `<left@right>`.
    pub thread: Option<String>,
    /// Unix seconds, inclusive.
    pub from: Option<i64>,
    /// Unix seconds, exclusive.
    pub to: Option<i64>,
    /// Deliveries last changed before this, Unix seconds (bulk replay's cut-off).
    pub before: Option<i64>,
    pub limit: u32,
    /// 1-based.
    pub page: u32,
}

/// A value bound to a `?N` parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Text(String),
    Int(i64),
}

impl EventQuery {
    /// Parses a query string (`provider=maileroo&from=2024-03-15&limit=10`).
    /// `from`/`to` take `YYYY-MM-DD` (a whole day: `to` includes it) or RFC 3339.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut q = EventQuery { limit: DEFAULT_LIMIT, page: 1, ..Default::default() };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = crate::percent::percent_decode(v).ok_or_else(|| bad(k, "is not valid percent-encoding"))?;
            if v.is_empty() {
                continue;
            }
            match k {
                "provider" => q.provider = Some(v),
                "destination" => q.destination = Some(v.trim().to_ascii_lowercase()),
                "type" => q.kind = Some(v),
                "thread" => q.thread = Some(crate::event::message_id(&v).ok_or_else(|| bad(k, "must be a Message-ID"))?),
                "status" => {
                    q.status = Some(
                        Status::parse(&v)
                            .ok_or_else(|| bad(k, &format!("must be one of {}", Status::ALL.map(Status::as_str).join(", "))))?,
                    )
                }
                "from" => q.from = Some(parse_bound(&v, false).ok_or_else(|| bad(k, "must be YYYY-MM-DD or RFC 3339"))?),
                "to" => q.to = Some(parse_bound(&v, true).ok_or_else(|| bad(k, "must be YYYY-MM-DD or RFC 3339"))?),
                "before" => q.before = Some(crate::time::parse_rfc3339(&v).ok_or_else(|| bad(k, "must be RFC 3339"))?),
                "limit" => {
                    q.limit = v
                        .parse()
                        .ok()
                        .filter(|l| (1..=MAX_LIMIT).contains(l))
                        .ok_or_else(|| bad(k, &format!("must be 1 to {MAX_LIMIT}")))?
                }
                "page" => q.page = v.parse().ok().filter(|p| *p >= 1).ok_or_else(|| bad(k, "must be 1 or more"))?,
                _ => return Err(bad(k, "is not a filter; use provider, type, status, destination, thread, from, to, before, limit, page")),
            }
        }
        Ok(q)
    }

    /// `WHERE …` over `events` and its parameters (`?1`, `?2`, … in order).
    pub fn where_clause(&self) -> (String, Vec<SqlValue>) {
        let mut w = Where::default();
        self.event_conditions(&mut w, "");
        // A delivery's status selects events by their deliveries; `unrouted` (an event that has none) by their own.
        if self.status == Some(Status::Unrouted) {
            let c = w.param("status = ?", SqlValue::Text(Status::Unrouted.as_str().into()));
            w.conds.push(c);
            if self.destination.is_some() {
                w.conds.push("false".into()); // an unrouted event has no destination
            }
        } else if self.status.is_some() || self.destination.is_some() || self.before.is_some() {
            let mut inner = vec!["event_id = events.id".to_string()];
            if let Some(d) = &self.destination {
                inner.push(w.param("destination = ?", SqlValue::Text(d.clone())));
            }
            if let Some(s) = self.status {
                inner.push(w.param("status = ?", SqlValue::Text(s.as_str().into())));
            }
            if let Some(b) = self.before {
                inner.push(w.param("updated_at < ?", SqlValue::Int(b)));
            }
            let by_delivery = format!("EXISTS (SELECT 1 FROM {} AS d)", delivery_rows(&inner.join(" AND ")));
            if self.status == Some(Status::Dead) && self.destination.is_none() {
                // Dead with no delivery at all: a queue message that was no envelope (see `eventlog::record_malformed`).
                let mut own = vec![format!("status = {}", Status::Dead.sql())];
                if let Some(b) = self.before {
                    own.push(w.param("updated_at < ?", SqlValue::Int(b)));
                }
                w.conds.push(format!(
                    "({by_delivery} OR ({} AND NOT EXISTS (SELECT 1 FROM {} AS d)))",
                    own.join(" AND "),
                    delivery_rows("event_id = events.id")
                ));
            } else {
                w.conds.push(by_delivery);
            }
        }
        w.finish()
    }

    /// `WHERE …` over `deliveries d JOIN events e` (bulk replay: one row per delivery).
    pub fn delivery_where_clause(&self) -> (String, Vec<SqlValue>) {
        self.delivery_where_clause_in(&DELIVERY_ROW)
    }

    /// The same with the delivery's columns where `cols` says (`admin::OWN_DELIVERY`: in its event's row).
    pub fn delivery_where_clause_in(&self, cols: &DeliveryColumns) -> (String, Vec<SqlValue>) {
        let mut w = Where::default();
        self.event_conditions(&mut w, "e.");
        if let Some(d) = &self.destination {
            let c = w.param(&format!("{} = ?", cols.destination), SqlValue::Text(d.clone()));
            w.conds.push(c);
        }
        if let Some(s) = self.status {
            let c = w.param(&format!("{} = ?", cols.status), SqlValue::Text(s.as_str().into()));
            w.conds.push(c);
            if s != Status::Delivered {
                // The index `deliveries_waiting` holds only these; SQLite uses it when the query says so in its words.
                w.conds.push(format!("{} != {}", cols.status, Status::Delivered.sql()));
            }
        }
        if let Some(b) = self.before {
            let c = w.param(&format!("{} < ?", cols.updated_at), SqlValue::Int(b));
            w.conds.push(c);
        }
        w.finish()
    }

    fn event_conditions(&self, w: &mut Where, alias: &str) {
        // `{e}` is the events table's alias.
        let conds = [
            (self.provider.clone().map(SqlValue::Text), "{e}provider = ?"),
            (self.kind.clone().map(SqlValue::Text), "{e}type = ?"),
            // Kept in the stored envelope (`delivery::Envelope::thread`): read there, without an index of its own.
            (self.thread.clone().map(SqlValue::Text), "json_extract({e}envelope, '$.thread') = ?"),
            (self.from.map(SqlValue::Int), "{e}received_at >= ?"),
            (self.to.map(SqlValue::Int), "{e}received_at < ?"),
        ];
        for (value, cond) in conds {
            if let Some(v) = value {
                let c = w.param(&cond.replace("{e}", alias), v);
                w.conds.push(c);
            }
        }
    }

    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.limit)
    }
}

/// Conditions and their parameters, numbered as they are added.
#[derive(Default)]
struct Where {
    conds: Vec<String>,
    params: Vec<SqlValue>,
}

impl Where {
    /// `cond` with its `?` numbered for `v`.
    fn param(&mut self, cond: &str, v: SqlValue) -> String {
        self.params.push(v);
        cond.replace('?', &format!("?{}", self.params.len()))
    }

    fn finish(self) -> (String, Vec<SqlValue>) {
        let sql = if self.conds.is_empty() { String::new() } else { format!(" WHERE {}", self.conds.join(" AND ")) };
        (sql, self.params)
    }
}

fn bad(field: &str, what: &str) -> ApiError {
    ApiError::BadRequest(format!("query parameter `{field}` {what}"))
}

/// `YYYY-MM-DD` as the start of that day (or, for an upper bound, of the next), or RFC 3339.
fn parse_bound(v: &str, upper: bool) -> Option<i64> {
    if v.len() == 10 {
        let start = crate::time::parse_rfc3339(&format!("{v}T00:00:00Z"))?;
        return Some(if upper { start + 86_400 } else { start });
    }
    crate::time::parse_rfc3339(v)
}

/// Every configured destination's filter as JSON for SQL: its name, its providers (or null),
/// and its types as `LIKE` patterns (or null): `email.*` → `email.%`, with `_` and `%` escaped.
pub fn filter_rules(cfg: &crate::config::Config) -> String {
    let rules: Vec<serde_json::Value> = cfg
        .destinations
        .iter()
        .map(|d| {
            serde_json::json!({
                "name": d.name,
                "providers": d.filter.providers.as_ref().map(|ps| ps.iter().map(|p| p.name()).collect::<Vec<_>>()),
                "types": d.filter.types.as_ref().map(|ts| ts.iter().map(|t| like_pattern(t)).collect::<Vec<_>>()),
                "recipient_tags": d.filter.recipient_tags.as_ref().map(|ts| ts.iter().map(|t| tag_like_pattern(t)).collect::<Vec<_>>()),
            })
        })
        .collect();
    serde_json::Value::Array(rules).to_string()
}

/// A type pattern (`email.bounced`, `email.*`, `*`) as a `LIKE … ESCAPE '\'` pattern.
fn like_pattern(t: &str) -> String {
    let escaped = like_escaped(t);
    match escaped.strip_suffix('*') {
        Some(prefix) => format!("{prefix}%"),
        None => escaped,
    }
}

/// A recipient tag pattern (`ticket-*`, `*` anywhere; `conversation::tag_matches`) as a `LIKE` pattern:
/// both ignore ASCII case.
fn tag_like_pattern(t: &str) -> String {
    like_escaped(t).replace('*', "%")
}

fn like_escaped(t: &str) -> String {
    t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_bind_every_value() {
        let q =
            EventQuery::parse("provider=maileroo&type=email.delivered&status=dead&from=2024-03-15&to=2024-03-15&limit=10&page=3").unwrap();
        assert_eq!((q.limit, q.page, q.offset()), (10, 3, 20));
        let (sql, params) = q.where_clause();
        assert_eq!(
            sql,
            format!(
                " WHERE provider = ?1 AND type = ?2 AND received_at >= ?3 AND received_at < ?4 \
                 AND (EXISTS (SELECT 1 FROM {} AS d) OR (status = 'dead' AND NOT EXISTS (SELECT 1 FROM {} AS d)))",
                delivery_rows("event_id = events.id AND status = ?5"),
                delivery_rows("event_id = events.id")
            ),
            "dead: by a delivery, or (a malformed queue message) an event dead without any"
        );
        assert_eq!(params[2], SqlValue::Int(1_710_460_800));
        assert_eq!(params[3], SqlValue::Int(1_710_460_800 + 86_400));
        let q = EventQuery::parse("destination=CRM&status=dead&provider=maileroo").unwrap();
        assert_eq!(
            q.where_clause().0,
            format!(
                " WHERE provider = ?1 AND EXISTS (SELECT 1 FROM {} AS d)",
                delivery_rows("event_id = events.id AND destination = ?2 AND status = ?3")
            )
        );
        let (sql, params) = q.delivery_where_clause();
        assert_eq!(sql, " WHERE e.provider = ?1 AND d.destination = ?2 AND d.status = ?3 AND d.status != 'delivered'");
        // A delivery kept in its event's row: its columns there (only ever delivered).
        let delivered = EventQuery::parse("destination=CRM&status=delivered&before=2024-03-15T10%3A00%3A00Z").unwrap();
        assert_eq!(
            delivered.delivery_where_clause_in(&crate::admin::OWN_DELIVERY).0,
            " WHERE e.ok_destination = ?1 AND 'delivered' = ?2 AND (e.first_ok_ms / 1000) < ?3"
        );
        assert_eq!(params[1], SqlValue::Text("crm".into()));
        assert_eq!(EventQuery::parse("status=held").unwrap().status, Some(Status::Held));
        assert_eq!(EventQuery::parse("status=unrouted").unwrap().where_clause().0, " WHERE status = ?1");
        let q = EventQuery::parse("status=dead&before=2024-03-15T10%3A00%3A00Z").unwrap();
        assert_eq!(
            q.delivery_where_clause(),
            (
                " WHERE d.status = ?1 AND d.status != 'delivered' AND d.updated_at < ?2".into(),
                vec![SqlValue::Text("dead".into()), SqlValue::Int(1_710_496_800)]
            )
        );
        let q = EventQuery::parse("provider=x%27%20OR%201%3D1&from=2024-03-15T10%3A00%3A00Z").unwrap();
        assert_eq!(q.provider.as_deref(), Some("x' OR 1=1"));
        assert_eq!(q.where_clause().0, " WHERE provider = ?1 AND received_at >= ?2");
        assert_eq!(EventQuery::parse("").unwrap().where_clause().0, "");
    }

    #[test]
    fn bad_queries_name_the_parameter() {
        for (q, name) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("page=0", "page"),
            ("from=yesterday", "from"),
            ("status=lost", "status"),
            ("color=red", "color"),
            ("provider=%zz", "provider"),
        ] {
            let e = EventQuery::parse(q).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn filters_become_like_patterns() {
        assert_eq!(like_pattern("email.*"), "email.%");
        assert_eq!(like_pattern("*"), "%");
        assert_eq!(like_pattern("mailbox.message_added"), "mailbox.message\\_added");
        let cfg = crate::testkit::config_with(&[
            (
                "DESTINATIONS",
                r#"[{"name": "crm", "url": "https://c.example/", "filter": {"providers": ["maileroo"], "types": ["email.*"]}}]"#,
            ),
            ("DESTINATION_CRM_SIGNING_SECRET", "whsec_c2Vjb25k"),
        ])
        .unwrap();
        assert_eq!(filter_rules(&cfg), r#"[{"name":"crm","providers":["maileroo"],"recipient_tags":null,"types":["email.%"]}]"#);
        assert_eq!(tag_like_pattern("ticket_*-*"), "ticket\\_%-%");
    }

    #[test]
    fn a_thread_is_read_from_the_stored_envelope() {
        let q = EventQuery::parse("thread=abc%40example.com&provider=improvmx").unwrap();
        assert_eq!(q.thread.as_deref(), Some("<abc@example.com>"), "with or without its brackets");
        assert_eq!(q.where_clause().0, " WHERE provider = ?1 AND json_extract(envelope, '$.thread') = ?2");
        let q = EventQuery { status: Some(Status::Dead), ..q };
        assert!(q.delivery_where_clause().0.starts_with(" WHERE e.provider = ?1 AND json_extract(e.envelope, '$.thread') = ?2"));
    }
}
