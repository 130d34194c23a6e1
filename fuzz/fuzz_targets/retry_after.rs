//! The `Retry-After` parsers for answers from outside: a relay's (delta-seconds with fractions,
//! or an IMF-fixdate, providers.md §2.7) and Slack's (delta-seconds). Neither panics, and
//! Slack's wait is capped at a day.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use open_cowork_gateway::providers::slack::api::parse_retry_after as slack_retry_after;
use open_cowork_gateway::providers::webhook::delivery::parse_retry_after as relay_retry_after;

const NOW_MS: u64 = 1_772_280_000_000;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let _ = relay_retry_after(text, NOW_MS);
    let _ = relay_retry_after(text, 0);
    if let Some(wait) = slack_retry_after(text) {
        assert!(wait <= Duration::from_secs(86_400));
    }
});
