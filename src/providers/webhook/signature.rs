//! The v1 signature of webhook ingress and outbound deliveries (docs/webhook-protocol.md):
//! `v1=` + hex HMAC-SHA256(shared secret, `v1:<timestamp>:<raw body>`), a timestamp within five
//! minutes, and a bounded cache that refuses an exact replay inside that window.

use std::collections::{HashMap, VecDeque};

use ring::hmac;

/// How far a signed timestamp may be from now (either way).
const SIGNATURE_MAX_AGE_MS: u64 = 300_000;
pub const TIMESTAMP_HEADER: &str = "x-open-cowork-gateway-webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "x-open-cowork-gateway-webhook-signature";

/// `v1=<hex>` over `v1:<timestamp>:<body>`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(b"v1:");
    context.update(timestamp.as_bytes());
    context.update(b":");
    context.update(body);
    format!("v1={}", crate::util::hex::encode(context.sign().as_ref()))
}

/// JavaScript's `Number()` of a header: surrounding whitespace allowed, blank is 0, `0x` hex,
/// decimals and exponents; anything else (or a non-finite value) is not a number.
pub fn parse_timestamp(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() {
        return Some(0.0);
    }
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|n| n as f64);
    }
    // Rust also reads `inf` and `NaN`, which JavaScript spells differently: only digits, signs,
    // the point and exponents get through.
    if !text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) {
        return None;
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Ingress verification: headers present and a body, the timestamp a number within the window, the
/// signature equal in constant time. The error is upstream's text (all are `auth`, 401).
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    raw_body: &[u8],
    now_ms: u64,
) -> Result<(), &'static str> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err("Webhook timestamp signature is required for ingress");
    };
    if raw_body.is_empty() {
        return Err("Webhook timestamp signature is required for ingress");
    }
    let seconds = parse_timestamp(timestamp).ok_or("Webhook timestamp is invalid")?;
    if (now_ms as f64 - seconds * 1000.0).abs() > SIGNATURE_MAX_AGE_MS as f64 {
        return Err("Webhook timestamp is outside the allowed window");
    }
    let expected = sign(secret, timestamp, raw_body);
    if !crate::util::ct::constant_time_equal(signature, &expected) {
        return Err("Webhook signature verification failed");
    }
    Ok(())
}

/// A claim on a replay-cache entry, released only while that very entry is still there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayClaim {
    key: String,
    serial: u64,
}

struct Entry {
    key: String,
    scope: String,
    expires_at: u64,
    serial: u64,
}

/// Signed requests seen inside the signature window: bounded per scope and overall,
/// oldest dropped first.
pub struct ReplayCache {
    entries: VecDeque<Entry>,
    /// key → serial of its live entry.
    index: HashMap<String, u64>,
    next_serial: u64,
    per_scope_cap: usize,
    global_cap: usize,
}

impl ReplayCache {
    pub fn new(global_cap: usize, per_scope_cap: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            index: HashMap::new(),
            next_serial: 0,
            per_scope_cap: per_scope_cap.max(1),
            global_cap: global_cap.max(1),
        }
    }

    fn remove_at(&mut self, position: usize) {
        if let Some(entry) = self.entries.remove(position) {
            if self.index.get(&entry.key) == Some(&entry.serial) {
                self.index.remove(&entry.key);
            }
        }
    }

    /// Remembers `key`; `None` when it is a replay of a live entry.
    pub fn claim(&mut self, key: String, scope: String, now_ms: u64) -> Option<ReplayClaim> {
        // Every entry has the same lifetime, so the oldest expire first.
        while self.entries.front().is_some_and(|e| e.expires_at <= now_ms) {
            self.remove_at(0);
        }
        if self.index.contains_key(&key) {
            return None;
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        self.index.insert(key.clone(), serial);
        self.entries.push_back(Entry {
            key: key.clone(),
            scope: scope.clone(),
            expires_at: now_ms + SIGNATURE_MAX_AGE_MS,
            serial,
        });
        let mut in_scope = self.entries.iter().filter(|e| e.scope == scope).count();
        while in_scope > self.per_scope_cap {
            match self.entries.iter().position(|e| e.scope == scope) {
                Some(position) => self.remove_at(position),
                None => break,
            }
            in_scope -= 1;
        }
        while self.entries.len() > self.global_cap {
            self.remove_at(0);
        }
        Some(ReplayClaim { key, serial })
    }

    /// Forgets a claim whose request failed, so the sender may retry it; a newer claim of the same
    /// key is left alone.
    pub fn release(&mut self, claim: &ReplayClaim) {
        if self.index.get(&claim.key) == Some(&claim.serial) {
            if let Some(position) = self.entries.iter().position(|e| e.serial == claim.serial) {
                self.remove_at(position);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A scope segment: trimmed, control characters and `:` replaced by `_`, at most 256 characters.
pub fn scope_segment(text: &str) -> String {
    text.trim()
        .chars()
        .map(|c| if (c as u32) < 0x20 || c as u32 == 0x7f || c == ':' { '_' } else { c })
        .take(256)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_772_280_000_000;

    #[test]
    fn signatures_verify_within_the_window_only() {
        let body = br#"{"id":"1"}"#;
        let good = sign("secret", "1772280000", body);
        assert!(good.starts_with("v1=") && good.len() == 67);
        assert_eq!(verify("secret", Some("1772280000"), Some(&good), body, NOW), Ok(()));
        let padded = sign("secret", " 1772280000 ", body);
        assert_eq!(verify("secret", Some(" 1772280000 "), Some(&padded), body, NOW), Ok(()));
        assert_eq!(
            verify("secret", None, Some(&good), body, NOW),
            Err("Webhook timestamp signature is required for ingress")
        );
        assert_eq!(
            verify("secret", Some("1772280000"), Some(&good), b"", NOW),
            Err("Webhook timestamp signature is required for ingress")
        );
        assert_eq!(verify("secret", Some("soon"), Some(&good), body, NOW), Err("Webhook timestamp is invalid"));
        assert_eq!(verify("secret", Some("Infinity"), Some(&good), body, NOW), Err("Webhook timestamp is invalid"));
        let stale = sign("secret", "1772279000", body);
        assert_eq!(
            verify("secret", Some("1772279000"), Some(&stale), body, NOW),
            Err("Webhook timestamp is outside the allowed window")
        );
        assert_eq!(
            verify("other", Some("1772280000"), Some(&good), body, NOW),
            Err("Webhook signature verification failed")
        );
        assert_eq!(
            verify("secret", Some("1772280000"), Some(&good), br#"{"id":"2"}"#, NOW),
            Err("Webhook signature verification failed")
        );
    }

    #[test]
    fn replays_are_refused_and_the_cache_is_bounded() {
        let mut cache = ReplayCache::new(3, 2);
        let first = cache.claim("t:a".into(), "s1".into(), 0).unwrap();
        assert!(cache.claim("t:a".into(), "s1".into(), 1).is_none(), "a replay");
        cache.claim("t:b".into(), "s1".into(), 2).unwrap();
        cache.claim("t:c".into(), "s1".into(), 3).unwrap();
        assert_eq!(cache.len(), 2, "per-scope cap drops the oldest of the scope");
        assert!(cache.claim("t:a".into(), "s1".into(), 4).is_some(), "the dropped entry is forgotten");
        cache.release(&first);
        assert_eq!(cache.len(), 2, "an old claim never removes a newer entry of the same key");
        cache.claim("t:d".into(), "s2".into(), 5).unwrap();
        cache.claim("t:e".into(), "s3".into(), 6).unwrap();
        assert_eq!(cache.len(), 3, "global cap");
        assert!(cache.claim("t:e".into(), "s3".into(), 7 + SIGNATURE_MAX_AGE_MS).is_some(), "expired entries go");
        assert_eq!(cache.len(), 1);
        assert_eq!(scope_segment(" a:b\u{1}c "), "a_b_c");
    }
}
