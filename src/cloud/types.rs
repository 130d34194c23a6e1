//! Cloud records, ids as `SmolStr`, tolerant of unknown fields. Fields the
//! gateway reads are typed; the rest of each record is kept so it can be passed on unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use smol_str::SmolStr;

/// `ChannelDeliveryRecord.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Claimed,
    Sent,
    Failed,
    Dead,
}

impl DeliveryStatus {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "claimed" => Some(Self::Claimed),
            "sent" => Some(Self::Sent),
            "failed" => Some(Self::Failed),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Claimed => "claimed",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

/// `ChannelDeliveryRecord`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub delivery_id: SmolStr,
    pub channel_binding_id: SmolStr,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl DeliveryRecord {
    pub fn field_str(&self, key: &str) -> Option<&str> {
        self.rest.get(key).and_then(Value::as_str)
    }

    /// The claimant label Cloud stored on this claim.
    pub fn claimed_by(&self) -> Option<&str> {
        self.field_str("claimedBy")
    }

    pub fn attempt_count(&self) -> u64 {
        self.rest.get("attemptCount").and_then(Value::as_u64).unwrap_or(0)
    }

    pub fn status(&self) -> Option<DeliveryStatus> {
        self.field_str("status").and_then(DeliveryStatus::parse)
    }
}

/// `ChannelIdentityRecord`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityRecord {
    pub identity_id: SmolStr,
    pub provider: SmolStr,
    #[serde(default)]
    pub external_workspace_id: Option<String>,
    pub external_user_id: String,
    /// `owner|admin|member|approver|viewer`.
    pub role: SmolStr,
    /// `active|disabled|pending`.
    pub status: SmolStr,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl IdentityRecord {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// `ChannelSessionBindingRecord`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionBindingRecord {
    pub binding_id: SmolStr,
    pub channel_binding_id: SmolStr,
    pub session_id: SmolStr,
    pub provider: SmolStr,
    pub external_chat_id: String,
    pub external_thread_id: String,
    #[serde(default)]
    pub external_workspace_id: Option<String>,
    #[serde(default)]
    pub last_event_sequence: u64,
    #[serde(default)]
    pub last_workspace_sequence: u64,
    #[serde(default)]
    pub last_chat_message_id: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `SessionProjection`: the gateway reads only the sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionProjection {
    #[serde(default)]
    pub sequence: u64,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `CloudSessionView`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    #[serde(default)]
    pub session: Value,
    #[serde(default)]
    pub projection: Option<SessionProjection>,
}

/// `{binding, session}` from bind and by-thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundSession {
    pub binding: SessionBindingRecord,
    #[serde(default)]
    pub session: Value,
}

/// The 202 body of prompt. `command.status` is a pre-processing snapshot: never an outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptAccepted {
    pub binding: SessionBindingRecord,
    #[serde(default)]
    pub command: Value,
    #[serde(default)]
    pub processed: u64,
    #[serde(default)]
    pub projection_fence: Option<Value>,
}

/// `ChannelProviderEventRecord`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderEventRecord {
    pub event_id: SmolStr,
    pub provider_event_id: String,
    /// `received|processing|processed|failed`.
    pub status: SmolStr,
    #[serde(default)]
    pub claimed_by: Option<String>,
    #[serde(default)]
    pub attempt_count: u64,
    #[serde(default)]
    pub retryable: bool,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `{event, claimed, duplicate}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderEventClaim {
    pub event: ProviderEventRecord,
    pub claimed: bool,
    pub duplicate: bool,
}

/// `ChannelInteractionRecord`, without `tokenHash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InteractionRecord {
    pub interaction_id: SmolStr,
    /// `permission|question`.
    pub kind: SmolStr,
    pub target_id: String,
    /// `pending|used|expired|revoked`.
    pub status: SmolStr,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// The 201 body of createChannelInteraction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedInteraction {
    pub interaction: InteractionRecord,
    pub plaintext_token: String,
}

/// The 202 body of resolveChannelInteraction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InteractionResolved {
    pub interaction: InteractionRecord,
    #[serde(default)]
    pub command: Value,
    #[serde(default)]
    pub processed: u64,
    #[serde(default)]
    pub processing_error: Option<String>,
}

/// `ChannelCursorUpdateResult` as the client reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorUpdate {
    Updated(SessionBindingRecord),
    /// Cloud holds a newer cursor; adopt its binding.
    Stale(SessionBindingRecord),
    NotFound,
}

/// `readArtifactAttachment` as an attachment: `data:` URL with its MIME type and file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactAttachment {
    pub mime: String,
    pub url: String,
    pub filename: String,
}

/// A session event from the SSE stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEvent {
    #[serde(default)]
    pub session_id: SmolStr,
    #[serde(default)]
    pub event_id: String,
    pub sequence: u64,
    #[serde(rename = "type")]
    pub event_type: SmolStr,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub created_at: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}
