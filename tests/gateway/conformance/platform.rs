//! What the battery needs from a channel: its fake platform server started and wired into the
//! gateway, a person writing, the messages the platform received, and scripted send failures.

use tokio::time::Instant;

use crate::support::test_gateway::TestGateway;

/// A send failure the fake platform answers once, in the platform's own terms.
pub enum Failure {
    /// "Too many requests, try again in `retry_after_secs`" (HTTP 429, SMTP 421, …).
    RateLimited { retry_after_secs: u64 },
    /// A refusal that no retry changes (a chat that is gone, a mailbox that does not exist, …).
    Permanent,
}

/// One message the platform received from the gateway (a send or an edit).
#[derive(Debug, Clone)]
pub struct Sent {
    pub chat: String,
    pub text: String,
    /// How many buttons it carried.
    pub buttons: usize,
    /// When it arrived, on the tokio clock (when it was read, for a fake that keeps no time: those
    /// channels cannot edit, and only edits are timed).
    pub at: Instant,
}

/// A channel as the battery drives it, through its fake platform server only.
#[allow(async_fn_in_trait)] // static dispatch only: the battery is generic over the platform
pub trait Platform: Sized {
    /// The binding the dev Cloud seeds for this channel; deliveries are enqueued for it.
    const BINDING: &'static str;
    /// The longest text one message may carry on this channel.
    const MAX_TEXT: usize;
    /// Whether approvals show as buttons (otherwise as text naming the commands to type).
    const BUTTONS: bool;

    /// Starts the fake platform server and adds the settings that point the gateway at it.
    async fn start(gateway: &mut TestGateway) -> Self;

    /// A chat id of this platform, one per `n`.
    fn chat(n: u32) -> String;

    /// A person writes `text` in `chat`; `event` is the platform's id of the message, the same
    /// when the platform delivers it again.
    async fn user_writes(&self, gateway: &TestGateway, chat: &str, event: u32, text: &str);

    /// What the platform does about a message the gateway did not finish: a webhook sender posts
    /// it again (the default); a polled platform serves it again by itself.
    async fn redeliver(&self, gateway: &TestGateway, chat: &str, event: u32, text: &str) {
        self.user_writes(gateway, chat, event, text).await;
    }

    /// Every message send that reached the platform, in order (refused attempts included).
    fn sent(&self) -> Vec<Sent>;

    /// Every edit of a sent message that reached the platform, in order.
    fn edits(&self) -> Vec<Sent>;

    /// The next message send is answered with `failure`.
    fn fail_next_send(&self, failure: Failure);

    /// Whether a scripted failure is still waiting for a send.
    fn failure_pending(&self) -> bool;
}
