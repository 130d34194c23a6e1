//! Streamed replies become `chat.update`s of one message. Slack allows about one update per
//! second per message (Tier 3 with bursts), so each message is updated at most once per second:
//! a newer text replaces a pending one, and a background flush sends the newest when the second
//! is up. The bookkeeping is bounded; an entry older than the interval carries no information.

use serde_json::json;
use std::rc::Rc;
use std::time::Duration;

use super::SlackProvider;
use crate::channel::pacing::{EditPacer, PacedEdits};
use crate::channel::{ChannelTarget, SendError};
use crate::util::markup::escape_text;

/// Updates of one message are sent at most this often.
pub const EDIT_INTERVAL: Duration = Duration::from_secs(1);
/// Messages whose update timing is remembered.
pub(super) const EDIT_STATES: usize = 512;

impl PacedEdits for SlackProvider {
    fn edit_pacer(&self) -> &Rc<EditPacer> {
        &self.inner.edits
    }

    /// `chat.update` of the message whose timestamp is `ts`.
    async fn edit_now(&self, target: &ChannelTarget, ts: &str, text: &str) -> Result<(), SendError> {
        let body = json!({"channel": target.chat_id, "ts": ts, "text": escape_text(text), "mrkdwn": false});
        self.call("chat.update", &body).await.map(drop)
    }
}
