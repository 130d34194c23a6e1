//! Inputs the fuzz targets under `fuzz/` once crashed on, fed to the same production functions so
//! the fix stays in place without a nightly toolchain. Each test names its target; the README's
//! Fuzzing section says how the targets run.

/// `email_inbound`: a relay's `from` whose seventh byte falls inside a multi-byte character
/// panicked in the `mailto:` check (a byte slice at index 7), aborting the daemon on one request.
#[cfg(feature = "email")]
#[test]
fn an_address_with_a_multibyte_character_at_byte_seven_is_refused_not_a_panic() {
    use open_cowork_gateway::config::providers::email::parse_address;
    use open_cowork_gateway::providers::email::inbound::map;

    // "aaaaaa" is six bytes, so 'é' spans bytes 6 and 7; the second is the token the fuzzer found.
    assert_eq!(parse_address("aaaaaaé"), None);
    assert_eq!(parse_address("ZA=:=\"\u{241}]}"), None);
    assert_eq!(parse_address("mailto:ada@example.com"), Some("ada@example.com".to_owned()));
    assert_eq!(parse_address("MAILTO: <Ada@Example.com>"), Some("ada@example.com".to_owned()));

    // The shape the fuzzer found, through the relay mapper the webhook route calls.
    let payload = serde_json::json!({"from": "Ada <ada@> ZA=:=\"\u{241}]}", "messageId": "<m1@example.com>"});
    assert_eq!(map(&"email".into(), &payload, 4096, 0), Ok(None));
}

/// `retry_after`: a relay's `Retry-After` date with an 18-digit year overflowed the day
/// arithmetic of the ISO-8601 parser (a panic where overflow is checked, a wrong wait where not).
/// The same parser reads a relay's `receivedAt` and Cloud's timestamps.
#[test]
fn a_date_with_a_huge_year_is_no_time() {
    use open_cowork_gateway::time::parse_iso;

    assert_eq!(parse_iso("202600000000000000-02-08T12:00:07.000Z"), None);
    assert_eq!(parse_iso("275761-01-01T00:00:00.000Z"), None);
    assert_eq!(parse_iso("275760-01-01T00:00:00.000Z"), Some(8_639_977_881_600_000));
    assert_eq!(parse_iso("2026-11-26T10:11:32.966Z"), Some(1_795_687_892_966));
}

#[test]
fn a_relay_retry_after_with_a_huge_year_is_ignored() {
    use open_cowork_gateway::net::retry_after::parse_retry_after;

    // The input the fuzzer found, byte for byte.
    assert_eq!(parse_retry_after("S 8 Feb 202600000000000000 12:00:07 GMT", 1_772_280_000_000), None);
}
