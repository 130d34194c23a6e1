//! What rendering one event asks of the channel, decided without Cloud or the channel: the
//! runtime carries a [`Plan`] out (creates the interaction a prompt needs, sends and edits in
//! order, reads an artifact) and tells the [`super::RenderState`] what came of it.

use smol_str::SmolStr;

use super::prompts::Prompt;
use super::split::split;
use super::state::Remember;
use crate::channel::{Button, Capabilities};

/// The plan for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to show: the event only moves the cursor. `message_id` is the message the event's
    /// reply already lives in, if any.
    Nothing { message_id: Option<String> },
    /// Messages to send or edit, in order.
    Show(Show),
    /// A prompt that needs a Cloud interaction first: its token goes into the buttons or the
    /// text commands, which [`Prompt::steps`] then lays out.
    Ask(Prompt),
}

/// Messages to send or edit, and what the render state learns when they went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Show {
    /// In order; may be empty when the event changes nothing visible (a streamed reply that only
    /// grew by blanks) but still counts as handled.
    pub steps: Vec<Step>,
    /// The message id to report when no step yields one: the message the reply already has.
    pub message_id: Option<String>,
    pub remember: Option<Remember>,
}

/// One call on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A new message, within the channel's text limit.
    Send(String),
    /// A new text for a message sent before, within the limit.
    Edit { message_id: String, text: String },
    /// A message with rows of buttons, all of which the channel can show.
    Buttons { text: String, rows: Vec<Vec<Button>> },
    /// A Cloud artifact sent as a file when its data is at most `max_bytes`; otherwise the `link`
    /// messages go instead.
    File { artifact_id: String, filename: String, max_bytes: usize, link: Vec<String> },
}

impl Step {
    /// `text` as new messages cut for the channel.
    pub fn messages(capabilities: &Capabilities, text: &str) -> Vec<Step> {
        message_texts(capabilities, text).into_iter().map(Step::Send).collect()
    }
}

/// `text` cut for the channel, without the blank pieces: a blank message is not sent.
pub fn message_texts(capabilities: &Capabilities, text: &str) -> Vec<String> {
    split(capabilities, text).into_iter().filter(|piece| !piece.trim().is_empty()).collect()
}

/// The Cloud interaction a prompt needs before it can be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteractionRequest {
    /// `permission` or `question`.
    pub kind: &'static str,
    /// The permission or question id the interaction answers.
    pub target_id: String,
    /// The event's session; empty when the event did not name one (the binding's then).
    pub session_id: SmolStr,
}
