//! What the edge hands a source of one request or message: the headers the
//! core reads, the source address, the body (or its skeleton), the SMTP
//! envelope, the reverse-DNS verdict and the time.

use crate::auth::IpList;
use crate::error::ApiError;
use crate::large::Refs;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The request headers the core reads (`Provider::request_headers`).
    pub headers: &'a [(String, String)],
    /// `CF-Connecting-IP`, never `X-Forwarded-For`.
    pub client_ip: Option<&'a str>,
    /// The request body as received: what signatures and body-derived ids cover.
    pub body: &'a [u8],
    /// What a normaliser parses: the body, or its skeleton (see `large`),
    /// whose large strings are markers that `refs` resolves.
    pub json: &'a [u8],
    pub refs: Option<&'a Refs>,
    /// The edge's reverse-DNS verdict, when `Source::rdns_check` asked for one.
    pub rdns: Option<bool>,
    /// The SMTP envelope of a message the platform handed over (`Auth::Platform`).
    pub envelope: Option<SmtpEnvelope<'a>>,
    /// Unix seconds: the core never reads a clock.
    pub now: i64,
}

/// `MAIL FROM` and `RCPT TO` of a message, as the receiving server saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmtpEnvelope<'a> {
    pub from: &'a str,
    pub to: &'a str,
}

impl<'a> Inbound<'a> {
    /// A request whose body is parsed as it is (no skeleton yet).
    pub fn new(headers: &'a [(String, String)], client_ip: Option<&'a str>, body: &'a [u8], now: i64) -> Self {
        Inbound { headers, client_ip, body, json: body, refs: None, rdns: None, envelope: None, now }
    }

    /// SHA-256 of a string of the payload (of the large string a marker stands for).
    pub fn text_sha256(&self, s: &str) -> [u8; 32] {
        match self.refs.and_then(|r| r.get(s)) {
            Some(r) => r.sha256,
            None => Sha256::digest(s.as_bytes()).into(),
        }
    }

    /// The decoded length of a base64 string of the payload.
    pub fn base64_len(&self, s: &str) -> u64 {
        match self.refs.and_then(|r| r.get(s)) {
            Some(r) => r.base64_len,
            None => crate::large::base64_len(s.as_bytes()),
        }
    }

    /// SHA-256 of what a base64 string of the payload decodes to (an attachment's bytes), as lower-case hex.
    pub fn base64_sha256(&self, s: &str) -> String {
        hex::encode(match self.refs.and_then(|r| r.get(s)) {
            Some(r) => r.base64_sha256,
            None => Sha256::digest(crate::large::base64_bytes(s.as_bytes())).into(),
        })
    }

    /// A string of the payload as the sender wrote it: itself, or the large string a marker stands for,
    /// decoded from the body when it is at most `max` bytes (`None` when it is longer, or unreadable).
    pub fn text_at_most<'s>(&'s self, s: &'s str, max: usize) -> Option<std::borrow::Cow<'s, str>> {
        match self.refs.and_then(|r| r.get(s)) {
            None => (s.len() <= max).then_some(std::borrow::Cow::Borrowed(s)),
            Some(r) if r.len > max as u64 => None,
            Some(r) => {
                let literal = self.body.get(usize::try_from(r.start).ok()?..usize::try_from(r.end).ok()?)?;
                serde_json::from_slice::<String>(literal).ok().map(std::borrow::Cow::Owned)
            }
        }
    }

    /// A header's value, its name in any case.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// 403 unless the client address (`CF-Connecting-IP`) is in `list`, the allow-list `var`.
    pub fn address_allowed(&self, list: &IpList, var: &str) -> Result<(), ApiError> {
        match self.client_ip {
            Some(ip) if list.contains(ip) => Ok(()),
            Some(ip) => Err(ApiError::Forbidden(format!("source address {ip} is not in {var}"))),
            None => Err(ApiError::Forbidden("the request has no CF-Connecting-IP, so its source cannot be checked".into())),
        }
    }
}
