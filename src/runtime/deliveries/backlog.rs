//! The dispatcher's waiting room: per-lane FIFO queues, the lanes ready to send, the lanes busy
//! sending, and the deliveries it already holds.
//!
//! Cloud may serve a delivery again while the gateway still holds it: a hand-back that Cloud
//! re-serves before the send task has finished, or a lease that ran out while it waited. Such a
//! claim is parked until the delivery it repeats is done, then admitted like a new one (acked
//! from the sent-cache if that one went out). Dropping it would leave it claimed and unacked
//! until its lease runs out.

use std::collections::{HashMap, HashSet, VecDeque};

use super::lease::Lease;
use super::{delivery_key, lane_key, DeliveryKey};
use crate::cloud::DeliveryRecord;

/// A claimed delivery with its lease.
pub type Claim = (DeliveryRecord, Lease);

#[derive(Default)]
pub struct Backlog {
    lanes: HashMap<String, VecDeque<Claim>>,
    ready: VecDeque<String>,
    busy: HashSet<String>,
    /// Deliveries queued or sending.
    held: HashSet<DeliveryKey>,
    /// A newer claim of a held delivery, admitted when that one is done (one per delivery, so
    /// bounded by `held`).
    parked: HashMap<DeliveryKey, Claim>,
    queued: usize,
}

/// What became of a claim offered to the backlog.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted {
    Queued,
    /// The delivery is already held; this claim waits for it.
    Parked,
}

impl Backlog {
    /// Deliveries waiting for their turn (not parked, not sending).
    pub fn queued(&self) -> usize {
        self.queued
    }

    pub fn push(&mut self, claim: Claim) -> Admitted {
        let key = delivery_key(&claim.0);
        if self.held.contains(&key) {
            self.parked.insert(key, claim);
            return Admitted::Parked;
        }
        self.held.insert(key);
        self.queued += 1;
        let lane = lane_key(&claim.0);
        let backlog = self.lanes.entry(lane.clone()).or_default();
        backlog.push_back(claim);
        if backlog.len() == 1 && !self.busy.contains(&lane) {
            self.ready.push_back(lane);
        }
        Admitted::Queued
    }

    /// The head of the next ready lane, which is busy from now until [`Backlog::finished`].
    pub fn next(&mut self) -> Option<(String, Claim)> {
        loop {
            let lane = self.ready.pop_front()?;
            let Some(claim) = self.lanes.get_mut(&lane).and_then(VecDeque::pop_front) else { continue };
            self.queued -= 1;
            self.busy.insert(lane.clone());
            return Some((lane, claim));
        }
    }

    /// The lane's delivery is done (sent, acked, shed or handed back): the lane is free again.
    /// Returns a parked newer claim of the same delivery, to be admitted anew.
    pub fn finished(&mut self, lane: String, key: &DeliveryKey) -> Option<Claim> {
        self.held.remove(key);
        self.busy.remove(&lane);
        if self.lanes.get(&lane).is_some_and(|l| !l.is_empty()) {
            self.ready.push_back(lane);
        } else {
            self.lanes.remove(&lane);
        }
        self.parked.remove(key)
    }

    /// At the drain: every delivery waiting (queued or parked), to be handed back.
    pub fn drain(&mut self) -> Vec<DeliveryRecord> {
        let mut waiting = Vec::with_capacity(self.queued + self.parked.len());
        for (_, lane) in self.lanes.drain() {
            for (delivery, _) in lane {
                self.held.remove(&delivery_key(&delivery));
                waiting.push(delivery);
            }
        }
        waiting.extend(self.parked.drain().map(|(_, (delivery, _))| delivery));
        self.ready.clear();
        self.queued = 0;
        waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::clock::CloudClock;
    use serde_json::json;
    use std::time::Duration;

    fn claim(id: &str, chat: &str) -> Claim {
        let delivery: DeliveryRecord = serde_json::from_value(
            json!({"deliveryId": id, "channelBindingId": "b", "target": {"externalChatId": chat}}),
        )
        .unwrap();
        let lease = Lease::of(&delivery, &CloudClock::default(), Duration::from_secs(120));
        (delivery, lease)
    }

    #[tokio::test]
    async fn lanes_are_fifo_and_a_repeated_claim_waits_for_its_delivery() {
        let mut backlog = Backlog::default();
        assert_eq!(backlog.push(claim("d1", "c")), Admitted::Queued);
        assert_eq!(backlog.push(claim("d2", "c")), Admitted::Queued);
        assert_eq!(backlog.push(claim("d3", "other")), Admitted::Queued);
        let (lane, first) = backlog.next().unwrap();
        assert_eq!(first.0.delivery_id, "d1");
        let (other_lane, third) = backlog.next().unwrap();
        assert_eq!(third.0.delivery_id, "d3", "d2 waits behind d1 in its lane");
        assert!(backlog.next().is_none());
        assert_eq!(backlog.push(claim("d1", "c")), Admitted::Parked, "served again while sending");
        let parked = backlog.finished(lane, &delivery_key(&first.0)).unwrap();
        assert_eq!(parked.0.delivery_id, "d1");
        assert_eq!(backlog.push(parked), Admitted::Queued);
        assert_eq!(backlog.next().unwrap().1 .0.delivery_id, "d2");
        assert!(backlog.finished(other_lane, &delivery_key(&third.0)).is_none());
        assert_eq!(backlog.queued(), 1);
        assert_eq!(backlog.drain().len(), 1);
        assert_eq!(backlog.queued(), 0);
    }
}
