//! Shared by the tests, the bench and the fuzz targets (not part of the API):
//! a configuration with every provider set up, and a body authenticated
//! exactly as its provider sends it.

use crate::auth::hmac_sha256;
use crate::config::Config;
use crate::providers::{Auth, Inbound, Provider, SmtpEnvelope};

pub const ADM_TOOLS_TOKEN: &str = "test-adm-tools-token";
pub const MAILTURA_SECRET: &str = "test-mailtura-secret";
pub const MAILEROO_SECRET: &str = "test-maileroo-secret";
pub const IMPROVMX_IP: &str = "15.237.103.194";
pub const MAIL_PLUS_IP: &str = "192.0.2.10";

/// Ten years: fixtures are real payloads with their own old dates.
pub const LONG_WINDOW: &str = "315360000";
/// The dedupe window that goes with it: the age window plus the clock-skew allowance.
pub const LONG_DEDUPE: &str = "315360300";

/// The settings of the test configuration: every provider configured.
const BASE: [(&str, &str); 8] = [
    ("ADM_TOOLS_WEBHOOK_TOKEN", ADM_TOOLS_TOKEN),
    ("MAILTURA_WEBHOOK_SECRET", MAILTURA_SECRET),
    ("MAILEROO_WEBHOOK_SECRET", MAILEROO_SECRET),
    ("MAIL_PLUS_ALLOWED_IPS", "192.0.2.0/24, 2001:db8::/32"),
    ("MAIL_PLUS_RDNS_SUFFIX", "mail-plus.com"),
    ("MAIL_PLUS_VERIFY", "ip+rdns"),
    ("MAX_EVENT_AGE_SECONDS", LONG_WINDOW),
    ("DEDUPE_TTL_SECONDS", LONG_DEDUPE),
];

/// An address of each allow-list of the test configuration.
const ALLOWED_IPS: [(&str, &str); 2] = [("IMPROVMX_ALLOWED_IPS", IMPROVMX_IP), ("MAIL_PLUS_ALLOWED_IPS", MAIL_PLUS_IP)];

/// The test configuration's value of `var` (a signed provider's secret, say).
pub fn test_value(var: &str) -> Option<&'static str> {
    BASE.iter().find(|(n, _)| *n == var).map(|(_, v)| *v)
}

/// Every provider configured; `overrides` replace values (an empty value unsets).
pub fn config_with(overrides: &[(&str, &str)]) -> Result<Config, crate::config::ConfigError> {
    Config::from_lookup(|k| overrides.iter().chain(BASE.iter()).find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
}

/// The markers' nonce in tests (the edge draws a random one per request).
pub const TEST_NONCE: &str = "0123456789abcdef0123456789abcdef";

/// The pure pipeline on `req`, each event's JSON materialised as the
/// consumer would send it: what the tests, the bench and the fuzz targets compare.
pub fn ingest_json(provider: Provider, cfg: &Config, req: &Inbound) -> Result<Vec<Vec<u8>>, crate::error::ApiError> {
    let ingested = crate::pipeline::ingest(cfg, provider, req, TEST_NONCE)?;
    Ok(ingested.render().iter().map(|e| e.materialise(ingested.body(req.body))).collect())
}

/// Hex HMAC-SHA256 of the raw body, as Mailtura and Maileroo sign.
pub fn hex_hmac(secret: &str, body: &[u8]) -> String {
    hex::encode(hmac_sha256(secret.as_bytes(), &[body]))
}

/// What `provider` sends with a body: headers, the source address,
/// (Mail-Plus) the verdict of a passing reverse DNS, and (mail the platform
/// hands over) the SMTP envelope.
pub struct Sent {
    pub headers: Vec<(String, String)>,
    pub client_ip: Option<&'static str>,
    pub rdns: Option<bool>,
    pub envelope: Option<SmtpEnvelope<'static>>,
}

impl Sent {
    /// The request as the core sees it.
    pub fn inbound<'a>(&'a self, body: &'a [u8], now: i64) -> Inbound<'a> {
        Inbound { rdns: self.rdns, envelope: self.envelope, ..Inbound::new(&self.headers, self.client_ip, body, now) }
    }
}

/// The SMTP envelope of test mail.
pub const TEST_ENVELOPE: SmtpEnvelope<'static> = SmtpEnvelope { from: "sender@example.net", to: "inbox@mailhook.test" };

pub fn as_sent_by(provider: Provider, body: &[u8]) -> Sent {
    let mut sent = Sent {
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        client_ip: Some("203.0.113.50"),
        rdns: None,
        envelope: None,
    };
    let value = |secret: &str| test_value(secret).unwrap_or_else(|| panic!("testkit: {secret} has no test value in BASE"));
    match provider.auth() {
        Auth::SignedBody { header, secret, .. } => sent.headers.push((header.to_ascii_lowercase(), hex_hmac(value(secret), body))),
        Auth::Token { header, secret } => sent.headers.push((header.to_ascii_lowercase(), value(secret).into())),
        // The first address of the allow-list, and (Mail-Plus) a passing reverse DNS.
        Auth::SourceAddress { allow_list } => {
            sent.client_ip = Some(ALLOWED_IPS.iter().find(|(var, _)| *var == allow_list).map_or("203.0.113.50", |(_, ip)| *ip));
            sent.rdns = Some(true);
        }
        Auth::Platform => {
            sent.headers.clear();
            sent.client_ip = None;
            sent.envelope = Some(TEST_ENVELOPE);
        }
    }
    sent
}

/// Every header and value parser on `text` (and `bytes` where bytes are
/// taken): the property tests and the `parsers` fuzz target both run it, so
/// a new parser is added in one place.
pub fn exercise_parsers(text: &str, bytes: &[u8], now: i64) {
    let _ = crate::mailauth::authentication_results(text);
    let _ = crate::mailauth::received_spf(text);
    let _ = crate::mailauth::parse_header_block(text);
    let _ = crate::large::base64_len(text.as_bytes());
    let _ = crate::address::parse_list(text);
    let _ = crate::time::parse_rfc3339(text);
    let _ = crate::delivery::parse_retry_after(text, now);
    let _ = crate::admin::EventQuery::parse(text);
    let _ = crate::admin::query_of(text);
    let _ = crate::routes::route("POST", text);
    let _ = crate::dns::parse_answer(bytes, crate::dns::RecordType::Ptr);
    let _ = crate::dns::suffix_matches(text, "mail-plus.com");
    let _ = crate::dns::valid_hostname(text);
    let _ = crate::dns::candidate_names(&[text.to_string()], "mail-plus.com", 2);
    let _ = crate::dns::query_url("https://dns.example/q", text, crate::dns::RecordType::A);
    if let Ok(list) = crate::auth::IpList::parse(text) {
        let _ = list.contains(text);
    }
    let secrets = crate::config::Secrets::parse(Some("k"));
    let _ = crate::auth::verify_hex_hmac(&secrets, bytes, text);
}
