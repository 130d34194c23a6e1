//! Starting a bot and, in polling mode, long polling:
//! `getMe` (401 → an auth reason and one log line, no retry storm), then `getWebhookInfo` and
//! `deleteWebhook` (pending updates kept) only when a webhook is set, then `getUpdates` with the
//! offset after the last handled update. Updates are handled one at a time; a transient failure of
//! the pipeline retries the same update (Cloud's claim makes that safe) instead of losing it.
//! 409 (another poller) backs off with a `conflict` reason; 429 waits exactly `retry_after`.
//! In webhook mode it registers the webhook, unless one that is not ours is set.

use std::time::Duration;

use serde_json::{json, Value};

use super::api::TelegramError;
use super::TelegramProvider;
use crate::channel::{ChannelContext, HealthReporter, InboundMessage, Ingress};
use crate::net::backoff::Backoff;
use crate::shutdown::DrainSignal;

/// `getUpdates` long-poll timeout, in seconds.
const POLL_TIMEOUT_SECS: u64 = 30;
/// The HTTP timeout of a long poll: the poll timeout plus a margin (the stall watchdog).
const POLL_HTTP_TIMEOUT: Duration = Duration::from_secs(POLL_TIMEOUT_SECS + 15);
const ALLOWED_UPDATES: [&str; 2] = ["message", "callback_query"];
/// The shortest time between two `getUpdates` calls that returned nothing.
const MIN_EMPTY_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What the bot's background task works with: its health, the drain and the inbound queue.
struct Poller {
    bot: TelegramProvider,
    health: HealthReporter,
    drain: DrainSignal,
    ingress: Ingress,
    /// A conflict or a stall repeats on every poll; it is one line when it starts and one when it ends.
    trouble: PollTrouble,
}

/// A receiving problem that lasts over many polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// 409: another `getUpdates` poller or a webhook holds the bot's updates.
    Conflict,
    /// `getUpdates` got no answer (a network failure or the stall watchdog).
    Stalled,
}

/// Logs a conflict or a stall once when it starts and once when it ends (with how long it lasted
/// and how many polls failed), however many polls fail in between.
#[derive(Debug, Default)]
struct PollTrouble {
    current: Option<(Trouble, tokio::time::Instant, u64)>,
}

impl PollTrouble {
    fn failed(&mut self, provider: &str, trouble: Trouble) {
        if let Some((kind, _, polls)) = &mut self.current {
            if *kind == trouble {
                *polls += 1;
                return;
            }
        }
        self.ended(provider);
        match trouble {
            Trouble::Conflict => tracing::warn!(
                provider,
                "Telegram polling conflict started: another getUpdates poller or a webhook is using this bot token. Receiving is paused, sending goes on; stop the other poller, or delete its webhook"
            ),
            Trouble::Stalled => tracing::warn!(
                provider,
                "Telegram polling stalled: getUpdates got no answer; retrying with back-off"
            ),
        }
        self.current = Some((trouble, tokio::time::Instant::now(), 1));
    }

    /// A poll succeeded: whatever was wrong is over.
    fn ended(&mut self, provider: &str) {
        let Some((trouble, since, failed_polls)) = self.current.take() else { return };
        let lasted_s = since.elapsed().as_secs();
        match trouble {
            Trouble::Conflict => {
                tracing::info!(provider, failed_polls, lasted_s, "Telegram polling conflict ended; receiving again")
            }
            Trouble::Stalled => tracing::info!(provider, failed_polls, lasted_s, "Telegram polling resumed"),
        }
    }
}

impl Poller {
    /// Waits `delay` unless the drain starts; `false` when it did.
    async fn pause(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.drain.started() => false,
        }
    }
}

/// Calls until success, a permanent error or the drain; transient errors back off (429 waits
/// exactly `retry_after`).
async fn call_until_ok(
    poller: &mut Poller,
    method: &'static str,
    body: &Value,
) -> Option<Result<Value, TelegramError>> {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        match poller.bot.api().call(method, body, Duration::from_secs(30)).await {
            Ok(value) => return Some(Ok(value)),
            Err(error) if error.is_transient() => {
                let wait = match &error {
                    TelegramError::Api { code: 429, retry_after, .. } => Duration::from_secs(retry_after.unwrap_or(3)),
                    _ => backoff.next_delay().max(Duration::from_millis(200)),
                };
                poller.health.set_receiving(Some(format!("Telegram is unreachable ({error}); retrying.")));
                if !poller.pause(wait).await {
                    return None;
                }
            }
            Err(error) => return Some(Err(error)),
        }
    }
}

/// Runs the bot until the drain: identity, webhook handling, then polling (polling mode).
pub async fn run(bot: TelegramProvider, context: ChannelContext) {
    let id = bot.id().to_owned();
    let mut poller = Poller {
        bot: bot.clone(),
        health: context.health,
        drain: context.drain,
        ingress: context.ingress,
        trouble: PollTrouble::default(),
    };
    let me = match call_until_ok(&mut poller, "getMe", &json!({})).await {
        None => return,
        Some(Ok(me)) => me,
        Some(Err(error)) => {
            let reason = if matches!(error.code(), Some(401 | 404)) {
                format!("auth: Telegram rejected the bot token ({error}).")
            } else {
                error.to_string()
            };
            tracing::error!(provider = %id, "{}", crate::config::redact::redact_text(&reason));
            poller.health.fail_start(reason);
            return;
        }
    };
    bot.set_bot(
        me.get("id").and_then(Value::as_i64).unwrap_or(0),
        me.get("username").and_then(Value::as_str).map(str::to_owned),
    );
    poller.health.started();
    let Some(info) = call_until_ok(&mut poller, "getWebhookInfo", &json!({})).await else { return };
    let current = info.ok().and_then(|i| i.get("url").and_then(Value::as_str).map(str::to_owned)).unwrap_or_default();
    match bot.webhook() {
        Some(webhook) => {
            if !current.is_empty() && current != webhook.url {
                let reason = format!(
                    "webhook: Telegram delivers to another URL ({}); not overwriting it. Delete that webhook or point OPEN_COWORK_GATEWAY_PUBLIC_URL at it.",
                    crate::config::redact::redact_text(&current)
                );
                tracing::warn!(provider = %id, "{reason}");
                poller.health.set_receiving(Some(reason));
                return;
            }
            let body = json!({"url": webhook.url, "secret_token": webhook.secret.expose(), "allowed_updates": ALLOWED_UPDATES});
            match call_until_ok(&mut poller, "setWebhook", &body).await {
                None => {}
                Some(Ok(_)) => poller.health.set_receiving(None),
                Some(Err(error)) => {
                    let reason = format!("setWebhook failed: {error}");
                    tracing::error!(provider = %id, "{}", crate::config::redact::redact_text(&reason));
                    poller.health.fail_start(reason);
                }
            }
        }
        None => {
            if !current.is_empty() {
                // Polling and a webhook exclude each other; pending updates are kept.
                if let Some(Err(error)) =
                    call_until_ok(&mut poller, "deleteWebhook", &json!({"drop_pending_updates": false})).await
                {
                    poller.health.set_receiving(Some(format!("deleteWebhook failed: {error}")));
                    return;
                }
            }
            poll(&mut poller).await;
        }
    }
}

async fn poll(poller: &mut Poller) {
    let bot = poller.bot.clone();
    let id = bot.id().to_owned();
    let mut offset: i64 = 0;
    let mut first = true;
    let mut backoff = PollBackoff::new();
    let mut drain = poller.drain.clone();
    poller.health.set_receiving(None);
    'polling: loop {
        let mut body = json!({"offset": offset, "timeout": POLL_TIMEOUT_SECS});
        if first {
            body["allowed_updates"] = json!(ALLOWED_UPDATES);
        }
        let polled_at = tokio::time::Instant::now();
        let result = tokio::select! {
            result = bot.api().call("getUpdates", &body, POLL_HTTP_TIMEOUT) => result,
            _ = drain.started() => break 'polling,
        };
        let updates = match result {
            Ok(Value::Array(updates)) => updates,
            Ok(_) => Vec::new(),
            Err(error) => {
                let Some((reason, wait)) = poll_failure(poller, &error, &mut backoff) else { return };
                poller.health.set_receiving(Some(reason));
                if !poller.pause(wait).await {
                    break 'polling;
                }
                continue;
            }
        };
        first = false;
        poller.trouble.ended(&id);
        backoff.reset();
        poller.health.set_receiving(None);
        // A server that answers an empty long poll at once (an emulator, a proxy) must not turn
        // polling into a busy loop: empty answers are at least a second apart.
        if updates.is_empty() && !poller.pause(MIN_EMPTY_POLL_INTERVAL.saturating_sub(polled_at.elapsed())).await {
            break 'polling;
        }
        for update in updates {
            let Some(update_id) = update.get("update_id").and_then(Value::as_i64) else { continue };
            bot.inner.counters.count("update");
            if let Some(message) = bot.map_update(&update).await {
                if !submit(poller, update_id, message).await {
                    // Not acknowledged: Telegram serves it again after a restart.
                    break 'polling;
                }
            }
            offset = update_id + 1;
        }
    }
    // Acknowledge what was handled, so a restart does not see it again (the claim would skip it anyway).
    if offset > 0 {
        let _ = bot
            .api()
            .call("getUpdates", &json!({"offset": offset, "limit": 1, "timeout": 0}), Duration::from_secs(5))
            .await;
    }
}

/// The waits of a polling loop after failed polls: one for errors, a slower one for conflicts
/// (another poller will not go away in a second); a successful poll resets both.
struct PollBackoff {
    errors: Backoff,
    conflicts: Backoff,
}

impl PollBackoff {
    fn new() -> Self {
        Self {
            errors: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
            conflicts: Backoff::new(Duration::from_secs(5), Duration::from_secs(60)),
        }
    }

    fn reset(&mut self) {
        self.errors.reset();
        self.conflicts.reset();
    }

    fn next_error_delay(&mut self) -> Duration {
        self.errors.next_delay().max(Duration::from_millis(200))
    }
}

/// What a failed `getUpdates` means: the reason receiving shows and how long to wait before the
/// next poll, or `None` when Telegram rejected the token (polling ends; nothing to retry).
fn poll_failure(poller: &mut Poller, error: &TelegramError, backoff: &mut PollBackoff) -> Option<(String, Duration)> {
    let id = poller.bot.id();
    Some(match error {
        TelegramError::Api { code: 401 | 404, .. } => {
            let reason = format!("auth: Telegram rejected the bot token ({error}).");
            tracing::error!(provider = %id, "{}", crate::config::redact::redact_text(&reason));
            poller.health.set_both(Some(reason));
            return None;
        }
        TelegramError::Api { code: 409, .. } => {
            poller.trouble.failed(id, Trouble::Conflict);
            let wait = backoff.conflicts.next_delay().max(Duration::from_secs(1));
            ("conflict: another poller or a webhook is using this bot token.".to_owned(), wait)
        }
        TelegramError::Api { code: 429, retry_after, .. } => {
            poller.bot.inner.counters.count("rate_limited");
            ("rate-limited by Telegram.".to_owned(), Duration::from_secs(retry_after.unwrap_or(3)))
        }
        TelegramError::Network { .. } => {
            poller.trouble.failed(id, Trouble::Stalled);
            ("polling stalled: Telegram did not answer getUpdates.".to_owned(), backoff.next_error_delay())
        }
        _ => (format!("polling failed: {error}"), backoff.next_error_delay()),
    })
}

/// Hands one update's message to the inbound pipeline and waits for it. A transient failure
/// keeps the update and tries again (Cloud's claim makes the retry safe), showing receiving as
/// degraded meanwhile; a permanent one moves on. `false` when the drain started first.
async fn submit(poller: &mut Poller, update_id: i64, message: InboundMessage) -> bool {
    let id = poller.bot.id().to_owned();
    let mut retry = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut degraded = false;
    loop {
        match poller.ingress.submit_and_wait(&id, message.clone()).await {
            Ok(()) => {
                // The retried work went through: the reason goes with it.
                if degraded {
                    poller.health.set_receiving(None);
                }
                return true;
            }
            Err(error) if error.retryable => {
                degraded = true;
                poller
                    .health
                    .set_receiving(Some(format!("degraded: retrying update {update_id} after a Cloud error.")));
                let wait = error.retry_after.unwrap_or_else(|| retry.next_delay());
                if !poller.pause(wait).await {
                    return false;
                }
            }
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::test_logs::LogCapture;

    /// A conflict that lasts 40 polls is two lines (started, ended with the count), and a stall
    /// after it two more: an operator following the journal sees each start and end, no storm.
    #[tokio::test(start_paused = true)]
    async fn a_conflict_and_a_stall_are_one_line_when_they_start_and_one_when_they_end() {
        let logs = LogCapture::start();
        let mut trouble = PollTrouble::default();
        for _ in 0..40 {
            trouble.failed("telegram", Trouble::Conflict);
            tokio::time::advance(Duration::from_secs(5)).await;
        }
        trouble.ended("telegram");
        trouble.ended("telegram");
        trouble.failed("telegram", Trouble::Stalled);
        trouble.failed("telegram", Trouble::Stalled);
        trouble.ended("telegram");
        let lines = logs.lines();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].contains("WARN") && lines[0].contains("polling conflict started"), "{}", lines[0]);
        assert!(lines[1].contains("INFO") && lines[1].contains("conflict ended"), "{}", lines[1]);
        assert!(lines[1].contains("failed_polls=40") && lines[1].contains("lasted_s=200"), "{}", lines[1]);
        assert!(lines[2].contains("WARN") && lines[2].contains("polling stalled"), "{}", lines[2]);
        assert!(lines[3].contains("polling resumed") && lines[3].contains("failed_polls=2"), "{}", lines[3]);
    }
}
