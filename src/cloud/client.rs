//! The Cloud HTTP client: one typed function per gateway call (docs/cloud-calls.md), with upstream's
//! methods, paths, segment and query encoding and success statuses, and the response envelopes
//! each call unwraps. How a request travels (headers, timeout, body caps, error mapping) is
//! `transport.rs`; the call inputs are `requests.rs`.

use std::time::Duration;

use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use smol_str::SmolStr;

use super::error::CloudError;
use super::transport::{parse_json, to_body, Transport};
use super::types::*;
use super::{DeliveryOperations, DeliveryQuery, LocalBoxFuture};
use crate::config::Secret;
use crate::net::https::HttpsClient;
use crate::util::percent::encode_component;

// Inputs and transport pieces moved to their own files; callers keep importing them from here.
pub use super::requests::{
    AckDelivery, BindSession, ClaimProviderEvent, CompleteProviderEvent, CreateInteraction, PromptInput,
    ResolveIdentity, ResolveInteraction,
};
pub use super::transport::{query_string, SseConnection};

/// An artifact travels base64-encoded in JSON: a 20 MiB file is about 27 MiB.
const MAX_ARTIFACT_BYTES: usize = 32 * 1024 * 1024;

#[derive(Deserialize)]
struct IdentityBody {
    identity: IdentityRecord,
}

#[derive(Deserialize)]
struct EventBody {
    event: ProviderEventRecord,
}

#[derive(Deserialize)]
struct DeliveryBody {
    delivery: DeliveryRecord,
}

#[derive(Deserialize)]
struct DeliveriesBody {
    deliveries: Vec<DeliveryRecord>,
}

#[derive(Deserialize)]
struct CursorBody {
    #[serde(default)]
    binding: Option<SessionBindingRecord>,
    #[serde(default)]
    result: Option<CursorResult>,
}

#[derive(Deserialize)]
struct CursorResult {
    ok: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    binding: Option<SessionBindingRecord>,
}

#[derive(Deserialize)]
struct ArtifactBody {
    artifact: ArtifactJson,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactJson {
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    mime: Option<String>,
    #[serde(default)]
    filename: Option<String>,
    data_base64: String,
}

/// The typed client. Cheap to share behind an `Rc`.
#[derive(Clone)]
pub struct CloudClient {
    transport: Transport,
}

impl CloudClient {
    /// `base_url` is the checked configuration value; trailing `/` is removed again.
    pub fn new(http: HttpsClient, base_url: &str, token: Secret, timeout: Duration) -> Self {
        Self { transport: Transport::new(http, base_url, token, timeout) }
    }

    /// Session streams travel on `streams` instead of the calls client (`net::https` says why).
    pub fn with_stream_client(mut self, streams: HttpsClient) -> Self {
        self.transport.set_stream_client(streams);
        self
    }

    pub fn base_url(&self) -> &str {
        self.transport.base_url()
    }

    /// The shared HTTPS client, for providers (one pool, one TLS setup).
    pub fn http(&self) -> &HttpsClient {
        self.transport.http()
    }

    /// `POST /api/channels/identities/resolve` → 200 `{identity}`.
    pub async fn resolve_identity(&self, input: &ResolveIdentity) -> Result<IdentityRecord, CloudError> {
        let body: IdentityBody = self
            .transport
            .call(Method::POST, "/api/channels/identities/resolve", Some(&to_body(input)?), &[200])
            .await?;
        Ok(body.identity)
    }

    /// `POST /api/channels/sessions/bind` → 200 `{binding, session}`.
    pub async fn bind_session(&self, input: &BindSession) -> Result<BoundSession, CloudError> {
        self.transport.call(Method::POST, "/api/channels/sessions/bind", Some(&to_body(input)?), &[200]).await
    }

    /// `GET /api/channels/sessions/by-thread` → `{binding, session}`, or `None` when not found.
    pub async fn find_session_by_thread(
        &self,
        provider: &str,
        external_workspace_id: Option<&str>,
        external_chat_id: &str,
        external_thread_id: &str,
    ) -> Result<Option<BoundSession>, CloudError> {
        let query = query_string([
            ("provider", provider),
            ("externalWorkspaceId", external_workspace_id.unwrap_or("")),
            ("externalChatId", external_chat_id),
            ("externalThreadId", external_thread_id),
        ]);
        match self.transport.call(Method::GET, &format!("/api/channels/sessions/by-thread{query}"), None, &[200]).await
        {
            Ok(found) => Ok(Some(found)),
            Err(error) if error.is_not_found() || error.message.to_ascii_lowercase().contains("not found") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `GET /api/channels/sessions/{id}/snapshot` → `CloudSessionView`.
    pub async fn get_session(&self, session_binding_id: &str) -> Result<SessionView, CloudError> {
        self.transport
            .call(
                Method::GET,
                &format!("/api/channels/sessions/{}/snapshot", encode_component(session_binding_id)),
                None,
                &[200],
            )
            .await
    }

    /// `POST /api/channels/sessions/prompt` → **202**.
    pub async fn prompt(&self, input: &PromptInput) -> Result<PromptAccepted, CloudError> {
        self.transport.call(Method::POST, "/api/channels/sessions/prompt", Some(&to_body(input)?), &[202]).await
    }

    /// `POST /api/channels/provider-events/claim` → 200 `{event, claimed, duplicate}`.
    pub async fn claim_provider_event(&self, input: &ClaimProviderEvent) -> Result<ProviderEventClaim, CloudError> {
        self.transport.call(Method::POST, "/api/channels/provider-events/claim", Some(&to_body(input)?), &[200]).await
    }

    /// `POST /api/channels/provider-events/{eventId}/complete` → 200 `{event}`.
    pub async fn complete_provider_event(
        &self,
        event_id: &str,
        input: &CompleteProviderEvent,
    ) -> Result<ProviderEventRecord, CloudError> {
        let path = format!("/api/channels/provider-events/{}/complete", encode_component(event_id));
        let body: EventBody = self.transport.call(Method::POST, &path, Some(&to_body(input)?), &[200]).await?;
        Ok(body.event)
    }

    /// `POST /api/channels/interactions/resolve` → **202**.
    pub async fn resolve_interaction(&self, input: &ResolveInteraction) -> Result<InteractionResolved, CloudError> {
        self.transport.call(Method::POST, "/api/channels/interactions/resolve", Some(&to_body(input)?), &[202]).await
    }

    /// `POST /api/channels/interactions` → **201** `{interaction, plaintextToken}`.
    pub async fn create_interaction(&self, input: &CreateInteraction) -> Result<IssuedInteraction, CloudError> {
        self.transport.call(Method::POST, "/api/channels/interactions", Some(&to_body(input)?), &[201]).await
    }

    /// `artifactUrl`: the authenticated artifact endpoint, no request made.
    pub fn artifact_url(&self, session_binding_id: &str, artifact_id: &str) -> String {
        format!(
            "{}/api/channels/sessions/{}/artifacts/{}",
            self.transport.base_url(),
            encode_component(session_binding_id),
            encode_component(artifact_id)
        )
    }

    /// `GET /api/channels/sessions/{id}/artifacts/{artifactId}` as a `data:` URL attachment.
    pub async fn read_artifact(
        &self,
        session_binding_id: &str,
        artifact_id: &str,
    ) -> Result<ArtifactAttachment, CloudError> {
        let path = format!(
            "/api/channels/sessions/{}/artifacts/{}",
            encode_component(session_binding_id),
            encode_component(artifact_id)
        );
        let bytes = self.transport.exchange(Method::GET, &path, None, &[200], MAX_ARTIFACT_BYTES).await?;
        let body: ArtifactBody = parse_json(&bytes)?;
        let artifact = body.artifact;
        let mime = artifact
            .content_type
            .filter(|m| !m.is_empty())
            .or(artifact.mime)
            .unwrap_or_else(|| "application/octet-stream".into());
        Ok(ArtifactAttachment {
            url: format!("data:{mime};base64,{}", artifact.data_base64),
            mime,
            filename: artifact.filename.filter(|f| !f.is_empty()).unwrap_or_else(|| "artifact".into()),
        })
    }

    /// `POST /api/channels/cursor`: monotonic; a stale result carries Cloud's newer binding.
    pub async fn update_cursor(
        &self,
        binding_id: &str,
        last_event_sequence: u64,
        last_workspace_sequence: u64,
        last_chat_message_id: Option<&str>,
    ) -> Result<CursorUpdate, CloudError> {
        let body = json!({
            "bindingId": binding_id,
            "lastEventSequence": last_event_sequence,
            "lastWorkspaceSequence": last_workspace_sequence,
            "lastChatMessageId": last_chat_message_id,
        });
        let response: CursorBody =
            match self.transport.call(Method::POST, "/api/channels/cursor", Some(&body), &[200]).await {
                Ok(response) => response,
                Err(error) if error.is_not_found() => return Ok(CursorUpdate::NotFound),
                Err(error) => return Err(error),
            };
        Ok(match (response.result, response.binding) {
            (Some(CursorResult { ok: true, binding: Some(b), .. }), _)
            | (Some(CursorResult { ok: true, binding: None, .. }), Some(b)) => CursorUpdate::Updated(b),
            (Some(CursorResult { ok: false, reason, binding, .. }), outer) if reason.as_deref() == Some("stale") => {
                match binding.or(outer) {
                    Some(b) => CursorUpdate::Stale(b),
                    None => CursorUpdate::NotFound,
                }
            }
            (None, Some(b)) => CursorUpdate::Updated(b),
            _ => CursorUpdate::NotFound,
        })
    }

    /// `POST /api/channels/deliveries/{id}/ack` → 200 `{delivery}`.
    pub async fn ack_delivery(&self, delivery_id: &str, input: &AckDelivery) -> Result<DeliveryRecord, CloudError> {
        let path = format!("/api/channels/deliveries/{}/ack", encode_component(delivery_id));
        let body: DeliveryBody = self.transport.call(Method::POST, &path, Some(&to_body(input)?), &[200]).await?;
        Ok(body.delivery)
    }

    /// `GET /api/channels/deliveries?deliveryId=&status=&channelBindingId=&limit=`.
    pub async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<Vec<DeliveryRecord>, CloudError> {
        let limit = query.limit.to_string();
        let query = query_string([
            ("deliveryId", query.delivery_id.as_deref().unwrap_or("")),
            ("status", query.status.map_or("", DeliveryStatus::as_str)),
            ("channelBindingId", query.channel_binding_id.as_str()),
            ("limit", limit.as_str()),
        ]);
        let body: DeliveriesBody =
            self.transport.call(Method::GET, &format!("/api/channels/deliveries{query}"), None, &[200]).await?;
        Ok(body.deliveries)
    }

    async fn delivery_action(
        &self,
        delivery_id: &str,
        action: &str,
        body: Value,
    ) -> Result<Option<DeliveryRecord>, CloudError> {
        let path = format!("/api/channels/deliveries/{}/{action}", encode_component(delivery_id));
        match self.transport.call::<DeliveryBody>(Method::POST, &path, Some(&body), &[200]).await {
            Ok(body) => Ok(Some(body.delivery)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `POST /api/channels/deliveries/{id}/retry`; `None` when Cloud does not know it.
    pub async fn retry_delivery(
        &self,
        delivery_id: &str,
        channel_binding_id: &str,
    ) -> Result<Option<DeliveryRecord>, CloudError> {
        self.delivery_action(delivery_id, "retry", json!({"channelBindingId": channel_binding_id})).await
    }

    /// `POST /api/channels/deliveries/{id}/dead-letter`; `None` when Cloud does not know it.
    pub async fn dead_letter_delivery(
        &self,
        delivery_id: &str,
        channel_binding_id: &str,
        last_error: Option<&str>,
    ) -> Result<Option<DeliveryRecord>, CloudError> {
        let mut body = json!({"channelBindingId": channel_binding_id});
        if let Some(last_error) = last_error {
            body["lastError"] = Value::from(last_error);
        }
        self.delivery_action(delivery_id, "dead-letter", body).await
    }
    /// `GET /api/channels/sessions/{id}/events?after=N` (`after=0` included).
    pub async fn open_session_events(&self, session_binding_id: &str, after: u64) -> Result<SseConnection, CloudError> {
        self.transport
            .open_stream(
                &format!("/api/channels/sessions/{}/events?after={after}", encode_component(session_binding_id)),
                true,
            )
            .await
    }

    /// `GET /api/channels/deliveries/stream?claimedBy=&ttlMs=&channelBindingId=…`.
    pub async fn open_delivery_stream(
        &self,
        claimed_by: &str,
        ttl_ms: u64,
        channel_binding_ids: &[SmolStr],
    ) -> Result<SseConnection, CloudError> {
        let ttl = ttl_ms.to_string();
        let pairs = [("claimedBy", claimed_by), ("ttlMs", ttl.as_str())]
            .into_iter()
            .chain(channel_binding_ids.iter().map(|id| ("channelBindingId", id.as_str())));
        self.transport.open_stream(&format!("/api/channels/deliveries/stream{}", query_string(pairs)), false).await
    }
}

impl DeliveryOperations for CloudClient {
    fn list_deliveries(&self, query: DeliveryQuery) -> LocalBoxFuture<'_, Result<Vec<DeliveryRecord>, CloudError>> {
        Box::pin(async move { CloudClient::list_deliveries(self, &query).await })
    }

    fn supports_retry(&self) -> bool {
        true
    }

    fn supports_dead_letter(&self) -> bool {
        true
    }

    fn retry_delivery<'a>(
        &'a self,
        delivery_id: &'a str,
        channel_binding_id: &'a str,
    ) -> LocalBoxFuture<'a, Result<Option<DeliveryRecord>, CloudError>> {
        Box::pin(CloudClient::retry_delivery(self, delivery_id, channel_binding_id))
    }

    fn dead_letter_delivery<'a>(
        &'a self,
        delivery_id: &'a str,
        channel_binding_id: &'a str,
        last_error: Option<&'a str>,
    ) -> LocalBoxFuture<'a, Result<Option<DeliveryRecord>, CloudError>> {
        Box::pin(CloudClient::dead_letter_delivery(self, delivery_id, channel_binding_id, last_error))
    }
}
