//! Cloud error answers: any status, body and `retry-after` header classify
//! without panicking, and the classification keeps its promises: the kind follows the status,
//! 5xx and 429 are retried while 401/403 are not and need an operator, and a retry hint is only
//! ever taken from the body's `retryAfterMs` or the header, the header only when the body has none.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use open_cowork_gateway::cloud::error::{CloudError, CloudErrorKind};

fuzz_target!(|input: &[u8]| {
    // Two bytes of status, then the header up to the first NUL, then the body.
    let [high, low, rest @ ..] = input else { return };
    let status = u16::from_be_bytes([*high, *low]);
    let (header, body) = match rest.iter().position(|b| *b == 0) {
        Some(at) => (std::str::from_utf8(&rest[..at]).ok(), &rest[at + 1..]),
        None => (None, rest),
    };
    let error = CloudError::from_response(status, body, header);
    assert_eq!(error.status, Some(status));
    assert_eq!(error.kind, CloudErrorKind::from_status(status));
    if status >= 500 || status == 429 {
        assert!(error.is_retryable());
    }
    if status == 401 || status == 403 {
        assert!(error.is_auth() && !error.is_retryable());
    }
    let _ = error.to_string();

    // Lossy: the error body parser skips fields it does not know without checking their UTF-8,
    // so a body with stray bytes in such a field still gives its `retryAfterMs`.
    let body_hint = serde_json::from_str::<serde_json::Value>(&String::from_utf8_lossy(body))
        .ok()
        .and_then(|v| v.get("retryAfterMs").and_then(serde_json::Value::as_f64))
        .filter(|ms| ms.is_finite() && *ms > 0.0);
    let header_hint = header.and_then(|h| h.trim().parse::<u64>().ok());
    match (body_hint, header_hint) {
        (None, None) => assert_eq!(error.retry_after, None),
        (None, Some(seconds)) => assert_eq!(error.retry_after, Some(Duration::from_secs(seconds))),
        // A body hint wins when the body has the documented shape; a body that only looks
        // like it (say `error` is not a string) may be ignored, so nothing more is promised.
        (Some(_), _) => {}
    }
});
