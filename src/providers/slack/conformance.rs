// Compiled only into the integration test binary (`tests/gateway/`), which includes this file
// for the channel conformance battery by reading the table of kinds: `crate` here is that test
// crate, never this library.
//
// Slack in the battery: the fake Web API; a person writing is a signed Events API request.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use open_cowork_gateway::providers::slack::signature::sign;
use serde_json::{json, Value};

use crate::conformance::platform::{Failure, Platform, Sent};
use crate::conformance::post_json;
use crate::support::fake_slack::{self, FakeSlack, Shared, SIGNING_SECRET, TOKEN};
use crate::support::test_gateway::TestGateway;

/// The fake Web API, and the events posted so far: each is signed a second earlier than the one
/// before, so a redelivery is a fresh request (as Slack's retries are), not a replayed signature.
pub struct Slack(Shared, Cell<u64>);

impl Slack {
    fn calls(&self, method: &str) -> Vec<Sent> {
        let slack = self.0.borrow();
        let times = slack.call_times(method);
        slack.calls(method).into_iter().zip(times).map(|(body, at)| sent(&body, at)).collect()
    }
}

/// The buttons anywhere in a message's blocks.
fn count_buttons(value: &Value) -> usize {
    match value {
        Value::Object(fields) => {
            usize::from(fields.get("type") == Some(&json!("button")))
                + fields.values().map(count_buttons).sum::<usize>()
        }
        Value::Array(items) => items.iter().map(count_buttons).sum(),
        _ => 0,
    }
}

fn sent(body: &Value, at: tokio::time::Instant) -> Sent {
    let blocks = match &body["blocks"] {
        // Form-encoded calls carry the blocks as a JSON string.
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        blocks => blocks.clone(),
    };
    Sent {
        chat: body["channel"].as_str().unwrap_or_default().to_owned(),
        text: body["text"].as_str().unwrap_or_default().to_owned(),
        buttons: count_buttons(&blocks),
        at,
    }
}

impl Platform for Slack {
    const BINDING: &'static str = "slack";
    const MAX_TEXT: usize = 3000;
    const BUTTONS: bool = true;

    async fn start(gateway: &mut TestGateway) -> Self {
        let slack: Shared = Rc::new(RefCell::new(FakeSlack::default()));
        let url = fake_slack::start(Rc::clone(&slack)).await;
        gateway
            .set("OPEN_COWORK_GATEWAY_SLACK_BOT_TOKEN", TOKEN)
            .set("OPEN_COWORK_GATEWAY_SLACK_SIGNING_SECRET", SIGNING_SECRET)
            .set("OPEN_COWORK_GATEWAY_SLACK_API_BASE_URL", &url);
        Self(slack, Cell::new(0))
    }

    fn chat(n: u32) -> String {
        format!("C0BATTERY{n}")
    }

    async fn user_writes(&self, gateway: &TestGateway, chat: &str, event: u32, text: &str) {
        let envelope = json!({"type": "event_callback", "team_id": "T0ACME", "event_id": format!("Ev{event:04}"),
            "event": {"type": "message", "user": "U0ALICE", "channel": chat, "text": text,
            "ts": format!("1716984{event:03}.000100"), "client_msg_id": format!("client-{event}"),
            "channel_type": "channel"}});
        let body = envelope.to_string();
        self.1.set(self.1.get() + 1);
        let timestamp = (open_cowork_gateway::time::now_ms() / 1000 - self.1.get()).to_string();
        let headers = [
            ("x-slack-request-timestamp", timestamp.clone()),
            ("x-slack-signature", sign(SIGNING_SECRET, &timestamp, &body)),
        ];
        let status = post_json(gateway, "/webhooks/slack", &body, &headers).await;
        assert!(status < 300, "the event answered {status}");
    }

    fn sent(&self) -> Vec<Sent> {
        self.calls("chat.postMessage")
    }

    fn edits(&self) -> Vec<Sent> {
        self.calls("chat.update")
    }

    fn fail_next_send(&self, failure: Failure) {
        let mut slack = self.0.borrow_mut();
        match failure {
            Failure::RateLimited { retry_after_secs } => {
                slack.error("chat.postMessage", 429, "ratelimited", Some(retry_after_secs))
            }
            Failure::Permanent => slack.error("chat.postMessage", 404, "channel_not_found", None),
        }
    }

    fn failure_pending(&self) -> bool {
        self.0.borrow().scripted.get("chat.postMessage").is_some_and(|q| !q.is_empty())
    }
}

battery!(slack: Slack {
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
