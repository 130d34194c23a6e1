//! Slack's v0 request signature and the replay cache.
//!
//! Every request Slack posts carries `x-slack-request-timestamp` and
//! `x-slack-signature: v0=<hex HMAC-SHA256(signing secret, "v0:<timestamp>:<raw body>")>`. The
//! timestamp must be within 300 s of now, and a request already seen inside that window is
//! refused, so a captured request cannot be replayed. Slack's own retries are re-signed with a
//! fresh timestamp and pass here; the Cloud claim (keyed by `event_id`) absorbs them.

use std::collections::VecDeque;

use ring::hmac;

use crate::util::ct::constant_time_equal;

/// The signature age limit: requests older or newer than this (in seconds) are refused.
const MAX_AGE_SECS: f64 = 300.0;
/// Replay entries live as long as a signature is acceptable.
pub const REPLAY_WINDOW_MS: u64 = 300_000;
/// Entries kept per team, then overall (upstream's defaults).
const PER_SCOPE_CAP: usize = 1_000;
const GLOBAL_CAP: usize = 5_000;
/// A scope is cut at this many characters.
const MAX_SCOPE_CHARS: usize = 256;

/// Why a request was refused; every variant is an `auth` failure (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// A header (or the secret, or the body) is missing or blank.
    Missing,
    /// Wrong prefix, unparseable or stale timestamp, or a different signature.
    Invalid,
    /// The same timestamp and signature were seen inside the window.
    Replay,
}

impl SignatureError {
    /// Upstream's messages, for logs only.
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => "Slack webhook signature is required.",
            Self::Invalid => "Slack webhook signature verification failed.",
            Self::Replay => "Slack webhook signature replay rejected.",
        }
    }
}

/// Checks the v0 signature of one request. `timestamp` and `signature` are the header values,
/// already trimmed; `now_ms` is the wall clock.
pub fn verify(
    signing_secret: &str,
    timestamp: &str,
    signature: &str,
    raw_body: &str,
    now_ms: u64,
) -> Result<(), SignatureError> {
    if signing_secret.is_empty() || timestamp.is_empty() || signature.is_empty() || raw_body.is_empty() {
        return Err(SignatureError::Missing);
    }
    if !signature.starts_with("v0=") {
        return Err(SignatureError::Invalid);
    }
    // JavaScript `Number()` accepts fractions and exponents; `f64::from_str` accepts the same
    // decimal forms, and anything non-finite is refused either way.
    let seconds: f64 = timestamp.parse().map_err(|_| SignatureError::Invalid)?;
    let now = now_ms as f64 / 1000.0;
    if !seconds.is_finite() || (now - seconds).abs() > MAX_AGE_SECS {
        return Err(SignatureError::Invalid);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, signing_secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(b"v0:");
    context.update(timestamp.as_bytes());
    context.update(b":");
    context.update(raw_body.as_bytes());
    let expected = format!("v0={}", crate::util::hex::encode(context.sign().as_ref()));
    if constant_time_equal(signature, &expected) {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

/// The signature a request with this body and timestamp must carry (tests and tools).
pub fn sign(signing_secret: &str, timestamp: &str, raw_body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, signing_secret.as_bytes());
    let message = format!("v0:{timestamp}:{raw_body}");
    format!("v0={}", crate::util::hex::encode(hmac::sign(&key, message.as_bytes()).as_ref()))
}

/// The replay scope of a segment: trimmed, controls and `:` replaced by `_`, at most 256 chars.
pub fn scope_segment(text: &str) -> String {
    text.trim()
        .chars()
        .map(|c| if c < ' ' || c == '\u{7f}' || c == ':' { '_' } else { c })
        .take(MAX_SCOPE_CHARS)
        .collect()
}

struct Entry {
    key: String,
    scope: String,
    expires_at_ms: u64,
}

/// Signed requests seen inside the window, oldest first, bounded per scope (team) and overall.
pub struct ReplayCache {
    entries: VecDeque<Entry>,
    per_scope_cap: usize,
    global_cap: usize,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(PER_SCOPE_CAP, GLOBAL_CAP)
    }
}

impl ReplayCache {
    pub fn new(per_scope_cap: usize, global_cap: usize) -> Self {
        Self { entries: VecDeque::new(), per_scope_cap: per_scope_cap.max(1), global_cap: global_cap.max(1) }
    }

    /// Remembers `<timestamp>:<signature>` for `scope`; a replay when it is already there. The
    /// lookups are linear: the cache only grows with validly signed requests and is capped at
    /// a few thousand short keys, which costs microseconds per request.
    pub fn remember(&mut self, key: &str, scope: &str, now_ms: u64) -> Result<(), SignatureError> {
        self.entries.retain(|entry| entry.expires_at_ms > now_ms);
        if self.entries.iter().any(|entry| entry.key == key) {
            return Err(SignatureError::Replay);
        }
        self.entries.push_back(Entry {
            key: key.to_owned(),
            scope: scope.to_owned(),
            expires_at_ms: now_ms.saturating_add(REPLAY_WINDOW_MS),
        });
        let mut in_scope = self.entries.iter().filter(|entry| entry.scope == scope).count();
        while in_scope > self.per_scope_cap {
            if let Some(oldest) = self.entries.iter().position(|entry| entry.scope == scope) {
                self.entries.remove(oldest);
            }
            in_scope -= 1;
        }
        while self.entries.len() > self.global_cap {
            self.entries.pop_front();
        }
        Ok(())
    }

    /// Forgets `key`, so the very same signed request is accepted once more: a request the
    /// gateway failed to process (answered 5xx) may be resent as it was.
    pub fn forget(&mut self, key: &str) {
        self.entries.retain(|entry| entry.key != key);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const NOW_MS: u64 = 1_531_420_618_000;

    #[test]
    fn slacks_documented_example_verifies() {
        // The example of Slack's "Verifying requests from Slack" guide.
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(SECRET, "1531420618", body), signature);
        assert_eq!(verify(SECRET, "1531420618", signature, body, NOW_MS), Ok(()));
        assert_eq!(verify(SECRET, "1531420618.0", signature, body, NOW_MS), Err(SignatureError::Invalid));
    }

    #[test]
    fn missing_wrong_and_stale_signatures_fail() {
        let body = r#"{"type":"event_callback"}"#;
        let good = sign(SECRET, "1531420618", body);
        assert_eq!(verify(SECRET, "", &good, body, NOW_MS), Err(SignatureError::Missing));
        assert_eq!(verify(SECRET, "1531420618", "", body, NOW_MS), Err(SignatureError::Missing));
        assert_eq!(verify("", "1531420618", &good, body, NOW_MS), Err(SignatureError::Missing));
        assert_eq!(
            verify(SECRET, "1531420618", &good.replacen("v0=", "v1=", 1), body, NOW_MS),
            Err(SignatureError::Invalid)
        );
        assert_eq!(verify(SECRET, "soon", &good, body, NOW_MS), Err(SignatureError::Invalid));
        assert_eq!(verify(SECRET, "NaN", &good, body, NOW_MS), Err(SignatureError::Invalid));
        assert_eq!(verify("other", "1531420618", &good, body, NOW_MS), Err(SignatureError::Invalid));
        assert_eq!(verify(SECRET, "1531420618", &good, "{}", NOW_MS), Err(SignatureError::Invalid));
        assert_eq!(verify(SECRET, "1531420618", &good, body, NOW_MS + 300_000), Ok(()), "300 s is still inside");
        assert_eq!(verify(SECRET, "1531420618", &good, body, NOW_MS + 300_001), Err(SignatureError::Invalid));
        assert_eq!(verify(SECRET, "1531420618", &good, body, NOW_MS - 300_001), Err(SignatureError::Invalid));
    }

    #[test]
    fn replays_are_refused_inside_the_window_and_caps_hold() {
        let mut cache = ReplayCache::new(2, 3);
        cache.remember("1:a", "T1", 0).unwrap();
        assert_eq!(cache.remember("1:a", "T1", 1), Err(SignatureError::Replay));
        assert_eq!(cache.remember("1:a", "T2", 1), Err(SignatureError::Replay), "the key is global");
        cache.remember("1:a", "T1", REPLAY_WINDOW_MS).unwrap();
        cache.remember("2:b", "T1", REPLAY_WINDOW_MS).unwrap();
        cache.remember("3:c", "T1", REPLAY_WINDOW_MS).unwrap();
        assert_eq!(cache.len(), 2, "per-team cap: the oldest of the team goes");
        cache.remember("4:d", "T2", REPLAY_WINDOW_MS).unwrap();
        cache.remember("5:e", "T3", REPLAY_WINDOW_MS).unwrap();
        assert_eq!(cache.len(), 3, "global cap");
        cache.remember("2:b", "T1", REPLAY_WINDOW_MS).unwrap();
        assert_eq!(scope_segment(" T:1\u{7}x\n"), "T_1_x");
        assert_eq!(scope_segment(&"x".repeat(300)).len(), 256);
    }
}
