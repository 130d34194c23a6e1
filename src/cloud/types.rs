//! Cloud records, ids as `SmolStr`, tolerant of unknown fields. Fields the gateway reads are
//! typed; the rest of each record is kept so it can be passed on unchanged.
//!
//! A record with a `rest` map is read as a JSON object first and its typed fields are then taken
//! out of it ([`Fields`]), rather than with `#[serde(flatten)]`: flatten buffers every field in
//! serde's private `Content` tree and compiles a deserializer of its own per record type, which
//! cost code size and, for the session events every stream reads, time. Writing still uses
//! flatten (the typed fields, then the rest).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use smol_str::SmolStr;

/// A JSON object whose typed fields are taken out one by one; what is left is the record's `rest`.
struct Fields(Map<String, Value>);

impl Fields {
    /// A field the record must have.
    fn required<T: DeserializeOwned>(&mut self, key: &'static str) -> Result<T, String> {
        let value = self.0.remove(key).ok_or_else(|| format!("missing field `{key}`"))?;
        serde_json::from_value(value).map_err(|e| format!("field `{key}`: {e}"))
    }

    /// A field that may be missing (or `null`): its default then.
    fn optional<T: DeserializeOwned + Default>(&mut self, key: &'static str) -> Result<T, String> {
        match self.0.remove(key) {
            None | Some(Value::Null) => Ok(T::default()),
            Some(value) => serde_json::from_value(value).map_err(|e| format!("field `{key}`: {e}")),
        }
    }
}

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
#[serde(try_from = "Map<String, Value>")]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub delivery_id: SmolStr,
    pub channel_binding_id: SmolStr,
    pub created_at: String,
    pub updated_at: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl TryFrom<Map<String, Value>> for DeliveryRecord {
    type Error = String;

    fn try_from(object: Map<String, Value>) -> Result<Self, String> {
        let mut fields = Fields(object);
        Ok(Self {
            delivery_id: fields.required("deliveryId")?,
            channel_binding_id: fields.required("channelBindingId")?,
            created_at: fields.optional("createdAt")?,
            updated_at: fields.optional("updatedAt")?,
            rest: fields.0,
        })
    }
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
#[serde(try_from = "Map<String, Value>")]
#[serde(rename_all = "camelCase")]
pub struct IdentityRecord {
    pub identity_id: SmolStr,
    pub provider: SmolStr,
    pub external_workspace_id: Option<String>,
    pub external_user_id: String,
    /// `owner|admin|member|approver|viewer`.
    pub role: SmolStr,
    /// `active|disabled|pending`.
    pub status: SmolStr,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl TryFrom<Map<String, Value>> for IdentityRecord {
    type Error = String;

    fn try_from(object: Map<String, Value>) -> Result<Self, String> {
        let mut fields = Fields(object);
        Ok(Self {
            identity_id: fields.required("identityId")?,
            provider: fields.required("provider")?,
            external_workspace_id: fields.optional("externalWorkspaceId")?,
            external_user_id: fields.required("externalUserId")?,
            role: fields.required("role")?,
            status: fields.required("status")?,
            rest: fields.0,
        })
    }
}

impl IdentityRecord {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// `ChannelSessionBindingRecord`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
#[serde(rename_all = "camelCase")]
pub struct SessionBindingRecord {
    pub binding_id: SmolStr,
    pub channel_binding_id: SmolStr,
    pub session_id: SmolStr,
    pub provider: SmolStr,
    pub external_chat_id: String,
    pub external_thread_id: String,
    pub external_workspace_id: Option<String>,
    pub last_event_sequence: u64,
    pub last_workspace_sequence: u64,
    pub last_chat_message_id: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl TryFrom<Map<String, Value>> for SessionBindingRecord {
    type Error = String;

    fn try_from(object: Map<String, Value>) -> Result<Self, String> {
        let mut fields = Fields(object);
        Ok(Self {
            binding_id: fields.required("bindingId")?,
            channel_binding_id: fields.required("channelBindingId")?,
            session_id: fields.required("sessionId")?,
            provider: fields.required("provider")?,
            external_chat_id: fields.required("externalChatId")?,
            external_thread_id: fields.required("externalThreadId")?,
            external_workspace_id: fields.optional("externalWorkspaceId")?,
            last_event_sequence: fields.optional("lastEventSequence")?,
            last_workspace_sequence: fields.optional("lastWorkspaceSequence")?,
            last_chat_message_id: fields.optional("lastChatMessageId")?,
            rest: fields.0,
        })
    }
}

/// `SessionProjection`: the gateway reads only the sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct SessionProjection {
    pub sequence: u64,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl TryFrom<Map<String, Value>> for SessionProjection {
    type Error = String;

    fn try_from(object: Map<String, Value>) -> Result<Self, String> {
        let mut fields = Fields(object);
        Ok(Self { sequence: fields.optional("sequence")?, rest: fields.0 })
    }
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
#[serde(try_from = "Map<String, Value>")]
#[serde(rename_all = "camelCase")]
pub struct ProviderEventRecord {
    pub event_id: SmolStr,
    pub provider_event_id: String,
    /// `received|processing|processed|failed`.
    pub status: SmolStr,
    pub claimed_by: Option<String>,
    pub attempt_count: u64,
    pub retryable: bool,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl TryFrom<Map<String, Value>> for ProviderEventRecord {
    type Error = String;

    fn try_from(object: Map<String, Value>) -> Result<Self, String> {
        let mut fields = Fields(object);
        Ok(Self {
            event_id: fields.required("eventId")?,
            provider_event_id: fields.required("providerEventId")?,
            status: fields.required("status")?,
            claimed_by: fields.optional("claimedBy")?,
            attempt_count: fields.optional("attemptCount")?,
            retryable: fields.optional("retryable")?,
            rest: fields.0,
        })
    }
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
#[serde(try_from = "Map<String, Value>")]
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

impl TryFrom<Map<String, Value>> for InteractionRecord {
    type Error = String;

    fn try_from(object: Map<String, Value>) -> Result<Self, String> {
        let mut fields = Fields(object);
        Ok(Self {
            interaction_id: fields.required("interactionId")?,
            kind: fields.required("kind")?,
            target_id: fields.required("targetId")?,
            status: fields.required("status")?,
            rest: fields.0,
        })
    }
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
#[serde(try_from = "Map<String, Value>")]
#[serde(rename_all = "camelCase")]
pub struct SessionEvent {
    pub session_id: SmolStr,
    pub event_id: String,
    pub sequence: u64,
    #[serde(rename = "type")]
    pub event_type: SmolStr,
    pub payload: Value,
    pub created_at: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl TryFrom<Map<String, Value>> for SessionEvent {
    type Error = String;

    fn try_from(object: Map<String, Value>) -> Result<Self, String> {
        let mut fields = Fields(object);
        Ok(Self {
            session_id: fields.optional("sessionId")?,
            event_id: fields.optional("eventId")?,
            sequence: fields.required("sequence")?,
            event_type: fields.required("type")?,
            payload: fields.optional("payload")?,
            created_at: fields.optional("createdAt")?,
            rest: fields.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_fields_are_taken_out_and_the_rest_is_kept() {
        let data = json!({"sessionId": "s1", "sequence": 7, "type": "message.created",
            "payload": {"text": "hi"}, "entityId": "m1", "createdAt": null});
        let event: SessionEvent = serde_json::from_value(data.clone()).unwrap();
        assert_eq!(
            (event.session_id.as_str(), event.sequence, event.event_type.as_str()),
            ("s1", 7, "message.created")
        );
        assert_eq!(event.payload, json!({"text": "hi"}));
        assert_eq!(event.created_at, "", "null is the default");
        assert_eq!(event.rest, json!({"entityId": "m1"}).as_object().unwrap().clone(), "only the unknown fields");
        let written = serde_json::to_value(&event).unwrap();
        assert_eq!(written["entityId"], "m1", "the rest is written back beside the typed fields");
        assert_eq!(written["type"], "message.created");
    }

    #[test]
    fn a_missing_or_mistyped_field_refuses_the_record() {
        let error = serde_json::from_value::<DeliveryRecord>(json!({"deliveryId": "d1"})).unwrap_err();
        assert!(error.to_string().contains("missing field `channelBindingId`"), "{error}");
        let error = serde_json::from_value::<SessionEvent>(json!({"sequence": "7", "type": "x"})).unwrap_err();
        assert!(error.to_string().contains("field `sequence`"), "{error}");
        let error = serde_json::from_str::<SessionProjection>("[1]").unwrap_err();
        assert!(error.is_data(), "{error}");
        let record: DeliveryRecord =
            serde_json::from_value(json!({"deliveryId": "d1", "channelBindingId": "b", "attemptCount": 2})).unwrap();
        assert_eq!((record.attempt_count(), record.updated_at.as_str()), (2, ""));
    }
}
