//! The delivery path: deliveries claimed on the Cloud stream are queued per (binding, target)
//! lane (strictly in order within a lane, concurrent across lanes up to `maxConcurrency`), sent
//! through the binding's channel (chunked, chunk ids `<deliveryId>:chunk:<n>`) and acknowledged.
//!
//! - A rate limit is pacing, not failure: the channel pauses for the platform's `retry_after`,
//!   the delivery waits holding its lane, and no attempt is used (`circuit.rs`).
//! - Real failures (5xx, network) are acked `failed` with a backoff up to 5 attempts, then
//!   `dead`; they alone feed the per-channel circuit breaker. A delivery cut in several messages
//!   that stopped part-way resumes at the first message not sent (`partly_sent.rs`).
//! - Leases run on the monotonic clock (`lease.rs`), so a host clock hours off still sends. A
//!   delivery whose lease is nearly over when its turn comes is left to the lease (shed, never
//!   dropped or sent twice); one whose wait outlasts its lease is handed back unsent, and hand-backs
//!   do not use up attempts.
//! - A full queue stops reading the stream (backpressure); a sent-cache of 2,048 ids keeps a
//!   re-served delivery from going out twice; a failed `sent` ack is retried while the lease
//!   lasts, never turned into `dead`.
//! - What an operator acts on is one log line each (`report.rs`).

mod backlog;
mod circuit;
mod lease;
mod partly_sent;
mod report;
mod send;

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;
use smol_str::SmolStr;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::channel::{ChannelRegistry, ChannelTarget};
use crate::cloud::client::CloudClient;
use crate::cloud::clock::CloudClock;
use crate::cloud::DeliveryRecord;
use crate::metrics::{Metrics, Stat};
use crate::shutdown::{Shutdown, WorkGuard};
use crate::util::keyed_lanes::Refused;
use backlog::{Admitted, Backlog};
use lease::{HandBacks, Lease};
use send::{ack_sent, handle_delivery, release};

/// What the dispatcher works with.
pub struct Dispatcher {
    pub metrics: Rc<Metrics>,
    pub registry: Rc<ChannelRegistry>,
    pub shutdown: Shutdown,
    /// `delivery.maxConcurrency`: lanes sending at once.
    pub max_concurrency: usize,
    /// `delivery.maxQueueDepth`: deliveries waiting before the stream is no longer read.
    pub max_queue_depth: usize,
    /// Cloud's clock as the delivery stream measured it: the times written for Cloud use it.
    pub clock: CloudClock,
    /// The claim lease asked for (`ttlMs`), when a record does not say what Cloud granted.
    pub requested_lease: Duration,
}

const SENT_CACHE: usize = 2048;
const MAX_ATTEMPTS: u64 = 5;

/// `(channelBindingId, deliveryId)`.
type DeliveryKey = (SmolStr, SmolStr);

fn delivery_key(delivery: &DeliveryRecord) -> DeliveryKey {
    (delivery.channel_binding_id.clone(), delivery.delivery_id.clone())
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

/// State shared by the dispatcher and its send tasks.
#[derive(Default)]
struct Shared {
    sent: SentCache,
    gates: circuit::Gates,
    hand_backs: HandBacks,
    partly_sent: partly_sent::PartlySent,
    log: report::DeliveryLog,
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

/// Runs until the delivery stream closes and everything queued was handled. The sends in
/// progress belong to this task: aborting it ends them unacked, left to their leases.
pub async fn run_dispatcher(
    dispatcher: Dispatcher,
    client: Rc<CloudClient>,
    mut incoming: mpsc::Receiver<DeliveryRecord>,
) {
    let dispatcher = Rc::new(dispatcher);
    let cap = dispatcher.max_queue_depth.max(dispatcher.max_concurrency);
    let shared = Rc::new(RefCell::new(Shared::default()));
    let mut backlog = Backlog::new(dispatcher.max_concurrency, cap);
    let mut open = true;
    let mut draining = false;
    let mut drain = dispatcher.shutdown.signal();
    let mut work: Option<WorkGuard> = None;
    loop {
        if !open && backlog.is_idle() {
            break;
        }
        tokio::select! {
            // At the drain, in-flight sends finish; deliveries still waiting are handed back to
            // Cloud at once, so the next process sends them without waiting out their leases.
            _ = drain.started(), if !draining => {
                draining = true;
                for delivery in backlog.drain() {
                    hand_back_unsent(&dispatcher, &client, delivery, SHUTDOWN_RELEASE);
                }
            }
            // A full queue stops reading: the stream backs up instead of dropping claims.
            delivery = incoming.recv(), if open && backlog.has_room() => match delivery {
                None => open = false,
                // Claimed as the subscription closed: hand it straight back.
                Some(delivery) if draining => hand_back_unsent(&dispatcher, &client, delivery, SHUTDOWN_RELEASE),
                Some(delivery) => {
                    let lease = Lease::of(&delivery, &dispatcher.clock, dispatcher.requested_lease);
                    admit(&dispatcher, &client, &shared, &mut backlog, (delivery, lease));
                }
            },
            again = backlog.next_sent(), if backlog.sending() > 0 => {
                if let Some(again) = again {
                    admit(&dispatcher, &client, &shared, &mut backlog, again);
                }
            }
        }
        start_sends(&dispatcher, &client, &shared, &mut backlog);
        // In-flight or queued deliveries are work the drain waits for (up to its deadline).
        match (!backlog.is_idle(), work.is_some()) {
            (true, false) => work = Some(dispatcher.shutdown.work_guard()),
            (false, true) => work = None,
            _ => {}
        }
    }
}

/// Starts the sends whose lanes' turn it is, up to `maxConcurrency`. A delivery whose lease is
/// nearly over is shed instead: sending it now could race Cloud re-serving it to another
/// claimant, so it is left to its lease, unacked, for Cloud to serve again (not a failed send).
fn start_sends(
    dispatcher: &Rc<Dispatcher>,
    client: &Rc<CloudClient>,
    shared: &Rc<RefCell<Shared>>,
    backlog: &mut Backlog,
) {
    while let Some((lane, (delivery, lease))) = backlog.next() {
        if !lease.allows(Duration::ZERO) {
            dispatcher.metrics.increment(Stat::DeliverySheds);
            shared.borrow_mut().hand_backs.note(&delivery_key(&delivery));
            if let Some(again) = backlog.shed(&lane) {
                admit(dispatcher, client, shared, backlog, again);
            }
            continue;
        }
        let (dispatcher, client, shared) = (Rc::clone(dispatcher), Rc::clone(client), Rc::clone(shared));
        backlog.send(lane, async move { handle_delivery(&dispatcher, &client, &shared, delivery, lease).await });
    }
}

/// A claim read from the stream (or parked until its earlier copy was done): acked from the
/// sent-cache when it already went out, else queued in its lane (or parked behind its copy).
fn admit(
    dispatcher: &Rc<Dispatcher>,
    client: &Rc<CloudClient>,
    shared: &Rc<RefCell<Shared>>,
    backlog: &mut Backlog,
    claim: backlog::Claim,
) {
    if shared.borrow().sent.contains(&delivery_key(&claim.0)) {
        dispatcher.metrics.increment(Stat::DeliveryDuplicatesSuppressed);
        let (dispatcher, client, shared) = (Rc::clone(dispatcher), Rc::clone(client), Rc::clone(shared));
        tokio::task::spawn_local(async move { ack_sent(&dispatcher, &client, &shared, &claim.0, &claim.1).await });
        return;
    }
    match backlog.push(claim) {
        Ok(Admitted::Queued) => {
            let depth = (backlog.queued() as u64).max(dispatcher.metrics.get(Stat::DeliveryQueueDepthMax));
            dispatcher.metrics.set_gauge(Stat::DeliveryQueueDepthMax, depth);
        }
        Ok(Admitted::Parked) => dispatcher.metrics.increment(Stat::DeliveryDuplicatesSuppressed),
        // Not reached: the stream is read only with room (parked claims count), and after the
        // drain claims are handed back before they get here. Handed back rather than dropped.
        Err(refused) => {
            let reason = match *refused {
                Refused::Full(_) => QUEUE_FULL_RELEASE,
                Refused::Draining(_) => SHUTDOWN_RELEASE,
            };
            hand_back_unsent(dispatcher, client, refused.into_item().0, reason);
        }
    }
}

/// Hands a delivery back unsent, as work the drain waits for.
fn hand_back_unsent(
    dispatcher: &Rc<Dispatcher>,
    client: &Rc<CloudClient>,
    delivery: DeliveryRecord,
    reason: &'static str,
) {
    let (dispatcher, client) = (Rc::clone(dispatcher), Rc::clone(client));
    let work = dispatcher.shutdown.work_guard();
    tokio::task::spawn_local(async move {
        release(&dispatcher, &client, &delivery, reason, UNSENT_RELEASE_DELAY).await;
        drop(work);
    });
}

/// Why a delivery the backlog could not take was handed back (its `lastError`).
const QUEUE_FULL_RELEASE: &str = "Released unsent: the gateway's delivery queue was full.";
/// Why a delivery was handed back at the drain (its `lastError`).
const SHUTDOWN_RELEASE: &str = "Released at gateway shutdown; not sent.";
/// Deliveries handed back unsent are claimable again after this: at the drain, long enough that
/// the closing stream (still read briefly for frames already on their way) is not offered them
/// again, short enough that the next process sends them at once.
const UNSENT_RELEASE_DELAY: Duration = Duration::from_secs(2);

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
