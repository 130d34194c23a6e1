//! Slack: the Events API and the Interactivity URL post to
//! `POST /webhooks/<id>`; every request is verified by its v0 signature over the raw body and
//! remembered against replays; `message` events become prompts and `block_actions` presses
//! become interactions, claimed in Cloud by Slack's stable ids. Replies go out through the Web
//! API (`chat.postMessage` in the event's thread, `chat.update` at most once per second for
//! streamed text, Block Kit buttons whose `value` is the Cloud interaction token, the external
//! file upload flow for artifacts), and Slack's errors are typed for the dispatcher: `ratelimited`
//! waits exactly `Retry-After`, `channel_not_found` and friends are permanent.
//!
//! Slack gives up on a request after 3 seconds and retries it, so this channel declares an answer
//! deadline: the webhook is answered 202 within about 2 s even when the Cloud claim is slower,
//! and the message stays queued.

pub mod api;
pub mod blocks;
pub mod doctor;
mod edits;
pub mod events;
pub mod kind;
pub mod signature;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};
use smol_str::SmolStr;

use crate::channel::pacing::EditPacer;
use crate::channel::{
    async_trait, Button, Capabilities, Channel, ChannelContext, ChannelTarget, EventCounters, HealthReporter,
    InboundMessage, SendError, SendOptions, SentMessage, WebhookError, WebhookErrorCode, WebhookReply, WebhookRequest,
};
use crate::config::providers::slack::SlackSettings;
use crate::config::Secret;
use crate::net::backoff::Backoff;
use crate::net::https::HttpsClient;
use crate::shutdown::DrainSignal;
use crate::util::markup::escape_text;
use crate::util::recent::Recent;
use api::{SlackError, WebApi};
use events::{Dispatch, PressOrigin};
use signature::{ReplayCache, SignatureError};

/// The text limit this channel declares; the core chunks to it (fences and characters intact).
pub const MAX_TEXT: usize = 3000;
/// Files up to this size are uploaded (Slack's declared `maxFileBytes`, as upstream).
pub const MAX_FILE_BYTES: usize = 20 * 1024 * 1024;
/// The Web API timeout: the gateway's default webhook delivery timeout, as upstream passes it.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Slack retries a request it has no answer to after 3 s; answering by 2 s leaves a margin for
/// the network between the gateway and Slack.
const ANSWER_DEADLINE: Duration = Duration::from_secs(2);
/// Button presses whose message may still be updated with the outcome.
const PRESS_ORIGINS: usize = 256;
/// Replay keys of messages still in the pipeline, released when their processing fails.
const OPEN_REQUESTS: usize = 1024;

/// The names of [`SlackProvider::counters`], as metric `event` labels.
pub const COUNTERS: [&str; 8] =
    ["event", "interaction", "send", "edit", "upload", "rate_limited", "signature_rejected", "replay_rejected"];

struct Inner {
    id: SmolStr,
    api: WebApi,
    signing_secret: Secret,
    capabilities: Capabilities,
    /// The app's own user id (`auth.test`), whose messages are never prompts.
    bot_user_id: RefCell<Option<String>>,
    replays: RefCell<ReplayCache>,
    /// `(message id, replay key)` of requests whose messages are being processed, oldest first.
    open_requests: RefCell<Recent<String>>,
    /// Button messages already decided, as `(channel, ts)`, oldest first.
    settled: RefCell<VecDeque<(String, String)>>,
    /// Presses waiting for their outcome, by interaction id, oldest first.
    presses: RefCell<Recent<PressOrigin>>,
    /// Paces streamed edits to one per second per message.
    edits: Rc<EditPacer>,
    /// Set at start: a token refused mid-run stops sends through it.
    health: RefCell<Option<HealthReporter>>,
    counters: EventCounters<{ COUNTERS.len() }>,
    /// The start task (`auth.test` with retries) while it runs.
    task: RefCell<Option<tokio::task::JoinHandle<()>>>,
}

/// A configured Slack app. Cheap to clone (shared state).
#[derive(Clone)]
pub struct SlackProvider {
    inner: Rc<Inner>,
}

fn auth_error(error: SignatureError) -> WebhookError {
    WebhookError::new(WebhookErrorCode::Auth, error.message())
}

/// `thread_ts` for a target: a real thread, never the channel id the core uses for "no thread".
fn thread_ts(target: &ChannelTarget) -> Option<&str> {
    target.thread_id.as_deref().map(str::trim).filter(|t| !t.is_empty() && *t != target.chat_id)
}

/// The `ts` Slack gave a message, or a random id when it gave none.
fn message_ts(result: &Value) -> String {
    result
        .get("ts")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|ts| !ts.is_empty())
        .map_or_else(crate::util::ids::random_id, str::to_owned)
}

impl SlackProvider {
    pub fn new(id: SmolStr, settings: &SlackSettings, http: HttpsClient) -> Self {
        Self {
            inner: Rc::new(Inner {
                id,
                api: WebApi::new(http, &settings.api_base_url, settings.bot_token.clone(), CALL_TIMEOUT),
                signing_secret: settings.signing_secret.clone(),
                capabilities: Capabilities {
                    message_editing: true,
                    inline_buttons: true,
                    file_downloads: true,
                    max_text_length: MAX_TEXT,
                    max_buttons_per_message: blocks::MAX_BUTTONS,
                    max_button_rows: blocks::MAX_ROWS,
                    max_button_token_bytes: blocks::MAX_TOKEN_BYTES,
                    max_file_bytes: MAX_FILE_BYTES,
                },
                bot_user_id: RefCell::new(None),
                replays: RefCell::new(ReplayCache::default()),
                open_requests: RefCell::new(Recent::new(OPEN_REQUESTS)),
                settled: RefCell::new(VecDeque::new()),
                presses: RefCell::new(Recent::new(PRESS_ORIGINS)),
                edits: Rc::new(EditPacer::new(edits::EDIT_INTERVAL, edits::EDIT_STATES)),
                health: RefCell::new(None),
                counters: EventCounters::new(COUNTERS),
                task: RefCell::new(None),
            }),
        }
    }

    /// One Web API call, counted; a refused token marks sending unhealthy.
    async fn call(&self, method: &'static str, body: &Value) -> Result<Value, SendError> {
        let result = self.inner.api.call(method, body).await;
        self.observe(method, &result);
        result.map_err(SendError::from)
    }

    fn observe(&self, method: &'static str, result: &Result<Value, SlackError>) {
        match result {
            Ok(_) if method == "chat.postMessage" => self.inner.counters.count("send"),
            Ok(_) if method == "chat.update" => self.inner.counters.count("edit"),
            Ok(_) => {}
            Err(error) if error.is_rate_limit() => self.inner.counters.count("rate_limited"),
            Err(error) if error.is_auth() => {
                if let Some(health) = self.inner.health.borrow().as_ref() {
                    health.set_sending(Some(format!("auth: Slack rejected the bot token ({error}).")));
                }
            }
            Err(_) => {}
        }
    }

    /// Verifies, de-duplicates and maps one request.
    fn verify_and_map(&self, request: &WebhookRequest<'_>) -> Result<WebhookReply, WebhookError> {
        let header =
            |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or_default();
        let timestamp = header("x-slack-request-timestamp");
        let signature = header("x-slack-signature");
        let verified = signature::verify(
            self.inner.signing_secret.expose(),
            timestamp,
            signature,
            request.raw_body,
            request.received_at_ms,
        );
        if let Err(error) = verified {
            self.inner.counters.count("signature_rejected");
            return Err(auth_error(error));
        }
        let scope =
            events::team_of(request.payload).map_or_else(|| self.inner.id.to_string(), signature::scope_segment);
        let key = format!("{timestamp}:{signature}");
        if let Err(error) = self.inner.replays.borrow_mut().remember(&key, &scope, request.received_at_ms) {
            self.inner.counters.count("replay_rejected");
            return Err(auth_error(error));
        }
        let bot_user = self.inner.bot_user_id.borrow().clone();
        Ok(match events::dispatch(&self.inner.id, request.payload, bot_user.as_deref(), request.received_at_ms) {
            Dispatch::Challenge(challenge) => WebhookReply::Respond(json!({"challenge": challenge})),
            Dispatch::Ignored => WebhookReply::Ignored,
            Dispatch::Inbound { message, origin } => {
                match (&message.interaction, origin) {
                    // The message was decided already and shows the outcome: a press that
                    // raced the update goes no further (no Cloud call, no "could not process").
                    (Some(_), Some(origin)) if self.is_settled(&origin) => {
                        self.inner.counters.count("interaction");
                        return Ok(WebhookReply::Ignored);
                    }
                    (Some(interaction), Some(origin)) => {
                        self.inner.counters.count("interaction");
                        self.inner.presses.borrow_mut().remember(interaction.id.clone(), origin);
                    }
                    (Some(_), None) => self.inner.counters.count("interaction"),
                    (None, _) => self.inner.counters.count("event"),
                }
                self.inner.open_requests.borrow_mut().remember(message.id.clone(), key);
                WebhookReply::Messages(vec![*message])
            }
        })
    }

    /// Whether the message a press came from was decided already.
    fn is_settled(&self, origin: &PressOrigin) -> bool {
        self.inner.settled.borrow().iter().any(|(channel, ts)| *channel == origin.channel && *ts == origin.ts)
    }

    /// Identity check at start: `auth.test` until it answers. A refused token is a failed start
    /// with an `auth:` reason and one log line; transient failures back off.
    async fn authenticate(self, health: HealthReporter, mut drain: DrainSignal) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            let error = match self.inner.api.call("auth.test", &json!({})).await {
                Ok(me) => {
                    let user = me.get("user_id").and_then(Value::as_str).map(str::to_owned);
                    let team = me.get("team_id").and_then(Value::as_str).unwrap_or_default().to_owned();
                    tracing::info!(provider = %self.inner.id, team = %team, "Slack bot token accepted");
                    *self.inner.bot_user_id.borrow_mut() = user;
                    health.set_sending(None);
                    return;
                }
                Err(error) => error,
            };
            let wait = match error.kind() {
                crate::channel::SendErrorKind::RateLimited(wait) => wait,
                crate::channel::SendErrorKind::Transient => backoff.next_delay().max(Duration::from_millis(200)),
                crate::channel::SendErrorKind::Permanent => {
                    let reason = if error.is_auth() {
                        format!("auth: Slack rejected the bot token ({error}).")
                    } else {
                        format!("Slack refused auth.test ({error}).")
                    };
                    tracing::error!(provider = %self.inner.id, "{}", crate::config::redact::redact_text(&reason));
                    health.fail_start(reason);
                    return;
                }
            };
            health.set_sending(Some(format!("Slack is unreachable ({error}); retrying.")));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = drain.started() => return,
            }
        }
    }
}

#[async_trait(?Send)]
impl Channel for SlackProvider {
    fn id(&self) -> &str {
        &self.inner.id
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// Receiving needs only the signing secret, so it is healthy at once; sending waits for
    /// `auth.test` (and the registry admits webhooks once both are healthy).
    fn start(&self, context: ChannelContext) {
        context.health.set_receiving(None);
        context.health.set_sending(Some("Slack is starting.".into()));
        *self.inner.health.borrow_mut() = Some(context.health.clone());
        let task = tokio::task::spawn_local(self.clone().authenticate(context.health, context.drain));
        *self.inner.task.borrow_mut() = Some(task);
    }

    fn stop(&self) {
        if let Some(task) = self.inner.task.borrow_mut().take() {
            task.abort();
        }
        self.inner.health.borrow_mut().take();
    }

    async fn handle_webhook(&self, request: WebhookRequest<'_>) -> Result<WebhookReply, WebhookError> {
        self.verify_and_map(&request)
    }

    fn answer_deadline(&self) -> Option<Duration> {
        Some(ANSWER_DEADLINE)
    }

    async fn send_text(
        &self,
        target: &ChannelTarget,
        text: &str,
        options: &SendOptions,
    ) -> Result<SentMessage, SendError> {
        let mut body = json!({"channel": target.chat_id, "text": escape_text(text), "unfurl_links": false, "unfurl_media": false, "mrkdwn": false});
        if let Some(thread) = thread_ts(target) {
            body["thread_ts"] = Value::from(thread);
        }
        let result = self.call("chat.postMessage", &body).await?;
        Ok(SentMessage {
            chat_id: target.chat_id.clone(),
            message_id: message_ts(&result),
            provider_delivery_id: options.delivery_id.clone(),
        })
    }

    /// Paced: at most one `chat.update` a second per message (see `edits`).
    async fn edit_text(&self, target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError> {
        crate::channel::pacing::paced_edit(self, target, message_id, text).await
    }

    async fn send_buttons(
        &self,
        target: &ChannelTarget,
        text: &str,
        rows: &[Vec<Button>],
    ) -> Result<SentMessage, SendError> {
        blocks::check_buttons(rows)?;
        let mut body =
            json!({"channel": target.chat_id, "text": escape_text(text), "blocks": blocks::button_blocks(text, rows)});
        if let Some(thread) = thread_ts(target) {
            body["thread_ts"] = Value::from(thread);
        }
        let result = self.call("chat.postMessage", &body).await?;
        Ok(SentMessage { chat_id: target.chat_id.clone(), message_id: message_ts(&result), provider_delivery_id: None })
    }

    /// Slack's external upload flow: an upload URL, the bytes, then completion in the channel (and
    /// thread), which posts the file message. (Upstream called `files.uploadV2`, which is a helper
    /// of Slack's SDK, not a Web API method.)
    async fn send_file(&self, target: &ChannelTarget, filename: &str, data: &[u8]) -> Result<SentMessage, SendError> {
        if data.is_empty() {
            return Err(SendError::permanent("Slack file upload requires file data."));
        }
        if data.len() > MAX_FILE_BYTES {
            return Err(SendError::permanent(format!("Slack file exceeds maxFileBytes {MAX_FILE_BYTES}.")));
        }
        let length = data.len().to_string();
        let ticket = self
            .inner
            .api
            .call_form("files.getUploadURLExternal", &[("filename", filename), ("length", &length)])
            .await;
        self.observe("files.getUploadURLExternal", &ticket);
        let ticket = ticket?;
        let (Some(url), Some(file_id)) =
            (ticket.get("upload_url").and_then(Value::as_str), ticket.get("file_id").and_then(Value::as_str))
        else {
            return Err(SendError::transient("Slack API files.getUploadURLExternal failed: no upload_url"));
        };
        self.inner.api.upload(url, data).await?;
        let mut body = json!({"files": [{"id": file_id, "title": filename}], "channel_id": target.chat_id});
        if let Some(thread) = thread_ts(target) {
            body["thread_ts"] = Value::from(thread);
        }
        let completed = self.call("files.completeUploadExternal", &body).await?;
        self.inner.counters.count("upload");
        let shares = completed.pointer("/files/0/shares");
        let shared_ts =
            ["public", "private"].into_iter().find_map(|visibility| {
                shares?.get(visibility)?.as_object()?.values().find_map(|list| {
                    list.as_array()?.iter().find_map(|share| share.get("ts")?.as_str().map(str::to_owned))
                })
            });
        Ok(SentMessage {
            chat_id: target.chat_id.clone(),
            message_id: shared_ts.unwrap_or_else(|| file_id.to_owned()),
            provider_delivery_id: None,
        })
    }

    /// Slack's acknowledgement of a press is the HTTP answer; what is left is to show the outcome
    /// on the message in place of its buttons, so they cannot be pressed twice.
    async fn answer_interaction(&self, interaction_id: &str, text: &str) -> Result<(), SendError> {
        let origin = self.inner.presses.borrow_mut().take(interaction_id);
        let Some(origin) = origin else { return Ok(()) };
        let outcome = if text.trim().is_empty() { "Done" } else { text };
        {
            let mut settled = self.inner.settled.borrow_mut();
            settled.push_back((origin.channel.clone(), origin.ts.clone()));
            while settled.len() > PRESS_ORIGINS {
                settled.pop_front();
            }
        }
        let body = json!({"channel": origin.channel, "ts": origin.ts, "text": origin.text, "blocks": blocks::resolved_blocks(&origin.text, outcome)});
        self.call("chat.update", &body).await.map(drop)
    }

    /// A message whose processing failed gives its request's replay key back: the gateway
    /// answered it 5xx, and Slack (or an operator) may resend the identical signed request.
    async fn after_inbound(&self, message: &InboundMessage, succeeded: bool) {
        let key = self.inner.open_requests.borrow_mut().take(&message.id);
        if let Some(key) = key.filter(|_| !succeeded) {
            self.inner.replays.borrow_mut().forget(&key);
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.inner.counters.snapshot()
    }
}
