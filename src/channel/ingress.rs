//! The one inbound queue: webhook handlers, pollers and the CLI reader push normalised messages;
//! the runtime drains it (claim in Cloud, identity, session, prompt) with bounded concurrency,
//! one chat at a time in order.
//!
//! Each item carries up to two reply slots. A webhook waits only for its message's receipt, which
//! the runtime makes on arrival, not in the chat's turn: the message written to the inbound
//! journal (with a state directory), else its Cloud claim (one round trip). Processing goes on
//! after the answer. A poller waits for the whole pipeline, because it must not acknowledge an
//! update whose processing failed transiently (it retries it instead). A full queue refuses
//! webhooks at once (they answer 503 with `Retry-After`, and the platform retries) and makes
//! pollers wait (polling pauses).

use smol_str::SmolStr;
use tokio::sync::{mpsc, oneshot};

use super::InboundMessage;

/// How an item's receipt came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Written durably to the inbound journal: this gateway claims and processes it.
    Recorded,
    /// Claimed now: this gateway processes it.
    New,
    /// Already claimed or processed: nothing more to do.
    Duplicate,
}

/// Why an item failed; `retryable` when trying the same event again may succeed (Cloud was
/// unreachable or busy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InboundFailure {
    pub retryable: bool,
    pub message: String,
    /// When trying again makes sense (another claimant's lease ends then).
    pub retry_after: Option<std::time::Duration>,
}

impl InboundFailure {
    fn queue_closed() -> Self {
        Self {
            retryable: true,
            message: "The gateway is shutting down; inbound intake is closed.".into(),
            retry_after: None,
        }
    }
}

/// One message in the queue.
pub struct InboundItem {
    /// The configured provider id that received it.
    pub provider_id: SmolStr,
    pub message: InboundMessage,
    /// Answered at the receipt: journaled, or claimed in Cloud (webhooks).
    pub claimed: Option<oneshot::Sender<Result<Claim, InboundFailure>>>,
    /// Answered when the pipeline is done (pollers, the CLI).
    pub finished: Option<oneshot::Sender<Result<(), InboundFailure>>>,
}

/// Why a webhook's message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full: try again shortly.
    Full,
    /// The gateway is draining.
    Closed,
}

/// The sending side; cheap to clone, one per producer.
#[derive(Clone)]
pub struct Ingress {
    queue: mpsc::Sender<InboundItem>,
}

/// The consuming side, owned by the runtime.
pub type IngressReceiver = mpsc::Receiver<InboundItem>;

impl Ingress {
    /// A queue holding at most `depth` waiting messages.
    pub fn bounded(depth: usize) -> (Self, IngressReceiver) {
        let (queue, receiver) = mpsc::channel(depth.max(1));
        (Self { queue }, receiver)
    }

    /// Queues a webhook's message without waiting for room; the receiver yields its receipt.
    pub fn try_submit(
        &self,
        provider_id: &str,
        message: InboundMessage,
    ) -> Result<oneshot::Receiver<Result<Claim, InboundFailure>>, Refused> {
        let (claimed, receiver) = oneshot::channel();
        let item = InboundItem { provider_id: provider_id.into(), message, claimed: Some(claimed), finished: None };
        match self.queue.try_send(item) {
            Ok(()) => Ok(receiver),
            Err(mpsc::error::TrySendError::Full(_)) => Err(Refused::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Refused::Closed),
        }
    }

    /// Queues a message, waiting for room, and waits until the pipeline is done with it.
    pub async fn submit_and_wait(&self, provider_id: &str, message: InboundMessage) -> Result<(), InboundFailure> {
        let (finished, receiver) = oneshot::channel();
        let item = InboundItem { provider_id: provider_id.into(), message, claimed: None, finished: Some(finished) };
        self.queue.send(item).await.map_err(|_| InboundFailure::queue_closed())?;
        receiver.await.unwrap_or_else(|_| Err(InboundFailure::queue_closed()))
    }
}

/// Waits for a receipt; a dropped item (the drain began before it was taken in) is a retryable
/// failure, so the platform sends it again to the next process.
pub async fn claim_result(receiver: oneshot::Receiver<Result<Claim, InboundFailure>>) -> Result<Claim, InboundFailure> {
    receiver.await.unwrap_or_else(|_| Err(InboundFailure::queue_closed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> InboundMessage {
        InboundMessage::text_for_tests("m", "hi")
    }

    #[tokio::test]
    async fn a_full_queue_refuses_webhooks_and_a_dropped_item_is_retryable() {
        let (ingress, mut receiver) = Ingress::bounded(1);
        let first = ingress.try_submit("p", message()).unwrap();
        assert_eq!(ingress.try_submit("p", message()).unwrap_err(), Refused::Full);
        let item = receiver.recv().await.unwrap();
        assert_eq!(item.provider_id, "p");
        drop(item);
        let failure = claim_result(first).await.unwrap_err();
        assert!(failure.retryable);
        drop(receiver);
        assert_eq!(ingress.try_submit("p", message()).unwrap_err(), Refused::Closed);
    }
}
