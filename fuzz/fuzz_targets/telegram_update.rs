//! Telegram ingress: any JSON update, from the long poll or the webhook, maps without panicking
//! under every group policy, and what it maps keeps the ingress rules: a bot's
//! own message is never passed on, a button press carries its data as both token and text, and
//! in a group under the default "commands only" policy nothing but a command gets through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use open_cowork_gateway::providers::telegram::update::{map_update, parse_command, GroupPolicy, Mapping};
use serde_json::Value;

const BOT_ID: i64 = 42;

fuzz_target!(|input: &[u8]| {
    // The first byte picks the settings, so one input explores every policy; the rest is the update.
    let Some((&settings, update)) = input.split_first() else { return };
    let Ok(text) = std::str::from_utf8(update) else { return };
    let groups = match settings % 3 {
        0 => GroupPolicy::CommandsOnly,
        1 => GroupPolicy::MentionsAndReplies,
        _ => GroupPolicy::All,
    };
    let known_bot = settings & 0x04 != 0;
    let mapping = Mapping {
        provider_id: "telegram",
        bot_id: known_bot.then_some(BOT_ID),
        bot_username: known_bot.then_some("GatewayBot"),
        groups,
        observe_unmentioned: settings & 0x08 != 0,
    };

    if let Some((command, args)) = parse_command(text, mapping.bot_username) {
        assert!(!command.is_empty());
        assert_eq!(command, command.to_ascii_lowercase());
        assert!(!command.contains(char::is_whitespace), "{command:?}");
        assert!(args.len() <= text.len());
    }

    let Ok(update) = serde_json::from_str::<Value>(text) else { return };
    let Some(message) = map_update(&mapping, &update) else { return };
    assert!(message.provider_event_id.is_some());
    assert_eq!(message.provider, "telegram");
    assert_eq!(message.target.provider_kind, "telegram");
    match &message.interaction {
        Some(interaction) => {
            assert_eq!(interaction.token, message.text);
            assert!(!message.is_command);
            let from_bot = update.pointer("/callback_query/from/is_bot") == Some(&Value::Bool(true));
            assert!(!from_bot);
        }
        None => {
            let from_bot = update.pointer("/message/from/is_bot") == Some(&Value::Bool(true));
            assert!(!from_bot);
            assert_eq!(message.is_command, message.command.is_some());
            let private = update.pointer("/message/chat/type").and_then(Value::as_str) == Some("private");
            if !private && groups == GroupPolicy::CommandsOnly && !mapping.observe_unmentioned {
                assert!(message.is_command, "a group message got through without being a command");
            }
        }
    }
});
