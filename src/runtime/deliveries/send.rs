//! One delivery, from its turn in the lane to its acknowledgement: waits out the channel's
//! rate limit or open circuit while its lease allows (handing it back unsent otherwise), sends
//! its chunks, and acks `sent`, `failed` with the next attempt's time, or `dead`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::circuit::{Hold, CIRCUIT_OPEN};
use super::lease::Lease;
use super::report::{circuit_closed, circuit_opened, Reason};
use super::{channel_target, delivery_key, Dispatcher, Shared, MAX_ATTEMPTS};
use crate::channel::{Channel, SendError, SendErrorKind, SendOptions};
use crate::cloud::client::{AckDelivery, CloudClient};
use crate::cloud::DeliveryRecord;
use crate::metrics::{bounded_channel_kind, Direction, Outcome, ProviderStat, Stat};
use crate::net::backoff::{Backoff, RetryPolicy};
use crate::render::split::split;
use crate::render::text::sanitize;

/// The wait before the n-th retry of a failed send: 1 s·2ⁿ⁻¹ capped at a minute, ±20 %.
/// A delivery whose channel cannot send (still starting, its token rejected) is offered again after
/// this, not at once: the subscription drops the binding meanwhile, and an immediate hand-back would
/// only be claimed again and again while the channel stays down.
const CANNOT_SEND_RELEASE_DELAY: Duration = Duration::from_secs(15);
const RETRY_POLICY: RetryPolicy = RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(60));

/// How a send ended.
enum Sent {
    Yes,
    Failed(SendError),
    /// Not sent and not failed: the wait the channel needs is longer than the lease left.
    HandBack {
        reason: String,
        after: Duration,
    },
}

pub(super) async fn handle_delivery(
    dispatcher: &Dispatcher,
    client: &CloudClient,
    shared: &Rc<RefCell<Shared>>,
    delivery: DeliveryRecord,
    lease: Lease,
) {
    let received = Instant::now();
    dispatcher.metrics.increment(Stat::DeliveriesReceived);
    let registration = dispatcher
        .registry
        .for_binding(&delivery.channel_binding_id)
        .map(|r| (r.config.clone(), r.channel(), r.config.runtime_id(), r.config.runtime_kind(), r.can_send()));
    let Some((config, provider, runtime_id, runtime_kind, can_send)) = registration else {
        let provider_name = delivery.field_str("provider").unwrap_or("unknown").to_owned();
        let error = format!("No provider registered for {provider_name}.");
        dispatcher.metrics.increment(Stat::Errors);
        dispatcher.metrics.increment(Stat::DeliveryDeadLetters);
        shared.borrow().log.dead_letter(&delivery, Reason::NoChannel, delivery.attempt_count(), &error);
        ack(client, &delivery, "dead", Some(error), None).await.ok();
        return;
    };
    let id = config.id.clone();
    // Our own circuit is not a reason to hand back: the delivery waits for it below.
    let held_by_circuit = matches!(shared.borrow().gates.hold(&id), Some(Hold::CircuitOpen(_)));
    let Some(provider) = provider.filter(|_| can_send || held_by_circuit) else {
        // The channel cannot send right now (not started, a rejected token): not a failed send.
        // Hand the delivery back; the subscription leaves this binding out until it can.
        let reason = format!("Gateway provider {id} cannot send right now; released without sending.");
        hand_back(dispatcher, client, shared, &delivery, &reason, CANNOT_SEND_RELEASE_DELAY).await;
        return;
    };
    let kind = bounded_channel_kind(config.kind, &config.id);
    dispatcher.metrics.increment_provider(&id, ProviderStat::DeliveriesReceived);
    dispatcher.metrics.record_channel_message(kind, Direction::Outbound, Outcome::Attempt, None);
    let target = channel_target(&delivery, runtime_id, runtime_kind);
    let text = crate::render::delivery_text(delivery.rest.get("payload").unwrap_or(&Value::Null));
    let chunks = split(provider.capabilities(), &text);
    let elapsed_ms = || Some(received.elapsed().as_secs_f64() * 1000.0);
    match send_chunks(dispatcher, shared, provider.as_ref(), &target, &chunks, &delivery, &lease, &id).await {
        Sent::Yes => {
            dispatcher.metrics.record_channel_message(kind, Direction::Outbound, Outcome::Success, elapsed_ms());
            let closed = shared.borrow_mut().gates.succeed(&id);
            if closed {
                circuit_closed(&id);
                if let Some(registration) = dispatcher.registry.get(&id) {
                    registration.set_circuit(None);
                }
            }
            let key = delivery_key(&delivery);
            shared.borrow_mut().hand_backs.forget(&key);
            shared.borrow_mut().sent.insert(key);
            if ack_sent(dispatcher, client, shared, &delivery, &lease).await {
                dispatcher.metrics.increment(Stat::DeliveriesSent);
                dispatcher.metrics.increment_provider(&id, ProviderStat::DeliveriesSent);
                dispatcher.metrics.observe_delivery_latency(&id, received.elapsed().as_secs_f64() * 1000.0);
            }
        }
        Sent::HandBack { reason, after } => hand_back(dispatcher, client, shared, &delivery, &reason, after).await,
        Sent::Failed(error) => {
            let outcome = settle_failure(dispatcher, client, shared, &delivery, &id, error).await;
            dispatcher.metrics.record_channel_message(kind, Direction::Outbound, outcome, elapsed_ms());
        }
    }
}

/// Sends the chunks in order, from the first one an earlier attempt did not send. A rate limit
/// pauses the channel and the same chunk is tried again when it is up; a send that stops
/// part-way (a failure, a hand-back) notes the chunks that went out, so neither goes out twice.
#[allow(clippy::too_many_arguments)]
async fn send_chunks(
    dispatcher: &Dispatcher,
    shared: &Rc<RefCell<Shared>>,
    provider: &dyn Channel,
    target: &crate::channel::ChannelTarget,
    chunks: &[String],
    delivery: &DeliveryRecord,
    lease: &Lease,
    id: &str,
) -> Sent {
    let several = chunks.len() > 1;
    let key = delivery_key(delivery);
    let mut index = shared.borrow_mut().partly_sent.resume_from(&key, chunks.len());
    let stopped = |index: usize| shared.borrow_mut().partly_sent.note(&key, index, chunks.len());
    while let Some(chunk) = chunks.get(index) {
        let hold = shared.borrow().gates.hold(id);
        if let Some(hold) = hold {
            if !lease.allows(hold.wait()) {
                let reason = match hold {
                    Hold::RateLimited(_) => format!("Gateway provider {id} is rate limited; released without sending."),
                    Hold::CircuitOpen(_) => {
                        format!("Delivery circuit for provider {id} is open; released without sending.")
                    }
                };
                stopped(index);
                return Sent::HandBack { reason, after: hold.wait() };
            }
            tokio::time::sleep(hold.wait()).await;
            continue;
        }
        let delivery_id = if several {
            format!("{}:chunk:{}", delivery.delivery_id, index + 1)
        } else {
            delivery.delivery_id.to_string()
        };
        match provider.send_text(target, chunk, &SendOptions { delivery_id: Some(delivery_id) }).await {
            Ok(_) => index += 1,
            Err(SendError { kind: SendErrorKind::RateLimited(wait), message }) => {
                dispatcher.metrics.increment(Stat::DeliveryRateLimitWaits);
                let mut shared = shared.borrow_mut();
                shared.gates.pause(id, wait);
                let attempt = shared.hand_backs.attempts(&delivery_key(delivery), delivery.attempt_count());
                let next = format!("in {} ms", wait.as_millis());
                shared.log.retry(delivery, Reason::RateLimited, attempt, &next, &message);
            }
            Err(error) => {
                stopped(index);
                return Sent::Failed(error);
            }
        }
    }
    Sent::Yes
}

/// Acks a failed send `failed` (retried later) or `dead`, and feeds the circuit.
async fn settle_failure(
    dispatcher: &Dispatcher,
    client: &CloudClient,
    shared: &Rc<RefCell<Shared>>,
    delivery: &DeliveryRecord,
    id: &str,
    error: SendError,
) -> Outcome {
    dispatcher.metrics.increment(Stat::Errors);
    let key = delivery_key(delivery);
    let attempt = shared.borrow().hand_backs.attempts(&key, delivery.attempt_count());
    let transient = error.kind != SendErrorKind::Permanent;
    if transient {
        note_failure(dispatcher, shared, id, &error.message);
    }
    let retry = transient && attempt < MAX_ATTEMPTS;
    let reason = if transient { Reason::PlatformError } else { Reason::Rejected };
    let (status, next_attempt) = if retry {
        let at = crate::time::iso(dispatcher.clock.cloud_now_ms() + RETRY_POLICY.nth(attempt).as_millis() as u64);
        dispatcher.metrics.increment(Stat::DeliveryRetries);
        dispatcher.metrics.increment_provider(id, ProviderStat::DeliveryRetries);
        shared.borrow().log.retry(delivery, reason, attempt, &at, &error.message);
        ("failed", Some(at))
    } else {
        dispatcher.metrics.increment(Stat::DeliveryDeadLetters);
        dispatcher.metrics.increment_provider(id, ProviderStat::DeliveryDeadLetters);
        shared.borrow().log.dead_letter(delivery, reason, attempt, &error.message);
        shared.borrow_mut().hand_backs.forget(&key);
        ("dead", None)
    };
    if let Err(ack_error) = ack(client, delivery, status, Some(sanitize(&error.message, 320)), next_attempt).await {
        tracing::warn!(error = %crate::config::redact::Redacted(&ack_error), delivery = %delivery.delivery_id, "acknowledging a failed delivery failed; its lease will expire");
    }
    if retry {
        Outcome::Retry
    } else {
        Outcome::Error
    }
}

/// Counts a real failure; the one that opens the circuit takes the channel out of the
/// subscription until the circuit half-opens by itself.
fn note_failure(dispatcher: &Dispatcher, shared: &Rc<RefCell<Shared>>, id: &str, error: &str) {
    let Some((failures, until)) = shared.borrow_mut().gates.fail(id) else { return };
    circuit_opened(id, failures, CIRCUIT_OPEN, error);
    let reason = format!(
        "Delivery circuit open after {failures} consecutive failed sends; retrying in {} s.",
        CIRCUIT_OPEN.as_secs()
    );
    if let Some(registration) = dispatcher.registry.get(id) {
        registration.set_circuit(Some(reason));
    }
    let (registry, shared, id) = (Rc::clone(&dispatcher.registry), Rc::clone(shared), id.to_owned());
    tokio::task::spawn_local(async move {
        tokio::time::sleep_until(until).await;
        // Half-open: the channel counts as able to send again, so the subscription claims its
        // deliveries and the next send decides (a success closes the circuit, a failure
        // opens it anew).
        if shared.borrow().gates.is_open_until(&id, until) {
            if let Some(registration) = registry.get(&id) {
                registration.set_circuit(None);
            }
        }
    });
}

/// Hands a claimed, unsent delivery back to Cloud: `failed`, claimable again after `delay`. Not
/// a failed send: no retry or dead-letter counter moves, and the attempt Cloud will count for
/// the next claim is taken off again.
pub(super) async fn hand_back(
    dispatcher: &Dispatcher,
    client: &CloudClient,
    shared: &Rc<RefCell<Shared>>,
    delivery: &DeliveryRecord,
    reason: &str,
    delay: Duration,
) {
    shared.borrow_mut().hand_backs.note(&delivery_key(delivery));
    release(dispatcher, client, delivery, reason, delay).await;
}

/// Acks a delivery `failed` without sending it, claimable again after `delay`.
pub(super) async fn release(
    dispatcher: &Dispatcher,
    client: &CloudClient,
    delivery: &DeliveryRecord,
    reason: &str,
    delay: Duration,
) {
    let next_attempt = crate::time::iso(dispatcher.clock.cloud_now_ms() + delay.as_millis() as u64);
    match ack(client, delivery, "failed", Some(reason.to_owned()), Some(next_attempt)).await {
        Ok(_) => dispatcher.metrics.increment(Stat::DeliveryReleases),
        Err(error) => tracing::warn!(
            delivery = %delivery.delivery_id,
            error = %crate::config::redact::redact_text(&error.to_string()),
            "releasing an unsent delivery failed; its lease will expire"
        ),
    }
}

/// `nextAttemptAt` is always written: `null` for `sent` and `dead`, so Cloud's record keeps no
/// stale retry time.
pub(super) async fn ack(
    client: &CloudClient,
    delivery: &DeliveryRecord,
    status: &'static str,
    last_error: Option<String>,
    next_attempt_at: Option<String>,
) -> Result<DeliveryRecord, crate::cloud::CloudError> {
    client
        .ack_delivery(
            &delivery.delivery_id,
            &AckDelivery {
                status,
                channel_binding_id: delivery.channel_binding_id.clone(),
                claimed_by: delivery.claimed_by().map(str::to_owned),
                last_error,
                next_attempt_at,
            },
        )
        .await
}

/// Acks `sent`, retrying with backoff while the claim lease lasts: the message was delivered,
/// so it is never turned into `dead`. Returns whether Cloud took the ack.
pub(super) async fn ack_sent(
    dispatcher: &Dispatcher,
    client: &CloudClient,
    shared: &Rc<RefCell<Shared>>,
    delivery: &DeliveryRecord,
    lease: &Lease,
) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        match ack(client, delivery, "sent", None, None).await {
            Ok(_) => return true,
            Err(error) if error.is_retryable() && lease.allows(backoff.ceiling()) => {
                dispatcher.metrics.increment(Stat::Errors);
                let wait = RetryPolicy::honour(error.retry_after, backoff.ceiling(), || backoff.next_delay());
                let next = format!("in {} ms", wait.as_millis());
                let attempt = delivery.attempt_count();
                let message = error.to_string();
                shared.borrow().log.retry(delivery, Reason::CloudError, attempt, &next, &message);
                tokio::time::sleep(wait).await;
            }
            Err(error) => {
                tracing::warn!(error = %crate::config::redact::Redacted(&error), delivery = %delivery.delivery_id, "the sent ack failed; a re-served copy is acked from the sent-cache, not sent again");
                return false;
            }
        }
    }
}
