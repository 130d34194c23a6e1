//! A channel for the runtime's unit tests: it records every call it takes, in order (refused ones
//! too, marked so), and refuses once each call a test scripted to fail.

use std::cell::RefCell;

use crate::channel::{
    async_trait, Button, Capabilities, Channel, ChannelTarget, SendError, SendErrorKind, SendOptions, SentMessage,
};

pub struct ScriptedChannel {
    capabilities: Capabilities,
    calls: RefCell<Vec<String>>,
    /// The text of a call to refuse, and how; each is used once.
    refusals: RefCell<Vec<(String, SendErrorKind)>>,
}

impl ScriptedChannel {
    pub fn new(capabilities: Capabilities) -> Self {
        Self { capabilities, calls: RefCell::new(Vec::new()), refusals: RefCell::new(Vec::new()) }
    }

    /// The first send (text or buttons) of `text` fails with `kind`; later ones go through.
    pub fn refuse_once(&self, text: &str, kind: SendErrorKind) {
        self.refusals.borrow_mut().push((text.to_owned(), kind));
    }

    /// Every call so far, in order: `send <text> …`, `buttons <text>`, `edit <id> <text> …`, or
    /// `refused <call>` for one that failed.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    /// Records `call`; refuses it when its text was scripted to fail, else answers a new
    /// message id.
    fn take(&self, call: String, text: &str, target: &ChannelTarget) -> Result<SentMessage, SendError> {
        let mut refusals = self.refusals.borrow_mut();
        let mut calls = self.calls.borrow_mut();
        if let Some(index) = refusals.iter().position(|(refused, _)| refused == text) {
            let (_, kind) = refusals.remove(index);
            calls.push(format!("refused {call}"));
            return Err(SendError { kind, message: format!("scripted refusal of {text}") });
        }
        calls.push(call);
        let message_id = format!("m{}", calls.len());
        Ok(SentMessage { chat_id: target.chat_id.clone(), message_id, provider_delivery_id: None })
    }
}

#[async_trait(?Send)]
impl Channel for ScriptedChannel {
    fn id(&self) -> &str {
        "scripted"
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn send_text(&self, target: &ChannelTarget, text: &str, _: &SendOptions) -> Result<SentMessage, SendError> {
        let call = format!("send {text} thread={:?} reply_to={:?}", target.thread_id, target.message_id);
        self.take(call, text, target)
    }

    async fn edit_text(&self, target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError> {
        self.take(format!("edit {message_id} {text} reply_to={:?}", target.message_id), text, target).map(|_| ())
    }

    async fn send_buttons(
        &self,
        target: &ChannelTarget,
        text: &str,
        _: &[Vec<Button>],
    ) -> Result<SentMessage, SendError> {
        self.take(format!("buttons {text}"), text, target)
    }
}
