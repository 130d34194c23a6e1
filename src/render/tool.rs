//! Tool progress: one line per tool call (running, complete, failed with its reason), edited in
//! place as the call advances where the channel can edit.

use serde_json::Value;

use super::payload_text;
use super::plan::{Plan, Show, Step};
use super::split::fits;
use super::state::{Remember, RenderState};
use super::text::{sanitize, truncate};
use crate::channel::Capabilities;
use crate::cloud::types::SessionEvent;

/// The line a tool call shows in its current status.
fn summary(payload: &Value) -> String {
    let status = match payload.get("status").and_then(Value::as_str).unwrap_or("") {
        "complete" | "completed" | "success" => "complete",
        "error" | "failed" | "failure" => "error",
        _ => "running",
    };
    let name = sanitize(payload_text(payload, &["name", "tool"]).unwrap_or("tool"), 120);
    let mut summary = match status {
        "complete" => format!("Tool complete: {name}"),
        "error" => format!("Tool failed: {name}"),
        _ => format!("Tool running: {name}"),
    };
    if status == "error" {
        if let Some(detail) = payload_text(payload, &["error", "message", "summary"]) {
            summary.push('\n');
            summary.push_str(&sanitize(detail, 320));
        }
    }
    summary
}

pub(super) fn render(capabilities: &Capabilities, state: &RenderState, event: &SessionEvent) -> Plan {
    let payload = &event.payload;
    let key = payload_text(payload, &["id", "callId", "toolCallId"])
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}:tool:{}", event.session_id, event.sequence));
    let summary = summary(payload);
    let (existing_id, existing_summary) = state.tool(&key).cloned().unwrap_or((None, String::new()));
    if existing_summary == summary {
        return Plan::Nothing { message_id: existing_id };
    }
    let step = match existing_id {
        Some(id) if capabilities.message_editing && fits(capabilities, &summary) => {
            Step::Edit { message_id: id, text: summary.clone() }
        }
        _ => Step::Send(truncate(&summary, capabilities.max_text_length)),
    };
    Plan::Show(Show { steps: vec![step], message_id: None, remember: Some(Remember::Tool { key, summary }) })
}
