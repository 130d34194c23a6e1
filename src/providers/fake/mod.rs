//! The fake provider: unauthenticated JSON on `POST /webhooks/<id>` in,
//! an in-memory record of everything sent out. Runtime id and kind are `cli`, as upstream
//! (Cloud sees `provider: "cli"`, which tests written against upstream rely on).
//! Loopback only (the configuration refuses public exposure). Tests read what was sent and can
//! make the next sends fail.

pub mod kind;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use serde_json::{json, Value};

use smol_str::SmolStr;

use crate::channel::*;

/// Sent records kept for inspection, the newest last. Tests read a few hundred at most; the
/// bound is what the gateway's RSS carries for them in a long demo or benchmark run (about 340
/// bytes a record: at 10,000 it was most of the "growth" from 4.6 to 10 MB over 15,000 deliveries).
const MAX_RECORDS: usize = 1_000;

/// One outbound call the fake provider received.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeRecord {
    Text { target: ChannelTarget, text: String, options: SendOptions },
    Edit { message_id: String, text: String },
    Buttons { target: ChannelTarget, text: String, buttons: Vec<Vec<Button>> },
    Answer { interaction_id: String, text: String },
    File { target: ChannelTarget, filename: String, bytes: usize },
}

/// A fake channel; cheap to clone (tests keep a clone to read what was sent).
#[derive(Clone)]
pub struct FakeProvider {
    inner: Rc<Inner>,
}

struct Inner {
    id: SmolStr,
    capabilities: Capabilities,
    records: RefCell<VecDeque<FakeRecord>>,
    sent_count: std::cell::Cell<u64>,
    failures: RefCell<VecDeque<SendError>>,
    /// The next acknowledgement fails with this.
    answer_failure: RefCell<Option<SendError>>,
    /// Added before each send, so tests can have sends in flight.
    latency: std::cell::Cell<std::time::Duration>,
}

impl FakeProvider {
    pub fn new(id: SmolStr, max_file_bytes: usize) -> Self {
        let inner = Inner {
            id,
            capabilities: Capabilities {
                message_editing: true,
                inline_buttons: true,
                file_downloads: true,
                max_text_length: 4096,
                max_buttons_per_message: 8,
                max_button_rows: 4,
                max_button_token_bytes: 128,
                max_file_bytes,
            },
            records: RefCell::new(VecDeque::new()),
            sent_count: std::cell::Cell::new(0),
            failures: RefCell::new(VecDeque::new()),
            answer_failure: RefCell::new(None),
            latency: std::cell::Cell::new(std::time::Duration::ZERO),
        };
        Self { inner: Rc::new(inner) }
    }

    /// Everything sent so far, oldest first.
    pub fn records(&self) -> Vec<FakeRecord> {
        self.inner.records.borrow().iter().cloned().collect()
    }

    /// The texts sent (new messages, edits and button prompts), in order.
    pub fn texts(&self) -> Vec<String> {
        self.inner
            .records
            .borrow()
            .iter()
            .filter_map(|r| match r {
                FakeRecord::Text { text, .. } | FakeRecord::Edit { text, .. } | FakeRecord::Buttons { text, .. } => {
                    Some(text.clone())
                }
                FakeRecord::Answer { .. } | FakeRecord::File { .. } => None,
            })
            .collect()
    }

    pub fn set_latency(&self, latency: std::time::Duration) {
        self.inner.latency.set(latency);
    }

    pub fn latency(&self) -> std::time::Duration {
        self.inner.latency.get()
    }

    /// Makes the next sends fail with these errors, one each.
    pub fn fail_next(&self, errors: impl IntoIterator<Item = SendError>) {
        self.inner.failures.borrow_mut().extend(errors);
    }

    /// Makes the next interaction acknowledgement fail with `error`.
    pub fn fail_next_answer(&self, error: SendError) {
        self.inner.answer_failure.borrow_mut().replace(error);
    }

    fn take_failure(&self) -> Result<(), SendError> {
        self.inner.failures.borrow_mut().pop_front().map_or(Ok(()), Err)
    }

    fn record(&self, record: FakeRecord) -> String {
        let mut records = self.inner.records.borrow_mut();
        records.push_back(record);
        if records.len() > MAX_RECORDS {
            records.pop_front();
        }
        self.inner.sent_count.set(self.inner.sent_count.get() + 1);
        self.inner.sent_count.get().to_string()
    }

    fn check_length(&self, text: &str) -> Result<(), SendError> {
        if text.encode_utf16().count() > self.inner.capabilities.max_text_length {
            return Err(SendError::permanent(format!(
                "Fake channel text exceeds maxTextLength {}",
                self.inner.capabilities.max_text_length
            )));
        }
        Ok(())
    }

    fn send_text_now(
        &self,
        target: &ChannelTarget,
        text: &str,
        options: &SendOptions,
    ) -> Result<SentMessage, SendError> {
        self.take_failure()?;
        self.check_length(text)?;
        let message_id =
            self.record(FakeRecord::Text { target: target.clone(), text: text.to_owned(), options: options.clone() });
        Ok(SentMessage {
            chat_id: target.chat_id.clone(),
            message_id,
            provider_delivery_id: options.delivery_id.clone(),
        })
    }
}

#[async_trait(?Send)]
impl Channel for FakeProvider {
    fn id(&self) -> &str {
        &self.inner.id
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// Unauthenticated JSON (the configuration keeps the fake provider on loopback).
    async fn handle_webhook(&self, request: WebhookRequest<'_>) -> Result<WebhookReply, WebhookError> {
        let message = inbound_from_webhook(request.payload, request.received_at_ms);
        Ok(WebhookReply::Messages(vec![message]))
    }

    async fn send_text(
        &self,
        target: &ChannelTarget,
        text: &str,
        options: &SendOptions,
    ) -> Result<SentMessage, SendError> {
        let latency = self.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.send_text_now(target, text, options)
    }

    async fn edit_text(&self, _target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError> {
        self.take_failure()?;
        self.check_length(text)?;
        self.record(FakeRecord::Edit { message_id: message_id.to_owned(), text: text.to_owned() });
        Ok(())
    }

    async fn send_buttons(
        &self,
        target: &ChannelTarget,
        text: &str,
        buttons: &[Vec<Button>],
    ) -> Result<SentMessage, SendError> {
        self.take_failure()?;
        self.check_length(text)?;
        let message_id = self.record(FakeRecord::Buttons {
            target: target.clone(),
            text: text.to_owned(),
            buttons: buttons.to_vec(),
        });
        Ok(SentMessage { chat_id: target.chat_id.clone(), message_id, provider_delivery_id: None })
    }

    async fn send_file(&self, target: &ChannelTarget, filename: &str, data: &[u8]) -> Result<SentMessage, SendError> {
        self.take_failure()?;
        if data.len() > self.inner.capabilities.max_file_bytes {
            return Err(SendError::permanent(format!(
                "Fake channel file exceeds maxFileBytes {}",
                self.inner.capabilities.max_file_bytes
            )));
        }
        let message_id =
            self.record(FakeRecord::File { target: target.clone(), filename: filename.to_owned(), bytes: data.len() });
        Ok(SentMessage { chat_id: target.chat_id.clone(), message_id, provider_delivery_id: None })
    }

    async fn answer_interaction(&self, interaction_id: &str, text: &str) -> Result<(), SendError> {
        if let Some(error) = self.inner.answer_failure.borrow_mut().take() {
            return Err(error);
        }
        self.record(FakeRecord::Answer { interaction_id: interaction_id.to_owned(), text: text.to_owned() });
        Ok(())
    }
}

/// Builds the inbound message of a fake webhook body.
fn inbound_from_webhook(payload: &Value, now_ms: u64) -> InboundMessage {
    let text_field = |key: &str| payload.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let id = text_field("id").unwrap_or_else(|| format!("fake-{now_ms}"));
    let text = payload.get("text").and_then(Value::as_str).unwrap_or("").to_owned();
    let is_command = text.starts_with('/');
    let command = is_command.then(|| text[1..].split_whitespace().next().unwrap_or("").to_owned());
    let interaction = payload.get("interaction").and_then(|i| {
        let id = i.get("id")?.as_str()?.trim();
        let token = i.get("token")?.as_str()?.trim();
        (!id.is_empty() && !token.is_empty()).then(|| InteractionRef {
            id: id.to_owned(),
            token: token.to_owned(),
            kind: if i.get("kind").and_then(Value::as_str) == Some("command") { "command" } else { "button" },
        })
    });
    let user = text_field("userId").unwrap_or_else(|| "fake-user".into());
    InboundMessage {
        provider_event_id: Some(id.clone()),
        provider_message_id: text_field("id"),
        id,
        provider: "cli".into(),
        target: ChannelTarget {
            provider: "cli".into(),
            provider_kind: "cli".into(),
            chat_id: text_field("chatId").unwrap_or_else(|| "fake-chat".into()),
            is_direct: None,
            thread_id: payload.get("threadId").and_then(Value::as_str).map(str::to_owned),
            user_id: Some(user.clone()),
            message_id: None,
        },
        sender: Sender { provider_user_id: user, username: None, display_name: None },
        raw_text: text.clone(),
        text,
        is_command,
        command,
        attachment_count: 0,
        interaction,
        received_at_ms: now_ms,
        raw: if payload.is_object() { payload.clone() } else { json!({}) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_mapping() {
        let message = inbound_from_webhook(&json!({"text": "ship it", "chatId": "chat-1", "userId": "user-1"}), 42);
        assert_eq!(
            (message.id.as_str(), message.target.chat_id.as_str(), message.sender.provider_user_id.as_str()),
            ("fake-42", "chat-1", "user-1")
        );
        assert_eq!((message.provider.as_str(), message.event_type()), ("cli", "message"));
        let command = inbound_from_webhook(
            &json!({"id": "m1", "text": "/approve tok", "interaction": {"id": " i1 ", "token": "apv:t"}}),
            1,
        );
        assert_eq!(command.provider_event_id(), "m1");
        assert_eq!(command.event_type(), "interaction");
        assert_eq!(command.interaction.as_ref().unwrap().kind, "button");
        assert_eq!(command.command.as_deref(), Some("approve"));
        let defaults = inbound_from_webhook(&json!([1]), 7);
        assert_eq!((defaults.target.chat_id.as_str(), defaults.text.as_str()), ("fake-chat", ""));
    }

    #[test]
    fn sends_are_recorded_and_failures_injected() {
        let fake = FakeProvider::new("fake".into(), 1024);
        let target = ChannelTarget { chat_id: "c".into(), ..ChannelTarget::default() };
        assert_eq!(fake.send_text_now(&target, "one", &SendOptions::default()).unwrap().message_id, "1");
        fake.fail_next([SendError::transient("503 service unavailable")]);
        assert!(fake.send_text_now(&target, "two", &SendOptions::default()).is_err());
        assert_eq!(fake.send_text_now(&target, "two", &SendOptions::default()).unwrap().message_id, "2");
        assert!(fake
            .send_text_now(&target, &"x".repeat(4097), &SendOptions::default())
            .unwrap_err()
            .message
            .contains("maxTextLength 4096"));
        assert_eq!(fake.texts(), ["one", "two"]);
    }
}
