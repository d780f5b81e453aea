//! Cloudflare Email Routing: mail for a domain, handed by the platform to
//! the Worker's `email` handler (docs: README "Email Routing"). No provider
//! in between, no webhook, no shared secret: nobody can post as this source.
//!
//! The raw message (RFC 5322, MIME) is parsed with `mail-parser` into this
//! source's JSON payload (`payload`), which the pipeline then takes like any
//! provider's: text, html and attachments (base64 of their exact bytes) as
//! large strings, stored once in R2 for a large message.
//!
//! What the message says about itself (From, Message-ID, `Authentication-Results`)
//! is written by its sender. Only what Cloudflare prepended is trusted for the
//! verdicts: the first `Authentication-Results` and `Received-SPF` header of
//! the message, and only when they are Cloudflare's (`mx.cloudflare.net`).

use super::payload::parse_json;
use super::{Auth, Inbound, Normalised, Setting, Source};
use crate::dedupe;
use crate::error::ApiError;
use crate::event::{self, Address, Attachment, AuthResults, Event, EventData, EventType, Inbound as InboundMail};
use crate::large::{LargePath, Seg};
use crate::mailauth;
use crate::values::{ConfigError, Lookup};
use serde::Deserialize;
use serde_json::Value;

/// Raw mail to this source's payload (mail-parser), after the guard's checks and repairs.
mod guard;
mod mime;
mod uuencode;

pub const NAME: &str = EmailRouting::NAME;

/// Who writes the verdicts mailhook trusts.
pub const CLOUDFLARE_AUTHSERV_ID: &str = "mx.cloudflare.net";

pub struct EmailRouting;

/// `EMAIL_FORWARD_TO`
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// A verified destination address of the account: each message is also forwarded there.
    pub forward_to: Option<String>,
}

impl Source for EmailRouting {
    const NAME: &'static str = "email-routing";
    const TITLE: &'static str = "Email Routing";
    const EVENT_TYPES: &'static [EventType] = &[EventType::Received];
    const AUTH: Auth = Auth::Platform;
    const LARGE_PATHS: &'static [LargePath] =
        &[&[Seg::Key("text")], &[Seg::Key("html")], &[Seg::Key("attachments"), Seg::Any, Seg::Key("content")]];
    const SETTINGS: &'static [Setting] = &[Setting::var("EMAIL_FORWARD_TO")];
    type Settings = Settings;

    fn settings(get: &Lookup) -> Result<Settings, ConfigError> {
        let forward_to = get("EMAIL_FORWARD_TO").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if let Some(addr) = &forward_to {
            if !plain_address(addr) {
                return Err(ConfigError {
                    var: "EMAIL_FORWARD_TO",
                    message: "expected one address, such as inbox@example.com (a verified destination address of the account)".into(),
                });
            }
        }
        Ok(Settings { forward_to })
    }

    /// Nothing to set: the platform hands the mail over (the README says how to route a domain's mail here).
    fn missing(_: &Settings) -> Option<String> {
        None
    }

    fn payload(_: &Settings, req: &Inbound) -> Result<Option<Vec<u8>>, ApiError> {
        mime::payload(req).map(Some)
    }

    fn normalise(_: &Settings, req: &Inbound) -> Result<Normalised, ApiError> {
        normalise(req).map(Normalised::new)
    }

    fn forward_to(s: &Settings) -> Option<&str> {
        s.forward_to.as_deref()
    }
}

/// `local@domain`, nothing else: no name, no list, no comment, ASCII only;
/// the local part of RFC 5322 atoms and dots, the domain of LDH labels.
fn plain_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    !local.is_empty()
        && local.split('.').all(|atom| !atom.is_empty() && atom.chars().all(atext))
        && domain.contains('.')
        && !domain.ends_with('.')
        && crate::dns::valid_hostname(domain).is_some()
}

#[derive(Deserialize)]
struct PayloadIn {
    envelope_from: Option<String>,
    envelope_to: Option<String>,
    digest: String,
    headers: Vec<(String, String)>,
    message_id: Option<String>,
    subject: Option<String>,
    from: Vec<AddressIn>,
    to: Vec<AddressIn>,
    cc: Vec<AddressIn>,
    bcc: Vec<AddressIn>,
    text: Option<String>,
    html: Option<String>,
    attachments: Vec<PartIn>,
}

#[derive(Deserialize)]
struct AddressIn {
    email: String,
    name: Option<String>,
}

impl From<AddressIn> for Address {
    fn from(a: AddressIn) -> Self {
        Address { email: a.email, name: a.name }
    }
}

#[derive(Deserialize)]
struct PartIn {
    filename: Option<String>,
    content_type: Option<String>,
    content_id: Option<String>,
    inline: bool,
    size: u64,
    content: String,
}

/// What the Worker may hold for one message while it is parsed: the message,
/// its decoded parts and the payload (the isolate has 128 MB in all).
pub const MEMORY_BUDGET: usize = 100 * 1024 * 1024;
pub use crate::limits::MAX_LITERAL_BYTES;
/// RFC 2046 allows 70 characters; parsing time grows with a boundary's length.
pub const MAX_BOUNDARY_LEN: usize = 100;
/// Declared boundaries that never appear after their declaration: the parser searches the rest of the message for each.
pub const MAX_MISSING_BOUNDARIES: usize = 16;
/// MIME parts (delimiter lines): each costs the parser a few hundred bytes, whatever its size.
pub const MAX_PARTS: usize = 2000;
/// The message's own header block, and a part's.
pub const MAX_HEADER_BLOCK: usize = 1024 * 1024;
pub const MAX_PART_HEADER_BLOCK: usize = 64 * 1024;
/// A `Content-Type` or `Content-Disposition` field, and its RFC 2231 segments (`name*0=`, …).
pub const MAX_MIME_FIELD: usize = 8 * 1024;
pub const MAX_PARAMETER_SEGMENTS: usize = 64;

/// The verdicts Cloudflare recorded, and the sending server's address: from
/// the first `Authentication-Results` and the first `Received-SPF` of the
/// message, each only when Cloudflare wrote it. Cloudflare prepends its own
/// to every message it routes, above anything the sender wrote, so a forged
/// one further down is never read; without Cloudflare's, there is no verdict.
fn cloudflare_verdicts(headers: &[(String, String)]) -> (Option<AuthResults>, Option<String>) {
    let first = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let by_cloudflare = |v: &str| v.split(';').next().is_some_and(|id| id.trim().eq_ignore_ascii_case(CLOUDFLARE_AUTHSERV_ID));
    let mut auth = first("Authentication-Results").filter(|v| by_cloudflare(v)).map(mailauth::authentication_results).unwrap_or_default();
    let spf = first("Received-SPF").filter(|v| v.to_ascii_lowercase().contains(CLOUDFLARE_AUTHSERV_ID)).map(mailauth::received_spf);
    let (spf_word, sender_ip) = spf.unwrap_or_default();
    if auth.spf.is_none() {
        auth.spf = spf_word;
    }
    ((auth != AuthResults::default()).then_some(auth), sender_ip)
}

fn normalise(req: &Inbound) -> Result<Vec<Event>, ApiError> {
    let p: PayloadIn = parse_json(NAME, req.json)?;
    let message_id = p.message_id.as_deref().and_then(event::message_id);
    let to: Vec<Address> = p.to.into_iter().map(Address::from).collect();
    let recipient = p.envelope_to.clone().or_else(|| to.first().map(|a| a.email.clone()));

    // Identity (docs/EVENTS.md, event ids): the Message-ID, who it was for (the envelope's
    // RCPT TO: Email Routing hands over one copy per recipient) and what it says.
    let id = match &message_id {
        Some(mid) => {
            let rcpts: Vec<String> = match &p.envelope_to {
                Some(rcpt) => vec![format!("rcpt:{rcpt}")],
                None => to.iter().map(|a| a.email.clone()).collect(),
            };
            dedupe::inbound_id(NAME, mid, &rcpts, &p.digest)
        }
        None => dedupe::event_id(NAME, &["inbound", &p.digest, p.envelope_to.as_deref().unwrap_or_default()]),
    };

    let (auth, sender_ip) = cloudflare_verdicts(&p.headers);
    let headers = mailauth::header_map(p.headers);
    let attachments = p
        .attachments
        .into_iter()
        .map(|a| Attachment {
            filename: a.filename,
            content_type: a.content_type,
            size: Some(a.size),
            sha256: Some(req.base64_sha256(&a.content)),
            content_id: a.content_id,
            inline: a.inline,
            content_base64: Some(a.content),
            url: None,
        })
        .collect();

    let mut data = EventData::new(NAME);
    data.message_id = message_id;
    data.from = p.from.into_iter().next().map(Address::from);
    data.to = to;
    data.cc = p.cc.into_iter().map(Address::from).collect();
    data.bcc = p.bcc.into_iter().map(Address::from).collect();
    data.recipient = recipient;
    data.subject = p.subject;
    if let Some(from) = p.envelope_from {
        data.metadata.insert("envelope_from".into(), Value::String(from));
    }
    data.inbound =
        Some(InboundMail { headers: headers.into_iter().collect(), text: p.text, html: p.html, attachments, auth, spam: None, sender_ip });
    // It arrived now: the Date header is the sender's word.
    Ok(vec![Event::new(id, EventType::Received, Some(req.now), data)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_to_takes_one_plain_address() {
        for ok in ["inbox@example.com", "a.b+tag@mail.example.co.uk", " inbox@example.com "] {
            assert!(EmailRouting::settings(&|_| Some(ok.to_string())).is_ok(), "{ok}");
        }
        for bad in [
            "inbox",
            "a@b",
            "Name <inbox@example.com>",
            "a@example.com,b@example.com",
            "a b@example.com",
            "a@example.com.",
            "@example.com",
            "mailto:inbox@example.com",
            "a@example..com",
            "(x)a@example.com",
            "a@example.com\u{200b}",
            "a@-bad-.example",
            "a@example.com?",
        ] {
            let e = EmailRouting::settings(&|_| Some(bad.to_string())).unwrap_err();
            assert!(e.to_string().contains("EMAIL_FORWARD_TO"), "{bad}: {e}");
        }
        assert!(EmailRouting::settings(&|_| None).unwrap().forward_to.is_none());
    }

    #[test]
    fn only_cloudflares_verdicts_count() {
        let h = |pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>();
        let cf = h(&[
            ("Received-SPF", "pass (mx.cloudflare.net: domain of a@example.net designates 192.0.2.1 as permitted sender) receiver=mx.cloudflare.net; client-ip=192.0.2.1;"),
            ("Authentication-Results", "mx.cloudflare.net; dkim=fail header.d=example.net; spf=pass smtp.mailfrom=example.net; dmarc=fail"),
            ("Authentication-Results", "mx.cloudflare.net; dkim=pass; spf=pass; dmarc=pass"),
        ]);
        let (auth, ip) = cloudflare_verdicts(&cf);
        assert_eq!(auth.unwrap().dkim.as_deref(), Some("fail"), "the first, Cloudflare's, not the forged one below it");
        assert_eq!(ip.as_deref(), Some("192.0.2.1"));
        let forged = h(&[
            ("Authentication-Results", "mx.example.net; dkim=pass; spf=pass; dmarc=pass"),
            ("Received-SPF", "pass client-ip=192.0.2.9"),
        ]);
        assert_eq!(cloudflare_verdicts(&forged), (None, None), "another server's verdicts are not Cloudflare's");
        assert_eq!(cloudflare_verdicts(&[]), (None, None));
    }

    #[test]
    fn trace_headers_do_not_change_the_identity() {
        let mail = b"From: a@example.net\r\nTo: b@example.org\r\nMessage-ID: <m1@example.net>\r\nSubject: hi\r\n\r\nbody\r\n";
        let relayed =
            [b"Received: from x by cloudflare-email.net; Wed, 25 Nov 2026 10:00:00 +0000\r\nARC-Seal: i=1; t=1\r\n".as_slice(), mail]
                .concat();
        let digest = |m: &[u8]| {
            let p = mime::payload(&Inbound::new(&[], None, m, 0)).unwrap();
            serde_json::from_slice::<Value>(&p).unwrap()["digest"].clone()
        };
        assert_eq!(digest(mail), digest(&relayed));
        let changed = String::from_utf8_lossy(mail).replace("body", "bodx");
        assert_ne!(digest(mail), digest(changed.as_bytes()));
    }
}
