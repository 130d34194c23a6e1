// Compiled only into the integration test binary (`tests/gateway/`), which includes this file
// for the channel conformance battery by reading the table of kinds: `crate` here is that test
// crate, never this library.
//
// The fake provider in the battery: none of the cases apply. It has no platform to fake — it is
// the platform stand-in itself (an in-memory record, failures scripted through the provider
// factory), which the tests of the runtime drive directly.

battery!(fake: () {
    inbound_message_is_prompted_once: "the fake provider is the platform stand-in the runtime's own tests drive",
    a_reply_reaches_the_chat: "the fake provider is the platform stand-in the runtime's own tests drive",
    a_long_reply_is_split: "the fake provider is the platform stand-in the runtime's own tests drive",
    approval_shows_buttons_or_the_commands: "the fake provider is the platform stand-in the runtime's own tests drive",
    a_rate_limited_send_is_delayed_not_dropped: "the fake provider is the platform stand-in the runtime's own tests drive",
    a_permanent_error_is_dead_lettered: "the fake provider is the platform stand-in the runtime's own tests drive",
    a_restart_between_claim_and_prompt_loses_nothing:
        "the fake provider is the platform stand-in the runtime's own tests drive",
    streamed_text_edits_one_message: "the fake provider is the platform stand-in the runtime's own tests drive",
    streamed_edits_are_paced_to_one_a_second: "the fake provider is the platform stand-in the runtime's own tests drive",
});
