//! Readiness as named conditions (spec §2.8): the gateway is ready when it has started, is not
//! draining, at least one provider is healthy, the Cloud delivery subscription is live and Cloud
//! accepts the service token. The conditions are read from their owners when asked (the
//! registry, the drain signal, the streams' status watch), never copied into a shared table.

use std::cell::Cell;
use std::rc::Rc;

use serde::Serialize;
use tokio::sync::watch;

use crate::channel::ChannelRegistry;
use crate::cloud::streams::{CloudStatus, Subscription};
use crate::shutdown::Shutdown;

/// Readiness condition: the Cloud delivery subscription is live.
pub const DELIVERY_SUBSCRIPTION: &str = "delivery_subscription";
/// Readiness condition: Cloud accepts the service token (401/403 break it).
pub const CLOUD_AUTH: &str = "cloud_auth";
/// How long a delivery subscription that was live may be reopening before `/ready` turns 503:
/// Cloud closes every stream after 30 minutes, and a load balancer should not see that.
pub const RECONNECT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A condition's current verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub name: &'static str,
    pub ok: bool,
    /// Why it does not hold; redacted text, shown to admin callers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The readiness view handed to the operator routes: cheap to clone, reads its sources live.
#[derive(Clone)]
pub struct Readiness {
    started: Rc<Cell<bool>>,
    shutdown: Shutdown,
    registry: Rc<ChannelRegistry>,
    /// The streams' status; `None` when no Cloud client is attached (operator-route tests).
    cloud: Option<watch::Receiver<CloudStatus>>,
}

impl Readiness {
    pub fn new(shutdown: Shutdown, registry: Rc<ChannelRegistry>, cloud: Option<watch::Receiver<CloudStatus>>) -> Self {
        Self { started: Rc::new(Cell::new(false)), shutdown, registry, cloud }
    }

    /// Marks the runtime started (§3.9 step 3.1) or stopped.
    pub fn set_started(&self, started: bool) {
        self.started.set(started);
    }

    pub fn is_ready(&self) -> bool {
        self.conditions().iter().all(|c| c.ok)
    }

    /// Every condition, in a fixed order, for admin `/ready` and `/diagnostics`.
    pub fn conditions(&self) -> Vec<Condition> {
        let condition = |name, ok: bool, reason: &str| Condition { name, ok, reason: (!ok).then(|| reason.to_owned()) };
        let from = |name, result: Result<(), String>| Condition { name, ok: result.is_ok(), reason: result.err() };
        let mut conditions = vec![
            condition("started", self.started.get(), "The gateway runtime has not started."),
            condition("not_draining", !self.shutdown.is_draining(), "The gateway is shutting down."),
            condition("provider_healthy", self.registry.any_healthy(), "No provider is started and healthy."),
        ];
        match &self.cloud {
            Some(status) => {
                let status = status.borrow();
                let subscription = match &status.subscription {
                    Subscription::Live => Ok(()),
                    Subscription::Reconnecting { since, .. } if since.elapsed() < RECONNECT_GRACE => Ok(()),
                    Subscription::Reconnecting { reason, .. } | Subscription::Down(reason) => Err(reason.clone()),
                };
                conditions.push(from(DELIVERY_SUBSCRIPTION, subscription));
                conditions.push(from(CLOUD_AUTH, status.token.clone()));
            }
            None => conditions.push(condition(
                DELIVERY_SUBSCRIPTION,
                false,
                "No Cloud client is attached, so there is no delivery subscription.",
            )),
        }
        conditions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Ingress;
    use crate::cloud::streams::CloudStatusReporter;
    use crate::metrics::Metrics;

    #[test]
    fn every_condition_must_hold_and_each_names_its_reason() {
        let config = crate::config::test_config(&[]);
        let registry = Rc::new(ChannelRegistry::new(&config, Rc::new(Metrics::new(&config))));
        let shutdown = Shutdown::new();
        let (_reporter, status) = CloudStatusReporter::new("The Cloud delivery subscription is not connected yet.");
        let readiness = Readiness::new(shutdown.clone(), Rc::clone(&registry), Some(status));
        let failing = |r: &Readiness| r.conditions().into_iter().filter(|c| !c.ok).map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(failing(&readiness), ["started", "provider_healthy", DELIVERY_SUBSCRIPTION]);
        readiness.set_started(true);
        let factory = crate::providers::ProviderFactory::with_cli_output(|| {
            (crate::providers::cli::CliOutputMode::Json, Box::new(std::io::sink()))
        });
        let (ingress, _queue) = Ingress::bounded(1);
        registry.start_all(&|p| factory.build(p), &ingress, &shutdown);
        assert_eq!(failing(&readiness), [DELIVERY_SUBSCRIPTION]);
        let reason = readiness.conditions().into_iter().find(|c| !c.ok).and_then(|c| c.reason);
        assert_eq!(reason.as_deref(), Some("The Cloud delivery subscription is not connected yet."));
        shutdown.begin_drain();
        assert!(failing(&readiness).contains(&"not_draining"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reopening_subscription_keeps_ready_for_the_grace_only() {
        let config = crate::config::test_config(&[]);
        let registry = Rc::new(ChannelRegistry::new(&config, Rc::new(Metrics::new(&config))));
        let (status, watch) = watch::channel(CloudStatus {
            subscription: Subscription::Reconnecting { since: tokio::time::Instant::now(), reason: "reopening".into() },
            token: Ok(()),
        });
        let readiness = Readiness::new(Shutdown::new(), registry, Some(watch));
        let subscription_ok =
            || readiness.conditions().into_iter().find(|c| c.name == DELIVERY_SUBSCRIPTION).unwrap().ok;
        assert!(subscription_ok(), "a stream Cloud closed cleanly is being reopened: still ready");
        tokio::time::advance(RECONNECT_GRACE - std::time::Duration::from_millis(1)).await;
        assert!(subscription_ok());
        tokio::time::advance(std::time::Duration::from_millis(2)).await;
        assert!(!subscription_ok(), "not reopened within the grace: 503");
        status.send_replace(CloudStatus { subscription: Subscription::Down("down".into()), token: Ok(()) });
        assert!(!subscription_ok(), "a subscription that never was live has no grace");
        status.send_replace(CloudStatus { subscription: Subscription::Live, token: Err("rejected".into()) });
        let auth = readiness.conditions().into_iter().find(|c| c.name == CLOUD_AUTH).unwrap();
        assert_eq!((auth.ok, auth.reason.as_deref()), (false, Some("rejected")));
    }
}
