//! Telegram: long polling by default, webhook mode on request,
//! HTML messages with a plain-text fallback, inline keyboards whose `callback_data` is a short id
//! mapped to the Cloud interaction token (Cloud tokens do not fit Telegram's 64 bytes), edits at
//! most once per second per message, and Bot API errors mapped for the dispatcher: 403 and "chat not
//! found" are permanent, 429 waits exactly `retry_after`, a migrated group is followed.

pub mod api;
pub mod doctor;
mod edits;
pub mod html;
pub mod kind;
pub mod poll;
mod presses;
pub mod update;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};
use smol_str::SmolStr;

use crate::channel::pacing::EditPacer;
use crate::channel::{
    async_trait, Button, Capabilities, Channel, ChannelContext, ChannelTarget, EventCounters, InboundMessage,
    SendError, SendErrorKind, SendOptions, SentMessage, WebhookError, WebhookErrorCode, WebhookReply, WebhookRequest,
};
use crate::config::providers::telegram::TelegramSettings;
use crate::config::Secret;
use crate::net::https::HttpsClient;
use crate::providers::buttons::ButtonTable;
use crate::util::markup::escape_text;
use api::{chat_id, thread_id, BotApi, TelegramError};
use presses::OpenPress;
use update::{GroupPolicy, Mapping};

/// Telegram's text limit, in UTF-16 units of the message text.
pub const MAX_TEXT: usize = 4096;
/// Timeout of an ordinary Bot API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Webhook update ids remembered for de-duplication.
const SEEN_UPDATES: usize = 10_000;
/// Group→supergroup migrations remembered.
const MIGRATED_CHATS: usize = 1024;

/// Webhook mode settings.
pub struct WebhookMode {
    /// The URL Telegram posts to: `<publicBaseUrl>/webhooks/<id>`.
    pub url: String,
    pub secret: Secret,
}

struct Inner {
    id: SmolStr,
    api: BotApi,
    webhook: Option<WebhookMode>,
    groups: GroupPolicy,
    observe_unmentioned: bool,
    capabilities: Capabilities,
    /// `getMe`: the bot's id and username, for mentions and replies.
    bot: RefCell<Option<(i64, Option<String>)>>,
    buttons: ButtonTable,
    /// Callback queries not answered yet.
    open_callbacks: RefCell<VecDeque<OpenPress>>,
    /// Paces streamed edits to one per second per message.
    edits: Rc<EditPacer>,
    /// Groups that became supergroups: old chat id → new chat id.
    migrated: RefCell<HashMap<String, String>>,
    /// Webhook update ids seen lately: fixed-size numbers, so the set is bounded in bytes too.
    seen_updates: RefCell<RecentIds>,
    /// Rate-limits the log lines of repeated events (one plain-text fallback a minute).
    warnings: crate::logging::WarnLimiter,
    /// Updates received, messages sent, edits sent, rate limits met (exported as metrics).
    counters: EventCounters<{ COUNTERS.len() }>,
    /// The bot's own task (identity, webhook registration, polling) while it runs.
    task: RefCell<Option<tokio::task::JoinHandle<()>>>,
}

/// The names of [`TelegramProvider::counters`], as metric `event` labels.
pub const COUNTERS: [&str; 4] = ["update", "send", "edit", "rate_limited"];

/// A configured bot. Cheap to clone (shared state).
#[derive(Clone)]
pub struct TelegramProvider {
    inner: Rc<Inner>,
}

impl TelegramProvider {
    /// `state_dir` keeps the button table across restarts, so buttons sent before a
    /// restart still work after it.
    pub fn new(
        id: SmolStr,
        settings: &TelegramSettings,
        http: HttpsClient,
        state_dir: Option<&std::path::Path>,
    ) -> Self {
        let buttons_file = state_dir.map(|dir| dir.join(format!("telegram-{id}-buttons.json")));
        let buttons = ButtonTable::open(buttons_file.as_deref());
        let webhook =
            settings.webhook.as_ref().map(|webhook| WebhookMode { url: webhook.url(), secret: webhook.secret.clone() });
        Self {
            inner: Rc::new(Inner {
                id,
                api: BotApi::new(http, &settings.api_base_url, settings.bot_token.clone()),
                webhook,
                groups: settings.respond_in_groups,
                observe_unmentioned: settings.observe_unmentioned_group_messages,
                capabilities: Capabilities {
                    message_editing: true,
                    inline_buttons: true,
                    file_downloads: true,
                    max_text_length: MAX_TEXT,
                    max_buttons_per_message: 8,
                    max_button_rows: 4,
                    // Buttons carry short ids, so any Cloud token fits (each channel declares its own limits).
                    max_button_token_bytes: 1024,
                    max_file_bytes: 20 * 1024 * 1024,
                },
                bot: RefCell::new(None),
                buttons,
                open_callbacks: RefCell::new(VecDeque::new()),
                edits: Rc::new(EditPacer::new(edits::EDIT_INTERVAL, edits::EDIT_STATES)),
                migrated: RefCell::new(HashMap::new()),
                seen_updates: RefCell::new(RecentIds::default()),
                warnings: crate::logging::WarnLimiter::new(Duration::from_secs(60)),
                counters: EventCounters::new(COUNTERS),
                task: RefCell::new(None),
            }),
        }
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn webhook(&self) -> Option<&WebhookMode> {
        self.inner.webhook.as_ref()
    }

    pub(crate) fn api(&self) -> &BotApi {
        &self.inner.api
    }

    pub(crate) fn set_bot(&self, id: i64, username: Option<String>) {
        *self.inner.bot.borrow_mut() = Some((id, username));
    }

    /// Maps an update, turning a button's short id back into its interaction token. A press on a
    /// button whose id is no longer known is answered with a notice and not passed on.
    pub async fn map_update(&self, update: &Value) -> Option<InboundMessage> {
        let mut message = {
            let bot = self.inner.bot.borrow();
            let mapping = Mapping {
                provider_id: &self.inner.id,
                bot_id: bot.as_ref().map(|(id, _)| *id),
                bot_username: bot.as_ref().and_then(|(_, name)| name.as_deref()),
                groups: self.inner.groups,
                observe_unmentioned: self.inner.observe_unmentioned,
            };
            update::map_update(&mapping, update)?
        };
        if !self.map_press(&mut message).await {
            return None;
        }
        Some(message)
    }

    /// Webhook updates are de-duplicated by `update_id`; `true` when this one was seen before.
    pub fn seen_before(&self, update: &Value) -> bool {
        let Some(id) = update.get("update_id").and_then(Value::as_i64) else { return false };
        !self.inner.seen_updates.borrow_mut().insert(id)
    }

    /// After the pipeline: a button press is always answered, even when it failed.
    async fn answer_open_callback(&self, message: &InboundMessage) {
        if let Some(interaction) = &message.interaction {
            if self.inner.open_callbacks.borrow().iter().any(|p| p.callback_id == interaction.id) {
                self.answer_interaction(&interaction.id, "").await.ok();
            }
        }
    }

    fn resolve_chat(&self, chat: &str) -> String {
        self.inner.migrated.borrow().get(chat).cloned().unwrap_or_else(|| chat.to_owned())
    }

    async fn call(&self, method: &'static str, body: &Value) -> Result<Value, TelegramError> {
        let result = self.inner.api.call(method, body, CALL_TIMEOUT).await;
        match &result {
            Ok(_) if method == "sendMessage" => self.inner.counters.count("send"),
            Ok(_) if method == "editMessageText" => self.inner.counters.count("edit"),
            Err(error) if error.code() == Some(429) => self.inner.counters.count("rate_limited"),
            _ => {}
        }
        result
    }

    /// Sends one message body, following a group→supergroup migration once and falling back to
    /// plain text when Telegram cannot parse the HTML.
    async fn send_body(&self, chat: &str, mut body: Value, plain: &str) -> Result<Value, SendError> {
        let mut migrated = false;
        let mut fell_back = false;
        loop {
            match self.call("sendMessage", &body).await {
                Ok(result) => return Ok(result),
                Err(TelegramError::Api { migrate_to_chat_id: Some(new_chat), .. }) if !migrated => {
                    migrated = true;
                    let mut table = self.inner.migrated.borrow_mut();
                    // Migrations are rare; the bound only guards against a misbehaving server.
                    if table.len() < MIGRATED_CHATS {
                        table.insert(chat.to_owned(), new_chat.to_string());
                    }
                    drop(table);
                    body["chat_id"] = Value::from(new_chat);
                }
                Err(error)
                    if !fell_back
                        && error.code() == Some(400)
                        && error.description().contains("can't parse entities") =>
                {
                    fell_back = true;
                    self.log_plain_fallback(chat, error.description());
                    if let Some(object) = body.as_object_mut() {
                        object.remove("parse_mode");
                        object.insert("text".into(), Value::from(plain));
                    }
                }
                Err(error) => return Err(send_error(error)),
            }
        }
    }

    /// One info line when a reply goes out as plain text because Telegram refused its HTML; at
    /// most one a minute, with how many were held back since.
    fn log_plain_fallback(&self, chat: &str, reason: &str) {
        if let Some(suppressed) = self.inner.warnings.allow("plain_text_fallback", std::time::Instant::now()) {
            tracing::info!(
                provider = %self.inner.id,
                chat,
                reason = %crate::config::redact::redact_text(reason),
                suppressed,
                "Telegram refused the formatting of a reply; it was sent as plain text"
            );
        }
    }
}

#[async_trait(?Send)]
impl Channel for TelegramProvider {
    fn id(&self) -> &str {
        &self.inner.id
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    fn start(&self, context: ChannelContext) {
        // Started only once Telegram accepted the token (getMe): until then no delivery is claimed
        // for this bot. Receiving is healthy once polling (or the webhook) runs.
        context.health.starting("Telegram is starting: checking the bot token (getMe).".into());
        context.health.set_receiving(Some("Telegram is starting.".into()));
        *self.inner.task.borrow_mut() = Some(tokio::task::spawn_local(poll::run(self.clone(), context)));
    }

    fn stop(&self) {
        if let Some(task) = self.inner.task.borrow_mut().take() {
            task.abort();
        }
        self.inner.buttons.flush();
    }

    /// The header must carry the configured secret, checked before the body is read
    /// (upstream never checked it).
    fn check_webhook_headers(&self, headers: &http::HeaderMap) -> Result<(), WebhookError> {
        let Some(webhook) = self.webhook() else {
            return Err(WebhookError::new(WebhookErrorCode::NotFound, "Telegram webhook updates require webhook mode"));
        };
        let presented = headers.get("x-telegram-bot-api-secret-token").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !crate::util::ct::constant_time_equal(presented, webhook.secret.expose()) {
            return Err(WebhookError::new(WebhookErrorCode::Auth, "Telegram webhook secret verification failed"));
        }
        Ok(())
    }

    /// Updates are de-duplicated by `update_id` (the secret was checked from the headers).
    async fn handle_webhook(&self, request: WebhookRequest<'_>) -> Result<WebhookReply, WebhookError> {
        if self.seen_before(request.payload) {
            return Ok(WebhookReply::Ignored);
        }
        Ok(match self.map_update(request.payload).await {
            Some(message) => WebhookReply::Messages(vec![message]),
            None => WebhookReply::Ignored,
        })
    }

    async fn send_text(
        &self,
        target: &ChannelTarget,
        text: &str,
        options: &SendOptions,
    ) -> Result<SentMessage, SendError> {
        let chat = self.resolve_chat(&target.chat_id);
        let mut last = None;
        for chunk in html::chunk_html(&escape_text(text), MAX_TEXT) {
            let mut body = json!({"chat_id": chat_id(&chat), "text": chunk, "parse_mode": "HTML"});
            if let Some(thread) = thread_id(&target.chat_id, target.thread_id.as_deref()) {
                body["message_thread_id"] = Value::from(thread);
            }
            let result = self.send_body(&chat, body, &html::unescape(&chunk)).await?;
            last = result.get("message_id").and_then(Value::as_i64);
        }
        Ok(SentMessage {
            chat_id: self.resolve_chat(&target.chat_id),
            message_id: last.map(|m| m.to_string()).unwrap_or_default(),
            provider_delivery_id: options.delivery_id.clone(),
        })
    }

    /// Paced: at most one edit a second per message (see `edits`).
    async fn edit_text(&self, target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError> {
        crate::channel::pacing::paced_edit(self, target, message_id, text).await
    }

    async fn send_buttons(
        &self,
        target: &ChannelTarget,
        text: &str,
        rows: &[Vec<Button>],
    ) -> Result<SentMessage, SendError> {
        let tokens: Vec<&str> = rows.iter().flatten().map(|b| b.token.as_str()).collect();
        let mut ids = self.inner.buttons.issue(&tokens).1.into_iter();
        let keyboard: Vec<Vec<Value>> = rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|button| json!({"text": button.label, "callback_data": ids.next().unwrap_or_default()}))
                    .collect()
            })
            .collect();
        // What to type if the buttons stop working (a restart without a state directory): the
        // commands with the token, also repeated by an expired button's notice.
        let text = crate::providers::buttons::with_commands_line(text, rows, MAX_TEXT);
        let text = text.as_str();
        let chat = self.resolve_chat(&target.chat_id);
        let mut body = json!({"chat_id": chat_id(&chat), "text": escape_text(text), "parse_mode": "HTML", "reply_markup": {"inline_keyboard": keyboard}});
        if let Some(thread) = thread_id(&target.chat_id, target.thread_id.as_deref()) {
            body["message_thread_id"] = Value::from(thread);
        }
        let result = self.send_body(&chat, body, text).await?;
        Ok(SentMessage {
            chat_id: self.resolve_chat(&target.chat_id),
            message_id: result.get("message_id").and_then(Value::as_i64).map(|m| m.to_string()).unwrap_or_default(),
            provider_delivery_id: None,
        })
    }

    /// `sendDocument` with the file as a multipart upload.
    async fn send_file(&self, target: &ChannelTarget, filename: &str, data: &[u8]) -> Result<SentMessage, SendError> {
        let chat = self.resolve_chat(&target.chat_id);
        let mut fields = vec![("chat_id", chat.clone())];
        if let Some(thread) = thread_id(&target.chat_id, target.thread_id.as_deref()) {
            fields.push(("message_thread_id", thread.to_string()));
        }
        let result = self
            .inner
            .api
            .call_with_file("sendDocument", &fields, ("document", filename, data), Duration::from_secs(120))
            .await
            .map_err(send_error)?;
        self.inner.counters.count("send");
        Ok(SentMessage {
            chat_id: chat,
            message_id: result.get("message_id").and_then(Value::as_i64).map(|m| m.to_string()).unwrap_or_default(),
            provider_delivery_id: None,
        })
    }

    /// `answerCallbackQuery`, only for callback queries this provider received (a text command's
    /// id is a message id, which Telegram would reject).
    async fn answer_interaction(&self, interaction_id: &str, text: &str) -> Result<(), SendError> {
        let press = {
            let mut open = self.inner.open_callbacks.borrow_mut();
            let index = open.iter().position(|p| p.callback_id == interaction_id);
            index.and_then(|i| open.remove(i))
        };
        let Some(press) = press else { return Ok(()) };
        let mut body = json!({"callback_query_id": interaction_id});
        if !text.is_empty() {
            body["text"] = Value::from(text);
        }
        let answered = self.call("answerCallbackQuery", &body).await.map(drop).map_err(send_error);
        // Only a decision the pipeline acknowledges carries an outcome; a bare answer does not.
        if !text.is_empty() && press.message.is_some() {
            self.show_outcome(&press, text).await;
        }
        answered
    }

    async fn after_inbound(&self, message: &InboundMessage, succeeded: bool) {
        if !succeeded {
            // A webhook update whose handling failed is forgotten, so Telegram's retry is processed.
            if let Some(update_id) = message.provider_event_id.as_deref().and_then(|id| id.parse().ok()) {
                self.inner.seen_updates.borrow_mut().forget(update_id);
            }
        }
        self.answer_open_callback(message).await;
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.inner.counters.snapshot()
    }
}

/// The last [`SEEN_UPDATES`] update ids: a queue for their age, a set for lookups.
#[derive(Default)]
struct RecentIds {
    order: VecDeque<i64>,
    lookup: std::collections::HashSet<i64>,
}

impl RecentIds {
    /// Adds `id`; `false` when it was already there.
    fn insert(&mut self, id: i64) -> bool {
        if !self.lookup.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > SEEN_UPDATES {
            if let Some(oldest) = self.order.pop_front() {
                self.lookup.remove(&oldest);
            }
        }
        true
    }

    fn forget(&mut self, id: i64) {
        if self.lookup.remove(&id) {
            self.order.retain(|seen| *seen != id);
        }
    }
}

/// Bot API errors for the dispatcher and the renderer.
pub fn send_error(error: TelegramError) -> SendError {
    let message = error.to_string();
    let kind = match &error {
        TelegramError::Api { code: 429, retry_after, .. } => {
            SendErrorKind::RateLimited(Duration::from_secs(retry_after.unwrap_or(3)))
        }
        TelegramError::Api { code: 403, .. } => SendErrorKind::Permanent,
        TelegramError::Api { code: 400, description, .. } if description.contains("chat not found") => {
            SendErrorKind::Permanent
        }
        error if error.is_transient() => SendErrorKind::Transient,
        _ => SendErrorKind::Permanent,
    };
    SendError { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, description: &str, retry_after: Option<u64>) -> TelegramError {
        TelegramError::Api {
            method: "sendMessage",
            code,
            description: description.into(),
            retry_after,
            migrate_to_chat_id: None,
        }
    }

    #[test]
    fn error_mapping() {
        assert_eq!(
            send_error(api_error(403, "Forbidden: bot was blocked by the user", None)).kind,
            SendErrorKind::Permanent
        );
        assert_eq!(send_error(api_error(400, "Bad Request: chat not found", None)).kind, SendErrorKind::Permanent);
        assert_eq!(
            send_error(api_error(429, "Too Many Requests: retry after 7", Some(7))).kind,
            SendErrorKind::RateLimited(Duration::from_secs(7))
        );
        assert_eq!(send_error(api_error(502, "Bad Gateway", None)).kind, SendErrorKind::Transient);
        assert_eq!(send_error(TelegramError::Network { method: "sendMessage" }).kind, SendErrorKind::Transient);
        assert_eq!(
            send_error(api_error(400, "Bad Request: message text is empty", None)).kind,
            SendErrorKind::Permanent
        );
    }
}
