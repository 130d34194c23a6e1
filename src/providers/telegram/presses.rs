//! Button presses on Telegram: a press's short id mapped back to its Cloud token, a decided
//! message's buttons replaced by the outcome, and the notices of a press that needs no Cloud call
//! (already answered, expired). A button message also says which commands do what its buttons
//! do, so an expired button can repeat them, token included.

use serde_json::{json, Value};

use super::api::chat_id;
use super::TelegramProvider;
use crate::channel::{Channel, ChannelTarget, InboundMessage, SendOptions};
use crate::providers::buttons::{Pressed, COMMANDS_HINT};

/// Button presses remembered until they are answered.
const OPEN_CALLBACKS: usize = 1024;
/// Telegram's limit for the text of a callback answer.
const CALLBACK_TEXT_CHARS: usize = 200;

/// A button press waiting for its answer, and the message its buttons are on.
pub(super) struct OpenPress {
    pub(super) callback_id: String,
    /// The button table's number of the pressed message; `None` for a button without a short id.
    pub(super) message: Option<u64>,
    chat_id: String,
    message_id: Option<String>,
}

impl TelegramProvider {
    /// Maps a press's short id to its token in `message`; `false` when the press was answered
    /// here (already decided, or expired) and goes no further.
    pub(super) async fn map_press(&self, message: &mut InboundMessage) -> bool {
        let Some(interaction) = message.interaction.as_mut() else { return true };
        let pressed = self.inner.buttons.pressed(&interaction.token);
        let press = OpenPress {
            callback_id: interaction.id.clone(),
            message: match &pressed {
                Pressed::Open { message, .. } => Some(*message),
                _ => None,
            },
            chat_id: message.target.chat_id.clone(),
            message_id: message.target.message_id.clone(),
        };
        {
            let mut open = self.inner.open_callbacks.borrow_mut();
            open.push_back(press);
            while open.len() > OPEN_CALLBACKS {
                open.pop_front();
            }
        }
        match pressed {
            Pressed::Open { token, .. } => {
                interaction.token = token.clone();
                message.text = token.clone();
                message.raw_text = token;
            }
            // Not one of our short ids (buttons sent by an older version carried the Cloud
            // token itself, e.g. `apv:<token>`): pass it to Cloud as it is.
            Pressed::Foreign => {}
            Pressed::Answered(outcome) => {
                let id = interaction.id.clone();
                let notice = format!("Already answered: {outcome}.");
                self.answer_interaction(&id, &notice).await.ok();
                return false;
            }
            Pressed::Expired => {
                let id = interaction.id.clone();
                let commands = message.raw.pointer("/message/text").and_then(Value::as_str).and_then(commands_of);
                let notice = match commands {
                    Some(commands) => format!("This button has expired. Type instead: {commands}"),
                    None => "This button has expired: type the /approve, /deny or /answer command with the \
                             request's token instead."
                        .to_owned(),
                };
                self.answer_expired(&id, &message.target, &notice).await;
                return false;
            }
        }
        true
    }

    /// An expired button's notice: as the callback answer when it fits Telegram's limit, else
    /// as a message in the chat (a Cloud token alone is about 90 characters).
    async fn answer_expired(&self, callback_id: &str, target: &ChannelTarget, notice: &str) {
        if notice.chars().count() <= CALLBACK_TEXT_CHARS {
            self.answer_interaction(callback_id, notice).await.ok();
            return;
        }
        self.answer_interaction(callback_id, "This button has expired.").await.ok();
        let target = ChannelTarget { message_id: None, ..target.clone() };
        if let Err(error) = self.send_text(&target, notice, &SendOptions::default()).await {
            tracing::debug!(error = %crate::config::redact::Redacted(&error), "the expired-button notice was not sent");
        }
    }

    /// Replaces a decided message's buttons with one showing the outcome; pressing it answers
    /// "already answered" (its id is settled). A failure leaves the buttons, which then answer
    /// the same: the decision itself is done.
    pub(super) async fn show_outcome(&self, press: &OpenPress, outcome: &str) {
        let (Some(message), Some(message_id)) = (press.message, press.message_id.as_deref()) else { return };
        let Some(settled) = self.inner.buttons.settle(message, outcome) else { return };
        let Ok(message_id) = message_id.parse::<i64>() else { return };
        let body = json!({
            "chat_id": chat_id(&self.resolve_chat(&press.chat_id)),
            "message_id": message_id,
            "reply_markup": {"inline_keyboard": [[{"text": format!("\u{2713} {outcome}"), "callback_data": settled}]]},
        });
        if let Err(error) = self.call("editMessageReplyMarkup", &body).await {
            tracing::debug!(error = %crate::config::redact::Redacted(&error), "the decided buttons were not replaced");
        }
    }
}

/// The commands line of a button message's text, as
/// [`with_commands_line`](crate::providers::buttons::with_commands_line) wrote it.
fn commands_of(text: &str) -> Option<String> {
    text.lines().rev().find_map(|line| line.strip_prefix(COMMANDS_HINT)).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Button;
    use crate::providers::buttons::commands_for;

    #[test]
    fn the_commands_line_says_what_the_buttons_do() {
        let button = |token: &str| Button { label: "x".into(), token: token.into(), style: "" };
        let rows = [vec![button("apv:tok"), button("den:tok")], vec![button("ans:WWVz:tok"), button("rej:tok")]];
        let commands = commands_for(&rows).unwrap();
        assert_eq!(commands, "/approve tok \u{b7} /deny tok \u{b7} /answer tok <answer> \u{b7} /reject tok");
        assert_eq!(commands_of(&format!("Allow?\n\n{COMMANDS_HINT}{commands}")).as_deref(), Some(commands.as_str()));
        assert_eq!(commands_for(&[vec![button("b:x.1")]]), None);
    }
}
