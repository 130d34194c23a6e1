//! Cloud errors: the `{error, retryAfterMs?, verdict?}` body and transport
//! failures, classified into whether and when to retry.

use std::time::Duration;

use serde::Deserialize;

/// The client error kinds of upstream's adapter, by status or transport failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudErrorKind {
    Unauthorized,
    Forbidden,
    PaymentRequired,
    NotFound,
    Conflict,
    RateLimited,
    Server,
    Http,
    Network,
    Timeout,
    Parse,
    Request,
    Sse,
}

impl CloudErrorKind {
    pub fn from_status(status: u16) -> Self {
        match status {
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            402 => Self::PaymentRequired,
            404 => Self::NotFound,
            409 => Self::Conflict,
            429 => Self::RateLimited,
            500.. => Self::Server,
            _ => Self::Http,
        }
    }
}

/// A failed Cloud call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Cloud {kind:?} error{}: {message}", status.map(|s| format!(" {s}")).unwrap_or_default())]
pub struct CloudError {
    pub kind: CloudErrorKind,
    /// HTTP status, or `None` for a transport failure.
    pub status: Option<u16>,
    /// Cloud's `error` text, or the transport error. Never holds the service token.
    pub message: String,
    /// `retryAfterMs` from the body, else the `retry-after` header.
    pub retry_after: Option<Duration>,
    /// `verdict.policyCode`, when Cloud gave one.
    pub policy_code: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "retryAfterMs")]
    retry_after_ms: Option<f64>,
    #[serde(default)]
    verdict: Option<Verdict>,
}

#[derive(Deserialize)]
struct Verdict {
    #[serde(default, rename = "policyCode")]
    policy_code: Option<String>,
}

impl CloudError {
    pub fn transport(kind: CloudErrorKind, message: impl Into<String>) -> Self {
        Self { kind, status: None, message: message.into(), retry_after: None, policy_code: None }
    }

    /// From a non-2xx response: its status, body and `retry-after` header.
    pub fn from_response(status: u16, body: &[u8], retry_after_header: Option<&str>) -> Self {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let header_delay =
            retry_after_header.and_then(|v| crate::net::retry_after::parse_retry_after(v, crate::time::now_ms()));
        let body_delay = parsed
            .as_ref()
            .and_then(|b| b.retry_after_ms)
            .filter(|ms| ms.is_finite() && *ms > 0.0)
            .map(|ms| Duration::from_millis(ms.ceil() as u64));
        let message =
            parsed.as_ref().and_then(|b| b.error.clone()).unwrap_or_else(|| format!("Cloud answered HTTP {status}."));
        Self {
            kind: CloudErrorKind::from_status(status),
            status: Some(status),
            message,
            retry_after: body_delay.or(header_delay),
            policy_code: parsed.and_then(|b| b.verdict).and_then(|v| v.policy_code),
        }
    }

    /// Worth retrying: network trouble, timeouts, 5xx, 429 and other transient kinds.
    /// 401/403 and other 4xx are not: retrying cannot fix them.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            CloudErrorKind::Network
                | CloudErrorKind::Timeout
                | CloudErrorKind::Server
                | CloudErrorKind::RateLimited
                | CloudErrorKind::Sse
        ) || (self.kind == CloudErrorKind::Http && self.status.is_some_and(|s| s == 408))
    }

    /// The service token is rejected or lacks a grant: an operator must act.
    pub fn is_auth(&self) -> bool {
        matches!(self.kind, CloudErrorKind::Unauthorized | CloudErrorKind::Forbidden)
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == CloudErrorKind::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_error_body_and_retry_hints() {
        let body = br#"{"error":"Too many cloud requests. Try again later.","retryAfterMs":48666,"verdict":{"allowed":false,"policyCode":"rate_limit.http_exceeded"}}"#;
        let error = CloudError::from_response(429, body, Some("49"));
        assert_eq!(error.kind, CloudErrorKind::RateLimited);
        assert_eq!(
            error.retry_after,
            Some(Duration::from_millis(48_666)),
            "the body's milliseconds beat the header's seconds"
        );
        assert_eq!(error.policy_code.as_deref(), Some("rate_limit.http_exceeded"));
        assert!(error.is_retryable());

        let header_only = CloudError::from_response(429, b"{}", Some("2"));
        assert_eq!(header_only.retry_after, Some(Duration::from_secs(2)));

        let auth = CloudError::from_response(401, br#"{"error":"Cloud API token is invalid or expired."}"#, None);
        assert!(auth.is_auth() && !auth.is_retryable());
        assert_eq!(auth.message, "Cloud API token is invalid or expired.");

        assert!(CloudError::from_response(503, b"not json", None).is_retryable());
        assert!(!CloudError::from_response(400, b"{}", None).is_retryable());
        assert!(!CloudError::from_response(409, b"{}", None).is_retryable());
        assert!(CloudError::transport(CloudErrorKind::Network, "refused").is_retryable());
    }
}
