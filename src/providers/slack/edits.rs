//! Streamed replies become `chat.update`s of one message. Slack allows about one update per
//! second per message (Tier 3 with bursts), so each message is updated at most once per second:
//! a newer text replaces a pending one, and a background flush sends the newest when the second
//! is up. The bookkeeping is bounded; an entry older than the interval carries no information.

use serde_json::json;
use tokio::time::{Duration, Instant};

use super::blocks::escape;
use super::SlackProvider;
use crate::channel::{ChannelTarget, SendError};

/// Updates of one message are sent at most this often.
pub const EDIT_INTERVAL: Duration = Duration::from_secs(1);
/// Messages whose update timing is remembered.
const EDIT_STATES: usize = 512;

/// One message's update timing.
pub(super) struct EditState {
    last_sent: Instant,
    /// The newest text not sent yet.
    pending: Option<(ChannelTarget, String)>,
    /// A background flush is scheduled.
    flushing: bool,
}

impl SlackProvider {
    /// `chat.update`, at most once per second per message; a newer text replaces a pending one.
    pub async fn edit_text(&self, target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError> {
        let now = Instant::now();
        let wait = {
            let mut edits = self.inner.edits.borrow_mut();
            if edits.len() >= EDIT_STATES && !edits.contains_key(message_id) {
                edits.retain(|_, state| state.flushing || now.duration_since(state.last_sent) < EDIT_INTERVAL);
                if edits.len() >= EDIT_STATES {
                    // Every entry is busy: drop the timing of some idle-looking one rather than grow.
                    if let Some(key) = edits.iter().find(|(_, s)| !s.flushing).map(|(k, _)| k.clone()) {
                        edits.remove(&key);
                    }
                }
            }
            match edits.get_mut(message_id) {
                Some(state) if now.duration_since(state.last_sent) < EDIT_INTERVAL => {
                    state.pending = Some((target.clone(), text.to_owned()));
                    if state.flushing {
                        return Ok(());
                    }
                    state.flushing = true;
                    Some(state.last_sent + EDIT_INTERVAL)
                }
                _ => {
                    edits.insert(message_id.to_owned(), EditState { last_sent: now, pending: None, flushing: false });
                    None
                }
            }
        };
        let Some(at) = wait else {
            return self.update_now(target, message_id, text).await;
        };
        let provider = self.clone();
        let message_id = message_id.to_owned();
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until(at).await;
            let pending = provider.inner.edits.borrow_mut().get_mut(&message_id).and_then(|state| {
                state.flushing = false;
                state.last_sent = Instant::now();
                state.pending.take()
            });
            if let Some((target, text)) = pending {
                if let Err(error) = provider.update_now(&target, &message_id, &text).await {
                    tracing::warn!(provider = %provider.inner.id, error = %crate::config::redact::Redacted(&error), "a coalesced Slack update failed");
                }
            }
        });
        Ok(())
    }

    async fn update_now(&self, target: &ChannelTarget, ts: &str, text: &str) -> Result<(), SendError> {
        let body = json!({"channel": target.chat_id, "ts": ts, "text": escape(text), "mrkdwn": false});
        self.call("chat.update", &body).await.map(drop)
    }
}
