//! The Slack Web API client on the shared HTTPS client: `POST <base>/<method>`
//! with the bot token as a bearer header. The token is in a header, never in a URL, so URLs may
//! be logged; errors name only the method and Slack's error code.
//!
//! Errors are typed, not classified from text as upstream did: HTTP 429 or `ratelimited` waits
//! exactly `Retry-After`; 5xx, Slack's own `internal_error`-family codes and transport failures are
//! transient; every other `ok: false` (`channel_not_found`, `not_in_channel`, `invalid_auth`, …) is
//! permanent.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value};

use crate::channel::pacing::SendPacer;
use crate::channel::{SendError, SendErrorKind};
use crate::config::Secret;
use crate::net::https::HttpsClient;

/// Web API answers larger than this are refused (message answers are a few kilobytes).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// The wait when Slack rate-limits without a usable `Retry-After` (it always sends one).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(3);
/// Channels whose posting pace is remembered at once.
const PACED_KEYS: usize = 4096;

/// Slack's per-method rate tiers, kept before it has to answer 429: posting about one message a
/// second per channel, `chat.update` Tier 3 (about 50 a minute), the file upload methods Tier 2
/// (about 20 a minute). Other methods (`auth.test`) are rare and not paced.
fn paced(method: &str, body: &Value) -> Option<(String, Duration)> {
    let channel = || body.get("channel").and_then(Value::as_str).unwrap_or("");
    match method {
        "chat.postMessage" | "chat.postEphemeral" => Some((format!("post:{}", channel()), Duration::from_secs(1))),
        "chat.update" => Some(("chat.update".to_owned(), Duration::from_millis(1200))),
        _ if method.starts_with("files.") => Some(("files".to_owned(), Duration::from_secs(3))),
        _ => None,
    }
}

/// Codes that mean "Slack had a problem, try again" rather than "this request is wrong".
const TRANSIENT_CODES: [&str; 4] = ["internal_error", "fatal_error", "service_unavailable", "request_timeout"];
/// Codes that mean the token itself no longer works: sending stops until it is replaced.
const AUTH_CODES: [&str; 5] = ["invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"];

/// A failed Web API call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// Slack answered, with a non-2xx status or `ok: false`.
    #[error("Slack API {method} failed: {}", if error.is_empty() { status.to_string() } else { error.clone() })]
    Api { method: &'static str, status: u16, error: String, retry_after: Option<Duration> },
    /// Transport failure, timeout, or an answer that could not be read.
    #[error("Slack API {method} failed: {detail}")]
    Network { method: &'static str, detail: &'static str },
}

impl SlackError {
    /// Slack's error code (`channel_not_found`), empty for transport failures.
    pub fn code(&self) -> &str {
        match self {
            Self::Api { error, .. } => error,
            Self::Network { .. } => "",
        }
    }

    pub fn is_rate_limit(&self) -> bool {
        matches!(self, Self::Api { status: 429, .. }) || self.code() == "ratelimited"
    }

    /// The token was refused: retrying with it cannot help.
    pub fn is_auth(&self) -> bool {
        AUTH_CODES.contains(&self.code())
    }

    /// How the dispatcher and the renderer should treat this failure.
    pub fn kind(&self) -> SendErrorKind {
        match self {
            Self::Api { retry_after, .. } if self.is_rate_limit() => {
                SendErrorKind::RateLimited(retry_after.unwrap_or(DEFAULT_RETRY_AFTER))
            }
            Self::Api { status, error, .. } if *status >= 500 || TRANSIENT_CODES.contains(&error.as_str()) => {
                SendErrorKind::Transient
            }
            Self::Api { .. } => SendErrorKind::Permanent,
            Self::Network { .. } => SendErrorKind::Transient,
        }
    }
}

impl From<SlackError> for SendError {
    fn from(error: SlackError) -> Self {
        SendError { kind: error.kind(), message: error.to_string() }
    }
}

/// One bot token's view of the Web API.
pub struct WebApi {
    http: HttpsClient,
    /// `https://slack.com/api` or the fake of the tests, without a trailing `/`.
    base: String,
    token: Secret,
    timeout: Duration,
    /// Calls wait for their slot of the method's tier.
    pacer: SendPacer,
}

impl WebApi {
    pub fn new(http: HttpsClient, base: &str, token: Secret, timeout: Duration) -> Self {
        let pacer = SendPacer::new(Duration::ZERO, PACED_KEYS);
        Self { http, base: base.trim_end_matches('/').to_owned(), token, timeout, pacer }
    }

    /// A JSON call (`chat.postMessage`, `chat.update`, `auth.test`, …), after its tier's pace.
    pub async fn call(&self, method: &'static str, body: &Value) -> Result<Value, SlackError> {
        if let Some((key, interval)) = paced(method, body) {
            self.pacer.wait(&key, interval).await;
        }
        let bytes = serde_json::to_vec(body).map_err(|_| SlackError::Network { method, detail: "unencodable body" })?;
        let url = format!("{}/{method}", self.base);
        self.send(method, &url, Some("application/json; charset=utf-8"), Bytes::from(bytes), true).await
    }

    /// A form call (`files.getUploadURLExternal` takes form fields, not JSON).
    pub async fn call_form(&self, method: &'static str, fields: &[(&str, &str)]) -> Result<Value, SlackError> {
        if let Some((key, interval)) = paced(method, &Value::Null) {
            self.pacer.wait(&key, interval).await;
        }
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let url = format!("{}/{method}", self.base);
        self.send(method, &url, Some("application/x-www-form-urlencoded"), Bytes::from(body), true).await
    }

    /// The raw bytes of a file to the upload URL Slack handed out; that URL is itself the
    /// credential, so the bot token is not sent. Only HTTPS, or plain HTTP when the API base is
    /// plain HTTP (the loopback fake of the tests).
    pub async fn upload(&self, url: &str, data: &[u8]) -> Result<(), SlackError> {
        const METHOD: &str = "file upload";
        let allowed = url.starts_with("https://") || (url.starts_with("http://") && self.base.starts_with("http://"));
        if !allowed {
            return Err(SlackError::Network { method: METHOD, detail: "the upload URL is not HTTPS" });
        }
        self.send(METHOD, url, None, Bytes::copy_from_slice(data), false).await.map(drop)
    }

    async fn send(
        &self,
        method: &'static str,
        url: &str,
        content_type: Option<&str>,
        body: Bytes,
        api: bool,
    ) -> Result<Value, SlackError> {
        let mut request = Request::builder().method(Method::POST).uri(url);
        if api {
            request = request.header(AUTHORIZATION, format!("Bearer {}", self.token.expose()));
        }
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let request =
            request.body(Full::new(body)).map_err(|_| SlackError::Network { method, detail: "invalid request URL" })?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|_| SlackError::Network { method, detail: "network error" })?;
            let status = response.status().as_u16();
            let retry_after = crate::net::retry_after::from_headers(response.headers());
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|_| SlackError::Network { method, detail: "unreadable answer" })?
                .to_bytes();
            // Anything that is not a JSON object counts as `{}`, as upstream; the upload URL answers
            // plain text.
            let parsed: Map<String, Value> = serde_json::from_slice(&bytes).unwrap_or_default();
            let ok_status = (200..300).contains(&status);
            if ok_status && (!api || parsed.get("ok") != Some(&Value::Bool(false))) {
                return Ok(Value::Object(parsed));
            }
            let error = parsed.get("error").and_then(Value::as_str).unwrap_or("").to_owned();
            Err(SlackError::Api { method, status, error, retry_after })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(SlackError::Network { method, detail: "request timed out" }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, error: &str, retry_after: Option<u64>) -> SlackError {
        SlackError::Api {
            method: "chat.postMessage",
            status,
            error: error.into(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn methods_are_paced_by_their_tier() {
        let body = serde_json::json!({"channel": "C1"});
        assert_eq!(paced("chat.postMessage", &body), Some(("post:C1".to_owned(), Duration::from_secs(1))));
        assert_eq!(paced("chat.update", &body).map(|(_, i)| i), Some(Duration::from_millis(1200)));
        assert_eq!(paced("files.getUploadURLExternal", &Value::Null).map(|(_, i)| i), Some(Duration::from_secs(3)));
        assert_eq!(paced("auth.test", &Value::Null), None);
    }

    #[test]
    fn errors_are_classified_from_their_data() {
        assert_eq!(api(429, "ratelimited", Some(7)).kind(), SendErrorKind::RateLimited(Duration::from_secs(7)));
        assert_eq!(api(200, "ratelimited", None).kind(), SendErrorKind::RateLimited(DEFAULT_RETRY_AFTER));
        for permanent in ["channel_not_found", "not_in_channel", "invalid_auth", "msg_too_long", "invalid_blocks"] {
            assert_eq!(api(200, permanent, None).kind(), SendErrorKind::Permanent, "{permanent}");
        }
        assert_eq!(api(503, "", None).kind(), SendErrorKind::Transient);
        assert_eq!(api(200, "internal_error", None).kind(), SendErrorKind::Transient);
        assert_eq!(SlackError::Network { method: "auth.test", detail: "x" }.kind(), SendErrorKind::Transient);
        assert_eq!(
            api(200, "channel_not_found", None).to_string(),
            "Slack API chat.postMessage failed: channel_not_found"
        );
        assert_eq!(api(502, "", None).to_string(), "Slack API chat.postMessage failed: 502");
        assert!(api(200, "token_revoked", None).is_auth());
    }
}
