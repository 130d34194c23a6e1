//! The most recent values by key, at most a fixed number: what a channel remembers about work
//! still in flight (a press to answer, a replay claim to give back), where the oldest entry may
//! simply be forgotten when too many pile up.

use std::collections::VecDeque;

/// Up to `capacity` values, oldest dropped first; looked up by key, taken out once.
#[derive(Debug)]
pub struct Recent<V> {
    entries: VecDeque<(String, V)>,
    capacity: usize,
}

impl<V> Recent<V> {
    pub fn new(capacity: usize) -> Self {
        Self { entries: VecDeque::new(), capacity }
    }

    /// Remembers `value` under `key`, forgetting the oldest entries beyond the capacity.
    pub fn remember(&mut self, key: String, value: V) {
        self.entries.push_back((key, value));
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
        }
    }

    /// Takes out the oldest value remembered under `key`.
    pub fn take(&mut self, key: &str) -> Option<V> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        self.entries.remove(index).map(|(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_taken_once() {
        let mut recent = Recent::new(2);
        recent.remember("a".into(), 1);
        recent.remember("b".into(), 2);
        recent.remember("c".into(), 3);
        assert_eq!(recent.take("a"), None, "the oldest was forgotten");
        assert_eq!(recent.take("b"), Some(2));
        assert_eq!(recent.take("b"), None, "taken once");
        assert_eq!(recent.take("c"), Some(3));
    }
}
