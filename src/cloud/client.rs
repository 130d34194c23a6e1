//! The Cloud HTTP client: one typed function per gateway call of cloud-api.md §0, with upstream's
//! methods, paths, segment and query encoding, headers, success statuses and timeout, and errors
//! mapped into [`CloudError`].

use crate::util::percent::encode_component;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use smol_str::SmolStr;

use super::error::{CloudError, CloudErrorKind};
use super::sse::{SseError, SseEvent, SseParser};
use super::types::*;
use super::{DeliveryOperations, DeliveryQuery, LocalBoxFuture};
use crate::config::Secret;
use crate::net::https::HttpsClient;

/// JSON responses larger than this are refused; artifacts have their own, larger bound.
const MAX_JSON_BYTES: usize = 4 * 1024 * 1024;
/// An artifact travels base64-encoded in JSON: a 20 MiB file is about 27 MiB.
const MAX_ARTIFACT_BYTES: usize = 32 * 1024 * 1024;

/// `URLSearchParams` serialisation: empty strings skipped, repeated keys kept in order.
pub fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (key, value) in pairs {
        if !value.is_empty() {
            serializer.append_pair(key, value);
            any = true;
        }
    }
    if any {
        format!("?{}", serializer.finish())
    } else {
        String::new()
    }
}

/// `resolveIdentity` input (§3.1).
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

/// `bindSession` input (§3.2).
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

/// `prompt` input (§3.5).
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

/// `claimProviderEvent` input (§3.6).
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

/// `completeProviderEvent` input (§3.7).
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

/// `resolveChannelInteraction` input (§3.8).
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

/// `createChannelInteraction` input (§3.9).
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

/// `ackDelivery` input (§3.13).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AckDelivery {
    /// `sent|failed|dead`.
    pub status: &'static str,
    pub channel_binding_id: SmolStr,
    pub claimed_by: Option<String>,
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
}

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
    http: HttpsClient,
    base_url: String,
    token: Secret,
    timeout: Duration,
}

impl CloudClient {
    /// `base_url` is the checked configuration value; trailing `/` is removed again.
    pub fn new(http: HttpsClient, base_url: &str, token: Secret, timeout: Duration) -> Self {
        Self { http, base_url: base_url.trim().trim_end_matches('/').to_owned(), token, timeout }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The shared HTTPS client, for providers (one pool, one TLS setup).
    pub fn http(&self) -> &HttpsClient {
        &self.http
    }

    fn build_request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        sse: bool,
    ) -> Result<Request<Full<Bytes>>, CloudError> {
        if !path.starts_with("/api/") {
            return Err(CloudError::transport(
                CloudErrorKind::Request,
                format!("Cloud request path must start with /api/: {path}"),
            ));
        }
        let bearer = HeaderValue::from_str(&format!("Bearer {}", self.token.expose())).map_err(|_| {
            CloudError::transport(CloudErrorKind::Request, "the service token is not a valid header value")
        })?;
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url))
            .header(AUTHORIZATION, bearer)
            .header(USER_AGENT, concat!("open-cowork-gateway/", env!("CARGO_PKG_VERSION")));
        if sse {
            builder = builder.header(ACCEPT, "text/event-stream");
        }
        let bytes = match body {
            Some(value) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Bytes::from(
                    serde_json::to_vec(value)
                        .map_err(|e| CloudError::transport(CloudErrorKind::Request, e.to_string()))?,
                )
            }
            None => Bytes::new(),
        };
        builder
            .body(Full::new(bytes))
            .map_err(|e| CloudError::transport(CloudErrorKind::Request, format!("invalid Cloud request: {e}")))
    }

    /// Sends a request and reads the whole body (both within the timeout). Non-success statuses
    /// become errors; `expected` lists the success statuses.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: &[u16],
        cap: usize,
    ) -> Result<Bytes, CloudError> {
        let request = self.build_request(method, path, body, false)?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| CloudError::transport(CloudErrorKind::Network, describe_transport(&e)))?;
            let status = response.status().as_u16();
            let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = Limited::new(response.into_body(), cap)
                .collect()
                .await
                .map_err(|e| {
                    CloudError::transport(CloudErrorKind::Network, format!("reading the Cloud response failed: {e}"))
                })?
                .to_bytes();
            if expected.contains(&status) {
                Ok(bytes)
            } else {
                Err(CloudError::from_response(status, &bytes, retry_after.as_deref()))
            }
        };
        tokio::time::timeout(self.timeout, exchange).await.unwrap_or_else(|_| {
            Err(CloudError::transport(
                CloudErrorKind::Timeout,
                format!("Cloud did not answer within {} ms.", self.timeout.as_millis()),
            ))
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: &[u16],
    ) -> Result<T, CloudError> {
        let bytes = self.exchange(method, path, body, expected, MAX_JSON_BYTES).await?;
        parse_json(&bytes)
    }

    fn to_body(input: &impl Serialize) -> Result<Value, CloudError> {
        serde_json::to_value(input).map_err(|e| CloudError::transport(CloudErrorKind::Request, e.to_string()))
    }

    /// `POST /api/channels/identities/resolve` → 200 `{identity}`.
    pub async fn resolve_identity(&self, input: &ResolveIdentity) -> Result<IdentityRecord, CloudError> {
        let body: IdentityBody =
            self.call(Method::POST, "/api/channels/identities/resolve", Some(&Self::to_body(input)?), &[200]).await?;
        Ok(body.identity)
    }

    /// `POST /api/channels/sessions/bind` → 200 `{binding, session}`.
    pub async fn bind_session(&self, input: &BindSession) -> Result<BoundSession, CloudError> {
        self.call(Method::POST, "/api/channels/sessions/bind", Some(&Self::to_body(input)?), &[200]).await
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
        match self.call(Method::GET, &format!("/api/channels/sessions/by-thread{query}"), None, &[200]).await {
            Ok(found) => Ok(Some(found)),
            Err(error) if error.is_not_found() || error.message.to_ascii_lowercase().contains("not found") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `GET /api/channels/sessions/{id}/snapshot` → `CloudSessionView`.
    pub async fn get_session(&self, session_binding_id: &str) -> Result<SessionView, CloudError> {
        self.call(
            Method::GET,
            &format!("/api/channels/sessions/{}/snapshot", encode_component(session_binding_id)),
            None,
            &[200],
        )
        .await
    }

    /// `POST /api/channels/sessions/prompt` → **202**.
    pub async fn prompt(&self, input: &PromptInput) -> Result<PromptAccepted, CloudError> {
        self.call(Method::POST, "/api/channels/sessions/prompt", Some(&Self::to_body(input)?), &[202]).await
    }

    /// `POST /api/channels/provider-events/claim` → 200 `{event, claimed, duplicate}`.
    pub async fn claim_provider_event(&self, input: &ClaimProviderEvent) -> Result<ProviderEventClaim, CloudError> {
        self.call(Method::POST, "/api/channels/provider-events/claim", Some(&Self::to_body(input)?), &[200]).await
    }

    /// `POST /api/channels/provider-events/{eventId}/complete` → 200 `{event}`.
    pub async fn complete_provider_event(
        &self,
        event_id: &str,
        input: &CompleteProviderEvent,
    ) -> Result<ProviderEventRecord, CloudError> {
        let path = format!("/api/channels/provider-events/{}/complete", encode_component(event_id));
        let body: EventBody = self.call(Method::POST, &path, Some(&Self::to_body(input)?), &[200]).await?;
        Ok(body.event)
    }

    /// `POST /api/channels/interactions/resolve` → **202**.
    pub async fn resolve_interaction(&self, input: &ResolveInteraction) -> Result<InteractionResolved, CloudError> {
        self.call(Method::POST, "/api/channels/interactions/resolve", Some(&Self::to_body(input)?), &[202]).await
    }

    /// `POST /api/channels/interactions` → **201** `{interaction, plaintextToken}`.
    pub async fn create_interaction(&self, input: &CreateInteraction) -> Result<IssuedInteraction, CloudError> {
        self.call(Method::POST, "/api/channels/interactions", Some(&Self::to_body(input)?), &[201]).await
    }

    /// `artifactUrl`: the authenticated artifact endpoint, no request made.
    pub fn artifact_url(&self, session_binding_id: &str, artifact_id: &str) -> String {
        format!(
            "{}/api/channels/sessions/{}/artifacts/{}",
            self.base_url,
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
        let bytes = self.exchange(Method::GET, &path, None, &[200], MAX_ARTIFACT_BYTES).await?;
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
        let response: CursorBody = match self.call(Method::POST, "/api/channels/cursor", Some(&body), &[200]).await {
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
        let body: DeliveryBody = self.call(Method::POST, &path, Some(&Self::to_body(input)?), &[200]).await?;
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
            self.call(Method::GET, &format!("/api/channels/deliveries{query}"), None, &[200]).await?;
        Ok(body.deliveries)
    }

    async fn delivery_action(
        &self,
        delivery_id: &str,
        action: &str,
        body: Value,
    ) -> Result<Option<DeliveryRecord>, CloudError> {
        let path = format!("/api/channels/deliveries/{}/{action}", encode_component(delivery_id));
        match self.call::<DeliveryBody>(Method::POST, &path, Some(&body), &[200]).await {
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

    /// Opens an SSE stream; the headers must arrive within the request timeout, the body has none.
    async fn open_stream(&self, path: &str) -> Result<SseConnection, CloudError> {
        let request = self.build_request(Method::GET, path, None, true)?;
        let open = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| CloudError::transport(CloudErrorKind::Network, describe_transport(&e)))?;
            let status = response.status().as_u16();
            if status == 200 {
                return Ok(SseConnection {
                    body: response.into_body(),
                    parser: SseParser::default(),
                    ready: std::collections::VecDeque::new(),
                    ended: false,
                });
            }
            let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = Limited::new(response.into_body(), MAX_JSON_BYTES)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Err(CloudError::from_response(status, &bytes, retry_after.as_deref()))
        };
        tokio::time::timeout(self.timeout, open).await.unwrap_or_else(|_| {
            Err(CloudError::transport(CloudErrorKind::Timeout, "Cloud did not open the stream in time."))
        })
    }

    /// `GET /api/channels/sessions/{id}/events?after=N` (`after=0` included).
    pub async fn open_session_events(&self, session_binding_id: &str, after: u64) -> Result<SseConnection, CloudError> {
        self.open_stream(&format!(
            "/api/channels/sessions/{}/events?after={after}",
            encode_component(session_binding_id)
        ))
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
        self.open_stream(&format!("/api/channels/deliveries/stream{}", query_string(pairs))).await
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CloudError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(bytes)
        .map_err(|e| CloudError::transport(CloudErrorKind::Parse, format!("Cloud answered with unexpected JSON: {e}")))
}

/// A transport error without the URL (which is safe, but long) and never with headers.
fn describe_transport(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// An open SSE response: call [`SseConnection::next_event`] until it returns `Ok(None)`
/// (the server closed the stream cleanly).
pub struct SseConnection {
    body: Incoming,
    parser: SseParser,
    ready: std::collections::VecDeque<SseEvent>,
    ended: bool,
}

impl SseConnection {
    pub async fn next_event(&mut self) -> Result<Option<SseEvent>, CloudError> {
        let sse_error = |e: SseError| CloudError::transport(CloudErrorKind::Sse, e.to_string());
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            let mut out = Vec::new();
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.parser.push(&data, &mut out).map_err(sse_error)?;
                    }
                }
                Some(Err(error)) => {
                    return Err(CloudError::transport(
                        CloudErrorKind::Network,
                        format!("the Cloud stream broke: {error}"),
                    ))
                }
                None => {
                    self.ended = true;
                    self.parser.finish(&mut out).map_err(sse_error)?;
                }
            }
            self.ready.extend(out);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_javascript() {
        assert_eq!(encode_component("a b/c:d@e"), "a%20b%2Fc%3Ad%40e");
        assert_eq!(encode_component("x-_.!~*'()"), "x-_.!~*'()");
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(
            query_string([
                ("claimedBy", "gateway:pi"),
                ("ttlMs", "120000"),
                ("empty", ""),
                ("channelBindingId", "a"),
                ("channelBindingId", "b c")
            ]),
            "?claimedBy=gateway%3Api&ttlMs=120000&channelBindingId=a&channelBindingId=b+c"
        );
        assert_eq!(query_string([("x", "")]), "");
    }

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
