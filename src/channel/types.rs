//! The channel contract's data: targets, normalised inbound messages, sent messages, buttons,
//! capabilities and the typed send error.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use smol_str::SmolStr;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelTarget {
    /// The runtime provider id.
    pub provider: SmolStr,
    pub provider_kind: SmolStr,
    pub chat_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_direct: Option<bool>,
    pub thread_id: Option<String>,
    pub user_id: Option<String>,
    pub message_id: Option<String>,
}

/// Who sent an inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Sender {
    pub provider_user_id: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
}

/// A button press or fallback command carrying an interaction token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InteractionRef {
    pub id: String,
    pub token: String,
    /// `button` or `command`.
    pub kind: &'static str,
}

/// An [`InteractionRef`] as read back from disk (the inbound journal), its kind still a string.
#[derive(Deserialize)]
struct StoredInteraction {
    id: String,
    token: String,
    kind: String,
}

// By hand: a derived impl would borrow `kind` from the input (`'de: 'static`).
impl<'de> Deserialize<'de> for InteractionRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = StoredInteraction::deserialize(deserializer)?;
        let kind = match stored.kind.as_str() {
            "button" => "button",
            "command" => "command",
            other => return Err(serde::de::Error::custom(format!("unknown interaction kind {other:?}"))),
        };
        Ok(Self { id: stored.id, token: stored.token, kind })
    }
}

/// A normalised inbound message (`IncomingChannelMessage`). Serialisable for the inbound
/// journal, which keeps a webhook's message on disk from its answer until its prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub id: String,
    pub provider_event_id: Option<String>,
    pub provider_message_id: Option<String>,
    /// The runtime provider id (`cli` for the fake provider).
    pub provider: SmolStr,
    pub target: ChannelTarget,
    pub sender: Sender,
    pub text: String,
    pub raw_text: String,
    pub is_command: bool,
    pub command: Option<String>,
    pub attachment_count: usize,
    pub interaction: Option<InteractionRef>,
    /// Milliseconds since the epoch.
    pub received_at_ms: u64,
    pub raw: Value,
}

impl InboundMessage {
    /// The durable provider event id: the first non-empty of the event id, the message id, the
    /// interaction id and the message id.
    pub fn provider_event_id(&self) -> String {
        [
            self.provider_event_id.as_deref(),
            self.provider_message_id.as_deref(),
            self.interaction.as_ref().map(|i| i.id.as_str()),
            Some(self.id.as_str()),
        ]
        .into_iter()
        .flatten()
        .find(|s| !s.trim().is_empty())
        .unwrap_or_default()
        .to_owned()
    }

    /// A plain text message with the given id, for unit tests.
    #[cfg(test)]
    pub(crate) fn text_for_tests(id: &str, text: &str) -> Self {
        Self {
            id: id.into(),
            provider_event_id: None,
            provider_message_id: None,
            provider: "test".into(),
            target: ChannelTarget::default(),
            sender: Sender::default(),
            text: text.into(),
            raw_text: text.into(),
            is_command: false,
            command: None,
            attachment_count: 0,
            interaction: None,
            received_at_ms: 0,
            raw: Value::Null,
        }
    }

    /// `interaction`, `command` or `message`.
    pub fn event_type(&self) -> &'static str {
        if self.interaction.is_some() {
            "interaction"
        } else if self.is_command {
            "command"
        } else {
            "message"
        }
    }
}

/// What a provider reports after sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    pub chat_id: String,
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_delivery_id: Option<String>,
}

/// What a button's token starts with, which says what pressing it decides: the Cloud
/// interaction token follows (for an answer, the answer in base64url and a `:` come first).
pub(crate) const APPROVE_PREFIX: &str = "apv:";
pub(crate) const DENY_PREFIX: &str = "den:";
pub(crate) const REJECT_PREFIX: &str = "rej:";
pub(crate) const ANSWER_PREFIX: &str = "ans:";

/// One inline button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Button {
    pub label: String,
    /// A decision prefix (`APPROVE_PREFIX` …) + the interaction token.
    pub token: String,
    pub style: &'static str,
}

/// Send options; `delivery_id` is the idempotency key providers pass downstream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
}

/// What a channel can do, as the channel itself declares it (its own limits, e.g. how long a
/// button's payload may be): the renderer shapes every message to these, and falls back to text
/// commands when a button would not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub message_editing: bool,
    pub inline_buttons: bool,
    /// The channel can be sent files.
    pub file_downloads: bool,
    pub max_text_length: usize,
    pub max_buttons_per_message: usize,
    pub max_button_rows: usize,
    pub max_button_token_bytes: usize,
    pub max_file_bytes: usize,
}

impl Capabilities {
    /// A channel that takes plain text only, up to `max_text_length` UTF-16 units.
    pub fn text_only(max_text_length: usize) -> Self {
        Self {
            message_editing: false,
            inline_buttons: false,
            file_downloads: false,
            max_text_length,
            max_buttons_per_message: 0,
            max_button_rows: 0,
            max_button_token_bytes: 0,
            max_file_bytes: 0,
        }
    }
}

/// How a send failed, which decides retry, dead-letter or waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendErrorKind {
    /// Worth retrying (network, 5xx, timeouts).
    Transient,
    /// Retrying cannot help (unsupported, invalid, too large, blocked).
    Permanent,
    /// The channel asked us to wait this long.
    RateLimited(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub kind: SendErrorKind,
    pub message: String,
}

impl SendError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { kind: SendErrorKind::Permanent, message: message.into() }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self { kind: SendErrorKind::Transient, message: message.into() }
    }
}
