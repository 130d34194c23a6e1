//! The dispatcher's waiting room: per-lane FIFO queues with a cap on the lanes sending and a
//! bound on what waits (`util::keyed_lanes`, which also owns the send tasks), and the deliveries
//! it already holds.
//!
//! Cloud may serve a delivery again while the gateway still holds it: a hand-back that Cloud
//! re-serves before the send task has finished, or a lease that ran out while it waited. Such a
//! claim is parked until the delivery it repeats is done, then admitted like a new one (acked
//! from the sent-cache if that one went out). Dropping it would leave it claimed and unacked
//! until its lease runs out.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use super::lease::Lease;
use super::{delivery_key, lane_key, DeliveryKey};
use crate::cloud::DeliveryRecord;
use crate::util::keyed_lanes::{KeyedLanes, Refused};

/// A claimed delivery with its lease.
pub type Claim = (DeliveryRecord, Lease);

pub struct Backlog {
    /// Per (binding, target) lanes: one delivery of a lane sending at a time.
    lanes: KeyedLanes<String, Claim>,
    /// Deliveries queued or sending.
    held: HashSet<DeliveryKey>,
    /// The delivery each busy lane is sending.
    sending: HashMap<String, DeliveryKey>,
    /// A newer claim of a held delivery, admitted when that one is done (one per delivery, so
    /// bounded by `held`).
    parked: HashMap<DeliveryKey, Claim>,
}

/// What became of a claim offered to the backlog.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted {
    Queued,
    /// The delivery is already held; this claim waits for it.
    Parked,
}

impl Backlog {
    /// At most `max_sending` lanes send at once; at most `max_waiting` claims wait.
    pub fn new(max_sending: usize, max_waiting: usize) -> Self {
        Self {
            lanes: KeyedLanes::new(max_sending, max_waiting),
            held: HashSet::new(),
            sending: HashMap::new(),
            parked: HashMap::new(),
        }
    }

    /// Deliveries waiting for their turn (not parked, not sending).
    pub fn queued(&self) -> usize {
        self.lanes.waiting()
    }

    /// Lanes sending.
    pub fn sending(&self) -> usize {
        self.lanes.running()
    }

    /// Nothing queued, nothing sending (and so nothing parked).
    pub fn is_idle(&self) -> bool {
        self.lanes.is_idle()
    }

    /// Whether another claim may be read. Parked claims count, so one that is admitted anew when
    /// its delivery is done always finds room.
    pub fn has_room(&self) -> bool {
        self.lanes.waiting() + self.parked.len() < self.lanes.max_waiting()
    }

    /// Queues the claim in its lane, or parks it behind its held copy; a refused claim comes back.
    pub fn push(&mut self, claim: Claim) -> Result<Admitted, Box<Refused<Claim>>> {
        let key = delivery_key(&claim.0);
        if self.held.contains(&key) {
            self.parked.insert(key, claim);
            return Ok(Admitted::Parked);
        }
        self.lanes.push(lane_key(&claim.0), claim).map_err(Box::new)?;
        self.held.insert(key);
        Ok(Admitted::Queued)
    }

    /// The head of the next ready lane, unless `max_sending` lanes are busy. The lane is busy from
    /// now until its send ends ([`Backlog::send`], [`Backlog::next_sent`]) or it is shed
    /// ([`Backlog::shed`]).
    pub fn next(&mut self) -> Option<(String, Claim)> {
        let (lane, claim) = self.lanes.next_turn()?;
        self.sending.insert(lane.clone(), delivery_key(&claim.0));
        Some((lane, claim))
    }

    /// Sends the lane's delivery as a task of the backlog's.
    pub fn send(&mut self, lane: String, send: impl Future<Output = ()> + 'static) {
        self.lanes.run(lane, send);
    }

    /// The lane's delivery is done without a send (shed): the lane is free again. Returns a parked
    /// newer claim of the same delivery, to be admitted anew.
    pub fn shed(&mut self, lane: &String) -> Option<Claim> {
        self.lanes.end_turn(lane);
        self.done(lane)
    }

    /// Waits for a send to end (sent, acked, failed or handed back); its lane is free again.
    /// Returns a parked newer claim of the same delivery, to be admitted anew.
    pub async fn next_sent(&mut self) -> Option<Claim> {
        let (lane, ended) = self.lanes.finished().await?;
        if let Err(error) = ended {
            tracing::error!(%error, "a delivery's send task ended abnormally; its lease hands it back");
        }
        self.done(&lane)
    }

    fn done(&mut self, lane: &String) -> Option<Claim> {
        let key = self.sending.remove(lane)?;
        self.held.remove(&key);
        self.parked.remove(&key)
    }

    /// At the drain: every delivery waiting (queued or parked), to be handed back. Any claim
    /// offered afterwards is refused.
    pub fn drain(&mut self) -> Vec<DeliveryRecord> {
        let mut waiting = Vec::with_capacity(self.lanes.waiting() + self.parked.len());
        for (delivery, _) in self.lanes.drain(|_| false) {
            self.held.remove(&delivery_key(&delivery));
            waiting.push(delivery);
        }
        waiting.extend(self.parked.drain().map(|(_, (delivery, _))| delivery));
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

    #[test]
    fn lanes_are_fifo_and_a_repeated_claim_waits_for_its_delivery() {
        let mut backlog = Backlog::new(8, 16);
        assert!(matches!(backlog.push(claim("d1", "c")), Ok(Admitted::Queued)));
        assert!(matches!(backlog.push(claim("d2", "c")), Ok(Admitted::Queued)));
        assert!(matches!(backlog.push(claim("d3", "other")), Ok(Admitted::Queued)));
        let (lane, first) = backlog.next().unwrap();
        assert_eq!(first.0.delivery_id, "d1");
        let (other_lane, third) = backlog.next().unwrap();
        assert_eq!(third.0.delivery_id, "d3", "d2 waits behind d1 in its lane");
        assert!(backlog.next().is_none());
        assert!(matches!(backlog.push(claim("d1", "c")), Ok(Admitted::Parked)), "served again while sending");
        let parked = backlog.shed(&lane).unwrap();
        assert_eq!(parked.0.delivery_id, "d1");
        assert!(matches!(backlog.push(parked), Ok(Admitted::Queued)));
        assert_eq!(backlog.next().unwrap().1 .0.delivery_id, "d2");
        assert!(backlog.shed(&other_lane).is_none());
        assert_eq!(backlog.queued(), 1);
        assert_eq!(backlog.drain().len(), 1);
        assert_eq!(backlog.queued(), 0);
        assert!(
            matches!(backlog.push(claim("d4", "c")), Err(refused) if matches!(*refused, Refused::Draining(_))),
            "nothing new after the drain"
        );
    }

    #[test]
    fn parked_claims_count_against_the_bound_so_their_return_always_fits() {
        let mut backlog = Backlog::new(1, 2);
        backlog.push(claim("d1", "c")).unwrap();
        backlog.push(claim("d2", "c")).unwrap();
        assert!(!backlog.has_room());
        let (lane, _) = backlog.next().unwrap();
        assert!(backlog.has_room());
        assert!(matches!(backlog.push(claim("d1", "c")), Ok(Admitted::Parked)));
        assert!(!backlog.has_room(), "one queued and one parked fill a bound of two");
        let parked = backlog.shed(&lane).unwrap();
        assert!(matches!(backlog.push(parked), Ok(Admitted::Queued)), "the parked claim finds its room");
        assert_eq!(backlog.queued(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_that_ends_frees_its_lane_and_returns_the_claim_parked_behind_it() {
        tokio::task::LocalSet::new()
            .run_until(async {
                let mut backlog = Backlog::new(1, 4);
                backlog.push(claim("d1", "c")).unwrap();
                backlog.push(claim("d2", "other")).unwrap();
                let (lane, _) = backlog.next().unwrap();
                backlog.send(lane, tokio::time::sleep(Duration::from_secs(3)));
                assert!(backlog.next().is_none(), "one lane sends at a time");
                assert!(matches!(backlog.push(claim("d1", "c")), Ok(Admitted::Parked)));
                let started = tokio::time::Instant::now();
                let parked = backlog.next_sent().await.unwrap();
                assert_eq!(started.elapsed(), Duration::from_secs(3), "returned when the send ended");
                assert_eq!(parked.0.delivery_id, "d1");
                assert_eq!(backlog.next().unwrap().1 .0.delivery_id, "d2", "the slot is free again");
            })
            .await;
    }
}
