//! The one reader of `Retry-After` (RFC 9110 section 10.2.3) for Cloud, every channel and the relay:
//! delta-seconds (fractions accepted, as some servers send them) or an HTTP-date, which becomes
//! the time left until it. Anything else is no hint at all, so the caller falls back to its
//! retry policy. Hints are capped at a day: a server cannot park a sender for longer.

use std::time::Duration;

/// The longest wait a hint may ask for.
pub const MAX_HINT: Duration = Duration::from_secs(86_400);

/// Parses a `Retry-After` value; `now_ms` (milliseconds since the epoch) turns a date into a wait.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let seconds: f64 = value.parse().ok()?;
        return seconds.is_finite().then(|| Duration::from_secs_f64(seconds.min(MAX_HINT.as_secs_f64())));
    }
    let at = parse_http_date(value)?;
    Some(Duration::from_millis(at.saturating_sub(now_ms)).min(MAX_HINT))
}

/// The hint of a response's `Retry-After` header, if it has a usable one.
pub fn from_headers(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, crate::time::now_ms())
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, the only form servers send today) as
/// milliseconds since the epoch. Also reads a response's `Date` header.
pub(crate) fn parse_http_date(value: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let month = MONTHS.iter().position(|m| m == month)? + 1;
    let valid = |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_digit());
    if !valid(day, 2) || !valid(year, 4) {
        return None;
    }
    crate::time::parse_iso(&format!("{year}-{month:02}-{day}T{time}.000Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_dates() {
        assert_eq!(parse_retry_after("2", 0), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 1.5 ", 0), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after(" 30 ", 0), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("", 0), None);
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-1", 0), None);
        assert_eq!(parse_retry_after("1e3", 0), None, "not a delta-seconds form");
        assert_eq!(parse_retry_after("99999999999", 0), Some(MAX_HINT), "capped");
        let now = crate::time::parse_iso("2026-02-28T12:00:00.000Z").unwrap();
        assert_eq!(parse_retry_after("Sat, 28 Feb 2026 12:00:07 GMT", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sat, 28 Feb 2026 11:00:00 GMT", now), Some(Duration::ZERO), "past: now");
        assert_eq!(parse_retry_after("S 8 Feb 202600000000000000 12:00:07 GMT", now), None);
        assert_eq!(parse_http_date("Sat, 28 Feb 2026 12:00:00 GMT"), Some(now));
        assert_eq!(parse_http_date("Sat, 28 Feb 2026 12:00:00 UTC"), None);
    }

    #[test]
    fn the_header_of_a_response() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(from_headers(&headers), None);
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("3"));
        assert_eq!(from_headers(&headers), Some(Duration::from_secs(3)));
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("later"));
        assert_eq!(from_headers(&headers), None);
    }

    /// The input the `retry_after` fuzz target found, byte for byte: an HTTP-date with an 18-digit
    /// year is ignored, not a panic nor a wait.
    #[test]
    fn a_relay_retry_after_with_a_huge_year_is_ignored() {
        assert_eq!(parse_retry_after("S 8 Feb 202600000000000000 12:00:07 GMT", 1_772_280_000_000), None);
    }
}
