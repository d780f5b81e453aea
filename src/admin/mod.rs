//! The operator API, decided without I/O: its routes and the bearer check
//! (here), and the event-log query (`query`: filters → SQL with bound
//! parameters, never spliced), and deliveries as rows whichever table keeps them (`deliveries`).

mod cron;
mod deliveries;
mod doctor;
mod finding;
mod query;

pub use cron::{RetentionRun, RetentionSeen};
pub use deliveries::*;
pub use doctor::{findings, Facts, MIGRATIONS};
pub use finding::{Finding, Level};
pub use query::*;

use crate::auth::token_matches;
use crate::config::Secrets;
use crate::error::ApiError;

/// `GET /admin/events`, `GET /admin/events/{id}`, `POST /admin/events/{id}/replay`, `POST /admin/replay`,
/// `GET /admin/destinations`, and what a destination receives (`bodies`, `preview`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRoute {
    ListEvents,
    GetEvent(String),
    ReplayEvent(String),
    BulkReplay,
    Destinations,
    /// `GET /admin/stats`: the console's overview.
    Stats,
    /// `GET /admin/events/{id}/bodies`: what each destination that takes the event would receive now.
    EventBodies(String),
    /// `POST /admin/destinations/{name}/preview`: what a destination would receive of the event posted (a fixture).
    Preview(String),
    /// `GET /admin/doctor`: what is wrong, each finding with its fix.
    Doctor,
}

/// The 404 of a path below `/admin` that is no admin route.
fn no_such_route() -> ApiError {
    ApiError::NotFound("no such admin route; see the README's admin API".into())
}

/// The admin route of `path` (below `/admin`), or 404 / 405.
pub fn route(method: &str, path: &str) -> Result<AdminRoute, ApiError> {
    let rest = path.strip_prefix("/admin").ok_or_else(no_such_route)?.trim_end_matches('/');
    let parts: Vec<&str> = rest.split('/').skip(1).collect();
    let (r, allow) = match parts.as_slice() {
        ["events"] => (AdminRoute::ListEvents, "GET"),
        ["events", id] if valid_id(id) => (AdminRoute::GetEvent((*id).to_string()), "GET"),
        ["events", id, "replay"] if valid_id(id) => (AdminRoute::ReplayEvent((*id).to_string()), "POST"),
        ["replay"] => (AdminRoute::BulkReplay, "POST"),
        ["events", id, "bodies"] if valid_id(id) => (AdminRoute::EventBodies((*id).to_string()), "GET"),
        ["destinations"] => (AdminRoute::Destinations, "GET"),
        ["destinations", name, "preview"] if valid_id(name) => (AdminRoute::Preview(name.to_ascii_lowercase()), "POST"),
        ["stats"] => (AdminRoute::Stats, "GET"),
        ["doctor"] => (AdminRoute::Doctor, "GET"),
        _ => return Err(no_such_route()),
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
        return Err(ApiError::NotFound("the admin API is off: set ADMIN_TOKEN (`wrangler secret put ADMIN_TOKEN`) to turn it on".into()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/admin/events"), Ok(AdminRoute::ListEvents));
        assert_eq!(route("GET", "/admin/events/evt_1"), Ok(AdminRoute::GetEvent("evt_1".into())));
        assert_eq!(route("POST", "/admin/events/evt_1/replay"), Ok(AdminRoute::ReplayEvent("evt_1".into())));
        assert_eq!(route("GET", "/admin/events/evt_1/bodies"), Ok(AdminRoute::EventBodies("evt_1".into())));
        assert_eq!(route("POST", "/admin/destinations/CRM/preview"), Ok(AdminRoute::Preview("crm".into())));
        assert!(route("GET", "/admin/destinations/crm/preview").is_err());
        assert_eq!(route("POST", "/admin/replay"), Ok(AdminRoute::BulkReplay));
        assert_eq!(route("GET", "/admin/destinations/"), Ok(AdminRoute::Destinations));
        assert_eq!(route("POST", "/admin/events"), Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }));
        assert_eq!(route("GET", "/admin/replay"), Err(ApiError::MethodNotAllowed { allow: "POST" }));
        assert_eq!(route("GET", "/admin/events/a%20b"), Err(no_such_route()));
        assert_eq!(route("GET", "/admin"), Err(no_such_route()));
        assert_eq!(route("GET", "/admin/other"), Err(no_such_route()));
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
        assert_eq!(authorize(&Secrets::parse(None), Some("Bearer x")).unwrap_err().code(), "not_found");
        assert!(authorize(&t, Some("Bearer new")).is_ok());
        assert!(authorize(&t, Some("bearer  old ")).is_ok());
        for bad in [None, Some("new"), Some("Basic new"), Some("Bearer nope"), Some("Bearer ")] {
            assert_eq!(authorize(&t, bad).unwrap_err().status(), 401, "{bad:?}");
        }
    }
}
