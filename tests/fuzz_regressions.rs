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
