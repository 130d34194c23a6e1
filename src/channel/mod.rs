//! The channel contract: the [`Channel`] trait every chat platform implements, its data types,
//! health, the inbound queue channels push into, and the registry the core talks to.
//!
//! The core (runtime, http, the wiring) only ever holds `Rc<dyn Channel>` and never names a kind:
//! kinds live in `providers/<kind>/` and `config/providers/`. A channel implements only what its
//! platform has; every optional method answers "unsupported" by default, so a small channel (the
//! command-line channel) is a few dozen lines and a rich one overrides edits, buttons and files.
//!
//! Dispatch is dynamic (`dyn Channel`): the methods are `async fn`s that `#[async_trait(?Send)]`
//! turns into boxed, thread-local futures, so an implementation writes plain `async fn`s with no
//! boxing of its own (the attribute is re-exported here: `#[async_trait(?Send)] impl Channel for
//! …`, with `crate::channel::async_trait` in scope). Measured against the enum this replaced, the release binary grew by less than
//! the noise of one added provider (see the README's size table), and it lets a kind be added
//! without touching any core file.

pub(crate) mod counters;
pub(crate) mod health;
pub(crate) mod ingress;
pub mod pacing;
pub(crate) mod registry;
pub(crate) mod types;
pub(crate) mod webhook;

pub use async_trait::async_trait;
pub use counters::EventCounters;
pub use health::{ChannelHealth, HealthReporter};
pub use ingress::{InboundFailure, Ingress};
pub use registry::{ChannelRegistry, Registration};
pub use types::*;
pub use webhook::{WebhookError, WebhookErrorCode, WebhookReply, WebhookRequest};

use crate::shutdown::DrainSignal;

/// One line of `open-cowork-gateway doctor`: what was checked, whether it passed, and what was
/// found (on a pass) or what to do about it (on a failure). Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl DoctorCheck {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), ok: true, detail: detail.into() }
    }

    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), ok: false, detail: detail.into() }
    }
}

/// What a channel gets when it starts.
pub struct ChannelContext {
    /// Where inbound messages go; pushing waits while the queue is full (a poller pauses).
    pub ingress: Ingress,
    /// Resolves when the gateway starts draining: background work stops taking new input then.
    pub drain: DrainSignal,
    /// The channel's half of its health, shown in `/ready` and `/diagnostics`.
    pub health: HealthReporter,
}

/// One chat platform. Implementations own their wire client, their background work and their
/// rendering quirks; the core calls them only through this trait. Its futures are not `Send`: the
/// gateway runs on one thread, and channels keep their state in `Rc`/`RefCell`.
#[async_trait(?Send)]
pub trait Channel {
    /// The configured provider id (`providers[].id`).
    fn id(&self) -> &str;

    /// What the platform can do; the renderer and the delivery path shape messages to it.
    fn capabilities(&self) -> &Capabilities;

    /// Starts background work (a poller, webhook registration). The channel keeps the task
    /// handles and ends them in [`Channel::stop`]. Default: nothing runs in the background.
    fn start(&self, context: ChannelContext) {
        drop(context);
    }

    /// Ends background work; called once, in reverse start order, after the drain.
    fn stop(&self) {}

    /// Checks what a webhook proves in its headers alone (a shared secret), before its body is
    /// read: a request with a wrong secret costs no body buffering. Default: nothing to check
    /// there (signatures over the raw body are checked in [`Channel::handle_webhook`]).
    fn check_webhook_headers(&self, headers: &http::HeaderMap) -> Result<(), WebhookError> {
        let _ = headers;
        Ok(())
    }

    /// Verifies a webhook over its raw body and maps it. Default: this channel has no webhook.
    async fn handle_webhook(&self, request: WebhookRequest<'_>) -> Result<WebhookReply, WebhookError> {
        let _ = request;
        Err(WebhookError::new(
            WebhookErrorCode::NotFound,
            format!("Gateway provider {} does not expose a webhook endpoint.", self.id()),
        ))
    }

    /// How long a webhook's answer may wait for the Cloud claim of its messages. A platform that
    /// gives up on a request after a few seconds (and then sends it again) declares a deadline
    /// below its own: past it the request is answered 202 and its messages stay queued and are
    /// processed; a claim that fails after that answer is only logged, because the platform was
    /// already told the event arrived. Default: the answer waits for the claim.
    fn answer_deadline(&self) -> Option<std::time::Duration> {
        None
    }

    /// Sends text (the channel chunks to its own limits where the renderer did not).
    async fn send_text(
        &self,
        target: &ChannelTarget,
        text: &str,
        options: &SendOptions,
    ) -> Result<SentMessage, SendError>;

    /// Replaces the text of a message this channel sent. Default: unsupported.
    async fn edit_text(&self, target: &ChannelTarget, message_id: &str, text: &str) -> Result<(), SendError> {
        let _ = (target, message_id, text);
        unsupported(self.id(), "message editing")
    }

    /// Sends text with rows of buttons. Default: unsupported (the renderer checks capabilities
    /// first and falls back to text commands).
    async fn send_buttons(
        &self,
        target: &ChannelTarget,
        text: &str,
        buttons: &[Vec<Button>],
    ) -> Result<SentMessage, SendError> {
        let _ = (target, text, buttons);
        unsupported(self.id(), "inline buttons")
    }

    /// Sends a file within `capabilities().max_file_bytes`. Default: unsupported.
    async fn send_file(&self, target: &ChannelTarget, filename: &str, data: &[u8]) -> Result<SentMessage, SendError> {
        let _ = (target, filename, data);
        unsupported(self.id(), "files")
    }

    /// Acknowledges a button press on the platform (some platforms require an answer to every
    /// press, or the button keeps spinning). Default:
    /// nothing to acknowledge.
    async fn answer_interaction(&self, interaction_id: &str, text: &str) -> Result<(), SendError> {
        let _ = (interaction_id, text);
        Ok(())
    }

    /// Called once the inbound pipeline is done with one of this channel's messages, whether it
    /// `succeeded` or not (a button press is always answered; a failed webhook update is
    /// forgotten so the platform's retry gets through de-duplication).
    async fn after_inbound(&self, message: &InboundMessage, succeeded: bool) {
        let _ = (message, succeeded);
    }

    /// The channel's own event counters, exported as
    /// `open_cowork_gateway_provider_events_total{provider, event}`.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

fn unsupported<T>(id: &str, what: &str) -> Result<T, SendError> {
    Err(SendError::permanent(format!("Gateway provider {id} does not support {what}.")))
}
