//! The channel conformance battery: the same behaviours (`cases.rs`) run against every channel,
//! each through its fake platform server, with the dev Cloud and a real gateway in between.
//!
//! Every kind of the table of kinds runs it: each folder under `src/providers/` has a
//! `conformance.rs` (included here through the table, see the bottom of this file) implementing
//! [`platform::Platform`] (start its fake platform and point the gateway at it, make a person
//! write, list what the platform received, script a rate limit and a permanent refusal) and one
//! `battery!` entry per kind of the folder. The entry must name every case, in order (a missing
//! one does not compile): `yes`, or the reason the behaviour does not apply to that channel,
//! which `cargo test` then lists as ignored with that reason (a case is never passed silently).
//! A new case is one function in `cases.rs`, one line in each macro below and one line in every
//! entry.

#![cfg(feature = "devcloud")]

mod cases;
mod platform;

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
            crate::support::run(crate::conformance::cases::$case::<$platform>());
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
        pub(super) mod $channel {
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

/// Reads the table of kinds (`src/providers/table_of_kinds.rs`): every folder's `conformance.rs`
/// is included as a module of the battery (compiled when one of its kinds' features is on), and
/// every kind must have an entry named after it there, or this binary does not compile.
macro_rules! kinds {
    ($($folder:ident $($always:ident)? {
        $($kind:ident if $feature:literal when $trigger:literal => $parts:ident)+
    })+) => {$(
        #[cfg(any($(feature = $feature),+))]
        mod $folder {
            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/providers/", stringify!($folder), "/conformance.rs"));
        }
        $(
            #[cfg(feature = $feature)]
            #[allow(unused_imports)]
            use $folder::$kind as _;
        )+
    )+};
}

include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/providers/table_of_kinds.rs"));
