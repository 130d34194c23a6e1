//! The inbound path, as the consumer of the one ingress queue: claim the provider event durably
//! in Cloud, route interactions, resolve the sender, bind the thread to a session, open its
//! stream, prompt with the claim's event id as the idempotency key, and complete the claim. A duplicate claim (also after a restart) is a silent no-op; a failure before the
//! prompt completes the claim as failed (retryable when transient) so a redelivery can try again,
//! and a permanent one tells the user.
//!
//! Messages come in their chat's turn (`runtime::lanes`); a webhook's message already has its
//! receipt (`runtime::receipt`): written to the inbound journal or claimed in Cloud, and its
//! webhook answered. Since no platform retries after that answer, a transient Cloud failure
//! afterwards is retried here a few times, then the journaled message is queued again a while
//! later.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use smol_str::SmolStr;

use super::interactions::{acknowledge, intent_of, resolution};
use super::journal::{key_of, InboundJournal};
use super::lanes::Queued;
use super::receipt::Receipt;
use super::sessions::Sessions;
use crate::channel::ingress::InboundItem;
use crate::channel::{Channel, ChannelRegistry, InboundFailure, InboundMessage, SendOptions};
use crate::cloud::client::{
    BindSession, ClaimProviderEvent, CloudClient, CompleteProviderEvent, PromptInput, ResolveIdentity,
};
use crate::cloud::types::{ProviderEventClaim, ProviderEventRecord};
use crate::cloud::CloudError;
use crate::config::ProviderConfig;
use crate::logging::WarnLimiter;
use crate::metrics::{bounded_channel_kind, Direction, Metrics, Outcome, ProviderStat, Stat};

/// Claims of this process remembered as unfinished: every message taken in holds at most one.
const MAX_CLAIMS_IN_FLIGHT: usize = super::lanes::MAX_WAITING + super::lanes::MAX_CHATS_IN_FLIGHT;
/// Attempts of the claim and the steps after it for an item whose platform already got its answer.
const ATTEMPTS_AFTER_ANSWER: u32 = 3;

/// How long a chat's identity and session binding are reused for its next message.
const REUSE_TTL: Duration = Duration::from_secs(10 * 60);
/// Chats whose identity and binding are remembered.
const MAX_REUSE: usize = 1024;

/// Lease Cloud puts on an inbound claim.
const CLAIM_TTL_MS: u64 = 300_000;
const DROPPED_NOTICE: &str = "Sorry — I could not process that message. Please try again.";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("Unknown gateway provider {0}.")]
    UnknownProvider(String),
    #[error("{0}")]
    Cloud(#[from] CloudError),
    /// Another claimant holds a live lease on the event; try again once it ends.
    #[error("Another gateway is processing this event; retry in {} s.", retry_after.as_secs())]
    HeldElsewhere { retry_after: Duration },
}

impl InboundError {
    /// A Cloud failure worth trying again (network, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        match self {
            InboundError::Cloud(error) => error.is_retryable(),
            InboundError::HeldElsewhere { .. } => true,
            InboundError::UnknownProvider(_) => false,
        }
    }

    pub(super) fn to_failure(&self) -> InboundFailure {
        let retry_after = match self {
            InboundError::HeldElsewhere { retry_after } => Some(*retry_after),
            _ => None,
        };
        InboundFailure { retryable: self.is_retryable(), message: self.to_string(), retry_after }
    }

    /// A short class for log lines: what went wrong, without Cloud's text.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            InboundError::UnknownProvider(_) => "unknown_provider",
            InboundError::HeldElsewhere { .. } => "held_elsewhere",
            InboundError::Cloud(error) => match error.status {
                None => "network",
                Some(429) => "rate_limited",
                Some(500..) => "cloud_5xx",
                Some(_) => "cloud_4xx",
            },
        }
    }
}

/// What the inbound pipeline works with.
#[derive(Clone)]
pub struct Inbound {
    pub metrics: Rc<Metrics>,
    pub registry: Rc<ChannelRegistry>,
    pub client: Rc<CloudClient>,
    pub sessions: Sessions,
    /// This gateway's claimant name (`claimedBy`).
    pub claimed_by: String,
    /// What the previous message of a chat established (identity, session binding), so a
    /// follow-up skips those two Cloud calls.
    pub reuse: Rc<RefCell<ChatReuse>>,
    /// Webhook messages answered before their claim, on disk (with a state directory).
    pub journal: Option<Rc<InboundJournal>>,
    /// Cloud event ids this process claimed and has not finished: a platform's redelivery that
    /// meets one is a duplicate, not an unfinished claim of a dead process to take over.
    pub claims_in_flight: Rc<RefCell<HashSet<SmolStr>>>,
    /// Holds back repeats of the operator log lines (retries, journal failures).
    pub warnings: Rc<WarnLimiter>,
}

/// Who sent into which thread: a chat as the reuse cache sees it.
type ReuseKey = (SmolStr, String, Option<String>, String);

/// A chat's identity and session binding from its last successful prompt.
#[derive(Clone)]
struct Established {
    identity_id: SmolStr,
    binding: crate::cloud::types::SessionBindingRecord,
    at: Instant,
}

/// The identity and binding of recently active chats: bounded ([`MAX_REUSE`], the oldest goes)
/// and short-lived ([`REUSE_TTL`]); a 4xx on a prompt that used them drops them.
#[derive(Default)]
pub struct ChatReuse {
    chats: HashMap<ReuseKey, Established>,
}

impl ChatReuse {
    fn get(&self, key: &ReuseKey) -> Option<Established> {
        self.chats.get(key).filter(|e| e.at.elapsed() < REUSE_TTL).cloned()
    }

    fn put(&mut self, key: ReuseKey, established: Established) {
        if self.chats.len() >= MAX_REUSE && !self.chats.contains_key(&key) {
            self.chats.retain(|_, e| e.at.elapsed() < REUSE_TTL);
            if self.chats.len() >= MAX_REUSE {
                if let Some(oldest) = self.chats.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| k.clone()) {
                    self.chats.remove(&oldest);
                }
            }
        }
        self.chats.insert(key, established);
    }

    /// The binding of a recently active chat, whoever wrote in it.
    fn binding_of(
        &self,
        provider_id: &str,
        chat_id: &str,
        thread_id: &Option<String>,
    ) -> Option<crate::cloud::types::SessionBindingRecord> {
        self.chats
            .iter()
            .find(|((p, c, t, _), e)| p == provider_id && c == chat_id && t == thread_id && e.at.elapsed() < REUSE_TTL)
            .map(|(_, e)| e.binding.clone())
    }

    fn forget(&mut self, key: &ReuseKey) {
        self.chats.remove(key);
    }
}

impl Inbound {
    /// Claims the event in Cloud. A live claim of our own that this process is not working on (a
    /// process of this gateway died, or a request was cancelled, between claim and prompt) is
    /// taken over: completed as failed and retryable, then claimed again; the prompt's
    /// idempotency key (the event id) keeps Cloud from prompting twice. One this process is
    /// working on is a platform's redelivery: a duplicate. A live claim of another claimant is
    /// retried once its lease ends, never skipped. Processed and non-retryable events stay
    /// duplicates.
    pub(super) async fn claim(
        &self,
        request: &ClaimProviderEvent,
        binding: &SmolStr,
    ) -> Result<ProviderEventClaim, InboundError> {
        let claim = self.client.claim_provider_event(request).await?;
        if claim.claimed || claim.event.status != "processing" {
            return Ok(self.hold(claim));
        }
        if claim.event.claimed_by.as_deref() != Some(self.claimed_by.as_str()) {
            let lease_end =
                claim.event.rest.get("claimExpiresAt").and_then(Value::as_str).and_then(crate::time::parse_iso);
            let wait_ms = lease_end.map_or(CLAIM_TTL_MS, |end| end.saturating_sub(crate::time::now_ms()));
            return Err(InboundError::HeldElsewhere { retry_after: Duration::from_millis(wait_ms.max(1_000)) });
        }
        if self.claims_in_flight.borrow().contains(&claim.event.event_id) {
            return Ok(claim);
        }
        tracing::info!(event = %claim.event.event_id, "taking over this gateway's own unfinished claim");
        let release = CompleteProviderEvent {
            claimed_by: self.claimed_by.clone(),
            status: "failed",
            channel_binding_id: binding.clone(),
            retryable: Some(true),
            last_error: Some("Taken over by this gateway after a restart or a cancelled request.".into()),
        };
        self.client.complete_provider_event(&claim.event.event_id, &release).await?;
        Ok(self.hold(self.client.claim_provider_event(request).await?))
    }

    /// Remembers a claim of ours as unfinished until [`Inbound::release`].
    fn hold(&self, claim: ProviderEventClaim) -> ProviderEventClaim {
        let mut held = self.claims_in_flight.borrow_mut();
        if claim.claimed && held.len() < MAX_CLAIMS_IN_FLIGHT {
            held.insert(claim.event.event_id.clone());
        }
        claim
    }

    fn release(&self, event_id: &str) {
        self.claims_in_flight.borrow_mut().remove(event_id);
    }

    /// The claim request for a message of the channel `config`.
    pub(super) fn claim_request(&self, config: &ProviderConfig, message: &InboundMessage) -> ClaimProviderEvent {
        ClaimProviderEvent {
            provider: message.provider.clone(),
            provider_instance_id: config.id.clone(),
            channel_binding_id: config.channel_binding_id.clone(),
            external_workspace_id: Some(config.external_workspace_id.clone()),
            provider_event_id: message.provider_event_id(),
            event_type: message.event_type(),
            claimed_by: self.claimed_by.clone(),
            ttl_ms: CLAIM_TTL_MS,
            metadata: json!({
                "providerKind": config.kind.as_str(),
                "providerMessageId": message.provider_message_id,
                "targetChatId": message.target.chat_id,
                "targetThreadId": message.target.thread_id,
                "senderUserId": message.sender.provider_user_id,
                "command": message.command,
                "attachmentCount": message.attachment_count,
                "interactionKind": message.interaction.as_ref().map(|i| i.kind),
                "receivedAt": crate::time::iso(message.received_at_ms),
            }),
        }
    }

    /// Runs one message through the pipeline in its chat's turn and answers its reply slot.
    pub(super) async fn handle_queued(&self, queued: Queued) {
        let (item, receipt) = match queued {
            Queued::Ready(item) => (*item, None),
            Queued::Receiving(receiving) => match receiving.await {
                Ok((item, receipt)) => (item, Some(receipt)),
                Err(_) => return,
            },
        };
        // The platform got its answer at the receipt (if there was one): nobody retries for us.
        let (claim, answered) = match receipt {
            None => (None, false),
            Some(Receipt::Journaled) => (None, true),
            Some(Receipt::Claimed(claim)) => (Some(claim), true),
            Some(Receipt::Settled) => return,
        };
        let InboundItem { provider_id, message, finished, .. } = item;
        let result = self.handle_message(&provider_id, &message, claim, answered).await;
        if let Some(channel) = self.registry.get(&provider_id).and_then(|r| r.channel()) {
            channel.after_inbound(&message, result.is_ok()).await;
        }
        if let Some(finished) = finished {
            let _ = finished.send(result.map_err(|e| e.to_failure()));
        }
    }

    /// Handles one normalised message from provider `provider_id`: claims it (unless its receipt
    /// did), then processes it.
    async fn handle_message(
        &self,
        provider_id: &str,
        message: &InboundMessage,
        claim: Option<ProviderEventClaim>,
        answered: bool,
    ) -> Result<(), InboundError> {
        let started = Instant::now();
        self.metrics.increment(Stat::IncomingMessages);
        self.metrics.increment_provider(provider_id, ProviderStat::IncomingMessages);
        let Some((config, provider)) = self.registry.get(provider_id).map(|r| (r.config.clone(), r.channel())) else {
            self.settle_journal(provider_id, message, None);
            return Err(InboundError::UnknownProvider(provider_id.to_owned()));
        };
        let kind = bounded_channel_kind(config.kind, &config.id);
        self.metrics.record_channel_message(kind, Direction::Inbound, Outcome::Attempt, None);
        let claim = match claim {
            Some(claim) => Ok(claim),
            None => self.claim_in_turn(&config, message, answered).await,
        };
        let claim = match claim {
            Ok(claim) => claim,
            Err(error) => {
                finish_failed(self, provider_id, kind, started);
                self.settle_journal(provider_id, message, Some(&error));
                return Err(error);
            }
        };
        if !claim.claimed {
            self.settle_journal(provider_id, message, None);
            self.metrics.increment_provider(provider_id, ProviderStat::InboundDuplicates);
            self.metrics.record_channel_message(kind, Direction::Inbound, Outcome::Ignored, Some(elapsed_ms(started)));
            return Ok(());
        }
        let event_id = claim.event.event_id.clone();
        let run = Run { provider: provider.as_deref(), provider_id, config: &config, message, kind, started };
        let result = self.run_claimed(&run, &event_id, answered).await;
        self.release(&event_id);
        result
    }

    /// The claim in the message's turn; after an answer (a journaled webhook), a passing failure
    /// is tried again a few times, since the platform will not send the message again.
    async fn claim_in_turn(
        &self,
        config: &ProviderConfig,
        message: &InboundMessage,
        answered: bool,
    ) -> Result<ProviderEventClaim, InboundError> {
        let request = self.claim_request(config, message);
        let mut attempt = 1;
        loop {
            let error = match self.claim(&request, &config.channel_binding_id).await {
                Ok(claim) => return Ok(claim),
                Err(error) => error,
            };
            let Some(pause) = next_try(&error, attempt, answered, false) else { return Err(error) };
            let event = &request.provider_event_id;
            self.log_retry("claim", event, &config.channel_binding_id, &error, attempt, pause);
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// One line per retry an operator may want to see, rate-limited per step: a storm is one
    /// line and then a count of those held back.
    fn log_retry(
        &self,
        step: &'static str,
        event: &str,
        binding: &str,
        error: &InboundError,
        attempt: u32,
        pause: Duration,
    ) {
        let key = if step == "claim" { "inbound claim retried" } else { "inbound steps retried" };
        if let Some(suppressed) = self.warnings.allow(key, tokio::time::Instant::now().into_std()) {
            tracing::info!(
                event,
                binding,
                step,
                reason = error.reason(),
                attempt,
                next_attempt_in_ms = pause.as_millis() as u64,
                suppressed,
                "a Cloud call for an answered inbound message failed for a passing reason; retrying"
            );
        }
    }

    /// Steps after the claim, retried after an answer; then the claim is completed.
    async fn run_claimed(&self, run: &Run<'_>, event_id: &str, answered: bool) -> Result<(), InboundError> {
        let mut committed = false;
        let mut attempt = 1;
        let result = loop {
            let result =
                self.process(run.provider, run.provider_id, run.config, run.message, event_id, &mut committed).await;
            let Err(error) = &result else { break result };
            let Some(pause) = next_try(error, attempt, answered, committed) else { break result };
            self.log_retry("prompt", event_id, &run.config.channel_binding_id, error, attempt, pause);
            tokio::time::sleep(pause).await;
            attempt += 1;
        };
        match result {
            Ok(outcome) => {
                self.complete_processed(run, event_id, outcome).await;
                Ok(())
            }
            Err(error) => {
                self.complete_failed(run, event_id, &error, committed).await;
                Err(error)
            }
        }
    }

    fn completion(
        &self,
        run: &Run<'_>,
        status: &'static str,
        retryable: Option<bool>,
        last_error: Option<String>,
    ) -> CompleteProviderEvent {
        CompleteProviderEvent {
            claimed_by: self.claimed_by.clone(),
            status,
            channel_binding_id: run.config.channel_binding_id.clone(),
            retryable,
            last_error,
        }
    }

    /// Completes the claim of a processed message and ends its journal entry.
    async fn complete_processed(&self, run: &Run<'_>, event_id: &str, outcome: Outcome) {
        // The prompt (or interaction) is committed; a failed completion must not undo that.
        let processed = self.completion(run, "processed", None, None);
        if let Err(error) = self.client.complete_provider_event(event_id, &processed).await {
            tracing::warn!(error = %crate::config::redact::Redacted(&error), "completing a processed provider event failed; a redelivery stays a duplicate");
        }
        self.settle_journal(run.provider_id, run.message, None);
        self.metrics.record_channel_message(run.kind, Direction::Inbound, outcome, Some(elapsed_ms(run.started)));
    }

    /// Ends a message that failed: before anything was committed, its claim is completed as
    /// failed (so a redelivery can try again) and a permanent failure tells the user; after, the
    /// claim is left as it is: the side effect happened, and a failed claim invites a redelivery
    /// to repeat it.
    async fn complete_failed(&self, run: &Run<'_>, event_id: &str, error: &InboundError, committed: bool) {
        let outcome = if committed {
            Outcome::Error
        } else {
            let text = crate::render::text::sanitize(&error.to_string(), 1024);
            let failed = self.completion(run, "failed", Some(error.is_retryable()), Some(text));
            let recorded = self.client.complete_provider_event(event_id, &failed).await.ok();
            if !error.is_retryable() {
                self.send_dropped_notice(run, event_id).await;
            }
            failure_outcome(recorded.as_ref())
        };
        self.metrics.record_channel_message(run.kind, Direction::Inbound, outcome, Some(elapsed_ms(run.started)));
        self.metrics.increment(Stat::Errors);
        self.metrics.increment_provider(run.provider_id, ProviderStat::InboundFailures);
        tracing::warn!(provider = run.provider_id, event = event_id, retryable = error.is_retryable(), reason = error.reason(), error = %crate::config::redact::redact_text(&error.to_string()), "inbound message failed");
        self.settle_journal(run.provider_id, run.message, (!committed).then_some(error));
    }

    /// Tells the user a message could not be processed (a permanent failure before the prompt).
    async fn send_dropped_notice(&self, run: &Run<'_>, event_id: &str) {
        let Some(provider) = run.provider else { return };
        self.metrics.record_channel_message(run.kind, Direction::Outbound, Outcome::Attempt, None);
        let options = SendOptions { delivery_id: Some(format!("{event_id}:dropped")) };
        let notice = provider.send_text(&run.message.target, DROPPED_NOTICE, &options).await;
        let outcome = if notice.is_ok() { Outcome::Success } else { Outcome::Error };
        self.metrics.record_channel_message(run.kind, Direction::Outbound, outcome, None);
    }

    /// Ends a journaled message's time in the journal, unless it failed for a passing reason
    /// (`failure` retryable): then it stays on disk and is queued again a while later.
    fn settle_journal(&self, provider_id: &str, message: &InboundMessage, failure: Option<&InboundError>) {
        let Some(journal) = &self.journal else { return };
        let key = key_of(provider_id, message);
        match failure {
            Some(error) if error.is_retryable() && journal.holds(&key) => {
                if let Some(suppressed) =
                    self.warnings.allow("inbound message stranded", tokio::time::Instant::now().into_std())
                {
                    tracing::warn!(
                        journal_key = %key,
                        provider = provider_id,
                        reason = error.reason(),
                        next_attempt_in_ms = super::receipt::STRANDED_RETRY.as_millis() as u64,
                        suppressed,
                        "an answered webhook message could not be claimed or prompted yet; the inbound journal queues it again"
                    );
                }
                journal.strand(&key);
            }
            _ => journal.forget(&key),
        }
    }
}

/// A claimed message and what its steps need.
struct Run<'a> {
    provider: Option<&'a dyn Channel>,
    provider_id: &'a str,
    config: &'a ProviderConfig,
    message: &'a InboundMessage,
    kind: &'static str,
    started: Instant,
}

/// The pause after the `attempt`-th failed try of an answered message: 1 s, then 2 s, well inside
/// the claim's 5-minute lease.
fn retry_pause(attempt: u32) -> Duration {
    crate::net::backoff::RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(2))
        .with_jitter(0.0)
        .nth(attempt.into())
}

/// Whether a try that failed with `error` is made again, and after what pause. Only a passing
/// failure, only before Cloud accepted the message's side effect, and only for a message whose
/// platform already got its answer (it will not send the message again): up to
/// [`ATTEMPTS_AFTER_ANSWER`] tries in all. Any other message's failure goes back to its platform.
fn next_try(error: &InboundError, attempt: u32, answered: bool, committed: bool) -> Option<Duration> {
    let attempts = if answered { ATTEMPTS_AFTER_ANSWER } else { 1 };
    (error.is_retryable() && !committed && attempt < attempts).then(|| retry_pause(attempt))
}

/// Whether a failed prompt that reused a chat's identity and binding means they may have changed:
/// a 4xx other than a rate limit.
fn invalidates_reuse(error: &CloudError) -> bool {
    error.status.is_some_and(|status| (400..500).contains(&status)) && error.status != Some(429)
}

/// How a message whose claim was completed as failed ended: `Retry` when Cloud recorded the
/// failure as retryable (a redelivery will be processed), else an error.
fn failure_outcome(recorded: Option<&ProviderEventRecord>) -> Outcome {
    if recorded.is_some_and(|event| event.status == "failed" && event.retryable) {
        Outcome::Retry
    } else {
        Outcome::Error
    }
}

pub(super) fn finish_failed(inbound: &Inbound, provider_id: &str, kind: &'static str, started: Instant) {
    inbound.metrics.increment(Stat::Errors);
    inbound.metrics.increment_provider(provider_id, ProviderStat::InboundFailures);
    inbound.metrics.record_channel_message(kind, Direction::Inbound, Outcome::Error, Some(elapsed_ms(started)));
}

fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

impl Inbound {
    /// After the claim: resolve an interaction, or prompt with the text (an empty text is
    /// ignored). Sets `committed` once Cloud accepted the side effect.
    async fn process(
        &self,
        provider: Option<&dyn Channel>,
        provider_id: &str,
        config: &ProviderConfig,
        message: &InboundMessage,
        event_id: &str,
        committed: &mut bool,
    ) -> Result<Outcome, InboundError> {
        let client = &*self.client;
        let workspace = config.external_workspace_id.clone();
        if let Some(intent) = intent_of(message) {
            client.resolve_interaction(&resolution(message, &intent, workspace)).await?;
            *committed = true;
            // The answer produces events: reopen the chat's stream if it closed meanwhile (a
            // stream waiting on this answer may have given its slot up to another chat).
            self.reopen_stream_of(provider_id, config, message).await;
            self.metrics.increment(Stat::InteractionsResolved);
            self.metrics.increment_provider(provider_id, ProviderStat::InteractionsResolved);
            if let Some(provider) = provider {
                let kind = bounded_channel_kind(config.kind, &config.id);
                acknowledge(provider, &intent, &self.metrics, kind).await;
            }
            return Ok(Outcome::Success);
        }
        if message.text.trim().is_empty() {
            return Ok(Outcome::Ignored);
        }
        self.prompt_text(provider_id, config, message, event_id, committed).await
    }

    /// Identity and binding (reused for a follow-up when possible), the stream, the prompt.
    async fn prompt_once(
        &self,
        provider_id: &str,
        config: &ProviderConfig,
        message: &InboundMessage,
        event_id: &str,
    ) -> Result<(), CloudError> {
        let key: ReuseKey = (
            SmolStr::new(provider_id),
            message.target.chat_id.clone(),
            message.target.thread_id.clone(),
            message.sender.provider_user_id.clone(),
        );
        if self.prompt_reusing(&key, provider_id, config, message, event_id).await? {
            return Ok(());
        }
        let established = self.establish(provider_id, config, message).await?;
        self.client.prompt(&self.prompt_input(config, message, event_id, &established)).await?;
        self.reuse.borrow_mut().put(key, established);
        Ok(())
    }

    /// Prompts with what the chat's previous message established, if that is still known here.
    /// `false` when there was nothing to reuse, or a 4xx said it may have changed (then it is
    /// forgotten, and the caller runs the full path once).
    async fn prompt_reusing(
        &self,
        key: &ReuseKey,
        provider_id: &str,
        config: &ProviderConfig,
        message: &InboundMessage,
        event_id: &str,
    ) -> Result<bool, CloudError> {
        // Reused only while this process knows the binding's cursor (an open or recently closed
        // stream), so a reopened stream never goes behind what was rendered.
        let reused =
            self.reuse.borrow().get(key).filter(|e| self.sessions.known_cursor(&e.binding.binding_id).is_some());
        let Some(established) = reused else { return Ok(false) };
        self.sessions.ensure(established.binding.clone(), provider_id);
        match self.client.prompt(&self.prompt_input(config, message, event_id, &established)).await {
            Ok(_) => {
                self.reuse.borrow_mut().put(key.clone(), Established { at: Instant::now(), ..established });
                Ok(true)
            }
            Err(error) if invalidates_reuse(&error) => {
                self.reuse.borrow_mut().forget(key);
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Resolves the sender's identity and binds the chat's thread to a session, whose stream
    /// opens (or is touched).
    async fn establish(
        &self,
        provider_id: &str,
        config: &ProviderConfig,
        message: &InboundMessage,
    ) -> Result<Established, CloudError> {
        let workspace = config.external_workspace_id.clone();
        let identity = self
            .client
            .resolve_identity(&ResolveIdentity {
                provider: message.provider.clone(),
                external_user_id: message.sender.provider_user_id.clone(),
                channel_binding_id: config.channel_binding_id.clone(),
                external_workspace_id: Some(workspace.clone()),
                metadata: json!({"username": message.sender.username, "displayName": message.sender.display_name}),
            })
            .await?;
        let text = message.text.trim();
        let title = String::from_utf16_lossy(&text.encode_utf16().take(80).collect::<Vec<u16>>());
        let target = &message.target;
        let bound = self
            .client
            .bind_session(&BindSession {
                channel_binding_id: config.channel_binding_id.clone(),
                provider: message.provider.clone(),
                external_chat_id: target.chat_id.clone(),
                external_thread_id: target
                    .thread_id
                    .clone()
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| target.chat_id.clone()),
                identity_id: Some(identity.identity_id.clone()),
                external_user_id: Some(message.sender.provider_user_id.clone()),
                external_workspace_id: workspace,
                title: Some(title),
            })
            .await?;
        self.sessions.ensure(bound.binding.clone(), provider_id);
        Ok(Established { identity_id: identity.identity_id, binding: bound.binding, at: Instant::now() })
    }

    /// Opens (or touches) the stream of the chat a message came from, as its binding is known
    /// here or, after a restart or a long wait, as Cloud knows it.
    async fn reopen_stream_of(&self, provider_id: &str, config: &ProviderConfig, message: &InboundMessage) {
        let target = &message.target;
        let known = self.reuse.borrow().binding_of(provider_id, &target.chat_id, &target.thread_id);
        let binding = match known {
            Some(binding) => Some(binding),
            None => {
                let thread =
                    target.thread_id.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| target.chat_id.clone());
                let workspace = config.external_workspace_id.as_deref();
                let found =
                    self.client.find_session_by_thread(&message.provider, workspace, &target.chat_id, &thread).await;
                match found {
                    Ok(bound) => bound.map(|bound| bound.binding),
                    Err(error) => {
                        tracing::debug!(error = %crate::config::redact::Redacted(&error), "the binding of an answered interaction could not be looked up; its stream reopens on the chat's next message");
                        None
                    }
                }
            }
        };
        if let Some(binding) = binding {
            self.sessions.ensure(binding, provider_id);
        }
    }

    fn prompt_input(
        &self,
        config: &ProviderConfig,
        message: &InboundMessage,
        event_id: &str,
        established: &Established,
    ) -> PromptInput {
        PromptInput {
            binding_id: established.binding.binding_id.clone(),
            text: message.text.trim().to_owned(),
            agent: config.default_agent.clone(),
            idempotency_key: event_id.into(),
            identity_id: Some(established.identity_id.clone()),
            provider: message.provider.clone(),
            external_workspace_id: Some(config.external_workspace_id.clone()),
            external_user_id: message.sender.provider_user_id.clone(),
        }
    }
}

impl Inbound {
    /// Identity, binding, stream and prompt for a text message.
    async fn prompt_text(
        &self,
        provider_id: &str,
        config: &ProviderConfig,
        message: &InboundMessage,
        event_id: &str,
        committed: &mut bool,
    ) -> Result<Outcome, InboundError> {
        self.prompt_once(provider_id, config, message, event_id).await?;
        *committed = true;
        self.metrics.increment(Stat::PromptedMessages);
        self.metrics.increment_provider(provider_id, ProviderStat::PromptedMessages);
        Ok(Outcome::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::error::CloudErrorKind;

    fn cloud(status: u16) -> CloudError {
        CloudError::from_response(status, b"{}", None)
    }

    #[test]
    fn only_an_answered_messages_passing_failure_is_tried_again_before_anything_is_committed() {
        let passing = InboundError::Cloud(CloudError::transport(CloudErrorKind::Network, "reset"));
        assert_eq!(next_try(&passing, 1, true, false), Some(Duration::from_secs(1)));
        assert_eq!(next_try(&passing, 2, true, false), Some(Duration::from_secs(2)));
        assert_eq!(next_try(&passing, ATTEMPTS_AFTER_ANSWER, true, false), None, "the tries are bounded");
        assert_eq!(next_try(&passing, 1, false, false), None, "an unanswered message's platform sends it again");
        assert_eq!(next_try(&passing, 1, true, true), None, "never after Cloud accepted the side effect");
        let permanent = InboundError::Cloud(cloud(400));
        assert_eq!(next_try(&permanent, 1, true, false), None);
        let held = InboundError::HeldElsewhere { retry_after: Duration::from_secs(30) };
        assert!(next_try(&held, 1, true, false).is_some());
    }

    #[test]
    fn a_failure_counts_as_a_retry_only_when_cloud_recorded_it_retryable() {
        let record = |status: &str, retryable: bool| -> ProviderEventRecord {
            serde_json::from_value(
                json!({"eventId": "e", "providerEventId": "p", "status": status, "retryable": retryable}),
            )
            .unwrap()
        };
        assert_eq!(failure_outcome(Some(&record("failed", true))), Outcome::Retry);
        assert_eq!(failure_outcome(Some(&record("failed", false))), Outcome::Error);
        assert_eq!(failure_outcome(Some(&record("processed", true))), Outcome::Error);
        assert_eq!(failure_outcome(None), Outcome::Error, "the completion itself failed");
    }

    #[test]
    fn a_4xx_other_than_a_rate_limit_invalidates_a_reused_binding() {
        assert!(invalidates_reuse(&cloud(404)));
        assert!(invalidates_reuse(&cloud(409)));
        assert!(!invalidates_reuse(&cloud(429)));
        assert!(!invalidates_reuse(&cloud(503)));
        assert!(!invalidates_reuse(&CloudError::transport(CloudErrorKind::Network, "reset")));
    }
}
