//! The inputs of the Cloud calls that send a JSON body, serialised with
//! upstream's camelCase field names and its omitted-versus-`null` distinctions.

use serde::Serialize;
use serde_json::Value;
use smol_str::SmolStr;

/// `resolveIdentity` input.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolveIdentity {
    pub provider: SmolStr,
    pub external_user_id: String,
    pub channel_binding_id: SmolStr,
    /// Omitted (`None`) uses the binding's; `Some(None)` sends `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_workspace_id: Option<Option<String>>,
    /// `{username, displayName}`: absent metadata would wipe what Cloud stored.
    pub metadata: Value,
}

/// `bindSession` input.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindSession {
    pub channel_binding_id: SmolStr,
    pub provider: SmolStr,
    pub external_chat_id: String,
    pub external_thread_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_id: Option<SmolStr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_workspace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// `prompt` input.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptInput {
    pub binding_id: SmolStr,
    pub text: String,
    pub agent: Option<String>,
    pub idempotency_key: SmolStr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_id: Option<SmolStr>,
    pub provider: SmolStr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_workspace_id: Option<Option<String>>,
    pub external_user_id: String,
}

/// `claimProviderEvent` input.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimProviderEvent {
    pub provider: SmolStr,
    pub provider_instance_id: SmolStr,
    pub channel_binding_id: SmolStr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_workspace_id: Option<Option<String>>,
    pub provider_event_id: String,
    /// `message|command|interaction`.
    pub event_type: &'static str,
    pub claimed_by: String,
    pub ttl_ms: u64,
    pub metadata: Value,
}

/// `completeProviderEvent` input.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteProviderEvent {
    pub claimed_by: String,
    /// `processed|failed`.
    pub status: &'static str,
    pub channel_binding_id: SmolStr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `resolveChannelInteraction` input.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolveInteraction {
    pub token: String,
    pub provider: SmolStr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_workspace_id: Option<Option<String>>,
    pub external_user_id: String,
    pub external_chat_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_interaction_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject: Option<bool>,
}

/// `createChannelInteraction` input.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateInteraction {
    pub agent_id: SmolStr,
    pub session_id: SmolStr,
    pub session_binding_id: SmolStr,
    pub provider: SmolStr,
    /// `permission|question`.
    pub kind: &'static str,
    pub target_id: String,
    pub interaction_id: String,
}

/// `ackDelivery` input.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AckDelivery {
    /// `sent|failed|dead`.
    pub status: &'static str,
    pub channel_binding_id: SmolStr,
    pub claimed_by: Option<String>,
    pub last_error: Option<String>,
    /// Always written, `null` when there is no next attempt (sent, dead): Cloud takes an absent
    /// field as "now", and a record must not keep an old retry time.
    pub next_attempt_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn workspace_omitted_versus_null() {
        let mut input = ResolveIdentity {
            provider: "cli".into(),
            external_user_id: "u".into(),
            channel_binding_id: "b".into(),
            external_workspace_id: None,
            metadata: json!({"username": null, "displayName": null}),
        };
        assert!(serde_json::to_value(&input).unwrap().get("externalWorkspaceId").is_none());
        input.external_workspace_id = Some(None);
        assert_eq!(serde_json::to_value(&input).unwrap()["externalWorkspaceId"], Value::Null);
    }
}
