// Compiled only into the integration test binary (`tests/gateway/`), which includes this file
// for the channel conformance battery by reading the table of kinds: `crate` here is that test
// crate, never this library.
//
// E-mail in the battery: the SMTP sink receives the replies; a person writing is the inbound
// relay's post of a parsed mail.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::json;

use crate::conformance::platform::{Failure, Platform, Sent};
use crate::conformance::post_json;
use crate::support::smtp_sink::{self, SharedSink, Sink, Stage, Transaction};
use crate::support::test_gateway::TestGateway;

const SECRET: &str = "relay-secret-for-the-battery";

pub struct Email(SharedSink);

/// The text of a mail's body, its transfer encoding undone.
fn body_text(transaction: &Transaction) -> String {
    let body = transaction.data.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    match transaction.header("Content-Transfer-Encoding").as_deref() {
        Some("quoted-printable") => quoted_printable(body),
        Some("base64") => base64(body),
        _ => body.to_owned(),
    }
}

fn quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let mut bytes = Vec::new();
    let mut rest = joined.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        match (byte, tail.get(..2).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())) {
            (b'=', Some(decoded)) => {
                bytes.push(decoded);
                rest = &tail[2..];
            }
            _ => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn base64(body: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let values: Vec<u32> =
        body.bytes().filter_map(|b| ALPHABET.iter().position(|&a| a == b)).map(|v| v as u32).collect();
    let mut bytes = Vec::new();
    for group in values.chunks(4) {
        let word = group.iter().enumerate().fold(0u32, |word, (i, v)| word | (v << (18 - 6 * i)));
        bytes.extend(word.to_be_bytes()[1..group.len()].iter());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Platform for Email {
    const BINDING: &'static str = "email";
    const MAX_TEXT: usize = 20_000;
    const BUTTONS: bool = false;

    async fn start(gateway: &mut TestGateway) -> Self {
        let sink = Rc::new(RefCell::new(Sink::default()));
        let smtp = smtp_sink::start(Rc::clone(&sink)).await;
        gateway
            .set("OPEN_COWORK_GATEWAY_EMAIL_INBOUND_SECRET", SECRET)
            .set("OPEN_COWORK_GATEWAY_EMAIL_FROM", "Open Cowork Agent <agent@example.com>")
            .set("OPEN_COWORK_GATEWAY_EMAIL_SMTP_HOST", "127.0.0.1")
            .set("OPEN_COWORK_GATEWAY_EMAIL_SMTP_PORT", &smtp.port().to_string());
        Self(sink)
    }

    fn chat(n: u32) -> String {
        format!("person{n}@example.test")
    }

    async fn user_writes(&self, gateway: &TestGateway, chat: &str, event: u32, text: &str) {
        let mail = json!({"messageId": format!("<m{event}@example.test>"), "from": chat,
            "to": "agent@example.com", "subject": "Battery", "text": text});
        let headers = [("x-open-cowork-gateway-email-secret", SECRET.to_owned())];
        let status = post_json(gateway, "/webhooks/email", &mail.to_string(), &headers).await;
        assert!(status < 300, "the mail answered {status}");
    }

    fn sent(&self) -> Vec<Sent> {
        let sink = self.0.borrow();
        let now = tokio::time::Instant::now();
        let sent = sink.transactions.iter().map(|t| Sent {
            chat: t.rcpt_to.first().cloned().unwrap_or_default(),
            text: body_text(t),
            buttons: 0,
            at: now,
        });
        sent.collect()
    }

    /// A mail cannot be changed once sent.
    fn edits(&self) -> Vec<Sent> {
        Vec::new()
    }

    fn fail_next_send(&self, failure: Failure) {
        let reply = match failure {
            Failure::RateLimited { .. } => (Stage::Mail, "421 4.3.2 try again later"),
            Failure::Permanent => (Stage::Rcpt, "550 5.1.1 user unknown"),
        };
        self.0.borrow_mut().script.push_back(reply);
    }

    fn failure_pending(&self) -> bool {
        !self.0.borrow().script.is_empty()
    }
}

battery!(email: Email {
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
