//! The inbound payload of the generic webhook and the bridges (see docs/webhook-protocol.md):
//! checked field by field and normalised into an [`InboundMessage`]. Every error here is the
//! relay's mistake and answers 400, not upstream's 502.

use serde_json::{Map, Value};
use smol_str::SmolStr;

use crate::channel::{ChannelTarget, InboundMessage, InteractionRef, Sender};

/// Attachments one payload may carry.
pub const MAX_ATTACHMENTS: usize = 20;
/// An inbound interaction token: a Cloud token with its decision prefix fits with room to spare.
const MAX_INTERACTION_TOKEN_BYTES: usize = 512;

/// Who the payload is for: this provider's id, kind and inbound attachment cap.
pub struct Mapping<'a> {
    pub provider_id: &'a str,
    pub kind: &'a str,
    pub max_attachment_bytes: usize,
    pub now_ms: u64,
}

fn is_control(c: char) -> bool {
    (c as u32) < 0x20 || c as u32 == 0x7f
}

/// JavaScript's `trim()` set: ASCII whitespace, NBSP, BOM, the line separators and `Zs`.
fn trim_js(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// A "clean string": absent/null → `None`; not a string, a control character or too many bytes →
/// an error naming `label`; trimmed; empty → `None`.
pub fn clean(value: Option<&Value>, label: &str, max_bytes: usize) -> Result<Option<String>, String> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => trim_js(text),
        Some(_) => return Err(format!("{label} must be a string")),
    };
    if text.is_empty() {
        return Ok(None);
    }
    if text.chars().any(is_control) {
        return Err(format!("{label} cannot contain control characters"));
    }
    if text.len() > max_bytes {
        return Err(format!("{label} cannot exceed {max_bytes} bytes"));
    }
    Ok(Some(text.to_owned()))
}

fn object<'a>(value: Option<&'a Value>, error: &str) -> Result<&'a Map<String, Value>, String> {
    value.and_then(Value::as_object).ok_or_else(|| error.to_owned())
}

fn non_empty_string(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The command of a text: `/name@bot args` → `name` (lower case, `^[a-z][a-z0-9_-]*$`).
pub fn parse_command(text: &str) -> Option<String> {
    let rest = trim_js(text).strip_prefix('/')?;
    let first = rest.split_whitespace().next()?;
    let head = first.split('@').next().unwrap_or_default().to_lowercase();
    let mut chars = head.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    valid.then_some(head)
}

/// Strict base64: whitespace removed, the standard alphabet, at most two `=`, length mod 4
/// never 1, canonical trailing bits. Returns the decoded size estimate and the bytes' length.
fn strict_base64(text: &str, limit: usize) -> Result<usize, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let body = compact.trim_end_matches('=');
    let padding = compact.len() - body.len();
    let alphabet = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    if padding > 2 || !body.bytes().all(alphabet) || compact.len() % 4 == 1 {
        return Err("Webhook attachment.bufferBase64 must be valid base64".into());
    }
    let estimated = (compact.len() * 3 / 4).saturating_sub(padding);
    if estimated > limit {
        return Err(format!("Webhook attachment exceeds max size of {limit} bytes"));
    }
    let decoded = crate::util::base64::decode(body)
        .ok_or_else(|| "Webhook attachment.bufferBase64 must be valid base64".to_owned())?;
    if crate::util::base64::encode_standard(&decoded).trim_end_matches('=') != body {
        return Err("Webhook attachment.bufferBase64 must be valid base64".into());
    }
    if decoded.len() > limit {
        return Err(format!("Webhook attachment exceeds max size of {limit} bytes"));
    }
    Ok(decoded.len())
}

fn check_attachment(value: &Value, limit: usize) -> Result<(), String> {
    let attachment = object(Some(value), "Webhook attachment must be an object")?;
    clean(attachment.get("filename"), "Webhook attachment.filename", 255)?
        .ok_or("Webhook attachment.filename is required")?;
    let declared = match attachment.get("sizeBytes") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(_) => return Err("Webhook attachment.sizeBytes must be a non-negative integer".into()),
    };
    if declared.is_some_and(|size| size > limit as u64) {
        return Err(format!("Webhook attachment exceeds max size of {limit} bytes"));
    }
    clean(attachment.get("providerFileId"), "Webhook attachment.providerFileId", 512)?;
    clean(attachment.get("mimeType"), "Webhook attachment.mimeType", 255)?;
    if let Some(data) = non_empty_string(attachment.get("bufferBase64")) {
        let decoded = strict_base64(data, limit)?;
        if declared.is_some_and(|size| size != decoded as u64) {
            return Err("Webhook attachment.sizeBytes does not match decoded buffer length".into());
        }
    }
    Ok(())
}

/// The press a payload carries, if any: an id and a token without control characters (a
/// `command` kind when the relay says so, else a button).
fn map_interaction(value: Option<&Value>) -> Result<Option<InteractionRef>, String> {
    let value = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value,
    };
    let interaction = object(Some(value), "Webhook interaction must be an object")?;
    let id = clean(interaction.get("id"), "Webhook interaction.id", 512)?;
    let token = non_empty_string(interaction.get("token"));
    let (Some(id), Some(token)) = (id, token) else {
        return Err("Webhook interaction requires id and token".into());
    };
    if token.chars().any(is_control) {
        return Err("Webhook interaction.token cannot contain control characters".into());
    }
    // Buttons the gateway sends carry short tokens, but a relay may also press with the
    // full Cloud token (`den:occi_…`, about 90 bytes): bounded, not refused.
    if token.len() > MAX_INTERACTION_TOKEN_BYTES {
        return Err(format!("Webhook interaction.token cannot exceed {MAX_INTERACTION_TOKEN_BYTES} bytes"));
    }
    let kind = if interaction.get("kind").and_then(Value::as_str) == Some("command") { "command" } else { "button" };
    Ok(Some(InteractionRef { id, token: token.to_owned(), kind }))
}

/// Checks every attachment (at most [`MAX_ATTACHMENTS`], each within `limit` bytes) and returns
/// how many there are.
fn check_attachments(value: Option<&Value>, limit: usize) -> Result<usize, String> {
    let attachments = match value {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(_) => return Err("Webhook attachments must be an array".into()),
    };
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(format!("Webhook attachments cannot exceed {MAX_ATTACHMENTS} files"));
    }
    for attachment in attachments {
        check_attachment(attachment, limit)?;
    }
    Ok(attachments.len())
}

/// The payload as a normalised message, or the first rule it breaks.
pub fn map_payload(mapping: &Mapping, payload: &Value) -> Result<InboundMessage, String> {
    let body = object(Some(payload), "Webhook payload must be an object")?;
    let target = object(body.get("target"), "Webhook target must be an object")?;
    let chat_id =
        clean(target.get("chatId"), "Webhook target.chatId", 512)?.ok_or("Webhook target.chatId is required")?;
    let is_direct = target.get("isDirect") == Some(&Value::Bool(true));
    let thread_id = clean(target.get("threadId"), "Webhook target.threadId", 512)?;
    let target_user = clean(target.get("userId"), "Webhook target.userId", 512)?;
    let message_id = clean(target.get("messageId"), "Webhook target.messageId", 512)?;
    let sender = object(body.get("sender"), "Webhook sender must be an object")?;
    let user_id =
        clean(sender.get("userId"), "Webhook sender.userId", 512)?.ok_or("Webhook sender.userId is required")?;
    let username = clean(sender.get("username"), "Webhook sender.username", 256)?;
    let display_name = clean(sender.get("displayName"), "Webhook sender.displayName", 512)?;
    let interaction = map_interaction(body.get("interaction"))?;
    let text = non_empty_string(body.get("text"))
        .map(str::to_owned)
        .or_else(|| interaction.as_ref().map(|i| i.token.clone()))
        .unwrap_or_default();
    let raw_text = non_empty_string(body.get("rawText")).map_or_else(|| text.clone(), str::to_owned);
    // Upstream's "developer convenience": without an id every request is a new event, so Cloud
    // cannot de-duplicate a relay's retries (the README says so).
    let id = non_empty_string(body.get("id")).map_or_else(crate::util::ids::random_id, str::to_owned);
    let received_at_ms =
        body.get("receivedAt").and_then(Value::as_str).and_then(crate::time::parse_iso).unwrap_or(mapping.now_ms);
    let attachment_count = check_attachments(body.get("attachments"), mapping.max_attachment_bytes)?;
    let command = parse_command(&text);
    let provider: SmolStr = mapping.provider_id.into();
    Ok(InboundMessage {
        id: id.clone(),
        provider_event_id: Some(id.clone()),
        provider_message_id: Some(id),
        provider: provider.clone(),
        target: ChannelTarget {
            provider,
            provider_kind: mapping.kind.into(),
            chat_id,
            is_direct: Some(is_direct),
            thread_id,
            user_id: target_user.or_else(|| Some(user_id.clone())),
            message_id,
        },
        sender: Sender { provider_user_id: user_id, username, display_name },
        text,
        raw_text,
        is_command: command.is_some(),
        command,
        attachment_count,
        interaction,
        received_at_ms,
        raw: payload.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(payload: Value) -> Result<InboundMessage, String> {
        map_payload(&Mapping { provider_id: "webhook", kind: "webhook", max_attachment_bytes: 16, now_ms: 7 }, &payload)
    }

    fn minimal() -> Value {
        json!({"target": {"chatId": "team-chat"}, "sender": {"userId": "alice"}, "text": "hi"})
    }

    #[test]
    fn a_full_payload_normalises() {
        let message = map(json!({
            "id": "msg-1",
            "target": {"chatId": " team-chat ", "isDirect": false, "threadId": "roadmap", "messageId": "m-1"},
            "sender": {"userId": "alice", "username": "alice", "displayName": "Alice"},
            "text": "/Status@GatewayBot now",
            "attachments": [{"filename": "error.log", "sizeBytes": 7, "bufferBase64": "cGF5bG9hZA=="}],
            "interaction": {"id": "interaction-id", "token": "p:abc123", "kind": "command"},
            "receivedAt": "2026-05-27T12:00:00.000Z"
        }))
        .unwrap();
        assert_eq!(message.provider_event_id(), "msg-1");
        assert_eq!(message.target.chat_id, "team-chat");
        assert_eq!(message.target.thread_id.as_deref(), Some("roadmap"));
        assert_eq!(message.target.user_id.as_deref(), Some("alice"), "target.userId defaults to the sender");
        assert_eq!(message.command.as_deref(), Some("status"));
        assert_eq!(message.attachment_count, 1);
        assert_eq!(message.interaction.as_ref().map(|i| i.kind), Some("command"));
        assert_ne!(message.received_at_ms, 7);
    }

    #[test]
    fn a_payload_without_id_gets_a_fresh_event_id() {
        let first = map(minimal()).unwrap();
        let second = map(minimal()).unwrap();
        assert_ne!(first.provider_event_id(), second.provider_event_id());
        assert_eq!(first.received_at_ms, 7);
        assert!(!first.is_command);
        assert_eq!(
            map(json!({"target": {"chatId": "c"}, "sender": {"userId": "u"}, "text": "/123-x y"})).unwrap().command,
            None
        );
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases = [
            (json!([]), "Webhook payload must be an object"),
            (json!({"sender": {"userId": "u"}}), "Webhook target must be an object"),
            (json!({"target": {}, "sender": {"userId": "u"}}), "Webhook target.chatId is required"),
            (json!({"target": {"chatId": 5}, "sender": {"userId": "u"}}), "Webhook target.chatId must be a string"),
            (
                json!({"target": {"chatId": "a\u{1}"}, "sender": {"userId": "u"}}),
                "Webhook target.chatId cannot contain control characters",
            ),
            (json!({"target": {"chatId": "c"}}), "Webhook sender must be an object"),
            (json!({"target": {"chatId": "c"}, "sender": {}}), "Webhook sender.userId is required"),
            (
                json!({"target": {"chatId": "c"}, "sender": {"userId": "u", "username": "x".repeat(257)}}),
                "Webhook sender.username cannot exceed 256 bytes",
            ),
            (
                json!({"target": {"chatId": "c"}, "sender": {"userId": "u"}, "interaction": {"id": "i"}}),
                "Webhook interaction requires id and token",
            ),
            (
                json!({"target": {"chatId": "c"}, "sender": {"userId": "u"}, "interaction": {"id": "i", "token": "t".repeat(513)}}),
                "Webhook interaction.token cannot exceed 512 bytes",
            ),
            (
                json!({"target": {"chatId": "c"}, "sender": {"userId": "u"}, "attachments": {}}),
                "Webhook attachments must be an array",
            ),
            (
                json!({"target": {"chatId": "c"}, "sender": {"userId": "u"}, "attachments": vec![json!({"filename": "f"}); 21]}),
                "Webhook attachments cannot exceed 20 files",
            ),
            (
                json!({"target": {"chatId": "c"}, "sender": {"userId": "u"}, "attachments": [{}]}),
                "Webhook attachment.filename is required",
            ),
            (
                json!({"target": {"chatId": "c"}, "sender": {"userId": "u"}, "attachments": [{"filename": "f", "sizeBytes": -1}]}),
                "Webhook attachment.sizeBytes must be a non-negative integer",
            ),
            (
                json!({"target": {"chatId": "c"}, "sender": {"userId": "u"}, "attachments": [{"filename": "f", "sizeBytes": 17}]}),
                "Webhook attachment exceeds max size of 16 bytes",
            ),
            (
                json!({"target": {"chatId": "c"}, "sender": {"userId": "u"}, "attachments": [{"filename": "f", "bufferBase64": "cGF5bG9hZB=="}]}),
                "Webhook attachment.bufferBase64 must be valid base64",
            ),
            (
                json!({"target": {"chatId": "c"}, "sender": {"userId": "u"}, "attachments": [{"filename": "f", "bufferBase64": "a"}]}),
                "Webhook attachment.bufferBase64 must be valid base64",
            ),
            (
                json!({"target": {"chatId": "c"}, "sender": {"userId": "u"}, "attachments": [{"filename": "f", "bufferBase64": "YWJjZGVmZ2hpamtsbW5vcHFyc3Q="}]}),
                "Webhook attachment exceeds max size of 16 bytes",
            ),
            (
                json!({"target": {"chatId": "c"}, "sender": {"userId": "u"}, "attachments": [{"filename": "f", "sizeBytes": 3, "bufferBase64": "cGF5bG9hZA"}]}),
                "Webhook attachment.sizeBytes does not match decoded buffer length",
            ),
        ];
        for (payload, error) in cases {
            assert_eq!(map(payload).unwrap_err(), error);
        }
    }
}
