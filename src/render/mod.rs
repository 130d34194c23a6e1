//! Rendering Cloud session events for a channel: assistant text (streamed by
//! edits where the channel can edit, else by new suffixes, chunked), tool progress, approval and
//! question prompts with buttons or text-token fallback, and artifact links. Everything else only
//! advances the cursor. Delivery payloads are turned into text here too.

pub mod text;

use std::collections::VecDeque;

use serde_json::Value;

use crate::channel::{Button, Channel, ChannelTarget, SendError, SendErrorKind, SendOptions};
use crate::cloud::client::{CloudClient, CreateInteraction};
use crate::cloud::types::{SessionBindingRecord, SessionEvent};
use crate::cloud::CloudError;
use text::{chunk_text, merge_streaming_text, sanitize, truncate, utf16_len};

/// Render-state entries kept per kind (upstream's LRU cap).
const STATE_CAP: usize = 512;

/// Text a session's render cache may hold: streamed replies are kept to merge the next chunk
/// into, and a long-lived session must not make the gateway grow without end.
const STATE_BYTES: usize = 64 * 1024;

/// The heap bytes an entry holds, for the cache's byte bound.
trait Weight {
    fn weight(&self) -> usize;
}

impl Weight for u64 {
    fn weight(&self) -> usize {
        0
    }
}

impl Weight for (Option<String>, String) {
    fn weight(&self) -> usize {
        self.0.as_ref().map_or(0, String::len) + self.1.len()
    }
}

/// A small map that keeps the most recently set entries: at most `STATE_CAP` of them and
/// `STATE_BYTES` of keys and values; the oldest go first.
#[derive(Debug)]
struct Recent<V> {
    entries: VecDeque<(String, V)>,
    bytes: usize,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Self { entries: VecDeque::new(), bytes: 0 }
    }
}

impl<V: Weight> Recent<V> {
    fn get(&self, key: &str) -> Option<&V> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn set(&mut self, key: String, value: V) {
        if let Some(index) = self.entries.iter().position(|(k, _)| *k == key) {
            if let Some((old_key, old)) = self.entries.remove(index) {
                self.bytes -= old_key.len() + old.weight();
            }
        }
        self.bytes += key.len() + value.weight();
        self.entries.push_back((key, value));
        while self.entries.len() > STATE_CAP || (self.bytes > STATE_BYTES && self.entries.len() > 1) {
            let Some((old_key, old)) = self.entries.pop_front() else { break };
            self.bytes -= old_key.len() + old.weight();
        }
    }
}

/// What a binding's renders remember: the provider message of each streamed assistant message
/// and tool call, and which artifacts were shown.
#[derive(Debug, Default)]
pub struct RenderState {
    assistant: Recent<(Option<String>, String)>,
    tools: Recent<(Option<String>, String)>,
    artifacts: Recent<u64>,
}

/// The outcome of rendering one event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rendered {
    /// Something was sent or edited.
    pub handled: bool,
    /// The provider message id to store as `lastChatMessageId`.
    pub last_chat_message_id: Option<String>,
}

/// Why a render failed; `transient` decides retry versus skip.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RenderError {
    pub transient: bool,
    pub message: String,
    /// The channel (or Cloud) asked to wait exactly this long before trying again: a rate limit,
    /// not a failure.
    pub retry_after: Option<std::time::Duration>,
}

impl From<SendError> for RenderError {
    fn from(error: SendError) -> Self {
        let retry_after = match error.kind {
            SendErrorKind::RateLimited(wait) => Some(wait),
            _ => None,
        };
        Self { transient: !matches!(error.kind, SendErrorKind::Permanent), message: error.message, retry_after }
    }
}

impl From<CloudError> for RenderError {
    fn from(error: CloudError) -> Self {
        Self { transient: error.is_retryable(), message: error.to_string(), retry_after: error.retry_after }
    }
}

/// Everything a render needs about where it goes.
pub struct RenderContext<'a> {
    pub client: &'a CloudClient,
    pub provider: &'a dyn Channel,
    pub binding: &'a SessionBindingRecord,
    pub target: ChannelTarget,
}

fn payload_text<'a>(payload: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| payload.get(*k).and_then(Value::as_str).filter(|s| !s.trim().is_empty()))
}

pub async fn render_event(
    context: &RenderContext<'_>,
    state: &mut RenderState,
    event: &SessionEvent,
) -> Result<Rendered, RenderError> {
    match event.event_type.as_str() {
        "assistant.message" => render_assistant(context, state, event).await,
        "tool.call" => render_tool(context, state, event).await,
        "permission.requested" => render_permission(context, event).await,
        "question.asked" => render_question(context, event).await,
        "artifact.created" | "artifact.updated" => render_artifact(context, state, event).await,
        _ => Ok(Rendered::default()),
    }
}

/// The target of a new message: only what the chat gave. The thread is dropped when it is the
/// chat itself (a binding without a thread names the chat as its thread), and so is the id of
/// the last message sent there, which says nothing about where a new message goes.
pub fn plain_send_target(target: &ChannelTarget) -> ChannelTarget {
    let mut target = target.clone();
    if target.thread_id.as_deref().is_some_and(|thread| thread.is_empty() || thread == target.chat_id) {
        target.thread_id = None;
    }
    target.message_id = None;
    target
}

async fn send_chunks(context: &RenderContext<'_>, text: &str) -> Result<Option<String>, RenderError> {
    let mut last = None;
    let target = plain_send_target(&context.target);
    for chunk in chunk_text(text, context.provider.capabilities().max_text_length) {
        if chunk.trim().is_empty() {
            continue;
        }
        last = Some(context.provider.send_text(&target, &chunk, &SendOptions::default()).await?.message_id);
    }
    Ok(last)
}

fn fits(context: &RenderContext<'_>, text: &str) -> bool {
    utf16_len(text) <= context.provider.capabilities().max_text_length
}

async fn render_assistant(
    context: &RenderContext<'_>,
    state: &mut RenderState,
    event: &SessionEvent,
) -> Result<Rendered, RenderError> {
    let payload = &event.payload;
    let key = payload_text(payload, &["messageId", "id"])
        .map(str::to_owned)
        .or_else(|| event.rest.get("entityId").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| {
            format!(
                "{}:assistant:{}",
                if event.session_id.is_empty() { "session" } else { &event.session_id },
                event.sequence
            )
        });
    // Streamed pieces are merged as they came: the space that starts a delta (" world" after
    // "Hello") is part of the reply. Only what is shown is trimmed.
    let Some(content) = payload_text(payload, &["content", "text", "message"]).map(str::to_owned) else {
        return Ok(Rendered::default());
    };
    let (existing_id, existing_text) = state.assistant.get(&key).cloned().unwrap_or((None, String::new()));
    let next = merge_streaming_text(&existing_text, &content);
    if next == existing_text {
        return Ok(Rendered { handled: false, last_chat_message_id: existing_id });
    }
    let editable = context.provider.capabilities().message_editing;
    let shown = next.trim();
    let message_id = match (&existing_id, editable && fits(context, shown)) {
        (_, _) if shown == existing_text.trim() => existing_id.clone(),
        (Some(id), true) => {
            context.provider.edit_text(&context.target, id, shown).await?;
            Some(id.clone())
        }
        (None, true) => {
            let target = plain_send_target(&context.target);
            Some(context.provider.send_text(&target, shown, &SendOptions::default()).await?.message_id)
        }
        _ => {
            let suffix = next.strip_prefix(existing_text.as_str()).unwrap_or(&next).trim();
            if suffix.is_empty() {
                existing_id.clone()
            } else {
                send_chunks(context, suffix).await?.or(existing_id)
            }
        }
    };
    state.assistant.set(key, (message_id.clone(), next));
    Ok(Rendered { handled: true, last_chat_message_id: message_id })
}

async fn render_tool(
    context: &RenderContext<'_>,
    state: &mut RenderState,
    event: &SessionEvent,
) -> Result<Rendered, RenderError> {
    let payload = &event.payload;
    let key = payload_text(payload, &["id", "callId", "toolCallId"])
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}:tool:{}", event.session_id, event.sequence));
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
    let (existing_id, existing_summary) = state.tools.get(&key).cloned().unwrap_or((None, String::new()));
    if existing_summary == summary {
        return Ok(Rendered { handled: false, last_chat_message_id: existing_id });
    }
    let max = context.provider.capabilities().max_text_length;
    let message_id = match &existing_id {
        Some(id) if context.provider.capabilities().message_editing && fits(context, &summary) => {
            context.provider.edit_text(&context.target, id, &summary).await?;
            id.clone()
        }
        _ => {
            context
                .provider
                .send_text(&plain_send_target(&context.target), &truncate(&summary, max), &SendOptions::default())
                .await?
                .message_id
        }
    };
    state.tools.set(key, (Some(message_id.clone()), summary));
    Ok(Rendered { handled: true, last_chat_message_id: Some(message_id) })
}

/// Issues a Cloud interaction for a prompt and returns its plaintext token.
async fn issue_interaction(
    context: &RenderContext<'_>,
    event: &SessionEvent,
    kind: &'static str,
    target_id: &str,
) -> Result<String, RenderError> {
    let random: Vec<u8> = (0..9).map(|_| fastrand::u8(..)).collect();
    let binding = context.binding;
    let issued = context
        .client
        .create_interaction(&CreateInteraction {
            agent_id: binding.rest.get("agentId").and_then(Value::as_str).unwrap_or_default().into(),
            session_id: if event.session_id.is_empty() { binding.session_id.clone() } else { event.session_id.clone() },
            session_binding_id: binding.binding_id.clone(),
            provider: binding.provider.clone(),
            kind,
            target_id: target_id.to_owned(),
            interaction_id: format!("gw_{kind}_{}", crate::util::base64::encode_url(&random)),
        })
        .await?;
    Ok(issued.plaintext_token)
}

/// Whether the channel can show these buttons with this text.
fn buttons_fit(context: &RenderContext<'_>, text: &str, rows: &[Vec<Button>]) -> bool {
    let capabilities = context.provider.capabilities();
    capabilities.inline_buttons
        && fits(context, text)
        && rows.len() <= capabilities.max_button_rows
        && rows.iter().map(Vec::len).sum::<usize>() <= capabilities.max_buttons_per_message
        && rows.iter().flatten().all(|b| !b.label.is_empty() && b.token.len() <= capabilities.max_button_token_bytes)
}

async fn send_prompt(
    context: &RenderContext<'_>,
    text: &str,
    rows: Vec<Vec<Button>>,
    fallback: String,
) -> Result<Rendered, RenderError> {
    let message_id = if !rows.is_empty() && buttons_fit(context, text, &rows) {
        Some(context.provider.send_buttons(&plain_send_target(&context.target), text, &rows).await?.message_id)
    } else {
        send_chunks(context, &fallback).await?
    };
    Ok(Rendered { handled: true, last_chat_message_id: message_id })
}

async fn render_permission(context: &RenderContext<'_>, event: &SessionEvent) -> Result<Rendered, RenderError> {
    let payload = &event.payload;
    let Some(permission_id) = payload_text(payload, &["permissionId", "id"]) else { return Ok(Rendered::default()) };
    let token = issue_interaction(context, event, "permission", permission_id).await?;
    let title = sanitize(payload_text(payload, &["title"]).unwrap_or("Permission requested"), 160);
    let mut text = title;
    if let Some(description) = payload_text(payload, &["description", "summary", "tool"]) {
        text.push('\n');
        text.push_str(&sanitize(description, 320));
    }
    let rows = vec![vec![
        Button { label: "Approve".into(), token: format!("apv:{token}"), style: "success" },
        Button { label: "Deny".into(), token: format!("den:{token}"), style: "danger" },
    ]];
    let fallback = format!("{text}\n/approve {token}\n/deny {token}");
    send_prompt(context, &text, rows, fallback).await
}

struct Question {
    header: Option<String>,
    question: String,
    options: Vec<(String, Option<String>)>,
    multiple: bool,
}

fn read_questions(payload: &Value) -> Vec<Question> {
    let Some(items) = payload.get("questions").and_then(Value::as_array) else {
        return payload_text(payload, &["question", "prompt"])
            .map(|q| {
                vec![Question {
                    header: payload_text(payload, &["title"]).map(str::to_owned),
                    question: q.to_owned(),
                    options: Vec::new(),
                    multiple: false,
                }]
            })
            .unwrap_or_default();
    };
    items
        .iter()
        .filter_map(|item| {
            let question = payload_text(item, &["question", "prompt", "text"])?.to_owned();
            let options = item
                .get("options")
                .and_then(Value::as_array)
                .map(|options| {
                    options
                        .iter()
                        .filter_map(|o| match o {
                            Value::String(label) => Some((label.clone(), None)),
                            other => {
                                let label = payload_text(other, &["label"])
                                    .or_else(|| payload_text(other, &["description"]))?
                                    .to_owned();
                                Some((
                                    label,
                                    payload_text(other, &["description"])
                                        .map(str::to_owned)
                                        .filter(|_| other.get("label").is_some()),
                                ))
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(Question {
                header: payload_text(item, &["header"]).map(str::to_owned),
                question,
                options,
                multiple: item.get("multiple") == Some(&Value::Bool(true)),
            })
        })
        .collect()
}

async fn render_question(context: &RenderContext<'_>, event: &SessionEvent) -> Result<Rendered, RenderError> {
    let payload = &event.payload;
    let Some(request_id) = payload_text(payload, &["requestId", "requestID", "id"]) else {
        return Ok(Rendered::default());
    };
    let token = issue_interaction(context, event, "question", request_id).await?;
    let questions = read_questions(payload);
    let several = questions.len() > 1;
    let text = if questions.is_empty() {
        "Question requested".to_owned()
    } else {
        questions
            .iter()
            .enumerate()
            .map(|(index, q)| {
                let default_header =
                    if several { format!("Question {}", index + 1) } else { "Question requested".to_owned() };
                let mut block = format!(
                    "{}\n{}",
                    sanitize(q.header.as_deref().unwrap_or(&default_header), 120),
                    sanitize(&q.question, 320)
                );
                for (label, description) in &q.options {
                    match description {
                        Some(d) => block.push_str(&format!("\n- {}: {}", sanitize(label, 80), sanitize(d, 120))),
                        None => block.push_str(&format!("\n- {}", sanitize(label, 80))),
                    }
                }
                block
            })
            .collect::<Vec<_>>()
            .join("\n\n")
    };
    let rows = match questions.as_slice() {
        [only] if !only.multiple && !only.options.is_empty() => vec![
            only.options
                .iter()
                .map(|(label, _)| Button {
                    label: sanitize(label, 40),
                    token: format!("ans:{}:{token}", crate::util::base64::encode_url(label.as_bytes())),
                    style: "primary",
                })
                .collect(),
            vec![Button { label: "Reject".into(), token: format!("rej:{token}"), style: "danger" }],
        ],
        _ => Vec::new(),
    };
    let fallback = format!("{text}\n/answer {token} <response>\n/reject {token}");
    send_prompt(context, &text, rows, fallback).await
}

async fn render_artifact(
    context: &RenderContext<'_>,
    state: &mut RenderState,
    event: &SessionEvent,
) -> Result<Rendered, RenderError> {
    let payload = &event.payload;
    let from_path = payload_text(payload, &["filePath"])
        .and_then(|p| p.strip_prefix("cloud-artifact://"))
        .and_then(|rest| rest.split('/').next())
        .and_then(crate::util::percent::percent_decode);
    let Some(artifact_id) = payload_text(payload, &["artifactId", "cloudArtifactId", "id"])
        .map(str::to_owned)
        .or(from_path)
        .or_else(|| event.rest.get("entityId").and_then(Value::as_str).map(str::to_owned))
    else {
        return Ok(Rendered::default());
    };
    if state.artifacts.get(&artifact_id).is_some_and(|seen| *seen >= event.sequence) {
        return Ok(Rendered::default());
    }
    let filename = payload_text(payload, &["filename"])
        .map(|f| sanitize(&text::redact_file_name(&f.replace(['\\', '/', ':', '\0'], "-")), 180))
        .filter(|f| f != "." && f != "..")
        .unwrap_or_else(|| "artifact".into());
    let size = payload.get("size").and_then(Value::as_u64).unwrap_or(0);
    let capabilities = context.provider.capabilities();
    if event.event_type == "artifact.created"
        && capabilities.file_downloads
        && size > 0
        && size <= capabilities.max_file_bytes as u64
    {
        let attachment = context.client.read_artifact(&context.binding.binding_id, &artifact_id).await?;
        let data = attachment
            .url
            .split_once(";base64,")
            .and_then(|(_, encoded)| crate::util::base64::decode(encoded))
            .filter(|d| !d.is_empty())
            .ok_or_else(|| RenderError {
                transient: false,
                message: "Cloud artifact attachment did not include a base64 data URL.".into(),
                retry_after: None,
            })?;
        if data.len() <= capabilities.max_file_bytes {
            let sent = context.provider.send_file(&plain_send_target(&context.target), &filename, &data).await?;
            state.artifacts.set(artifact_id, event.sequence);
            return Ok(Rendered { handled: true, last_chat_message_id: Some(sent.message_id) });
        }
    }
    let url = context.client.artifact_url(&context.binding.binding_id, &artifact_id);
    let label = if event.event_type == "artifact.updated" {
        let status = payload_text(payload, &["status"]).map(|s| format!(" ({s})")).unwrap_or_default();
        sanitize(&format!("Artifact updated: {filename}{status}"), 180)
    } else {
        filename
    };
    let message_id = send_chunks(context, &format!("{label}: {url}")).await?;
    state.artifacts.set(artifact_id, event.sequence);
    Ok(Rendered { handled: true, last_chat_message_id: message_id })
}

/// The text of a Cloud delivery: `text`, else `message`, else a readable line for a
/// workflow-run payload (status line, then summary or error; never raw JSON), else compact JSON.
pub fn delivery_text(payload: &Value) -> String {
    if let Some(text) = payload.get("text").and_then(Value::as_str) {
        return text.to_owned();
    }
    if let Some(message) = payload.get("message").and_then(Value::as_str) {
        return message.to_owned();
    }
    let field = |k: &str| payload.get(k).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
    if let (Some(status), true) =
        (field("status"), payload.get("workflowId").is_some() || payload.get("runId").is_some())
    {
        let name = field("workflowId").or(field("runId")).unwrap_or("workflow");
        let mut line = format!("Workflow {name} {status}.");
        if let Some(detail) = field("summary").or(field("error")) {
            line.push('\n');
            line.push_str(&sanitize(detail, 2000));
        }
        return line;
    }
    payload.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_render_cache_is_bounded_in_entries_and_in_bytes() {
        let mut recent: Recent<(Option<String>, String)> = Recent::default();
        for n in 0..2 * STATE_CAP {
            recent.set(format!("k{n}"), (None, "x".into()));
        }
        assert_eq!(recent.entries.len(), STATE_CAP);
        assert!(recent.get("k0").is_none() && recent.get(&format!("k{}", 2 * STATE_CAP - 1)).is_some());
        for n in 0..10 {
            recent.set(format!("big{n}"), (Some("id".into()), "y".repeat(20 * 1024)));
        }
        assert!(recent.bytes <= STATE_BYTES, "{} bytes held", recent.bytes);
        assert!(recent.get("big9").is_some(), "the newest entry stays");
        let held: usize = recent.entries.iter().map(|(k, v)| k.len() + v.weight()).sum();
        assert_eq!(held, recent.bytes, "the byte count follows the entries");
        recent.set("big9".into(), (None, String::new()));
        let held: usize = recent.entries.iter().map(|(k, v)| k.len() + v.weight()).sum();
        assert_eq!(held, recent.bytes, "replacing an entry gives its bytes back");
    }
    use serde_json::json;

    #[test]
    fn delivery_texts() {
        assert_eq!(delivery_text(&json!({"text": "done", "message": "x"})), "done");
        assert_eq!(delivery_text(&json!({"message": "failed run"})), "failed run");
        assert_eq!(
            delivery_text(
                &json!({"workflowId": "nightly", "runId": "r1", "status": "completed", "summary": "3 reports"})
            ),
            "Workflow nightly completed.\n3 reports"
        );
        assert_eq!(delivery_text(&json!({"other": 1})), "{\"other\":1}");
    }

    #[test]
    fn questions_are_read_from_either_shape() {
        let payload = json!({"questions": [{"header": "H", "question": "Q?", "options": ["A", {"label": "B", "description": "bee"}]}]});
        let questions = read_questions(&payload);
        assert_eq!(questions.len(), 1);
        assert_eq!(questions[0].options, vec![("A".into(), None), ("B".into(), Some("bee".into()))]);
        assert_eq!(read_questions(&json!({"question": "Legacy?", "title": "T"}))[0].header.as_deref(), Some("T"));
    }
}
