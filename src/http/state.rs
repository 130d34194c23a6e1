//! What the HTTP surface holds: the handles its routes read (configuration, metrics, readiness,
//! the channel registry), the ingress queue webhooks push into, the Cloud delivery operations the
//! operator routes call, and its own per-client rate limiter. Built once by the wiring.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use super::body::BodyBudget;
use super::client_ip::Cidr;
use super::rate_limit::RateLimiter;
use crate::channel::{ChannelRegistry, Ingress};
use crate::cloud::DeliveryOperations;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::runtime::Readiness;
use crate::shutdown::Shutdown;

pub struct HttpState {
    pub config: Rc<Config>,
    pub metrics: Rc<Metrics>,
    pub readiness: Readiness,
    pub registry: Rc<ChannelRegistry>,
    /// Where webhook messages go; a full queue answers 503.
    pub ingress: Ingress,
    /// `None` until a Cloud client is attached: the delivery routes then answer 503.
    pub deliveries: Option<Rc<dyn DeliveryOperations>>,
    pub shutdown: Shutdown,
    pub rate_limiter: RefCell<RateLimiter>,
    /// What request bodies being read may hold together (`server.maxBufferedBodyBytes`).
    pub body_budget: BodyBudget,
    /// `server.trustedProxyCidrs`, parsed once; entries that do not parse never match.
    pub trusted_proxies: Vec<Cidr>,
    clock_origin: Instant,
}

impl HttpState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Rc<Config>,
        metrics: Rc<Metrics>,
        readiness: Readiness,
        registry: Rc<ChannelRegistry>,
        ingress: Ingress,
        deliveries: Option<Rc<dyn DeliveryOperations>>,
        shutdown: Shutdown,
    ) -> Self {
        let trusted_proxies = config.server.trusted_proxy_cidrs.iter().filter_map(|c| Cidr::parse(c)).collect();
        let body_budget = BodyBudget::new(config.server.max_buffered_body_bytes);
        Self {
            config,
            metrics,
            readiness,
            registry,
            ingress,
            deliveries,
            shutdown,
            rate_limiter: RefCell::new(RateLimiter::default()),
            body_budget,
            trusted_proxies,
            clock_origin: Instant::now(),
        }
    }

    /// Milliseconds on a monotonic clock, for the webhook rate limiter.
    pub fn clock_ms(&self) -> u64 {
        self.clock_origin.elapsed().as_millis() as u64
    }

    /// A state with unstarted channels and no pipelines behind it, for tests of the routes.
    #[cfg(test)]
    pub fn for_tests(config: Config, deliveries: Option<Rc<dyn DeliveryOperations>>) -> Rc<Self> {
        let config = Rc::new(config);
        let metrics = Rc::new(Metrics::new(&config));
        let registry = Rc::new(ChannelRegistry::new(&config, Rc::clone(&metrics)));
        let shutdown = Shutdown::new();
        let readiness = Readiness::new(shutdown.clone(), Rc::clone(&registry), None);
        let (ingress, queue) = Ingress::bounded(16);
        // The queue stays open (and unread) for as long as the test runs.
        std::mem::forget(queue);
        Rc::new(Self::new(config, metrics, readiness, registry, ingress, deliveries, shutdown))
    }
}
