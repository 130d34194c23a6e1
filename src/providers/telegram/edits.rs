//! Streamed replies become edits of one message. Telegram rate-limits edits hard, so each message
//! is edited at most once per second: a newer text replaces a pending one, and a background flush
//! sends the newest when the second is up. "Message is not modified" counts as success.

use serde_json::json;
use std::rc::Rc;
use std::time::Duration;

use super::api::chat_id;
use super::{send_error, TelegramProvider};
use crate::channel::pacing::{EditPacer, PacedEdits};
use crate::channel::{ChannelTarget, SendError};
use crate::util::markup::escape_text;

/// Edits of one message are sent at most this often; newer text replaces a pending edit.
pub(super) const EDIT_INTERVAL: Duration = Duration::from_secs(1);
/// Messages whose edit timing is remembered.
pub(super) const EDIT_STATES: usize = 512;

impl PacedEdits for TelegramProvider {
    fn edit_pacer(&self) -> &Rc<EditPacer> {
        &self.inner.edits
    }

    /// `editMessageText`.
    async fn edit_now(&self, target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError> {
        let chat = self.resolve_chat(&target.chat_id);
        let body = json!({"chat_id": chat_id(&chat), "message_id": message_id.parse::<i64>().ok(), "text": escape_text(text), "parse_mode": "HTML"});
        match self.call("editMessageText", &body).await {
            Ok(_) => Ok(()),
            Err(error) if error.description().contains("message is not modified") => Ok(()),
            Err(error) => Err(send_error(error)),
        }
    }
}
