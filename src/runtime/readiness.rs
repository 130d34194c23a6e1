//! Readiness as named conditions, and the degraded states beside them.
//!
//! `/ready` answers one question: can this process serve? It is 503 only when it cannot: not
//! started yet, draining, no channel started, the delivery subscription down past its reconnect
//! grace, or Cloud rejecting the service token on a gateway-wide call. A gateway that serves with a
//! problem somewhere (a polling conflict, a stalled poll, one chat's session stream refused, a
//! channel's send circuit open, one of several channels failed) is *degraded*: 200, with each
//! reason listed in the body and counted in `open_cowork_gateway_degraded{reason}`.
//!
//! The conditions are read from their owners when asked (the registry, the drain signal, the
//! streams' status watch), never copied into a shared table.

use std::cell::Cell;
use std::rc::Rc;

use serde::Serialize;
use tokio::sync::watch;

use crate::channel::{ChannelRegistry, Registration};
use crate::cloud::streams::{CloudStatus, Subscription};
use crate::shutdown::Shutdown;

/// Readiness condition: the Cloud delivery subscription is live.
const DELIVERY_SUBSCRIPTION: &str = "delivery_subscription";
/// Readiness condition: Cloud accepts the service token (401/403 break it).
const CLOUD_AUTH: &str = "cloud_auth";
/// Readiness condition: at least one channel is started.
const CHANNEL_STARTED: &str = "channel_started";
/// How long a delivery subscription that was live may be reopening before `/ready` turns 503:
/// Cloud closes every stream after 30 minutes, and a load balancer should not see that.
const RECONNECT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a serving gateway is degraded: the `reason` label of `open_cowork_gateway_degraded`.
/// Every value is always exported (0 when it does not apply), so alert rules can name them.
const DEGRADED_REASONS: [&str; 7] = [
    POLLING_CONFLICT,
    POLL_STALLED,
    RECEIVING_FAILED,
    SEND_CIRCUIT_OPEN,
    SENDING_FAILED,
    CHANNEL_FAILED,
    SESSION_STREAM_REFUSED,
];
/// Another poller (or a webhook) holds a bot's updates: it still sends, but receives nothing.
const POLLING_CONFLICT: &str = "polling_conflict";
/// The platform stopped answering a channel's long poll.
const POLL_STALLED: &str = "poll_stalled";
/// A channel cannot receive for another reason (unreachable, a refused registration).
const RECEIVING_FAILED: &str = "receiving_failed";
/// A channel's delivery circuit is open after repeated send failures.
const SEND_CIRCUIT_OPEN: &str = "send_circuit_open";
/// A channel cannot send for another reason (its token rejected while running).
const SENDING_FAILED: &str = "sending_failed";
/// A channel could not start (others run).
const CHANNEL_FAILED: &str = "channel_failed";
/// Cloud refuses one chat's session stream (its binding is not granted to the token).
const SESSION_STREAM_REFUSED: &str = "session_stream_refused";

/// A condition's current verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub name: &'static str,
    pub ok: bool,
    /// Why it does not hold (or, for a subscription paused on purpose, why it is paused); redacted
    /// text, shown to admin callers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One reason the gateway is degraded, with where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Degraded {
    /// One of [`DEGRADED_REASONS`].
    pub reason: &'static str,
    /// The provider it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// What the operator reads: redacted text.
    pub detail: String,
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

    /// Marks the runtime started or stopped.
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
            from(CHANNEL_STARTED, self.channel_started()),
        ];
        match &self.cloud {
            Some(status) => {
                let status = status.borrow();
                let subscription = match &status.subscription {
                    Subscription::Live => from(DELIVERY_SUBSCRIPTION, Ok(())),
                    // Closed on purpose while no channel can send (each channel's state says why):
                    // it holds, and says it is paused.
                    Subscription::Paused(reason) => {
                        Condition { name: DELIVERY_SUBSCRIPTION, ok: true, reason: Some(reason.clone()) }
                    }
                    Subscription::Reconnecting { since, .. } if since.elapsed() < RECONNECT_GRACE => {
                        from(DELIVERY_SUBSCRIPTION, Ok(()))
                    }
                    Subscription::Reconnecting { reason, .. } | Subscription::Down(reason) => {
                        from(DELIVERY_SUBSCRIPTION, Err(reason.clone()))
                    }
                };
                conditions.push(subscription);
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

    fn channel_started(&self) -> Result<(), String> {
        if self.registry.any_started() {
            return Ok(());
        }
        let first_problem = self.registry.registrations().iter().find_map(crate::channel::Registration::problem);
        Err(match first_problem {
            Some(problem) => format!("No channel is started: {}", crate::config::redact::redact_text(&problem)),
            None => "No channel is started.".to_owned(),
        })
    }

    /// What works less than it should while the gateway serves, in provider order.
    pub fn degraded(&self) -> Vec<Degraded> {
        let mut degraded: Vec<Degraded> = self.registry.registrations().iter().flat_map(channel_degradation).collect();
        let refused = self.cloud.as_ref().map_or(0, |status| status.borrow().refused_session_streams);
        if refused > 0 {
            degraded.push(Degraded {
                reason: SESSION_STREAM_REFUSED,
                provider: None,
                detail: format!(
                    "Cloud refuses {refused} chat session stream(s) (403): the service token has no grant for their channel binding."
                ),
            });
        }
        degraded
    }

    /// How many of each [`DEGRADED_REASONS`] hold now, every reason listed.
    pub fn degraded_counts(&self) -> Vec<(&'static str, u64)> {
        let degraded = self.degraded();
        DEGRADED_REASONS
            .iter()
            .map(|reason| {
                let count = match *reason {
                    SESSION_STREAM_REFUSED => {
                        self.cloud.as_ref().map_or(0, |status| status.borrow().refused_session_streams as u64)
                    }
                    _ => degraded.iter().filter(|d| d.reason == *reason).count() as u64,
                };
                (*reason, count)
            })
            .collect()
    }
}

/// A channel's degraded reasons: a failed start, and its receiving and sending problems.
fn channel_degradation(registration: &Registration) -> Vec<Degraded> {
    let entry = |reason, detail: &str| Degraded {
        reason,
        provider: Some(registration.id().to_owned()),
        detail: crate::config::redact::redact_text(detail),
    };
    if registration.start_failed() {
        return vec![entry(CHANNEL_FAILED, &registration.problem().unwrap_or_default())];
    }
    if !registration.is_started() {
        return Vec::new();
    }
    let health = registration.health();
    let mut found = Vec::new();
    if let Some(problem) = &health.receiving {
        found.push(entry(receiving_reason(problem), problem));
    }
    if let Some(problem) = &health.sending {
        found.push(entry(if health.circuit_open { SEND_CIRCUIT_OPEN } else { SENDING_FAILED }, problem));
    }
    found
}

/// Channels write a receiving problem as `class: detail`; the class picks the reason.
fn receiving_reason(problem: &str) -> &'static str {
    if problem.starts_with("conflict:") {
        POLLING_CONFLICT
    } else if problem.starts_with("polling stalled:") {
        POLL_STALLED
    } else {
        RECEIVING_FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Ingress;
    use crate::cloud::streams::CloudStatusReporter;
    use crate::metrics::Metrics;

    fn status(subscription: Subscription, token: Result<(), String>, refused: usize) -> CloudStatus {
        CloudStatus { subscription, token, refused_session_streams: refused }
    }

    fn started_registry() -> (Rc<ChannelRegistry>, Shutdown) {
        let config = crate::config::test_config(&[]);
        let registry = Rc::new(ChannelRegistry::new(&config, Rc::new(Metrics::new(&config))));
        let shutdown = Shutdown::new();
        let factory = crate::providers::ProviderFactory::with_cli_output(|| {
            (crate::providers::cli::CliOutputMode::Json, Box::new(std::io::sink()))
        });
        let (ingress, _queue) = Ingress::bounded(1);
        registry.start_all(&|p| factory.build(p), &ingress, &shutdown);
        (registry, shutdown)
    }

    #[test]
    fn every_condition_must_hold_and_each_names_its_reason() {
        let config = crate::config::test_config(&[]);
        let registry = Rc::new(ChannelRegistry::new(&config, Rc::new(Metrics::new(&config))));
        let shutdown = Shutdown::new();
        let (_reporter, status) = CloudStatusReporter::new("The Cloud delivery subscription is not connected yet.");
        let readiness = Readiness::new(shutdown.clone(), Rc::clone(&registry), Some(status));
        let failing = |r: &Readiness| r.conditions().into_iter().filter(|c| !c.ok).map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(failing(&readiness), ["started", CHANNEL_STARTED, DELIVERY_SUBSCRIPTION]);
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

    /// Problems that leave the gateway serving are degraded states: `/ready` stays 200 and the
    /// reason is listed and counted, instead of a probe taking a working gateway out of service.
    #[test]
    fn a_conflict_a_stall_an_open_circuit_and_a_refused_chat_are_degraded_not_unready() {
        let (registry, shutdown) = started_registry();
        let (cloud, watch) = watch::channel(status(Subscription::Live, Ok(()), 0));
        let readiness = Readiness::new(shutdown, Rc::clone(&registry), Some(watch));
        readiness.set_started(true);
        assert!(readiness.is_ready() && readiness.degraded().is_empty());
        let registration = &registry.registrations()[0];
        let reporter = registration_reporter(registration);
        for (problem, reason) in [
            ("conflict: another poller or a webhook is using this bot token.", POLLING_CONFLICT),
            ("polling stalled: Telegram did not answer getUpdates.", POLL_STALLED),
            ("Telegram is unreachable (timeout); retrying.", RECEIVING_FAILED),
        ] {
            reporter.set_receiving(Some(problem.into()));
            assert!(readiness.is_ready(), "{reason} leaves the gateway ready");
            assert_eq!(readiness.degraded().iter().map(|d| d.reason).collect::<Vec<_>>(), [reason]);
        }
        reporter.set_receiving(None);
        registration.set_circuit(Some("Delivery circuit open after 5 failures.".into()));
        // With its only channel's circuit open, the subscription pauses on purpose.
        cloud.send_replace(status(Subscription::Paused("No channel can send right now.".into()), Ok(()), 2));
        assert!(readiness.is_ready(), "an open circuit is degraded, not unready");
        let counts = readiness.degraded_counts();
        assert_eq!(counts.len(), DEGRADED_REASONS.len(), "every reason is exported");
        assert!(counts.contains(&(SEND_CIRCUIT_OPEN, 1)) && counts.contains(&(SESSION_STREAM_REFUSED, 2)));
        assert!(counts.contains(&(POLLING_CONFLICT, 0)));
        reporter.fail_start("auth: rejected".into());
        assert!(!readiness.is_ready(), "no channel started: 503");
        let reason = readiness.conditions().into_iter().find(|c| c.name == CHANNEL_STARTED).unwrap().reason.unwrap();
        assert!(reason.starts_with("No channel is started: auth: rejected"), "{reason}");
    }

    fn registration_reporter(registration: &Registration) -> crate::channel::HealthReporter {
        registration.health_reporter()
    }

    #[tokio::test(start_paused = true)]
    async fn a_reopening_subscription_keeps_ready_for_the_grace_only() {
        let config = crate::config::test_config(&[]);
        let registry = Rc::new(ChannelRegistry::new(&config, Rc::new(Metrics::new(&config))));
        let (status_tx, watch) = watch::channel(status(
            Subscription::Reconnecting { since: tokio::time::Instant::now(), reason: "reopening".into() },
            Ok(()),
            0,
        ));
        let readiness = Readiness::new(Shutdown::new(), registry, Some(watch));
        let subscription_ok =
            || readiness.conditions().into_iter().find(|c| c.name == DELIVERY_SUBSCRIPTION).unwrap().ok;
        assert!(subscription_ok(), "a stream Cloud closed cleanly is being reopened: still ready");
        tokio::time::advance(RECONNECT_GRACE - std::time::Duration::from_millis(1)).await;
        assert!(subscription_ok());
        tokio::time::advance(std::time::Duration::from_millis(2)).await;
        assert!(!subscription_ok(), "not reopened within the grace: 503");
        status_tx.send_replace(status(Subscription::Down("down".into()), Ok(()), 0));
        assert!(!subscription_ok(), "a subscription that never was live has no grace");
        status_tx.send_replace(status(Subscription::Live, Err("rejected".into()), 0));
        let auth = readiness.conditions().into_iter().find(|c| c.name == CLOUD_AUTH).unwrap();
        assert_eq!((auth.ok, auth.reason.as_deref()), (false, Some("rejected")));
    }
}
