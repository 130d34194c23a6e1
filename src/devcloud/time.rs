//! The dev Cloud's clock: wall time in milliseconds plus an offset tests can advance (to expire
//! leases without sleeping).

pub use crate::time::{iso, parse_iso};

use std::cell::Cell;

#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: Cell<u64>,
}

impl Clock {
    pub fn now_ms(&self) -> u64 {
        crate::time::system_now_ms() + self.offset_ms.get()
    }

    /// Moves this clock forward (tests).
    pub fn advance(&self, ms: u64) {
        self.offset_ms.set(self.offset_ms.get() + ms);
    }
}
