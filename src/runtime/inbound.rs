//! The inbound path (gateway.md §3.2), as the consumer of the one ingress queue: claim the
//! provider event durably in Cloud, route interactions, resolve the sender, bind the thread to a
//! session, open its stream, prompt with the claim's event id as the idempotency key, and complete
//! the claim. A duplicate claim (also after a restart) is a silent no-op; a failure before the
//! prompt completes the claim as failed (retryable when transient) so a redelivery can try again,
//! and a permanent one tells the user.
//!
//! The queue is drained with bounded concurrency: up to [`MAX_CHATS_IN_FLIGHT`] chats at once,
//! each chat's messages strictly one after another in arrival order. A webhook's item reports its
//! claim as soon as Cloud has it (the webhook answers then) and is processed afterwards; since no
//! platform retries after that answer, a transient Cloud failure after the claim is retried here
//! a few times before the claim is completed as failed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use smol_str::SmolStr;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::interactions::{intent_of, resolution};
use super::journal::InboundJournal;
use super::sessions::Sessions;
use crate::channel::ingress::{Claim, InboundItem, Ingress, IngressReceiver};
use crate::channel::{Channel, ChannelRegistry, InboundFailure, InboundMessage, SendOptions};
use crate::cloud::client::{
    BindSession, ClaimProviderEvent, CloudClient, CompleteProviderEvent, PromptInput, ResolveIdentity,
};
use crate::cloud::types::ProviderEventClaim;
use crate::cloud::CloudError;
use crate::config::ProviderConfig;
use crate::metrics::{bounded_channel_kind, Direction, Metrics, Outcome, ProviderStat, Stat};
use crate::shutdown::Shutdown;

/// Chats processed at the same time; a chat's own messages never overlap.
pub const MAX_CHATS_IN_FLIGHT: usize = 32;
/// Messages taken from the queue but waiting for their chat's turn, across all chats.
const MAX_WAITING: usize = 1024;
/// Attempts of the steps after the claim for an item whose platform already got its answer.
const ATTEMPTS_AFTER_ANSWER: u32 = 3;
/// How long a journaled webhook message whose pipeline failed for a passing reason waits before
/// it is queued again (its claim is completed as failed and retryable, so the retry claims it).
const STRANDED_RETRY: Duration = Duration::from_secs(30);

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

    fn to_failure(&self) -> InboundFailure {
        let retry_after = match self {
            InboundError::HeldElsewhere { retry_after } => Some(*retry_after),
            _ => None,
        };
        InboundFailure { retryable: self.is_retryable(), message: self.to_string(), retry_after }
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
    pub reuse: Rc<std::cell::RefCell<ChatReuse>>,
    /// Webhook messages answered before their prompt, on disk (with a state directory).
    pub journal: Option<Rc<InboundJournal>>,
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

/// A chat: messages with the same key are processed in order, one at a time.
type ChatKey = (SmolStr, String, Option<String>);

fn chat_key(item: &InboundItem) -> ChatKey {
    let target = &item.message.target;
    (item.provider_id.clone(), target.chat_id.clone(), target.thread_id.clone())
}

/// Drains the ingress queue until it closes (every producer gone) and the waiting work is done.
/// Each processed item holds a drain work guard, so SIGTERM waits for it.
/// The items in progress belong to this task: when it is aborted (a crash, in tests), they end
/// with it, mid-pipeline, exactly as a killed process would leave them.
pub async fn run_ingress(inbound: Inbound, mut queue: IngressReceiver, shutdown: Shutdown) {
    let mut in_progress: JoinSet<()> = JoinSet::new();
    let mut chats_in_progress: HashMap<tokio::task::Id, ChatKey> = HashMap::new();
    let mut waiting: HashMap<ChatKey, VecDeque<InboundItem>> = HashMap::new();
    let mut ready: VecDeque<ChatKey> = VecDeque::new();
    let mut busy: HashSet<ChatKey> = HashSet::new();
    let mut waiting_total = 0usize;
    let mut drain = shutdown.signal();
    let mut open = true;
    loop {
        if !open && busy.is_empty() {
            // Items still waiting were never claimed: dropping them answers their webhooks 503
            // and leaves pollers' updates unacknowledged, so nothing is lost.
            break;
        }
        tokio::select! {
            item = queue.recv(), if open && waiting_total < MAX_WAITING => match item {
                None => open = false,
                Some(item) => {
                    let key = chat_key(&item);
                    let lane = waiting.entry(key.clone()).or_default();
                    lane.push_back(item);
                    waiting_total += 1;
                    if lane.len() == 1 && !busy.contains(&key) {
                        ready.push_back(key);
                    }
                }
            },
            Some(done) = in_progress.join_next_with_id(), if !in_progress.is_empty() => {
                let id = match &done {
                    Ok((id, _)) => *id,
                    Err(error) => {
                        tracing::error!(%error, "an inbound pipeline task ended abnormally");
                        error.id()
                    }
                };
                let Some(key) = chats_in_progress.remove(&id) else { continue };
                busy.remove(&key);
                if waiting.get(&key).is_some_and(|lane| !lane.is_empty()) {
                    ready.push_back(key);
                } else {
                    waiting.remove(&key);
                }
            }
            _ = drain.started(), if open => {
                // Intake is closed: what waits was not claimed; only started work finishes.
                open = false;
                queue.close();
                while queue.try_recv().is_ok() {}
                waiting.clear();
                ready.clear();
                waiting_total = 0;
            }
        }
        while busy.len() < MAX_CHATS_IN_FLIGHT {
            let Some(key) = ready.pop_front() else { break };
            let Some(item) = waiting.get_mut(&key).and_then(VecDeque::pop_front) else { continue };
            waiting_total -= 1;
            busy.insert(key.clone());
            let (inbound, work) = (inbound.clone(), shutdown.work_guard());
            let task = in_progress.spawn_local(async move {
                inbound.handle_item(item).await;
                drop(work);
            });
            chats_in_progress.insert(task.id(), key);
        }
    }
}

impl Inbound {
    /// Claims the event in Cloud. A live claim of our own (a process of this gateway died, or a
    /// request was cancelled, between claim and prompt) is taken over: completed as failed and
    /// retryable, then claimed again; the prompt's idempotency key (the event id) keeps Cloud from
    /// prompting twice. A live claim of another claimant is retried once its lease ends, never
    /// skipped. Processed and non-retryable events stay duplicates.
    async fn claim(&self, request: &ClaimProviderEvent, binding: &SmolStr) -> Result<ProviderEventClaim, InboundError> {
        let claim = self.client.claim_provider_event(request).await?;
        if claim.claimed || claim.event.status != "processing" {
            return Ok(claim);
        }
        if claim.event.claimed_by.as_deref() != Some(self.claimed_by.as_str()) {
            let lease_end =
                claim.event.rest.get("claimExpiresAt").and_then(Value::as_str).and_then(crate::time::parse_iso);
            let wait_ms = lease_end.map_or(CLAIM_TTL_MS, |end| end.saturating_sub(crate::time::now_ms()));
            return Err(InboundError::HeldElsewhere { retry_after: Duration::from_millis(wait_ms.max(1_000)) });
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
        Ok(self.client.claim_provider_event(request).await?)
    }

    /// Runs one item through the pipeline and answers its reply slots.
    async fn handle_item(&self, item: InboundItem) {
        let InboundItem { provider_id, message, claimed, finished } = item;
        let answered_early = claimed.is_some();
        let mut claimed = claimed;
        let result = self.handle_message(&provider_id, &message, &mut claimed, answered_early).await;
        if let Some(channel) = self.registry.get(&provider_id).and_then(|r| r.channel()) {
            channel.after_inbound(&message, result.is_ok()).await;
        }
        let failure = result.as_ref().err().map(InboundError::to_failure);
        if let Some(claimed) = claimed {
            // Not answered at the claim: it failed before it (the platform retries), or the
            // journal could not take it and the answer waited for the whole pipeline.
            let _ = claimed.send(match &failure {
                None => Ok(Claim::New),
                Some(failure) => Err(failure.clone()),
            });
        }
        if let Some(finished) = finished {
            let _ = finished.send(failure.map_or(Ok(()), Err));
        }
    }

    /// Handles one normalised message from provider `provider_id`; `claimed` is answered as
    /// soon as the claim is known.
    async fn handle_message(
        &self,
        provider_id: &str,
        message: &InboundMessage,
        claimed: &mut Option<oneshot::Sender<Result<Claim, InboundFailure>>>,
        answered_early: bool,
    ) -> Result<(), InboundError> {
        let started = Instant::now();
        self.metrics.increment(Stat::IncomingMessages);
        self.metrics.increment_provider(provider_id, ProviderStat::IncomingMessages);
        let Some((config, provider)) = self.registry.get(provider_id).map(|r| (r.config.clone(), r.channel())) else {
            return Err(InboundError::UnknownProvider(provider_id.to_owned()));
        };
        let kind = bounded_channel_kind(config.kind, &config.id);
        self.metrics.record_channel_message(kind, Direction::Inbound, Outcome::Attempt, None);
        let client = Rc::clone(&self.client);
        let claimed_by = self.claimed_by.clone();
        let workspace = config.external_workspace_id.clone();
        let request = ClaimProviderEvent {
            provider: message.provider.clone(),
            provider_instance_id: config.id.clone(),
            channel_binding_id: config.channel_binding_id.clone(),
            external_workspace_id: Some(workspace.clone()),
            provider_event_id: message.provider_event_id(),
            event_type: message.event_type(),
            claimed_by: claimed_by.clone(),
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
        };
        let claim = match self.claim(&request, &config.channel_binding_id).await {
            Ok(claim) => claim,
            Err(error) => {
                finish_failed(self, provider_id, kind, started);
                return Err(error);
            }
        };
        // A message answered now is this gateway's to finish: it goes into the journal first
        // (`runtime::journal`). If the journal cannot be written, the answer waits for the
        // pipeline instead (`handle_item` sends it), as the platform may then retry.
        let mut answer_now = true;
        if claim.claimed && claimed.is_some() {
            if let Some(journal) = &self.journal {
                if let Err(error) = journal.record(&claim.event.event_id, provider_id, message).await {
                    tracing::warn!(%error, "the inbound journal could not be written; this webhook is answered after its prompt instead");
                    answer_now = false;
                }
            }
        }
        if answer_now {
            if let Some(claimed) = claimed.take() {
                let _ = claimed.send(Ok(if claim.claimed { Claim::New } else { Claim::Duplicate }));
            }
        }
        if !claim.claimed {
            self.forget(&claim.event.event_id);
            self.metrics.increment_provider(provider_id, ProviderStat::InboundDuplicates);
            self.metrics.record_channel_message(kind, Direction::Inbound, Outcome::Ignored, Some(elapsed_ms(started)));
            return Ok(());
        }
        let event_id = claim.event.event_id.clone();
        let mut committed = false;
        let attempts = if answered_early { ATTEMPTS_AFTER_ANSWER } else { 1 };
        let mut attempt = 1;
        let result = loop {
            let result =
                self.process(provider.as_deref(), provider_id, &config, message, &event_id, &mut committed).await;
            match result {
                Err(error) if error.is_retryable() && !committed && attempt < attempts => {
                    // 1 s, then 2 s: well inside the claim's 5-minute lease.
                    let policy = crate::net::backoff::RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(2));
                    tokio::time::sleep(policy.with_jitter(0.0).nth(attempt.into())).await;
                    attempt += 1;
                }
                result => break result,
            }
        };
        let complete =
            |status: &'static str, retryable: Option<bool>, last_error: Option<String>| CompleteProviderEvent {
                claimed_by: claimed_by.clone(),
                status,
                channel_binding_id: config.channel_binding_id.clone(),
                retryable,
                last_error,
            };
        match result {
            Ok(outcome) => {
                // The prompt (or interaction) is committed; a failed completion must not undo that.
                if let Err(error) = client.complete_provider_event(&event_id, &complete("processed", None, None)).await
                {
                    tracing::warn!(error = %crate::config::redact::Redacted(&error), "completing a processed provider event failed; a redelivery stays a duplicate");
                }
                self.forget(&event_id);
                self.metrics.record_channel_message(kind, Direction::Inbound, outcome, Some(elapsed_ms(started)));
                Ok(())
            }
            Err(error) => {
                let retryable = error.is_retryable();
                if !committed {
                    let message_text = crate::render::text::sanitize(&error.to_string(), 1024);
                    let recorded = client
                        .complete_provider_event(&event_id, &complete("failed", Some(retryable), Some(message_text)))
                        .await
                        .ok();
                    let outcome = if recorded.is_some_and(|e| e.status == "failed" && e.retryable) {
                        Outcome::Retry
                    } else {
                        Outcome::Error
                    };
                    self.metrics.record_channel_message(kind, Direction::Inbound, outcome, Some(elapsed_ms(started)));
                    if !retryable {
                        if let Some(provider) = provider {
                            self.metrics.record_channel_message(kind, Direction::Outbound, Outcome::Attempt, None);
                            let notice = provider
                                .send_text(
                                    &message.target,
                                    DROPPED_NOTICE,
                                    &SendOptions { delivery_id: Some(format!("{event_id}:dropped")) },
                                )
                                .await;
                            let outcome = if notice.is_ok() { Outcome::Success } else { Outcome::Error };
                            self.metrics.record_channel_message(kind, Direction::Outbound, outcome, None);
                        }
                    }
                } else {
                    self.metrics.record_channel_message(
                        kind,
                        Direction::Inbound,
                        Outcome::Error,
                        Some(elapsed_ms(started)),
                    );
                }
                self.metrics.increment(Stat::Errors);
                self.metrics.increment_provider(provider_id, ProviderStat::InboundFailures);
                tracing::warn!(provider = provider_id, retryable, error = %crate::config::redact::redact_text(&error.to_string()), "inbound message failed");
                // A transient failure keeps a journaled message for the next start (Cloud holds
                // its claim as failed and retryable); anything else is finished.
                if !retryable || committed {
                    self.forget(&event_id);
                } else if let Some(journal) = self.journal.as_ref().filter(|j| j.holds(&event_id)) {
                    tracing::warn!(event = %event_id, "an answered webhook message could not be prompted yet; the inbound journal queues it again shortly");
                    journal.strand(&event_id);
                }
                Err(error)
            }
        }
    }
}

impl Inbound {
    /// Ends an event's time in the journal, if it has one.
    fn forget(&self, event_id: &str) {
        if let Some(journal) = &self.journal {
            journal.forget(event_id);
        }
    }

    /// Queues the messages a killed process answered but did not finish (see `runtime::journal`),
    /// then, every `STRANDED_RETRY` (30 s), those whose pipeline failed for a passing reason since.
    /// Runs until the gateway stops.
    pub async fn replay_journal(&self, ingress: &Ingress) {
        let Some(journal) = &self.journal else { return };
        let left = journal.left_behind();
        if !left.is_empty() {
            tracing::info!(
                messages = left.len(),
                "replaying webhook messages answered before the last stop but not prompted"
            );
        }
        let mut replays = JoinSet::new();
        let mut batch = left;
        loop {
            for (event_id, provider_id, message) in batch {
                let (ingress, journal) = (ingress.clone(), Rc::clone(journal));
                replays.spawn_local(async move {
                    // A failure before the claim (Cloud unreachable, another claimant's lease)
                    // is not seen by the pipeline's own stranding: mark it here.
                    // One that can never succeed (its channel is no longer configured) is
                    // dropped from the journal, not replayed at every start.
                    match ingress.submit_and_wait(&provider_id, message).await {
                        Err(failure) if failure.retryable => journal.strand(&event_id),
                        Err(_) => journal.forget(&event_id),
                        Ok(()) => {}
                    }
                });
            }
            tokio::time::sleep(STRANDED_RETRY).await;
            while replays.try_join_next().is_some() {}
            batch = journal.take_stranded();
        }
    }
}

fn finish_failed(inbound: &Inbound, provider_id: &str, kind: &'static str, started: Instant) {
    inbound.metrics.increment(Stat::Errors);
    inbound.metrics.increment_provider(provider_id, ProviderStat::InboundFailures);
    inbound.metrics.record_channel_message(kind, Direction::Inbound, Outcome::Error, Some(elapsed_ms(started)));
}

fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

impl Inbound {
    /// Steps 5–10: interaction or prompt. Sets `committed` once Cloud accepted the side effect.
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
            // The answer produces events: reopen the chat's stream if it closed meanwhile.
            let known = self.reuse.borrow().binding_of(provider_id, &message.target.chat_id, &message.target.thread_id);
            if let Some(binding) = known {
                self.sessions.ensure(binding, provider_id);
            }
            self.metrics.increment(Stat::InteractionsResolved);
            self.metrics.increment_provider(provider_id, ProviderStat::InteractionsResolved);
            if let Some(provider) = provider {
                if let Err(error) = provider
                    .answer_interaction(&intent.external_interaction_id, intent.decision.acknowledgement())
                    .await
                {
                    self.metrics.increment(Stat::Errors);
                    tracing::debug!(error = %crate::config::redact::Redacted(&error), "interaction acknowledgement failed");
                }
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
        let client = &*self.client;
        let text = message.text.trim();
        let workspace = config.external_workspace_id.clone();
        let key: ReuseKey = (
            SmolStr::new(provider_id),
            message.target.chat_id.clone(),
            message.target.thread_id.clone(),
            message.sender.provider_user_id.clone(),
        );
        // A follow-up reuses what the previous message established, but only while this process
        // knows the binding's cursor (an open or recently closed stream), so a reopened stream
        // never goes behind what was rendered.
        let reused =
            self.reuse.borrow().get(&key).filter(|e| self.sessions.known_cursor(&e.binding.binding_id).is_some());
        if let Some(established) = reused {
            self.sessions.ensure(established.binding.clone(), provider_id);
            let prompted = client.prompt(&self.prompt_input(config, message, event_id, &established)).await;
            match prompted {
                Ok(_) => {
                    self.reuse.borrow_mut().put(key, Established { at: Instant::now(), ..established });
                    return Ok(());
                }
                // A 4xx may mean the binding or identity changed: forget them, run the full path once.
                Err(error) if error.status.is_some_and(|s| (400..500).contains(&s)) && error.status != Some(429) => {
                    self.reuse.borrow_mut().forget(&key);
                }
                Err(error) => return Err(error),
            }
        }
        let identity = client
            .resolve_identity(&ResolveIdentity {
                provider: message.provider.clone(),
                external_user_id: message.sender.provider_user_id.clone(),
                channel_binding_id: config.channel_binding_id.clone(),
                external_workspace_id: Some(workspace.clone()),
                metadata: json!({"username": message.sender.username, "displayName": message.sender.display_name}),
            })
            .await?;
        let title = String::from_utf16_lossy(&text.encode_utf16().take(80).collect::<Vec<u16>>());
        let bound = client
            .bind_session(&BindSession {
                channel_binding_id: config.channel_binding_id.clone(),
                provider: message.provider.clone(),
                external_chat_id: message.target.chat_id.clone(),
                external_thread_id: message
                    .target
                    .thread_id
                    .clone()
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| message.target.chat_id.clone()),
                identity_id: Some(identity.identity_id.clone()),
                external_user_id: Some(message.sender.provider_user_id.clone()),
                external_workspace_id: workspace.clone(),
                title: Some(title),
            })
            .await?;
        self.sessions.ensure(bound.binding.clone(), provider_id);
        let established = Established { identity_id: identity.identity_id, binding: bound.binding, at: Instant::now() };
        client.prompt(&self.prompt_input(config, message, event_id, &established)).await?;
        self.reuse.borrow_mut().put(key, established);
        Ok(())
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
