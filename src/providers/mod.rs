//! The provider registry (spec §3.1, §3.8, §2.5): one registration per enabled provider, in
//! config order, with its lifecycle flags, health and the channel implementation behind it.
//!
//! Channel implementations are a closed set dispatched through [`Provider`]. Kinds whose
//! implementation is not in this build report honestly that they cannot start: the provider is
//! `failed` with a clear `lastError`, and its webhook answers 502.

pub mod cli;
pub mod fake;
#[cfg(feature = "telegram")]
pub mod telegram;
pub mod types;

use std::rc::Rc;

use http::HeaderMap;
use serde_json::{json, Value};
use smol_str::SmolStr;

use crate::config::redact::redact_text;
use crate::config::{Config, ProviderConfig, ProviderKind};
use crate::metrics::{Metrics, ProviderState};
use cli::{CliOutputMode, CliProvider};
use fake::FakeProvider;
pub use types::*;

/// The compiled-in channel implementations.
pub enum Provider {
    Fake(FakeProvider),
    Cli(CliProvider),
    #[cfg(feature = "telegram")]
    Telegram(telegram::TelegramProvider),
}

impl Provider {
    pub fn capabilities(&self) -> &Capabilities {
        match self {
            Provider::Fake(p) => p.capabilities(),
            Provider::Cli(p) => p.capabilities(),
            #[cfg(feature = "telegram")]
            Provider::Telegram(p) => p.capabilities(),
        }
    }

    pub async fn send_text(
        &self,
        target: &ChannelTarget,
        text: &str,
        options: &SendOptions,
    ) -> Result<SentMessage, SendError> {
        match self {
            Provider::Fake(p) => {
                if !p.latency().is_zero() {
                    tokio::time::sleep(p.latency()).await;
                }
                p.send_text(target, text, options)
            }
            Provider::Cli(p) => p.send_text(target, text, options),
            #[cfg(feature = "telegram")]
            Provider::Telegram(p) => p.send_text(target, text, options).await,
        }
    }

    pub async fn edit_text(&self, target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError> {
        #[cfg(not(feature = "telegram"))]
        let _ = target;
        match self {
            Provider::Fake(p) => p.edit_text(message_id, text),
            #[cfg(feature = "telegram")]
            Provider::Telegram(p) => p.edit_text(target, message_id, text).await,
            Provider::Cli(_) => {
                Err(SendError::permanent("CLI provider does not support message editing; use appended output instead."))
            }
        }
    }

    pub async fn send_buttons(
        &self,
        target: &ChannelTarget,
        text: &str,
        buttons: &[Vec<Button>],
    ) -> Result<SentMessage, SendError> {
        match self {
            Provider::Fake(p) => p.send_buttons(target, text, buttons),
            #[cfg(feature = "telegram")]
            Provider::Telegram(p) => p.send_buttons(target, text, buttons).await,
            Provider::Cli(_) => {
                Err(SendError::permanent("CLI provider does not support inline buttons; use token approval fallback."))
            }
        }
    }

    /// Sends a file (the renderer checks `file_downloads` and `max_file_bytes` first).
    pub async fn send_file(
        &self,
        target: &ChannelTarget,
        filename: &str,
        data: &[u8],
    ) -> Result<SentMessage, SendError> {
        match self {
            Provider::Fake(p) => p.send_file(target, filename, data),
            Provider::Cli(_) => {
                Err(SendError::permanent("CLI provider does not send local files; render artifact links instead."))
            }
            #[cfg(feature = "telegram")]
            Provider::Telegram(p) => p.send_file(target, filename, data).await,
        }
    }

    pub async fn answer_interaction(&self, interaction_id: &str, text: &str) -> Result<(), SendError> {
        match self {
            Provider::Fake(p) => p.answer_interaction(interaction_id, text),
            Provider::Cli(p) => p.answer_interaction(interaction_id, text),
            #[cfg(feature = "telegram")]
            Provider::Telegram(p) => p.answer_interaction(interaction_id, text).await,
        }
    }

    /// After the inbound pipeline handled (or failed) a message of this provider.
    pub async fn after_inbound(&self, message: &InboundMessage) {
        #[cfg(feature = "telegram")]
        if let Provider::Telegram(p) = self {
            p.after_inbound(message).await;
        }
        #[cfg(not(feature = "telegram"))]
        let _ = message;
    }
}

/// How the registry builds a provider: the CLI's output goes to stdout unless a test or the demo
/// says otherwise.
pub struct ProviderFactory {
    pub cli_output: Box<dyn Fn() -> (CliOutputMode, Box<dyn std::io::Write>)>,
}

impl Default for ProviderFactory {
    fn default() -> Self {
        Self { cli_output: Box::new(|| (CliOutputMode::Json, Box::new(std::io::stdout()))) }
    }
}

impl ProviderFactory {
    /// The provider, or why it cannot run in this process.
    fn build(&self, config: &ProviderConfig, context: &StartContext<'_>) -> Result<Provider, String> {
        let unavailable = || format!("The {} provider is not implemented in this build yet.", config.kind.as_str());
        match config.kind {
            #[cfg(feature = "telegram")]
            ProviderKind::Telegram => match context.http {
                Some(http) => {
                    Ok(Provider::Telegram(telegram::TelegramProvider::new(config, http.clone(), context.state_dir)))
                }
                None => {
                    Err("The telegram provider needs the Cloud client's HTTPS connection, which is not attached."
                        .into())
                }
            },
            ProviderKind::Fake if cfg!(feature = "devcloud") => Ok(Provider::Fake(FakeProvider::new(context.body_cap))),
            ProviderKind::Cli if cfg!(feature = "cli") => {
                let (mode, out) = (self.cli_output)();
                Ok(Provider::Cli(CliProvider::new(config.id.clone(), mode, out)))
            }
            _ => Err(unavailable()),
        }
    }
}

/// What providers get from the gateway when they are built.
pub struct StartContext<'a> {
    /// `server.maxRequestBodyBytes` (the fake provider's file cap).
    pub body_cap: usize,
    /// The shared HTTPS client; `None` without a Cloud client.
    pub http: Option<&'a crate::net::https::HttpsClient>,
    /// The §8.13 state directory, if any.
    pub state_dir: Option<&'a std::path::Path>,
}

/// One enabled provider and its lifecycle flags.
pub struct ProviderRegistration {
    pub config: ProviderConfig,
    /// The runtime provider id: the config id, except `cli` for the fake provider (§8.1).
    pub runtime_id: SmolStr,
    /// The runtime kind (`cli` for the fake provider).
    pub runtime_kind: &'static str,
    pub provider: Option<Rc<Provider>>,
    pub started: bool,
    pub healthy: bool,
    pub last_error: Option<String>,
}

impl ProviderRegistration {
    pub fn id(&self) -> &str {
        &self.config.id
    }
}

/// A parsed webhook request handed to a provider.
pub struct WebhookRequest<'a> {
    pub payload: &'a Value,
    pub headers: &'a HeaderMap,
    /// The exact body bytes as UTF-8, for signature checks.
    pub raw_body: &'a str,
}

/// What a provider made of an accepted webhook.
#[derive(Debug)]
pub enum WebhookOutcome {
    /// A message for the inbound pipeline.
    Message(Box<InboundMessage>),
    /// Slack's `url_verification` challenge, answered as `200 {"challenge": …}`.
    Challenge(String),
    /// Accepted without a message (a repeated or irrelevant update).
    Ignored,
    /// A Telegram update, mapped by its (async) provider before the pipeline.
    #[cfg(feature = "telegram")]
    TelegramUpdate(telegram::TelegramProvider, Value),
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
pub struct ProviderRegistry {
    registrations: Vec<ProviderRegistration>,
}

impl ProviderRegistry {
    pub fn new(config: &Config) -> Self {
        let registrations = config
            .enabled_providers()
            .map(|p| {
                let fake = p.kind == ProviderKind::Fake;
                ProviderRegistration {
                    config: p.clone(),
                    runtime_id: if fake { SmolStr::new_static("cli") } else { p.id.clone() },
                    runtime_kind: if fake { "cli" } else { p.kind.as_str() },
                    provider: None,
                    started: false,
                    healthy: false,
                    last_error: None,
                }
            })
            .collect();
        Self { registrations }
    }

    pub fn registrations(&self) -> &[ProviderRegistration] {
        &self.registrations
    }

    pub fn get(&self, id: &str) -> Option<&ProviderRegistration> {
        self.registrations.iter().find(|r| r.id() == id)
    }

    pub fn is_registered(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// The first started, healthy registration for a channel binding (deliveries route by binding).
    pub fn for_binding(&self, channel_binding_id: &str) -> Option<&ProviderRegistration> {
        self.registrations.iter().find(|r| r.config.channel_binding_id == channel_binding_id)
    }

    /// Starts providers in config order, isolating failures (§3.8).
    pub fn start_all(&mut self, metrics: &Metrics, factory: &ProviderFactory, context: &StartContext<'_>) {
        for registration in &mut self.registrations {
            metrics.set_provider_state(registration.id(), ProviderState::Starting);
            match factory.build(&registration.config, context) {
                Ok(provider) => {
                    // A bot is healthy once its own task has reached Telegram.
                    let starting = match &provider {
                        #[cfg(feature = "telegram")]
                        Provider::Telegram(_) => Some("Telegram is starting.".to_owned()),
                        _ => None,
                    };
                    registration.provider = Some(Rc::new(provider));
                    registration.started = true;
                    registration.healthy = starting.is_none();
                    registration.last_error = starting;
                }
                Err(reason) => {
                    registration.started = false;
                    registration.healthy = false;
                    tracing::warn!(provider = %registration.config.id, kind = registration.config.kind.as_str(), "provider cannot start: {reason}");
                    registration.last_error = Some(reason);
                }
            }
            metrics.set_provider_state(registration.id(), state_of(registration));
        }
    }

    /// Stops started providers in reverse order.
    pub fn stop_all(&mut self, metrics: &Metrics) {
        for registration in self.registrations.iter_mut().rev() {
            registration.started = false;
            registration.healthy = false;
            registration.provider = None;
            metrics.set_provider_state(registration.id(), ProviderState::Stopped);
        }
    }

    /// Marks a provider degraded or recovered (the delivery circuit breaker uses this).
    pub fn set_health(&mut self, id: &str, healthy: bool, error: Option<String>, metrics: &Metrics) {
        if let Some(registration) = self.registrations.iter_mut().find(|r| r.config.id == id) {
            if registration.started {
                registration.healthy = healthy;
                registration.last_error = error;
                metrics.set_provider_state(id, state_of(registration));
            }
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
                    "id": r.config.id,
                    "kind": r.config.kind.as_str(),
                    "provider": r.runtime_id,
                    "started": r.started,
                    "healthy": r.healthy,
                    "error": r.last_error.as_deref().map(redact_text),
                })
            })
            .collect()
    }

    /// Turns a webhook into an inbound message (§2.5 registry behaviour).
    pub fn handle_webhook(
        &self,
        provider_id: &str,
        request: WebhookRequest<'_>,
        now_ms: u64,
    ) -> Result<WebhookOutcome, WebhookError> {
        let Some(registration) = self.get(provider_id) else {
            return Err(WebhookError::new(
                WebhookErrorCode::NotFound,
                format!("Gateway webhook provider {provider_id} was not found."),
            ));
        };
        if registration.config.kind == ProviderKind::Cli {
            return Err(WebhookError::new(
                WebhookErrorCode::NotFound,
                format!("Gateway provider {provider_id} does not expose a webhook endpoint."),
            ));
        }
        if !(registration.started && registration.healthy) {
            return Err(WebhookError::new(
                WebhookErrorCode::Upstream,
                format!("Gateway provider {provider_id} is not started and healthy."),
            ));
        }
        match registration.provider.as_deref() {
            Some(Provider::Fake(_)) => {
                Ok(WebhookOutcome::Message(Box::new(fake::inbound_from_webhook(request.payload, now_ms))))
            }
            #[cfg(feature = "telegram")]
            Some(Provider::Telegram(bot)) => {
                // D1: the header must carry the configured secret.
                let Some(webhook) = bot.webhook() else {
                    return Err(WebhookError::new(
                        WebhookErrorCode::NotFound,
                        "Telegram webhook updates require webhook mode",
                    ));
                };
                let presented =
                    request.headers.get("x-telegram-bot-api-secret-token").and_then(|v| v.to_str().ok()).unwrap_or("");
                if !crate::util::ct::constant_time_equal(presented, webhook.secret.expose()) {
                    return Err(WebhookError::new(
                        WebhookErrorCode::Auth,
                        "Telegram webhook secret verification failed",
                    ));
                }
                if bot.seen_before(request.payload) {
                    return Ok(WebhookOutcome::Ignored);
                }
                Ok(WebhookOutcome::TelegramUpdate(bot.clone(), request.payload.clone()))
            }
            _ => Err(WebhookError::new(
                WebhookErrorCode::Upstream,
                format!("Gateway provider {provider_id} has no webhook handler in this build."),
            )),
        }
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

    fn config() -> Config {
        crate::config::test_config(&[(
            "OPEN_COWORK_GATEWAY_PROVIDERS",
            r#"[{"id":"fake","kind":"fake","channelBindingId":"f"},{"id":"cli","kind":"cli","channelBindingId":"c"},{"id":"slack","kind":"slack","channelBindingId":"s","credentials":{"botToken":"xoxb-1","signingSecret":"x"}},{"id":"webhook-off","kind":"webhook","enabled":false,"channelBindingId":"w","credentials":{"sharedSecret":"s"}}]"#,
        )])
    }

    #[test]
    fn registry_starts_what_this_build_implements_and_dispatches_by_rule() {
        let config = config();
        let metrics = Metrics::new(&config);
        let mut registry = ProviderRegistry::new(&config);
        assert_eq!(registry.registrations().len(), 3, "disabled providers are not registered");
        assert_eq!(registry.registrations()[0].runtime_id, "cli", "the fake provider runs as cli");
        let factory = ProviderFactory { cli_output: Box::new(|| (CliOutputMode::Json, Box::new(std::io::sink()))) };
        registry.start_all(&metrics, &factory, &StartContext { body_cap: 1024, http: None, state_dir: None });
        assert!(registry.any_healthy());
        assert_eq!(metrics.provider_state("fake"), Some(ProviderState::Healthy));
        assert_eq!(metrics.provider_state("slack"), Some(ProviderState::Failed));
        let status = registry.status_json();
        assert_eq!(status[0]["provider"], "cli");
        assert_eq!(status[2]["error"], "The slack provider is not implemented in this build yet.");
        assert_eq!(registry.for_binding("c").map(|r| r.id()), Some("cli"));

        let headers = HeaderMap::new();
        let payload = json!({"text": "hi"});
        let request = || WebhookRequest { payload: &payload, headers: &headers, raw_body: "{}" };
        assert_eq!(registry.handle_webhook("missing", request(), 0).unwrap_err().code, WebhookErrorCode::NotFound);
        assert_eq!(registry.handle_webhook("webhook-off", request(), 0).unwrap_err().code, WebhookErrorCode::NotFound);
        assert_eq!(registry.handle_webhook("cli", request(), 0).unwrap_err().code, WebhookErrorCode::NotFound);
        assert_eq!(registry.handle_webhook("slack", request(), 0).unwrap_err().code, WebhookErrorCode::Upstream);
        assert!(matches!(registry.handle_webhook("fake", request(), 0), Ok(WebhookOutcome::Message(_))));

        registry.stop_all(&metrics);
        assert_eq!(metrics.provider_state("cli"), Some(ProviderState::Stopped));
    }
}
