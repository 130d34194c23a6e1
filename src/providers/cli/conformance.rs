// Compiled only into the integration test binary (`tests/gateway/`), which includes this file
// for the channel conformance battery by reading the table of kinds: `crate` here is that test
// crate, never this library.
//
// The CLI in the battery: the gateway binary as a child process; a person writing is a JSON line
// on its stdin, and what it sends are JSON lines on its stdout.

use std::rc::Rc;

use serde_json::{json, Value};

use crate::conformance::platform::{Failure, Platform, Sent};
use crate::support::child_gateway::ChildIo;
use crate::support::test_gateway::TestGateway;

pub struct Cli(Rc<ChildIo>);

impl Cli {
    fn lines(&self, kind: &str) -> Vec<Sent> {
        let now = tokio::time::Instant::now();
        let lines = self.0.stdout().into_iter().filter_map(|line| serde_json::from_str::<Value>(&line).ok());
        lines
            .filter(|line| line["type"] == kind)
            .map(|line| Sent {
                chat: line["target"]["chatId"].as_str().unwrap_or_default().to_owned(),
                text: line["text"].as_str().unwrap_or_default().to_owned(),
                buttons: 0,
                at: now,
            })
            .collect()
    }
}

impl Platform for Cli {
    const BINDING: &'static str = "cli";
    const MAX_TEXT: usize = 12_000;
    const BUTTONS: bool = false;

    async fn start(gateway: &mut TestGateway) -> Self {
        gateway.set("OPEN_COWORK_GATEWAY_CLI_ENABLED", "true");
        Self(gateway.as_child_process())
    }

    fn chat(n: u32) -> String {
        format!("terminal-{n}")
    }

    async fn user_writes(&self, _gateway: &TestGateway, chat: &str, event: u32, text: &str) {
        self.0.write_line(&json!({"id": format!("line-{event}"), "chatId": chat, "text": text}).to_string());
    }

    fn sent(&self) -> Vec<Sent> {
        self.lines("text")
    }

    /// The CLI cannot edit a line it printed.
    fn edits(&self) -> Vec<Sent> {
        Vec::new()
    }

    fn fail_next_send(&self, _failure: Failure) {
        panic!("stdout has no failure to script: the CLI's entry marks these cases as not applicable");
    }

    fn failure_pending(&self) -> bool {
        false
    }
}

battery!(cli: Cli {
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
