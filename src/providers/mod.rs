//! The sources: one module each, implementing `Source` (everything about
//! itself), and one registry line each (`registry!`), from which the provider
//! list, routes, `/healthz`, settings, the registry's JSON (`registry.rs`) and
//! every dispatch are derived. Nothing here knows KV, queues or HTTP, nor the
//! rest of the configuration: each source is given its own settings.
//!
//! A seventh source is a module here, one line in `registry!`, and its fixtures.

pub mod adm_tools;
pub mod email_routing;
pub mod improvmx;
pub mod inbound;
pub mod mail_plus;
pub mod maileroo;
pub mod mailtura;
pub mod payload;
pub mod registry;

pub use inbound::{Inbound, SmtpEnvelope};

use crate::auth::{token_matches, verify_hex_hmac, Secrets};
use crate::error::ApiError;
use crate::event::{Event, EventType};
use crate::large::LargePath;
use crate::limits::SIGNED_BODY_MAX_BYTES;
use crate::values::{ConfigError, Lookup};
use serde::Serialize;
use std::net::IpAddr;

/// What a source of events declares about itself. Everything about one
/// provider lives in its module's implementation: its name (the route),
/// event types, authentication (and so its replay window), settings with
/// their validation and setup message, and normalisation. The registry
/// (`registry!` below) is the one list of sources; the rest is derived.
pub trait Source {
    /// The route segment (`/webhooks/{NAME}`), the `source` suffix and `data.provider`.
    const NAME: &'static str;
    /// How people write its name (`adm.tools`), for messages.
    const TITLE: &'static str;
    /// Every type its events can have (destination filters are checked against it).
    const EVENT_TYPES: &'static [EventType];
    /// How its requests are authenticated. A token or signing secret is named
    /// there only: the registry declares it as a setting and reads its values.
    const AUTH: Auth;
    /// For `Auth::Token` and `Auth::SignedBody`: where its value comes from
    /// (the setup message says "set SECRET to {SETUP}").
    const SETUP: &'static str = "";
    /// Request headers it reads besides its authentication's (`Inbound::header`).
    const HEADERS: &'static [&'static str] = &[];
    /// Strings of its payload that may be large: normalised as markers, never copied (see `large`).
    const LARGE_PATHS: &'static [LargePath] = &[];
    /// Its variables and secrets other than `AUTH`'s (the README's configuration table and `.dev.vars.example` list each).
    const SETTINGS: &'static [Setting];
    /// Its settings, parsed and validated.
    type Settings: std::fmt::Debug + Clone;
    /// Reads its settings through `get` (unset and empty are the same); a bad value names its variable.
    fn settings(get: &Lookup) -> Result<Self::Settings, ConfigError>;
    /// `None` when requests can be authenticated, or what to set (its setup message),
    /// beyond `AUTH`'s secret, which the registry checks.
    fn missing(_s: &Self::Settings) -> Option<String> {
        None
    }
    /// Valid settings that an operator should look at twice (`/healthz` `warnings`).
    fn warnings(_s: &Self::Settings) -> Vec<String> {
        Vec::new()
    }
    /// A reverse-DNS check the edge must make before `authenticate_head`, if this request needs one.
    fn rdns_check(_s: &Self::Settings, _req: &Inbound) -> Option<RdnsCheck> {
        None
    }
    /// What is checked before the body is read beyond `AUTH`'s token or
    /// signature header (which the registry checks): the source address.
    fn authenticate_head(_s: &Self::Settings, _req: &Inbound) -> Result<(), ApiError> {
        Ok(())
    }
    /// For a source whose input is not its JSON payload (`Auth::Platform`: raw
    /// mail), that payload, made from `req.body`; the pipeline then runs on it
    /// (its large strings as markers, its bytes stored for a large event).
    fn payload(_s: &Self::Settings, _req: &Inbound) -> Result<Option<Vec<u8>>, ApiError> {
        Ok(None)
    }
    /// The canonical events, and for `Auth::SignedBody` the signed payload's own time.
    fn normalise(s: &Self::Settings, req: &Inbound) -> Result<Normalised, ApiError>;
    /// For mail the platform hands over: the address a copy of each message is forwarded to.
    fn forward_to(_s: &Self::Settings) -> Option<&str> {
        None
    }
}

/// How a source's requests are authenticated (in the registry's JSON as `{"kind": …}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Auth {
    /// A shared token in `header`, any value of the secret `secret`, compared in constant time before the body is read.
    Token { header: &'static str, secret: &'static str },
    /// The source address (`CF-Connecting-IP`) is in the allow-list `allow_list`
    /// (or, as the source's settings say, passes its reverse-DNS check), before the body is read.
    SourceAddress { allow_list: &'static str },
    /// A hex HMAC-SHA256 of the raw body in `header`, with any value of the secret `secret`.
    /// The payload's own time (`time_field`, which `normalise` returns) must be within
    /// `MAX_EVENT_AGE_SECONDS`: the pipeline checks it, so no signed source can skip its replay window.
    SignedBody { header: &'static str, secret: &'static str, time_field: &'static str },
    /// Handed over by the platform itself (Email Routing's `email` handler),
    /// not posted: no route, so nothing for a sender to authenticate as. What
    /// a sender wrote in the message is checked by the source (its auth verdicts).
    Platform,
}

impl Auth {
    /// The secret whose values authenticate a request (a token or an HMAC key), if any.
    pub fn secret(self) -> Option<&'static str> {
        match self {
            Auth::Token { secret, .. } | Auth::SignedBody { secret, .. } => Some(secret),
            Auth::SourceAddress { .. } | Auth::Platform => None,
        }
    }

    /// The request header that carries the token or signature, if any.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Auth::Token { header, .. } | Auth::SignedBody { header, .. } => Some(header),
            Auth::SourceAddress { .. } | Auth::Platform => None,
        }
    }
}

/// A variable or secret of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub name: &'static str,
    pub secret: bool,
}

impl Setting {
    pub const fn var(name: &'static str) -> Self {
        Setting { name, secret: false }
    }

    pub const fn secret(name: &'static str) -> Self {
        Setting { name, secret: true }
    }
}

/// A reverse-DNS check of the client address: its PTR must be a name under
/// `suffix` that resolves back to it (over the DoH JSON API at `doh_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdnsCheck {
    pub ip: IpAddr,
    pub suffix: String,
    pub doh_url: String,
}

/// What `Source::normalise` returns.
#[derive(Debug)]
pub struct Normalised {
    pub events: Vec<Event>,
    /// The payload's own time, Unix seconds (what `Auth::SignedBody`'s replay window checks).
    pub time: Option<i64>,
}

impl Normalised {
    pub fn new(events: Vec<Event>) -> Self {
        Normalised { events, time: None }
    }
}

macro_rules! count {
    () => { 0usize };
    ($x:ident $($rest:ident)*) => { 1usize + count!($($rest)*) };
}

/// The one list of sources: a variant of `Provider` and a field of
/// `Settings` each, and every dispatch from one to its module.
macro_rules! registry {
    ($($variant:ident => $module:ident :: $source:ident),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Provider {
            $($variant),*
        }

        /// Every source's settings, and the values of each one's token or signing secret.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $(pub $module: <$module::$source as Source>::Settings,)*
            secrets: [Secrets; count!($($variant)*)],
        }

        impl Settings {
            pub fn from_lookup(get: &Lookup) -> Result<Self, ConfigError> {
                let secret = |auth: Auth| Secrets::parse(auth.secret().and_then(|name| get(name)).as_deref());
                Ok(Settings {
                    $($module: <$module::$source as Source>::settings(get)?,)*
                    secrets: [$(secret(<$module::$source as Source>::AUTH)),*],
                })
            }

            /// The values of `p`'s token or signing secret (empty for a source without one).
            pub fn secrets(&self, p: Provider) -> &Secrets {
                &self.secrets[p as usize]
            }
        }

        impl Provider {
            pub const ALL: [Provider; count!($($variant)*)] = [$(Provider::$variant),*];

            /// The route segment, `source` suffix and `data.provider` value.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => <$module::$source as Source>::NAME),* }
            }

            /// How people write its name, for messages.
            pub fn title(self) -> &'static str {
                match self { $(Self::$variant => <$module::$source as Source>::TITLE),* }
            }

            /// Every event type the provider's events can have.
            pub fn event_types(self) -> &'static [EventType] {
                match self { $(Self::$variant => <$module::$source as Source>::EVENT_TYPES),* }
            }

            pub fn auth(self) -> Auth {
                match self { $(Self::$variant => <$module::$source as Source>::AUTH),* }
            }

            fn setup(self) -> &'static str {
                match self { $(Self::$variant => <$module::$source as Source>::SETUP),* }
            }

            /// Request headers it reads besides its authentication's.
            fn own_headers(self) -> &'static [&'static str] {
                match self { $(Self::$variant => <$module::$source as Source>::HEADERS),* }
            }

            pub fn large_paths(self) -> &'static [LargePath] {
                match self { $(Self::$variant => <$module::$source as Source>::LARGE_PATHS),* }
            }

            fn own_settings(self) -> &'static [Setting] {
                match self { $(Self::$variant => <$module::$source as Source>::SETTINGS),* }
            }

            fn own_missing(self, s: &Settings) -> Option<String> {
                match self { $(Self::$variant => <$module::$source as Source>::missing(&s.$module)),* }
            }

            pub fn warnings(self, s: &Settings) -> Vec<String> {
                match self { $(Self::$variant => <$module::$source as Source>::warnings(&s.$module)),* }
            }

            /// The reverse-DNS check the edge must make before `authenticate_head`, if any.
            pub fn rdns_check(self, s: &Settings, req: &Inbound) -> Option<RdnsCheck> {
                match self { $(Self::$variant => <$module::$source as Source>::rdns_check(&s.$module, req)),* }
            }

            fn own_head(self, s: &Settings, req: &Inbound) -> Result<(), ApiError> {
                match self { $(Self::$variant => <$module::$source as Source>::authenticate_head(&s.$module, req)),* }
            }

            /// The payload made from the input, for a source whose input is not its payload.
            pub fn payload(self, s: &Settings, req: &Inbound) -> Result<Option<Vec<u8>>, ApiError> {
                match self { $(Self::$variant => <$module::$source as Source>::payload(&s.$module, req)),* }
            }

            /// Where a copy of each message goes (mail the platform hands over), if anywhere.
            pub fn forward_to(self, s: &Settings) -> Option<&str> {
                match self { $(Self::$variant => <$module::$source as Source>::forward_to(&s.$module)),* }
            }

            pub fn normalise(self, s: &Settings, req: &Inbound) -> Result<Normalised, ApiError> {
                match self { $(Self::$variant => <$module::$source as Source>::normalise(&s.$module, req)),* }
            }
        }
    };
}

registry! {
    MailPlus => mail_plus::MailPlus,
    Mailtura => mailtura::Mailtura,
    Maileroo => maileroo::Maileroo,
    ImprovMx => improvmx::ImprovMx,
    AdmTools => adm_tools::AdmTools,
    EmailRouting => email_routing::EmailRouting,
}

impl Provider {
    /// The source named `name`, whichever way its events come (filters, the event log).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// The provider of `/webhooks/{route}` (a source the platform feeds has no route).
    pub fn from_route(route: &str) -> Option<Self> {
        Self::from_name(route).filter(|p| p.posts())
    }

    /// True when its events are posted to `/webhooks/{name}`; false when the platform hands them over.
    pub fn posts(self) -> bool {
        self.auth() != Auth::Platform
    }

    /// The source of mail that the platform hands to the Worker's `email` handler.
    pub fn email_handler() -> Option<Self> {
        Self::ALL.iter().copied().find(|p| !p.posts())
    }

    /// Its variables and secrets: its own, and its authentication's secret.
    pub fn settings(self) -> Vec<Setting> {
        self.auth().secret().map(Setting::secret).into_iter().chain(self.own_settings().iter().copied()).collect()
    }

    /// The request headers the core reads of this source's requests (spelled
    /// as the provider documents them; names are case-insensitive): the edge
    /// takes these and no others. None for mail, which comes as no request.
    pub fn request_headers(self) -> Vec<&'static str> {
        if !self.posts() {
            return Vec::new();
        }
        let mut names = vec!["content-length", "transfer-encoding", "cf-connecting-ip"];
        names.extend(self.auth().header());
        names.extend(self.own_headers());
        names
    }

    /// `None` when the provider can authenticate requests, or what to set.
    pub fn missing_config(self, s: &Settings) -> Option<String> {
        match self.auth().secret() {
            Some(secret) if s.secrets(self).is_empty() => {
                Some(format!("{} is not configured: set {secret} (`wrangler secret put {secret}`) to {}", self.title(), self.setup()))
            }
            _ => self.own_missing(s),
        }
    }

    /// What is checked before the body is read (`req.body` is empty here):
    /// the source address, the token, that a signature is present. A request
    /// that fails it costs no body buffering.
    pub fn authenticate_head(self, s: &Settings, req: &Inbound) -> Result<(), ApiError> {
        match self.auth() {
            Auth::Token { header, secret } => {
                let token = req.header(header).ok_or_else(|| {
                    ApiError::Unauthorized(format!("the {header} header is missing; {} sends it with every request", self.title()))
                })?;
                if !token_matches(s.secrets(self), token.trim()) {
                    return Err(ApiError::Unauthorized(format!("{header} does not match {secret}; set {secret} to {}", self.setup())));
                }
            }
            Auth::SignedBody { header, .. } => {
                signature(req, header)?;
            }
            Auth::SourceAddress { .. } | Auth::Platform => {}
        }
        self.own_head(s, req)
    }

    /// True when `authenticate_head` is the whole authentication (source
    /// address or token), so the body is only read from a known sender.
    pub fn authenticated_before_body(self) -> bool {
        !matches!(self.auth(), Auth::SignedBody { .. })
    }

    /// The largest body taken: `max_body_bytes` (`MAX_BODY_BYTES`), but at most
    /// `SIGNED_BODY_MAX_BYTES` where the signature can only be checked once
    /// the whole body is read (anyone can make mailhook read that much).
    pub fn body_limit(self, max_body_bytes: u64) -> u64 {
        if self.authenticated_before_body() {
            max_body_bytes
        } else {
            max_body_bytes.min(SIGNED_BODY_MAX_BYTES)
        }
    }

    /// The whole authentication, body included: for a signed source, the HMAC of the body.
    pub fn authenticate(self, s: &Settings, req: &Inbound) -> Result<(), ApiError> {
        self.authenticate_head(s, req)?;
        match self.auth() {
            Auth::SignedBody { header, secret, .. } => {
                if verify_hex_hmac(s.secrets(self), req.body, signature(req, header)?) {
                    Ok(())
                } else {
                    Err(ApiError::Unauthorized(format!(
                        "{header} does not match an HMAC-SHA256 of the raw body with {secret}; check that the secret is the provider's current one"
                    )))
                }
            }
            Auth::Token { .. } | Auth::SourceAddress { .. } | Auth::Platform => Ok(()),
        }
    }
}

/// The signature in `header`, or 401 when it is missing or empty.
fn signature<'a>(req: &Inbound<'a>, header: &str) -> Result<&'a str, ApiError> {
    // Some senders prefix the algorithm, as in `sha256=…`.
    req.header(header)
        .map(|s| s.trim())
        .map(|s| s.strip_prefix("sha256=").unwrap_or(s))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::Unauthorized(format!("the {header} header is missing; the provider signs every request with it")))
}
