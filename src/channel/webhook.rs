//! What a channel receives from `POST /webhooks/<id>` and what it answers.

use http::HeaderMap;
use serde_json::Value;

use super::InboundMessage;

/// A webhook request, already within the body cap and parsed.
pub struct WebhookRequest<'a> {
    pub payload: &'a Value,
    pub headers: &'a HeaderMap,
    /// The exact body bytes as UTF-8, for signatures computed over the raw body.
    pub raw_body: &'a str,
    /// Milliseconds since the epoch when the request arrived.
    pub received_at_ms: u64,
}

/// What a channel made of a verified webhook.
#[derive(Debug)]
pub enum WebhookReply {
    /// Messages for the inbound queue; the request is answered 202 once each is claimed in Cloud.
    Messages(Vec<InboundMessage>),
    /// An answer the protocol needs at once (a URL-verification challenge): `200` with this JSON.
    Respond(Value),
    /// Accepted without anything to do (a repeated or irrelevant event): `202`.
    Ignored,
}

/// The error classes of a webhook (upstream's `channelWebhookErrorCode`), each with its fixed status
/// and body; the detail is for logs, never the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookErrorCode {
    NotFound,
    Auth,
    Payload,
    Upstream,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct WebhookError {
    pub code: WebhookErrorCode,
    pub detail: String,
}

impl WebhookError {
    pub fn new(code: WebhookErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
    }
}
