//! The webhook ingress verifier never panics on any timestamp, signature or body, and a
//! signature it computes itself always verifies inside the window.
#![no_main]

use libfuzzer_sys::fuzz_target;
use open_cowork_gateway::providers::webhook::signature::{parse_timestamp, sign, verify};

const NOW_MS: u64 = 1_772_280_000_000;

fuzz_target!(|input: &[u8]| {
    // Split the input into timestamp, signature and body at the first two NUL bytes.
    let mut parts = input.splitn(3, |b| *b == 0);
    let (Some(timestamp), Some(signature), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (Ok(timestamp), Ok(signature)) = (std::str::from_utf8(timestamp), std::str::from_utf8(signature)) else {
        return;
    };
    let _ = parse_timestamp(timestamp);
    let _ = verify("fuzz-secret", Some(timestamp), Some(signature), body, NOW_MS);
    let own = sign("fuzz-secret", "1772280000", body);
    if !body.is_empty() {
        assert_eq!(verify("fuzz-secret", Some("1772280000"), Some(&own), body, NOW_MS), Ok(()));
    }
});
