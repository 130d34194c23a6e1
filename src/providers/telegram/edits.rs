//! Streamed replies become edits of one message. Telegram rate-limits edits hard, so each message
//! is edited at most once per second: a newer text replaces a pending one, and a background flush
//! sends the newest when the second is up. "Message is not modified" counts as success.

use serde_json::json;
use tokio::time::{Duration, Instant};

use super::api::chat_id;
use super::{html, send_error, TelegramProvider};
use crate::channel::{ChannelTarget, SendError};

/// Edits of one message are sent at most this often; newer text replaces a pending edit.
const EDIT_INTERVAL: Duration = Duration::from_secs(1);
/// Messages whose edit timing is remembered.
const EDIT_STATES: usize = 512;

/// One message's edit timing.
pub(super) struct EditState {
    /// When the last edit went out.
    last_sent: Instant,
    /// The newest text not sent yet, waiting for the interval to pass.
    pending: Option<(ChannelTarget, String)>,
    /// A background flush is scheduled for this message.
    flushing: bool,
}

impl TelegramProvider {
    /// Edits at most once per second per message; a newer text replaces a pending one, which a
    /// background flush sends when the second is up.
    pub async fn edit_text(&self, target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError> {
        let now = Instant::now();
        let wait = {
            let mut edits = self.inner.edits.borrow_mut();
            if edits.len() >= EDIT_STATES && !edits.contains_key(message_id) {
                edits.retain(|_, state| state.flushing || now.duration_since(state.last_sent) < EDIT_INTERVAL);
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
        match wait {
            None => self.edit_now(target, message_id, text).await,
            Some(at) => {
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
                        if let Err(error) = provider.edit_now(&target, &message_id, &text).await {
                            tracing::warn!(provider = %provider.inner.id, error = %crate::config::redact::Redacted(&error), "a coalesced Telegram edit failed");
                        }
                    }
                });
                Ok(())
            }
        }
    }

    async fn edit_now(&self, target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError> {
        let chat = self.resolve_chat(&target.chat_id);
        let body = json!({"chat_id": chat_id(&chat), "message_id": message_id.parse::<i64>().ok(), "text": html::escape(text), "parse_mode": "HTML"});
        match self.call("editMessageText", &body).await {
            Ok(_) => Ok(()),
            Err(error) if error.description().contains("message is not modified") => Ok(()),
            Err(error) => Err(send_error(error)),
        }
    }
}
