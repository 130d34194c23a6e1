//! Faults a test can switch on in the dev Cloud: fail the next N calls of a route with a status
//! (429 with a retry hint included), cut a stream after N frames, add latency, or make the
//! delivery stream report in-band errors. In-process tests set them directly; a harness in
//! another process sets them through `POST /dev/faults` (`routes/control.rs`). Every fault that
//! fired is counted, so a soak can say how many it injected.

use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailNext {
    pub remaining: u32,
    pub status: u16,
    /// For 429s: the `retryAfterMs` Cloud puts in the body.
    pub retry_after_ms: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Faults {
    failures: HashMap<&'static str, FailNext>,
    /// Added before every answer.
    pub latency: Duration,
    /// Added before the answers of one route (same keys as [`Faults::fail_next`]).
    route_latency: HashMap<&'static str, Duration>,
    /// Abort the session stream writing after this many more event frames, mid-frame.
    pub cut_session_stream_after: Option<u32>,
    /// Abort the delivery stream writing after this many more delivery frames, mid-frame.
    pub cut_delivery_stream_after: Option<u32>,
    /// While set, each delivery poll writes this as an `event: error` frame instead of claiming.
    pub delivery_stream_error: Option<String>,
    /// While set, delivery claims get at most this lease, whatever `ttlMs` the claimant asked
    /// for: a short soak sees deliveries of a killed gateway come back within its time budget.
    pub max_delivery_lease: Option<Duration>,
    /// Faults that fired, per route key (`"session-stream-cut"`, `"delivery-stream-cut"` for cuts).
    injected: HashMap<&'static str, u64>,
}

impl Faults {
    /// Fails the next `count` calls of `route` (a key such as `"claim"`, `"prompt"`, `"ack"`,
    /// `"cursor"`, `"session-events"`, `"delivery-stream"`) with `status`.
    pub fn fail_next(&mut self, route: &'static str, count: u32, status: u16, retry_after_ms: Option<u64>) {
        self.failures.insert(route, FailNext { remaining: count, status, retry_after_ms });
    }

    /// Delays every answer of `route` by `latency` (zero removes the delay).
    pub fn delay(&mut self, route: &'static str, latency: Duration) {
        self.route_latency.insert(route, latency);
    }

    /// The extra latency of `route`.
    pub fn latency_of(&self, route: &str) -> Duration {
        self.route_latency.get(route).copied().unwrap_or_default()
    }

    /// How many injected failures of `route` are still to come.
    pub fn pending_failures(&self, route: &str) -> u32 {
        self.failures.get(route).map_or(0, |f| f.remaining)
    }

    /// Takes one pending failure for `route`, if any.
    pub fn take_failure(&mut self, route: &str) -> Option<FailNext> {
        let (key, failure) = self.failures.iter_mut().find(|(k, _)| **k == route)?;
        if failure.remaining == 0 {
            return None;
        }
        failure.remaining -= 1;
        let fired = *failure;
        *self.injected.entry(*key).or_insert(0) += 1;
        Some(fired)
    }

    /// Faults that fired so far, per route key, sorted by key.
    pub fn injected(&self) -> Vec<(&'static str, u64)> {
        let mut counts: Vec<_> = self.injected.iter().map(|(k, v)| (*k, *v)).collect();
        counts.sort_unstable();
        counts
    }

    /// Failures still to come, per route, sorted by route.
    pub fn armed_failures(&self) -> Vec<(&'static str, FailNext)> {
        let mut failures: Vec<_> =
            self.failures.iter().filter(|(_, f)| f.remaining > 0).map(|(k, f)| (*k, *f)).collect();
        failures.sort_unstable_by_key(|(k, _)| *k);
        failures
    }

    /// The added latency per route (zero left out), sorted by route.
    pub fn route_latencies(&self) -> Vec<(&'static str, Duration)> {
        let mut latencies: Vec<_> =
            self.route_latency.iter().filter(|(_, l)| !l.is_zero()).map(|(k, l)| (*k, *l)).collect();
        latencies.sort_unstable_by_key(|(k, _)| *k);
        latencies
    }

    /// Switches every fault off (the counts of those that fired stay).
    pub fn clear(&mut self) {
        let injected = std::mem::take(&mut self.injected);
        *self = Self { injected, ..Self::default() };
    }

    /// The lease a delivery claim gets when `requested_ms` was asked for.
    pub fn delivery_lease_ms(&self, requested_ms: u64) -> u64 {
        self.max_delivery_lease.map_or(requested_ms, |cap| requested_ms.min(cap.as_millis() as u64).max(1))
    }

    /// Counts one frame about to be written on a session (`true`) or delivery stream; says
    /// whether this frame is the one to cut. A cut fires once.
    pub fn cut_now(&mut self, session_stream: bool) -> bool {
        let counter =
            if session_stream { &mut self.cut_session_stream_after } else { &mut self.cut_delivery_stream_after };
        match counter {
            Some(0) => {
                *counter = None;
                let key = if session_stream { "session-stream-cut" } else { "delivery-stream-cut" };
                *self.injected.entry(key).or_insert(0) += 1;
                true
            }
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        }
    }
}
