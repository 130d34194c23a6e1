//! The running gateway's shared state: configuration, metrics, providers, readiness, the webhook
//! rate limiter, the Cloud delivery interface and the shutdown handle. Everything runs on one
//! thread, so the state is an `Rc` with `RefCell`s and nothing is locked.

pub mod deliveries;
pub mod inbound;
pub mod interactions;
pub mod readiness;
pub mod sessions;
pub mod state;

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};

use crate::cloud::client::CloudClient;
use crate::cloud::DeliveryOperations;
use crate::config::Config;
use crate::http::client_ip::Cidr;
use crate::http::rate_limit::RateLimiter;
use crate::logging::WarnLimiter;
use crate::metrics::Metrics;
use crate::providers::{ProviderFactory, ProviderRegistry};
use crate::shutdown::Shutdown;
use readiness::{Condition, Readiness};

/// Readiness condition: the Cloud delivery subscription is live.
pub const DELIVERY_SUBSCRIPTION: &str = "delivery_subscription";
/// Readiness condition: Cloud accepts the service token (401/403 break it).
pub const CLOUD_AUTH: &str = "cloud_auth";

/// Everything request handlers and tasks share.
pub struct Gateway {
    pub config: Config,
    pub metrics: Metrics,
    pub providers: RefCell<ProviderRegistry>,
    pub readiness: RefCell<Readiness>,
    pub rate_limiter: RefCell<RateLimiter>,
    /// `None` until a Cloud client is attached: the delivery routes then answer 503.
    pub cloud: Option<Rc<dyn DeliveryOperations>>,
    /// The Cloud client the pipelines use (the same object as `cloud` in a running daemon).
    pub client: Option<Rc<CloudClient>>,
    /// The open session streams.
    pub sessions: RefCell<sessions::SessionStreams>,
    factory: ProviderFactory,
    pub shutdown: Shutdown,
    /// `server.trustedProxyCidrs`, parsed once; entries that do not parse never match (§1.3).
    pub trusted_proxies: Vec<Cidr>,
    /// Rate limit for warnings that can repeat on every retry.
    pub warnings: WarnLimiter,
    started: std::cell::Cell<bool>,
    clock_origin: std::time::Instant,
}

impl Gateway {
    /// A gateway without pipelines (the operator routes only), for tests of those routes.
    pub fn new(config: Config, cloud: Option<Rc<dyn DeliveryOperations>>) -> Rc<Self> {
        Self::build(config, cloud, None, ProviderFactory::default())
    }

    /// A gateway whose pipelines talk to Cloud through `client`.
    pub fn with_client(config: Config, client: Rc<CloudClient>, factory: ProviderFactory) -> Rc<Self> {
        Self::build(config, Some(Rc::clone(&client) as Rc<dyn DeliveryOperations>), Some(client), factory)
    }

    fn build(
        config: Config,
        cloud: Option<Rc<dyn DeliveryOperations>>,
        client: Option<Rc<CloudClient>>,
        factory: ProviderFactory,
    ) -> Rc<Self> {
        let metrics = Metrics::new(&config);
        let providers = ProviderRegistry::new(&config);
        let mut readiness = Readiness::default();
        let reason = if cloud.is_some() {
            "The Cloud delivery subscription is not connected yet."
        } else {
            "No Cloud client is attached, so there is no delivery subscription."
        };
        readiness.set(DELIVERY_SUBSCRIPTION, false, Some(reason.into()));
        let config_state_file = config.state_dir.as_deref().map(state::StateFile::in_directory);
        let config_cidrs = config.server.trusted_proxy_cidrs.iter().filter_map(|c| Cidr::parse(c)).collect();
        Rc::new(Self {
            config,
            metrics,
            providers: RefCell::new(providers),
            readiness: RefCell::new(readiness),
            rate_limiter: RefCell::new(RateLimiter::default()),
            cloud,
            client,
            sessions: RefCell::new(sessions::SessionStreams::new(config_state_file)),
            factory,
            shutdown: Shutdown::new(),
            trusted_proxies: config_cidrs,
            warnings: WarnLimiter::new(std::time::Duration::from_secs(60)),
            started: std::cell::Cell::new(false),
            clock_origin: std::time::Instant::now(),
        })
    }

    /// Milliseconds on a monotonic clock, for the webhook rate limiter.
    pub fn clock_ms(&self) -> u64 {
        self.clock_origin.elapsed().as_millis() as u64
    }

    /// Starts the providers and marks the runtime started (§3.9 step 3.1).
    pub fn start(&self) {
        let context = crate::providers::StartContext {
            body_cap: self.config.server.max_request_body_bytes,
            http: self.client.as_ref().map(|c| c.http()),
            state_dir: self.config.state_dir.as_deref(),
        };
        self.providers.borrow_mut().start_all(&self.metrics, &self.factory, &context);
        self.started.set(true);
    }

    /// Closes session streams, stops providers in reverse order and clears `started`.
    pub fn stop(&self) {
        self.sessions.borrow_mut().close_all();
        self.metrics.set_gauge(crate::metrics::Stat::SessionStreams, 0);
        self.providers.borrow_mut().stop_all(&self.metrics);
        self.started.set(false);
    }

    /// Copies the providers' own counters into the metrics (before they are shown).
    pub fn sync_provider_counters(&self) {
        #[cfg(feature = "telegram")]
        for registration in self.providers.borrow().registrations() {
            if let Some(crate::providers::Provider::Telegram(bot)) = registration.provider.as_deref() {
                for (event, value) in bot.counters() {
                    self.metrics.set_provider_event(registration.id(), event, value);
                }
            }
        }
    }

    /// Started, not draining, one healthy provider, and every registered condition holds.
    pub fn is_ready(&self) -> bool {
        self.started.get()
            && !self.shutdown.is_draining()
            && self.providers.borrow().any_healthy()
            && self.readiness.borrow().all_hold()
    }

    /// Every condition, including the built-in ones, for admin `/ready` and `/diagnostics`.
    pub fn readiness_conditions(&self) -> Vec<Condition> {
        let condition = |name, ok: bool, reason: &str| Condition { name, ok, reason: (!ok).then(|| reason.to_owned()) };
        let mut conditions = vec![
            condition("started", self.started.get(), "The gateway runtime has not started."),
            condition("not_draining", !self.shutdown.is_draining(), "The gateway is shutting down."),
            condition("provider_healthy", self.providers.borrow().any_healthy(), "No provider is started and healthy."),
        ];
        conditions.extend(self.readiness.borrow().conditions().iter().cloned());
        conditions
    }

    /// The `deliveryOperator` block of `/diagnostics` (§2.9).
    pub fn delivery_operator_json(&self) -> Value {
        let bindings = self.config.channel_binding_ids();
        let has_bindings = !bindings.is_empty();
        let listing = self.cloud.is_some();
        let retry = self.cloud.as_ref().is_some_and(|c| c.supports_retry());
        let dead_letter = self.cloud.as_ref().is_some_and(|c| c.supports_dead_letter());
        let mut reasons = Vec::new();
        if self.cloud.is_none() {
            reasons.push("Cloud client is not attached to this gateway HTTP server.");
        }
        if !has_bindings {
            reasons.push("No enabled provider channel bindings are configured.");
        }
        if !listing {
            reasons.push("Cloud delivery listing is not available.");
        }
        if !retry {
            reasons.push("Cloud delivery retry is not available.");
        }
        if !dead_letter {
            reasons.push("Cloud delivery dead-letter is not available.");
        }
        json!({
            "scope": "configured-channel-bindings",
            "channelBindingIds": bindings,
            "listAllowed": has_bindings && listing,
            "retryAllowed": has_bindings && listing && retry,
            "deadLetterAllowed": has_bindings && listing && dead_letter,
            "disabledReason": if reasons.is_empty() { Value::Null } else { Value::from(reasons.join(" ")) },
        })
    }
}
