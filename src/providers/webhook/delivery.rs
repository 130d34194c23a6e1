//! Outbound delivery (docs/webhook-protocol.md): one signed JSON `POST` per operation to the relay's
//! `deliveryUrl`, through the URL policy before every attempt, retried for 429 (honouring
//! `Retry-After` up to the maximum delay), 5xx, network errors and timeouts, and guarded by a
//! circuit breaker that opens after consecutive failed operations and half-opens by itself.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::time::Instant;

use super::signature::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::channel::{HealthReporter, SendError, SendErrorKind};
use crate::config::Secret;
use crate::net::backoff::RetryPolicy;
use crate::net::retry_after::parse_retry_after;
use crate::net::url_policy::{resolve_pinned, DeliveryUrl, PinnedClient, Resolver, UrlPolicy};

/// The largest relay answer read; a relay has no reason to send more than a message id.
pub const MAX_RESPONSE_BYTES: usize = 65_536;
pub const DELIVERY_ID_HEADER: &str = "x-open-cowork-gateway-delivery-id";
/// The wait when a relay answers 429 without a usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The retry and circuit knobs (test seams; the daemon uses the defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryOptions {
    /// Attempts per operation (1–5).
    pub attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub jitter_ratio: f64,
    /// Consecutive failed operations that open the circuit.
    pub circuit_threshold: u32,
    pub circuit_cooldown: Duration,
    /// Bounds each attempt, DNS resolution included.
    pub timeout: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_delay: Duration::from_millis(1000),
            max_delay: Duration::from_millis(10_000),
            jitter_ratio: 0.2,
            circuit_threshold: 5,
            circuit_cooldown: Duration::from_millis(30_000),
            timeout: Duration::from_millis(15_000),
        }
    }
}

/// Why a delivery failed; the text is upstream's, which relays and operators may match on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("Webhook delivery timed out after {0}ms")]
    Timeout(u128),
    #[error("Webhook delivery network error")]
    Network,
    #[error("Webhook delivery circuit is open for {}ms", .0.as_millis())]
    CircuitOpen(Duration),
    #[error("Webhook delivery failed: {status}")]
    Status { status: u16, retry_after: Option<Duration> },
    /// A URL-policy refusal (permanent, not counted toward the circuit).
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
    /// Timeouts, network errors, 429 and 5xx: retried, and counted by the circuit once an
    /// operation finally fails with one.
    fn retryable(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Network => true,
            Self::Status { status, .. } => *status == 429 || (500..600).contains(status),
            _ => false,
        }
    }

    /// The dispatcher's view: transient, rate limited with a delay, or permanent. An open circuit
    /// is a delay (its remaining cooldown), never a dead letter as upstream made it.
    pub fn into_send_error(self) -> SendError {
        let kind = match &self {
            Self::CircuitOpen(remaining) => SendErrorKind::RateLimited(*remaining),
            Self::Status { status: 429, retry_after } => {
                SendErrorKind::RateLimited(retry_after.unwrap_or(DEFAULT_RETRY_AFTER).min(Duration::from_secs(3600)))
            }
            error if error.retryable() => SendErrorKind::Transient,
            _ => SendErrorKind::Permanent,
        };
        SendError { kind, message: self.to_string() }
    }
}

/// The circuit: consecutive failed operations, and until when it is open.
#[derive(Debug, Default, Clone, Copy)]
struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
}

/// Posts operations to one relay.
pub struct Outbound {
    pub url: DeliveryUrl,
    pub policy: UrlPolicy,
    secret: Secret,
    resolver: Rc<dyn Resolver>,
    client: PinnedClient,
    pub options: RetryOptions,
    circuit: Cell<Circuit>,
    health: RefCell<Option<HealthReporter>>,
    /// Bumped each time the circuit opens, so a stale half-open timer leaves a newer opening alone.
    openings: Rc<Cell<u64>>,
}

impl Outbound {
    pub fn new(
        url: DeliveryUrl,
        policy: UrlPolicy,
        secret: Secret,
        resolver: Rc<dyn Resolver>,
        options: RetryOptions,
    ) -> Result<Self, String> {
        Ok(Self {
            url,
            policy,
            secret,
            resolver,
            client: PinnedClient::new()?,
            options,
            circuit: Cell::default(),
            health: RefCell::new(None),
            openings: Rc::default(),
        })
    }

    /// Trusts the certificates of `ca_file` besides the public roots.
    pub fn trust_ca_file(&mut self, ca_file: &std::path::Path) -> Result<(), String> {
        self.client = PinnedClient::with_ca_file(ca_file)?;
        Ok(())
    }

    pub fn attach_health(&self, health: Option<HealthReporter>) {
        *self.health.borrow_mut() = health;
    }

    /// `None` while closed (or its time is up), else the problem `/ready` and `/diagnostics` show.
    pub fn circuit_problem(&self) -> Option<String> {
        let open_until = self.circuit.get().open_until?;
        let now = Instant::now();
        (open_until > now).then(|| DeliveryError::CircuitOpen(ceil_ms(open_until - now)).to_string())
    }

    /// One operation: `body` is the exact JSON sent on every attempt, signed per attempt.
    pub async fn deliver(&self, body: Bytes, delivery_id: &str) -> Result<Value, DeliveryError> {
        let attempts = self.options.attempts.clamp(1, 5);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut circuit = self.circuit.get();
            if let Some(open_until) = circuit.open_until {
                let now = Instant::now();
                if open_until > now {
                    return Err(DeliveryError::CircuitOpen(ceil_ms(open_until - now)));
                }
                // Half-open: the cooldown is over, the next attempt decides.
                circuit = Circuit::default();
                self.circuit.set(circuit);
            }
            let timeout = self.options.timeout;
            let result = tokio::time::timeout(timeout, self.attempt(body.clone(), delivery_id))
                .await
                .unwrap_or(Err(DeliveryError::Timeout(timeout.as_millis())));
            let error = match result {
                Ok(answer) => {
                    self.circuit.set(Circuit::default());
                    if let Some(health) = self.health.borrow().as_ref() {
                        health.set_sending(None);
                    }
                    return Ok(answer);
                }
                Err(error) => error,
            };
            let delay = self.retry_delay(&error, attempt);
            match delay {
                Some(delay) if attempt < attempts => tokio::time::sleep(delay).await,
                _ => {
                    // A relay asking to slow down is pacing us, not failing: the dispatcher waits
                    // out its `Retry-After`, and the circuit counts real failures only.
                    if error.retryable() && !matches!(error, DeliveryError::Status { status: 429, .. }) {
                        self.note_failure();
                    }
                    return Err(error);
                }
            }
        }
    }

    /// The pause after failed attempt `attempt`, or `None` for no retry.
    fn retry_delay(&self, error: &DeliveryError, attempt: u32) -> Option<Duration> {
        let policy =
            RetryPolicy::new(self.options.initial_delay, self.options.max_delay).with_jitter(self.options.jitter_ratio);
        let backoff = || policy.nth(u64::from(attempt));
        match error {
            DeliveryError::Timeout(_) | DeliveryError::Network => Some(backoff()),
            DeliveryError::Status { status: 429, retry_after: Some(wait) } => Some((*wait).min(self.options.max_delay)),
            DeliveryError::Status { status, .. } if *status == 429 || (500..600).contains(status) => Some(backoff()),
            _ => None,
        }
    }

    fn note_failure(&self) {
        let mut circuit = self.circuit.get();
        circuit.failures += 1;
        if circuit.failures >= self.options.circuit_threshold.max(1) {
            let cooldown = self.options.circuit_cooldown;
            circuit.open_until = Some(Instant::now() + cooldown);
            let opening = self.openings.get() + 1;
            self.openings.set(opening);
            let problem = DeliveryError::CircuitOpen(cooldown).to_string();
            tracing::warn!(host = %self.url.host, "{problem}");
            if let Some(health) = self.health.borrow().clone() {
                health.set_sending(Some(problem));
                // Half-open by itself: once the cooldown is over the channel can send again, so
                // the delivery subscription claims its deliveries and the next attempt decides.
                let openings = Rc::clone(&self.openings);
                tokio::task::spawn_local(async move {
                    tokio::time::sleep(cooldown).await;
                    if openings.get() == opening {
                        health.set_sending(None);
                    }
                });
            }
        }
        self.circuit.set(circuit);
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
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, crate::time::now_ms()));
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

fn ceil_ms(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_micros().div_ceil(1000) as u64)
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
            kind(DeliveryError::CircuitOpen(Duration::from_secs(5))),
            SendErrorKind::RateLimited(Duration::from_secs(5))
        );
        assert_eq!(DeliveryError::Timeout(100).to_string(), "Webhook delivery timed out after 100ms");
    }
}
