//! Cloud's wall clock as this gateway measures it. A host without a battery-backed clock, or
//! with a bad time source, can be hours off; nothing that decides whether to send may then
//! compare Cloud's timestamps with the local wall clock. Leases run on the monotonic clock
//! instead; this only corrects the times the gateway *writes* for Cloud (`nextAttemptAt`) and
//! tells the operator once when the two clocks disagree.
//!
//! The measure is Cloud's `Date` header against the local clock when the delivery stream opens;
//! `Date` has whole seconds, so half a second is added to land mid-second.

use std::cell::Cell;
use std::rc::Rc;

/// A skew beyond this is reported: more than rounding and latency can explain.
const SKEW_WARNING_MS: u64 = 5_000;
/// A skew within this is not corrected for: a whole-second `Date` cannot tell it from none.
const SKEW_RESOLUTION_MS: u64 = 2_000;

/// The measured skew, shared by the stream that measures it and the dispatcher that writes
/// times for Cloud. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CloudClock {
    /// Local minus Cloud, in milliseconds; `None` until measured.
    skew_ms: Rc<Cell<Option<i64>>>,
    /// Whether the current skew was reported, so it is said once, not on every reconnect.
    reported: Rc<Cell<bool>>,
}

/// What a new measure means for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkewChange {
    /// Within tolerance as before, or still beyond it and already reported.
    Unchanged,
    /// Beyond tolerance for the first time (or again after it was fine): report it.
    Beyond(i64),
    /// Back within tolerance after it was reported.
    Recovered,
}

impl CloudClock {
    /// Notes Cloud's `Date` (milliseconds since the epoch) seen at local time `local_ms`.
    pub fn observe(&self, cloud_date_ms: u64, local_ms: u64) -> SkewChange {
        let skew = local_ms as i64 - (cloud_date_ms as i64 + 500);
        self.skew_ms.set(Some(skew));
        let beyond = skew.unsigned_abs() > SKEW_WARNING_MS;
        match (beyond, self.reported.get()) {
            (true, false) => {
                self.reported.set(true);
                SkewChange::Beyond(skew)
            }
            (false, true) => {
                self.reported.set(false);
                SkewChange::Recovered
            }
            _ => SkewChange::Unchanged,
        }
    }

    /// Local minus Cloud, in milliseconds, once measured.
    pub fn skew_ms(&self) -> Option<i64> {
        self.skew_ms.get()
    }

    /// Cloud's time now, as best known: the local clock, corrected by the measured skew when
    /// that is more than the measure's resolution.
    pub fn cloud_now_ms(&self) -> u64 {
        let skew = self.skew_ms.get().filter(|skew| skew.unsigned_abs() > SKEW_RESOLUTION_MS).unwrap_or(0);
        crate::time::now_ms().saturating_add_signed(-skew)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skew_is_reported_once_and_corrected_for() {
        let clock = CloudClock::default();
        let hour = 3_600_000;
        assert_eq!(clock.observe(10 * hour, 10 * hour + 1_000), SkewChange::Unchanged, "a second is rounding");
        let local = crate::time::now_ms() as i64;
        assert!((clock.cloud_now_ms() as i64 - local).abs() < 100, "and not corrected for");
        assert_eq!(clock.observe(10 * hour, 12 * hour), SkewChange::Beyond(2 * hour as i64 - 500));
        assert_eq!(clock.observe(10 * hour, 12 * hour), SkewChange::Unchanged, "said once");
        let cloud_now = clock.cloud_now_ms() as i64;
        let expected = crate::time::now_ms() as i64 - (2 * hour as i64 - 500);
        assert!((cloud_now - expected).abs() < 1_000);
        assert_eq!(clock.observe(10 * hour, 10 * hour), SkewChange::Recovered);
        assert_eq!(clock.observe(12 * hour, 10 * hour), SkewChange::Beyond(-2 * hour as i64 - 500), "behind too");
    }
}
