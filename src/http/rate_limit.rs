//! The webhook rate limiter: fixed windows keyed by `request:<source>:<provider>` and
//! `auth:<source>:<provider>`, a record cap with eviction that keeps active blocks, and upstream's
//! auth backoff that ends at the window reset (kept on purpose). Time is passed in, in milliseconds.

use std::collections::HashMap;

/// Default record cap.
const DEFAULT_CAP: usize = 10_000;

#[derive(Debug, Clone, Copy, Default)]
struct Record {
    count: u32,
    reset_at: u64,
    blocked_until: u64,
}

/// The verdict for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Refused { retry_after_ms: u64 },
}

#[derive(Debug)]
pub struct RateLimiter {
    records: HashMap<String, Record>,
    cap: usize,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::with_cap(DEFAULT_CAP)
    }
}

impl RateLimiter {
    pub fn with_cap(cap: usize) -> Self {
        Self { records: HashMap::new(), cap: cap.max(1) }
    }

    /// Request limit: counts this request; refuses once `max` is exceeded within the window.
    pub fn claim(&mut self, key: &str, now: u64, window_ms: u64, max: u32) -> Verdict {
        let record = self.record(key, now, window_ms);
        if record.blocked_until > now {
            return Verdict::Refused { retry_after_ms: record.blocked_until - now };
        }
        record.count += 1;
        if record.count > max {
            record.blocked_until = record.blocked_until.max(record.reset_at);
            return Verdict::Refused { retry_after_ms: record.blocked_until - now };
        }
        Verdict::Allowed
    }

    /// Refuses while blocked; creates an empty record if none exists.
    pub fn check(&mut self, key: &str, now: u64, window_ms: u64) -> Verdict {
        let record = self.record(key, now, window_ms);
        if record.blocked_until > now {
            Verdict::Refused { retry_after_ms: record.blocked_until - now }
        } else {
            Verdict::Allowed
        }
    }

    /// Records an authentication failure; `max_failures` of them block for `backoff_ms`.
    pub fn backoff(&mut self, key: &str, now: u64, window_ms: u64, max_failures: u32, backoff_ms: u64) {
        let record = self.record(key, now, window_ms);
        if record.blocked_until > now {
            return;
        }
        record.count += 1;
        if record.count >= max_failures {
            record.blocked_until = record.blocked_until.max(now + backoff_ms);
        }
    }

    /// The live record for `key`, reset when its window has passed (which also clears a block).
    fn record(&mut self, key: &str, now: u64, window_ms: u64) -> &mut Record {
        let live = self.records.get(key).is_some_and(|r| r.reset_at > now);
        if !live {
            self.records.insert(key.to_owned(), Record { count: 0, reset_at: now + window_ms, blocked_until: 0 });
            if self.records.len() > self.cap {
                self.evict(now, key);
            }
        }
        // The key was just inserted or was live, and eviction never removes it.
        self.records.entry(key.to_owned()).or_default()
    }

    /// Prunes expired records, then evicts by relevance: non-blocking first, then the earliest
    /// `max(reset_at, blocked_until)`. The record being touched is never evicted.
    fn evict(&mut self, now: u64, keep: &str) {
        self.records.retain(|k, r| k == keep || r.reset_at > now || r.blocked_until > now);
        while self.records.len() > self.cap {
            let victim = self
                .records
                .iter()
                .filter(|(k, _)| k.as_str() != keep)
                .min_by_key(|(_, r)| (r.blocked_until > now, r.reset_at.max(r.blocked_until)))
                .map(|(k, _)| k.clone());
            match victim {
                Some(key) => {
                    self.records.remove(&key);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_refuses_after_max_until_the_window_resets() {
        let mut limiter = RateLimiter::default();
        for _ in 0..120 {
            assert_eq!(limiter.claim("request:a:p", 1_000, 60_000, 120), Verdict::Allowed);
        }
        assert_eq!(limiter.claim("request:a:p", 2_000, 60_000, 120), Verdict::Refused { retry_after_ms: 59_000 });
        assert_eq!(
            limiter.claim("request:b:p", 2_000, 60_000, 120),
            Verdict::Allowed,
            "another source has its own bucket"
        );
        assert_eq!(
            limiter.claim("request:a:p", 61_000, 60_000, 120),
            Verdict::Allowed,
            "a new window clears the block"
        );
    }

    #[test]
    fn auth_backoff_blocks_after_twenty_failures_but_ends_at_the_window_reset() {
        let mut limiter = RateLimiter::default();
        for i in 0..19 {
            limiter.backoff("auth:a:p", 1_000 + i, 60_000, 20, 60_000);
            assert_eq!(limiter.check("auth:a:p", 1_000 + i, 60_000), Verdict::Allowed);
        }
        limiter.backoff("auth:a:p", 10_000, 60_000, 20, 60_000);
        assert_eq!(limiter.check("auth:a:p", 10_000, 60_000), Verdict::Refused { retry_after_ms: 60_000 });
        // Upstream quirk kept: the window started at t=1000 resets at t=61000.
        assert_eq!(limiter.check("auth:a:p", 61_000, 60_000), Verdict::Allowed);
    }

    #[test]
    fn eviction_keeps_active_blocks() {
        let mut limiter = RateLimiter::with_cap(2);
        assert_eq!(limiter.claim("attacker", 0, 1_000, 1), Verdict::Allowed);
        assert!(matches!(limiter.claim("attacker", 0, 1_000, 1), Verdict::Refused { .. }));
        limiter.claim("idle", 100, 1_000, 10);
        limiter.claim("fresh", 200, 1_000, 10);
        assert_eq!(limiter.records.len(), 2);
        assert!(
            matches!(limiter.check("attacker", 500, 1_000), Verdict::Refused { .. }),
            "the blocked record survived"
        );
        assert!(limiter.records.contains_key("fresh"));
        assert!(!limiter.records.contains_key("idle"));
    }

    #[test]
    fn expired_records_are_pruned_first() {
        let mut limiter = RateLimiter::with_cap(2);
        limiter.claim("old-1", 0, 100, 10);
        limiter.claim("old-2", 0, 100, 10);
        limiter.claim("new", 500, 100, 10);
        assert_eq!(limiter.records.len(), 1);
    }
}
