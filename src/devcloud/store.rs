//! The dev Cloud's in-memory state and its rules: tokens and grants, identities, session
//! bindings and events, provider-event claims with leases, interactions, cursors and deliveries
//! with token-scoped leases, as Cloud keeps them. Everything is bounded.

use std::collections::{BTreeMap, HashMap};

use ring::digest::{digest, SHA256};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::time::{iso, Clock};

/// Events kept per session; older ones are pruned (which is what `snapshot.required` is for).
const MAX_EVENTS_PER_SESSION: usize = 10_000;
/// Records kept per table before the oldest finished ones are dropped.
pub(crate) const MAX_RECORDS: usize = 100_000;

/// First 32 hex characters of SHA-256 over the parts joined by NUL.
pub(crate) fn hashed_id(prefix: &str, parts: &[&str]) -> String {
    let hash = digest(&SHA256, parts.join("\0").as_bytes());
    format!("{prefix}{}", crate::util::hex::encode(&hash.as_ref()[..16]))
}

/// `n` random bytes as unpadded base64url.
pub(crate) fn random_base64url(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| fastrand::u8(..)).collect();
    crate::util::base64::encode_url(&bytes)
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    pub token_id: String,
    pub plaintext: String,
    pub scopes: Vec<String>,
    pub grants: Vec<String>,
    pub revoked: bool,
}

impl ApiToken {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    pub agent_id: String,
    pub org_id: String,
    pub name: String,
    pub profile_name: String,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelBinding {
    pub binding_id: String,
    pub org_id: String,
    pub agent_id: String,
    pub provider: String,
    pub display_name: String,
    pub external_workspace_id: Option<String>,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub identity_id: String,
    pub org_id: String,
    pub provider: String,
    pub external_workspace_id: Option<String>,
    pub external_user_id: String,
    pub account_id: Option<String>,
    pub role: String,
    pub status: String,
    pub metadata: Value,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionBinding {
    pub binding_id: String,
    pub org_id: String,
    pub agent_id: String,
    pub channel_binding_id: String,
    pub provider: String,
    pub external_workspace_id: Option<String>,
    pub external_thread_id: String,
    pub external_chat_id: String,
    pub session_id: String,
    pub last_event_sequence: u64,
    pub last_workspace_sequence: u64,
    pub last_chat_message_id: Option<String>,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A Cloud session: its events (sequence starts at 1) and the commands sent to it.
#[derive(Debug, Clone)]
pub struct Session {
    pub session_id: String,
    pub title: String,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub events: Vec<Value>,
    pub next_sequence: u64,
    pub commands: Vec<Value>,
}

impl Session {
    pub fn record(&self, tenant: &str) -> Value {
        json!({
            "tenantId": tenant, "userId": "dev-account", "sessionId": self.session_id, "opencodeSessionId": "",
            "profileName": "dev", "status": self.status, "title": self.title, "createdAt": self.created_at, "updatedAt": self.updated_at,
        })
    }

    pub fn view(&self, tenant: &str) -> Value {
        json!({"session": self.record(tenant), "projection": {"sessionId": self.session_id, "sequence": self.next_sequence - 1, "view": {}, "updatedAt": self.updated_at}})
    }

    /// The oldest sequence still retained.
    pub fn earliest_sequence(&self) -> u64 {
        self.events.first().and_then(|e| e["sequence"].as_u64()).unwrap_or(self.next_sequence)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderEvent {
    pub event_id: String,
    pub org_id: String,
    pub channel_binding_id: Option<String>,
    pub provider: String,
    pub provider_instance_id: String,
    pub external_workspace_id: Option<String>,
    pub provider_event_id: String,
    pub event_type: String,
    pub status: String,
    pub claimed_by: Option<String>,
    pub claim_expires_at: Option<String>,
    #[serde(skip)]
    pub claim_expires_ms: u64,
    pub attempt_count: u64,
    pub retryable: bool,
    pub last_error: Option<String>,
    pub metadata: Value,
    pub processed_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interaction {
    pub interaction_id: String,
    pub org_id: String,
    pub agent_id: String,
    pub channel_binding_id: Option<String>,
    pub session_binding_id: Option<String>,
    pub session_id: String,
    pub provider: String,
    pub external_interaction_id: Option<String>,
    pub kind: String,
    pub target_id: String,
    pub status: String,
    pub created_by_identity_id: Option<String>,
    pub expires_at: String,
    #[serde(skip)]
    pub expires_ms: u64,
    pub used_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub token: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub delivery_id: String,
    pub org_id: String,
    pub agent_id: String,
    pub channel_binding_id: String,
    pub session_binding_id: Option<String>,
    pub provider: String,
    pub target: Value,
    pub event_type: String,
    pub payload: Value,
    pub status: String,
    pub attempt_count: u64,
    pub claimed_by: Option<String>,
    pub last_claimed_by: Option<String>,
    pub claim_expires_at: Option<String>,
    #[serde(skip)]
    pub claim_expires_ms: u64,
    pub next_attempt_at: String,
    #[serde(skip)]
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub sequence: u64,
}

/// An artifact a test placed in the store.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub artifact_id: String,
    pub session_id: String,
    pub filename: String,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// Keys that the public (JSON endpoint) form of a delivery redacts.
const SANITIZED_SUFFIXES: [&str; 10] = [
    "authorization",
    "cookie",
    "token",
    "secret",
    "password",
    "credential",
    "api_key",
    "kms_ref",
    "ciphertext",
    "envelope",
];

/// The public form of target/payload: secret-looking keys redacted, arrays ≤50, depth ≤4.
pub(crate) fn sanitize(value: &Value, depth: usize) -> Value {
    match value {
        Value::Object(map) if depth < 4 => Value::Object(crate::util::maps::object(map.iter().map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            if SANITIZED_SUFFIXES.iter().any(|s| lower.ends_with(s)) {
                (k.clone(), Value::from("[redacted]"))
            } else {
                (k.clone(), sanitize(v, depth + 1))
            }
        }))),
        Value::Array(items) if depth < 4 => {
            Value::Array(items.iter().take(50).map(|v| sanitize(v, depth + 1)).collect())
        }
        Value::Object(_) | Value::Array(_) => Value::from("[truncated]"),
        other => other.clone(),
    }
}

impl Delivery {
    /// The sanitised form returned by JSON endpoints (the SSE stream carries the raw record).
    pub fn public(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        value["target"] = sanitize(&self.target, 0);
        value["payload"] = sanitize(&self.payload, 0);
        value
    }

    pub fn raw(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The whole Cloud of one organization.
#[derive(Debug)]
pub struct Store {
    pub org_id: String,
    pub clock: Clock,
    pub tokens: Vec<ApiToken>,
    pub agents: Vec<Agent>,
    pub channel_bindings: Vec<ChannelBinding>,
    pub identities: Vec<Identity>,
    pub sessions: BTreeMap<String, Session>,
    pub session_bindings: Vec<SessionBinding>,
    pub provider_events: HashMap<String, ProviderEvent>,
    pub interactions: HashMap<String, Interaction>,
    pub deliveries: Vec<Delivery>,
    pub artifacts: Vec<Artifact>,
    /// New channel identities start `active`/`member` (dev mode) instead of `pending`/`viewer`.
    pub auto_activate_identities: bool,
    /// The profile setting `runtime.allowRemoteApprovalResponses`.
    pub allow_remote_approvals: bool,
    delivery_sequence: u64,
}

impl Store {
    pub fn new(auto_activate_identities: bool, allow_remote_approvals: bool) -> Self {
        Self {
            org_id: "dev-tenant".into(),
            clock: Clock::default(),
            tokens: Vec::new(),
            agents: Vec::new(),
            channel_bindings: Vec::new(),
            identities: Vec::new(),
            sessions: BTreeMap::new(),
            session_bindings: Vec::new(),
            provider_events: HashMap::new(),
            interactions: HashMap::new(),
            deliveries: Vec::new(),
            artifacts: Vec::new(),
            auto_activate_identities,
            allow_remote_approvals,
            delivery_sequence: 0,
        }
    }

    pub fn now(&self) -> (u64, String) {
        let ms = self.clock.now_ms();
        (ms, iso(ms))
    }

    pub fn token_by_plaintext(&self, plaintext: &str) -> Option<&ApiToken> {
        self.tokens.iter().find(|t| !t.revoked && crate::util::ct::constant_time_equal(&t.plaintext, plaintext))
    }

    pub fn issue_token(&mut self, scopes: Vec<String>, grants: Vec<String>) -> ApiToken {
        let token_id = format!("tok_{}", random_base64url(12));
        let plaintext = format!("occ_{token_id}_{}", random_base64url(32));
        let token = ApiToken { token_id, plaintext, scopes, grants, revoked: false };
        self.tokens.push(token.clone());
        token
    }

    pub fn add_agent(&mut self, agent_id: &str, name: &str) -> Agent {
        let (_, now) = self.now();
        let agent = Agent {
            agent_id: agent_id.into(),
            org_id: self.org_id.clone(),
            name: name.into(),
            profile_name: "dev".into(),
            status: "active".into(),
            created_at: now.clone(),
            updated_at: now,
        };
        self.agents.push(agent.clone());
        agent
    }

    pub fn add_channel_binding(
        &mut self,
        binding_id: &str,
        agent_id: &str,
        provider: &str,
        workspace: Option<String>,
    ) -> ChannelBinding {
        let (_, now) = self.now();
        let binding = ChannelBinding {
            binding_id: binding_id.into(),
            org_id: self.org_id.clone(),
            agent_id: agent_id.into(),
            provider: provider.into(),
            display_name: format!("Dev {provider}"),
            external_workspace_id: workspace,
            status: "active".into(),
            created_at: now.clone(),
            updated_at: now,
        };
        self.channel_bindings.retain(|b| b.binding_id != binding_id);
        self.channel_bindings.push(binding.clone());
        binding
    }

    pub fn channel_binding(&self, binding_id: &str) -> Option<&ChannelBinding> {
        self.channel_bindings.iter().find(|b| b.binding_id == binding_id)
    }

    pub fn session_binding(&self, binding_id: &str) -> Option<&SessionBinding> {
        self.session_bindings.iter().find(|b| b.binding_id == binding_id)
    }

    /// Appends a session event and returns its sequence.
    pub fn append_event(&mut self, session_id: &str, event_type: &str, payload: Value) -> Option<u64> {
        let (_, now) = self.now();
        let tenant = self.org_id.clone();
        let session = self.sessions.get_mut(session_id)?;
        let sequence = session.next_sequence;
        session.next_sequence += 1;
        session.updated_at = now.clone();
        session.events.push(json!({
            "tenantId": tenant, "sessionId": session_id, "eventId": format!("{session_id}:{sequence}"), "sequence": sequence,
            "type": event_type, "payload": payload, "createdAt": now,
        }));
        if session.events.len() > MAX_EVENTS_PER_SESSION {
            let excess = session.events.len() - MAX_EVENTS_PER_SESSION;
            session.events.drain(..excess);
        }
        Some(sequence)
    }

    /// Claims the next due delivery for `bindings` (oldest `nextAttemptAt`, then `createdAt`).
    pub fn claim_next_delivery(
        &mut self,
        bindings: &[String],
        claimed_by: &str,
        token_id: &str,
        ttl_ms: u64,
    ) -> Option<Value> {
        let (now_ms, now) = self.now();
        let due = |d: &Delivery| {
            bindings.contains(&d.channel_binding_id)
                && match d.status.as_str() {
                    "pending" | "failed" => d.next_attempt_ms <= now_ms,
                    "claimed" => d.claim_expires_ms <= now_ms,
                    _ => false,
                }
        };
        let index = self
            .deliveries
            .iter()
            .enumerate()
            .filter(|(_, d)| due(d))
            .min_by_key(|(_, d)| (d.next_attempt_ms, d.sequence))
            .map(|(i, _)| i)?;
        let delivery = &mut self.deliveries[index];
        delivery.status = "claimed".into();
        delivery.claimed_by = Some(claimed_by.into());
        delivery.last_claimed_by = Some(token_id.into());
        delivery.claim_expires_ms = now_ms + ttl_ms;
        delivery.claim_expires_at = Some(iso(now_ms + ttl_ms));
        delivery.attempt_count += 1;
        delivery.updated_at = now;
        Some(delivery.raw())
    }

    /// `POST /api/channels/deliveries` (enqueue): idempotent per binding + delivery id.
    pub fn enqueue_delivery(&mut self, input: &Map<String, Value>, channel_binding: &ChannelBinding) -> Delivery {
        let text = |k: &str| input.get(k).and_then(Value::as_str).filter(|s| !s.trim().is_empty()).map(str::to_owned);
        let delivery_id = text("deliveryId").unwrap_or_else(crate::util::ids::random_id);
        if let Some(existing) = self
            .deliveries
            .iter()
            .find(|d| d.channel_binding_id == channel_binding.binding_id && d.delivery_id == delivery_id)
        {
            return existing.clone();
        }
        let (now_ms, now) = self.now();
        let next_attempt_ms = text("nextAttemptAt").and_then(|t| super::time::parse_iso(&t)).unwrap_or(now_ms);
        self.delivery_sequence += 1;
        let delivery = Delivery {
            delivery_id,
            org_id: self.org_id.clone(),
            agent_id: text("agentId").unwrap_or_else(|| channel_binding.agent_id.clone()),
            channel_binding_id: channel_binding.binding_id.clone(),
            session_binding_id: text("sessionBindingId"),
            provider: text("provider").unwrap_or_else(|| channel_binding.provider.clone()),
            target: input.get("target").cloned().unwrap_or_else(|| json!({})),
            event_type: text("eventType").unwrap_or_else(|| "message".into()),
            payload: input.get("payload").cloned().unwrap_or_else(|| json!({})),
            status: text("status").filter(|s| s == "pending" || s == "failed").unwrap_or_else(|| "pending".into()),
            attempt_count: 0,
            claimed_by: None,
            last_claimed_by: None,
            claim_expires_at: None,
            claim_expires_ms: 0,
            next_attempt_at: iso(next_attempt_ms),
            next_attempt_ms,
            last_error: None,
            created_at: now.clone(),
            updated_at: now,
            sequence: self.delivery_sequence,
        };
        self.deliveries.push(delivery.clone());
        if self.deliveries.len() > MAX_RECORDS {
            if let Some(oldest_done) = self.deliveries.iter().position(|d| d.status == "sent" || d.status == "dead") {
                self.deliveries.remove(oldest_done);
            }
        }
        delivery
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tokens() {
        let id = hashed_id("channel_session_", &["org", "cli", "", "chat", "chat"]);
        assert_eq!(id.len(), "channel_session_".len() + 32);
        assert_eq!(id, hashed_id("channel_session_", &["org", "cli", "", "chat", "chat"]));
        assert_eq!(random_base64url(12).len(), 16);
        assert_eq!(random_base64url(32).len(), 43);
    }

    #[test]
    fn sanitizer_redacts_secret_keys() {
        let value = json!({"text": "done", "token": "secret-ish", "nested": {"apiToken": "x", "list": [1, 2]}});
        assert_eq!(
            sanitize(&value, 0),
            json!({"text": "done", "token": "[redacted]", "nested": {"apiToken": "[redacted]", "list": [1, 2]}})
        );
    }

    #[test]
    fn delivery_claims_follow_leases() {
        let mut store = Store::new(true, true);
        // Only the test's advance expires the 1 s lease, however slowly the machine runs.
        store.clock.stop();
        let binding = store.add_channel_binding("b1", "agent", "cli", None);
        let mut input = Map::new();
        input.insert("deliveryId".into(), "d1".into());
        store.enqueue_delivery(&input, &binding);
        assert_eq!(store.enqueue_delivery(&input, &binding).delivery_id, "d1", "enqueue is idempotent");
        assert_eq!(store.deliveries.len(), 1);
        let bindings = vec!["b1".to_owned()];
        let claimed = store.claim_next_delivery(&bindings, "gateway:a", "tok_a", 1_000).unwrap();
        assert_eq!(claimed["attemptCount"], 1);
        assert!(store.claim_next_delivery(&bindings, "gateway:a", "tok_a", 1_000).is_none(), "leased");
        store.clock.advance(1_001);
        let reclaimed = store.claim_next_delivery(&bindings, "gateway:b", "tok_a", 1_000).unwrap();
        assert_eq!(reclaimed["attemptCount"], 2, "an expired lease is re-served");
        assert_eq!(reclaimed["claimedBy"], "gateway:b");
    }
}
