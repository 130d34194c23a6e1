//! E-mail: a mail relay (an MTA pipe, an inbound-parse service) posts each received mail as JSON to
//! `POST /webhooks/<id>` with the shared secret in a header; the secret is checked before the body
//! is read (the headers are its only source; upstream never checked it). A mail becomes one prompt,
//! claimed in Cloud by its stable `Message-ID` and bound to the session of its thread; the relay
//! posting the same mail again is answered 202 without a second prompt (upstream answered 401 and
//! counted it as a failed login). Replies go out over SMTP with lettre (`outbound.rs`), threaded
//! with `In-Reply-To`/`References`. Email has no buttons and takes no files, so the renderer falls
//! back to text commands and artifact links.

pub mod doctor;
pub mod inbound;
pub mod kind;
pub mod outbound;
mod threading;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use smol_str::SmolStr;

use crate::channel::{
    async_trait, Capabilities, Channel, ChannelContext, ChannelTarget, EventCounters, InboundMessage, SendError,
    SendOptions, SentMessage, WebhookError, WebhookErrorCode, WebhookReply, WebhookRequest,
};
use crate::config::providers::email::EmailSettings;
use crate::config::Secret;
use outbound::Smtp;

/// E-mail's declared `maxTextLength` (as upstream); the core chunks to it.
pub const MAX_TEXT: usize = 20_000;
/// How long a message id is remembered.
const REPLAY_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;
/// At most this many remembered message ids; the oldest is forgotten first.
const REPLAY_CAP: usize = 5000;

/// The names of [`EmailProvider::counters`], as metric `event` labels.
pub const COUNTERS: [&str; 5] = ["mail", "duplicate", "secret_rejected", "sent", "send_failed"];

/// Message ids seen in the last 24 h, in arrival order, bounded.
#[derive(Default)]
struct ReplayCache {
    expiry: HashMap<String, u64>,
    order: VecDeque<(String, u64)>,
}

impl ReplayCache {
    /// Remembers `id`; `false` when it was already there (a duplicate delivery by the relay).
    fn remember(&mut self, id: &str, now_ms: u64) -> bool {
        while let Some((old, expires)) = self.order.front() {
            if *expires > now_ms {
                break;
            }
            if self.expiry.get(old) == Some(expires) {
                self.expiry.remove(old);
            }
            self.order.pop_front();
        }
        if self.expiry.get(id).is_some_and(|expires| *expires > now_ms) {
            return false;
        }
        let expires = now_ms + REPLAY_WINDOW_MS;
        self.expiry.insert(id.to_owned(), expires);
        self.order.push_back((id.to_owned(), expires));
        // The order queue bounds both maps (released ids leave stale entries in it).
        while self.order.len() > REPLAY_CAP {
            let Some((old, expires)) = self.order.pop_front() else { break };
            if self.expiry.get(&old) == Some(&expires) {
                self.expiry.remove(&old);
            }
        }
        true
    }

    /// Forgets `id`, so the relay's retry of a mail the pipeline failed on gets through.
    fn release(&mut self, id: &str) {
        self.expiry.remove(id);
    }
}

struct Inner {
    id: SmolStr,
    inbound_secret: Secret,
    subject: String,
    max_file_bytes: usize,
    /// Logged at start: plain SMTP to a non-loopback host was allowed explicitly.
    plaintext_warning: Option<String>,
    smtp: Smtp,
    capabilities: Capabilities,
    replays: RefCell<ReplayCache>,
    /// The last inbound mail of each recent conversation, for threading replies.
    conversations: RefCell<threading::Conversations>,
    counters: EventCounters<{ COUNTERS.len() }>,
}

/// A configured mailbox. Cheap to clone (shared state).
#[derive(Clone)]
pub struct EmailProvider {
    inner: Rc<Inner>,
}

impl EmailProvider {
    /// Builds the SMTP transport (no connection yet); fails on an unusable `from` or CA file.
    pub fn new(id: SmolStr, settings: &EmailSettings) -> Result<Self, String> {
        let smtp = Smtp::new(settings)?;
        let loopback = crate::config::urls::is_loopback_host(&settings.smtp_host);
        // With credentials TLS is always required (see `Smtp::new`), so only then is there no risk.
        let may_be_plain =
            settings.allow_plaintext && !loopback && !settings.smtp_secure && settings.smtp_username.is_none();
        let plaintext_warning = may_be_plain.then(|| {
            format!(
                "SMTP to {} may run without TLS (smtpAllowPlaintext): replies cross the network in clear text \
                 when the server offers no STARTTLS.",
                settings.smtp_host
            )
        });
        let mut capabilities = Capabilities::text_only(MAX_TEXT);
        capabilities.max_file_bytes = settings.max_file_bytes;
        Ok(Self {
            inner: Rc::new(Inner {
                id,
                inbound_secret: settings.inbound_secret.clone(),
                subject: settings.subject.clone(),
                max_file_bytes: settings.max_file_bytes,
                plaintext_warning,
                smtp,
                capabilities,
                replays: RefCell::new(ReplayCache::default()),
                conversations: RefCell::new(threading::Conversations::default()),
                counters: EventCounters::new(COUNTERS),
            }),
        })
    }

    /// Maps, then remembers the message id (a duplicate is accepted, not claimed).
    fn map(&self, request: &WebhookRequest<'_>) -> Result<WebhookReply, WebhookError> {
        let mapped = inbound::map(&self.inner.id, request.payload, self.inner.max_file_bytes, request.received_at_ms)
            .map_err(|detail| WebhookError::new(WebhookErrorCode::Payload, detail))?;
        let Some(message) = mapped else { return Ok(WebhookReply::Ignored) };
        if !self.inner.replays.borrow_mut().remember(&message.id, request.received_at_ms) {
            self.inner.counters.count("duplicate");
            return Ok(WebhookReply::Ignored);
        }
        self.inner.counters.count("mail");
        if let Some(thread) = &message.target.thread_id {
            self.inner.conversations.borrow_mut().remember(
                &message.target.chat_id,
                thread,
                request.payload,
                &message.id,
            );
        }
        Ok(WebhookReply::Messages(vec![message]))
    }
}

#[async_trait(?Send)]
impl Channel for EmailProvider {
    fn id(&self) -> &str {
        &self.inner.id
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// Nothing runs in the background: mail arrives by webhook, SMTP connects per reply.
    fn start(&self, context: ChannelContext) {
        if let Some(warning) = &self.inner.plaintext_warning {
            tracing::warn!(provider = %self.inner.id, "{warning}");
        }
        context.health.set_both(None);
    }

    /// The secret is a header, so a wrong one costs no body read.
    fn check_webhook_headers(&self, headers: &http::HeaderMap) -> Result<(), WebhookError> {
        let presented = inbound::provided_secret(headers).unwrap_or_default();
        if crate::util::ct::constant_time_equal(presented, self.inner.inbound_secret.expose()) {
            return Ok(());
        }
        self.inner.counters.count("secret_rejected");
        Err(WebhookError::new(WebhookErrorCode::Auth, "Email webhook shared secret verification failed."))
    }

    async fn handle_webhook(&self, request: WebhookRequest<'_>) -> Result<WebhookReply, WebhookError> {
        self.map(&request)
    }

    async fn send_text(
        &self,
        target: &ChannelTarget,
        text: &str,
        options: &SendOptions,
    ) -> Result<SentMessage, SendError> {
        let thread = target.thread_id.as_deref().filter(|t| *t != target.chat_id);
        let headers = self.inner.conversations.borrow().reply_headers(&target.chat_id, thread, &self.inner.subject);
        let reply = self.inner.smtp.reply(&target.chat_id, &headers, text)?;
        match self.inner.smtp.send(&reply).await {
            Ok(()) => {
                self.inner.counters.count("sent");
                Ok(SentMessage {
                    chat_id: target.chat_id.clone(),
                    message_id: reply.message_id,
                    provider_delivery_id: options.delivery_id.clone(),
                })
            }
            Err(error) => {
                self.inner.counters.count("send_failed");
                Err(error)
            }
        }
    }

    /// A mail whose processing failed is forgotten, so the relay's retry is not a duplicate.
    async fn after_inbound(&self, message: &InboundMessage, succeeded: bool) {
        if !succeeded {
            self.inner.replays.borrow_mut().release(&message.id);
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.inner.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_cache_expires_caps_and_releases() {
        let mut cache = ReplayCache::default();
        assert!(cache.remember("a", 0));
        assert!(!cache.remember("a", 1), "a duplicate inside the window");
        assert!(cache.remember("a", REPLAY_WINDOW_MS), "expired after 24 h");
        cache.release("a");
        assert!(cache.remember("a", REPLAY_WINDOW_MS + 1), "released after a failure");
        for n in 0..REPLAY_CAP + 10 {
            cache.remember(&format!("m{n}"), REPLAY_WINDOW_MS + 2);
        }
        assert_eq!(cache.order.len(), REPLAY_CAP);
        assert!(cache.expiry.len() <= REPLAY_CAP);
        assert!(cache.remember("m0", REPLAY_WINDOW_MS + 3), "the oldest was forgotten");
    }
}
