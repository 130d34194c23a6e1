//! What a binding's renders remember between events: the provider message each streamed
//! assistant reply and tool call lives in (so the next piece edits it), and which artifacts were
//! shown. Bounded in entries and bytes: a long-lived session must not make the gateway grow.

use std::collections::VecDeque;

/// Render-state entries kept per kind.
const STATE_CAP: usize = 512;

/// Text a session's render cache may hold: streamed replies are kept to merge the next chunk
/// into, and a long-lived session must not make the gateway grow without end.
const STATE_BYTES: usize = 64 * 1024;

/// The heap bytes an entry holds, for the cache's byte bound.
trait Weight {
    fn weight(&self) -> usize;
}

impl Weight for u64 {
    fn weight(&self) -> usize {
        0
    }
}

impl Weight for (Option<String>, String) {
    fn weight(&self) -> usize {
        self.0.as_ref().map_or(0, String::len) + self.1.len()
    }
}

/// A small map that keeps the most recently set entries: at most `STATE_CAP` of them and
/// `STATE_BYTES` of keys and values; the oldest go first.
#[derive(Debug)]
struct Recent<V> {
    entries: VecDeque<(String, V)>,
    bytes: usize,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Self { entries: VecDeque::new(), bytes: 0 }
    }
}

impl<V: Weight> Recent<V> {
    fn get(&self, key: &str) -> Option<&V> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn set(&mut self, key: String, value: V) {
        if let Some(index) = self.entries.iter().position(|(k, _)| *k == key) {
            if let Some((old_key, old)) = self.entries.remove(index) {
                self.bytes -= old_key.len() + old.weight();
            }
        }
        self.bytes += key.len() + value.weight();
        self.entries.push_back((key, value));
        while self.entries.len() > STATE_CAP || (self.bytes > STATE_BYTES && self.entries.len() > 1) {
            let Some((old_key, old)) = self.entries.pop_front() else { break };
            self.bytes -= old_key.len() + old.weight();
        }
    }
}

/// A message shown so far: its provider id (when it was sent) and the text it shows.
pub type Shown = (Option<String>, String);

/// What a binding's renders remember.
#[derive(Debug, Default)]
pub struct RenderState {
    assistant: Recent<Shown>,
    tools: Recent<Shown>,
    artifacts: Recent<u64>,
}

/// What the state learns once a plan went through: the message id is the one the plan's
/// execution reports (the last message it sent or edited, else the one the plan kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remember {
    /// A streamed assistant reply under its key now reads `text`.
    Assistant { key: String, text: String },
    /// A tool call under its key now shows `summary`.
    Tool { key: String, summary: String },
    /// An artifact was shown for the event with this sequence.
    Artifact { id: String, sequence: u64 },
}

impl RenderState {
    pub(super) fn assistant(&self, key: &str) -> Option<&Shown> {
        self.assistant.get(key)
    }

    pub(super) fn tool(&self, key: &str) -> Option<&Shown> {
        self.tools.get(key)
    }

    /// The sequence of the last event that showed this artifact.
    pub(super) fn artifact(&self, id: &str) -> Option<u64> {
        self.artifacts.get(id).copied()
    }

    /// Records what a carried-out plan showed.
    pub fn learn(&mut self, remember: Remember, message_id: Option<String>) {
        match remember {
            Remember::Assistant { key, text } => self.assistant.set(key, (message_id, text)),
            Remember::Tool { key, summary } => self.tools.set(key, (message_id, summary)),
            Remember::Artifact { id, sequence } => self.artifacts.set(id, sequence),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_render_cache_is_bounded_in_entries_and_in_bytes() {
        let mut recent: Recent<(Option<String>, String)> = Recent::default();
        for n in 0..2 * STATE_CAP {
            recent.set(format!("k{n}"), (None, "x".into()));
        }
        assert_eq!(recent.entries.len(), STATE_CAP);
        assert!(recent.get("k0").is_none() && recent.get(&format!("k{}", 2 * STATE_CAP - 1)).is_some());
        for n in 0..10 {
            recent.set(format!("big{n}"), (Some("id".into()), "y".repeat(20 * 1024)));
        }
        assert!(recent.bytes <= STATE_BYTES, "{} bytes held", recent.bytes);
        assert!(recent.get("big9").is_some(), "the newest entry stays");
        let held: usize = recent.entries.iter().map(|(k, v)| k.len() + v.weight()).sum();
        assert_eq!(held, recent.bytes, "the byte count follows the entries");
        recent.set("big9".into(), (None, String::new()));
        let held: usize = recent.entries.iter().map(|(k, v)| k.len() + v.weight()).sum();
        assert_eq!(held, recent.bytes, "replacing an entry gives its bytes back");
    }
}
