//! The operator API, decided without I/O: its routes, the bearer check, and
//! the event-log query (filters → SQL with bound parameters, never spliced).

use crate::auth::token_matches;
use crate::config::Secrets;
use crate::error::ApiError;

/// `GET /admin/events`, `GET /admin/events/{id}`, `POST /admin/events/{id}/replay`, `POST /admin/replay`,
/// `GET /admin/destinations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRoute {
    ListEvents,
    GetEvent(String),
    ReplayEvent(String),
    BulkReplay,
    Destinations,
    /// `GET /admin/stats`: the console's overview.
    Stats,
}

/// The admin route of `path` (below `/admin`), or 404 / 405.
pub fn route(method: &str, path: &str) -> Result<AdminRoute, ApiError> {
    let rest = path.strip_prefix("/admin").ok_or(ApiError::NotFound)?.trim_end_matches('/');
    let parts: Vec<&str> = rest.split('/').skip(1).collect();
    let (r, allow) = match parts.as_slice() {
        ["events"] => (AdminRoute::ListEvents, "GET"),
        ["events", id] if valid_id(id) => (AdminRoute::GetEvent((*id).to_string()), "GET"),
        ["events", id, "replay"] if valid_id(id) => (AdminRoute::ReplayEvent((*id).to_string()), "POST"),
        ["replay"] => (AdminRoute::BulkReplay, "POST"),
        ["destinations"] => (AdminRoute::Destinations, "GET"),
        ["stats"] => (AdminRoute::Stats, "GET"),
        _ => return Err(ApiError::NotFound),
    };
    let wanted = if allow == "GET" { matches!(method, "GET" | "HEAD") } else { method == allow };
    if wanted {
        Ok(r)
    } else {
        Err(ApiError::MethodNotAllowed { allow: if allow == "GET" { "GET, HEAD" } else { "POST" } })
    }
}

/// The query string of a serialised URL (`https://h/p?a=1#f` → `a=1`), without a URL parser.
pub fn query_of(url: &str) -> &str {
    let before_fragment = url.split('#').next().unwrap_or("");
    before_fragment.split_once('?').map_or("", |(_, q)| q)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The admin API is off (404) without `ADMIN_TOKEN`; with it, a matching
/// `Authorization: Bearer` is required (401).
pub fn authorize(tokens: &Secrets, authorization: Option<&str>) -> Result<(), ApiError> {
    if tokens.is_empty() {
        return Err(ApiError::NotFound);
    }
    let presented = authorization.and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    match presented {
        Some(t) if token_matches(tokens, t) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized("the bearer token does not match ADMIN_TOKEN".into())),
        None => Err(ApiError::Unauthorized("send Authorization: Bearer <ADMIN_TOKEN>".into())),
    }
}

pub const MAX_LIMIT: u32 = 1000;
pub const DEFAULT_LIMIT: u32 = 100;

/// Filters of `GET /admin/events` and `POST /admin/replay`. `status` and
/// `destination` select events by their deliveries: `status=dead` is every
/// event with a dead delivery, `destination=crm&status=dead` those dead at crm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    pub provider: Option<String>,
    pub kind: Option<String>,
    pub status: Option<String>,
    pub destination: Option<String>,
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

/// A delivery's statuses, and `unrouted`: an event that no destination took (the event's own status).
pub const STATUSES: [&str; 6] = ["queued", "held", "retrying", "delivered", "dead", "unrouted"];

impl EventQuery {
    /// Parses a query string (`provider=maileroo&from=2024-03-15&limit=10`).
    /// `from`/`to` take `YYYY-MM-DD` (a whole day: `to` includes it) or RFC 3339.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut q = EventQuery { limit: DEFAULT_LIMIT, page: 1, ..Default::default() };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v).ok_or_else(|| bad(k, "is not valid percent-encoding"))?;
            if v.is_empty() {
                continue;
            }
            match k {
                "provider" => q.provider = Some(v),
                "destination" => q.destination = Some(v.trim().to_ascii_lowercase()),
                "type" => q.kind = Some(v),
                "status" if STATUSES.contains(&v.as_str()) => q.status = Some(v),
                "status" => return Err(bad(k, &format!("must be one of {}", STATUSES.join(", ")))),
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
                _ => return Err(bad(k, "is not a filter; use provider, type, status, destination, from, to, before, limit, page")),
            }
        }
        Ok(q)
    }

    /// `WHERE …` over `events` and its parameters (`?1`, `?2`, … in order).
    pub fn where_clause(&self) -> (String, Vec<SqlValue>) {
        let mut w = Where::default();
        self.event_conditions(&mut w, "");
        if self.status.as_deref() == Some("unrouted") {
            let c = w.param("status = ?", SqlValue::Text("unrouted".into()));
            w.conds.push(c);
            if self.destination.is_some() {
                w.conds.push("false".into()); // an unrouted event has no destination
            }
        } else if self.status.is_some() || self.destination.is_some() || self.before.is_some() {
            let mut inner = Vec::new();
            if let Some(d) = &self.destination {
                inner.push(w.param("d.destination = ?", SqlValue::Text(d.clone())));
            }
            if let Some(s) = &self.status {
                inner.push(w.param("d.status = ?", SqlValue::Text(s.clone())));
            }
            if let Some(b) = self.before {
                inner.push(w.param("d.updated_at < ?", SqlValue::Int(b)));
            }
            w.conds.push(format!("EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND {})", inner.join(" AND ")));
        }
        w.finish()
    }

    /// `WHERE …` over `deliveries d JOIN events e` (bulk replay: one row per delivery).
    pub fn delivery_where_clause(&self) -> (String, Vec<SqlValue>) {
        let mut w = Where::default();
        self.event_conditions(&mut w, "e.");
        if let Some(d) = &self.destination {
            let c = w.param("d.destination = ?", SqlValue::Text(d.clone()));
            w.conds.push(c);
        }
        if let Some(s) = &self.status {
            let c = w.param("d.status = ?", SqlValue::Text(s.clone()));
            w.conds.push(c);
        }
        if let Some(b) = self.before {
            let c = w.param("d.updated_at < ?", SqlValue::Int(b));
            w.conds.push(c);
        }
        w.finish()
    }

    fn event_conditions(&self, w: &mut Where, alias: &str) {
        let conds = [
            (self.provider.clone().map(SqlValue::Text), "provider = ?"),
            (self.kind.clone().map(SqlValue::Text), "type = ?"),
            (self.from.map(SqlValue::Int), "received_at >= ?"),
            (self.to.map(SqlValue::Int), "received_at < ?"),
        ];
        for (value, cond) in conds {
            if let Some(v) = value {
                let c = w.param(&format!("{alias}{cond}"), v);
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

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
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
            })
        })
        .collect();
    serde_json::Value::Array(rules).to_string()
}

/// A type pattern (`email.bounced`, `email.*`, `*`) as a `LIKE … ESCAPE '\'` pattern.
fn like_pattern(t: &str) -> String {
    let escaped = t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    match escaped.strip_suffix('*') {
        Some(prefix) => format!("{prefix}%"),
        None => escaped,
    }
}

/// Splits messages of the given sizes into batches that a queue's `sendBatch`
/// takes: at most `max_count` messages and `max_bytes` in all (Queues: 100, 256 KB).
pub fn batches(sizes: &[usize], max_count: usize, max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, size) in sizes.iter().enumerate() {
        if i > start && (i - start == max_count || bytes + size > max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/admin/events"), Ok(AdminRoute::ListEvents));
        assert_eq!(route("GET", "/admin/events/evt_1"), Ok(AdminRoute::GetEvent("evt_1".into())));
        assert_eq!(route("POST", "/admin/events/evt_1/replay"), Ok(AdminRoute::ReplayEvent("evt_1".into())));
        assert_eq!(route("POST", "/admin/replay"), Ok(AdminRoute::BulkReplay));
        assert_eq!(route("GET", "/admin/destinations/"), Ok(AdminRoute::Destinations));
        assert_eq!(route("POST", "/admin/events"), Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }));
        assert_eq!(route("GET", "/admin/replay"), Err(ApiError::MethodNotAllowed { allow: "POST" }));
        assert_eq!(route("GET", "/admin/events/a%20b"), Err(ApiError::NotFound));
        assert_eq!(route("GET", "/admin"), Err(ApiError::NotFound));
        assert_eq!(route("GET", "/admin/other"), Err(ApiError::NotFound));
    }

    #[test]
    fn query_strings() {
        assert_eq!(query_of("https://h.example/admin/events?limit=5&page=2#x"), "limit=5&page=2");
        assert_eq!(query_of("https://h.example/admin/events"), "");
        assert_eq!(query_of("https://h.example/a#b?c"), "");
    }

    #[test]
    fn bearer_tokens() {
        let t = Secrets::parse(Some("old,new"));
        assert_eq!(authorize(&Secrets::parse(None), Some("Bearer x")), Err(ApiError::NotFound));
        assert!(authorize(&t, Some("Bearer new")).is_ok());
        assert!(authorize(&t, Some("bearer  old ")).is_ok());
        for bad in [None, Some("new"), Some("Basic new"), Some("Bearer nope"), Some("Bearer ")] {
            assert_eq!(authorize(&t, bad).unwrap_err().status(), 401, "{bad:?}");
        }
    }

    #[test]
    fn queries_bind_every_value() {
        let q =
            EventQuery::parse("provider=maileroo&type=email.delivered&status=dead&from=2024-03-15&to=2024-03-15&limit=10&page=3").unwrap();
        assert_eq!((q.limit, q.page, q.offset()), (10, 3, 20));
        let (sql, params) = q.where_clause();
        assert_eq!(
            sql,
            " WHERE provider = ?1 AND type = ?2 AND received_at >= ?3 AND received_at < ?4 \
             AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status = ?5)"
        );
        assert_eq!(params[2], SqlValue::Int(1_710_460_800));
        assert_eq!(params[3], SqlValue::Int(1_710_460_800 + 86_400));
        let q = EventQuery::parse("destination=CRM&status=dead&provider=maileroo").unwrap();
        assert_eq!(
            q.where_clause().0,
            " WHERE provider = ?1 AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.destination = ?2 AND d.status = ?3)"
        );
        let (sql, params) = q.delivery_where_clause();
        assert_eq!(sql, " WHERE e.provider = ?1 AND d.destination = ?2 AND d.status = ?3");
        assert_eq!(params[1], SqlValue::Text("crm".into()));
        assert_eq!(EventQuery::parse("status=held").unwrap().status.as_deref(), Some("held"));
        assert_eq!(EventQuery::parse("status=unrouted").unwrap().where_clause().0, " WHERE status = ?1");
        let q = EventQuery::parse("status=dead&before=2024-03-15T10%3A00%3A00Z").unwrap();
        assert_eq!(
            q.delivery_where_clause(),
            (" WHERE d.status = ?1 AND d.updated_at < ?2".into(), vec![SqlValue::Text("dead".into()), SqlValue::Int(1_710_496_800)])
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
        assert_eq!(filter_rules(&cfg), r#"[{"name":"crm","providers":["maileroo"],"types":["email.%"]}]"#);
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        assert_eq!(batches(&[10; 250], 100, 1_000_000), vec![0..100, 100..200, 200..250]);
        assert_eq!(batches(&[120_000, 120_000, 120_000], 100, 256_000), vec![0..2, 2..3]);
        assert_eq!(batches(&[300_000, 1], 100, 256_000), vec![0..1, 1..2]);
        assert!(batches(&[], 100, 256_000).is_empty());
    }
}
