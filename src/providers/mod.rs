//! The provider registry (spec §3.1, §3.8, §2.5): one registration per enabled provider, in
//! config order, with its lifecycle flags, health and webhook dispatch.
//!
//! Channel implementations plug in here, one variant per compiled-in provider. This build has no
//! channel implementation yet, so every registration reports honestly that it cannot start: the
//! provider is `failed` with a clear `lastError`, `/ready` stays 503, and its webhook answers 502.

use http::HeaderMap;
use serde_json::{json, Value};
use smol_str::SmolStr;

use crate::config::redact::redact_text;
use crate::config::{Config, ProviderKind};
use crate::metrics::{Metrics, ProviderState};

/// One enabled provider and its lifecycle flags.
#[derive(Debug, Clone)]
pub struct ProviderRegistration {
    pub id: SmolStr,
    pub kind: ProviderKind,
    /// The runtime provider id: the config id, except `cli` for the fake provider (§8.1).
    pub runtime_id: SmolStr,
    pub started: bool,
    pub healthy: bool,
    pub last_error: Option<String>,
}

/// A parsed webhook request handed to a provider.
pub struct WebhookRequest<'a> {
    pub payload: &'a Value,
    pub headers: &'a HeaderMap,
    /// The exact body bytes as UTF-8, for signature checks.
    pub raw_body: &'a str,
}

/// What a provider returns for an accepted webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookOutcome {
    /// Slack's `url_verification` challenge, answered as `200 {"challenge": …}`.
    pub challenge: Option<String>,
}

/// The error classes of `channelWebhookErrorCode` (§2.5); the detail is for logs, never the response.
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
    fn new(code: WebhookErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
    }
}

/// All registrations, in config order.
#[derive(Debug, Clone)]
pub struct ProviderRegistry {
    registrations: Vec<ProviderRegistration>,
}

impl ProviderRegistry {
    pub fn new(config: &Config) -> Self {
        let registrations = config
            .enabled_providers()
            .map(|p| ProviderRegistration {
                id: p.id.clone(),
                kind: p.kind,
                runtime_id: if p.kind == ProviderKind::Fake { SmolStr::new_static("cli") } else { p.id.clone() },
                started: false,
                healthy: false,
                last_error: None,
            })
            .collect();
        Self { registrations }
    }

    pub fn registrations(&self) -> &[ProviderRegistration] {
        &self.registrations
    }

    pub fn is_registered(&self, id: &str) -> bool {
        self.registrations.iter().any(|r| r.id == id)
    }

    /// Starts providers in config order, isolating failures (§3.8).
    pub fn start_all(&mut self, metrics: &Metrics) {
        for registration in &mut self.registrations {
            metrics.set_provider_state(&registration.id, ProviderState::Starting);
            registration.started = false;
            registration.healthy = false;
            registration.last_error = Some(format!("The {} provider is not implemented in this build yet.", registration.kind.as_str()));
            metrics.set_provider_state(&registration.id, state_of(registration));
            tracing::warn!(provider = %registration.id, kind = registration.kind.as_str(), "provider cannot start: not implemented in this build");
        }
    }

    /// Stops started providers in reverse order.
    pub fn stop_all(&mut self, metrics: &Metrics) {
        for registration in self.registrations.iter_mut().rev() {
            registration.started = false;
            registration.healthy = false;
            metrics.set_provider_state(&registration.id, ProviderState::Stopped);
        }
    }

    /// Marks a registration started and healthy, standing in for a channel implementation in
    /// tests of the readiness rules.
    #[cfg(test)]
    pub fn mark_healthy_for_tests(&mut self, id: &str) {
        if let Some(registration) = self.registrations.iter_mut().find(|r| r.id == id) {
            registration.started = true;
            registration.healthy = true;
            registration.last_error = None;
        }
    }

    pub fn any_healthy(&self) -> bool {
        self.registrations.iter().any(|r| r.started && r.healthy)
    }

    /// Provider status entries of admin `/ready` and `/diagnostics` (§2.8).
    pub fn status_json(&self) -> Vec<Value> {
        self.registrations
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "kind": r.kind.as_str(),
                    "provider": r.runtime_id,
                    "started": r.started,
                    "healthy": r.healthy,
                    "error": r.last_error.as_deref().map(redact_text),
                })
            })
            .collect()
    }

    /// Dispatches a webhook to its provider (§2.5 registry behaviour).
    pub fn handle_webhook(&self, provider_id: &str, _request: WebhookRequest<'_>) -> Result<WebhookOutcome, WebhookError> {
        let Some(registration) = self.registrations.iter().find(|r| r.id == provider_id) else {
            return Err(WebhookError::new(WebhookErrorCode::NotFound, format!("Gateway webhook provider {provider_id} was not found.")));
        };
        if registration.kind == ProviderKind::Cli {
            return Err(WebhookError::new(WebhookErrorCode::NotFound, format!("Gateway provider {provider_id} does not expose a webhook endpoint.")));
        }
        // No channel implementation can start in this build, so no registration is ever started
        // and healthy; upstream answers that state with 502.
        Err(WebhookError::new(WebhookErrorCode::Upstream, format!("Gateway provider {provider_id} is not started and healthy.")))
    }
}

/// §3.8 metric state mapping.
fn state_of(registration: &ProviderRegistration) -> ProviderState {
    match (registration.started, registration.healthy, registration.last_error.is_some()) {
        (false, _, true) => ProviderState::Failed,
        (false, _, false) => ProviderState::Stopped,
        (true, true, _) => ProviderState::Healthy,
        (true, false, _) => ProviderState::Unhealthy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{resolve, Env};

    fn config() -> Config {
        let env = Env::from_pairs([
            ("OPEN_COWORK_CLOUD_BASE_URL", "http://127.0.0.1:1"),
            ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", "occ_a_b"),
            ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", "admin-token-for-tests"),
            (
                "OPEN_COWORK_GATEWAY_PROVIDERS",
                r#"[{"id":"fake","kind":"fake","channelBindingId":"f"},{"id":"cli","kind":"cli","channelBindingId":"c"},{"id":"webhook-off","kind":"webhook","enabled":false,"channelBindingId":"w","credentials":{"sharedSecret":"s"}}]"#,
            ),
        ]);
        resolve(&json!({}), &env).unwrap()
    }

    #[test]
    fn registry_reports_unimplemented_providers_as_failed_and_dispatches_by_rule() {
        let config = config();
        let metrics = Metrics::new(&config);
        let mut registry = ProviderRegistry::new(&config);
        assert_eq!(registry.registrations().len(), 2, "disabled providers are not registered");
        assert_eq!(registry.registrations()[0].runtime_id, "cli", "the fake provider runs as cli");
        registry.start_all(&metrics);
        assert!(!registry.any_healthy());
        assert_eq!(metrics.provider_state("fake"), Some(ProviderState::Failed));
        let status = registry.status_json();
        assert_eq!(status[0]["provider"], "cli");
        assert_eq!(status[0]["error"], "The fake provider is not implemented in this build yet.");

        let headers = HeaderMap::new();
        let payload = json!({});
        let request = || WebhookRequest { payload: &payload, headers: &headers, raw_body: "{}" };
        assert_eq!(registry.handle_webhook("missing", request()).unwrap_err().code, WebhookErrorCode::NotFound);
        assert_eq!(registry.handle_webhook("webhook-off", request()).unwrap_err().code, WebhookErrorCode::NotFound);
        assert_eq!(registry.handle_webhook("cli", request()).unwrap_err().code, WebhookErrorCode::NotFound);
        assert_eq!(registry.handle_webhook("fake", request()).unwrap_err().code, WebhookErrorCode::Upstream);

        registry.stop_all(&metrics);
        assert_eq!(metrics.provider_state("cli"), Some(ProviderState::Stopped));
    }
}
