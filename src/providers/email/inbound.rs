//! The relay's JSON into an inbound message: sender, body, the stable
//! message id that is the Cloud claim key, the thread the mail belongs to, and attachments
//! checked against the channel's cap. Pure and bounded: the fuzz target `email_inbound` runs it.

use serde_json::Value;
use smol_str::SmolStr;

use crate::channel::{ChannelTarget, InboundMessage, Sender};
use crate::config::providers::email::{display_name, parse_address};

/// The domain of the `Message-ID`s this gateway generates: a wire detail kept exactly as upstream's,
/// since mail clients thread on it.
const GATEWAY_ID_DOMAIN: &str = "@open-cowork.local>";

/// What a mail maps to when it has a sender; `Ok(None)` when it has none (answered 202,
/// nothing claimed). The error text is for logs; the relay gets a bare 400.
pub fn map(
    provider: &SmolStr,
    payload: &Value,
    max_file_bytes: usize,
    received_at_ms: u64,
) -> Result<Option<InboundMessage>, String> {
    let empty = serde_json::Map::new();
    let fields = payload.as_object().unwrap_or(&empty);
    let party = |key: &str| -> Option<(String, Option<String>)> {
        match fields.get(key)? {
            Value::String(text) => Some((parse_address(text)?, display_name(text))),
            Value::Object(object) => {
                let address = parse_address(object.get("email")?.as_str()?)?;
                let name = object.get("name").and_then(Value::as_str).map(str::trim).filter(|n| !n.is_empty());
                Some((address, name.map(str::to_owned)))
            }
            _ => None,
        }
    };
    let Some((address, name)) = party("from").or_else(|| party("sender")) else {
        return Ok(None);
    };
    // JavaScript truthiness: `""`, `0`, `false` and `null` fall through to `id`.
    let truthy = |key: &str| {
        fields.get(key).filter(|v| match v {
            Value::Null | Value::Bool(false) => false,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        })
    };
    let message_id = truthy("messageId")
        .or_else(|| fields.get("id"))
        .and_then(clean)
        .ok_or("Email webhook messageId or id is required for replay protection.")?;
    let text = ["text", "body"]
        .iter()
        .filter_map(|key| fields.get(*key)?.as_str().map(str::trim))
        .find(|t| !t.is_empty())
        .unwrap_or_default()
        .to_owned();
    let thread_id = thread_of(fields, &message_id);
    let attachment_count = attachments(fields.get("attachments"), max_file_bytes)?;
    let (is_command, command) = command_of(&text);
    Ok(Some(InboundMessage {
        id: message_id.clone(),
        provider_event_id: Some(message_id.clone()),
        provider_message_id: Some(message_id.clone()),
        provider: provider.clone(),
        target: ChannelTarget {
            provider: provider.clone(),
            provider_kind: "email".into(),
            chat_id: address.clone(),
            is_direct: None,
            thread_id: Some(thread_id),
            user_id: Some(address.clone()),
            message_id: Some(message_id),
        },
        sender: Sender { provider_user_id: address.clone(), username: Some(address), display_name: name },
        raw_text: text.clone(),
        text,
        is_command,
        command,
        attachment_count,
        interaction: None,
        received_at_ms,
        raw: payload.clone(),
    }))
}

/// clean(x): a string with non-blank content, trimmed, runs of whitespace other than CR/LF
/// collapsed to one space.
fn clean(value: &Value) -> Option<String> {
    let text = value.as_str()?.trim();
    if text.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() && c != '\r' && c != '\n' {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    Some(out)
}

/// The thread: `threadId`, else `inReplyTo`, else the last `references` entry, else the message id.
///
/// One addition, so that a reply to the gateway's own mail lands in the same Cloud session: the
/// gateway's replies carry a fresh `Message-ID` and `References: <thread>`, so a client replying
/// to one sends `In-Reply-To: <that reply>` and `References: <thread> <that reply>`. When the
/// plain choice is one of the gateway's own ids, the first `references` entry that is not (the
/// thread the gateway named) is taken instead. Mail that does not answer the gateway keeps the
/// plain choice (upstream's) exactly.
fn thread_of(fields: &serde_json::Map<String, Value>, message_id: &str) -> String {
    let references: Vec<String> = match fields.get("references") {
        Some(Value::Array(items)) => items.iter().filter_map(clean).collect(),
        Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let spec_choice = fields
        .get("threadId")
        .and_then(clean)
        .or_else(|| fields.get("inReplyTo").and_then(clean))
        .or_else(|| match fields.get("references") {
            Some(Value::Array(items)) => items.last().and_then(clean),
            _ => references.last().cloned(),
        })
        .unwrap_or_else(|| message_id.to_owned());
    if !spec_choice.ends_with(GATEWAY_ID_DOMAIN) || fields.get("threadId").and_then(clean).is_some() {
        return spec_choice;
    }
    references.into_iter().find(|r| !r.ends_with(GATEWAY_ID_DOMAIN)).unwrap_or(spec_choice)
}

/// Counts the attachments, refusing any above the cap (declared or decoded size). The
/// bytes are decoded only to be measured: attachments never reach Cloud.
fn attachments(value: Option<&Value>, limit: usize) -> Result<usize, String> {
    let Some(Value::Array(items)) = value else { return Ok(0) };
    for item in items {
        let content =
            ["contentBase64", "bufferBase64"].iter().find_map(|key| item.get(*key)?.as_str().filter(|s| !s.is_empty()));
        let decoded_len = match content {
            Some(text) => decoded_length(text),
            None => 0,
        };
        let declared = ["sizeBytes", "size"].iter().find_map(|key| item.get(*key)?.as_f64().filter(|n| *n != 0.0));
        let too_big = |n: f64| n > limit as f64;
        if declared.is_some_and(too_big) || decoded_len > limit {
            return Err(format!("Email attachment exceeds maxFileBytes {limit}."));
        }
    }
    Ok(items.len())
}

/// The length lenient base64 decoding would produce: characters outside the alphabet are
/// skipped (Node's `Buffer.from(x, "base64")`), padding ends the data.
fn decoded_length(text: &str) -> usize {
    let symbols = text
        .bytes()
        .take_while(|b| *b != b'=')
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
        .count();
    symbols * 3 / 4
}

/// As Slack: a command starts with `/` after leading whitespace; its name is not lower-cased.
fn command_of(text: &str) -> (bool, Option<String>) {
    let Some(rest) = text.trim_start().strip_prefix('/') else { return (false, None) };
    let name = rest.split_whitespace().next().unwrap_or_default();
    (true, (!name.is_empty()).then(|| name.to_owned()))
}

/// The secret the relay presented, from the headers only (`x-open-cowork-gateway-email-secret` or
/// a bearer token; upstream never checked it).
pub fn provided_secret(headers: &http::HeaderMap) -> Option<&str> {
    let header = headers
        .get("x-open-cowork-gateway-email-secret")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    header.or_else(|| {
        let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let scheme = value.get(..7)?;
        scheme.eq_ignore_ascii_case("bearer ").then(|| value[7..].trim()).filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapped(payload: Value) -> Result<Option<InboundMessage>, String> {
        map(&SmolStr::new("email"), &payload, 1024, 7)
    }

    #[test]
    fn the_spec_example_maps_field_by_field() {
        let payload = json!({"messageId":"<m2@example.test>","from":{"email":"alice@example.test","name":"Alice"},
            "subject":"Re: Status","text":"/status now","inReplyTo":"<m1@example.test>",
            "references":"<root@example.test> <m1@example.test>",
            "attachments":[{"filename":"error.log","mimeType":"text/plain","contentBase64":"cGF5bG9hZA=="}]});
        let message = mapped(payload).unwrap().unwrap();
        assert_eq!(message.provider_event_id(), "<m2@example.test>");
        assert_eq!(message.target.chat_id, "alice@example.test");
        assert_eq!(message.target.user_id.as_deref(), Some("alice@example.test"));
        assert_eq!(message.target.thread_id.as_deref(), Some("<m1@example.test>"));
        assert_eq!(message.sender.display_name.as_deref(), Some("Alice"));
        assert_eq!((message.is_command, message.command.as_deref()), (true, Some("status")));
        assert_eq!(message.text, "/status now");
        assert_eq!(message.attachment_count, 1);
    }

    #[test]
    fn thread_fallbacks_and_replies_to_the_gateway_stay_in_their_thread() {
        let thread = |extra: Value| {
            let mut payload = json!({"messageId": "<m@x.test>", "from": "a@example.com", "text": "hi"});
            payload.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            mapped(payload).unwrap().unwrap().target.thread_id.unwrap()
        };
        assert_eq!(thread(json!({})), "<m@x.test>");
        assert_eq!(thread(json!({"references": ["<r1@x.test>", " <r2@x.test> "]})), "<r2@x.test>");
        assert_eq!(thread(json!({"references": "<r1@x.test>  <r2@x.test>"})), "<r2@x.test>");
        assert_eq!(thread(json!({"threadId": "t-1", "inReplyTo": "<p@x.test>"})), "t-1");
        let reply =
            json!({"inReplyTo": "<abc@open-cowork.local>", "references": "<root@x.test> <abc@open-cowork.local>"});
        assert_eq!(thread(reply), "<root@x.test>");
        assert_eq!(thread(json!({"inReplyTo": "<abc@open-cowork.local>"})), "<abc@open-cowork.local>");
    }

    #[test]
    fn no_sender_is_ignored_and_missing_ids_or_big_attachments_are_refused() {
        assert_eq!(mapped(json!({"messageId": "m", "from": "nobody"})), Ok(None));
        assert_eq!(mapped(json!("text")), Ok(None));
        assert_eq!(
            mapped(json!({"from": "a@example.com", "messageId": 5})).unwrap_err(),
            "Email webhook messageId or id is required for replay protection."
        );
        let id = mapped(json!({"from": "a@example.com", "messageId": "", "id": " x \t y "})).unwrap().unwrap();
        assert_eq!(id.id, "x y");
        let big = json!({"from": "a@example.com", "id": "m", "attachments": [{"sizeBytes": 4096}]});
        assert_eq!(mapped(big).unwrap_err(), "Email attachment exceeds maxFileBytes 1024.");
        let decoded =
            json!({"from": "a@example.com", "id": "m", "attachments": [{"contentBase64": "QUJD".repeat(400)}]});
        assert!(mapped(decoded).is_err());
    }

    #[test]
    fn the_secret_comes_from_the_headers_only() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(provided_secret(&headers), None);
        headers.insert("authorization", "BEARER  tok ".parse().unwrap());
        assert_eq!(provided_secret(&headers), Some("tok"));
        headers.insert("x-open-cowork-gateway-email-secret", " s1 ".parse().unwrap());
        assert_eq!(provided_secret(&headers), Some("s1"));
        headers.insert("x-open-cowork-gateway-email-secret", "  ".parse().unwrap());
        assert_eq!(provided_secret(&headers), Some("tok"));
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(provided_secret(&headers), None);
    }

    /// The shape the `email_inbound` fuzz target once crashed on (a `from` whose seventh byte
    /// falls inside a multi-byte character), through the relay mapper the webhook route calls:
    /// refused, not a panic.
    #[test]
    fn a_from_with_a_multibyte_character_at_byte_seven_maps_to_nothing() {
        let payload = json!({"from": "Ada <ada@> ZA=:=\"\u{241}]}", "messageId": "<m1@example.com>"});
        assert_eq!(map(&"email".into(), &payload, 4096, 0), Ok(None));
    }
}
