//! The two Cloud SSE subscriptions (docs/cloud-calls.md), resubscribing on errors **and** on
//! clean closes (the 30-minute server cap) with the streams' back-off (about a second first, then
//! decorrelated jitter up to 30 s), resuming from the last forwarded cursor so nothing is skipped
//! or repeated.
//!
//! Each follower forwards what it reads into a bounded channel; when the consumer is slow the
//! follower stops reading, which is the backpressure Cloud expects.

use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;
use smol_str::SmolStr;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::client::{CloudClient, SseConnection};
use super::clock::{CloudClock, SkewChange};
use super::error::CloudError;
use super::types::{DeliveryRecord, SessionEvent};
use crate::logging::WarnLimiter;
use crate::metrics::{Metrics, StreamKind, StreamStat};
use crate::net::backoff::Backoff;
use crate::shutdown::DrainSignal;

/// The delivery subscription as readiness sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// Connected: deliveries can be claimed.
    Live,
    /// It was live and is being reopened (Cloud closes streams every 30 minutes; a network blip);
    /// readiness holds for a short grace from `since`.
    Reconnecting { since: Instant, reason: String },
    /// Not connected, and not merely between two connections.
    Down(String),
    /// Closed on purpose because no channel can send right now (each channel's own state says
    /// why): nothing is claimed that could not be sent. Not a fault of the subscription.
    Paused(String),
}

impl Subscription {
    pub fn is_live(&self) -> bool {
        matches!(self, Subscription::Live)
    }
}

/// What the streams tell the rest of the gateway: whether the delivery subscription is live and
/// whether Cloud accepts the service token. Readiness watches it; the streams never reach into
/// the gateway's state themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudStatus {
    pub subscription: Subscription,
    /// `Err(reason)` while Cloud rejects the service token on a gateway-wide call: 401 anywhere,
    /// 403 on the delivery stream.
    pub token: Result<(), String>,
    /// Session streams Cloud refuses with 403 right now: one chat's binding is not granted to the
    /// token, which degrades that chat, not the gateway.
    pub refused_session_streams: usize,
}

/// The writing side of [`CloudStatus`], shared by every stream follower.
#[derive(Clone)]
pub struct CloudStatusReporter(Rc<watch::Sender<CloudStatus>>);

impl CloudStatusReporter {
    /// A reporter and the receiver readiness reads; the subscription starts down with
    /// `initial_reason`.
    pub fn new(initial_reason: &str) -> (Self, watch::Receiver<CloudStatus>) {
        let (sender, receiver) = watch::channel(CloudStatus {
            subscription: Subscription::Down(initial_reason.to_owned()),
            token: Ok(()),
            refused_session_streams: 0,
        });
        (Self(Rc::new(sender)), receiver)
    }

    fn live(&self) {
        self.0.send_modify(|status| status.subscription = Subscription::Live);
    }

    /// The subscription ended or a reopen failed: reconnecting if it was live (or already
    /// reconnecting, keeping when that began), else down.
    fn lost(&self, reason: &str) {
        self.0.send_modify(|status| {
            status.subscription = match &status.subscription {
                Subscription::Live => Subscription::Reconnecting { since: Instant::now(), reason: reason.to_owned() },
                Subscription::Reconnecting { since, .. } => {
                    Subscription::Reconnecting { since: *since, reason: reason.to_owned() }
                }
                Subscription::Down(_) | Subscription::Paused(_) => Subscription::Down(reason.to_owned()),
            }
        });
    }

    fn down(&self, reason: &str) {
        self.0.send_modify(|status| status.subscription = Subscription::Down(reason.to_owned()));
    }

    fn paused(&self, reason: &str) {
        self.0.send_modify(|status| status.subscription = Subscription::Paused(reason.to_owned()));
    }

    fn token_accepted(&self) {
        self.0.send_if_modified(|status| std::mem::replace(&mut status.token, Ok(())).is_err());
    }

    /// Returns whether the token was accepted until now (so the outage is logged once).
    fn token_rejected(&self, reason: String) -> bool {
        let mut was_ok = false;
        self.0.send_modify(|status| was_ok = std::mem::replace(&mut status.token, Err(reason)).is_ok());
        was_ok
    }

    fn count_refused_session(&self, refused: bool) {
        self.0.send_modify(|status| {
            status.refused_session_streams = if refused {
                status.refused_session_streams + 1
            } else {
                status.refused_session_streams.saturating_sub(1)
            };
        });
    }
}

/// Marks one session stream as refused (403) in [`CloudStatus::refused_session_streams`] while
/// Cloud refuses it; the mark goes when the stream opens or its follower ends.
struct RefusedSessionMark<'a> {
    status: &'a CloudStatusReporter,
    marked: bool,
}

impl RefusedSessionMark<'_> {
    /// Returns whether this is a change (so a refusal is logged once, not on every retry).
    fn set(&mut self, refused: bool) -> bool {
        if self.marked == refused {
            return false;
        }
        self.marked = refused;
        self.status.count_refused_session(refused);
        true
    }
}

impl Drop for RefusedSessionMark<'_> {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// What a stream follower needs besides the Cloud client.
#[derive(Clone)]
pub struct StreamContext {
    pub metrics: Rc<Metrics>,
    pub drain: DrainSignal,
    pub status: CloudStatusReporter,
    /// Repeated in-band stream errors are logged once a minute.
    pub warnings: Rc<WarnLimiter>,
}

/// What a session stream hands its consumer.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionStreamItem {
    /// A new event, in sequence order, never one at or below the cursor. Boxed: a queue slot
    /// per open stream stays small.
    Event(Box<SessionEvent>),
    /// After `snapshot.required`: Cloud dropped events up to `sequence`; persist it as the cursor.
    CursorJump(u64),
    /// Cloud refused to open the stream with 429 (its per-organisation stream cap); the follower
    /// waits the given `retry-after` before it tries again.
    RateLimited(Duration),
}

/// Why a connection ended.
enum Ended {
    Drain,
    ConsumerGone,
    Reconnect,
}

/// Waits for `future` unless the drain starts first.
async fn unless_draining<T>(drain: &mut DrainSignal, future: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        value = future => Some(value),
        _ = drain.started() => None,
    }
}

/// Records a failed connection or stream error. A rejected token (401, or 403 on the gateway-wide
/// delivery stream) raises the `cloud_auth` condition and is logged once per outage; a 403 on one
/// session's stream is that binding's grant, logged by the caller, never the token.
fn note_error(context: &StreamContext, kind: StreamKind, error: &CloudError) {
    record_error(context, kind);
    if error.status == Some(403) && kind == StreamKind::Session {
        return;
    }
    if error.is_auth() {
        let was_ok = context.status.token_rejected(format!("Cloud rejected the service token: {}", error.message));
        if was_ok {
            tracing::error!(status = ?error.status, error = %crate::config::redact::Redacted(&error.message), "Cloud rejected the gateway service token; check OPEN_COWORK_GATEWAY_SERVICE_TOKEN and its channel-binding grants");
        }
    } else {
        tracing::warn!(stream = ?kind, error = %crate::config::redact::redact_text(&error.to_string()), "Cloud stream failed");
    }
}

/// Counts a stream error; delivery-stream errors also count in `open_cowork_gateway_errors_total`.
fn record_error(context: &StreamContext, kind: StreamKind) {
    context.metrics.record_stream(kind, StreamStat::Errors);
    if kind == StreamKind::Delivery {
        context.metrics.increment(crate::metrics::Stat::Errors);
    }
}

/// Follows one session binding's events from `cursor` until the drain starts or the consumer
/// goes away.
pub async fn follow_session_events(
    context: &StreamContext,
    client: &CloudClient,
    session_binding_id: SmolStr,
    mut cursor: u64,
    items: mpsc::Sender<SessionStreamItem>,
) {
    let mut drain = context.drain.clone();
    let mut backoff = Backoff::for_streams();
    let mut connected_before = false;
    let mut refused = RefusedSessionMark { status: &context.status, marked: false };
    loop {
        // Boxed: opening is brief, and inline its request state would size every open stream.
        let open = Box::pin(client.open_session_events(&session_binding_id, cursor));
        let Some(opened) = unless_draining(&mut drain, open).await else {
            return;
        };
        let delay = match opened {
            Ok(mut connection) => {
                context.metrics.record_stream(
                    StreamKind::Session,
                    if connected_before { StreamStat::Reconnects } else { StreamStat::Connects },
                );
                connected_before = true;
                context.status.token_accepted();
                refused.set(false);
                match read_session_events(
                    context,
                    client,
                    &session_binding_id,
                    &mut connection,
                    &mut cursor,
                    &items,
                    &mut drain,
                    &mut backoff,
                )
                .await
                {
                    Ended::Drain | Ended::ConsumerGone => return,
                    Ended::Reconnect => backoff.next_delay(),
                }
            }
            Err(error) if error.status == Some(429) => {
                // Cloud's stream cap: wait what Cloud asks (at least a second), then the back-off.
                let wait = error.retry_after.unwrap_or(Duration::from_secs(1)).max(Duration::from_secs(1));
                if !session_rate_limited(context, &items, wait) {
                    return;
                }
                wait + backoff.next_delay()
            }
            Err(error) => {
                session_open_failed(context, &mut refused, &session_binding_id, &error);
                backoff.next_delay()
            }
        };
        if unless_draining(&mut drain, tokio::time::sleep(delay)).await.is_none() {
            return;
        }
    }
}

/// A session stream refused with 429 (Cloud's per-organisation stream cap): not a fault to log
/// per attempt, so counted, logged at most once a minute, and passed to the consumer, which
/// lowers its stream budget. Returns false when the consumer is gone.
fn session_rate_limited(context: &StreamContext, items: &mpsc::Sender<SessionStreamItem>, wait: Duration) -> bool {
    record_error(context, StreamKind::Session);
    if let Some(suppressed) = context.warnings.allow("session-stream-429", std::time::Instant::now()) {
        tracing::warn!(suppressed, "Cloud refused a session stream: too many concurrent streams for this organization");
    }
    !(items.try_send(SessionStreamItem::RateLimited(wait)).is_err() && items.is_closed())
}

/// A session stream that could not be opened (other than 429). A 403 is one chat's missing grant:
/// logged once per refused stream, and at most one line a minute however many chats are refused
/// (the count of held-back lines goes with the next one).
fn session_open_failed(
    context: &StreamContext,
    refused: &mut RefusedSessionMark<'_>,
    session_binding_id: &str,
    error: &CloudError,
) {
    let newly_refused = error.status == Some(403) && refused.set(true);
    let allowed = || context.warnings.allow("session-stream-403", std::time::Instant::now());
    if let Some(suppressed) = newly_refused.then(allowed).flatten() {
        tracing::warn!(
            session_binding_id = %session_binding_id,
            suppressed,
            error = %crate::config::redact::redact_text(&error.message),
            "Cloud refused one chat's session stream (403): the service token has no grant for its channel binding; other chats are unaffected. Grant the binding to the gateway's token in Cloud"
        );
    }
    note_error(context, StreamKind::Session, error);
}

#[allow(clippy::too_many_arguments)]
async fn read_session_events(
    context: &StreamContext,
    client: &CloudClient,
    session_binding_id: &str,
    connection: &mut SseConnection,
    cursor: &mut u64,
    items: &mpsc::Sender<SessionStreamItem>,
    drain: &mut DrainSignal,
    backoff: &mut Backoff,
) -> Ended {
    loop {
        let Some(next) = unless_draining(drain, connection.next_event()).await else { return Ended::Drain };
        // The frame ends in this match: its text is not kept while the follower waits below.
        let parsed = match next {
            Ok(Some(frame)) => {
                context.metrics.record_stream(StreamKind::Session, StreamStat::Frames);
                read_session_frame(context, &frame.data, *cursor)
            }
            Ok(None) => return Ended::Reconnect,
            Err(error) => {
                note_error(context, StreamKind::Session, &error);
                return Ended::Reconnect;
            }
        };
        let item = match parsed {
            SessionFrame::Item(item) => item,
            SessionFrame::Stale => continue,
            SessionFrame::Invalid => return Ended::Reconnect,
            SessionFrame::Snapshot { floor } => {
                // Boxed like the open: a rare call whose state every open stream would carry.
                let snapshot = match unless_draining(drain, Box::pin(client.get_session(session_binding_id))).await {
                    None => return Ended::Drain,
                    Some(Ok(view)) => view,
                    Some(Err(error)) => {
                        note_error(context, StreamKind::Session, &error);
                        return Ended::Reconnect;
                    }
                };
                let jump = floor.max(snapshot.projection.map_or(0, |p| p.sequence));
                if jump <= *cursor {
                    continue;
                }
                SessionStreamItem::CursorJump(jump)
            }
        };
        *cursor = match &item {
            SessionStreamItem::Event(event) => event.sequence,
            SessionStreamItem::CursorJump(jump) => *jump,
            SessionStreamItem::RateLimited(_) => *cursor,
        };
        backoff.reset();
        match unless_draining(drain, items.send(item)).await {
            None => return Ended::Drain,
            Some(Err(_)) => return Ended::ConsumerGone,
            Some(Ok(())) => {}
        }
    }
}

/// What one session stream frame asks of its follower.
enum SessionFrame {
    /// Hand this on (a new event, above the cursor).
    Item(SessionStreamItem),
    /// An event at or below the cursor: already handed on.
    Stale,
    /// Not a session event: reconnect from the cursor.
    Invalid,
    /// `snapshot.required`: Cloud dropped events; the cursor jumps to at least `floor` (and to the
    /// snapshot's projection, which the follower reads next).
    Snapshot { floor: u64 },
}

/// Reads one frame's JSON. Kept out of the async follower: the parsed event lives only here, so
/// it never takes room in the state every open stream carries while it waits.
fn read_session_frame(context: &StreamContext, data: &str, cursor: u64) -> SessionFrame {
    let event: SessionEvent = match serde_json::from_str(data) {
        Ok(event) => event,
        Err(error) => {
            context.metrics.record_stream(StreamKind::Session, StreamStat::Errors);
            tracing::warn!(%error, "a session event was not valid JSON; reconnecting from the cursor");
            return SessionFrame::Invalid;
        }
    };
    if event.event_type == "snapshot.required" {
        let latest = event.payload.get("latestSequence").and_then(Value::as_u64).unwrap_or(0);
        return SessionFrame::Snapshot { floor: cursor.max(latest).max(event.sequence) };
    }
    if event.sequence <= cursor {
        return SessionFrame::Stale;
    }
    SessionFrame::Item(SessionStreamItem::Event(Box::new(event)))
}

/// Delivery subscription settings.
#[derive(Debug, Clone)]
pub struct DeliveryStreamOptions {
    /// This gateway's claimant name (`claimedBy`).
    pub claimed_by: String,
    /// Claim lease Cloud puts on each delivery (the gateway sends 120000).
    pub ttl_ms: u64,
    /// Reopen the stream when no delivery arrived for this long (heartbeats do not count).
    pub quiet_rotation: Duration,
    /// Measured against Cloud's `Date` at every open; the dispatcher writes Cloud's times with it.
    pub clock: CloudClock,
}

impl DeliveryStreamOptions {
    /// The gateway's settings: a 120 s claim lease, a 5-minute quiet rotation.
    pub fn new(claimed_by: String) -> Self {
        Self { claimed_by, ttl_ms: 120_000, quiet_rotation: Duration::from_secs(300), clock: CloudClock::default() }
    }
}

/// Follows the delivery stream for the channel bindings `bindings` names (the bindings whose
/// channels can send now; the stream is reopened when that set changes, and not opened while it
/// is empty, so nothing is claimed that cannot be sent) until the drain starts (which closes the
/// subscription first, so no new claims arrive while sends drain) or the consumer goes away.
pub async fn follow_deliveries(
    context: &StreamContext,
    client: &CloudClient,
    options: DeliveryStreamOptions,
    mut bindings: watch::Receiver<Vec<SmolStr>>,
    deliveries: mpsc::Sender<DeliveryRecord>,
) {
    let mut drain = context.drain.clone();
    let mut backoff = Backoff::for_streams();
    let claimed_by = options.claimed_by.clone();
    let mut connected_before = false;
    loop {
        let current = bindings.borrow_and_update().clone();
        if current.is_empty() {
            context.status.paused("No channel can send right now, so no delivery is claimed.");
            let changed = tokio::select! {
                changed = bindings.changed() => changed.is_ok(),
                _ = drain.started() => false,
            };
            if !changed {
                break;
            }
            continue;
        }
        let Some(opened) =
            unless_draining(&mut drain, client.open_delivery_stream(&claimed_by, options.ttl_ms, &current)).await
        else {
            break;
        };
        let mut rotate = false;
        match opened {
            Ok(mut connection) => {
                context.metrics.record_stream(
                    StreamKind::Delivery,
                    if connected_before { StreamStat::Reconnects } else { StreamStat::Connects },
                );
                if !connected_before {
                    tracing::info!(bindings = current.len(), claimed_by = %claimed_by, "delivery subscription connected");
                }
                connected_before = true;
                let connected_at = Instant::now();
                if let Some(date) = connection.cloud_date_ms {
                    note_clock(context, &options.clock, date);
                }
                context.status.live();
                context.status.token_accepted();
                let end = tokio::select! {
                    end = read_deliveries(context, &mut connection, &options, &deliveries, &mut drain, &mut backoff) => end,
                    _ = bindings.changed() => DeliveryEnd::Quiet,
                };
                match end {
                    DeliveryEnd::Drain | DeliveryEnd::ConsumerGone => break,
                    DeliveryEnd::Quiet => rotate = true,
                    DeliveryEnd::Reconnect => {}
                    // Not an outage: reopened after about a second, like the first reopen of one.
                    DeliveryEnd::Closed => backoff.reset(),
                }
                // A connection that held for a while ends a new outage, if any: its first reopen
                // comes after about a second again.
                if connected_at.elapsed() >= HEALTHY_CONNECTION {
                    backoff.reset();
                }
                context.status.lost("The Cloud delivery stream is reconnecting.");
            }
            Err(error) => {
                note_error(context, StreamKind::Delivery, &error);
                context.status.lost(&format!("The Cloud delivery stream cannot connect: {}", error.message));
            }
        }
        let delay = if rotate { Duration::ZERO } else { backoff.next_delay() };
        if unless_draining(&mut drain, tokio::time::sleep(delay)).await.is_none() {
            break;
        }
    }
    context.status.down("The delivery subscription is closed.");
}

/// Measures the local clock against Cloud's `Date`: a gauge always, one log line when the skew
/// first goes beyond tolerance and one when it is back.
fn note_clock(context: &StreamContext, clock: &CloudClock, cloud_date_ms: u64) {
    let change = clock.observe(cloud_date_ms, crate::time::now_ms());
    let skew = clock.skew_ms().unwrap_or(0);
    context.metrics.set_gauge(crate::metrics::Stat::CloudClockSkewSeconds, skew.unsigned_abs() / 1000);
    match change {
        SkewChange::Beyond(skew) => tracing::warn!(
            skew_seconds = skew / 1000,
            direction = if skew > 0 { "ahead" } else { "behind" },
            "this host's clock is far from Cloud's; deliveries still go out (leases run on the monotonic clock), but fix the host's time source (NTP)"
        ),
        SkewChange::Recovered => tracing::info!(skew_ms = skew, "this host's clock agrees with Cloud's again"),
        SkewChange::Unchanged => {}
    }
}

/// A delivery stream that stayed open this long was healthy: the back-off starts over.
const HEALTHY_CONNECTION: Duration = Duration::from_secs(60);

/// At the drain, frames already on their way are read until none came for this long…
const DRAIN_READ_QUIET: Duration = Duration::from_millis(100);
/// …or for this long at most.
const DRAIN_READ_LIMIT: Duration = Duration::from_secs(1);

enum DeliveryEnd {
    Drain,
    ConsumerGone,
    Quiet,
    /// Cloud ended the stream cleanly (its lifetime cap): not an outage.
    Closed,
    Reconnect,
}

async fn read_deliveries(
    context: &StreamContext,
    connection: &mut SseConnection,
    options: &DeliveryStreamOptions,
    deliveries: &mpsc::Sender<DeliveryRecord>,
    drain: &mut DrainSignal,
    backoff: &mut Backoff,
) -> DeliveryEnd {
    let mut quiet_until = Instant::now() + options.quiet_rotation;
    // Once the drain begins: frames Cloud already claimed and sent are still read (and handed to
    // the dispatcher, which gives them back), until the connection is quiet for a moment.
    let mut draining_until: Option<Instant> = None;
    loop {
        let next = match draining_until {
            None => tokio::select! {
                next = connection.next_event() => next,
                _ = tokio::time::sleep_until(quiet_until) => return DeliveryEnd::Quiet,
                _ = drain.started() => {
                    draining_until = Some(Instant::now() + DRAIN_READ_LIMIT);
                    continue;
                }
            },
            Some(limit) => tokio::select! {
                next = connection.next_event() => next,
                _ = tokio::time::sleep(DRAIN_READ_QUIET) => return DeliveryEnd::Drain,
                _ = tokio::time::sleep_until(limit) => return DeliveryEnd::Drain,
            },
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => return DeliveryEnd::Closed,
            Err(error) => {
                note_error(context, StreamKind::Delivery, &error);
                return DeliveryEnd::Reconnect;
            }
        };
        context.metrics.record_stream(StreamKind::Delivery, StreamStat::Frames);
        let Ok(Value::Object(mut data)) = serde_json::from_str::<Value>(&frame.data) else {
            record_error(context, StreamKind::Delivery);
            tracing::warn!("a delivery stream frame was not a JSON object; reconnecting");
            return DeliveryEnd::Reconnect;
        };
        if let Some(error) = data.get("error") {
            // In-band errors (quota, scope) leave the stream open; Cloud retries on its next poll.
            record_error(context, StreamKind::Delivery);
            let now = std::time::Instant::now();
            if let Some(suppressed) = context.warnings.allow("delivery-stream-error", now) {
                tracing::warn!(error = %crate::config::redact::Redacted(&error.as_str().unwrap_or("unknown")), suppressed, "Cloud reported a delivery stream error");
            }
            continue;
        }
        let Some(record) = data.remove("delivery") else { continue };
        let record: DeliveryRecord = match serde_json::from_value(record) {
            Ok(record) => record,
            Err(error) => {
                record_error(context, StreamKind::Delivery);
                tracing::warn!(%error, "a delivery record had an unexpected shape; its lease will expire and Cloud re-serves it");
                continue;
            }
        };
        backoff.reset();
        quiet_until = Instant::now() + options.quiet_rotation;
        // A record read from the stream is claimed: it is handed over even when the drain has
        // begun (the dispatcher hands such deliveries back to Cloud), never dropped here.
        if deliveries.send(record).await.is_err() {
            return DeliveryEnd::ConsumerGone;
        }
    }
}

#[cfg(test)]
#[cfg(feature = "devcloud")]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::devcloud::{DevCloud, DevCloudOptions};
    use crate::net::https::build_client;

    async fn wait_until(mut condition: impl FnMut() -> bool) {
        tokio::time::timeout(Duration::from_secs(20), async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("condition reached in time");
    }

    fn context(shutdown: &crate::shutdown::Shutdown) -> (StreamContext, watch::Receiver<CloudStatus>) {
        let (status, receiver) = CloudStatusReporter::new("not connected yet");
        let config = crate::config::test_config(&[]);
        let context = StreamContext {
            metrics: Rc::new(Metrics::new(&config)),
            drain: shutdown.signal(),
            status,
            warnings: Rc::new(WarnLimiter::new(Duration::from_secs(60))),
        };
        (context, receiver)
    }

    fn bindings() -> watch::Receiver<Vec<SmolStr>> {
        let (sender, receiver) = watch::channel(vec![SmolStr::new("fake-binding")]);
        std::mem::forget(sender);
        receiver
    }

    fn options() -> DeliveryStreamOptions {
        DeliveryStreamOptions::new("gateway-test".into())
    }

    #[test]
    fn the_status_follows_the_delivery_subscription() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, async {
            let cloud = DevCloud::new(DevCloudOptions {
                poll_interval: Duration::from_millis(20),
                ..DevCloudOptions::default()
            });
            let seeded = cloud.seed();
            let address = cloud.start("127.0.0.1", 0).await.unwrap();
            let base_url = format!("http://{address}");
            let shutdown = crate::shutdown::Shutdown::new();
            let (context, status) = context(&shutdown);
            assert!(!status.borrow().subscription.is_live(), "no subscription yet");

            let client = CloudClient::new(
                build_client(None).unwrap(),
                &base_url,
                Secret::new(seeded.gateway_token.clone()),
                Duration::from_secs(5),
            );
            let (tx, _rx) = mpsc::channel(8);
            let follower = tokio::task::spawn_local(async move {
                follow_deliveries(&context, &client, options(), bindings(), tx).await
            });
            wait_until(|| status.borrow().subscription.is_live()).await;

            cloud.stop();
            wait_until(|| !status.borrow().subscription.is_live()).await;
            let Subscription::Reconnecting { reason, .. } = status.borrow().subscription.clone() else {
                panic!("a lost subscription that was live is reconnecting");
            };
            assert!(reason.contains("delivery stream"), "the reason is shown to operators: {reason}");

            cloud.start("127.0.0.1", address.port()).await.unwrap();
            wait_until(|| status.borrow().subscription.is_live()).await;

            shutdown.begin_drain();
            follower.await.unwrap();
            assert!(
                matches!(status.borrow().subscription, Subscription::Down(_)),
                "a subscription closed at the drain is down, not reconnecting"
            );
        });
    }

    /// Cloud's address answers every connection with a reset: the first minute of the outage
    /// costs at most six more opens, and afterwards two or three a minute.
    #[test]
    fn connection_resets_are_retried_a_few_times_a_minute() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let opens = Rc::new(std::cell::RefCell::new(Vec::new()));
            let seen = Rc::clone(&opens);
            tokio::task::spawn_local(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    seen.borrow_mut().push(Instant::now());
                    stream.set_zero_linger().unwrap();
                    drop(stream);
                }
            });
            let shutdown = crate::shutdown::Shutdown::new();
            let (context, _status) = context(&shutdown);
            let client = CloudClient::new(
                build_client(None).unwrap(),
                &format!("http://{address}"),
                Secret::new("occ_tok_reset_test"),
                Duration::from_secs(5),
            );
            let (tx, _rx) = mpsc::channel(8);
            let follower = tokio::task::spawn_local(async move {
                follow_deliveries(&context, &client, options(), bindings(), tx).await
            });
            tokio::time::sleep(Duration::from_secs(360)).await;
            let opens = opens.borrow().clone();
            let outage = opens[0];
            let in_window = |from: u64, to: u64| {
                opens
                    .iter()
                    .filter(|at| **at > outage + Duration::from_secs(from) && **at <= outage + Duration::from_secs(to))
                    .count()
            };
            let first_minute = in_window(0, 60);
            assert!(first_minute <= 6, "{first_minute} reopens in the first minute: {opens:?}");
            let steady = in_window(60, 360);
            assert!((9..=16).contains(&steady), "{steady} reopens in the next five minutes");
            shutdown.begin_drain();
            follower.await.unwrap();
        });
    }

    #[test]
    fn a_rejected_token_is_reported_once_and_retried_with_backoff() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, async {
            let cloud = DevCloud::new(DevCloudOptions::default());
            cloud.seed();
            let address = cloud.start("127.0.0.1", 0).await.unwrap();
            let base_url = format!("http://{address}");
            let shutdown = crate::shutdown::Shutdown::new();
            let (context, status) = context(&shutdown);
            let metrics = Rc::clone(&context.metrics);
            let client = CloudClient::new(
                build_client(None).unwrap(),
                &base_url,
                Secret::new("occ_tok_revoked_secret"),
                Duration::from_secs(5),
            );
            let (tx, _rx) = mpsc::channel(8);
            let follower = tokio::task::spawn_local(async move {
                follow_deliveries(&context, &client, options(), bindings(), tx).await
            });
            wait_until(|| status.borrow().token.is_err()).await;
            // Backoff, not a hot loop: after half a second only a handful of attempts were made.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let attempts = metrics.stream_count(StreamKind::Delivery, StreamStat::Errors);
            assert!((1..=10).contains(&attempts), "{attempts} attempts");
            shutdown.begin_drain();
            follower.await.unwrap();
        });
    }
}
