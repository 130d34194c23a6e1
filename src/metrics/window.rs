//! Deliveries sent, retried and dead-lettered over the last hour, for the status page: sixty
//! one-minute buckets in a fixed array, so the memory is the same after a year as after a minute
//! and nothing needs a timer to expire old counts (a bucket is reset when its minute comes round).

use tokio::time::Instant;

/// What happened to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Sent,
    Retried,
    Dead,
}

const MINUTES: usize = 60;

/// Per-minute counts of the last hour.
#[derive(Debug)]
pub struct DeliveryWindow {
    origin: Instant,
    /// `(minute since origin, [sent, retried, dead])`; `None` for a bucket never written.
    buckets: [Option<(u64, [u64; 3])>; MINUTES],
}

impl DeliveryWindow {
    pub fn new(origin: Instant) -> Self {
        Self { origin, buckets: [None; MINUTES] }
    }

    fn minute(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs() / 60
    }

    pub fn record(&mut self, outcome: DeliveryOutcome, count: u64, now: Instant) {
        let minute = self.minute(now);
        let slot = &mut self.buckets[(minute % MINUTES as u64) as usize];
        let counts = match slot {
            Some((at, counts)) if *at == minute => counts,
            _ => &mut slot.insert((minute, [0; 3])).1,
        };
        let index = match outcome {
            DeliveryOutcome::Sent => 0,
            DeliveryOutcome::Retried => 1,
            DeliveryOutcome::Dead => 2,
        };
        counts[index] = counts[index].saturating_add(count);
    }

    /// `[sent, retried, dead]` in the current minute and the 59 before it.
    pub fn last_hour(&self, now: Instant) -> [u64; 3] {
        let minute = self.minute(now);
        let mut total = [0u64; 3];
        for (at, counts) in self.buckets.iter().flatten() {
            if *at <= minute && minute - *at < MINUTES as u64 {
                for (sum, count) in total.iter_mut().zip(counts) {
                    *sum = sum.saturating_add(*count);
                }
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_fall_out_after_an_hour() {
        let origin = Instant::now();
        let mut window = DeliveryWindow::new(origin);
        let at = |minutes: u64| origin + Duration::from_secs(minutes * 60 + 5);
        window.record(DeliveryOutcome::Sent, 2, at(0));
        window.record(DeliveryOutcome::Retried, 1, at(10));
        window.record(DeliveryOutcome::Dead, 1, at(59));
        assert_eq!(window.last_hour(at(59)), [2, 1, 1]);
        assert_eq!(window.last_hour(at(60)), [0, 1, 1], "minute 0 left the hour");
        // Minute 70 reuses minute 10's bucket: the old count is replaced, not added to.
        window.record(DeliveryOutcome::Sent, 3, at(70));
        assert_eq!(window.last_hour(at(70)), [3, 0, 1]);
        assert_eq!(window.last_hour(at(200)), [0, 0, 0]);
    }
}
