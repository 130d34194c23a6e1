//! The inbound path (gateway.md §3.2): claim the provider event durably in Cloud, route
//! interactions, resolve the sender, bind the thread to a session, open its stream, prompt with
//! the claim's event id as the idempotency key, and complete the claim. A duplicate claim (also
//! after a restart) is a silent no-op; a failure before the prompt completes the claim as failed
//! (retryable when transient) so a redelivery can try again, and a permanent one tells the user.

use std::rc::Rc;
use std::time::Instant;

use serde_json::json;

use super::interactions::{intent_of, resolution};
use super::Gateway;
use crate::cloud::client::{
    BindSession, ClaimProviderEvent, CloudClient, CompleteProviderEvent, PromptInput, ResolveIdentity,
};
use crate::cloud::CloudError;
use crate::metrics::{bounded_channel_kind, Direction, Outcome, ProviderStat, Stat};
use crate::providers::{InboundMessage, Provider, SendOptions};

/// Lease Cloud puts on an inbound claim.
const CLAIM_TTL_MS: u64 = 300_000;
const DROPPED_NOTICE: &str = "Sorry — I could not process that message. Please try again.";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("Unknown gateway provider {0}.")]
    UnknownProvider(String),
    #[error("No Cloud client is attached to this gateway.")]
    NoCloud,
    #[error("{0}")]
    Cloud(#[from] CloudError),
}

impl InboundError {
    /// A Cloud failure worth trying again (network, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        matches!(self, InboundError::Cloud(error) if error.is_retryable())
    }
}

/// Handles one normalised message from provider `provider_id`.
pub async fn handle_message(
    gateway: &Rc<Gateway>,
    provider_id: &str,
    message: InboundMessage,
) -> Result<(), InboundError> {
    let started = Instant::now();
    gateway.metrics.increment(Stat::IncomingMessages);
    gateway.metrics.increment_provider(provider_id, ProviderStat::IncomingMessages);
    let Some((config, provider)) =
        gateway.providers.borrow().get(provider_id).map(|r| (r.config.clone(), r.provider.clone()))
    else {
        return Err(InboundError::UnknownProvider(provider_id.to_owned()));
    };
    let kind = bounded_channel_kind(config.kind, &config.id);
    gateway.metrics.record_channel_message(kind, Direction::Inbound, Outcome::Attempt, None);
    let client = gateway.client.clone().ok_or(InboundError::NoCloud)?;
    let claimed_by = gateway.config.claimed_by();
    let workspace = config.external_workspace_id.clone();
    let claim = client
        .claim_provider_event(&ClaimProviderEvent {
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
        })
        .await;
    let claim = match claim {
        Ok(claim) => claim,
        Err(error) => {
            finish_failed(gateway, provider_id, kind, started);
            return Err(error.into());
        }
    };
    if !claim.claimed {
        gateway.metrics.increment_provider(provider_id, ProviderStat::InboundDuplicates);
        gateway.metrics.record_channel_message(kind, Direction::Inbound, Outcome::Ignored, Some(elapsed_ms(started)));
        return Ok(());
    }
    let event_id = claim.event.event_id.clone();
    let mut committed = false;
    let result =
        process(gateway, &client, provider.as_deref(), provider_id, &config, &message, &event_id, &mut committed).await;
    let complete = |status: &'static str, retryable: Option<bool>, last_error: Option<String>| CompleteProviderEvent {
        claimed_by: claimed_by.clone(),
        status,
        channel_binding_id: config.channel_binding_id.clone(),
        retryable,
        last_error,
    };
    match result {
        Ok(outcome) => {
            // The prompt (or interaction) is committed; a failed completion must not undo that.
            if let Err(error) = client.complete_provider_event(&event_id, &complete("processed", None, None)).await {
                tracing::warn!(error = %error, "completing a processed provider event failed; a redelivery stays a duplicate");
            }
            gateway.metrics.record_channel_message(kind, Direction::Inbound, outcome, Some(elapsed_ms(started)));
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
                gateway.metrics.record_channel_message(kind, Direction::Inbound, outcome, Some(elapsed_ms(started)));
                if !retryable {
                    if let Some(provider) = provider {
                        gateway.metrics.record_channel_message(kind, Direction::Outbound, Outcome::Attempt, None);
                        let notice = provider
                            .send_text(
                                &message.target,
                                DROPPED_NOTICE,
                                &SendOptions { delivery_id: Some(format!("{event_id}:dropped")) },
                            )
                            .await;
                        let outcome = if notice.is_ok() { Outcome::Success } else { Outcome::Error };
                        gateway.metrics.record_channel_message(kind, Direction::Outbound, outcome, None);
                    }
                }
            } else {
                gateway.metrics.record_channel_message(
                    kind,
                    Direction::Inbound,
                    Outcome::Error,
                    Some(elapsed_ms(started)),
                );
            }
            gateway.metrics.increment(Stat::Errors);
            gateway.metrics.increment_provider(provider_id, ProviderStat::InboundFailures);
            tracing::warn!(provider = provider_id, retryable, error = %crate::config::redact::redact_text(&error.to_string()), "inbound message failed");
            Err(error)
        }
    }
}

fn finish_failed(gateway: &Gateway, provider_id: &str, kind: &'static str, started: Instant) {
    gateway.metrics.increment(Stat::Errors);
    gateway.metrics.increment_provider(provider_id, ProviderStat::InboundFailures);
    gateway.metrics.record_channel_message(kind, Direction::Inbound, Outcome::Error, Some(elapsed_ms(started)));
}

fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// Steps 5–10: interaction or prompt. Sets `committed` once Cloud accepted the side effect.
#[allow(clippy::too_many_arguments)]
async fn process(
    gateway: &Rc<Gateway>,
    client: &CloudClient,
    provider: Option<&Provider>,
    provider_id: &str,
    config: &crate::config::ProviderConfig,
    message: &InboundMessage,
    event_id: &str,
    committed: &mut bool,
) -> Result<Outcome, InboundError> {
    let workspace = config.external_workspace_id.clone();
    if let Some(intent) = intent_of(message) {
        client.resolve_interaction(&resolution(message, &intent, workspace)).await?;
        *committed = true;
        gateway.metrics.increment(Stat::InteractionsResolved);
        gateway.metrics.increment_provider(provider_id, ProviderStat::InteractionsResolved);
        if let Some(provider) = provider {
            if let Err(error) =
                provider.answer_interaction(&intent.external_interaction_id, intent.decision.acknowledgement()).await
            {
                gateway.metrics.increment(Stat::Errors);
                tracing::debug!(%error, "interaction acknowledgement failed");
            }
        }
        return Ok(Outcome::Success);
    }
    let text = message.text.trim();
    if text.is_empty() {
        return Ok(Outcome::Ignored);
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
    super::sessions::ensure(gateway, bound.binding.clone(), provider_id);
    client
        .prompt(&PromptInput {
            binding_id: bound.binding.binding_id.clone(),
            text: text.to_owned(),
            agent: config.default_agent.clone(),
            idempotency_key: event_id.into(),
            identity_id: Some(identity.identity_id),
            provider: message.provider.clone(),
            external_workspace_id: Some(workspace),
            external_user_id: message.sender.provider_user_id.clone(),
        })
        .await?;
    *committed = true;
    gateway.metrics.increment(Stat::PromptedMessages);
    gateway.metrics.increment_provider(provider_id, ProviderStat::PromptedMessages);
    Ok(Outcome::Success)
}
