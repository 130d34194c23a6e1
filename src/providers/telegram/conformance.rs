// Compiled only into the integration test binary (`tests/gateway/`), which includes this file
// for the channel conformance battery by reading the table of kinds: `crate` here is that test
// crate, never this library.
//
// Telegram in the battery: the fake Bot API, polled; a person writing is an update it serves.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};

use crate::conformance::platform::{Failure, Platform, Sent};
use crate::support::fake_telegram::{self, text_update, FakeBot, Shared, TOKEN};
use crate::support::test_gateway::TestGateway;

pub struct Telegram(Shared);

impl Telegram {
    fn calls(&self, method: &str) -> Vec<Sent> {
        let bot = self.0.borrow();
        let times = bot.call_times(method);
        bot.calls(method).into_iter().zip(times).map(|(body, at)| sent(&body, at)).collect()
    }
}

fn sent(body: &Value, at: tokio::time::Instant) -> Sent {
    let buttons = body["reply_markup"]["inline_keyboard"]
        .as_array()
        .map_or(0, |rows| rows.iter().map(|row| row.as_array().map_or(0, Vec::len)).sum());
    let chat = match &body["chat_id"] {
        Value::String(chat) => chat.clone(),
        other => other.to_string(),
    };
    Sent { chat, text: body["text"].as_str().unwrap_or_default().to_owned(), buttons, at }
}

impl Platform for Telegram {
    const BINDING: &'static str = "telegram";
    const MAX_TEXT: usize = 4096;
    const BUTTONS: bool = true;

    async fn start(gateway: &mut TestGateway) -> Self {
        let bot: Shared = Rc::new(RefCell::new(FakeBot::default()));
        let url = fake_telegram::start(Rc::clone(&bot)).await;
        gateway
            .set("OPEN_COWORK_GATEWAY_TELEGRAM_BOT_TOKEN", TOKEN)
            .set("OPEN_COWORK_GATEWAY_TELEGRAM_API_BASE_URL", &url);
        Self(bot)
    }

    fn chat(n: u32) -> String {
        (7000 + n).to_string()
    }

    async fn user_writes(&self, _gateway: &TestGateway, chat: &str, event: u32, text: &str) {
        self.0.borrow_mut().push_update(text_update(event.into(), chat.parse().unwrap(), text));
    }

    /// The Bot API serves an update until an offset confirms it: nothing to send again.
    async fn redeliver(&self, _gateway: &TestGateway, _chat: &str, _event: u32, _text: &str) {}

    fn sent(&self) -> Vec<Sent> {
        self.calls("sendMessage")
    }

    fn edits(&self) -> Vec<Sent> {
        self.calls("editMessageText")
    }

    fn fail_next_send(&self, failure: Failure) {
        let mut bot = self.0.borrow_mut();
        match failure {
            Failure::RateLimited { retry_after_secs } => bot.error(
                "sendMessage",
                429,
                &format!("Too Many Requests: retry after {retry_after_secs}"),
                Some(json!({"retry_after": retry_after_secs})),
            ),
            Failure::Permanent => bot.error("sendMessage", 403, "Forbidden: bot was blocked by the user", None),
        }
    }

    fn failure_pending(&self) -> bool {
        self.0.borrow().scripted.get("sendMessage").is_some_and(|q| !q.is_empty())
    }
}

battery!(telegram: Telegram {
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
