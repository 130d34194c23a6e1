//! Assistant replies, which arrive streamed (deltas or snapshots under one message key): where
//! the channel can edit, one message shows the reply as it grows; where it cannot, or the reply
//! outgrew one message, each new part goes out as new messages.

use serde_json::Value;

use super::payload_text;
use super::plan::{Plan, Show, Step};
use super::split::fits;
use super::state::{Remember, RenderState};
use super::text::merge_streaming_text;
use crate::channel::Capabilities;
use crate::cloud::types::SessionEvent;

/// The key the pieces of one reply share: the message id, else the event's entity, else the
/// event itself.
fn message_key(event: &SessionEvent) -> String {
    payload_text(&event.payload, &["messageId", "id"])
        .map(str::to_owned)
        .or_else(|| event.rest.get("entityId").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| {
            let session = if event.session_id.is_empty() { "session" } else { &event.session_id };
            format!("{session}:assistant:{}", event.sequence)
        })
}

pub(super) fn render(capabilities: &Capabilities, state: &RenderState, event: &SessionEvent) -> Plan {
    let key = message_key(event);
    // Streamed pieces are merged as they came: the space that starts a delta (" world" after
    // "Hello") is part of the reply. Only what is shown is trimmed.
    let Some(content) = payload_text(&event.payload, &["content", "text", "message"]) else {
        return Plan::Nothing { message_id: None };
    };
    let (existing_id, existing_text) = state.assistant(&key).cloned().unwrap_or((None, String::new()));
    let next = merge_streaming_text(&existing_text, content);
    if next == existing_text {
        return Plan::Nothing { message_id: existing_id };
    }
    let shown = next.trim();
    let editable = capabilities.message_editing && fits(capabilities, shown);
    let steps = match (&existing_id, editable) {
        _ if shown == existing_text.trim() => Vec::new(),
        (Some(id), true) => vec![Step::Edit { message_id: id.clone(), text: shown.to_owned() }],
        (None, true) => vec![Step::Send(shown.to_owned())],
        _ => {
            // Only what is new goes out: what was shown before stays where it is.
            let suffix = next.strip_prefix(existing_text.as_str()).unwrap_or(&next).trim();
            Step::messages(capabilities, suffix)
        }
    };
    Plan::Show(Show { steps, message_id: existing_id, remember: Some(Remember::Assistant { key, text: next }) })
}
