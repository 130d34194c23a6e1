//! The delivery path (gateway.md §3.6, §8.5): deliveries claimed on the Cloud stream are queued
//! per (binding, target) lane — strictly in order within a lane, concurrent across lanes up to
//! `maxConcurrency` — sent through the binding's provider (chunked, chunk ids
//! `<deliveryId>:chunk:<n>`) and acknowledged. Transient failures are acked `failed` with a
//! backoff (or the provider's rate-limit delay) up to 5 attempts, then `dead`; a full queue stops
//! reading the stream (backpressure), and a delivery whose lease is nearly over when its turn
//! comes is left to the lease (shed, never dropped or sent twice); a sent-cache of 2,048 ids keeps a re-served delivery from going
//! out twice; a failed `sent` ack is retried while the lease lasts, never turned into `dead`.
//! A per-provider circuit breaker stops hammering a failing channel.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;
use smol_str::SmolStr;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::channel::{ChannelRegistry, ChannelTarget, SendError, SendErrorKind, SendOptions};
use crate::cloud::client::{AckDelivery, CloudClient};
use crate::cloud::DeliveryRecord;
use crate::metrics::{bounded_channel_kind, Direction, Metrics, Outcome, ProviderStat, Stat};
use crate::net::backoff::Backoff;
use crate::render::text::{chunk_text, sanitize};
use crate::shutdown::{Shutdown, WorkGuard};

/// What the dispatcher works with.
pub struct Dispatcher {
    pub metrics: Rc<Metrics>,
    pub registry: Rc<ChannelRegistry>,
    pub shutdown: Shutdown,
    /// `delivery.maxConcurrency`: lanes sending at once.
    pub max_concurrency: usize,
    /// `delivery.maxQueueDepth`: deliveries waiting before the stream is no longer read.
    pub max_queue_depth: usize,
}

const SENT_CACHE: usize = 2048;
const MAX_ATTEMPTS: u64 = 5;
/// Consecutive transient failures that open a provider's circuit, and how long it stays open.
const CIRCUIT_THRESHOLD: u32 = 5;
const CIRCUIT_OPEN: Duration = Duration::from_secs(30);

/// `(channelBindingId, deliveryId)`.
type DeliveryKey = (SmolStr, SmolStr);

fn delivery_key(delivery: &DeliveryRecord) -> DeliveryKey {
    (delivery.channel_binding_id.clone(), delivery.delivery_id.clone())
}

/// After a lane's head left it: the lane is ready again if it has more, else forgotten.
fn requeue_lane(lanes: &mut HashMap<String, VecDeque<DeliveryRecord>>, ready: &mut VecDeque<String>, lane: String) {
    if lanes.get(&lane).is_some_and(|l| !l.is_empty()) {
        ready.push_back(lane);
    } else {
        lanes.remove(&lane);
    }
}

/// The most recent sent delivery keys: a set for lookups, a queue for their age.
#[derive(Default)]
struct SentCache {
    keys: VecDeque<DeliveryKey>,
    lookup: HashSet<DeliveryKey>,
}

impl SentCache {
    fn contains(&self, key: &DeliveryKey) -> bool {
        self.lookup.contains(key)
    }

    fn insert(&mut self, key: DeliveryKey) {
        if !self.lookup.insert(key.clone()) {
            self.keys.retain(|k| *k != key);
        }
        self.keys.push_back(key);
        if self.keys.len() > SENT_CACHE {
            if let Some(oldest) = self.keys.pop_front() {
                self.lookup.remove(&oldest);
            }
        }
    }
}

/// A provider's delivery circuit.
#[derive(Default, Clone, Copy)]
struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
}

/// State shared by the dispatcher and its send tasks.
#[derive(Default)]
struct Shared {
    sent: SentCache,
    circuits: HashMap<SmolStr, Circuit>,
}

fn target_of(delivery: &DeliveryRecord) -> Option<&serde_json::Map<String, Value>> {
    delivery.rest.get("target").and_then(Value::as_object)
}

/// `<binding>\0<target keys sorted, k=v joined with &>`.
fn lane_key(delivery: &DeliveryRecord) -> String {
    let mut parts: Vec<String> = target_of(delivery)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect();
    parts.sort();
    format!("{}\0{}", delivery.channel_binding_id, parts.join("&"))
}

/// The channel bindings whose channels can send, kept current as channels start, stop and change
/// health: the delivery subscription claims for exactly these. The task ends with the runtime.
pub fn sendable_bindings(registry: Rc<ChannelRegistry>) -> (watch::Receiver<Vec<SmolStr>>, JoinHandle<()>) {
    let (sender, receiver) = watch::channel(registry.sendable_bindings());
    let mut changes = registry.changes();
    let task = tokio::task::spawn_local(async move {
        while changes.changed().await.is_ok() {
            let now = registry.sendable_bindings();
            sender.send_if_modified(|current| {
                let changed = *current != now;
                if changed {
                    tracing::info!(bindings = ?now, "the channels that can send changed; the delivery subscription follows");
                    *current = now;
                }
                changed
            });
        }
    });
    (receiver, task)
}

/// The retry delay for the n-th attempt: 1 s·2ⁿ⁻¹ capped at 60 s, ±20 % jitter.
pub fn retry_delay(attempt_count: u64) -> Duration {
    let exponent = attempt_count.saturating_sub(1).min(16) as u32;
    let base = (1000u64 << exponent).min(60_000) as f64;
    Duration::from_millis((base * (0.8 + fastrand::f64() * 0.4)) as u64)
}

/// Runs until the delivery stream closes and everything queued was handled.
pub async fn run_dispatcher(
    dispatcher: Dispatcher,
    client: Rc<CloudClient>,
    mut incoming: mpsc::Receiver<DeliveryRecord>,
) {
    let dispatcher = Rc::new(dispatcher);
    let max_concurrency = dispatcher.max_concurrency;
    let cap = dispatcher.max_queue_depth.max(max_concurrency);
    let shared = Rc::new(RefCell::new(Shared::default()));
    let (done_tx, mut done_rx) = mpsc::channel::<(String, DeliveryKey)>(max_concurrency.max(1));
    let mut lanes: HashMap<String, VecDeque<DeliveryRecord>> = HashMap::new();
    let mut ready: VecDeque<String> = VecDeque::new();
    let mut busy_lanes: HashSet<String> = HashSet::new();
    let mut known: HashSet<DeliveryKey> = HashSet::new();
    let (mut queued, mut active) = (0usize, 0usize);
    let mut open = true;
    let mut draining = false;
    let mut drain = dispatcher.shutdown.signal();
    let mut work: Option<WorkGuard> = None;
    loop {
        if !open && queued == 0 && active == 0 {
            break;
        }
        tokio::select! {
            // At the drain, in-flight sends finish; deliveries still waiting are handed back to
            // Cloud at once, so the next process sends them without waiting out their leases.
            _ = drain.started(), if !draining => {
                draining = true;
                for (_, backlog) in lanes.drain() {
                    for delivery in backlog {
                        known.remove(&delivery_key(&delivery));
                        let (dispatcher, client) = (Rc::clone(&dispatcher), Rc::clone(&client));
                        let work = dispatcher.shutdown.work_guard();
                        tokio::task::spawn_local(async move {
                            release(&dispatcher, &client, &delivery, SHUTDOWN_RELEASE, SHUTDOWN_RELEASE_DELAY).await;
                            drop(work);
                        });
                    }
                }
                ready.clear();
                queued = 0;
            }
            // A full queue stops reading: the stream backs up instead of dropping claims.
            delivery = incoming.recv(), if open && queued < cap => match delivery {
                None => open = false,
                Some(delivery) if draining => {
                    // Claimed as the subscription closed: hand it straight back.
                    let (dispatcher, client) = (Rc::clone(&dispatcher), Rc::clone(&client));
                    let work = dispatcher.shutdown.work_guard();
                    tokio::task::spawn_local(async move {
                        release(&dispatcher, &client, &delivery, SHUTDOWN_RELEASE, SHUTDOWN_RELEASE_DELAY).await;
                        drop(work);
                    });
                }
                Some(delivery) => {
                    let key = delivery_key(&delivery);
                    if shared.borrow().sent.contains(&key) {
                        dispatcher.metrics.increment(Stat::DeliveryDuplicatesSuppressed);
                        let (dispatcher, client) = (Rc::clone(&dispatcher), Rc::clone(&client));
                        tokio::task::spawn_local(async move { ack_sent(&dispatcher, &client, &delivery).await });
                    } else if known.contains(&key) {
                        dispatcher.metrics.increment(Stat::DeliveryDuplicatesSuppressed);
                    } else {
                        let lane = lane_key(&delivery);
                        known.insert(key);
                        queued += 1;
                        dispatcher.metrics.set_gauge(Stat::DeliveryQueueDepthMax, dispatcher.metrics.get(Stat::DeliveryQueueDepthMax).max(queued as u64));
                        let backlog = lanes.entry(lane.clone()).or_default();
                        backlog.push_back(delivery);
                        if backlog.len() == 1 && !busy_lanes.contains(&lane) {
                            ready.push_back(lane);
                        }
                    }
                }
            },
            Some((lane, key)) = done_rx.recv() => {
                active -= 1;
                known.remove(&key);
                busy_lanes.remove(&lane);
                requeue_lane(&mut lanes, &mut ready, lane);
            }
        }
        while active < max_concurrency {
            let Some(lane) = ready.pop_front() else { break };
            let Some(delivery) = lanes.get_mut(&lane).and_then(VecDeque::pop_front) else { continue };
            queued -= 1;
            if lease_nearly_over(&delivery) {
                // Sending now could race Cloud re-serving it to another claimant: leave it to its
                // lease, unacked, and let Cloud serve it again.
                dispatcher.metrics.increment(Stat::DeliverySheds);
                known.remove(&delivery_key(&delivery));
                requeue_lane(&mut lanes, &mut ready, lane);
                continue;
            }
            active += 1;
            busy_lanes.insert(lane.clone());
            let key = delivery_key(&delivery);
            let (dispatcher, client, shared, done) =
                (Rc::clone(&dispatcher), Rc::clone(&client), Rc::clone(&shared), done_tx.clone());
            tokio::task::spawn_local(async move {
                handle_delivery(&dispatcher, &client, &shared, delivery).await;
                let _ = done.send((lane, key)).await;
            });
        }
        // In-flight or queued deliveries are work the drain waits for (up to its deadline).
        match (queued + active > 0, work.is_some()) {
            (true, false) => work = Some(dispatcher.shutdown.work_guard()),
            (false, true) => work = None,
            _ => {}
        }
    }
}

/// Why a delivery was handed back at the drain (its `lastError`).
const SHUTDOWN_RELEASE: &str = "Released at gateway shutdown; not sent.";
/// Deliveries handed back at the drain are claimable again after this: long enough that the
/// closing stream (still read briefly for frames already on their way) is not offered them
/// again, short enough that the next process sends them at once.
const SHUTDOWN_RELEASE_DELAY: Duration = Duration::from_secs(2);

/// Less than this much lease left: too late to start a send.
const LEASE_MARGIN_MS: u64 = 5_000;

fn lease_nearly_over(delivery: &DeliveryRecord) -> bool {
    delivery
        .field_str("claimExpiresAt")
        .and_then(crate::time::parse_iso)
        .is_some_and(|end| end < crate::time::now_ms() + LEASE_MARGIN_MS)
}

fn channel_target(delivery: &DeliveryRecord, provider: SmolStr, provider_kind: &str) -> ChannelTarget {
    let target = target_of(delivery);
    let field = |keys: &[&str]| {
        keys.iter().find_map(|k| target?.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty())).map(str::to_owned)
    };
    ChannelTarget {
        provider,
        provider_kind: provider_kind.into(),
        chat_id: field(&["externalChatId", "chatId"]).unwrap_or_else(|| "unknown".into()),
        is_direct: None,
        thread_id: field(&["externalThreadId", "threadId"]),
        user_id: field(&["externalUserId", "userId"]),
        message_id: field(&["lastChatMessageId", "messageId"]),
    }
}

async fn handle_delivery(
    dispatcher: &Dispatcher,
    client: &CloudClient,
    shared: &Rc<RefCell<Shared>>,
    delivery: DeliveryRecord,
) {
    let received = Instant::now();
    dispatcher.metrics.increment(Stat::DeliveriesReceived);
    let registration = dispatcher
        .registry
        .for_binding(&delivery.channel_binding_id)
        .map(|r| (r.config.clone(), r.channel(), r.config.runtime_id(), r.config.runtime_kind(), r.can_send()));
    let Some((config, provider, runtime_id, runtime_kind, can_send)) = registration else {
        let provider_name = delivery.field_str("provider").unwrap_or("unknown").to_owned();
        dispatcher.metrics.increment(Stat::Errors);
        dispatcher.metrics.increment(Stat::DeliveryDeadLetters);
        ack(client, &delivery, "dead", Some(format!("No provider registered for {provider_name}.")), None).await.ok();
        return;
    };
    let id = config.id.clone();
    let Some(provider) = provider.filter(|_| can_send) else {
        // The channel cannot send right now (not started, a rejected token, an open circuit): not a
        // failed send. Hand the delivery back; the subscription leaves this binding out until the
        // channel can send again.
        let reason = format!("Gateway provider {id} cannot send right now; released without sending.");
        release(dispatcher, client, &delivery, &reason, Duration::ZERO).await;
        return;
    };
    let kind = bounded_channel_kind(config.kind, &config.id);
    dispatcher.metrics.increment_provider(&id, ProviderStat::DeliveriesReceived);
    dispatcher.metrics.record_channel_message(kind, Direction::Outbound, Outcome::Attempt, None);

    let circuit = shared.borrow().circuits.get(&id).copied().unwrap_or_default();
    let now = Instant::now();
    let open = circuit.open_until.filter(|until| *until > now).map(|until| until - now);
    let attempted = open.is_none();
    let result = match open {
        Some(wait) => Err(SendError {
            kind: SendErrorKind::RateLimited(wait),
            message: format!("Delivery circuit for provider {id} is open."),
        }),
        None => {
            let target = channel_target(&delivery, runtime_id, runtime_kind);
            let text = crate::render::delivery_text(delivery.rest.get("payload").unwrap_or(&Value::Null));
            let chunks = chunk_text(&text, provider.capabilities().max_text_length);
            let several = chunks.len() > 1;
            let mut outcome = Ok(());
            for (index, chunk) in chunks.iter().enumerate() {
                let delivery_id = if several {
                    format!("{}:chunk:{}", delivery.delivery_id, index + 1)
                } else {
                    delivery.delivery_id.to_string()
                };
                if let Err(error) =
                    provider.send_text(&target, chunk, &SendOptions { delivery_id: Some(delivery_id) }).await
                {
                    outcome = Err(error);
                    break;
                }
            }
            outcome
        }
    };
    match result {
        Ok(()) => {
            dispatcher.metrics.record_channel_message(
                kind,
                Direction::Outbound,
                Outcome::Success,
                Some(received.elapsed().as_secs_f64() * 1000.0),
            );
            close_circuit(dispatcher, shared, &id);
            shared.borrow_mut().sent.insert(delivery_key(&delivery));
            if ack_sent(dispatcher, client, &delivery).await {
                dispatcher.metrics.increment(Stat::DeliveriesSent);
                dispatcher.metrics.increment_provider(&id, ProviderStat::DeliveriesSent);
                dispatcher.metrics.observe_delivery_latency(&id, received.elapsed().as_secs_f64() * 1000.0);
            }
        }
        Err(error) => {
            dispatcher.metrics.increment(Stat::Errors);
            let (retry, delay) = match &error.kind {
                SendErrorKind::Permanent => (false, None),
                SendErrorKind::Transient => {
                    (delivery.attempt_count() < MAX_ATTEMPTS, Some(retry_delay(delivery.attempt_count())))
                }
                SendErrorKind::RateLimited(wait) => (delivery.attempt_count() < MAX_ATTEMPTS, Some(*wait)),
            };
            if attempted && !matches!(error.kind, SendErrorKind::Permanent) {
                note_transient_failure(dispatcher, shared, &id);
            }
            let (status, outcome) = if retry { ("failed", Outcome::Retry) } else { ("dead", Outcome::Error) };
            if retry {
                dispatcher.metrics.increment(Stat::DeliveryRetries);
                dispatcher.metrics.increment_provider(&id, ProviderStat::DeliveryRetries);
            } else {
                dispatcher.metrics.increment(Stat::DeliveryDeadLetters);
                dispatcher.metrics.increment_provider(&id, ProviderStat::DeliveryDeadLetters);
            }
            let next_attempt =
                retry.then(|| delay.map(|d| crate::time::iso(crate::time::now_ms() + d.as_millis() as u64))).flatten();
            if let Err(ack_error) =
                ack(client, &delivery, status, Some(sanitize(&error.message, 320)), next_attempt).await
            {
                tracing::warn!(error = %crate::config::redact::Redacted(&ack_error), delivery = %delivery.delivery_id, "acknowledging a failed delivery failed; its lease will expire");
            }
            dispatcher.metrics.record_channel_message(
                kind,
                Direction::Outbound,
                outcome,
                Some(received.elapsed().as_secs_f64() * 1000.0),
            );
        }
    }
}

/// Hands a claimed, unsent delivery back to Cloud: `failed`, claimable again after `delay`. Not
/// a failed send: no retry or dead-letter counter moves.
async fn release(
    dispatcher: &Dispatcher,
    client: &CloudClient,
    delivery: &DeliveryRecord,
    reason: &str,
    delay: Duration,
) {
    let next_attempt = crate::time::iso(crate::time::now_ms() + delay.as_millis() as u64);
    match ack(client, delivery, "failed", Some(reason.to_owned()), Some(next_attempt)).await {
        Ok(_) => dispatcher.metrics.increment(Stat::DeliveryReleases),
        Err(error) => tracing::warn!(
            delivery = %delivery.delivery_id,
            error = %crate::config::redact::redact_text(&error.to_string()),
            "releasing an unsent delivery failed; its lease will expire"
        ),
    }
}

async fn ack(
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

/// Acks `sent`, retrying with backoff while the claim lease lasts (§8.5): the message was
/// delivered, so it is never turned into `dead`. Returns whether Cloud took the ack.
async fn ack_sent(dispatcher: &Dispatcher, client: &CloudClient, delivery: &DeliveryRecord) -> bool {
    let lease_end = delivery
        .field_str("claimExpiresAt")
        .and_then(crate::time::parse_iso)
        .unwrap_or_else(|| crate::time::now_ms() + 120_000);
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        match ack(client, delivery, "sent", None, None).await {
            Ok(_) => return true,
            Err(error)
                if error.is_retryable()
                    && crate::time::now_ms() + backoff.ceiling().as_millis() as u64 <= lease_end =>
            {
                dispatcher.metrics.increment(Stat::Errors);
                tokio::time::sleep(error.retry_after.unwrap_or_else(|| backoff.next_delay())).await;
            }
            Err(error) => {
                tracing::warn!(error = %crate::config::redact::Redacted(&error), delivery = %delivery.delivery_id, "the sent ack failed; a re-served copy is acked from the sent-cache, not sent again");
                return false;
            }
        }
    }
}

fn note_transient_failure(dispatcher: &Dispatcher, shared: &Rc<RefCell<Shared>>, provider_id: &str) {
    let opened = {
        let mut shared = shared.borrow_mut();
        let circuit = shared.circuits.entry(provider_id.into()).or_default();
        circuit.failures += 1;
        (circuit.failures >= CIRCUIT_THRESHOLD).then(|| {
            circuit.open_until = Some(Instant::now() + CIRCUIT_OPEN);
            circuit.failures
        })
    };
    if let Some(failures) = opened {
        let reason = format!(
            "Delivery circuit open after {failures} consecutive transient failures; retrying in {} s.",
            CIRCUIT_OPEN.as_secs()
        );
        tracing::warn!(provider = provider_id, "{reason}");
        if let Some(registration) = dispatcher.registry.get(provider_id) {
            registration.set_circuit(Some(reason));
        }
        // Half-open by itself: the channel counts as able to send again once the circuit's time is
        // up, so the subscription claims its deliveries and the next send decides.
        let (registry, shared, id) = (Rc::clone(&dispatcher.registry), Rc::clone(shared), provider_id.to_owned());
        tokio::task::spawn_local(async move {
            tokio::time::sleep(CIRCUIT_OPEN).await;
            let still_open = shared.borrow().circuits.get(id.as_str()).is_some_and(|c| c.open_until.is_some());
            if still_open {
                if let Some(registration) = registry.get(&id) {
                    registration.set_circuit(None);
                }
            }
        });
    }
}

fn close_circuit(dispatcher: &Dispatcher, shared: &RefCell<Shared>, provider_id: &str) {
    let was_open = shared.borrow_mut().circuits.remove(provider_id).is_some_and(|c| c.open_until.is_some());
    if was_open {
        if let Some(registration) = dispatcher.registry.get(provider_id) {
            registration.set_circuit(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(target: Value) -> DeliveryRecord {
        serde_json::from_value(json!({"deliveryId": "d", "channelBindingId": "b", "target": target})).unwrap()
    }

    #[test]
    fn lanes_are_per_binding_and_target() {
        assert_eq!(
            lane_key(&record(json!({"externalThreadId": "t", "externalChatId": "c"}))),
            "b\0externalChatId=c&externalThreadId=t"
        );
        assert_ne!(
            lane_key(&record(json!({"externalChatId": "c"}))),
            lane_key(&record(json!({"externalChatId": "d"})))
        );
    }

    #[test]
    fn retry_delays_grow_with_jitter_and_cap() {
        for _ in 0..50 {
            let first = retry_delay(1).as_millis();
            assert!((800..=1200).contains(&first), "{first}");
            let capped = retry_delay(20).as_millis();
            assert!((48_000..=72_000).contains(&capped), "{capped}");
        }
    }

    #[test]
    fn sent_cache_is_bounded_and_refreshes() {
        let mut cache = SentCache::default();
        for n in 0..(SENT_CACHE + 10) {
            cache.insert(("b".into(), n.to_string().into()));
        }
        assert!(!cache.contains(&("b".into(), "0".into())));
        assert!(cache.contains(&("b".into(), (SENT_CACHE + 9).to_string().into())));
        assert_eq!((cache.keys.len(), cache.lookup.len()), (SENT_CACHE, SENT_CACHE));
        cache.insert(("b".into(), (SENT_CACHE + 9).to_string().into()));
        assert_eq!(
            (cache.keys.len(), cache.lookup.len()),
            (SENT_CACHE, SENT_CACHE),
            "re-inserting moves, never duplicates"
        );
    }

    #[test]
    fn targets_map_from_cloud_fields() {
        let target = channel_target(
            &record(json!({"externalChatId": "c1", "threadId": "t1", "lastChatMessageId": "m"})),
            "cli".into(),
            "cli",
        );
        assert_eq!(
            (target.chat_id.as_str(), target.thread_id.as_deref(), target.message_id.as_deref()),
            ("c1", Some("t1"), Some("m"))
        );
        assert_eq!(channel_target(&record(json!({})), "cli".into(), "cli").chat_id, "unknown");
    }
}
