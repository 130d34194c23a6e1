//! The delivery events an operator acts on, one log line each, with the same fields every time
//! (`binding`, `delivery`, `reason`, `attempt`, `next_attempt`): a dead letter, a send retried
//! after a platform rate limit or error or a Cloud error, a circuit opened or closed. Each
//! reason is rate-limited on its own, so a storm is one line a minute plus a count of the lines
//! held back (`suppressed`). Platform and Cloud texts are redacted before they are logged.

use std::time::Duration;

use crate::cloud::DeliveryRecord;
use crate::config::redact::redact_text;
use crate::logging::WarnLimiter;

/// Why a delivery was retried or dead-lettered, as the `reason` field says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The platform asked to slow down (429); the send waits, no attempt is used.
    RateLimited,
    /// The platform failed (5xx, network, timeout).
    PlatformError,
    /// The platform refused the message for good (chat not found, bot blocked, too large).
    Rejected,
    /// No channel is configured for the delivery's binding.
    NoChannel,
    /// A Cloud call about the delivery failed and is retried.
    CloudError,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::RateLimited => "rate_limited",
            Reason::PlatformError => "platform_error",
            Reason::Rejected => "rejected",
            Reason::NoChannel => "no_channel",
            Reason::CloudError => "cloud_error",
        }
    }

    fn key(self, dead: bool) -> &'static str {
        match (self, dead) {
            (Reason::RateLimited, _) => "delivery-retry-rate_limited",
            (Reason::PlatformError, false) => "delivery-retry-platform_error",
            (Reason::CloudError, _) => "delivery-retry-cloud_error",
            (Reason::PlatformError, true) => "delivery-dead-platform_error",
            (Reason::Rejected, _) => "delivery-dead-rejected",
            (Reason::NoChannel, _) => "delivery-dead-no_channel",
        }
    }
}

/// The dispatcher's operator log.
pub struct DeliveryLog {
    limiter: WarnLimiter,
}

impl Default for DeliveryLog {
    fn default() -> Self {
        Self { limiter: WarnLimiter::new(Duration::from_secs(60)) }
    }
}

impl DeliveryLog {
    /// A delivery dead-lettered: it will not be sent.
    pub fn dead_letter(&self, delivery: &DeliveryRecord, reason: Reason, attempt: u64, error: &str) {
        let Some(suppressed) = self.limiter.allow(reason.key(true), std::time::Instant::now()) else { return };
        tracing::warn!(
            binding = %delivery.channel_binding_id,
            delivery = %delivery.delivery_id,
            reason = reason.as_str(),
            attempt,
            next_attempt = "none",
            suppressed,
            error = %redact_text(error),
            "delivery dead-lettered; it will not be sent"
        );
    }

    /// A send retried after `next_attempt` (a wait, or Cloud's `nextAttemptAt`).
    pub fn retry(&self, delivery: &DeliveryRecord, reason: Reason, attempt: u64, next_attempt: &str, error: &str) {
        let Some(suppressed) = self.limiter.allow(reason.key(false), std::time::Instant::now()) else { return };
        tracing::info!(
            binding = %delivery.channel_binding_id,
            delivery = %delivery.delivery_id,
            reason = reason.as_str(),
            attempt,
            next_attempt,
            suppressed,
            error = %redact_text(error),
            "delivery send will be retried"
        );
    }
}

/// A channel's delivery circuit opened (always logged: it is rare and an operator acts on it).
pub fn circuit_opened(provider: &str, failures: u32, open_for: Duration, error: &str) {
    tracing::warn!(
        provider,
        reason = "platform_error",
        failures,
        next_attempt = %format!("in {} s", open_for.as_secs()),
        error = %redact_text(error),
        "delivery circuit opened: the channel's sends keep failing; its deliveries wait and are not claimed meanwhile"
    );
}

/// A channel's delivery circuit closed: a send went out again.
pub fn circuit_closed(provider: &str) {
    tracing::info!(provider, "delivery circuit closed: the channel sends again");
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_storm_is_one_line_per_reason_with_its_fields_and_no_secret() {
        let capture = crate::util::test_logs::LogCapture::start();
        {
            let log = DeliveryLog::default();
            let delivery: DeliveryRecord =
                serde_json::from_value(serde_json::json!({"deliveryId": "d-1", "channelBindingId": "telegram"}))
                    .unwrap();
            for _ in 0..50 {
                log.retry(&delivery, Reason::RateLimited, 1, "in 3000 ms", "429: Too Many Requests");
            }
            log.retry(&delivery, Reason::PlatformError, 2, "2026-12-07T00:00:01.000Z", "502: Bad Gateway");
            // A generic token shape: a kind's own prefixes (Slack's) are learnt only once some
            // configuration was resolved in this process (this test alone resolves none), and
            // exist only in builds with that kind.
            log.dead_letter(&delivery, Reason::Rejected, 1, "403 for token ghp_123456789012abcdefghijkl");
            circuit_opened("telegram", 5, Duration::from_secs(30), "502");
            circuit_closed("telegram");
        }
        let text = capture.lines().join("\n");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[0].contains(
                "binding=telegram delivery=d-1 reason=\"rate_limited\" attempt=1 next_attempt=\"in 3000 ms\""
            ),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("reason=\"platform_error\" attempt=2"), "{}", lines[1]);
        assert!(lines[2].contains("WARN") && lines[2].contains("reason=\"rejected\""), "{}", lines[2]);
        assert!(!text.contains("abcdefghijkl"), "redacted: {text}");
        assert!(lines[3].contains("delivery circuit opened") && lines[4].contains("delivery circuit closed"));
    }
}
