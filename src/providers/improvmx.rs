//! ImprovMX inbound mail (its webhook documentation).
//!
//! Not signed: ImprovMX "will always come from" one static address, so the
//! source address (`CF-Connecting-IP`) must be in `IMPROVMX_ALLOWED_IPS`.
//! The payload carries the whole message: headers (each a string or an array
//! of strings), `to`/`from`/`return-path` as `{name, email}`, text, html,
//! and `inlines`/`attachments` with base64 `content`, kept intact.
//! ImprovMX retries twice on 4xx or 5xx, then gives up.

use super::payload::{null_as_empty, parse_json};
use super::{Auth, Inbound, Normalised, Setting, Source};
use crate::address;
use crate::auth::IpList;
use crate::dedupe;
use crate::error::ApiError;
use crate::event::{Attachment, AuthResults, Event, EventData, EventType, Inbound as InboundMail};
use crate::large::{LargePath, Seg};
use crate::mailauth;
use crate::values::{ip_list, whole_family_warning, ConfigError, Lookup};
use serde::Deserialize;
use serde_json::{Map, Value};

pub const NAME: &str = ImprovMx::NAME;

pub struct ImprovMx;

impl Source for ImprovMx {
    const NAME: &'static str = "improvmx";
    const TITLE: &'static str = "ImprovMX";
    const EVENT_TYPES: &'static [EventType] = &[EventType::Received];
    const AUTH: Auth = Auth::SourceAddress { allow_list: "IMPROVMX_ALLOWED_IPS" };
    /// Attachments (base64), text and html may be large; they travel as markers (see `large`).
    const LARGE_PATHS: &'static [LargePath] = &[
        &[Seg::Key("text")],
        &[Seg::Key("html")],
        &[Seg::Key("inlines"), Seg::Any, Seg::Key("content")],
        &[Seg::Key("attachments"), Seg::Any, Seg::Key("content")],
    ];
    const SETTINGS: &'static [Setting] = &[Setting::var("IMPROVMX_ALLOWED_IPS")];
    /// `IMPROVMX_ALLOWED_IPS`
    type Settings = IpList;

    fn settings(get: &Lookup) -> Result<IpList, ConfigError> {
        ip_list(get, "IMPROVMX_ALLOWED_IPS", "15.237.103.194")
    }

    fn missing(ips: &IpList) -> Option<String> {
        ips.is_empty().then(|| "ImprovMX is not configured: set IMPROVMX_ALLOWED_IPS (ImprovMX posts from 15.237.103.194)".into())
    }

    fn warnings(ips: &IpList) -> Vec<String> {
        whole_family_warning("IMPROVMX_ALLOWED_IPS", ips).into_iter().collect()
    }

    fn authenticate_head(ips: &IpList, req: &Inbound) -> Result<(), ApiError> {
        req.address_allowed(ips, "IMPROVMX_ALLOWED_IPS")
    }

    fn normalise(_: &IpList, req: &Inbound) -> Result<Normalised, ApiError> {
        normalise(req).map(Normalised::new)
    }
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    #[serde(default)]
    to: Value,
    #[serde(default)]
    from: Value,
    subject: Option<String>,
    #[serde(rename = "message-id")]
    message_id: Option<String>,
    #[serde(rename = "return-path", default)]
    return_path: Value,
    #[serde(default)]
    timestamp: Value,
    text: Option<String>,
    html: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    inlines: Vec<Option<Part>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    attachments: Vec<Option<Part>>,
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    content_type: Option<String>,
    name: Option<String>,
    content: Option<String>,
    cid: Option<String>,
}

impl Part {
    /// What of a part goes into the message's content digest: which list it is
    /// in (`inline` or `attachment`), its name, type, content id and content.
    fn identity<'p>(&'p self, list: &'static str) -> [Option<&'p str>; 5] {
        [Some(list), self.name.as_deref(), self.content_type.as_deref(), self.cid.as_deref(), self.content.as_deref()]
    }

    fn into_attachment(self, inline: bool, req: &Inbound) -> Attachment {
        Attachment {
            size: self.content.as_deref().map(|c| req.base64_len(c)),
            sha256: self.content.as_deref().map(|c| req.base64_sha256(c)),
            url: None,
            filename: self.name,
            content_type: self.content_type,
            content_id: self.cid,
            inline,
            content_base64: self.content,
        }
    }
}

fn normalise(req: &Inbound) -> Result<Vec<Event>, ApiError> {
    let p: Payload = parse_json(NAME, req.json)?;
    if p.headers.is_none() && p.from.is_null() && p.to.is_null() {
        return Err(ApiError::BadRequest("the body has none of headers, from, to: not an ImprovMX inbound email".into()));
    }
    let headers = p.headers.unwrap_or_default();
    let to = address::from_json(&p.to);
    let delivered_to = mailauth::header(&headers, "Delivered-To").map(str::trim).map(String::from);
    let message_id = p.message_id.as_deref().or_else(|| mailauth::header(&headers, "Message-ID")).and_then(crate::event::message_id);

    // `null` entries in `inlines`/`attachments` are absent parts, not a refusal.
    let inlines: Vec<Part> = p.inlines.into_iter().flatten().collect();
    let parts: Vec<Part> = p.attachments.into_iter().flatten().collect();

    // Identity (docs/EVENTS.md, event ids): the Message-ID, who it was for and what it says.
    // The same message forwarded to two aliases is two events; ImprovMX's
    // retry of one is a duplicate; a forgery reusing the Message-ID is not.
    let id = match &message_id {
        Some(mid) => {
            let mut rcpts: Vec<String> = to.iter().map(|a| a.email.clone()).collect();
            rcpts.extend(delivered_to.as_deref().map(|d| format!("delivered-to:{d}")));
            let from = address::from_json(&p.from).into_iter().next().map(|a| a.email);
            // Everything of the message but its timestamp (a retry may be stamped anew).
            let envelope = serde_json::to_string(&(&p.to, &p.from, &p.return_path)).unwrap_or_default();
            let content = dedupe::content_digest(
                [Some(envelope.as_str()), from.as_deref(), p.subject.as_deref(), p.text.as_deref(), p.html.as_deref()]
                    .into_iter()
                    .chain(inlines.iter().flat_map(|i| i.identity("inline")))
                    .chain(parts.iter().flat_map(|a| a.identity("attachment")))
                    .map(|part| part.map(|s| req.text_sha256(s)))
                    .chain([Some(dedupe::headers_sha256(&headers))]),
            );
            dedupe::inbound_id(NAME, mid, &rcpts, &content)
        }
        None => dedupe::event_id_from_body(NAME, req.body),
    };

    let mut auth = mailauth::header(&headers, "Authentication-Results").map(mailauth::authentication_results).unwrap_or_default();
    let (spf_word, sender_ip) = mailauth::header(&headers, "Received-SPF").map(mailauth::received_spf).unwrap_or_default();
    if auth.spf.is_none() {
        auth.spf = spf_word;
    }
    let attachments =
        inlines.into_iter().map(|a| a.into_attachment(true, req)).chain(parts.into_iter().map(|a| a.into_attachment(false, req))).collect();

    let mut data = EventData::new(NAME);
    data.message_id = message_id;
    data.from = address::from_json(&p.from).into_iter().next();
    data.recipient = delivered_to.or_else(|| to.first().map(|a| a.email.clone()));
    data.to = to;
    data.subject = p.subject.or_else(|| mailauth::header(&headers, "Subject").map(String::from));
    if let Some(rp) = address::from_json(&p.return_path).into_iter().next() {
        data.metadata.insert("return_path".into(), Value::String(rp.email));
    }
    data.inbound = Some(InboundMail {
        headers: headers.into_iter().collect(),
        text: p.text,
        html: p.html,
        attachments,
        auth: (auth != AuthResults::default()).then_some(auth),
        spam: None,
        sender_ip,
    });
    let time = crate::time::from_json(&p.timestamp);
    Ok(vec![Event::new(id, EventType::Received, time, data)])
}
