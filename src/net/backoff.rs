//! The one retry policy of the gateway: a floor, a ceiling and jitter. Two shapes use it:
//!
//! - [`RetryPolicy::nth`], for retries counted elsewhere (Cloud counts a delivery's attempts):
//!   `floor·2ⁿ⁻¹`, capped at the ceiling, spread by the policy's jitter;
//! - [`Backoff`], for a loop that keeps trying (a stream reconnecting, a poller): decorrelated
//!   jitter, each wait drawn between twice and three times the previous one, so that gateways
//!   that lost Cloud together do not come back together, while the waits still grow fast
//!   enough that the first minute of an outage costs a handful of attempts, not dozens.
//!
//! A server's `Retry-After` beats the policy ([`RetryPolicy::honour`]) but is itself capped,
//! so a bad hint cannot park a sender for a day.

use std::time::Duration;

/// Floor, ceiling and jitter of a retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The first wait.
    pub floor: Duration,
    /// No computed wait is longer.
    pub ceiling: Duration,
    /// `0.2`: each wait of [`RetryPolicy::nth`] is spread by ±20 %.
    pub jitter: f64,
}

impl RetryPolicy {
    pub const fn new(floor: Duration, ceiling: Duration) -> Self {
        Self { floor, ceiling, jitter: 0.2 }
    }

    pub const fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The wait after the `attempt`-th failure (counted from 1).
    pub fn nth(&self, attempt: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30) as i32;
        let base = (self.floor.as_secs_f64() * 2f64.powi(exponent)).min(self.ceiling.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let spread = base * (1.0 - jitter + fastrand::f64() * 2.0 * jitter);
        Duration::from_secs_f64(spread.max(0.0)).min(self.ceiling)
    }

    /// A server's hint when it gave one (never longer than `limit`), else `fallback`.
    pub fn honour(hint: Option<Duration>, limit: Duration, fallback: impl FnOnce() -> Duration) -> Duration {
        hint.map_or_else(fallback, |wait| wait.min(limit))
    }
}

/// A sequence of waits with decorrelated jitter; progress resets it.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    previous: Option<Duration>,
}

impl Backoff {
    pub fn new(floor: Duration, ceiling: Duration) -> Self {
        Self { policy: RetryPolicy::new(floor, ceiling), previous: None }
    }

    /// Cloud's streams: about a second first, then 2–3 times the previous wait, at most 30 s.
    /// In a minute of outage that is at most six attempts (1 + 2 + 4 + 8 + 16 + 20 > 50 s);
    /// after that, between 20 and 30 s apart: two or three a minute.
    pub fn for_streams() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(30))
    }

    /// The range the next wait is drawn from.
    fn range(&self) -> (Duration, Duration) {
        let RetryPolicy { floor, ceiling, .. } = self.policy;
        match self.previous {
            None => (floor.min(ceiling), (floor + floor / 2).min(ceiling)),
            // The lower bound stops at two thirds of the ceiling so waits at the top still vary.
            Some(previous) => {
                (previous.saturating_mul(2).min(ceiling * 2 / 3).max(floor), previous.saturating_mul(3).min(ceiling))
            }
        }
    }

    /// The longest the next wait can be.
    pub fn ceiling(&self) -> Duration {
        self.range().1
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        let (low, high) = self.range();
        let (low_ms, high_ms) = (low.as_millis() as u64, high.as_millis() as u64);
        let delay = Duration::from_millis(fastrand::u64(low_ms..=high_ms.max(low_ms)));
        self.previous = Some(delay);
        delay
    }

    pub fn reset(&mut self) {
        self.previous = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_waits_start_near_a_second_and_grow_to_the_cap() {
        for _ in 0..200 {
            let mut backoff = Backoff::for_streams();
            let first = backoff.next_delay();
            assert!((1000..=1500).contains(&first.as_millis()), "{first:?}");
            // However the draws fall, the first minute after a loss holds at most six attempts.
            let (mut at, mut attempts) = (first, 0);
            while at < Duration::from_secs(60) {
                attempts += 1;
                at += backoff.next_delay();
            }
            assert!(attempts <= 6, "{attempts} attempts in the first minute");
            for _ in 0..50 {
                let wait = backoff.next_delay();
                assert!((20_000..=30_000).contains(&wait.as_millis()), "steady: {wait:?}");
            }
            backoff.reset();
            assert!(backoff.next_delay() <= Duration::from_millis(1500), "progress resets");
        }
    }

    #[test]
    fn the_nth_wait_doubles_with_jitter_and_caps() {
        let policy = RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..50 {
            assert!((800..=1200).contains(&policy.nth(1).as_millis()));
            assert!((3200..=4800).contains(&policy.nth(3).as_millis()));
            assert!(policy.nth(20) <= Duration::from_secs(60) && policy.nth(20) >= Duration::from_secs(48));
            assert_eq!(policy.with_jitter(0.0).nth(2), Duration::from_secs(2));
        }
        assert!(policy.nth(u64::MAX) <= Duration::from_secs(60), "no overflow");
        let hint = Some(Duration::from_secs(90));
        assert_eq!(RetryPolicy::honour(hint, Duration::from_secs(60), || Duration::ZERO), Duration::from_secs(60));
        assert_eq!(
            RetryPolicy::honour(None, Duration::from_secs(60), || Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }
}
