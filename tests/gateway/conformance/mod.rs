//! The channel conformance battery: the same behaviours (`cases.rs`) run against every channel,
//! each through its fake platform server, with the dev Cloud and a real gateway in between.
//!
//! A channel joins with a file in `platforms/` implementing [`platform::Platform`] (start its
//! fake platform and point the gateway at it, make a person write, list what the platform
//! received, script a rate limit and a permanent refusal) and one entry in the table at the
//! bottom. The entry must name every case, in order (a missing one does not compile): `yes`, or
//! the reason the behaviour does not apply to that channel, which `cargo test` then lists as
//! ignored with that reason (a case is never passed silently). A new case is one function in
//! `cases.rs`, one line in each macro below and one line in every entry.

#![cfg(all(
    feature = "devcloud",
    feature = "telegram",
    feature = "slack",
    feature = "email",
    feature = "webhook",
    feature = "bridges",
    feature = "cli"
))]

mod cases;
mod platform;
mod platforms;

use crate::support::test_gateway::TestGateway;

/// Posts `body` (JSON) to the gateway's `path` with `headers`; the answer's status.
async fn post_json(gateway: &TestGateway, path: &str, body: &str, headers: &[(&str, String)]) -> u16 {
    let http = open_cowork_gateway::net::https::build_client(None).unwrap();
    let mut request =
        http::Request::post(format!("http://{}{path}", gateway.address())).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let body = http_body_util::Full::new(bytes::Bytes::from(body.to_owned()));
    http.request(request.body(body).unwrap()).await.unwrap().status().as_u16()
}

/// One test of the battery: `yes` runs the case against the platform; a string literal says why
/// the case does not apply, and the test is ignored with that reason.
macro_rules! case {
    ($platform:ty, $case:ident, yes) => {
        #[test]
        fn $case() {
            crate::support::run(super::cases::$case::<$platform>());
        }
    };
    ($platform:ty, $case:ident, $reason:literal) => {
        #[test]
        #[ignore = $reason]
        fn $case() {}
    };
}

/// A channel's entry: a module of tests named after it, one per case, in this order.
macro_rules! battery {
    ($channel:ident: $platform:ty {
        inbound_message_is_prompted_once: $inbound:tt,
        a_reply_reaches_the_chat: $reply:tt,
        a_long_reply_is_split: $split:tt,
        approval_shows_buttons_or_the_commands: $approval:tt,
        a_rate_limited_send_is_delayed_not_dropped: $rate_limited:tt,
        a_permanent_error_is_dead_lettered: $permanent:tt,
        a_restart_between_claim_and_prompt_loses_nothing: $restart:tt,
        streamed_text_edits_one_message: $edits:tt,
        streamed_edits_are_paced_to_one_a_second: $paced:tt $(,)?
    }) => {
        mod $channel {
            // The platform's path is written from the table's module; unused in an entry whose
            // cases are all not applicable.
            #[allow(unused_imports)]
            use super::*;
            case!($platform, inbound_message_is_prompted_once, $inbound);
            case!($platform, a_reply_reaches_the_chat, $reply);
            case!($platform, a_long_reply_is_split, $split);
            case!($platform, approval_shows_buttons_or_the_commands, $approval);
            case!($platform, a_rate_limited_send_is_delayed_not_dropped, $rate_limited);
            case!($platform, a_permanent_error_is_dead_lettered, $permanent);
            case!($platform, a_restart_between_claim_and_prompt_loses_nothing, $restart);
            case!($platform, streamed_text_edits_one_message, $edits);
            case!($platform, streamed_edits_are_paced_to_one_a_second, $paced);
        }
    };
}

battery!(telegram: platforms::telegram::Telegram {
    inbound_message_is_prompted_once: yes,
    a_reply_reaches_the_chat: yes,
    a_long_reply_is_split: yes,
    approval_shows_buttons_or_the_commands: yes,
    a_rate_limited_send_is_delayed_not_dropped: yes,
    a_permanent_error_is_dead_lettered: yes,
    a_restart_between_claim_and_prompt_loses_nothing: yes,
    streamed_text_edits_one_message: yes,
    streamed_edits_are_paced_to_one_a_second: yes,
});

battery!(slack: platforms::slack::Slack {
    inbound_message_is_prompted_once: yes,
    a_reply_reaches_the_chat: yes,
    a_long_reply_is_split: yes,
    approval_shows_buttons_or_the_commands: yes,
    a_rate_limited_send_is_delayed_not_dropped: yes,
    a_permanent_error_is_dead_lettered: yes,
    a_restart_between_claim_and_prompt_loses_nothing: yes,
    streamed_text_edits_one_message: yes,
    streamed_edits_are_paced_to_one_a_second: yes,
});

battery!(email: platforms::email::Email {
    inbound_message_is_prompted_once: yes,
    a_reply_reaches_the_chat: yes,
    a_long_reply_is_split: yes,
    approval_shows_buttons_or_the_commands: yes,
    a_rate_limited_send_is_delayed_not_dropped: yes,
    a_permanent_error_is_dead_lettered: yes,
    a_restart_between_claim_and_prompt_loses_nothing: yes,
    streamed_text_edits_one_message: "a mail cannot be edited once sent: streamed text goes out once, final",
    streamed_edits_are_paced_to_one_a_second: "a mail cannot be edited once sent",
});

battery!(webhook: platforms::relay::Relay<platforms::relay::Webhook> {
    inbound_message_is_prompted_once: yes,
    a_reply_reaches_the_chat: yes,
    a_long_reply_is_split: yes,
    approval_shows_buttons_or_the_commands: yes,
    a_rate_limited_send_is_delayed_not_dropped: yes,
    a_permanent_error_is_dead_lettered: yes,
    a_restart_between_claim_and_prompt_loses_nothing: yes,
    streamed_text_edits_one_message: yes,
    streamed_edits_are_paced_to_one_a_second:
        "the relay gets every edit as it comes: pacing edits is done for the platforms the gateway calls itself",
});

battery!(discord_bridge: platforms::relay::Relay<platforms::relay::Discord> {
    inbound_message_is_prompted_once: yes,
    a_reply_reaches_the_chat: yes,
    a_long_reply_is_split: yes,
    approval_shows_buttons_or_the_commands: yes,
    a_rate_limited_send_is_delayed_not_dropped: yes,
    a_permanent_error_is_dead_lettered: yes,
    a_restart_between_claim_and_prompt_loses_nothing: yes,
    streamed_text_edits_one_message: yes,
    streamed_edits_are_paced_to_one_a_second:
        "the relay gets every edit as it comes: pacing edits is done for the platforms the gateway calls itself",
});

battery!(signal_bridge: platforms::relay::Relay<platforms::relay::Signal> {
    inbound_message_is_prompted_once: yes,
    a_reply_reaches_the_chat: yes,
    a_long_reply_is_split: yes,
    approval_shows_buttons_or_the_commands: yes,
    a_rate_limited_send_is_delayed_not_dropped: yes,
    a_permanent_error_is_dead_lettered: yes,
    a_restart_between_claim_and_prompt_loses_nothing: yes,
    streamed_text_edits_one_message: "Signal messages cannot be edited: streamed text goes out once, final",
    streamed_edits_are_paced_to_one_a_second: "Signal messages cannot be edited",
});

battery!(cli: platforms::cli::Cli {
    inbound_message_is_prompted_once: yes,
    a_reply_reaches_the_chat: yes,
    a_long_reply_is_split: yes,
    approval_shows_buttons_or_the_commands: yes,
    a_rate_limited_send_is_delayed_not_dropped: "stdout has no rate limit",
    a_permanent_error_is_dead_lettered: "stdout refuses nothing: a write either happens or the process is gone",
    a_restart_between_claim_and_prompt_loses_nothing:
        "a line read from stdin is gone with the process that read it: no sender posts it again",
    streamed_text_edits_one_message: "a printed line cannot be edited: streamed text goes out once, final",
    streamed_edits_are_paced_to_one_a_second: "a printed line cannot be edited",
});
