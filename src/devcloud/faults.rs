//! Faults a test can switch on in the dev Cloud: fail the next N calls of a route with a status
//! (429 with a retry hint included), cut a stream after N frames, add latency, or make the
//! delivery stream report in-band errors.

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
        let failure = self.failures.get_mut(route)?;
        if failure.remaining == 0 {
            return None;
        }
        failure.remaining -= 1;
        Some(*failure)
    }

    /// Counts one frame about to be written on a session (`true`) or delivery stream; says
    /// whether this frame is the one to cut. A cut fires once.
    pub fn cut_now(&mut self, session_stream: bool) -> bool {
        let counter =
            if session_stream { &mut self.cut_session_stream_after } else { &mut self.cut_delivery_stream_after };
        match counter {
            Some(0) => {
                *counter = None;
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
