//! The registry as data, for what is not Rust: `cargo run --example registry`
//! prints it as JSON, and `scripts/build.sh` writes it to `build/registry.json`,
//! from which the CLI (`scripts/mailhook.mjs`) and the integration tests'
//! harness derive how each source authenticates its requests.

use super::{Auth, Provider, Setting};
use serde::Serialize;

/// One source, as the registry declares it.
#[derive(Debug, Serialize)]
pub struct SourceEntry {
    pub name: &'static str,
    pub title: &'static str,
    /// `/webhooks/{name}`, or `None` for mail the platform hands over.
    pub route: Option<String>,
    pub auth: Auth,
    /// The request headers the core reads (lower case).
    pub headers: Vec<&'static str>,
    pub event_types: Vec<&'static str>,
    pub settings: Vec<Setting>,
}

/// Every source, in the registry's order.
pub fn entries() -> Vec<SourceEntry> {
    Provider::ALL
        .iter()
        .map(|p| SourceEntry {
            name: p.name(),
            title: p.title(),
            route: p.posts().then(|| format!("/webhooks/{}", p.name())),
            auth: p.auth(),
            headers: p.request_headers(),
            event_types: p.event_types().iter().map(|t| t.as_str()).collect(),
            settings: p.settings(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_says_how_it_authenticates_as_tagged_json() {
        let json = serde_json::to_value(entries()).unwrap();
        let maileroo = json.as_array().unwrap().iter().find(|s| s["name"] == "maileroo").unwrap();
        assert_eq!(maileroo["auth"]["kind"], "signed_body");
        assert_eq!(maileroo["auth"]["secret"], "MAILEROO_WEBHOOK_SECRET");
        assert_eq!(maileroo["settings"][0], serde_json::json!({"name": "MAILEROO_WEBHOOK_SECRET", "secret": true}));
        let routing = json.as_array().unwrap().iter().find(|s| s["name"] == "email-routing").unwrap();
        assert_eq!((routing["auth"]["kind"].as_str(), routing["route"].is_null()), (Some("platform"), true));
    }
}
