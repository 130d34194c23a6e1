//! Per-channel send gates of the dispatcher: a rate-limit pause and a circuit breaker.
//!
//! A rate limit (a 429, a "slow down") is the platform pacing us, not failing: it pauses the
//! whole channel until the platform's `retry_after` is up, and the deliveries on it wait,
//! holding their lanes. It never counts toward the circuit. The circuit counts real failures
//! only (5xx, network, timeouts): after [`CIRCUIT_THRESHOLD`] in a row it opens for
//! [`CIRCUIT_OPEN`], the channel leaves the delivery subscription, and then it half-opens by
//! itself so the next send decides. Opening and closing are one log line each.

use std::collections::HashMap;
use std::time::Duration;

use smol_str::SmolStr;
use tokio::time::Instant;

/// Consecutive failed sends that open a channel's circuit, and how long it stays open.
const CIRCUIT_THRESHOLD: u32 = 5;
pub const CIRCUIT_OPEN: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, Copy)]
struct Gate {
    failures: u32,
    open_until: Option<Instant>,
    paused_until: Option<Instant>,
}

/// What a send must wait for before it goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The platform's rate limit: wait this long.
    RateLimited(Duration),
    /// The circuit is open for this long yet.
    CircuitOpen(Duration),
}

impl Hold {
    pub fn wait(self) -> Duration {
        match self {
            Hold::RateLimited(wait) | Hold::CircuitOpen(wait) => wait,
        }
    }
}

/// The gates of every channel, by provider id.
#[derive(Default)]
pub struct Gates {
    gates: HashMap<SmolStr, Gate>,
}

impl Gates {
    /// What a send on `provider` waits for now, if anything (an open circuit first).
    pub fn hold(&self, provider: &str) -> Option<Hold> {
        let gate = self.gates.get(provider)?;
        let now = Instant::now();
        let left = |until: Option<Instant>| until.filter(|u| *u > now).map(|u| u - now);
        left(gate.open_until).map(Hold::CircuitOpen).or_else(|| left(gate.paused_until).map(Hold::RateLimited))
    }

    /// The platform asked to wait `wait`: every send on the channel waits until then.
    pub fn pause(&mut self, provider: &str, wait: Duration) {
        let until = Instant::now() + wait;
        let gate = self.gates.entry(provider.into()).or_default();
        gate.paused_until = Some(gate.paused_until.map_or(until, |current| current.max(until)));
    }

    /// A real failure. When it opened the circuit: the failures in a row and when it half-opens.
    pub fn fail(&mut self, provider: &str) -> Option<(u32, Instant)> {
        let gate = self.gates.entry(provider.into()).or_default();
        gate.failures += 1;
        let opens = gate.failures >= CIRCUIT_THRESHOLD && gate.open_until.is_none_or(|u| u <= Instant::now());
        opens.then(|| {
            let until = Instant::now() + CIRCUIT_OPEN;
            gate.open_until = Some(until);
            (gate.failures, until)
        })
    }

    /// A send went out. Returns whether this closed a circuit that had opened.
    pub fn succeed(&mut self, provider: &str) -> bool {
        let Some(gate) = self.gates.get_mut(provider) else { return false };
        let was_open = gate.open_until.is_some();
        gate.failures = 0;
        gate.open_until = None;
        if gate.paused_until.is_none_or(|u| u <= Instant::now()) {
            self.gates.remove(provider);
        }
        was_open
    }

    /// Whether the circuit that opened until `until` is still the current one (a newer opening
    /// or a close since then means its timer has nothing to do).
    pub fn is_open_until(&self, provider: &str, until: Instant) -> bool {
        self.gates.get(provider).and_then(|g| g.open_until) == Some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limits_pause_and_only_failures_open_the_circuit() {
        let mut gates = Gates::default();
        for _ in 0..20 {
            gates.pause("p", Duration::from_secs(3));
        }
        assert_eq!(gates.hold("p"), Some(Hold::RateLimited(Duration::from_secs(3))));
        assert_eq!(gates.fail("p"), None, "rate limits counted nothing");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(gates.hold("p"), None);
        for _ in 0..3 {
            assert_eq!(gates.fail("p"), None);
        }
        let (failures, until) = gates.fail("p").unwrap();
        assert_eq!((failures, until), (5, Instant::now() + CIRCUIT_OPEN));
        assert!(gates.is_open_until("p", until));
        assert_eq!(gates.hold("p"), Some(Hold::CircuitOpen(CIRCUIT_OPEN)));
        assert_eq!(gates.hold("other"), None, "channels are apart");
        tokio::time::advance(CIRCUIT_OPEN).await;
        assert_eq!(gates.hold("p"), None, "half-open by itself");
        assert!(gates.succeed("p"));
        assert!(!gates.succeed("p"));
    }
}
