//! Buttons of the bridges: Cloud tokens (about 90 bytes with their decision prefix) do not fit a
//! relay's 64-byte button token, so each button carries a short id from the shared
//! [`ButtonTable`], mapped back when the relay reports the press. A press with a full token (a
//! relay that keeps its own mapping) passes through as it is. After a decision the message's
//! buttons are settled: the relay is told the outcome, an editing bridge gets the message's text
//! with the outcome in place of the buttons, and a second press is answered "already answered".

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;

use crate::channel::{Button, ChannelTarget, InboundMessage};
use crate::providers::buttons::{ButtonTable, Pressed};

/// Button messages remembered for the edit that shows their outcome.
const SENT_MESSAGES: usize = 256;
/// Presses remembered until their decision is acknowledged.
const OPEN_PRESSES: usize = 1024;

/// A button message the relay accepted.
#[derive(Debug, Clone)]
pub struct SentButtons {
    pub message: u64,
    pub target: ChannelTarget,
    pub message_id: String,
    pub text: String,
}

/// What to do with a press.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Press {
    /// Into the pipeline (its token now the Cloud token, when it was one of ours).
    Resolve,
    /// Already decided: answer the press with this notice, nothing more.
    Notice(String),
}

/// The short ids of one bridge, the presses waiting for their decision and the recent button
/// messages.
pub struct BridgeButtons {
    table: ButtonTable,
    presses: RefCell<VecDeque<(String, u64)>>,
    sent: RefCell<VecDeque<SentButtons>>,
}

impl BridgeButtons {
    /// `path` keeps the ids across restarts (the state directory), as for Telegram.
    pub fn open(path: Option<&Path>) -> Self {
        Self { table: ButtonTable::open(path), presses: RefCell::default(), sent: RefCell::default() }
    }

    /// The rows with each token replaced by a short id, and the message's number.
    pub fn issue(&self, rows: &[Vec<Button>]) -> (u64, Vec<Vec<Button>>) {
        let tokens: Vec<&str> = rows.iter().flatten().map(|b| b.token.as_str()).collect();
        let (message, ids) = self.table.issue(&tokens);
        let mut ids = ids.into_iter();
        let rows = rows
            .iter()
            .map(|row| row.iter().map(|b| Button { token: ids.next().unwrap_or_default(), ..b.clone() }).collect())
            .collect();
        (message, rows)
    }

    /// Remembers a sent button message for the outcome edit.
    pub fn sent(&self, sent: SentButtons) {
        let mut recent = self.sent.borrow_mut();
        recent.push_back(sent);
        while recent.len() > SENT_MESSAGES {
            recent.pop_front();
        }
    }

    /// Maps a press: a short id becomes its Cloud token; a decided or expired one becomes a
    /// notice for the person who pressed.
    pub fn press(&self, message: &mut InboundMessage) -> Press {
        let Some(interaction) = message.interaction.as_mut() else { return Press::Resolve };
        match self.table.pressed(&interaction.token) {
            Pressed::Foreign => Press::Resolve,
            Pressed::Answered(outcome) => Press::Notice(format!("Already answered: {outcome}.")),
            Pressed::Expired => Press::Notice(
                "This button has expired: type the command shown under the buttons (\"Or type: …\") instead.".into(),
            ),
            Pressed::Open { token, message: number } => {
                interaction.token = token.clone();
                let mut presses = self.presses.borrow_mut();
                presses.push_back((interaction.id.clone(), number));
                while presses.len() > OPEN_PRESSES {
                    presses.pop_front();
                }
                message.text = token.clone();
                message.raw_text = token;
                Press::Resolve
            }
        }
    }

    /// Settles the message of a decided press; returns the message to edit, when it is known.
    pub fn settle(&self, interaction_id: &str, outcome: &str) -> Option<SentButtons> {
        let number = {
            let mut presses = self.presses.borrow_mut();
            let index = presses.iter().position(|(id, _)| id == interaction_id)?;
            presses.remove(index)?.1
        };
        self.table.settle(number, outcome);
        let mut sent = self.sent.borrow_mut();
        let index = sent.iter().position(|s| s.message == number)?;
        sent.remove(index)
    }

    /// Writes a pending change now (at stop).
    pub fn flush(&self) {
        self.table.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::InteractionRef;

    fn press(token: &str) -> InboundMessage {
        let mut message = InboundMessage::text_for_tests("m", token);
        message.interaction = Some(InteractionRef { id: "i-1".into(), token: token.into(), kind: "button" });
        message
    }

    #[test]
    fn long_tokens_go_out_short_and_come_back_whole() {
        let buttons = BridgeButtons::open(None);
        let token = format!("apv:occi_{}", "x".repeat(90));
        let (number, rows) =
            buttons.issue(&[vec![Button { label: "Approve".into(), token: token.clone(), style: "success" }]]);
        assert!(rows[0][0].token.len() <= 64 && rows[0][0].label == "Approve", "{rows:?}");
        buttons.sent(SentButtons {
            message: number,
            target: ChannelTarget::default(),
            message_id: "r-1".into(),
            text: "Go?".into(),
        });
        let mut pressed = press(&rows[0][0].token);
        assert_eq!(buttons.press(&mut pressed), Press::Resolve);
        assert_eq!(pressed.interaction.as_ref().unwrap().token, token);
        assert_eq!(buttons.settle("i-1", "Approved").map(|s| s.message_id).as_deref(), Some("r-1"));
        assert_eq!(buttons.press(&mut press(&rows[0][0].token)), Press::Notice("Already answered: Approved.".into()));
        assert!(matches!(buttons.press(&mut press("b:zzzzzz.9")), Press::Notice(n) if n.contains("expired")));
        let mut full = press(&token);
        assert_eq!(buttons.press(&mut full), Press::Resolve, "a full token passes as it is");
        assert_eq!(full.interaction.unwrap().token, token);
    }
}
