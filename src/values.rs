//! What every setting is made of, a leaf that all the others use: the error
//! that names a variable, the lookup through which settings are read, and the
//! parsers of numbers, booleans, allow-lists and signing keys.

use crate::auth::{IpList, Secrets};
use base64::Engine as _;
use std::fmt;

/// Reads a variable or secret; unset and empty are the same (`None`).
pub type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// A variable that is present but unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error in {}: {}", self.var, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A Standard Webhooks signing key (`whsec_<base64>`), decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// A whole non-negative number, or `default` when unset.
pub fn number<T: std::str::FromStr>(get: &Lookup, var: &'static str, default: T) -> Result<T, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError { var, message: format!("{v:?} is not a whole non-negative number") }),
    }
}

/// `true`/`false` (or `1`/`0`, `yes`/`no`, any case), or `default` when unset.
pub fn boolean(get: &Lookup, var: &'static str, default: bool) -> Result<bool, ConfigError> {
    match get(var).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(v) => Err(ConfigError { var, message: format!("{v:?} is not true or false") }),
    }
}

/// An allow-list of addresses and CIDR ranges, or the error naming `var` and its entry.
pub fn ip_list(get: &Lookup, var: &'static str, default: &str) -> Result<IpList, ConfigError> {
    IpList::parse(get(var).as_deref().unwrap_or(default)).map_err(|message| ConfigError { var, message })
}

/// The warning of an allow-list that takes a whole address family.
pub fn whole_family_warning(var: &str, list: &IpList) -> Option<String> {
    list.allows_a_whole_family().then(|| format!("{var} has a /0 entry (or ::ffff:0:0/96): every address of that family is allowed"))
}

/// The keys of a signing secret (`whsec_<base64>`, comma-separated during rotation), read from `var`.
pub fn signing_keys(var: &'static str, raw: Option<&str>) -> Result<Vec<SigningKey>, ConfigError> {
    Secrets::parse(raw)
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let b64 = s.strip_prefix("whsec_").unwrap_or(s);
            base64::engine::general_purpose::STANDARD.decode(b64).ok().filter(|k| !k.is_empty()).map(SigningKey).ok_or_else(|| {
                ConfigError { var, message: format!("value #{} is not whsec_<base64>; generate one with `npm run gen-secret`", i + 1) }
            })
        })
        .collect()
}
