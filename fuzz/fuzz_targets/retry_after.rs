//! The one `Retry-After` parser every answer from outside goes through (Cloud, the channels, a
//! relay): delta-seconds with fractions, or an IMF-fixdate. It never panics, and no wait it
//! returns is longer than a day.
#![no_main]

use libfuzzer_sys::fuzz_target;
use open_cowork_gateway::net::retry_after::{parse_retry_after, MAX_HINT};

const NOW_MS: u64 = 1_772_280_000_000;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    for now in [NOW_MS, 0] {
        if let Some(wait) = parse_retry_after(text, now) {
            assert!(wait <= MAX_HINT);
        }
    }
});
