//! Payload dispatch and normalisation: what a verified Slack request
//! means. Pure functions of the parsed body, so the fuzz target and the unit tests reach them
//! without a network.
//!
//! `url_verification` answers its challenge; `event_callback` `message` events from people become
//! prompts; `block_actions` button presses become interactions; everything else (slash commands,
//! `ssl_check`, `view_submission`, `app_mention`, edits, bot messages, …) is accepted and ignored.
//! The claim keys are Slack's stable ids (`event_id`, `trigger_id`), so a retried event is a
//! duplicate in Cloud, not a second prompt.

use serde_json::Value;
use smol_str::SmolStr;

use crate::channel::{ChannelTarget, InboundMessage, InteractionRef, Sender};

/// The provider kind written into targets.
pub const KIND: &str = "slack";

/// What a verified request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Dispatch {
    /// `url_verification`: answer 200 `{"challenge": …}`.
    Challenge(String),
    /// A message or a button press for the inbound queue; a press also says which message
    /// carried the button.
    Inbound { message: Box<InboundMessage>, origin: Option<PressOrigin> },
    /// Nothing to do: 202.
    Ignored,
}

/// Where a button press came from, so the message carrying the buttons can be updated once the
/// press is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PressOrigin {
    pub channel: String,
    pub ts: String,
    /// The message's fallback text as Slack stored it (already entity-escaped).
    pub text: String,
}

/// A "string field": a non-blank string, returned trimmed.
fn field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// The team a payload belongs to (the replay scope): `team_id`, `team.id`, `enterprise_id`.
pub fn team_of(payload: &Value) -> Option<&str> {
    field(payload, "team_id")
        .or_else(|| payload.get("team").and_then(|team| field(team, "id")))
        .or_else(|| field(payload, "enterprise_id"))
}

/// Dispatches a verified payload. `bot_user_id` is the app's own user (from `auth.test`), whose
/// messages are never prompts even when Slack does not mark them as a bot's.
pub fn dispatch(provider_id: &str, payload: &Value, bot_user_id: Option<&str>, now_ms: u64) -> Dispatch {
    match payload.get("type").and_then(Value::as_str) {
        Some("url_verification") => match field(payload, "challenge") {
            Some(challenge) => Dispatch::Challenge(challenge.to_owned()),
            None => Dispatch::Ignored,
        },
        Some("event_callback") => map_event(provider_id, payload, bot_user_id, now_ms)
            .map_or(Dispatch::Ignored, |message| Dispatch::Inbound { message: Box::new(message), origin: None }),
        Some("block_actions") => map_press(provider_id, payload, now_ms)
            .map_or(Dispatch::Ignored, |(message, origin)| Dispatch::Inbound { message: Box::new(message), origin }),
        _ => Dispatch::Ignored,
    }
}

fn target(provider_id: &str, chat: &str, thread: Option<&str>, user: &str, message: Option<&str>) -> ChannelTarget {
    ChannelTarget {
        provider: SmolStr::new(provider_id),
        provider_kind: SmolStr::new_static(KIND),
        chat_id: chat.to_owned(),
        is_direct: None,
        thread_id: thread.map(str::to_owned),
        user_id: Some(user.to_owned()),
        message_id: message.map(str::to_owned),
    }
}

/// Message subtypes that are still a person writing: a message with files, a thread reply also
/// sent to the channel, and `/me` text.
const PERSON_SUBTYPES: [&str; 3] = ["file_share", "thread_broadcast", "me_message"];

/// A `message` event from a person, with a channel and text.
fn map_event(provider_id: &str, envelope: &Value, bot_user_id: Option<&str>, now_ms: u64) -> Option<InboundMessage> {
    let event = envelope.get("event")?;
    if event.get("type").and_then(Value::as_str) != Some("message") {
        return None;
    }
    // Only a person writing prompts. Bots and apps (ours included) never do: a bot answering a
    // bot would loop. Notices Slack posts as messages (joins, leaves, topic, purpose, pins,
    // edits, deletions) carry a subtype and the user they are about, and are not prompts either.
    let person_writing = match event.get("subtype").and_then(Value::as_str) {
        None => true,
        Some(subtype) => PERSON_SUBTYPES.contains(&subtype),
    };
    if !person_writing
        || event.get("bot_id").is_some_and(|b| !b.is_null())
        || event.get("app_id").is_some_and(|a| !a.is_null())
    {
        return None;
    }
    let user = field(event, "user")?;
    if bot_user_id == Some(user) {
        return None;
    }
    let channel = field(event, "channel")?;
    let text = field(event, "text")?;
    let ts = field(event, "ts").map_or_else(|| now_ms.to_string(), str::to_owned);
    let team = field(envelope, "team_id").or_else(|| field(event, "team"));
    let id = field(event, "client_msg_id")
        .map_or_else(|| format!("slack-{}-{channel}-{ts}", team.unwrap_or("team")), str::to_owned);
    let event_id = field(envelope, "event_id")
        .or_else(|| field(event, "client_msg_id"))
        .map_or_else(|| format!("{channel}:{ts}"), str::to_owned);
    // A top-level message starts its own thread, so the reply goes under it.
    let thread = field(event, "thread_ts").unwrap_or(&ts).to_owned();
    let profile = event.get("user_profile");
    let display_name =
        profile.and_then(|p| field(p, "real_name").or_else(|| field(p, "display_name"))).map(str::to_owned);
    let (is_command, command) = match text.strip_prefix('/') {
        Some(rest) => (true, rest.split_whitespace().next().map(str::to_owned)),
        None => (false, None),
    };
    let attachment_count = event.get("files").and_then(Value::as_array).map_or(0, Vec::len);
    Some(InboundMessage {
        id,
        provider_event_id: Some(event_id),
        provider_message_id: Some(ts.clone()),
        provider: SmolStr::new(provider_id),
        target: target(provider_id, channel, Some(&thread), user, Some(&ts)),
        sender: Sender { provider_user_id: user.to_owned(), username: Some(user.to_owned()), display_name },
        text: text.to_owned(),
        raw_text: text.to_owned(),
        is_command,
        command,
        attachment_count,
        interaction: None,
        received_at_ms: now_ms,
        raw: envelope.clone(),
    })
}

/// The first action of a `block_actions` payload, with the message it was pressed on.
pub fn map_press(provider_id: &str, payload: &Value, now_ms: u64) -> Option<(InboundMessage, Option<PressOrigin>)> {
    let action = payload.get("actions").and_then(Value::as_array).and_then(|a| a.first())?;
    let token = field(action, "value")?;
    let user = payload.get("user")?;
    let user_id = field(user, "id")?;
    let channel = field(payload.get("channel")?, "id")?;
    let message = payload.get("message");
    let message_ts = message.and_then(|m| field(m, "ts"));
    let thread = message
        .and_then(|m| field(m, "thread_ts"))
        .or(message_ts)
        .or_else(|| payload.get("container").and_then(|c| field(c, "message_ts")))
        .or_else(|| field(payload, "message_ts"));
    let trigger = field(payload, "trigger_id");
    let action_ts = field(action, "action_ts");
    let random = crate::util::ids::random_id;
    // As upstream (an odd choice, kept because the claim key is a Cloud dedupe key): the claim key
    // is the trigger, the interaction id the action.
    let id = trigger.or(action_ts).map_or_else(random, str::to_owned);
    let interaction_id = action_ts.or(trigger).map_or_else(random, str::to_owned);
    let origin = message_ts.map(|ts| PressOrigin {
        channel: channel.to_owned(),
        ts: ts.to_owned(),
        text: message.and_then(|m| m.get("text")).and_then(Value::as_str).unwrap_or("").to_owned(),
    });
    let inbound = InboundMessage {
        id: id.clone(),
        provider_event_id: Some(id),
        provider_message_id: message_ts.map(str::to_owned),
        provider: SmolStr::new(provider_id),
        target: target(provider_id, channel, thread, user_id, message_ts),
        sender: Sender {
            provider_user_id: user_id.to_owned(),
            username: field(user, "username").map(str::to_owned),
            display_name: field(user, "name").map(str::to_owned),
        },
        text: String::new(),
        raw_text: String::new(),
        is_command: false,
        command: None,
        attachment_count: 0,
        interaction: Some(InteractionRef { id: interaction_id, token: token.to_owned(), kind: "button" }),
        received_at_ms: now_ms,
        raw: payload.clone(),
    };
    Some((inbound, origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inbound(dispatch: Dispatch) -> InboundMessage {
        match dispatch {
            Dispatch::Inbound { message, .. } => *message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn the_specs_message_example() {
        let envelope = json!({"type": "event_callback", "team_id": "T123", "event_id": "Ev1", "event": {"type": "message", "user": "U123", "channel": "C123", "text": " /status now ", "ts": "1716984000.000100", "thread_ts": "1716983000.000100", "client_msg_id": "client-1", "user_profile": {"real_name": "Alice Example"}}});
        let message = inbound(dispatch("slack", &envelope, None, 5));
        assert_eq!(message.id, "client-1");
        assert_eq!(message.provider_event_id.as_deref(), Some("Ev1"));
        assert_eq!(message.target.chat_id, "C123");
        assert_eq!(message.target.thread_id.as_deref(), Some("1716983000.000100"));
        assert_eq!(message.target.message_id.as_deref(), Some("1716984000.000100"));
        assert_eq!(message.sender.display_name.as_deref(), Some("Alice Example"));
        assert_eq!(message.text, "/status now");
        assert_eq!(message.command.as_deref(), Some("status"));
        assert!(message.is_command);
    }

    #[test]
    fn ids_fall_back_and_a_top_level_message_is_its_own_thread() {
        let envelope = json!({"type": "event_callback", "team_id": "T1", "event": {"type": "message", "user": "U1", "channel": "D1", "text": "hi", "ts": "17.5"}});
        let message = inbound(dispatch("slack", &envelope, None, 5));
        assert_eq!(message.id, "slack-T1-D1-17.5");
        assert_eq!(message.provider_event_id.as_deref(), Some("D1:17.5"));
        assert_eq!(message.target.thread_id.as_deref(), Some("17.5"));
    }

    #[test]
    fn bots_edits_mentions_and_blank_texts_are_ignored() {
        let event = |extra: Value| {
            let mut event = json!({"type": "message", "user": "U1", "channel": "C1", "text": "hi", "ts": "1.0"});
            event.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            json!({"type": "event_callback", "event": event})
        };
        for extra in [
            json!({"subtype": "bot_message"}),
            json!({"bot_id": "B1"}),
            json!({"type": "app_mention"}),
            json!({"text": "  "}),
            json!({"channel": null}),
            json!({"user": null, "subtype": "message_changed"}),
            json!({"subtype": "channel_join", "text": "<@U1> has joined the channel"}),
            json!({"subtype": "channel_leave", "text": "<@U1> has left the channel"}),
            json!({"subtype": "channel_topic", "text": "set the channel topic: t"}),
            json!({"subtype": "channel_purpose", "text": "set the channel purpose: p"}),
            json!({"subtype": "pinned_item", "text": "pinned a message"}),
            json!({"subtype": "message_deleted"}),
            json!({"app_id": "A1"}),
        ] {
            assert_eq!(dispatch("slack", &event(extra.clone()), None, 0), Dispatch::Ignored, "{extra}");
        }
        assert_eq!(dispatch("slack", &event(json!({})), Some("U1"), 0), Dispatch::Ignored, "our own user");
        assert!(matches!(
            dispatch("slack", &event(json!({"subtype": "file_share"})), None, 0),
            Dispatch::Inbound { .. }
        ));
        for subtype in ["thread_broadcast", "me_message"] {
            assert!(
                matches!(dispatch("slack", &event(json!({"subtype": subtype})), None, 0), Dispatch::Inbound { .. }),
                "{subtype} is a person writing"
            );
        }
    }

    #[test]
    fn the_specs_button_example_and_other_types() {
        let payload = json!({"type": "block_actions", "trigger_id": "trigger-1", "user": {"id": "U123", "username": "alice", "name": "Alice"}, "channel": {"id": "C123"}, "message": {"ts": "1716984000.000100", "thread_ts": "1716983000.000100", "text": "Approve?"}, "actions": [{"action_ts": "1716984001.000100", "value": "p:token-1"}]});
        let (message, origin) = map_press("slack", &payload, 0).unwrap();
        assert_eq!(message.target.chat_id, "C123");
        assert_eq!(message.target.thread_id.as_deref(), Some("1716983000.000100"));
        assert_eq!(message.provider_event_id.as_deref(), Some("trigger-1"));
        let interaction = message.interaction.unwrap();
        assert_eq!((interaction.id.as_str(), interaction.token.as_str()), ("1716984001.000100", "p:token-1"));
        assert_eq!(origin.unwrap().text, "Approve?");
        assert_eq!(
            dispatch("slack", &json!({"type": "url_verification", "challenge": " abc "}), None, 0),
            Dispatch::Challenge("abc".into())
        );
        assert_eq!(dispatch("slack", &json!({"type": "url_verification"}), None, 0), Dispatch::Ignored);
        for other in ["ssl_check", "view_submission", "shortcut", "app_rate_limited"] {
            assert_eq!(dispatch("slack", &json!({"type": other}), None, 0), Dispatch::Ignored);
        }
        assert_eq!(team_of(&json!({"team": {"id": "T9"}})), Some("T9"));
        assert_eq!(team_of(&json!({"enterprise_id": "E1"})), Some("E1"));
    }
}
