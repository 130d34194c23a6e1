//! E-mail ingress: the relay JSON mapper and the address parser never panic on any input, and
//! whatever they accept keeps its promises: a lower-case address without line breaks as the
//! chat, a non-empty claim key, and no attachment over the cap. The relay's secret is read from
//! its headers without panicking, and a secret found is never blank.
#![no_main]

use libfuzzer_sys::fuzz_target;
use open_cowork_gateway::config::providers::email::{display_name, parse_address};
use open_cowork_gateway::providers::email::inbound::{map, provided_secret};

const CAP: usize = 4096;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    if let Some(address) = parse_address(text) {
        assert_eq!(address, address.to_ascii_lowercase());
        assert!(!address.contains(['\r', '\n', ' ', '<', '>']), "{address:?}");
        assert_eq!(address.matches('@').count(), 1);
    }
    let _ = display_name(text);
    if let Ok(value) = http::HeaderValue::from_str(text) {
        for name in ["x-open-cowork-gateway-email-secret", "authorization"] {
            let mut headers = http::HeaderMap::new();
            headers.insert(name, value.clone());
            if let Some(secret) = provided_secret(&headers) {
                assert!(!secret.is_empty() && secret == secret.trim());
            }
        }
    }
    let Ok(payload) = serde_json::from_str::<serde_json::Value>(text) else { return };
    let provider = "email".into();
    if let Ok(Some(message)) = map(&provider, &payload, CAP, 1_700_000_000_000) {
        assert!(!message.provider_event_id().trim().is_empty());
        assert_eq!(parse_address(&message.target.chat_id).as_deref(), Some(message.target.chat_id.as_str()));
        assert!(message.target.thread_id.as_deref().is_some_and(|t| !t.is_empty()));
    }
});
