//! Mail-Plus inbound mail (its webhook documentation).
//!
//! Not signed. Verified by source address (`MAIL_PLUS_ALLOWED_IPS`, from its
//! client area) and/or forward-confirmed reverse DNS under
//! `MAIL_PLUS_RDNS_SUFFIX`, as `MAIL_PLUS_VERIFY` says. The reverse-DNS
//! lookup is I/O, so the edge does it (see `rdns_check`) and hands the
//! verdict in `Inbound::rdns`. The payload holds whichever fields the
//! customer selected: timestamp, header, body, subject, from, to, bcc, spf,
//! dkim, spam_score, ip_address; any subset may be present.

use super::payload::parse_json;
use super::{Auth, Inbound, Normalised, RdnsCheck, Setting, Source};
use crate::address;
use crate::auth::IpList;
use crate::dedupe;
use crate::error::ApiError;
use crate::event::{AuthResults, Event, EventData, EventType, Inbound as InboundMail, Spam};
use crate::large::{LargePath, Seg};
use crate::mailauth;
use crate::values::{ip_list, whole_family_warning, ConfigError, Lookup};
use serde::Deserialize;
use serde_json::{Map, Value};

pub const NAME: &str = MailPlus::NAME;

pub struct MailPlus;

/// How Mail-Plus requests are verified (`MAIL_PLUS_VERIFY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// The source IP is in `MAIL_PLUS_ALLOWED_IPS`.
    Ip,
    /// The source IP's PTR is under `MAIL_PLUS_RDNS_SUFFIX` and resolves back to it.
    Rdns,
    /// Both.
    IpAndRdns,
    /// Either.
    IpOrRdns,
}

impl VerifyMode {
    pub fn uses_ip(self) -> bool {
        !matches!(self, Self::Rdns)
    }

    pub fn uses_rdns(self) -> bool {
        !matches!(self, Self::Ip)
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// `MAIL_PLUS_ALLOWED_IPS`
    pub allowed_ips: IpList,
    /// `MAIL_PLUS_RDNS_SUFFIX`, lower case, without dots around it.
    pub rdns_suffix: Option<String>,
    /// `MAIL_PLUS_VERIFY`
    pub verify: VerifyMode,
    /// `DOH_URL`
    pub doh_url: String,
}

impl Source for MailPlus {
    const NAME: &'static str = "mail-plus";
    const TITLE: &'static str = "Mail-Plus";
    const EVENT_TYPES: &'static [EventType] = &[EventType::Received];
    /// And/or its reverse DNS, as `MAIL_PLUS_VERIFY` says.
    const AUTH: Auth = Auth::SourceAddress { allow_list: "MAIL_PLUS_ALLOWED_IPS" };
    /// The message text may be large; it travels as a marker (see `large`).
    const LARGE_PATHS: &'static [LargePath] = &[&[Seg::Key("body")]];
    const SETTINGS: &'static [Setting] = &[
        Setting::var("MAIL_PLUS_ALLOWED_IPS"),
        Setting::var("MAIL_PLUS_RDNS_SUFFIX"),
        Setting::var("MAIL_PLUS_VERIFY"),
        Setting::var("DOH_URL"),
    ];
    type Settings = Settings;

    fn settings(get: &Lookup) -> Result<Settings, ConfigError> {
        let s = Settings {
            allowed_ips: ip_list(get, "MAIL_PLUS_ALLOWED_IPS", "")?,
            rdns_suffix: get("MAIL_PLUS_RDNS_SUFFIX").map(|s| s.trim_matches('.').to_ascii_lowercase()),
            verify: verify_mode(get("MAIL_PLUS_VERIFY").as_deref())?,
            doh_url: get("DOH_URL").unwrap_or_else(|| "https://cloudflare-dns.com/dns-query".into()),
        };
        if let Some(suffix) = &s.rdns_suffix {
            if crate::dns::valid_hostname(suffix).is_none_or(|h| !h.contains('.')) {
                return Err(ConfigError {
                    var: "MAIL_PLUS_RDNS_SUFFIX",
                    message: format!("{suffix:?} is not a domain name such as mail-plus.com (one name, no wildcards or lists)"),
                });
            }
        }
        if !(s.doh_url.starts_with("https://") || s.doh_url.starts_with("http://")) {
            return Err(ConfigError { var: "DOH_URL", message: "must be an absolute http:// or https:// URL".into() });
        }
        Ok(s)
    }

    /// `None` when the configured mode has what it needs.
    fn missing(s: &Settings) -> Option<String> {
        let ips = !s.allowed_ips.is_empty();
        let rdns = s.rdns_suffix.is_some();
        let ok = match s.verify {
            VerifyMode::Ip => ips,
            VerifyMode::Rdns => rdns,
            VerifyMode::IpAndRdns => ips && rdns,
            VerifyMode::IpOrRdns => ips || rdns,
        };
        (!ok).then(|| {
            "Mail-Plus is not configured: MAIL_PLUS_VERIFY needs MAIL_PLUS_ALLOWED_IPS (from its client area) and/or MAIL_PLUS_RDNS_SUFFIX".into()
        })
    }

    fn warnings(s: &Settings) -> Vec<String> {
        whole_family_warning("MAIL_PLUS_ALLOWED_IPS", &s.allowed_ips).into_iter().collect()
    }

    /// The address whose reverse DNS the edge must check before `authenticate_head`,
    /// or `None` when the mode does not need it for this request.
    fn rdns_check(s: &Settings, req: &Inbound) -> Option<RdnsCheck> {
        let suffix = s.rdns_suffix.as_ref()?;
        if !s.verify.uses_rdns() {
            return None;
        }
        let ip = req.client_ip?.trim();
        let listed = s.allowed_ips.contains(ip);
        match s.verify {
            // Listed: the address alone is enough.
            VerifyMode::IpOrRdns if listed => None,
            // Not listed: refused whatever its reverse DNS says, so no DoH work for it.
            VerifyMode::IpAndRdns if !listed => None,
            _ => Some(RdnsCheck { ip: ip.parse().ok()?, suffix: suffix.clone(), doh_url: s.doh_url.clone() }),
        }
    }

    fn authenticate_head(s: &Settings, req: &Inbound) -> Result<(), ApiError> {
        let ip = || req.address_allowed(&s.allowed_ips, "MAIL_PLUS_ALLOWED_IPS");
        let rdns = || {
            let suffix = s.rdns_suffix.as_deref().unwrap_or_default();
            let addr = req.client_ip.unwrap_or("(none)");
            match req.rdns {
                Some(true) => Ok(()),
                Some(false) => Err(ApiError::Forbidden(format!(
                    "the reverse DNS of {addr} is not a name under .{suffix} that resolves back to {addr} (MAIL_PLUS_RDNS_SUFFIX)"
                ))),
                None => Err(ApiError::Forbidden(format!("the reverse DNS of {addr} could not be checked"))),
            }
        };
        match s.verify {
            VerifyMode::Ip => ip(),
            VerifyMode::Rdns => rdns(),
            VerifyMode::IpAndRdns => ip().and_then(|()| rdns()),
            VerifyMode::IpOrRdns => ip().or_else(|_| rdns()),
        }
    }

    fn normalise(_s: &Settings, req: &Inbound) -> Result<Normalised, ApiError> {
        normalise(req).map(Normalised::new)
    }
}

fn verify_mode(raw: Option<&str>) -> Result<VerifyMode, ConfigError> {
    match raw.map(|r| r.replace(' ', "").to_ascii_lowercase()).as_deref() {
        None | Some("rdns") => Ok(VerifyMode::Rdns),
        Some("ip") => Ok(VerifyMode::Ip),
        Some("ip+rdns") => Ok(VerifyMode::IpAndRdns),
        Some("ip|rdns") => Ok(VerifyMode::IpOrRdns),
        Some(other) => Err(ConfigError { var: "MAIL_PLUS_VERIFY", message: format!("{other:?} is not one of ip, rdns, ip+rdns, ip|rdns") }),
    }
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    timestamp: Value,
    #[serde(default)]
    header: Value,
    body: Option<String>,
    subject: Option<String>,
    #[serde(default)]
    from: Value,
    #[serde(default)]
    to: Value,
    #[serde(default)]
    bcc: Value,
    spf: Option<String>,
    dkim: Option<String>,
    #[serde(default)]
    spam_score: Value,
    ip_address: Option<String>,
}

const FIELDS: [&str; 11] = ["timestamp", "header", "body", "subject", "from", "to", "bcc", "spf", "dkim", "spam_score", "ip_address"];

fn normalise(req: &Inbound) -> Result<Vec<Event>, ApiError> {
    let raw: Map<String, Value> = parse_json(NAME, req.json)?;
    if !FIELDS.iter().any(|f| raw.contains_key(*f)) {
        return Err(ApiError::BadRequest(format!("the body has none of Mail-Plus's fields ({})", FIELDS.join(", "))));
    }
    let p: Payload = serde_json::from_value(Value::Object(raw))
        .map_err(|e| ApiError::BadRequest(format!("the body is JSON but not a Mail-Plus payload: {e}")))?;
    // `header` is a JSON object in the docs' sample; a raw header block is accepted too.
    let headers = match p.header {
        Value::Object(m) => m,
        Value::String(block) => mailauth::parse_header_block(&block),
        _ => Map::new(),
    };
    let field_or_header = |v: &Value, name: &str| match v {
        Value::Null => mailauth::header(&headers, name).map(address::parse_list).unwrap_or_default(),
        v => address::from_json(v),
    };
    let to = field_or_header(&p.to, "To");
    let bcc = address::from_json(&p.bcc);
    let from = field_or_header(&p.from, "From").into_iter().next();
    let message_id = mailauth::header(&headers, "Message-ID").and_then(crate::event::message_id);

    // Identity (docs/EVENTS.md, event ids): the Message-ID, the recipients and the content,
    // so a forgery that reuses a genuine Message-ID cannot suppress it.
    let subject = p.subject.or_else(|| mailauth::header(&headers, "Subject").map(String::from));
    let id = match &message_id {
        Some(mid) => {
            let rcpts: Vec<String> = to.iter().chain(&bcc).map(|a| a.email.clone()).collect();
            let content = dedupe::content_digest(
                [from.as_ref().map(|a| a.email.as_str()), subject.as_deref(), mailauth::header(&headers, "Date"), p.body.as_deref()]
                    .map(|part| part.map(|s| req.text_sha256(s)))
                    .into_iter()
                    .chain([Some(dedupe::headers_sha256(&headers))]),
            );
            dedupe::inbound_id(NAME, mid, &rcpts, &content)
        }
        None => dedupe::event_id_from_body(NAME, req.body),
    };
    let score = match &p.spam_score {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let auth = AuthResults { spf: p.spf.map(|s| s.to_ascii_lowercase()), dkim: p.dkim.map(|s| s.to_ascii_lowercase()), dmarc: None };

    let mut data = EventData::new(NAME);
    data.subject = subject;
    data.message_id = message_id;
    data.from = from;
    data.recipient = to.first().or(bcc.first()).map(|a| a.email.clone());
    data.to = to;
    data.bcc = bcc;
    data.inbound = Some(InboundMail {
        headers: headers.into_iter().collect(),
        text: p.body,
        html: None,
        attachments: Vec::new(),
        auth: (auth != AuthResults::default()).then_some(auth),
        spam: score.map(|score| Spam { score: Some(score), verdict: None }),
        sender_ip: p.ip_address,
    });
    let time = crate::time::from_json(&p.timestamp);
    Ok(vec![Event::new(id, EventType::Received, time, data)])
}
