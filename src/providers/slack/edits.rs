//! Streamed replies become `chat.update`s of one message. Slack allows about one update per
//! second per message (Tier 3 with bursts), so each message is updated at most once per second:
//! a newer text replaces a pending one, and a background flush sends the newest when the second
//! is up. The bookkeeping is bounded; an entry older than the interval carries no information.

use serde_json::json;
use std::time::Duration;

use super::blocks::escape;
use super::SlackProvider;
use crate::channel::pacing::EditPlan;
use crate::channel::{ChannelTarget, SendError};

/// Updates of one message are sent at most this often.
pub const EDIT_INTERVAL: Duration = Duration::from_secs(1);
/// Messages whose update timing is remembered.
pub(super) const EDIT_STATES: usize = 512;

impl SlackProvider {
    /// `chat.update`, at most once per second per message; a newer text replaces a pending one.
    pub async fn edit_text(&self, target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError> {
        match self.inner.edits.plan(target, message_id, text) {
            EditPlan::Now => self.update_now(target, message_id, text).await,
            EditPlan::Absorbed => Ok(()),
            EditPlan::FlushAt(at) => {
                let provider = self.clone();
                let message_id = message_id.to_owned();
                tokio::task::spawn_local(async move {
                    tokio::time::sleep_until(at).await;
                    if let Some((target, text)) = provider.inner.edits.take_due(&message_id) {
                        if let Err(error) = provider.update_now(&target, &message_id, &text).await {
                            tracing::warn!(provider = %provider.inner.id, error = %crate::config::redact::Redacted(&error), "a coalesced Slack update failed");
                        }
                    }
                });
                Ok(())
            }
        }
    }

    async fn update_now(&self, target: &ChannelTarget, ts: &str, text: &str) -> Result<(), SendError> {
        let body = json!({"channel": target.chat_id, "ts": ts, "text": escape(text), "mrkdwn": false});
        self.call("chat.update", &body).await.map(drop)
    }
}
