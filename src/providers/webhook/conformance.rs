// Compiled only into the integration test binary (`tests/gateway/`), which includes this file
// for the channel conformance battery by reading the table of kinds: `crate` here is that test
// crate, never this library.
//
// The generic webhook and the bridges in the battery: the loopback relay receives the signed
// deliveries; a person writing is a signed post to the gateway's webhook route of that kind.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::rc::Rc;

use serde_json::{json, Value};

use crate::conformance::platform::{Failure, Platform, Sent};
use crate::conformance::post_json;
use crate::support::test_gateway::TestGateway;
use crate::support::webhook_receiver::{self, signature, Answer, Receiver, SharedReceiver, SECRET};

/// One relay kind: its name (the route, the seeded binding, the settings' prefix) and its limits.
pub trait RelayKind {
    const NAME: &'static str;
    const PREFIX: &'static str;
    const MAX_TEXT: usize;
    const BUTTONS: bool;
}

pub struct Webhook;
impl RelayKind for Webhook {
    const NAME: &'static str = "webhook";
    const PREFIX: &'static str = "OPEN_COWORK_GATEWAY_WEBHOOK";
    const MAX_TEXT: usize = 4096;
    const BUTTONS: bool = true;
}

pub struct Discord;
impl RelayKind for Discord {
    const NAME: &'static str = "discord";
    const PREFIX: &'static str = "OPEN_COWORK_GATEWAY_DISCORD";
    const MAX_TEXT: usize = 2000;
    const BUTTONS: bool = true;
}

/// A bridge with up to three buttons in one row and no edits.
pub struct WhatsApp;
impl RelayKind for WhatsApp {
    const NAME: &'static str = "whatsapp";
    const PREFIX: &'static str = "OPEN_COWORK_GATEWAY_WHATSAPP";
    const MAX_TEXT: usize = 4096;
    const BUTTONS: bool = true;
}

/// A bridge without buttons or edits: approvals fall back to text.
pub struct Signal;
impl RelayKind for Signal {
    const NAME: &'static str = "signal";
    const PREFIX: &'static str = "OPEN_COWORK_GATEWAY_SIGNAL";
    const MAX_TEXT: usize = 4096;
    const BUTTONS: bool = false;
}

pub struct Relay<K> {
    receiver: SharedReceiver,
    /// Posts made so far: each is signed a second earlier than the one before, so a redelivery
    /// is a fresh request (as a real sender's retry is), not a replay of the same signature.
    posts: Cell<u64>,
    kind: PhantomData<K>,
}

impl<K> Relay<K> {
    fn received(&self, types: &[&str]) -> Vec<Sent> {
        let receiver = self.receiver.borrow();
        let bodies = receiver.requests.iter().map(|r| (serde_json::from_slice::<Value>(&r.raw).unwrap(), r.at));
        bodies.filter(|(body, _)| types.iter().any(|t| body["type"] == *t)).map(|(body, at)| sent(&body, at)).collect()
    }
}

fn sent(body: &Value, at: tokio::time::Instant) -> Sent {
    let buttons =
        body["buttons"].as_array().map_or(0, |rows| rows.iter().map(|r| r.as_array().map_or(0, Vec::len)).sum());
    Sent {
        chat: body["target"]["chatId"].as_str().unwrap_or_default().to_owned(),
        text: body["text"].as_str().unwrap_or_default().to_owned(),
        buttons,
        at,
    }
}

impl<K: RelayKind> Platform for Relay<K> {
    const BINDING: &'static str = K::NAME;
    const MAX_TEXT: usize = K::MAX_TEXT;
    const BUTTONS: bool = K::BUTTONS;

    async fn start(gateway: &mut TestGateway) -> Self {
        let receiver: SharedReceiver = Rc::new(RefCell::new(Receiver::default()));
        let address = webhook_receiver::start_on(Rc::clone(&receiver), "127.0.0.1:0").await;
        let prefix = K::PREFIX;
        gateway
            .set(&format!("{prefix}_DELIVERY_URL"), &format!("http://{address}/relay"))
            .set(&format!("{prefix}_SHARED_SECRET"), SECRET)
            .set(&format!("{prefix}_ALLOW_PRIVATE_DELIVERY"), "true");
        Self { receiver, posts: Cell::new(0), kind: PhantomData }
    }

    fn chat(n: u32) -> String {
        format!("battery-chat-{n}")
    }

    async fn user_writes(&self, gateway: &TestGateway, chat: &str, event: u32, text: &str) {
        let body = json!({"id": format!("event-{event}"), "target": {"chatId": chat},
            "sender": {"userId": "alice"}, "text": text})
        .to_string();
        self.posts.set(self.posts.get() + 1);
        let timestamp = (open_cowork_gateway::time::now_ms() / 1000 - self.posts.get()).to_string();
        let headers = [
            ("x-open-cowork-gateway-webhook-timestamp", timestamp.clone()),
            ("x-open-cowork-gateway-webhook-signature", signature(&timestamp, body.as_bytes())),
        ];
        let status = post_json(gateway, &format!("/webhooks/{}", K::NAME), &body, &headers).await;
        assert!(status < 300, "the message answered {status}");
    }

    fn sent(&self) -> Vec<Sent> {
        self.received(&["text", "buttons"])
    }

    fn edits(&self) -> Vec<Sent> {
        self.received(&["edit"])
    }

    fn fail_next_send(&self, failure: Failure) {
        let answer = match failure {
            Failure::RateLimited { retry_after_secs } => {
                Answer::status(429).header("retry-after", &retry_after_secs.to_string())
            }
            Failure::Permanent => Answer::status(404),
        };
        self.receiver.borrow_mut().script.push_back(answer);
    }

    fn failure_pending(&self) -> bool {
        !self.receiver.borrow().script.is_empty()
    }
}

battery!(webhook: Relay<Webhook> {
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

battery!(discord: Relay<Discord> {
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

battery!(signal: Relay<Signal> {
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

battery!(whatsapp: Relay<WhatsApp> {
    inbound_message_is_prompted_once: yes,
    a_reply_reaches_the_chat: yes,
    a_long_reply_is_split: yes,
    approval_shows_buttons_or_the_commands: yes,
    a_rate_limited_send_is_delayed_not_dropped: yes,
    a_permanent_error_is_dead_lettered: yes,
    a_restart_between_claim_and_prompt_loses_nothing: yes,
    streamed_text_edits_one_message: "WhatsApp messages cannot be edited: streamed text goes out once, final",
    streamed_edits_are_paced_to_one_a_second: "WhatsApp messages cannot be edited",
});
