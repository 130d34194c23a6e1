//! Pacing a channel before the platform has to tell it to slow down.
//!
//! - [`SendPacer`]: sends at most one per interval per key (a chat, a method) and one per
//!   interval overall (a bot), each caller reserving the next free slot, so concurrent sends
//!   queue up instead of bursting into a 429.
//! - [`EditPacer`]: edits of one message. Chat platforms rate-limit edits hard (about one per
//!   second per message), while a streamed reply produces many. The first edit goes out at
//!   once; newer text within the interval replaces a pending one, which goes out when the
//!   interval is up.
//!
//! The bookkeeping is bounded; an entry older than its interval carries no information.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Channel, ChannelTarget, SendError};

/// Send slots per key and overall.
pub struct SendPacer {
    /// The least time between two sends of the channel, whatever their key.
    overall: Duration,
    next_overall: Cell<Option<Instant>>,
    /// Keys remembered (each is forgotten once its next slot has passed).
    capacity: usize,
    /// Per key: the earliest instant of its next send.
    next: RefCell<HashMap<String, Instant>>,
}

impl SendPacer {
    pub fn new(overall: Duration, capacity: usize) -> Self {
        Self { overall, next_overall: Cell::new(None), capacity, next: RefCell::new(HashMap::new()) }
    }

    /// Takes the next slot for a send on `key`, which may send again `interval` later; returns
    /// the slot's instant.
    pub fn reserve(&self, key: &str, interval: Duration) -> Instant {
        let now = Instant::now();
        let mut next = self.next.borrow_mut();
        if next.len() >= self.capacity && !next.contains_key(key) {
            next.retain(|_, at| *at > now);
            if next.len() >= self.capacity {
                // Every key is busy: the one free soonest is forgotten; the overall pace holds.
                if let Some(soonest) = next.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone()) {
                    next.remove(&soonest);
                }
            }
        }
        let overall = self.next_overall.get().unwrap_or(now).max(now);
        let slot = next.get(key).copied().unwrap_or(now).max(overall);
        self.next_overall.set(Some(slot + self.overall));
        next.insert(key.to_owned(), slot + interval);
        slot
    }

    /// Waits for the next slot of `key`.
    pub async fn wait(&self, key: &str, interval: Duration) {
        let slot = self.reserve(key, interval);
        tokio::time::sleep_until(slot).await;
    }
}

/// What to do with an edit now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditPlan {
    /// Send it now.
    Now,
    /// Kept as the message's pending text; schedule one flush at this instant
    /// ([`EditPacer::take_due`] then gives the newest text).
    FlushAt(Instant),
    /// Kept as the message's pending text; a flush is already scheduled.
    Absorbed,
}

struct MessageTiming {
    last_sent: Instant,
    /// The newest text not sent yet.
    pending: Option<(ChannelTarget, String)>,
    /// A flush is scheduled.
    flushing: bool,
}

/// The edit timing of a channel's messages.
pub struct EditPacer {
    interval: Duration,
    /// Messages whose timing is remembered.
    capacity: usize,
    messages: RefCell<HashMap<String, MessageTiming>>,
}

impl EditPacer {
    pub fn new(interval: Duration, capacity: usize) -> Self {
        Self { interval, capacity, messages: RefCell::new(HashMap::new()) }
    }

    /// Plans an edit of `message_id` to `text`.
    pub fn plan(&self, target: &ChannelTarget, message_id: &str, text: &str) -> EditPlan {
        let now = Instant::now();
        let mut messages = self.messages.borrow_mut();
        if messages.len() >= self.capacity && !messages.contains_key(message_id) {
            let interval = self.interval;
            messages.retain(|_, timing| timing.flushing || now.duration_since(timing.last_sent) < interval);
            if messages.len() >= self.capacity {
                // Every entry is recent: forget an idle one rather than grow.
                if let Some(key) = messages.iter().find(|(_, t)| !t.flushing).map(|(k, _)| k.clone()) {
                    messages.remove(&key);
                }
            }
        }
        match messages.get_mut(message_id) {
            Some(timing) if now.duration_since(timing.last_sent) < self.interval => {
                timing.pending = Some((target.clone(), text.to_owned()));
                if timing.flushing {
                    return EditPlan::Absorbed;
                }
                timing.flushing = true;
                EditPlan::FlushAt(timing.last_sent + self.interval)
            }
            _ => {
                messages
                    .insert(message_id.to_owned(), MessageTiming { last_sent: now, pending: None, flushing: false });
                EditPlan::Now
            }
        }
    }

    /// At a scheduled flush: the newest pending text of `message_id`, counted as sent now.
    pub fn take_due(&self, message_id: &str) -> Option<(ChannelTarget, String)> {
        self.messages.borrow_mut().get_mut(message_id).and_then(|timing| {
            timing.flushing = false;
            timing.last_sent = Instant::now();
            timing.pending.take()
        })
    }
}

/// A channel whose edits of a message are paced: it knows how to send one edit now and keeps its
/// [`EditPacer`]; [`paced_edit`] decides when an edit goes out. (Its future is never required to
/// be `Send`: the gateway runs on one thread, and a channel's state is `Rc`-shared.)
#[allow(async_fn_in_trait)]
pub trait PacedEdits: Channel + Clone + 'static {
    /// The edit timing of this channel's messages.
    fn edit_pacer(&self) -> &Rc<EditPacer>;

    /// Sends one edit of `message_id` to the platform, now.
    async fn edit_now(&self, target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError>;
}

/// Edits `message_id` now, or leaves the text to one flush that sends the newest text when the
/// interval is up. A flush that fails is logged: the render that asked for it has long moved on,
/// and the next edit of the message carries the text anyway.
pub async fn paced_edit<C: PacedEdits>(
    channel: &C,
    target: &ChannelTarget,
    message_id: &str,
    text: &str,
) -> Result<(), SendError> {
    let pacer = channel.edit_pacer();
    match pacer.plan(target, message_id, text) {
        EditPlan::Now => channel.edit_now(target, message_id, text).await,
        EditPlan::Absorbed => Ok(()),
        EditPlan::FlushAt(at) => {
            let (channel, pacer, message_id) = (channel.clone(), Rc::clone(pacer), message_id.to_owned());
            tokio::task::spawn_local(async move {
                tokio::time::sleep_until(at).await;
                if let Some((target, text)) = pacer.take_due(&message_id) {
                    if let Err(error) = channel.edit_now(&target, &message_id, &text).await {
                        tracing::warn!(provider = %channel.id(), error = %crate::config::redact::Redacted(&error), "a paced edit failed");
                    }
                }
            });
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sends_take_slots_per_key_and_overall() {
        let pacer = SendPacer::new(Duration::from_millis(100), 2);
        let start = Instant::now();
        let second = Duration::from_secs(1);
        assert_eq!(pacer.reserve("a", second), start);
        assert_eq!(pacer.reserve("b", second), start + Duration::from_millis(100), "overall pace");
        assert_eq!(pacer.reserve("a", second), start + second, "one a second per key");
        assert_eq!(pacer.reserve("a", second), start + 2 * second);
        tokio::time::advance(3 * second).await;
        assert_eq!(pacer.reserve("a", second), Instant::now(), "idle keys send at once");
        for n in 0..10 {
            pacer.reserve(&format!("k{n}"), second);
        }
        assert!(pacer.next.borrow().len() <= 2, "bounded");
    }

    #[tokio::test(start_paused = true)]
    async fn one_edit_per_interval_and_the_newest_text_wins() {
        let pacer = EditPacer::new(Duration::from_secs(1), 4);
        let target = ChannelTarget::default();
        assert_eq!(pacer.plan(&target, "m", "a"), EditPlan::Now);
        let EditPlan::FlushAt(at) = pacer.plan(&target, "m", "ab") else { panic!("paced") };
        assert_eq!(at, Instant::now() + Duration::from_secs(1));
        assert_eq!(pacer.plan(&target, "m", "abc"), EditPlan::Absorbed);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(pacer.take_due("m").map(|(_, text)| text).as_deref(), Some("abc"));
        assert_eq!(pacer.take_due("m"), None, "sent once");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(pacer.plan(&target, "m", "abcd"), EditPlan::Now, "a quiet second later, at once");
        assert_eq!(pacer.plan(&target, "other", "x"), EditPlan::Now, "messages are paced apart");
        for n in 0..10 {
            pacer.plan(&target, &format!("n{n}"), "x");
        }
        assert!(pacer.messages.borrow().len() <= 4, "bounded");
    }
}
