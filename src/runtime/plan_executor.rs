//! Carries out a render [`Plan`]: creates the Cloud interaction a prompt needs, sends and edits
//! through the channel in order, reads an artifact from Cloud to send it as a file, and tells
//! the render state what came of it. The decisions (what to send, how it is cut, buttons or
//! text commands) are the plan's; this only does them, noting its [`Progress`] so that a retry
//! of the same event does only what is left.

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

/// How far one event's plan got, kept across the tries of that event: a retry starts where the
/// last try stopped, so a message already sent, an edit already made or an interaction already
/// created is not done again (a long reply whose second part met a 502 does not show its first
/// part twice, a retried prompt does not get a second interaction and a second set of buttons).
/// A new event starts from [`Progress::default`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The token of the interaction created for the plan's prompt.
    token: Option<String>,
    /// Steps carried out in full, from the first.
    steps_done: usize,
    /// Link messages already sent for the step under way: a file step whose file was too large.
    links_sent: usize,
    /// The last message sent or edited so far, on any try.
    last_message_id: Option<String>,
}

impl Progress {
    /// The steps still to carry out.
    fn pending<'a>(&self, steps: &'a [Step]) -> &'a [Step] {
        steps.get(self.steps_done..).unwrap_or_default()
    }

    /// The link messages of a file step still to send.
    fn pending_links<'a>(&self, link: &'a [String]) -> &'a [String] {
        link.get(self.links_sent..).unwrap_or_default()
    }

    /// Whether the step under way already fell back to its links: the file is known to be too
    /// large, so it is not read again.
    fn sending_links(&self) -> bool {
        self.links_sent > 0
    }

    /// The next step went through; `message_id` is the message it sent or edited, if any.
    fn step_done(&mut self, message_id: Option<String>) {
        self.steps_done += 1;
        self.links_sent = 0;
        self.last_message_id = message_id.or(self.last_message_id.take());
    }

    /// One link message of the step under way went through.
    fn link_sent(&mut self, message_id: String) {
        self.links_sent += 1;
        self.last_message_id = Some(message_id);
    }
}

/// Carries `plan` out from where `progress` says an earlier try of the same event stopped; on
/// success the render state learns what the plan showed. On failure `progress` keeps what went
/// through, for the next try.
pub async fn carry_out(
    context: &PlanContext<'_>,
    state: &mut RenderState,
    plan: &Plan,
    progress: &mut Progress,
) -> Result<Rendered, RenderError> {
    match plan {
        Plan::Nothing { message_id } => Ok(Rendered { handled: false, last_chat_message_id: message_id.clone() }),
        Plan::Show(show) => {
            run_steps(context, &show.steps, progress).await?;
            let message_id = progress.last_message_id.clone().or_else(|| show.message_id.clone());
            if let Some(remember) = &show.remember {
                state.learn(remember.clone(), message_id.clone());
            }
            Ok(Rendered { handled: true, last_chat_message_id: message_id })
        }
        Plan::Ask(prompt) => {
            let token = match &progress.token {
                Some(token) => token.clone(),
                None => {
                    let token = create_interaction(context, &prompt.interaction).await?;
                    progress.token.insert(token).clone()
                }
            };
            let steps = prompt.steps(&token, context.provider.capabilities());
            run_steps(context, &steps, progress).await?;
            Ok(Rendered { handled: true, last_chat_message_id: progress.last_message_id.clone() })
        }
    }
}

/// Runs the steps `progress` has not done yet, in order, noting each as it goes through.
async fn run_steps(context: &PlanContext<'_>, steps: &[Step], progress: &mut Progress) -> Result<(), RenderError> {
    let provider = context.provider;
    let target = plain_send_target(&context.target);
    for step in progress.pending(steps) {
        let message_id = match step {
            Step::Send(text) => Some(provider.send_text(&target, text, &SendOptions::default()).await?.message_id),
            Step::Edit { message_id, text } => {
                provider.edit_text(&context.target, message_id, text).await?;
                Some(message_id.clone())
            }
            Step::Buttons { text, rows } => Some(provider.send_buttons(&target, text, rows).await?.message_id),
            Step::File { artifact_id, filename, max_bytes, link } => {
                let file = FileStep { artifact_id, filename, max_bytes: *max_bytes, link };
                send_artifact(context, &target, &file, progress).await?
            }
        };
        progress.step_done(message_id);
    }
    Ok(())
}

/// A file step's parts.
struct FileStep<'a> {
    artifact_id: &'a str,
    filename: &'a str,
    max_bytes: usize,
    link: &'a [String],
}

/// Reads the artifact from Cloud and sends it as a file when it is within `max_bytes`
/// (returning the file's message), else sends the `link` messages not sent yet, noting each in
/// `progress`.
async fn send_artifact(
    context: &PlanContext<'_>,
    target: &ChannelTarget,
    file: &FileStep<'_>,
    progress: &mut Progress,
) -> Result<Option<String>, RenderError> {
    if !progress.sending_links() {
        let attachment = context.client.read_artifact(&context.binding.binding_id, file.artifact_id).await?;
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
        if data.len() <= file.max_bytes {
            return Ok(Some(context.provider.send_file(target, file.filename, &data).await?.message_id));
        }
    }
    for text in progress.pending_links(file.link) {
        let sent = context.provider.send_text(target, text, &SendOptions::default()).await?;
        progress.link_sent(sent.message_id);
    }
    Ok(None)
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
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::channel::{Capabilities, SendErrorKind};
    use crate::render::{render_event, Remember, RenderContext, Show};
    use crate::runtime::scripted_channel::ScriptedChannel;

    fn binding() -> SessionBindingRecord {
        serde_json::from_value(serde_json::json!({
            "bindingId": "b1", "channelBindingId": "c1", "sessionId": "s1", "provider": "cli",
            "externalChatId": "chat", "externalThreadId": "chat"
        }))
        .unwrap()
    }

    fn client(base_url: &str) -> CloudClient {
        let http = crate::net::https::build_client(None).unwrap();
        CloudClient::new(http, base_url, crate::config::Secret::new("t"), Duration::from_secs(1))
    }

    /// Carries `plan` out on `provider` from `progress` (a fresh one for a first try).
    async fn carry(
        client: &CloudClient,
        provider: &ScriptedChannel,
        state: &mut RenderState,
        plan: &Plan,
        progress: &mut Progress,
    ) -> Result<Rendered, RenderError> {
        let binding = binding();
        let target = ChannelTarget {
            chat_id: "chat".into(),
            thread_id: Some("chat".into()),
            message_id: Some("m0".into()),
            ..ChannelTarget::default()
        };
        let context = PlanContext { client, provider, binding: &binding, target };
        carry_out(&context, state, plan, progress).await
    }

    async fn run(plan: Plan, state: &mut RenderState) -> (Result<Rendered, RenderError>, Vec<String>) {
        let provider = ScriptedChannel::new(Capabilities::text_only(4096));
        provider.refuse_once("limit me", SendErrorKind::RateLimited(Duration::from_secs(3)));
        let rendered = carry(&client("http://127.0.0.1:9"), &provider, state, &plan, &mut Progress::default()).await;
        (rendered, provider.calls())
    }

    /// The plan for `event` on a channel with `capabilities` and what `state` remembers.
    fn plan_for(capabilities: &Capabilities, state: &RenderState, event: serde_json::Value) -> Plan {
        let context = RenderContext { capabilities, artifact_url: &|id| id.into() };
        render_event(&context, state, &serde_json::from_value(event).unwrap())
    }

    fn replan(state: &RenderState, event: serde_json::Value) -> Plan {
        plan_for(&Capabilities::text_only(4096), state, event)
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

    /// A reply split in three messages whose second send fails once with a 502: the retry sends
    /// the second and the third, and the chat shows each part once, in order.
    #[tokio::test]
    async fn a_retry_after_a_failed_second_part_sends_only_what_is_left() {
        let capabilities = Capabilities::text_only(100);
        let mut state = RenderState::default();
        let reply = serde_json::json!({"sequence": 1, "type": "assistant.message",
            "payload": {"messageId": "a1", "content": (10..40).map(|n| format!("word{n} ")).collect::<String>()}});
        let plan = plan_for(&capabilities, &state, reply.clone());
        let Plan::Show(show) = &plan else { panic!("a reply to show: {plan:?}") };
        let parts: Vec<String> = show
            .steps
            .iter()
            .map(|step| match step {
                Step::Send(text) => text.clone(),
                other => panic!("new messages: {other:?}"),
            })
            .collect();
        assert_eq!(parts.len(), 3, "{parts:?}");
        let provider = ScriptedChannel::new(capabilities.clone());
        provider.refuse_once(&parts[1], SendErrorKind::Transient);
        let client = client("http://127.0.0.1:9");
        let mut progress = Progress::default();
        let failed = carry(&client, &provider, &mut state, &plan, &mut progress).await.unwrap_err();
        assert!(failed.transient, "{failed:?}");
        assert!(matches!(plan_for(&capabilities, &state, reply.clone()), Plan::Show(_)), "not learned yet");
        let rendered = carry(&client, &provider, &mut state, &plan, &mut progress).await.unwrap();
        let send = |part: &String| format!("send {part} thread=None reply_to=None");
        let expected = [send(&parts[0]), format!("refused {}", send(&parts[1])), send(&parts[1]), send(&parts[2])];
        assert_eq!(provider.calls(), expected, "the first part is not sent again");
        assert_eq!(rendered, Rendered { handled: true, last_chat_message_id: Some("m4".into()) });
        assert_eq!(plan_for(&capabilities, &state, reply), Plan::Nothing { message_id: Some("m4".into()) });
    }

    /// A loopback Cloud that creates interactions (token `tok`) and reads artifacts (`hello
    /// world`, 11 bytes); returns its URL and the paths it was asked for.
    async fn stub_cloud() -> (String, Arc<Mutex<Vec<String>>>) {
        use http_body_util::Full;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&paths);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let path = request.uri().path().to_owned();
                    seen.lock().unwrap().push(path.clone());
                    let (status, body) = if path == "/api/channels/interactions" {
                        (
                            201,
                            serde_json::json!({"plaintextToken": "tok", "interaction":
                            {"interactionId": "i1", "kind": "permission", "targetId": "p1", "status": "pending"}}),
                        )
                    } else {
                        (200, serde_json::json!({"artifact": {"dataBase64": "aGVsbG8gd29ybGQ=", "filename": "a.txt"}}))
                    };
                    let response = http::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Full::new(bytes::Bytes::from(body.to_string())));
                    async move { response }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
            }
        });
        (format!("http://{address}"), paths)
    }

    fn asked(paths: &Mutex<Vec<String>>, prefix: &str) -> usize {
        paths.lock().unwrap().iter().filter(|path| path.starts_with(prefix)).count()
    }

    /// A file too large for the channel goes as its link messages; the second fails once: the
    /// retry sends only that one, without reading the file from Cloud again.
    #[tokio::test]
    async fn a_retried_file_step_sends_only_the_link_messages_left() {
        let (base_url, paths) = stub_cloud().await;
        let client = client(&base_url);
        let provider = ScriptedChannel::new(Capabilities::text_only(4096));
        provider.refuse_once("l2", SendErrorKind::Transient);
        let link = vec!["l1".to_owned(), "l2".to_owned()];
        let file = Step::File { artifact_id: "f1".into(), filename: "a.txt".into(), max_bytes: 5, link };
        let plan = Plan::Show(Show { steps: vec![file], message_id: None, remember: None });
        let (mut state, mut progress) = (RenderState::default(), Progress::default());
        assert!(carry(&client, &provider, &mut state, &plan, &mut progress).await.unwrap_err().transient);
        let rendered = carry(&client, &provider, &mut state, &plan, &mut progress).await.unwrap();
        let send = |text: &str| format!("send {text} thread=None reply_to=None");
        assert_eq!(provider.calls(), [send("l1"), format!("refused {}", send("l2")), send("l2")]);
        assert_eq!(asked(&paths, "/api/channels/sessions/"), 1, "the file is read once");
        assert_eq!(rendered.last_chat_message_id.as_deref(), Some("m3"));
    }

    /// An approval whose buttons fail once with a 502: the retry shows the buttons with the
    /// interaction the first try created, not a second one.
    #[tokio::test]
    async fn a_retried_prompt_keeps_its_interaction_and_shows_one_set_of_buttons() {
        let mut capabilities = Capabilities::text_only(4096);
        capabilities.inline_buttons = true;
        capabilities.max_buttons_per_message = 10;
        capabilities.max_button_rows = 5;
        capabilities.max_button_token_bytes = 64;
        let state = RenderState::default();
        let requested = serde_json::json!({"sessionId": "s1", "sequence": 1, "type": "permission.requested",
            "payload": {"permissionId": "p1", "title": "Run rm?"}});
        let plan = plan_for(&capabilities, &state, requested);
        let provider = ScriptedChannel::new(capabilities);
        provider.refuse_once("Run rm?", SendErrorKind::Transient);
        let (base_url, paths) = stub_cloud().await;
        let client = client(&base_url);
        let mut progress = Progress::default();
        let mut state = state;
        assert!(carry(&client, &provider, &mut state, &plan, &mut progress).await.unwrap_err().transient);
        let rendered = carry(&client, &provider, &mut state, &plan, &mut progress).await.unwrap();
        assert_eq!(asked(&paths, "/api/channels/interactions"), 1, "one Cloud interaction for the prompt");
        assert_eq!(provider.calls(), ["refused buttons Run rm?", "buttons Run rm?"], "one prompt shown");
        assert_eq!(rendered.last_chat_message_id.as_deref(), Some("m2"));
    }

    #[test]
    fn progress_skips_what_went_through() {
        let steps = [Step::Send("a".into()), Step::Send("b".into())];
        let mut progress = Progress::default();
        assert_eq!(progress.pending(&steps), &steps);
        progress.step_done(Some("m1".into()));
        assert_eq!(progress.pending(&steps), &steps[1..]);
        let link = ["l1".to_owned(), "l2".to_owned()];
        assert!(!progress.sending_links());
        progress.link_sent("m2".into());
        assert!(progress.sending_links() && progress.pending_links(&link) == &link[1..]);
        progress.step_done(None);
        assert_eq!(progress.last_message_id.as_deref(), Some("m2"), "a step without its own id keeps the last");
        assert!(progress.pending(&steps).is_empty() && !progress.sending_links());
    }
}
