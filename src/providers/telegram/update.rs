//! Telegram updates into normalised inbound messages: `message`
//! updates (with the group rules) and `callback_query` button presses; everything else, edited
//! messages included, is acknowledged and ignored.

use serde_json::Value;
use smol_str::SmolStr;

use crate::channel::{ChannelTarget, InboundMessage, InteractionRef, Sender};
pub use crate::config::providers::telegram::GroupPolicy;

/// What the mapping needs to know about the bot and its settings.
pub struct Mapping<'a> {
    pub provider_id: &'a str,
    pub bot_id: Option<i64>,
    pub bot_username: Option<&'a str>,
    pub groups: GroupPolicy,
    pub observe_unmentioned: bool,
}

/// `parseTelegramCommand`: `/cmd[@bot] args` → (command, args); a command addressed to another
/// bot is not a command.
pub fn parse_command(text: &str, bot_username: Option<&str>) -> Option<(String, String)> {
    let rest = text.trim().strip_prefix('/')?;
    let mut pieces = rest.split_whitespace();
    let head = pieces.next()?;
    let args = pieces.collect::<Vec<_>>().join(" ");
    let (command, addressee) = match head.split_once('@') {
        Some((command, addressee)) => (command, Some(addressee)),
        None => (head, None),
    };
    if let (Some(addressee), Some(bot)) = (addressee, bot_username) {
        if !addressee.eq_ignore_ascii_case(bot) {
            return None;
        }
    }
    (!command.is_empty()).then(|| (command.to_ascii_lowercase(), args))
}

fn id_string(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn display_name(from: &Value) -> Option<String> {
    let parts: Vec<&str> = ["first_name", "last_name"]
        .iter()
        .filter_map(|k| from.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn sender(from: &Value) -> Sender {
    Sender {
        provider_user_id: from.get("id").and_then(id_string).unwrap_or_default(),
        username: from.get("username").and_then(Value::as_str).map(str::to_owned),
        display_name: display_name(from),
    }
}

fn target(provider_id: &str, message: &Value, from: &Value) -> Option<ChannelTarget> {
    let chat = message.get("chat")?;
    Some(ChannelTarget {
        provider: SmolStr::new(provider_id),
        provider_kind: "telegram".into(),
        chat_id: chat.get("id").and_then(id_string)?,
        is_direct: Some(chat.get("type").and_then(Value::as_str) == Some("private")),
        thread_id: message.get("message_thread_id").and_then(Value::as_i64).map(|t| t.to_string()),
        user_id: from.get("id").and_then(id_string),
        message_id: message.get("message_id").and_then(id_string),
    })
}

fn update_id(update: &Value) -> Option<String> {
    update.get("update_id").and_then(Value::as_i64).filter(|id| id.unsigned_abs() < (1 << 53)).map(|id| id.to_string())
}

fn accepts(mapping: &Mapping<'_>, message: &Value, text: &str, is_command: bool) -> bool {
    if message.pointer("/chat/type").and_then(Value::as_str) == Some("private") {
        return true;
    }
    if mapping.groups == GroupPolicy::All || mapping.observe_unmentioned || is_command {
        return true;
    }
    if mapping.groups != GroupPolicy::MentionsAndReplies {
        return false;
    }
    if let Some(bot) = mapping.bot_username {
        if text.to_lowercase().contains(&format!("@{}", bot.to_lowercase())) {
            return true;
        }
    }
    mapping.bot_id.is_some_and(|bot| message.pointer("/reply_to_message/from/id").and_then(Value::as_i64) == Some(bot))
}

/// Maps one update; `None` when it is ignored.
pub fn map_update(mapping: &Mapping<'_>, update: &Value) -> Option<InboundMessage> {
    if let Some(message) = update.get("message") {
        return map_message(mapping, update, message);
    }
    if let Some(callback) = update.get("callback_query") {
        return map_callback(mapping, update, callback);
    }
    None
}

fn map_message(mapping: &Mapping<'_>, update: &Value, message: &Value) -> Option<InboundMessage> {
    let from = message.get("from")?;
    if from.get("is_bot") == Some(&Value::Bool(true)) {
        return None;
    }
    let text = message.get("text").or_else(|| message.get("caption")).and_then(Value::as_str).unwrap_or("").to_owned();
    let command = parse_command(&text, mapping.bot_username);
    if !accepts(mapping, message, &text, command.is_some()) {
        return None;
    }
    let target = target(mapping.provider_id, message, from)?;
    let message_id = message.get("message_id").and_then(id_string)?;
    let attachment_count = usize::from(message.get("document").is_some())
        + usize::from(message.get("photo").and_then(Value::as_array).is_some_and(|p| !p.is_empty()));
    Some(InboundMessage {
        id: message_id.clone(),
        provider_event_id: Some(update_id(update).unwrap_or_else(|| message_id.clone())),
        provider_message_id: Some(message_id),
        provider: SmolStr::new(mapping.provider_id),
        target,
        sender: sender(from),
        raw_text: text.clone(),
        text,
        is_command: command.is_some(),
        command: command.map(|(c, _)| c),
        attachment_count,
        interaction: None,
        received_at_ms: message.get("date").and_then(Value::as_u64).map_or_else(crate::time::now_ms, |s| s * 1000),
        raw: message.clone(),
    })
}

fn map_callback(mapping: &Mapping<'_>, update: &Value, callback: &Value) -> Option<InboundMessage> {
    let from = callback.get("from")?;
    let data = callback.get("data")?.as_str()?;
    let message = callback.get("message")?;
    if from.get("is_bot") == Some(&Value::Bool(true)) {
        return None;
    }
    let id = callback.get("id").and_then(id_string)?;
    let mut target = target(mapping.provider_id, message, from)?;
    target.message_id = message.get("message_id").and_then(id_string);
    Some(InboundMessage {
        provider_event_id: Some(update_id(update).unwrap_or_else(|| id.clone())),
        provider_message_id: target.message_id.clone(),
        interaction: Some(InteractionRef { id: id.clone(), token: data.to_owned(), kind: "button" }),
        id,
        provider: SmolStr::new(mapping.provider_id),
        target,
        sender: sender(from),
        text: data.to_owned(),
        raw_text: data.to_owned(),
        is_command: false,
        command: None,
        attachment_count: 0,
        received_at_ms: crate::time::now_ms(),
        raw: callback.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(groups: GroupPolicy) -> Mapping<'static> {
        Mapping {
            provider_id: "telegram",
            bot_id: Some(42),
            bot_username: Some("GatewayBot"),
            groups,
            observe_unmentioned: false,
        }
    }

    #[test]
    fn commands() {
        assert_eq!(parse_command("/status@GatewayBot now", Some("gatewaybot")), Some(("status".into(), "now".into())));
        assert_eq!(parse_command("/status@OtherBot now", Some("gatewaybot")), None);
        assert_eq!(parse_command("/Bind my-app", None), Some(("bind".into(), "my-app".into())));
        assert_eq!(parse_command("/", None), None);
        assert_eq!(parse_command("hello", None), None);
    }

    #[test]
    fn private_messages_map_fully() {
        let update = json!({"update_id": 1001, "message": {"message_id": 7, "date": 1700000000, "text": "hi <there>",
            "chat": {"id": 123, "type": "private"}, "from": {"id": 555, "is_bot": false, "first_name": "Ada", "last_name": "L", "username": "ada"}}});
        let message = map_update(&mapping(GroupPolicy::CommandsOnly), &update).unwrap();
        assert_eq!(
            (message.id.as_str(), message.provider_event_id.as_deref(), message.target.chat_id.as_str()),
            ("7", Some("1001"), "123")
        );
        assert_eq!(message.sender.display_name.as_deref(), Some("Ada L"));
        assert_eq!(message.received_at_ms, 1_700_000_000_000);
        assert_eq!(message.target.is_direct, Some(true));
        assert_eq!(message.text, "hi <there>");
    }

    #[test]
    fn group_rules() {
        let group = |text: &str, reply_to: Option<i64>| {
            let mut message = json!({"message_id": 1, "text": text, "chat": {"id": -100, "type": "supergroup"}, "from": {"id": 9, "is_bot": false}});
            if let Some(id) = reply_to {
                message["reply_to_message"] = json!({"from": {"id": id}});
            }
            json!({"update_id": 5, "message": message})
        };
        let commands = mapping(GroupPolicy::CommandsOnly);
        assert!(map_update(&commands, &group("/ask something", None)).is_some());
        assert!(map_update(&commands, &group("hello @gatewaybot", None)).is_none());
        let mentions = mapping(GroupPolicy::MentionsAndReplies);
        assert!(map_update(&mentions, &group("hello @GatewayBot", None)).is_some());
        assert!(map_update(&mentions, &group("a reply", Some(42))).is_some());
        assert!(map_update(&mentions, &group("chatter", Some(7))).is_none());
        assert!(map_update(&mapping(GroupPolicy::All), &group("chatter", None)).is_some());
    }

    #[test]
    fn callbacks_edits_and_bots() {
        let callback = json!({"update_id": 9, "callback_query": {"id": "cbq-1", "data": "b:1", "from": {"id": 5, "is_bot": false},
            "message": {"message_id": 77, "chat": {"id": 123, "type": "private"}}}});
        let message = map_update(&mapping(GroupPolicy::CommandsOnly), &callback).unwrap();
        assert_eq!(message.interaction.as_ref().map(|i| (i.id.as_str(), i.token.as_str())), Some(("cbq-1", "b:1")));
        assert_eq!(message.provider_event_id.as_deref(), Some("9"));
        let edited = json!({"update_id": 10, "edited_message": {"message_id": 1, "text": "x", "chat": {"id": 1, "type": "private"}, "from": {"id": 2}}});
        assert!(map_update(&mapping(GroupPolicy::All), &edited).is_none());
        let from_bot = json!({"update_id": 11, "message": {"message_id": 1, "text": "x", "chat": {"id": 1, "type": "private"}, "from": {"id": 2, "is_bot": true}}});
        assert!(map_update(&mapping(GroupPolicy::All), &from_bot).is_none());
    }
}
