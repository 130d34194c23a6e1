//! Streamed replies become `chat.update`s of one message. Slack allows about one update per
//! second per message (Tier 3 with bursts), so each message is updated at most once per second:
//! a newer text replaces a pending one, and a background flush sends the newest when the second
//! is up. The bookkeeping is bounded; an entry older than the interval carries no information.

use serde_json::json;
use std::time::Duration;

use super::blocks::escape;
use super::SlackProvider;
use crate::channel::pacing::paced_edit;
use crate::channel::{ChannelTarget, SendError};

/// Updates of one message are sent at most this often.
pub const EDIT_INTERVAL: Duration = Duration::from_secs(1);
/// Messages whose update timing is remembered.
pub(super) const EDIT_STATES: usize = 512;

impl SlackProvider {
    /// `chat.update`, at most once per second per message; a newer text replaces a pending one.
    pub(super) async fn paced_edit(
        &self,
        target: &ChannelTarget,
        message_id: &str,
        text: &str,
    ) -> Result<(), SendError> {
        let provider = self.clone();
        let send = move |target: ChannelTarget, ts: String, text: String| {
            let provider = provider.clone();
            async move { provider.update_now(&target, &ts, &text).await }
        };
        paced_edit(&self.inner.edits, &self.inner.id, target, message_id, text, send).await
    }

    async fn update_now(&self, target: &ChannelTarget, ts: &str, text: &str) -> Result<(), SendError> {
        let body = json!({"channel": target.chat_id, "ts": ts, "text": escape(text), "mrkdwn": false});
        self.call("chat.update", &body).await.map(drop)
    }
}
