//! What the dev Cloud saw that its store does not keep, for a harness in another process to
//! check against (`GET /dev/records`): every ack call per delivery, with the status asked for
//! and whether Cloud took it, and the prompt calls per idempotency key, with how many of them
//! created a command (the others were absorbed by the key). Bounded like the store.

use std::collections::HashMap;

use super::store::MAX_RECORDS;

/// Ack calls remembered per delivery; later ones are only counted.
const MAX_ACKS_PER_DELIVERY: usize = 32;

/// One ack call that reached the handler (an injected failure never does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckCall {
    /// `sent`, `failed` or `dead`, as asked.
    pub status: String,
    /// Cloud matched the caller's claim and settled the delivery (200); `false` is a 404.
    pub accepted: bool,
    /// The body's `nextAttemptAt` as sent: `None` when the field was absent, `Some(Null)` for
    /// an explicit `null` (what a `dead` ack must send).
    pub next_attempt_at: Option<serde_json::Value>,
}

/// The ack calls of one delivery.
#[derive(Debug, Default, Clone)]
pub struct DeliveryAcks {
    pub calls: Vec<AckCall>,
    /// Calls beyond [`MAX_ACKS_PER_DELIVERY`].
    pub uncounted: u64,
}

/// The prompt calls that carried one idempotency key.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PromptCalls {
    pub calls: u64,
    /// Calls that created a command; more than one would be a broken idempotency key.
    pub commands: u64,
}

#[derive(Debug, Default)]
pub struct Records {
    acks: HashMap<String, DeliveryAcks>,
    prompts: HashMap<String, PromptCalls>,
    /// Calls not recorded because a table reached [`MAX_RECORDS`].
    pub overflow: u64,
}

impl Records {
    /// Notes an ack call for `delivery_id`.
    pub fn ack(
        &mut self,
        delivery_id: &str,
        status: &str,
        accepted: bool,
        next_attempt_at: Option<&serde_json::Value>,
    ) {
        if !self.acks.contains_key(delivery_id) && self.acks.len() >= MAX_RECORDS {
            self.overflow += 1;
            return;
        }
        let entry = self.acks.entry(delivery_id.to_owned()).or_default();
        if entry.calls.len() < MAX_ACKS_PER_DELIVERY {
            entry.calls.push(AckCall {
                status: status.to_owned(),
                accepted,
                next_attempt_at: next_attempt_at.cloned(),
            });
        } else {
            entry.uncounted += 1;
        }
    }

    /// Notes a prompt call with `key` (empty without one) and whether it created a command.
    pub fn prompt(&mut self, key: &str, created: bool) {
        if !self.prompts.contains_key(key) && self.prompts.len() >= MAX_RECORDS {
            self.overflow += 1;
            return;
        }
        let entry = self.prompts.entry(key.to_owned()).or_default();
        entry.calls += 1;
        entry.commands += u64::from(created);
    }

    /// The ack calls of one delivery.
    pub fn acks_of(&self, delivery_id: &str) -> Option<&DeliveryAcks> {
        self.acks.get(delivery_id)
    }

    /// Prompt calls per idempotency key, sorted by key (a stable order to page through).
    pub fn prompts(&self) -> Vec<(&str, PromptCalls)> {
        let mut prompts: Vec<_> = self.prompts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        prompts.sort_unstable_by_key(|(k, _)| *k);
        prompts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_and_prompts_are_counted_and_bounded() {
        let mut records = Records::default();
        records.ack("d1", "failed", true, None);
        records.ack("d1", "sent", false, None);
        for _ in 0..MAX_ACKS_PER_DELIVERY {
            records.ack("d2", "sent", true, None);
        }
        records.ack("d2", "sent", true, None);
        let d1 = records.acks_of("d1").unwrap();
        assert_eq!(
            d1.calls,
            vec![
                AckCall { status: "failed".into(), accepted: true, next_attempt_at: None },
                AckCall { status: "sent".into(), accepted: false, next_attempt_at: None }
            ]
        );
        let d2 = records.acks_of("d2").unwrap();
        assert_eq!((d2.calls.len(), d2.uncounted), (MAX_ACKS_PER_DELIVERY, 1));

        records.prompt("k", true);
        records.prompt("k", false);
        records.prompt("", true);
        assert_eq!(
            records.prompts(),
            vec![("", PromptCalls { calls: 1, commands: 1 }), ("k", PromptCalls { calls: 2, commands: 1 })]
        );
    }
}
