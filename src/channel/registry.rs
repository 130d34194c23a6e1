//! The channel registry: one registration per enabled provider, in config
//! order, with its lifecycle and health and the channel behind it. It never names a kind: channels
//! are built by a function the wiring passes in (`providers::build`).

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};
use smol_str::SmolStr;

use super::health::{HealthCell, HealthChanges};
use super::{
    Channel, ChannelContext, ChannelHealth, Ingress, WebhookError, WebhookErrorCode, WebhookReply, WebhookRequest,
};
use crate::config::redact::redact_text;
use crate::config::{Config, ProviderConfig};
use crate::metrics::{Metrics, ProviderState};
use crate::shutdown::Shutdown;

/// Builds the channel for one provider entry, or says why it cannot run in this process.
pub type ChannelBuilder<'a> = dyn Fn(&ProviderConfig) -> Result<Rc<dyn Channel>, String> + 'a;

/// One enabled provider.
pub struct Registration {
    pub config: ProviderConfig,
    channel: RefCell<Option<Rc<dyn Channel>>>,
    /// Why the channel could not be built, if it could not.
    start_error: RefCell<Option<String>>,
    health: HealthCell,
}

impl Registration {
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The channel, while it is started.
    pub fn channel(&self) -> Option<Rc<dyn Channel>> {
        self.channel.borrow().clone()
    }

    /// Built, started (its platform accepted it), and not reporting a failed start.
    pub fn is_started(&self) -> bool {
        self.channel.borrow().is_some() && !self.health.start_failed() && !self.health.is_starting()
    }

    /// The channel's own health handle, for tests that play the channel.
    #[cfg(test)]
    pub(crate) fn health_reporter(&self) -> super::HealthReporter {
        self.health.reporter()
    }

    /// Could not be built, or its start failed (a rejected token, a refused registration).
    pub fn start_failed(&self) -> bool {
        self.start_error.borrow().is_some() || self.health.start_failed()
    }

    pub fn health(&self) -> ChannelHealth {
        self.health.snapshot()
    }

    /// Started, and both receiving and sending work.
    pub fn is_healthy(&self) -> bool {
        self.is_started() && self.health().is_healthy()
    }

    /// Started and able to send: its deliveries may be claimed. A poller in trouble (a 409
    /// conflict, a back-off) does not stop sends; a rejected token or an open circuit does.
    pub fn can_send(&self) -> bool {
        self.is_started() && self.health().sending.is_none()
    }

    /// Opens (`Some(reason)`) or closes (`None`) this channel's delivery circuit.
    pub fn set_circuit(&self, reason: Option<String>) {
        self.health.set_circuit(reason);
    }

    /// What is wrong with the channel, if anything: why it could not be built, else its first
    /// health problem.
    pub fn problem(&self) -> Option<String> {
        self.start_error.borrow().clone().or_else(|| self.health().problem().map(str::to_owned))
    }

    /// The state metrics show: not started is `failed` with a start error, `starting` while a built
    /// channel starts, else `stopped`; started is `healthy` or `unhealthy` as its health says.
    fn state(&self) -> ProviderState {
        let failed = self.start_failed();
        match (self.is_started(), self.is_healthy(), failed) {
            (false, _, true) => ProviderState::Failed,
            (false, _, false) if self.channel.borrow().is_some() => ProviderState::Starting,
            (false, _, false) => ProviderState::Stopped,
            (true, true, _) => ProviderState::Healthy,
            (true, false, _) => ProviderState::Unhealthy,
        }
    }
}

/// All registrations, in config order.
pub struct ChannelRegistry {
    registrations: Vec<Registration>,
    metrics: Rc<Metrics>,
    changes: HealthChanges,
}

impl ChannelRegistry {
    pub fn new(config: &Config, metrics: Rc<Metrics>) -> Self {
        let changes: HealthChanges = Rc::new(tokio::sync::watch::channel(0).0);
        let registrations = config
            .enabled_providers()
            .map(|p| Registration {
                config: p.clone(),
                channel: RefCell::new(None),
                start_error: RefCell::new(None),
                health: HealthCell::new(Rc::clone(&changes)),
            })
            .collect();
        Self { registrations, metrics, changes }
    }

    /// Changes whenever a channel starts, stops or its health changes.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The channel bindings whose channels can send now, deduplicated, in config order.
    pub fn sendable_bindings(&self) -> Vec<SmolStr> {
        let mut bindings: Vec<SmolStr> = Vec::new();
        for registration in self.registrations.iter().filter(|r| r.can_send()) {
            if !bindings.contains(&registration.config.channel_binding_id) {
                bindings.push(registration.config.channel_binding_id.clone());
            }
        }
        bindings
    }

    pub fn registrations(&self) -> &[Registration] {
        &self.registrations
    }

    pub fn get(&self, id: &str) -> Option<&Registration> {
        self.registrations.iter().find(|r| r.id() == id)
    }

    pub fn is_registered(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// The registration serving a channel binding (deliveries route by binding).
    pub fn for_binding(&self, channel_binding_id: &str) -> Option<&Registration> {
        self.registrations.iter().find(|r| r.config.channel_binding_id == channel_binding_id)
    }

    /// Builds and starts every channel in config order, isolating failures: a channel
    /// that cannot be built is `failed` with its reason, and the others run.
    pub fn start_all(&self, build: &ChannelBuilder<'_>, ingress: &Ingress, shutdown: &Shutdown) {
        for registration in &self.registrations {
            self.metrics.set_provider_state(registration.id(), ProviderState::Starting);
            registration.health.reset();
            match build(&registration.config) {
                Ok(channel) => {
                    *registration.start_error.borrow_mut() = None;
                    channel.start(ChannelContext {
                        ingress: ingress.clone(),
                        drain: shutdown.signal(),
                        health: registration.health.reporter(),
                    });
                    *registration.channel.borrow_mut() = Some(channel);
                    self.changes.send_modify(|version| *version = version.wrapping_add(1));
                }
                Err(reason) => {
                    tracing::warn!(provider = %registration.config.id, kind = registration.config.kind.as_str(), reason = %crate::config::redact::Redacted(&reason), "provider cannot start");
                    *registration.start_error.borrow_mut() = Some(reason);
                }
            }
            self.metrics.set_provider_state(registration.id(), registration.state());
        }
    }

    /// Stops started channels in reverse order.
    pub fn stop_all(&self) {
        for registration in self.registrations.iter().rev() {
            let channel = registration.channel.borrow_mut().take();
            if let Some(channel) = channel {
                channel.stop();
            }
            registration.health.reset();
            self.metrics.set_provider_state(registration.id(), ProviderState::Stopped);
        }
    }

    pub fn any_healthy(&self) -> bool {
        self.registrations.iter().any(Registration::is_healthy)
    }

    /// Waits until a channel's start is settled: started, failed, or not registered at all (a
    /// channel checking its token with the platform is neither yet).
    pub async fn settled(&self, id: &str) {
        let mut changes = self.changes();
        while self.get(id).is_some_and(|r| r.health.is_starting() && r.channel().is_some()) {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn any_started(&self) -> bool {
        self.registrations.iter().any(Registration::is_started)
    }

    /// Copies each channel's state and own counters into the metrics, before they are shown.
    pub fn sync_metrics(&self) {
        for registration in &self.registrations {
            self.metrics.set_provider_state(registration.id(), registration.state());
            if let Some(channel) = registration.channel() {
                for (event, value) in channel.counters() {
                    self.metrics.set_provider_event(registration.id(), event, value);
                }
            }
        }
    }

    /// Provider status entries of admin `/ready` and `/diagnostics`.
    pub fn status_json(&self) -> Vec<Value> {
        self.registrations
            .iter()
            .map(|r| {
                let health = r.health();
                json!({
                    "id": r.config.id,
                    "kind": r.config.kind.as_str(),
                    "provider": r.config.runtime_id(),
                    "started": r.is_started(),
                    "healthy": r.is_healthy(),
                    "receiving": r.is_started() && health.receiving.is_none(),
                    "sending": r.is_started() && health.sending.is_none(),
                    "error": r.problem().as_deref().map(redact_text),
                })
            })
            .collect()
    }

    /// The header check of a started channel's webhook, before its body is read; an unknown or
    /// unstarted provider passes here and is refused by [`ChannelRegistry::handle_webhook`] after
    /// the body checks, in upstream's order.
    pub fn check_webhook_headers(&self, provider_id: &str, headers: &http::HeaderMap) -> Result<(), WebhookError> {
        match self.get(provider_id).and_then(Registration::channel) {
            Some(channel) => channel.check_webhook_headers(headers),
            None => Ok(()),
        }
    }

    /// Hands a webhook to its channel: an unknown id is `not_found` (404), a channel that is not
    /// started or cannot receive is `upstream` (502).
    pub async fn handle_webhook(
        &self,
        provider_id: &str,
        request: WebhookRequest<'_>,
    ) -> Result<WebhookReply, WebhookError> {
        let Some(registration) = self.get(provider_id) else {
            return Err(WebhookError::new(
                WebhookErrorCode::NotFound,
                format!("Gateway webhook provider {provider_id} was not found."),
            ));
        };
        // Receiving is what a webhook needs: a channel whose sends are failing (an open delivery
        // circuit, a token check still running) still takes its platform's events in.
        let channel =
            registration.channel().filter(|_| registration.is_started() && registration.health().receiving.is_none());
        let Some(channel) = channel else {
            return Err(WebhookError::new(
                WebhookErrorCode::Upstream,
                format!("Gateway provider {provider_id} is not started and receiving."),
            ));
        };
        channel.check_webhook_headers(request.headers)?;
        channel.handle_webhook(request).await
    }

    /// The runtime id of a provider (`cli` for the fake provider), for targets and telemetry.
    pub fn runtime_id(&self, provider_id: &str) -> Option<SmolStr> {
        self.get(provider_id).map(|r| r.config.runtime_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{async_trait, Capabilities, SendError, SendOptions, SentMessage};

    struct Quiet {
        id: SmolStr,
        capabilities: Capabilities,
    }

    #[async_trait(?Send)]
    impl Channel for Quiet {
        fn id(&self) -> &str {
            &self.id
        }
        fn capabilities(&self) -> &Capabilities {
            &self.capabilities
        }
        async fn send_text(
            &self,
            _: &crate::channel::ChannelTarget,
            _: &str,
            _: &SendOptions,
        ) -> Result<SentMessage, SendError> {
            Err(SendError::permanent("quiet"))
        }
    }

    fn config() -> Config {
        crate::config::test_config(&[(
            "OPEN_COWORK_GATEWAY_PROVIDERS",
            r#"[{"id":"fake","kind":"fake","channelBindingId":"f"},{"id":"cli","kind":"cli","channelBindingId":"c"},{"id":"cli-off","kind":"cli","enabled":false,"channelBindingId":"o"}]"#,
        )])
    }

    #[test]
    fn start_isolates_failures_and_status_names_the_reason() {
        let config = config();
        let metrics = Rc::new(Metrics::new(&config));
        let registry = ChannelRegistry::new(&config, Rc::clone(&metrics));
        assert_eq!(registry.registrations().len(), 2, "disabled providers are not registered");
        let build = |p: &ProviderConfig| -> Result<Rc<dyn Channel>, String> {
            if p.id == "cli" {
                return Err("The cli channel cannot run here.".into());
            }
            Ok(Rc::new(Quiet { id: p.id.clone(), capabilities: Capabilities::text_only(4096) }))
        };
        let (ingress, _queue) = Ingress::bounded(4);
        registry.start_all(&build, &ingress, &Shutdown::new());
        assert!(registry.any_healthy());
        assert!(registry.registrations()[0].is_started() && registry.registrations()[0].is_healthy());
        assert_eq!(metrics.provider_state("fake"), Some(ProviderState::Healthy));
        assert_eq!(metrics.provider_state("cli"), Some(ProviderState::Failed));
        let status = registry.status_json();
        assert_eq!(status[0]["provider"], "cli", "the fake provider runs as cli");
        assert_eq!(status[1]["error"], "The cli channel cannot run here.");
        assert_eq!(registry.for_binding("f").map(Registration::id), Some("fake"));

        registry.registrations()[0].set_circuit(Some("circuit open".into()));
        assert!(!registry.any_healthy());
        assert_eq!(registry.status_json()[0]["sending"], false);
        assert_eq!(registry.status_json()[0]["receiving"], true);
        registry.registrations()[0].set_circuit(None);

        registry.stop_all();
        assert_eq!(metrics.provider_state("fake"), Some(ProviderState::Stopped));
        assert!(!registry.any_healthy());
    }

    #[tokio::test]
    async fn webhooks_go_to_started_healthy_channels_only() {
        let config = config();
        let registry = ChannelRegistry::new(&config, Rc::new(Metrics::new(&config)));
        let headers = http::HeaderMap::new();
        let payload = json!({});
        let request = || WebhookRequest { payload: &payload, headers: &headers, raw_body: "{}", received_at_ms: 0 };
        let code = |r: Result<WebhookReply, WebhookError>| r.err().map(|e| e.code);
        assert_eq!(code(registry.handle_webhook("missing", request()).await), Some(WebhookErrorCode::NotFound));
        assert_eq!(code(registry.handle_webhook("fake", request()).await), Some(WebhookErrorCode::Upstream));
        let build = |p: &ProviderConfig| -> Result<Rc<dyn Channel>, String> {
            Ok(Rc::new(Quiet { id: p.id.clone(), capabilities: Capabilities::text_only(4096) }))
        };
        let (ingress, _queue) = Ingress::bounded(4);
        registry.start_all(&build, &ingress, &Shutdown::new());
        assert_eq!(
            code(registry.handle_webhook("fake", request()).await),
            Some(WebhookErrorCode::NotFound),
            "a channel without a webhook answers with the trait's default"
        );
        let fake = &registry.registrations()[0];
        fake.set_circuit(Some("circuit open".into()));
        assert_eq!(
            code(registry.handle_webhook("fake", request()).await),
            Some(WebhookErrorCode::NotFound),
            "failing sends do not stop the platform's events from coming in"
        );
        fake.health.reporter().set_receiving(Some("conflict".into()));
        assert_eq!(code(registry.handle_webhook("fake", request()).await), Some(WebhookErrorCode::Upstream));
    }
}
