//! A claimed delivery's lease on the monotonic clock, and the hand-backs that were not failed
//! sends.
//!
//! Cloud writes `claimExpiresAt` on its own clock. Compared with the local wall clock, a host
//! clock minutes ahead would think every lease already over and send nothing. So the lease is
//! the length Cloud granted (`claimExpiresAt` minus the claim's `updatedAt`, both Cloud's), less
//! the time since the claim as far as it can be told, counted from when the gateway read it on
//! tokio's monotonic clock.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::DeliveryKey;
use crate::cloud::clock::CloudClock;
use crate::cloud::DeliveryRecord;

/// Less than this much lease left: too late to start (or wait for) a send. Sending then could
/// race Cloud re-serving the delivery to another claimant.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// When a claim runs out, on the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    deadline: Instant,
}

impl Lease {
    /// The lease of a delivery read now; `requested` (the `ttlMs` asked for) when the record
    /// does not say what Cloud granted.
    pub fn of(delivery: &DeliveryRecord, clock: &CloudClock, requested: Duration) -> Self {
        let claimed_at = crate::time::parse_iso(&delivery.updated_at);
        let expires_at = delivery.field_str("claimExpiresAt").and_then(crate::time::parse_iso);
        let granted = match (claimed_at, expires_at) {
            (Some(claimed), Some(expires)) if expires > claimed => Duration::from_millis(expires - claimed),
            _ => requested,
        };
        // Time already spent since the claim (a frame that waited while the queue was full);
        // a figure outside the lease means the clocks cannot tell, and counts as none.
        let spent = claimed_at
            .and_then(|claimed| clock.cloud_now_ms().checked_sub(claimed))
            .map(Duration::from_millis)
            .filter(|spent| *spent <= granted)
            .unwrap_or_default();
        Self { deadline: Instant::now() + (granted - spent) }
    }

    /// Whether a send may still start after waiting `wait`.
    pub fn allows(&self, wait: Duration) -> bool {
        Instant::now() + wait + LEASE_MARGIN <= self.deadline
    }

    #[cfg(test)]
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Deliveries remembered for hand-backs.
const HAND_BACKS: usize = 4096;

/// Cloud counts a claim as an attempt, but a delivery handed back unsent (its channel paused by
/// a rate limit or an open circuit, its lease too short) was not a failed send. The hand-backs
/// of each delivery are counted here and taken off its attempt count, so only real failures use
/// up the attempt budget. Bounded: the oldest delivery is forgotten first.
#[derive(Default)]
pub struct HandBacks {
    counts: HashMap<DeliveryKey, u64>,
    order: VecDeque<DeliveryKey>,
}

impl HandBacks {
    pub fn note(&mut self, key: &DeliveryKey) {
        if let Some(count) = self.counts.get_mut(key) {
            *count += 1;
            return;
        }
        if self.order.len() >= HAND_BACKS {
            if let Some(oldest) = self.order.pop_front() {
                self.counts.remove(&oldest);
            }
        }
        self.counts.insert(key.clone(), 1);
        self.order.push_back(key.clone());
    }

    /// The attempts that were real sends: Cloud's count less the hand-backs.
    pub fn attempts(&self, key: &DeliveryKey, cloud_attempts: u64) -> u64 {
        cloud_attempts.saturating_sub(self.counts.get(key).copied().unwrap_or(0)).max(1)
    }

    /// The delivery is settled (sent or dead): nothing more to take off.
    pub fn forget(&mut self, key: &DeliveryKey) {
        if self.counts.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(updated: &str, expires: &str) -> DeliveryRecord {
        serde_json::from_value(
            json!({"deliveryId": "d", "channelBindingId": "b", "updatedAt": updated, "claimExpiresAt": expires}),
        )
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_is_what_cloud_granted_whatever_the_wall_clock_says() {
        let clock = CloudClock::default();
        let hours_ago = crate::time::iso(crate::time::now_ms() - 7_200_000);
        let hours_ago_plus = crate::time::iso(crate::time::now_ms() - 7_200_000 + 60_000);
        // A claim that looks two hours old to this clock: granted 60 s, all of them left.
        let lease = Lease::of(&record(&hours_ago, &hours_ago_plus), &clock, Duration::from_secs(120));
        assert_eq!(lease.deadline(), Instant::now() + Duration::from_secs(60));
        assert!(lease.allows(Duration::from_secs(50)) && !lease.allows(Duration::from_secs(56)));
        let fallback = Lease::of(&record("", ""), &clock, Duration::from_secs(120));
        assert_eq!(fallback.deadline(), Instant::now() + Duration::from_secs(120));
        // A claim 20 s old by a clock that agrees with Cloud: 40 s left.
        let now = crate::time::now_ms();
        let lease = Lease::of(
            &record(&crate::time::iso(now - 20_000), &crate::time::iso(now + 40_000)),
            &clock,
            Duration::ZERO,
        );
        let left = lease.deadline() - Instant::now();
        assert!(left <= Duration::from_secs(40) && left >= Duration::from_secs(39), "{left:?}");
    }

    #[test]
    fn hand_backs_come_off_the_attempts_and_are_bounded() {
        let mut hand_backs = HandBacks::default();
        let key: DeliveryKey = ("b".into(), "d".into());
        hand_backs.note(&key);
        hand_backs.note(&key);
        assert_eq!(hand_backs.attempts(&key, 5), 3);
        assert_eq!(hand_backs.attempts(&key, 1), 1, "the current send is always one");
        hand_backs.forget(&key);
        assert_eq!(hand_backs.attempts(&key, 5), 5);
        for n in 0..(HAND_BACKS + 10) {
            hand_backs.note(&("b".into(), n.to_string().into()));
        }
        assert_eq!((hand_backs.counts.len(), hand_backs.order.len()), (HAND_BACKS, HAND_BACKS));
    }
}
