//! Outbound delivery: one signed JSON `POST` per operation to the relay's `deliveryUrl`, through
//! the URL policy (and a fresh, pinned DNS answer) on every call, bounded by the attempt timeout.
//!
//! One attempt per call, no retry and no circuit breaker here: a failure comes back as a typed
//! [`SendError`] (transient for 5xx, network errors and timeouts; rate limited with the relay's
//! `Retry-After` for 429; permanent for the rest), and the layer that owns retries acts on it as
//! for every other channel. The delivery dispatcher paces a rate limit, retries a transient
//! failure through Cloud with backoff and counts it toward the channel's circuit breaker; the
//! session renderer retries its edits and buttons in place.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::signature::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::channel::{SendError, SendErrorKind};
use crate::config::Secret;
use crate::net::url_policy::{resolve_pinned, DeliveryUrl, PinnedClient, Resolver, UrlPolicy};

/// The largest relay answer read; a relay has no reason to send more than a message id.
pub const MAX_RESPONSE_BYTES: usize = 65_536;
const DELIVERY_ID_HEADER: &str = "x-open-cowork-gateway-delivery-id";
/// The wait when a relay answers 429 without a usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Bounds one attempt, DNS resolution included, when the configuration gives no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(15_000);

/// Why a delivery failed; the text is upstream's, which relays and operators may match on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("Webhook delivery timed out after {0}ms")]
    Timeout(u128),
    #[error("Webhook delivery network error")]
    Network,
    #[error("Webhook delivery failed: {status}")]
    Status { status: u16, retry_after: Option<Duration> },
    /// A URL-policy refusal: permanent.
    #[error("{0}")]
    Policy(&'static str),
    /// An answer the gateway cannot use (too large, a bad `messageId`): permanent.
    #[error("{0}")]
    Body(String),
    /// The relay's certificate (or the TLS handshake) was refused: retrying cannot help until
    /// the operator trusts the relay's CA (`OPEN_COWORK_GATEWAY_CA_FILE`) or fixes its
    /// certificate, so it is permanent.
    #[error("Webhook delivery TLS failure: {0}")]
    Tls(String),
}

/// What a failed request was: a TLS refusal anywhere in its causes, else a network error.
fn request_failure(error: &(dyn std::error::Error + 'static)) -> DeliveryError {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return DeliveryError::Tls(tls.to_string());
        }
        // An I/O error wraps the error it carries (the handshake's) rather than naming it as
        // its source.
        let carried = current.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        cause = match carried {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    DeliveryError::Network
}

impl DeliveryError {
    /// Timeouts, network errors, 429 and 5xx: worth another attempt.
    fn retryable(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Network => true,
            Self::Status { status, .. } => *status == 429 || (500..600).contains(status),
            _ => false,
        }
    }

    /// The channel's view: rate limited with the relay's delay (a 429 is pacing, never a
    /// failure the circuit counts), transient, or permanent.
    pub fn into_send_error(self) -> SendError {
        let kind = match &self {
            Self::Status { status: 429, retry_after } => {
                SendErrorKind::RateLimited(retry_after.unwrap_or(DEFAULT_RETRY_AFTER).min(Duration::from_secs(3600)))
            }
            error if error.retryable() => SendErrorKind::Transient,
            _ => SendErrorKind::Permanent,
        };
        SendError { kind, message: self.to_string() }
    }
}

/// Posts operations to one relay.
pub struct Outbound {
    pub url: DeliveryUrl,
    pub policy: UrlPolicy,
    secret: Secret,
    resolver: Rc<dyn Resolver>,
    client: PinnedClient,
    /// Bounds each attempt, DNS resolution included.
    timeout: Duration,
}

impl Outbound {
    pub fn new(
        url: DeliveryUrl,
        policy: UrlPolicy,
        secret: Secret,
        resolver: Rc<dyn Resolver>,
        timeout: Duration,
    ) -> Result<Self, String> {
        Ok(Self { url, policy, secret, resolver, client: PinnedClient::new()?, timeout })
    }

    /// Trusts the certificates of `ca_file` besides the public roots.
    pub fn trust_ca_file(&mut self, ca_file: &std::path::Path) -> Result<(), String> {
        self.client = PinnedClient::with_ca_file(ca_file)?;
        Ok(())
    }

    /// One operation, one attempt: `body` is the exact JSON sent, signed now.
    pub async fn deliver(&self, body: Bytes, delivery_id: &str) -> Result<Value, DeliveryError> {
        tokio::time::timeout(self.timeout, self.attempt(body, delivery_id))
            .await
            .unwrap_or(Err(DeliveryError::Timeout(self.timeout.as_millis())))
    }

    /// One attempt: resolve and check, pin, sign, post, read a bounded answer.
    async fn attempt(&self, body: Bytes, delivery_id: &str) -> Result<Value, DeliveryError> {
        let address = resolve_pinned(&self.url, &self.policy, self.resolver.as_ref()).await.map_err(|refusal| {
            if refusal.temporary {
                DeliveryError::Network
            } else {
                DeliveryError::Policy(refusal.message)
            }
        })?;
        let timestamp = (crate::time::now_ms() / 1000).to_string();
        let signature = sign(self.secret.expose(), &timestamp, &body);
        let request = http::Request::post(self.url.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_ID_HEADER, delivery_id)
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, signature)
            .header(http::header::CONNECTION, "close")
            .body(Full::new(body))
            .map_err(|_| DeliveryError::Policy("Webhook delivery URL is not a valid URL"))?;
        let response = self.client.send(&self.url, address, request).await.map_err(|e| request_failure(&e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = crate::net::retry_after::from_headers(response.headers());
            return Err(DeliveryError::Status { status, retry_after });
        }
        let too_large =
            || DeliveryError::Body(format!("Webhook delivery response cannot exceed {MAX_RESPONSE_BYTES} bytes"));
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > MAX_RESPONSE_BYTES as u64) {
            return Err(too_large());
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| DeliveryError::Network)?;
            if let Some(data) = frame.data_ref() {
                if bytes.len() + data.len() > MAX_RESPONSE_BYTES {
                    return Err(too_large());
                }
                bytes.extend_from_slice(data);
            }
        }
        Ok(serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| Value::Object(Default::default())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_classes_follow_the_spec() {
        let kind = |e: DeliveryError| e.into_send_error().kind;
        assert_eq!(kind(DeliveryError::Network), SendErrorKind::Transient);
        assert_eq!(kind(DeliveryError::Timeout(100)), SendErrorKind::Transient);
        assert_eq!(kind(DeliveryError::Status { status: 503, retry_after: None }), SendErrorKind::Transient);
        assert_eq!(
            kind(DeliveryError::Status { status: 429, retry_after: Some(Duration::from_secs(3)) }),
            SendErrorKind::RateLimited(Duration::from_secs(3))
        );
        assert_eq!(kind(DeliveryError::Status { status: 404, retry_after: None }), SendErrorKind::Permanent);
        assert_eq!(kind(DeliveryError::Status { status: 302, retry_after: None }), SendErrorKind::Permanent);
        assert_eq!(kind(DeliveryError::Policy("x")), SendErrorKind::Permanent);
        assert_eq!(
            kind(DeliveryError::Status { status: 429, retry_after: None }),
            SendErrorKind::RateLimited(DEFAULT_RETRY_AFTER)
        );
        assert_eq!(kind(DeliveryError::Tls("unknown issuer".into())), SendErrorKind::Permanent);
        assert_eq!(DeliveryError::Timeout(100).to_string(), "Webhook delivery timed out after 100ms");
    }
}
