//! Which handler a request goes to, decided from its method and path alone.

use crate::admin::{self, AdminRoute};
use crate::error::ApiError;
use crate::providers::Provider;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`
    Health,
    /// `GET /webhook-confirm.txt`: adm.tools' site-ownership check.
    Confirm,
    /// `GET /attachments/{name}?…`: an attachment by its signed link (`links`).
    Attachment,
    /// `POST /webhooks/{provider}`
    Webhook(Provider),
    /// `/admin/…`, the operator API.
    Admin(AdminRoute),
    /// `/console/…`, the operator console.
    Console(crate::console::ConsoleRoute),
}

/// The path of a URL as the Fetch API serialises it (`new URL(url).pathname`):
/// from the first `/` after the host to the query or fragment, without parsing it again.
pub fn path_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let Some(start) = url[after_scheme..].find('/').map(|i| i + after_scheme) else { return "/" };
    let path = &url[start..];
    path.split(['?', '#']).next().unwrap_or(path)
}

/// The 404 of a path that is no route: it lists where providers post.
pub fn not_found() -> ApiError {
    let names: Vec<&str> = Provider::ALL.iter().filter(|p| p.posts()).map(|p| p.name()).collect();
    ApiError::NotFound(format!("no such route; providers post to /webhooks/{{{}}}", names.join("|")))
}

/// The route for `method` and `path`, or the refusal (404, or 405 with `Allow`).
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    // The console tells `/console` from `/console/` (a page's relative links depend on it).
    if path == "/console" || path.starts_with("/console/") {
        return crate::console::route(method, path).map(Route::Console);
    }
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    let read_only = matches!(method, "GET" | "HEAD");
    let (route, allow) = match path {
        "/healthz" => (Route::Health, "GET, HEAD"),
        "/webhook-confirm.txt" => (Route::Confirm, "GET, HEAD"),
        _ if path.starts_with(crate::links::LINK_PATH) => (Route::Attachment, "GET, HEAD"),
        _ if path == "/admin" || path.starts_with("/admin/") => return admin::route(method, path).map(Route::Admin),
        _ => {
            let name = path.strip_prefix("/webhooks/").ok_or_else(not_found)?;
            let provider = Provider::from_route(name).ok_or_else(not_found)?;
            return match method {
                "POST" => Ok(Route::Webhook(provider)),
                _ => Err(ApiError::MethodNotAllowed { allow: "POST" }),
            };
        }
    };
    if read_only {
        Ok(route)
    } else {
        Err(ApiError::MethodNotAllowed { allow })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_of_a_serialised_url() {
        assert_eq!(path_of("https://h.example/webhooks/x?a=/b#c"), "/webhooks/x");
        assert_eq!(path_of("http://127.0.0.1:8787/"), "/");
        assert_eq!(path_of("http://127.0.0.1:8787"), "/");
        assert_eq!(path_of("http://h/a#b?c"), "/a");
    }

    #[test]
    fn routes_and_refusals() {
        assert_eq!(route("POST", "/webhooks/adm-tools"), Ok(Route::Webhook(Provider::AdmTools)));
        assert_eq!(route("POST", "/webhooks/adm-tools/"), Ok(Route::Webhook(Provider::AdmTools)));
        assert_eq!(route("GET", "/webhooks/adm-tools"), Err(ApiError::MethodNotAllowed { allow: "POST" }));
        assert_eq!(route("POST", "/webhooks/nobody"), Err(not_found()));
        assert_eq!(route("POST", "/webhooks/"), Err(not_found()));
        assert_eq!(route("GET", "/healthz"), Ok(Route::Health));
        assert_eq!(route("HEAD", "/webhook-confirm.txt"), Ok(Route::Confirm));
        assert_eq!(route("POST", "/healthz"), Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }));
        assert_eq!(route("GET", "/"), Err(not_found()));
        assert_eq!(route("GET", "/etc/passwd"), Err(not_found()));
        assert_eq!(route("GET", "/admin/events"), Ok(Route::Admin(AdminRoute::ListEvents)));
        assert_eq!(route("GET", "/administrator"), Err(not_found()));
        assert_eq!(route("GET", "/attachments/a.pdf"), Ok(Route::Attachment));
        assert_eq!(route("POST", "/attachments/a.pdf"), Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }));
    }
}
