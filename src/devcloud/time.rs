//! The dev Cloud's clock: wall time in milliseconds plus an offset tests can advance (to expire
//! leases without sleeping), and which a test can stop so that only its own advances move it.

pub use crate::time::{iso, parse_iso};

use std::cell::Cell;

#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: Cell<u64>,
    /// The wall time the clock stopped at, while it is stopped.
    stopped_at: Cell<Option<u64>>,
}

impl Clock {
    pub fn now_ms(&self) -> u64 {
        self.stopped_at.get().unwrap_or_else(crate::time::system_now_ms) + self.offset_ms.get()
    }

    /// Moves this clock forward (tests).
    pub fn advance(&self, ms: u64) {
        self.offset_ms.set(self.offset_ms.get() + ms);
    }

    /// Stops this clock where it is (tests): until [`Clock::resume`], only [`Clock::advance`]
    /// moves it, so a step that must happen within a lease does however long the machine stalls
    /// between two lines of the test.
    pub fn stop(&self) {
        if self.stopped_at.get().is_none() {
            self.stopped_at.set(Some(crate::time::system_now_ms()));
        }
    }

    /// Runs this clock on wall time again: it jumps ahead by the time it stood still, never back.
    pub fn resume(&self) {
        self.stopped_at.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_clock_moves_only_when_advanced_and_resumes_on_wall_time() {
        let clock = Clock::default();
        clock.stop();
        let stopped = clock.now_ms();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(clock.now_ms(), stopped, "stopped");
        clock.advance(1_001);
        assert_eq!(clock.now_ms(), stopped + 1_001);
        clock.resume();
        assert!(clock.now_ms() >= stopped + 1_001 + 20, "wall time again, with the offset");
    }
}
