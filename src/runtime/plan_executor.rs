//! Carries out a render [`Plan`]: creates the Cloud interaction a prompt needs, sends and edits
//! through the channel in order, reads an artifact from Cloud to send it as a file, and tells
//! the render state what came of it. The decisions (what to send, how it is cut, buttons or
//! text commands) are the plan's; this only does them.

use serde_json::Value;

use crate::channel::{Channel, ChannelTarget, SendError, SendErrorKind, SendOptions};
use crate::cloud::client::{CloudClient, CreateInteraction};
use crate::cloud::types::SessionBindingRecord;
use crate::cloud::CloudError;
use crate::render::{InteractionRequest, Plan, RenderState, Step};

/// The outcome of carrying out one event's plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rendered {
    /// Something was sent or edited (or a streamed reply took a piece that shows nothing new).
    pub handled: bool,
    /// The provider message id to store as `lastChatMessageId`.
    pub last_chat_message_id: Option<String>,
}

/// Why carrying a plan out failed; `transient` decides retry versus skip.
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

/// Where a plan is carried out.
pub struct PlanContext<'a> {
    pub client: &'a CloudClient,
    pub provider: &'a dyn Channel,
    pub binding: &'a SessionBindingRecord,
    /// The binding's chat, with the id of the last message sent there (edits name their own).
    pub target: ChannelTarget,
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

/// Carries `plan` out; on success the render state learns what the plan showed.
pub async fn carry_out(
    context: &PlanContext<'_>,
    state: &mut RenderState,
    plan: Plan,
) -> Result<Rendered, RenderError> {
    match plan {
        Plan::Nothing { message_id } => Ok(Rendered { handled: false, last_chat_message_id: message_id }),
        Plan::Show(show) => {
            let message_id = run_steps(context, &show.steps).await?.or(show.message_id);
            if let Some(remember) = show.remember {
                state.learn(remember, message_id.clone());
            }
            Ok(Rendered { handled: true, last_chat_message_id: message_id })
        }
        Plan::Ask(prompt) => {
            let token = create_interaction(context, &prompt.interaction).await?;
            let steps = prompt.steps(&token, context.provider.capabilities());
            let message_id = run_steps(context, &steps).await?;
            Ok(Rendered { handled: true, last_chat_message_id: message_id })
        }
    }
}

/// Runs the steps in order; returns the id of the last message sent or edited.
async fn run_steps(context: &PlanContext<'_>, steps: &[Step]) -> Result<Option<String>, RenderError> {
    let provider = context.provider;
    let target = plain_send_target(&context.target);
    let mut last = None;
    for step in steps {
        let message_id = match step {
            Step::Send(text) => Some(provider.send_text(&target, text, &SendOptions::default()).await?.message_id),
            Step::Edit { message_id, text } => {
                provider.edit_text(&context.target, message_id, text).await?;
                Some(message_id.clone())
            }
            Step::Buttons { text, rows } => Some(provider.send_buttons(&target, text, rows).await?.message_id),
            Step::File { artifact_id, filename, max_bytes, link } => {
                send_artifact(context, &target, artifact_id, filename, *max_bytes, link).await?
            }
        };
        last = message_id.or(last);
    }
    Ok(last)
}

/// Reads the artifact from Cloud and sends it as a file when it is within `max_bytes`, else
/// sends the `link` messages.
async fn send_artifact(
    context: &PlanContext<'_>,
    target: &ChannelTarget,
    artifact_id: &str,
    filename: &str,
    max_bytes: usize,
    link: &[String],
) -> Result<Option<String>, RenderError> {
    let attachment = context.client.read_artifact(&context.binding.binding_id, artifact_id).await?;
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
    if data.len() <= max_bytes {
        return Ok(Some(context.provider.send_file(target, filename, &data).await?.message_id));
    }
    let mut last = None;
    for text in link {
        last = Some(context.provider.send_text(target, text, &SendOptions::default()).await?.message_id);
    }
    Ok(last)
}

/// Creates the Cloud interaction a prompt answers; returns its plaintext token.
async fn create_interaction(context: &PlanContext<'_>, request: &InteractionRequest) -> Result<String, RenderError> {
    let random: Vec<u8> = (0..9).map(|_| fastrand::u8(..)).collect();
    let binding = context.binding;
    let session_id = if request.session_id.is_empty() { &binding.session_id } else { &request.session_id };
    let issued = context
        .client
        .create_interaction(&CreateInteraction {
            agent_id: binding.rest.get("agentId").and_then(Value::as_str).unwrap_or_default().into(),
            session_id: session_id.clone(),
            session_binding_id: binding.binding_id.clone(),
            provider: binding.provider.clone(),
            kind: request.kind,
            target_id: request.target_id.clone(),
            interaction_id: format!("gw_{}_{}", request.kind, crate::util::base64::encode_url(&random)),
        })
        .await?;
    Ok(issued.plaintext_token)
}
