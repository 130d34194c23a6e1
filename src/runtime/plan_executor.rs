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
fn plain_send_target(target: &ChannelTarget) -> ChannelTarget {
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::time::Duration;

    use super::*;
    use crate::channel::{async_trait, Capabilities, SentMessage};
    use crate::render::{render_event, Remember, RenderContext, Show};

    /// A channel that records its calls; a send of `limit me` is refused with a rate limit.
    struct Recorder {
        capabilities: Capabilities,
        calls: RefCell<Vec<String>>,
    }

    #[async_trait(?Send)]
    impl Channel for Recorder {
        fn id(&self) -> &str {
            "recorder"
        }

        fn capabilities(&self) -> &Capabilities {
            &self.capabilities
        }

        async fn send_text(
            &self,
            target: &ChannelTarget,
            text: &str,
            _: &SendOptions,
        ) -> Result<SentMessage, SendError> {
            let mut calls = self.calls.borrow_mut();
            calls.push(format!("send {text} thread={:?} reply_to={:?}", target.thread_id, target.message_id));
            let result = if text == "limit me" {
                Err(SendError { kind: SendErrorKind::RateLimited(Duration::from_secs(3)), message: "slow".into() })
            } else {
                let message_id = format!("m{}", calls.len());
                Ok(SentMessage { chat_id: target.chat_id.clone(), message_id, provider_delivery_id: None })
            };
            result
        }

        async fn edit_text(&self, target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError> {
            self.calls.borrow_mut().push(format!("edit {message_id} {text} reply_to={:?}", target.message_id));
            Ok(())
        }
    }

    fn binding() -> SessionBindingRecord {
        serde_json::from_value(serde_json::json!({
            "bindingId": "b1", "channelBindingId": "c1", "sessionId": "s1", "provider": "cli",
            "externalChatId": "chat", "externalThreadId": "chat"
        }))
        .unwrap()
    }

    async fn run(plan: Plan, state: &mut RenderState) -> (Result<Rendered, RenderError>, Vec<String>) {
        let http = crate::net::https::build_client(None).unwrap();
        let secret = crate::config::Secret::new("t");
        let client = CloudClient::new(http, "http://127.0.0.1:9", secret, Duration::from_secs(1));
        let provider = Recorder { capabilities: Capabilities::text_only(4096), calls: RefCell::new(Vec::new()) };
        let binding = binding();
        let target = ChannelTarget {
            chat_id: "chat".into(),
            thread_id: Some("chat".into()),
            message_id: Some("m0".into()),
            ..ChannelTarget::default()
        };
        let context = PlanContext { client: &client, provider: &provider, binding: &binding, target };
        let rendered = carry_out(&context, state, plan).await;
        (rendered, provider.calls.into_inner())
    }

    /// The plan for `event` on a plain-text channel with what `state` remembers.
    fn replan(state: &RenderState, event: serde_json::Value) -> Plan {
        let context = RenderContext { capabilities: &Capabilities::text_only(4096), artifact_url: &|id| id.into() };
        render_event(&context, state, &serde_json::from_value(event).unwrap())
    }

    #[tokio::test]
    async fn steps_run_in_order_and_the_last_message_is_reported_and_remembered() {
        let mut state = RenderState::default();
        let remember = Some(Remember::Tool { key: "t1".into(), summary: "Tool running: x".into() });
        let steps = vec![Step::Send("one".into()), Step::Edit { message_id: "m7".into(), text: "two".into() }];
        let plan = Plan::Show(Show { steps, message_id: Some("kept".into()), remember });
        let (rendered, calls) = run(plan, &mut state).await;
        assert_eq!(rendered, Ok(Rendered { handled: true, last_chat_message_id: Some("m7".into()) }));
        assert_eq!(
            calls,
            ["send one thread=None reply_to=None", "edit m7 two reply_to=Some(\"m0\")"],
            "a new message goes to the chat alone, an edit names its message"
        );
        let same_line = serde_json::json!({"sequence": 2, "type": "tool.call", "payload": {"id": "t1", "name": "x"}});
        let again = replan(&state, same_line);
        assert_eq!(
            again,
            Plan::Nothing { message_id: Some("m7".into()) },
            "the state learned the line and its message"
        );
        let nothing = Plan::Show(Show { steps: Vec::new(), message_id: Some("kept".into()), remember: None });
        assert_eq!(run(nothing, &mut state).await.0.unwrap().last_chat_message_id.as_deref(), Some("kept"));
    }

    #[tokio::test]
    async fn a_rate_limited_send_asks_for_the_wait_and_the_state_learns_nothing() {
        let mut state = RenderState::default();
        let remember = Some(Remember::Artifact { id: "f1".into(), sequence: 3 });
        let plan = Plan::Show(Show { steps: vec![Step::Send("limit me".into())], message_id: None, remember });
        let (rendered, _) = run(plan, &mut state).await;
        let error = rendered.unwrap_err();
        assert!(error.transient && error.retry_after == Some(Duration::from_secs(3)), "{error:?}");
        let created = serde_json::json!({"sequence": 3, "type": "artifact.created", "payload": {"artifactId": "f1"}});
        assert!(matches!(replan(&state, created), Plan::Show(_)), "not remembered as shown");
    }
}
