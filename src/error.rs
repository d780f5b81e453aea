//! The errors a provider can meet, and the one place that maps them to HTTP.
//!
//! Validation failures are 4xx (the provider must not retry them); anything
//! that means "we could not take the event right now" is 503, so the provider's
//! own retry covers it. Messages say what went wrong and what to do, and never
//! contain a secret or a payload.

use crate::limits::SIGNED_BODY_MAX_BYTES;
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No such route, provider, page or event: what was not found, and where to look.
    NotFound(String),
    /// The route exists but not for this method; `allow` is the `Allow` header.
    MethodNotAllowed { allow: &'static str },
    /// A missing or wrong token or signature.
    Unauthorized(String),
    /// The source address or its reverse DNS is refused.
    Forbidden(String),
    /// Empty body, invalid JSON, or not this provider's shape.
    BadRequest(String),
    /// The event's own timestamp is outside `MAX_EVENT_AGE_SECONDS`.
    StaleEvent(String),
    /// The body is larger than `MAX_BODY_BYTES`.
    PayloadTooLarge { limit: u64 },
    /// The provider's secret or allow-list is not set, or the configuration is invalid.
    NotConfigured(String),
    /// A queue or storage failure: nothing was enqueued.
    Unavailable(String),
    /// Too many requests from one client address (the console's sign-in, the admin API): what, and when to try again.
    TooManyRequests { what: String, retry_after: u32 },
}

/// `{"error":{"code":…,"message":…}}`
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub message: String,
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::BadRequest(_) | Self::StaleEvent(_) => 400,
            Self::PayloadTooLarge { .. } => 413,
            Self::NotConfigured(_) | Self::Unavailable(_) => 503,
            Self::TooManyRequests { .. } => 429,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::BadRequest(_) => "bad_request",
            Self::StaleEvent(_) => "stale_event",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::NotConfigured(_) => "not_configured",
            Self::Unavailable(_) => "unavailable",
            Self::TooManyRequests { .. } => "rate_limited",
        }
    }

    pub fn body(&self) -> ErrorBody<'static> {
        ErrorBody { error: ErrorDetail { code: self.code(), message: self.to_string() } }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MethodNotAllowed { allow } => write!(f, "this route accepts {allow} only"),
            Self::PayloadTooLarge { limit } => write!(
                f,
                "the body is larger than {limit} bytes (MAX_BODY_BYTES; a body signed over its bytes at most {SIGNED_BODY_MAX_BYTES}); raise MAX_BODY_BYTES if this provider's payloads are legitimately this large"
            ),
            Self::TooManyRequests { what, retry_after } => {
                write!(f, "too many {what} from this address; try again in {retry_after} seconds")
            }
            Self::NotFound(m)
            | Self::Unauthorized(m)
            | Self::Forbidden(m)
            | Self::BadRequest(m)
            | Self::StaleEvent(m)
            | Self::NotConfigured(m)
            | Self::Unavailable(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_the_contract_status_and_code() {
        let cases = [
            (ApiError::NotFound("x".into()), 404, "not_found"),
            (ApiError::MethodNotAllowed { allow: "POST" }, 405, "method_not_allowed"),
            (ApiError::Unauthorized("x".into()), 401, "unauthorized"),
            (ApiError::Forbidden("x".into()), 403, "forbidden"),
            (ApiError::BadRequest("x".into()), 400, "bad_request"),
            (ApiError::StaleEvent("x".into()), 400, "stale_event"),
            (ApiError::PayloadTooLarge { limit: 1 }, 413, "payload_too_large"),
            (ApiError::NotConfigured("x".into()), 503, "not_configured"),
            (ApiError::Unavailable("x".into()), 503, "unavailable"),
            (ApiError::TooManyRequests { what: "sign-ins".into(), retry_after: 60 }, 429, "rate_limited"),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status(), e.code()), (status, code));
            let json = serde_json::to_value(e.body()).unwrap();
            assert_eq!(json["error"]["code"], code);
            assert!(!json["error"]["message"].as_str().unwrap().is_empty());
        }
    }
}
