//! A webhook's message on arrival, before its turn in its chat's lane: the step that lets the
//! webhook be answered. A chat's previous message may take seconds (a slow prompt), and
//! platforms slow down behind slow answers or send again after a few seconds, so nothing here
//! waits for the lane.
//!
//! - With a state directory the message is written to the inbound journal (`runtime::journal`)
//!   and answered at once; the claim, the prompt and the rendering follow in the chat's order. A
//!   redelivery of a message the journal still holds is absorbed.
//! - Without one, or when the journal cannot be written, the message is claimed in Cloud now (a
//!   claim carries no order) and answered with the claim's outcome; a redelivery finds the claim.
//!
//! Also here: the journal's replay at start, and the queueing again of journaled messages whose
//! claim or prompt failed for a passing reason.

use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::inbound::{finish_failed, Inbound, InboundError};
use super::journal::{key_of, Recorded};
use crate::channel::ingress::{Claim, Ingress};
use crate::channel::{InboundFailure, InboundMessage};
use crate::cloud::types::ProviderEventClaim;
use crate::metrics::{bounded_channel_kind, Direction, Outcome, ProviderStat, Stat};

/// How long a journaled webhook message whose claim or prompt failed for a passing reason waits
/// before it is queued again (its claim, if any, is completed as failed and retryable, so the
/// retry claims it).
pub const STRANDED_RETRY: Duration = Duration::from_secs(30);

/// What a webhook's message got on arrival.
pub(super) enum Receipt {
    /// Written to the journal and answered: claimed in its chat's turn.
    Journaled,
    /// Claimed in Cloud and answered (a duplicate claim included).
    Claimed(ProviderEventClaim),
    /// Answered and nothing more to do: a redelivery the journal holds, or a claim that failed
    /// (the platform retries).
    Settled,
}

impl Inbound {
    /// Journals or claims the message and answers its webhook through `answer`.
    pub(super) async fn receive(
        &self,
        provider_id: &str,
        message: &InboundMessage,
        answer: oneshot::Sender<Result<Claim, InboundFailure>>,
    ) -> Receipt {
        if let Some(journal) = &self.journal {
            match journal.record(&key_of(provider_id, message), provider_id, message).await {
                Ok(Recorded::Written) => {
                    let _ = answer.send(Ok(Claim::Recorded));
                    return Receipt::Journaled;
                }
                Ok(Recorded::AlreadyHeld) => {
                    self.metrics.increment(Stat::IncomingMessages);
                    self.metrics.increment_provider(provider_id, ProviderStat::IncomingMessages);
                    self.metrics.increment_provider(provider_id, ProviderStat::InboundDuplicates);
                    let _ = answer.send(Ok(Claim::Duplicate));
                    return Receipt::Settled;
                }
                Err(error) => {
                    if let Some(suppressed) =
                        self.warnings.allow("inbound journal write failed", tokio::time::Instant::now().into_std())
                    {
                        tracing::warn!(%error, provider = provider_id, suppressed, "the inbound journal could not be written; webhooks are answered once Cloud has claimed their event instead");
                    }
                }
            }
        }
        let claimed = match self.registry.get(provider_id).map(|r| r.config.clone()) {
            Some(config) => self.claim(&self.claim_request(&config, message), &config.channel_binding_id).await,
            None => Err(InboundError::UnknownProvider(provider_id.to_owned())),
        };
        match claimed {
            Ok(claim) => {
                let _ = answer.send(Ok(if claim.claimed { Claim::New } else { Claim::Duplicate }));
                Receipt::Claimed(claim)
            }
            Err(error) => {
                self.count_refused(provider_id);
                // Before the answer: a channel that guards against replays lets the retry in.
                if let Some(channel) = self.registry.get(provider_id).and_then(|r| r.channel()) {
                    channel.after_inbound(message, false).await;
                }
                let _ = answer.send(Err(error.to_failure()));
                Receipt::Settled
            }
        }
    }

    /// Counts a message whose claim failed on arrival (its webhook gets the failure).
    fn count_refused(&self, provider_id: &str) {
        self.metrics.increment(Stat::IncomingMessages);
        self.metrics.increment_provider(provider_id, ProviderStat::IncomingMessages);
        let kind =
            self.registry.get(provider_id).map_or("other", |r| bounded_channel_kind(r.config.kind, &r.config.id));
        self.metrics.record_channel_message(kind, Direction::Inbound, Outcome::Attempt, None);
        finish_failed(self, provider_id, kind, Instant::now());
    }

    /// Queues the messages a killed process answered but did not finish (see `runtime::journal`),
    /// then, every [`STRANDED_RETRY`], those whose claim or prompt failed for a passing reason
    /// since. Runs until the gateway stops.
    pub async fn replay_journal(&self, ingress: &Ingress) {
        let Some(journal) = &self.journal else { return };
        let left = journal.left_behind();
        if !left.is_empty() {
            tracing::info!(
                messages = left.len(),
                "replaying webhook messages answered before the last stop but not finished (inbound journal)"
            );
        }
        let mut replays = JoinSet::new();
        let mut batch = left;
        loop {
            for (key, provider_id, message) in batch {
                let (ingress, journal) = (ingress.clone(), Rc::clone(journal));
                replays.spawn_local(async move {
                    // A failure that never reached the pipeline (the queue closed) is marked here;
                    // one that can never succeed (its channel is no longer configured) is dropped
                    // from the journal, not replayed at every start.
                    match ingress.submit_and_wait(&provider_id, message).await {
                        Err(failure) if failure.retryable => journal.strand(&key),
                        Err(_) => journal.forget(&key),
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
