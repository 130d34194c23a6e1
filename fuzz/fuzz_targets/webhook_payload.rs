//! Generic webhook and bridge ingress after the signature: the request body parser (JSON or
//! form-encoded, as `POST /webhooks/<id>` reads it) and the payload mapper never panic, and
//! whatever the mapper accepts honours the field rules the relay contract states: a chat and a
//! sender that are non-empty, trimmed, free of control characters and within their byte caps, at
//! most 20 attachments, and an interaction token of at most 64 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use open_cowork_gateway::http::body::parse_request_body;
use open_cowork_gateway::providers::webhook::payload::{map_payload, parse_command, Mapping, MAX_ATTACHMENTS};

const FORM: &str = "application/x-www-form-urlencoded";
/// The bridges share the mapper and differ only in the kind they stamp on the message.
const KINDS: [&str; 4] = ["webhook", "discord", "whatsapp", "signal"];

fn clean_field(text: &str, max_bytes: usize) {
    assert!(!text.is_empty());
    assert!(text.len() <= max_bytes, "{} > {max_bytes}", text.len());
    assert!(!text.chars().any(|c| (c as u32) < 0x20 || c as u32 == 0x7f), "{text:?}");
    assert_eq!(text, text.trim(), "not trimmed: {text:?}");
}

fuzz_target!(|input: &[u8]| {
    // First byte: content type and kind; the rest: the raw body.
    let Some((&settings, body)) = input.split_first() else { return };
    let Ok(body) = std::str::from_utf8(body) else { return };
    let content_type = match settings % 3 {
        0 => None,
        1 => Some("application/json"),
        _ => Some(FORM),
    };
    let Ok(payload) = parse_request_body(body, content_type) else { return };
    let kind = KINDS[usize::from(settings >> 2) % KINDS.len()];
    let mapping = Mapping { provider_id: "relay", kind, max_attachment_bytes: 64, now_ms: 1_772_280_000_000 };

    if let Some(command) = payload.get("text").and_then(|t| t.as_str()).and_then(parse_command) {
        assert!(command.starts_with(|c: char| c.is_ascii_lowercase()));
        assert!(command.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'));
    }

    let Ok(message) = map_payload(&mapping, &payload) else { return };
    assert_eq!(message.target.provider_kind, kind);
    clean_field(&message.target.chat_id, 512);
    clean_field(&message.sender.provider_user_id, 512);
    for (field, cap) in [(&message.target.thread_id, 512), (&message.target.message_id, 512)] {
        if let Some(value) = field {
            clean_field(value, cap);
        }
    }
    if let Some(username) = &message.sender.username {
        clean_field(username, 256);
    }
    assert!(message.target.user_id.as_deref().is_some_and(|u| !u.is_empty()));
    assert!(message.attachment_count <= MAX_ATTACHMENTS);
    assert!(!message.provider_event_id().is_empty());
    assert_eq!(message.is_command, message.command.is_some());
    if let Some(interaction) = &message.interaction {
        assert!(!interaction.token.is_empty() && interaction.token.len() <= 64);
        clean_field(&interaction.id, 512);
    }
});
