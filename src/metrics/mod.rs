//! Gateway metrics, the registry: counters and gauges in `Cell`s (one thread,
//! nothing to lock), per-provider records, channel-stack telemetry and Cloud stream counts. The two
//! views of it live next door: `prometheus` writes the text exposition in upstream's family order,
//! `json` builds the raw object that `/diagnostics` shows.
//!
//! Labels carry only configuration-bounded values (provider id and kind, fixed state and outcome
//! names): never a user, chat or token.

mod json;
pub(crate) mod process;
mod prometheus;
mod window;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, ProviderKind};

pub use prometheus::{escape_label, write_ready};
pub use window::DeliveryOutcome;

/// A gateway-wide value: a counter, or one of the two cell-backed gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    IncomingMessages,
    PromptedMessages,
    InteractionsResolved,
    DeliveriesReceived,
    DeliveriesSent,
    DeliveryRetries,
    DeliveryDeadLetters,
    WebhookRequests,
    SessionStreams,
    StreamReconnects,
    StreamEvictions,
    SessionRenderRetries,
    SessionRenderDeadLetters,
    CursorPersistenceFailures,
    CloudSubscriptionErrors,
    Errors,
    DroppedSessionEvents,
    StreamBackpressureDisconnects,
    DeliveryQueueDepthMax,
    DeliverySheds,
    DeliveryDuplicatesSuppressed,
    DeliveryReleases,
    SessionRenderDelays,
    SessionStreamBudget,
    SessionStreamsWaiting,
    SessionStreamRateLimits,
    SessionStreamIdleCloses,
    DeliveryRateLimitWaits,
    CloudClockSkewSeconds,
}

struct StatInfo {
    stat: Stat,
    name: &'static str,
    gauge: bool,
    json_key: &'static str,
    help: &'static str,
}

const fn info(stat: Stat, name: &'static str, gauge: bool, json_key: &'static str, help: &'static str) -> StatInfo {
    StatInfo { stat, name, gauge, json_key, help }
}

/// Stats printed before the delivery latency histogram, in upstream order.
const STATS_BEFORE_LATENCY: [StatInfo; 7] = [
    info(
        Stat::IncomingMessages,
        "open_cowork_gateway_incoming_messages_total",
        false,
        "incomingMessages",
        "Inbound channel messages handled.",
    ),
    info(
        Stat::PromptedMessages,
        "open_cowork_gateway_prompted_messages_total",
        false,
        "promptedMessages",
        "Prompts sent to Cloud sessions.",
    ),
    info(
        Stat::InteractionsResolved,
        "open_cowork_gateway_interactions_resolved_total",
        false,
        "interactionsResolved",
        "Approval and question interactions resolved.",
    ),
    info(
        Stat::DeliveriesReceived,
        "open_cowork_gateway_deliveries_received_total",
        false,
        "deliveriesReceived",
        "Cloud deliveries handled.",
    ),
    info(
        Stat::DeliveriesSent,
        "open_cowork_gateway_deliveries_sent_total",
        false,
        "deliveriesSent",
        "Deliveries acknowledged as sent.",
    ),
    info(
        Stat::DeliveryRetries,
        "open_cowork_gateway_delivery_retries_total",
        false,
        "deliveryRetries",
        "Deliveries acknowledged as failed for retry.",
    ),
    info(
        Stat::DeliveryDeadLetters,
        "open_cowork_gateway_delivery_dead_letters_total",
        false,
        "deliveryDeadLetters",
        "Deliveries dead-lettered.",
    ),
];

/// Stats printed after the delivery latency histogram, in upstream order.
const STATS_AFTER_LATENCY: [StatInfo; 22] = [
    info(
        Stat::WebhookRequests,
        "open_cowork_gateway_webhook_requests_total",
        false,
        "webhookRequests",
        "Webhook requests received, including rejected ones.",
    ),
    info(
        Stat::SessionStreams,
        "open_cowork_gateway_session_streams",
        true,
        "sessionStreams",
        "Open Cloud session event streams.",
    ),
    info(
        Stat::StreamReconnects,
        "open_cowork_gateway_stream_reconnects_total",
        false,
        "streamReconnects",
        "Cloud stream reconnects.",
    ),
    info(
        Stat::StreamEvictions,
        "open_cowork_gateway_stream_evictions_total",
        false,
        "streamEvictions",
        "Idle session streams evicted.",
    ),
    info(
        Stat::SessionRenderRetries,
        "open_cowork_gateway_session_render_retries_total",
        false,
        "sessionRenderRetries",
        "Session event renders retried.",
    ),
    info(
        Stat::SessionRenderDeadLetters,
        "open_cowork_gateway_session_render_dead_letters_total",
        false,
        "sessionRenderDeadLetters",
        "Session events skipped after the render retry budget.",
    ),
    info(
        Stat::CursorPersistenceFailures,
        "open_cowork_gateway_cursor_persistence_failures_total",
        false,
        "cursorPersistenceFailures",
        "Session cursor updates that failed.",
    ),
    info(
        Stat::CloudSubscriptionErrors,
        "open_cowork_gateway_cloud_subscription_errors_total",
        false,
        "cloudSubscriptionErrors",
        "Cloud stream subscription errors.",
    ),
    info(
        Stat::Errors,
        "open_cowork_gateway_errors_total",
        false,
        "errors",
        "Requests that ended in a gateway error response.",
    ),
    info(
        Stat::DroppedSessionEvents,
        "open_cowork_gateway_dropped_session_events_total",
        false,
        "droppedSessionEvents",
        "Session events dropped.",
    ),
    info(
        Stat::StreamBackpressureDisconnects,
        "open_cowork_gateway_stream_backpressure_disconnects_total",
        false,
        "streamBackpressureDisconnects",
        "Streams closed because a consumer fell behind.",
    ),
    info(
        Stat::DeliveryQueueDepthMax,
        "open_cowork_gateway_delivery_queue_depth_max",
        true,
        "deliveryQueueDepthMax",
        "High-water mark of the delivery queue.",
    ),
    info(
        Stat::DeliverySheds,
        "open_cowork_gateway_delivery_sheds_total",
        false,
        "deliverySheds",
        "Deliveries left to their lease because the queue was full.",
    ),
    info(
        Stat::DeliveryDuplicatesSuppressed,
        "open_cowork_gateway_delivery_duplicates_suppressed_total",
        false,
        "deliveryDuplicatesSuppressed",
        "Duplicate deliveries suppressed.",
    ),
    info(
        Stat::DeliveryReleases,
        "open_cowork_gateway_delivery_releases_total",
        false,
        "deliveryReleases",
        "Claimed deliveries handed back to Cloud unsent (at shutdown, or while their channel could not send).",
    ),
    info(
        Stat::SessionRenderDelays,
        "open_cowork_gateway_session_render_delays_total",
        false,
        "sessionRenderDelays",
        "Session event renders that waited out a channel's rate limit before trying again.",
    ),
    info(
        Stat::SessionStreamBudget,
        "open_cowork_gateway_session_stream_budget",
        true,
        "sessionStreamBudget",
        "Session streams that may be open now (lowered for a while after Cloud answered 429).",
    ),
    info(
        Stat::SessionStreamsWaiting,
        "open_cowork_gateway_session_streams_waiting",
        true,
        "sessionStreamsWaiting",
        "Chats waiting for a session stream slot.",
    ),
    info(
        Stat::SessionStreamRateLimits,
        "open_cowork_gateway_session_stream_rate_limits_total",
        false,
        "sessionStreamRateLimits",
        "Session stream opens Cloud refused with 429 (its per-organisation stream cap).",
    ),
    info(
        Stat::SessionStreamIdleCloses,
        "open_cowork_gateway_session_stream_idle_closes_total",
        false,
        "sessionStreamIdleCloses",
        "Session streams closed because their session went idle.",
    ),
    info(
        Stat::DeliveryRateLimitWaits,
        "open_cowork_gateway_delivery_rate_limit_waits_total",
        false,
        "deliveryRateLimitWaits",
        "Delivery sends that waited out a channel's rate limit, holding their lane, without using an attempt.",
    ),
    info(
        Stat::CloudClockSkewSeconds,
        "open_cowork_gateway_cloud_clock_skew_seconds",
        true,
        "cloudClockSkewSeconds",
        "How far this host's wall clock is from Cloud's (absolute, in seconds; leases do not depend on it).",
    ),
];

const STAT_COUNT: usize = STATS_BEFORE_LATENCY.len() + STATS_AFTER_LATENCY.len();

fn all_stats() -> impl Iterator<Item = &'static StatInfo> {
    STATS_BEFORE_LATENCY.iter().chain(STATS_AFTER_LATENCY.iter())
}

/// The tables list every stat in declaration order (a test checks it), so the discriminant is
/// the index: counting stays a plain array access on hot paths.
fn stat_index(stat: Stat) -> usize {
    stat as usize
}

const DELIVERY_BUCKETS_MS: [f64; 9] = [50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0];
const TELEMETRY_BUCKETS_MS: [f64; 10] = [25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0];

/// A fixed-bucket histogram; `counts` are per bucket (not cumulative), the last one is `+Inf`.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(buckets: usize) -> Self {
        Self { counts: vec![0; buckets + 1], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, bounds: &[f64], value: f64) {
        let index = bounds.iter().position(|b| value <= *b).unwrap_or(bounds.len());
        self.counts[index] += 1;
        self.sum += value;
        self.count += 1;
    }
}

/// Provider lifecycle state as exposed by `open_cowork_gateway_provider_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderState {
    Configured,
    Starting,
    Healthy,
    Unhealthy,
    Failed,
    Stopped,
}

impl ProviderState {
    const ALL: [ProviderState; 6] =
        [Self::Configured, Self::Starting, Self::Healthy, Self::Unhealthy, Self::Failed, Self::Stopped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Configured => "configured",
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

/// Per-provider counters, in the order of their Prometheus families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderStat {
    IncomingMessages,
    InboundDuplicates,
    InboundFailures,
    PromptedMessages,
    InteractionsResolved,
    DeliveriesReceived,
    DeliveriesSent,
    DeliveryRetries,
    DeliveryDeadLetters,
    WebhookRequests,
}

const PROVIDER_STATS: [(ProviderStat, &str, &str, &str); 10] = [
    (
        ProviderStat::IncomingMessages,
        "incoming_messages_total",
        "incomingMessages",
        "Inbound messages handled per provider.",
    ),
    (
        ProviderStat::InboundDuplicates,
        "inbound_duplicates_total",
        "inboundDuplicates",
        "Duplicate inbound events per provider.",
    ),
    (ProviderStat::InboundFailures, "inbound_failures_total", "inboundFailures", "Failed inbound events per provider."),
    (ProviderStat::PromptedMessages, "prompted_messages_total", "promptedMessages", "Prompts sent per provider."),
    (
        ProviderStat::InteractionsResolved,
        "interactions_resolved_total",
        "interactionsResolved",
        "Interactions resolved per provider.",
    ),
    (
        ProviderStat::DeliveriesReceived,
        "deliveries_received_total",
        "deliveriesReceived",
        "Deliveries handled per provider.",
    ),
    (ProviderStat::DeliveriesSent, "deliveries_sent_total", "deliveriesSent", "Deliveries sent per provider."),
    (ProviderStat::DeliveryRetries, "delivery_retries_total", "deliveryRetries", "Delivery retries per provider."),
    (
        ProviderStat::DeliveryDeadLetters,
        "delivery_dead_letters_total",
        "deliveryDeadLetters",
        "Delivery dead letters per provider.",
    ),
    (ProviderStat::WebhookRequests, "webhook_requests_total", "webhookRequests", "Webhook requests per provider."),
];

#[derive(Debug, Clone)]
struct ProviderRecord {
    id: String,
    kind: ProviderKind,
    state: ProviderState,
    counters: [u64; 10],
    delivery_latency: Histogram,
    /// Wall-clock milliseconds of the last inbound message and the last sent delivery (status page).
    last_inbound_ms: Option<u64>,
    last_sent_ms: Option<u64>,
}

/// Direction of a channel message for the channel-stack telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Outcome of a channel message for the channel-stack telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Attempt,
    Success,
    Retry,
    Error,
    Ignored,
}

const DIRECTIONS: [(Direction, &str); 2] = [(Direction::Inbound, "inbound"), (Direction::Outbound, "outbound")];
const OUTCOMES: [(Outcome, &str); 5] = [
    (Outcome::Attempt, "attempt"),
    (Outcome::Success, "success"),
    (Outcome::Retry, "retry"),
    (Outcome::Error, "error"),
    (Outcome::Ignored, "ignored"),
];

const SURFACE: &str = "cloud-channel-gateway";
const STACK: &str = "monorepo-provider";

/// The kind label of the channel-stack telemetry: a real channel kind, else (for a kind that
/// stands in for another) the id's `<kind>-` prefix among the kinds of its table, else `other`.
pub(crate) fn bounded_channel_kind(kind: ProviderKind, id: &str) -> &'static str {
    let real = |k: ProviderKind| k.spec().parts.stands_in_for.is_none();
    if real(kind) {
        return kind.as_str();
    }
    ProviderKind::all(kind.table())
        .filter(|k| real(*k))
        .find(|k| id.strip_prefix(k.as_str()).is_some_and(|rest| rest.starts_with('-')))
        .map_or("other", ProviderKind::as_str)
}

/// Which Cloud SSE stream a stream counter is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Session,
    Delivery,
}

/// What happened on a Cloud SSE stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStat {
    Connects,
    Reconnects,
    Frames,
    Errors,
}

const STREAM_KINDS: [(StreamKind, &str); 2] = [(StreamKind::Session, "session"), (StreamKind::Delivery, "delivery")];
const STREAM_STATS: [(StreamStat, &str, &str, &str); 4] = [
    (StreamStat::Connects, "open_cowork_gateway_cloud_stream_connects_total", "connects", "Cloud SSE streams opened."),
    (
        StreamStat::Reconnects,
        "open_cowork_gateway_cloud_stream_reconnects_total",
        "reconnects",
        "Cloud SSE streams reopened after a close or an error.",
    ),
    (StreamStat::Frames, "open_cowork_gateway_cloud_stream_frames_total", "frames", "Cloud SSE events received."),
    (
        StreamStat::Errors,
        "open_cowork_gateway_cloud_stream_errors_total",
        "errors",
        "Cloud SSE connection failures and in-band errors.",
    ),
];

/// All gateway metrics. Lives in the shared runtime state; single-threaded by construction.
pub struct Metrics {
    started_at_ms: u64,
    started: Instant,
    stats: [Cell<u64>; STAT_COUNT],
    delivery_latency: RefCell<Histogram>,
    providers: RefCell<Vec<ProviderRecord>>,
    channel_messages: RefCell<BTreeMap<(&'static str, Direction, Outcome), u64>>,
    channel_latency: RefCell<BTreeMap<(&'static str, Direction, Outcome), Histogram>>,
    streams: [[Cell<u64>; 4]; 2],
    /// Provider-specific events (`update`, `send`, `edit`, `rate_limited`) per configured provider.
    provider_events: RefCell<BTreeMap<(String, &'static str), u64>>,
    /// How many of each degraded reason hold, copied from readiness before each render.
    degraded: RefCell<Vec<(&'static str, u64)>>,
    /// Deliveries sent / retried / dead in the last hour, fed by [`Metrics::add`].
    delivery_window: RefCell<window::DeliveryWindow>,
}

impl Metrics {
    /// Creates the metrics with one provider record (state `configured`) per enabled provider.
    pub fn new(config: &Config) -> Self {
        let providers = config
            .enabled_providers()
            .map(|p| ProviderRecord {
                id: p.id.to_string(),
                kind: p.kind,
                state: ProviderState::Configured,
                counters: [0; 10],
                delivery_latency: Histogram::new(DELIVERY_BUCKETS_MS.len()),
                last_inbound_ms: None,
                last_sent_ms: None,
            })
            .collect();
        let mut channel_messages = BTreeMap::new();
        for p in config.enabled_providers() {
            let kind = bounded_channel_kind(p.kind, &p.id);
            for (direction, _) in DIRECTIONS {
                for (outcome, _) in OUTCOMES {
                    channel_messages.insert((kind, direction, outcome), 0);
                }
            }
        }
        Self {
            started_at_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            started: Instant::now(),
            stats: std::array::from_fn(|_| Cell::new(0)),
            delivery_latency: RefCell::new(Histogram::new(DELIVERY_BUCKETS_MS.len())),
            providers: RefCell::new(providers),
            channel_messages: RefCell::new(channel_messages),
            channel_latency: RefCell::new(BTreeMap::new()),
            streams: std::array::from_fn(|_| std::array::from_fn(|_| Cell::new(0))),
            provider_events: RefCell::new(BTreeMap::new()),
            degraded: RefCell::new(Vec::new()),
            delivery_window: RefCell::new(window::DeliveryWindow::new(tokio::time::Instant::now())),
        }
    }

    /// Replaces the `open_cowork_gateway_degraded{reason}` values (readiness owns the reasons;
    /// they are fixed names, never text from outside).
    pub fn set_degraded(&self, counts: Vec<(&'static str, u64)>) {
        *self.degraded.borrow_mut() = counts;
    }

    pub fn degraded_count(&self, reason: &str) -> u64 {
        self.degraded.borrow().iter().find(|(name, _)| *name == reason).map_or(0, |(_, count)| *count)
    }

    /// Records a provider's own counter for a configured provider (others are ignored, so no
    /// label value comes from outside).
    pub fn set_provider_event(&self, provider_id: &str, event: &'static str, value: u64) {
        if self.providers.borrow().iter().any(|r| r.id == provider_id) {
            self.provider_events.borrow_mut().insert((provider_id.to_owned(), event), value);
        }
    }

    pub fn provider_event_count(&self, provider_id: &str, event: &'static str) -> u64 {
        self.provider_events.borrow().get(&(provider_id.to_owned(), event)).copied().unwrap_or(0)
    }

    /// Counts a Cloud stream event; reconnects and errors also feed upstream's
    /// `stream_reconnects_total` and `cloud_subscription_errors_total`.
    pub fn record_stream(&self, kind: StreamKind, stat: StreamStat) {
        let cell = &self.streams[STREAM_KINDS.iter().position(|(k, _)| *k == kind).unwrap_or(0)]
            [STREAM_STATS.iter().position(|(s, ..)| *s == stat).unwrap_or(0)];
        cell.set(cell.get() + 1);
        match stat {
            StreamStat::Reconnects => self.increment(Stat::StreamReconnects),
            StreamStat::Errors => self.increment(Stat::CloudSubscriptionErrors),
            StreamStat::Connects | StreamStat::Frames => {}
        }
    }

    pub fn stream_count(&self, kind: StreamKind, stat: StreamStat) -> u64 {
        self.streams[STREAM_KINDS.iter().position(|(k, _)| *k == kind).unwrap_or(0)]
            [STREAM_STATS.iter().position(|(s, ..)| *s == stat).unwrap_or(0)]
        .get()
    }

    pub fn increment(&self, stat: Stat) {
        self.add(stat, 1);
    }

    pub fn add(&self, stat: Stat, count: u64) {
        let cell = &self.stats[stat_index(stat)];
        cell.set(cell.get() + count);
        let outcome = match stat {
            Stat::DeliveriesSent => DeliveryOutcome::Sent,
            Stat::DeliveryRetries => DeliveryOutcome::Retried,
            Stat::DeliveryDeadLetters => DeliveryOutcome::Dead,
            _ => return,
        };
        self.delivery_window.borrow_mut().record(outcome, count, tokio::time::Instant::now());
    }

    /// `[sent, retried, dead]` deliveries in the last hour.
    pub fn deliveries_last_hour(&self) -> [u64; 3] {
        self.delivery_window.borrow().last_hour(tokio::time::Instant::now())
    }

    /// Seconds since start.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Wall-clock milliseconds of a provider's last inbound message and last sent delivery.
    pub fn provider_last_activity(&self, provider_id: &str) -> (Option<u64>, Option<u64>) {
        self.providers
            .borrow()
            .iter()
            .find(|r| r.id == provider_id)
            .map_or((None, None), |r| (r.last_inbound_ms, r.last_sent_ms))
    }

    pub fn get(&self, stat: Stat) -> u64 {
        self.stats[stat_index(stat)].get()
    }

    pub fn set_gauge(&self, stat: Stat, value: u64) {
        self.stats[stat_index(stat)].set(value);
    }

    pub fn observe_delivery_latency(&self, provider_id: &str, latency_ms: f64) {
        self.delivery_latency.borrow_mut().observe(&DELIVERY_BUCKETS_MS, latency_ms);
        if let Some(record) = self.providers.borrow_mut().iter_mut().find(|r| r.id == provider_id) {
            record.delivery_latency.observe(&DELIVERY_BUCKETS_MS, latency_ms);
        }
    }

    /// Counts for a configured provider; ids that are not configured are ignored, so a request
    /// path can never create a label value.
    pub fn increment_provider(&self, provider_id: &str, stat: ProviderStat) {
        let index = PROVIDER_STATS.iter().position(|(s, ..)| *s == stat).unwrap_or(0);
        if let Some(record) = self.providers.borrow_mut().iter_mut().find(|r| r.id == provider_id) {
            record.counters[index] += 1;
            match stat {
                ProviderStat::IncomingMessages => record.last_inbound_ms = Some(crate::time::now_ms()),
                ProviderStat::DeliveriesSent => record.last_sent_ms = Some(crate::time::now_ms()),
                _ => {}
            }
        }
    }

    pub fn set_provider_state(&self, provider_id: &str, state: ProviderState) {
        if let Some(record) = self.providers.borrow_mut().iter_mut().find(|r| r.id == provider_id) {
            record.state = state;
        }
    }

    pub fn provider_state(&self, provider_id: &str) -> Option<ProviderState> {
        self.providers.borrow().iter().find(|r| r.id == provider_id).map(|r| r.state)
    }

    /// Records a channel message outcome; latency is recorded for terminal outcomes only.
    pub fn record_channel_message(
        &self,
        kind: &'static str,
        direction: Direction,
        outcome: Outcome,
        latency_ms: Option<f64>,
    ) {
        *self.channel_messages.borrow_mut().entry((kind, direction, outcome)).or_insert(0) += 1;
        if let (Some(latency), false) = (latency_ms.filter(|l| l.is_finite()), outcome == Outcome::Attempt) {
            self.channel_latency
                .borrow_mut()
                .entry((kind, direction, outcome))
                .or_insert_with(|| Histogram::new(TELEMETRY_BUCKETS_MS.len()))
                .observe(&TELEMETRY_BUCKETS_MS, latency);
        }
    }
}

fn binding_counts(providers: &[ProviderRecord]) -> BTreeMap<&'static str, (u64, u64)> {
    let mut counts: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    for record in providers {
        let entry = counts.entry(bounded_channel_kind(record.kind, &record.id)).or_default();
        entry.0 += 1;
        entry.1 += u64::from(record.state == ProviderState::Healthy);
    }
    counts
}

fn direction_name(direction: Direction) -> &'static str {
    DIRECTIONS.iter().find(|(d, _)| *d == direction).map_or("inbound", |(_, n)| n)
}

fn outcome_name(outcome: Outcome) -> &'static str {
    OUTCOMES.iter().find(|(o, _)| *o == outcome).map_or("attempt", |(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One webhook and one fake provider; the view tests share it. The metrics only read ids,
    /// kinds and bindings, so the webhook entry is added after loading (this build does not
    /// implement the webhook kind yet, and the configuration refuses an enabled one).
    pub(super) fn config() -> Config {
        let mut config = crate::config::test_config(&[(
            "OPEN_COWORK_GATEWAY_PROVIDERS",
            r#"[{"id":"fake","kind":"fake","channelBindingId":"f"}]"#,
        )]);
        let mut webhook = config.providers[0].clone();
        webhook.id = "webhook-b".into();
        webhook.kind = kind("webhook");
        webhook.channel_binding_id = "w".into();
        config.providers.insert(0, webhook);
        config
    }

    #[test]
    fn stat_tables_follow_the_enum_order() {
        for (index, info) in all_stats().enumerate() {
            assert_eq!(info.stat as usize, index, "{}", info.name);
        }
        assert_eq!(all_stats().count(), STAT_COUNT);
    }

    fn kind(name: &str) -> ProviderKind {
        ProviderKind::parse(crate::config::test_kinds(), name).unwrap()
    }

    #[test]
    fn bounded_kinds() {
        assert_eq!(bounded_channel_kind(kind("telegram"), "telegram-a"), "telegram");
        assert_eq!(bounded_channel_kind(kind("fake"), "fake"), "other");
        assert_eq!(
            bounded_channel_kind(kind("fake"), "slack-demo"),
            "slack",
            "the stand-in's id among its table's kinds"
        );
    }
}
