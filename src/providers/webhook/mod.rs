//! The generic webhook and the Discord, WhatsApp and Signal bridges (docs/webhook-protocol.md): one
//! implementation with per-kind capabilities. A trusted relay posts normalised messages signed
//! with the shared secret to `POST /webhooks/<id>`; the gateway posts every outbound operation,
//! signed the same way, to the relay's `deliveryUrl` behind the outbound URL policy. There is no
//! native Discord, Meta or signal-cli protocol here: the relay verifies the platform first.

pub mod buttons;
pub mod delivery;
pub mod doctor;
pub mod kind;
pub mod payload;
pub mod signature;

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use smol_str::SmolStr;

use crate::channel::{
    async_trait, Button, Capabilities, Channel, ChannelTarget, EventCounters, InboundMessage, SendError, SendOptions,
    SentMessage, WebhookError, WebhookErrorCode, WebhookReply, WebhookRequest,
};
use crate::config::providers::webhook::WebhookSettings;
use crate::config::{ProviderKind, Secret};
use crate::net::url_policy::Resolver;
use crate::util::recent::Recent;
use delivery::{DeliveryError, Outbound};
use signature::{ReplayCache, ReplayClaim, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Replay-cache caps: overall, and per chat (or thread) scope.
const REPLAY_GLOBAL_CAP: usize = 5000;
const REPLAY_SCOPE_CAP: usize = 1000;
/// Claims kept for releasing after a failed inbound run; older ones simply stay until they expire.
const OPEN_CLAIMS: usize = 1024;

/// The longest token a button may be given; what the relay sees is a short id.
const MAX_BUTTON_TOKEN_BYTES: usize = 1024;
/// The relay's limit for the token of a button on the wire.
const WIRE_TOKEN_BYTES: usize = 64;

/// The names of [`WebhookProvider`]'s counters, as metric `event` labels.
pub const COUNTERS: [&str; 4] = ["inbound", "rejected", "sent", "failed"];

/// The capabilities of a kind, with `maxFileBytes` capped by the attachment setting.
pub fn capabilities(kind: ProviderKind, max_attachment_bytes: usize) -> Capabilities {
    // (editing, buttons, file_downloads, text, buttons/rows, file bytes)
    let (editing, buttons, files, text, limits, file_bytes) = match kind.as_str() {
        "discord" => (true, true, true, 2000, (25, 5), 8_388_608),
        "whatsapp" => (false, true, true, 4096, (3, 1), 16_777_216),
        "signal" => (false, false, true, 4096, (8, 4), 104_857_600),
        _ => (true, true, false, 4096, (8, 4), 26_214_400),
    };
    let max_file_bytes = if max_attachment_bytes > 0 { file_bytes.min(max_attachment_bytes) } else { file_bytes };
    Capabilities {
        message_editing: editing,
        inline_buttons: buttons,
        file_downloads: files,
        max_text_length: text,
        max_buttons_per_message: limits.0,
        max_button_rows: limits.1,
        // Buttons carry short ids (`buttons.rs`), so any Cloud token fits the relay's 64 bytes.
        max_button_token_bytes: MAX_BUTTON_TOKEN_BYTES,
        max_file_bytes,
    }
}

/// A target as the relay receives it, keys in upstream's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireTarget {
    provider: SmolStr,
    provider_kind: &'static str,
    chat_id: String,
    is_direct: bool,
    thread_id: Option<String>,
    user_id: Option<String>,
    /// Always null: a new message replies to nothing, and an edit names its message in the
    /// operation's own `messageId`. Kept so the relay sees the documented shape.
    message_id: Option<String>,
}

/// The envelope every outbound body starts with; the operation's fields follow it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, T: Serialize> {
    delivery_id: &'a str,
    idempotency_key: &'a str,
    provider: &'a str,
    provider_instance_id: &'a str,
    provider_kind: &'a str,
    #[serde(flatten)]
    operation: T,
}

#[derive(Serialize)]
struct TextOperation<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    target: &'a WireTarget,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<&'a SendOptions>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EditOperation<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    target: &'a WireTarget,
    message_id: &'a str,
    text: &'a str,
}

#[derive(Serialize)]
struct WireButton<'a> {
    label: &'a str,
    token: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    style: &'a str,
}

#[derive(Serialize)]
struct ButtonsOperation<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    target: &'a WireTarget,
    text: &'a str,
    buttons: Vec<Vec<WireButton<'a>>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireFile<'a> {
    filename: &'a str,
    data_base64: String,
}

#[derive(Serialize)]
struct FileOperation<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    target: &'a WireTarget,
    file: WireFile<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AnswerOperation<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    interaction_id: &'a str,
    text: &'a str,
}

struct Inner {
    id: SmolStr,
    kind: ProviderKind,
    secret: Secret,
    max_attachment_bytes: usize,
    capabilities: Capabilities,
    outbound: Outbound,
    replay: RefCell<ReplayCache>,
    /// Replay claims of messages still in the inbound pipeline, by message id.
    open_claims: RefCell<Recent<ReplayClaim>>,
    buttons: buttons::BridgeButtons,
    counters: EventCounters<{ COUNTERS.len() }>,
}

/// A webhook or bridge channel. Cheap to clone (shared state).
#[derive(Clone)]
pub struct WebhookProvider {
    inner: Rc<Inner>,
}

fn bad(error: String) -> SendError {
    SendError::permanent(error)
}

impl WebhookProvider {
    /// `resolver` answers the per-attempt DNS lookups (the system resolver in the daemon);
    /// `context.state_dir` keeps the button ids across restarts, `context.ca_file` is trusted
    /// for the delivery URL besides the public roots, and `context.webhook_delivery_timeout`
    /// bounds each attempt.
    pub fn new(
        id: SmolStr,
        settings: &WebhookSettings,
        resolver: Rc<dyn Resolver>,
        context: &crate::providers::BuildContext,
    ) -> Result<Self, String> {
        let state_dir = context.state_dir.as_deref();
        let buttons_file = state_dir.map(|dir| dir.join(format!("webhook-{id}-buttons.json")));
        if settings.policy.allow_private {
            tracing::warn!(provider = %id, "allowPrivateDelivery is on: deliveries may reach private and reserved addresses");
        }
        let timeout = Some(context.webhook_delivery_timeout).filter(|t| !t.is_zero());
        let mut outbound = Outbound::new(
            settings.delivery_url.clone(),
            settings.policy.clone(),
            settings.shared_secret.clone(),
            resolver,
            timeout.unwrap_or(delivery::DEFAULT_TIMEOUT),
        )?;
        if let Some(ca_file) = &context.ca_file {
            outbound.trust_ca_file(ca_file)?;
        }
        Ok(Self {
            inner: Rc::new(Inner {
                id,
                kind: settings.kind,
                secret: settings.shared_secret.clone(),
                max_attachment_bytes: settings.max_attachment_bytes,
                capabilities: capabilities(settings.kind, settings.max_attachment_bytes),
                outbound,
                replay: RefCell::new(ReplayCache::new(REPLAY_GLOBAL_CAP, REPLAY_SCOPE_CAP)),
                open_claims: RefCell::new(Recent::new(OPEN_CLAIMS)),
                buttons: buttons::BridgeButtons::open(buttons_file.as_deref()),
                counters: EventCounters::new(COUNTERS),
            }),
        })
    }

    /// Signature, timestamp window, replay refusal, then the payload mapping, over a request
    /// already within the body cap.
    pub fn verify_and_map(&self, request: &WebhookRequest<'_>) -> Result<(InboundMessage, ReplayClaim), WebhookError> {
        let auth = |detail: &str| {
            self.inner.counters.count("rejected");
            WebhookError::new(WebhookErrorCode::Auth, detail)
        };
        let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
        let (timestamp, signature_value) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER));
        signature::verify(
            self.inner.secret.expose(),
            timestamp,
            signature_value,
            request.raw_body.as_bytes(),
            request.received_at_ms,
        )
        .map_err(auth)?;
        let target = request.payload.get("target");
        let segment = |key: &str| target.and_then(|t| t.get(key)).and_then(Value::as_str).filter(|s| !s.is_empty());
        let scope = match (segment("chatId"), segment("threadId")) {
            (Some(chat), Some(thread)) => {
                format!("{}:{}:{}", self.inner.id, signature::scope_segment(chat), signature::scope_segment(thread))
            }
            (Some(chat), None) => format!("{}:{}", self.inner.id, signature::scope_segment(chat)),
            _ => self.inner.id.to_string(),
        };
        let key = format!("{}:{}", timestamp.unwrap_or_default(), signature_value.unwrap_or_default());
        let claim = self
            .inner
            .replay
            .borrow_mut()
            .claim(key, scope, request.received_at_ms)
            .ok_or_else(|| auth("Webhook signature replay rejected"))?;
        let mapping = payload::Mapping {
            provider_id: &self.inner.id,
            kind: self.inner.kind.as_str(),
            max_attachment_bytes: self.inner.max_attachment_bytes,
            now_ms: request.received_at_ms,
        };
        match payload::map_payload(&mapping, request.payload) {
            Ok(message) => Ok((message, claim)),
            Err(detail) => {
                // A mapping error is the relay's mistake (400, not upstream's 502); the signed request may be
                // corrected and re-signed, and the exact replay stays refused.
                self.inner.counters.count("rejected");
                Err(WebhookError::new(WebhookErrorCode::Payload, detail))
            }
        }
    }

    /// Verifies and maps one request, answering a press that needs no Cloud call itself.
    fn accept(&self, request: &WebhookRequest<'_>) -> Result<WebhookReply, WebhookError> {
        let (mut message, claim) = self.verify_and_map(request)?;
        self.inner.counters.count("inbound");
        if let buttons::Press::Notice(notice) = self.inner.buttons.press(&mut message) {
            // Sent after the answer: the relay's request does not wait for its own delivery URL.
            if let Some(interaction) = message.interaction {
                let this = self.clone();
                tokio::task::spawn_local(async move {
                    if let Err(error) = this.answer_interaction(&interaction.id, &notice).await {
                        tracing::debug!(provider = %this.inner.id, error = %crate::config::redact::Redacted(&error), "a button notice was not delivered");
                    }
                });
            }
            return Ok(WebhookReply::Ignored);
        }
        self.inner.open_claims.borrow_mut().remember(message.id.clone(), claim);
        Ok(WebhookReply::Messages(vec![message]))
    }

    fn wire_target(&self, target: &ChannelTarget) -> Result<WireTarget, SendError> {
        if target.provider != self.inner.id {
            return Err(bad(format!(
                "Webhook bridge {} cannot deliver target for provider {}",
                self.inner.id, target.provider
            )));
        }
        let field = |value: &Option<String>, name: &str| {
            payload::clean(
                value.as_ref().map(|v| Value::from(v.as_str())).as_ref(),
                &format!("Webhook delivery target.{name}"),
                512,
            )
            .map_err(bad)
        };
        let chat_id =
            payload::clean(Some(&Value::from(target.chat_id.as_str())), "Webhook delivery target.chatId", 512)
                .map_err(bad)?
                .ok_or_else(|| bad("Webhook delivery target.chatId is required".into()))?;
        Ok(WireTarget {
            provider: self.inner.id.clone(),
            provider_kind: self.inner.kind.as_str(),
            is_direct: target.is_direct == Some(true),
            // Only what the relay gave: a chat without a thread is not its own thread, and a
            // new message is not a reply to the last one the gateway sent there.
            thread_id: field(&target.thread_id, "threadId")?.filter(|thread| *thread != chat_id),
            user_id: field(&target.user_id, "userId")?,
            message_id: None,
            chat_id,
        })
    }

    fn check_text(&self, text: &str) -> Result<(), SendError> {
        let max = self.inner.capabilities.max_text_length;
        if text.encode_utf16().count() > max {
            return Err(bad(format!("{} bridge text exceeds maxTextLength {max}", self.inner.id)));
        }
        Ok(())
    }

    /// Serialises `operation` in its envelope and posts it; returns the relay's message id.
    async fn post<T: Serialize>(&self, delivery_id: &str, operation: T) -> Result<String, SendError> {
        let envelope = Envelope {
            delivery_id,
            idempotency_key: delivery_id,
            provider: &self.inner.id,
            provider_instance_id: &self.inner.id,
            provider_kind: self.inner.kind.as_str(),
            operation,
        };
        let body = serde_json::to_vec(&envelope).map_err(|e| bad(e.to_string()))?;
        let answer = match self.inner.outbound.deliver(Bytes::from(body), delivery_id).await {
            Ok(answer) => answer,
            Err(error) => {
                self.inner.counters.count("failed");
                if let DeliveryError::Policy(_) = error {
                    tracing::warn!(provider = %self.inner.id, error = %error, "webhook delivery refused by the URL policy");
                }
                return Err(error.into_send_error());
            }
        };
        self.inner.counters.count("sent");
        let message_id = payload::clean(answer.get("messageId"), "Webhook delivery response.messageId", 512)
            .map_err(bad)?
            .unwrap_or_else(crate::util::ids::random_id);
        Ok(message_id)
    }

    fn delivery_id(options: Option<&SendOptions>) -> Result<String, SendError> {
        let given = options.and_then(|o| o.delivery_id.as_deref()).map(Value::from);
        Ok(payload::clean(given.as_ref(), "Webhook delivery options.deliveryId", 512)
            .map_err(bad)?
            .unwrap_or_else(crate::util::ids::random_id))
    }

    /// After a decision: the message's buttons are settled, and an editing bridge gets its text
    /// with the outcome in place of the buttons. A failed edit leaves the buttons, which then
    /// answer "already answered": the decision itself is done.
    async fn show_outcome(&self, interaction_id: &str, outcome: &str) {
        let Some(sent) = self.inner.buttons.settle(interaction_id, outcome) else { return };
        if !self.inner.capabilities.message_editing {
            return;
        }
        let text = format!("{}\n\n\u{2713} {outcome}", sent.text);
        if let Err(error) = self.edit_text(&sent.target, &sent.message_id, &text).await {
            tracing::debug!(provider = %self.inner.id, error = %crate::config::redact::Redacted(&error), "the decided buttons were not replaced");
        }
    }
}

#[async_trait(?Send)]
impl Channel for WebhookProvider {
    fn id(&self) -> &str {
        &self.inner.id
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    fn stop(&self) {
        self.inner.buttons.flush();
    }

    /// The signature covers the body, so nothing can be decided from the headers alone except
    /// that both signature headers are there.
    fn check_webhook_headers(&self, headers: &http::HeaderMap) -> Result<(), WebhookError> {
        if headers.get(TIMESTAMP_HEADER).is_none() || headers.get(SIGNATURE_HEADER).is_none() {
            self.inner.counters.count("rejected");
            return Err(WebhookError::new(
                WebhookErrorCode::Auth,
                "Webhook timestamp signature is required for ingress",
            ));
        }
        Ok(())
    }

    /// A press on a decided or expired button is answered here and goes no further.
    async fn handle_webhook(&self, request: WebhookRequest<'_>) -> Result<WebhookReply, WebhookError> {
        self.accept(&request)
    }

    async fn send_text(
        &self,
        target: &ChannelTarget,
        text: &str,
        options: &SendOptions,
    ) -> Result<SentMessage, SendError> {
        self.check_text(text)?;
        let wire = self.wire_target(target)?;
        let delivery_id = Self::delivery_id(Some(options))?;
        // The dispatcher already split a long delivery into `<deliveryId>:chunk:<n>` sends, each
        // within maxTextLength; this is one request per call, never a second chunking.
        let given = options.delivery_id.is_some().then_some(options);
        let message_id =
            self.post(&delivery_id, TextOperation { kind: "text", target: &wire, text, options: given }).await?;
        Ok(SentMessage { chat_id: wire.chat_id, message_id, provider_delivery_id: Some(delivery_id) })
    }

    async fn edit_text(&self, target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError> {
        self.check_text(text)?;
        if !self.inner.capabilities.message_editing {
            return Err(bad(format!("{} bridge does not support message editing", self.inner.id)));
        }
        let wire = self.wire_target(target)?;
        let message_id = payload::clean(Some(&Value::from(message_id)), "Webhook delivery messageId", 512)
            .map_err(bad)?
            .ok_or_else(|| bad("Webhook delivery messageId is required".into()))?;
        let delivery_id = Self::delivery_id(None)?;
        self.post(&delivery_id, EditOperation { kind: "edit", target: &wire, message_id: &message_id, text })
            .await
            .map(drop)
    }

    async fn send_buttons(
        &self,
        target: &ChannelTarget,
        text: &str,
        rows: &[Vec<Button>],
    ) -> Result<SentMessage, SendError> {
        let caps = &self.inner.capabilities;
        if !caps.inline_buttons {
            return Err(bad(format!("{} bridge does not support inline buttons", self.inner.id)));
        }
        self.check_text(text)?;
        if rows.len() > caps.max_button_rows {
            return Err(bad(format!("Webhook buttons exceed maxButtonRowsPerMessage {}", caps.max_button_rows)));
        }
        if rows.iter().map(Vec::len).sum::<usize>() > caps.max_buttons_per_message {
            return Err(bad(format!("Webhook buttons exceed maxButtonsPerMessage {}", caps.max_buttons_per_message)));
        }
        for button in rows.iter().flatten() {
            if button.label.trim().is_empty() {
                return Err(bad("Webhook button label cannot be empty".into()));
            }
            if button.token.is_empty() {
                return Err(bad("Webhook button token cannot be empty".into()));
            }
            if button.token.chars().any(|c| (c as u32) < 0x20 || c as u32 == 0x7f) {
                return Err(bad("Webhook button token cannot contain control characters".into()));
            }
            if button.token.len() > caps.max_button_token_bytes {
                return Err(bad(format!(
                    "Webhook button token exceeds maxButtonTokenBytes {}",
                    caps.max_button_token_bytes
                )));
            }
        }
        let wire = self.wire_target(target)?;
        let delivery_id = Self::delivery_id(None)?;
        let (number, short) = self.inner.buttons.issue(rows);
        if short.iter().flatten().any(|b| b.token.len() > WIRE_TOKEN_BYTES) {
            return Err(bad(format!("Webhook button token cannot exceed {WIRE_TOKEN_BYTES} bytes")));
        }
        let buttons = short
            .iter()
            .map(|row| row.iter().map(|b| WireButton { label: &b.label, token: &b.token, style: b.style }).collect())
            .collect();
        // What to type if the buttons stop working (an expired button points at this line); the
        // decided message is edited back to the text without it.
        let shown = crate::providers::buttons::with_commands_line(text, rows, caps.max_text_length);
        let message_id =
            self.post(&delivery_id, ButtonsOperation { kind: "buttons", target: &wire, text: &shown, buttons }).await?;
        self.inner.buttons.sent(buttons::SentButtons {
            message: number,
            target: target.clone(),
            message_id: message_id.clone(),
            text: text.to_owned(),
        });
        Ok(SentMessage { chat_id: wire.chat_id, message_id, provider_delivery_id: Some(delivery_id) })
    }

    async fn send_file(&self, target: &ChannelTarget, filename: &str, data: &[u8]) -> Result<SentMessage, SendError> {
        let max = self.inner.capabilities.max_file_bytes;
        if data.len() > max {
            return Err(bad(format!("{} bridge file exceeds maxFileBytes {max}", self.inner.id)));
        }
        let wire = self.wire_target(target)?;
        let filename = payload::clean(Some(&Value::from(filename)), "Webhook delivery file.filename", 255)
            .map_err(bad)?
            .ok_or_else(|| bad("Webhook delivery file.filename is required".into()))?;
        let delivery_id = Self::delivery_id(None)?;
        let file = WireFile { filename: &filename, data_base64: crate::util::base64::encode_standard(data) };
        let message_id = self.post(&delivery_id, FileOperation { kind: "file", target: &wire, file }).await?;
        Ok(SentMessage { chat_id: wire.chat_id, message_id, provider_delivery_id: Some(delivery_id) })
    }

    async fn answer_interaction(&self, interaction_id: &str, text: &str) -> Result<(), SendError> {
        let interaction_id = payload::clean(Some(&Value::from(interaction_id)), "Webhook interaction response id", 512)
            .map_err(bad)?
            .ok_or_else(|| bad("Webhook interaction response id is required".into()))?;
        let delivery_id = Self::delivery_id(None)?;
        self.post(&delivery_id, AnswerOperation { kind: "answer_interaction", interaction_id: &interaction_id, text })
            .await?;
        if !text.is_empty() {
            self.show_outcome(&interaction_id, text).await;
        }
        Ok(())
    }

    /// A message whose processing failed gives up its replay claim, so the relay can retry the
    /// very same signed request inside the window.
    async fn after_inbound(&self, message: &InboundMessage, succeeded: bool) {
        let claim = self.inner.open_claims.borrow_mut().take(&message.id);
        if let Some(claim) = claim.filter(|_| !succeeded) {
            self.inner.replay.borrow_mut().release(&claim);
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.inner.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::url_policy::{check_delivery_url, ResolveError, UrlPolicy};
    use std::net::IpAddr;

    fn kind(name: &str) -> ProviderKind {
        ProviderKind::parse(crate::providers::KINDS, name).unwrap()
    }

    /// A resolver for validation tests: these operations must fail before any lookup.
    struct NoLookups;

    #[async_trait(?Send)]
    impl Resolver for NoLookups {
        async fn resolve(&self, host: &str, _: u16) -> Result<Vec<IpAddr>, ResolveError> {
            panic!("no lookup expected, got {host}")
        }
    }

    fn provider(kind: ProviderKind) -> WebhookProvider {
        let settings = WebhookSettings {
            kind,
            shared_secret: Secret::new("s"),
            delivery_url: check_delivery_url("https://relay.example.com/in", &UrlPolicy::default()).unwrap(),
            policy: UrlPolicy::default(),
            max_attachment_bytes: 1024,
        };
        let context = crate::providers::BuildContext::default();
        WebhookProvider::new(kind.as_str().into(), &settings, Rc::new(NoLookups), &context).unwrap()
    }

    fn target(kind: ProviderKind) -> ChannelTarget {
        ChannelTarget { provider: kind.as_str().into(), chat_id: "c".into(), ..ChannelTarget::default() }
    }

    fn button(token: &str) -> Button {
        Button { label: "Go".into(), token: token.into(), style: "" }
    }

    #[test]
    fn bridge_capabilities_follow_the_table() {
        let discord = capabilities(kind("discord"), 1 << 30);
        assert_eq!((discord.max_text_length, discord.max_buttons_per_message, discord.max_button_rows), (2000, 25, 5));
        assert_eq!(discord.max_file_bytes, 8_388_608);
        let whatsapp = capabilities(kind("whatsapp"), 1024);
        assert!(!whatsapp.message_editing && whatsapp.inline_buttons);
        assert_eq!((whatsapp.max_buttons_per_message, whatsapp.max_button_rows, whatsapp.max_file_bytes), (3, 1, 1024));
        let signal = capabilities(kind("signal"), 1024);
        assert!(!signal.inline_buttons && !signal.message_editing && signal.file_downloads);
        let webhook = capabilities(kind("webhook"), 1024);
        assert!(webhook.message_editing && !webhook.file_downloads);
    }

    #[tokio::test]
    async fn validation_fails_before_any_request() {
        let signal = provider(kind("signal"));
        let error = signal.send_buttons(&target(kind("signal")), "x", &[vec![button("t")]]).await.unwrap_err();
        assert_eq!(error.message, "signal bridge does not support inline buttons");
        let error = signal.edit_text(&target(kind("signal")), "1", "x").await.unwrap_err();
        assert_eq!(error.message, "signal bridge does not support message editing");
        let whatsapp = provider(kind("whatsapp"));
        let rows = [vec![button("a")], vec![button("b")]];
        let error = whatsapp.send_buttons(&target(kind("whatsapp")), "x", &rows).await.unwrap_err();
        assert_eq!(error.message, "Webhook buttons exceed maxButtonRowsPerMessage 1");
        let error = whatsapp
            .send_buttons(&target(kind("whatsapp")), "x", &[vec![button(&"t".repeat(1025))]])
            .await
            .unwrap_err();
        assert_eq!(error.message, "Webhook button token exceeds maxButtonTokenBytes 1024");
        let discord = provider(kind("discord"));
        let error = discord.send_text(&target(kind("discord")), &"x".repeat(2001), &SendOptions::default()).await;
        assert_eq!(error.unwrap_err().message, "discord bridge text exceeds maxTextLength 2000");
        let error = discord.send_file(&target(kind("discord")), "f", &[0; 1025]).await.unwrap_err();
        assert_eq!(error.message, "discord bridge file exceeds maxFileBytes 1024");
        let blank = ChannelTarget { chat_id: " ".into(), ..target(kind("discord")) };
        let error = discord.send_text(&blank, "x", &SendOptions::default()).await.unwrap_err();
        assert_eq!(error.message, "Webhook delivery target.chatId is required");
        assert!(error.kind == crate::channel::SendErrorKind::Permanent);
    }

    /// A resolver that never answers: the attempt's timeout covers DNS, and no request is made.
    struct Silent;

    #[async_trait(?Send)]
    impl Resolver for Silent {
        async fn resolve(&self, _: &str, _: u16) -> Result<Vec<IpAddr>, ResolveError> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_resolver_that_never_answers_times_out() {
        let url = check_delivery_url("https://relay.example.com/in", &UrlPolicy::default()).unwrap();
        let timeout = std::time::Duration::from_millis(100);
        let outbound = Outbound::new(url, UrlPolicy::default(), Secret::new("s"), Rc::new(Silent), timeout).unwrap();
        let error = outbound.deliver(Bytes::from_static(b"{}"), "d").await.unwrap_err();
        assert_eq!(error.to_string(), "Webhook delivery timed out after 100ms");
        assert_eq!(error.into_send_error().kind, crate::channel::SendErrorKind::Transient);
    }
}
