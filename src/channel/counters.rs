//! A channel's own event counters, exported as
//! `open_cowork_gateway_provider_events_total{provider, event}`: a fixed list of event names,
//! one cell each, so counting costs neither an allocation nor a map lookup.

use std::cell::Cell;

/// The counts of a fixed list of events.
#[derive(Debug)]
pub struct EventCounters<const N: usize> {
    names: [&'static str; N],
    cells: [Cell<u64>; N],
}

impl<const N: usize> EventCounters<N> {
    pub fn new(names: [&'static str; N]) -> Self {
        Self { names, cells: std::array::from_fn(|_| Cell::new(0)) }
    }

    /// Counts one `event`; a name outside the list counts nothing.
    pub fn count(&self, event: &str) {
        if let Some(cell) = self.names.iter().position(|name| *name == event).and_then(|i| self.cells.get(i)) {
            cell.set(cell.get() + 1);
        }
    }

    /// Every event with its count, in list order (what [`super::Channel::counters`] returns).
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.names.iter().zip(&self.cells).map(|(name, cell)| (*name, cell.get())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_listed_events_only() {
        let counters = EventCounters::new(["sent", "failed"]);
        counters.count("sent");
        counters.count("sent");
        counters.count("unknown");
        assert_eq!(counters.snapshot(), [("sent", 2), ("failed", 0)]);
    }
}
