//! The behaviours every channel must show, each written once against [`Platform`]: the battery
//! runs them for every channel of the table in `mod.rs`.

use std::time::Duration;

use serde_json::json;

use super::platform::{Failure, Platform, Sent};
use crate::support::eventually;
use crate::support::test_gateway::TestGateway;

/// The Cloud, the fake platform and a ready gateway between them.
async fn start<P: Platform>() -> (TestGateway, P) {
    let mut gateway = TestGateway::new().await;
    let platform = P::start(&mut gateway).await;
    gateway.start().await;
    (gateway, platform)
}

/// Time for a duplicate that should not happen to show up (a second prompt, a resend).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn sent_to<P: Platform>(platform: &P, chat: &str) -> Vec<Sent> {
    platform.sent().into_iter().filter(|s| s.chat == chat).collect()
}

/// A message becomes exactly one prompt, also when the platform delivers it twice.
pub async fn inbound_message_is_prompted_once<P: Platform>() {
    let (gateway, platform) = start::<P>().await;
    let chat = P::chat(1);
    platform.user_writes(&gateway, &chat, 1, "hello battery").await;
    platform.user_writes(&gateway, &chat, 1, "hello battery").await;
    eventually("the prompt", || !gateway.prompts(&chat).is_empty()).await;
    settle().await;
    assert_eq!(gateway.prompts(&chat), ["hello battery"]);
}

/// The agent's answer reaches the chat the message came from.
pub async fn a_reply_reaches_the_chat<P: Platform>() {
    let (gateway, platform) = start::<P>().await;
    let chat = P::chat(2);
    platform.user_writes(&gateway, &chat, 2, "ping").await;
    eventually("the reply", || sent_to(&platform, &chat).iter().any(|s| s.text.contains("echo: ping"))).await;
    settle().await;
    let replies = sent_to(&platform, &chat).into_iter().filter(|s| s.text.contains("echo: ping")).count();
    assert_eq!(replies, 1, "one reply: {:?}", platform.sent());
}

/// A text longer than the channel allows goes out as several messages, each within the limit,
/// together carrying every word in order.
pub async fn a_long_reply_is_split<P: Platform>() {
    let (gateway, platform) = start::<P>().await;
    let chat = P::chat(3);
    let mut words = Vec::new();
    while words.iter().map(|w: &String| w.len() + 1).sum::<usize>() < P::MAX_TEXT * 5 / 2 {
        words.push(format!("w{:05}", words.len()));
    }
    gateway.cloud.enqueue_delivery(
        P::BINDING,
        "long",
        json!({"externalChatId": chat}),
        json!({"text": words.join(" ")}),
    );
    eventually("sent", || gateway.delivery_status(P::BINDING, "long") == "sent").await;
    let parts = sent_to(&platform, &chat);
    assert!(parts.len() >= 3, "2.5 times the limit in {} message(s)", parts.len());
    for part in &parts {
        assert!(part.text.chars().count() <= P::MAX_TEXT, "a part of {} characters", part.text.chars().count());
    }
    let joined: String = parts.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join(" ");
    let mut from = 0;
    for word in &words {
        let at = joined[from..].find(word.as_str()).unwrap_or_else(|| panic!("{word} missing or out of order"));
        from += at + word.len();
    }
}

/// A permission request shows as buttons where the channel has them, else as text naming the
/// commands to type.
pub async fn approval_shows_buttons_or_the_commands<P: Platform>() {
    let (gateway, platform) = start::<P>().await;
    let chat = P::chat(4);
    platform.user_writes(&gateway, &chat, 4, "please /approve-me").await;
    let asks = || -> Vec<Sent> {
        sent_to(&platform, &chat).into_iter().filter(|s| s.buttons > 0 || s.text.contains("/approve ")).collect()
    };
    eventually("the approval request", || !asks().is_empty()).await;
    let ask = &asks()[0];
    if P::BUTTONS {
        assert!(ask.buttons >= 2, "approve and deny buttons: {ask:?}");
    } else {
        assert!(ask.text.contains("/approve ") && ask.text.contains("/deny "), "the commands to type: {ask:?}");
    }
}

/// A send the platform rate-limits is sent later, not dropped and not dead-lettered.
pub async fn a_rate_limited_send_is_delayed_not_dropped<P: Platform>() {
    let (gateway, platform) = start::<P>().await;
    let chat = P::chat(5);
    platform.fail_next_send(Failure::RateLimited { retry_after_secs: 1 });
    gateway.cloud.enqueue_delivery(P::BINDING, "limited", json!({"externalChatId": chat}), json!({"text": "patience"}));
    eventually("sent after the limit", || gateway.delivery_status(P::BINDING, "limited") == "sent").await;
    assert!(!platform.failure_pending(), "the rate limit was met");
    assert!(sent_to(&platform, &chat).iter().any(|s| s.text.contains("patience")));
}

/// A send the platform refuses for good is dead-lettered after one attempt, and the channel goes
/// on sending.
pub async fn a_permanent_error_is_dead_lettered<P: Platform>() {
    let (gateway, platform) = start::<P>().await;
    let chat = P::chat(6);
    platform.fail_next_send(Failure::Permanent);
    gateway.cloud.enqueue_delivery(P::BINDING, "doomed", json!({"externalChatId": chat}), json!({"text": "never"}));
    eventually("dead", || gateway.delivery_status(P::BINDING, "doomed") == "dead").await;
    let record = gateway.cloud.delivery(P::BINDING, "doomed").unwrap();
    assert_eq!(record["attemptCount"], 1, "never retried: {record}");
    gateway.cloud.enqueue_delivery(P::BINDING, "after", json!({"externalChatId": chat}), json!({"text": "still here"}));
    eventually("the next one sent", || gateway.delivery_status(P::BINDING, "after") == "sent").await;
}

/// A process that dies after claiming a message and before prompting it loses nothing: the
/// next process prompts it, once.
pub async fn a_restart_between_claim_and_prompt_loses_nothing<P: Platform>() {
    let (mut gateway, platform) = start::<P>().await;
    let chat = P::chat(7);
    // A slow identity lookup holds the message between its claim and its prompt.
    gateway.cloud.faults.borrow_mut().delay("identity", Duration::from_secs(30));
    platform.user_writes(&gateway, &chat, 7, "survive me").await;
    let claimed = || gateway.cloud.store.borrow().provider_events.values().any(|e| e.status == "processing");
    eventually("the claim", claimed).await;
    gateway.kill();
    gateway.cloud.faults.borrow_mut().delay("identity", Duration::ZERO);
    assert!(gateway.prompts(&chat).is_empty(), "claimed, not prompted");
    gateway.start().await;
    platform.redeliver(&gateway, &chat, 7, "survive me").await;
    eventually("the prompt", || !gateway.prompts(&chat).is_empty()).await;
    settle().await;
    assert_eq!(gateway.prompts(&chat), ["survive me"]);
}

/// The agent streams one message in four growing texts, as fast as Cloud relays them; returns
/// the edits of that chat once the newest text has arrived, and time for any later one has passed.
async fn stream_four_texts<P: Platform>(gateway: &TestGateway, platform: &P, chat: &str) -> Vec<Sent> {
    platform.user_writes(gateway, chat, 8, "stream").await;
    eventually("the echo", || sent_to(platform, chat).iter().any(|s| s.text.contains("echo: stream"))).await;
    let session = gateway.session_of(chat).unwrap();
    for text in ["Hel", "Hello", "Hello wor", "Hello world"] {
        let event = json!({"messageId": "stream-1", "content": text});
        gateway.cloud.append_session_event(&session, "assistant.message", event);
    }
    eventually("the final text", || platform.edits().iter().any(|e| e.text.contains("Hello world"))).await;
    // Room for any further edit to go out.
    tokio::time::sleep(Duration::from_secs(2)).await;
    platform.edits().into_iter().filter(|e| e.chat == chat).collect()
}

/// Streamed text goes out as one message that is edited, ending on the newest text.
pub async fn streamed_text_edits_one_message<P: Platform>() {
    let (gateway, platform) = start::<P>().await;
    let chat = P::chat(8);
    let edits = stream_four_texts(&gateway, &platform, &chat).await;
    let texts: Vec<&str> = edits.iter().map(|e| e.text.as_str()).collect();
    assert!(texts.last().is_some_and(|t| t.contains("Hello world")), "the newest text is the last edit: {texts:?}");
    let streamed = sent_to(&platform, &chat).into_iter().filter(|s| s.text.starts_with("Hel")).count();
    assert_eq!(streamed, 1, "one message, then edits: {:?}", platform.sent());
}

/// Edits of streamed text are paced to one a second, the changes in between coalesced.
pub async fn streamed_edits_are_paced_to_one_a_second<P: Platform>() {
    let (gateway, platform) = start::<P>().await;
    let chat = P::chat(9);
    let edits = stream_four_texts(&gateway, &platform, &chat).await;
    let texts: Vec<&str> = edits.iter().map(|e| e.text.as_str()).collect();
    assert!(texts.last().is_some_and(|t| t.contains("Hello world")), "the newest text is the last edit: {texts:?}");
    assert!(texts.len() < 3, "3 changes within a second, coalesced: {texts:?}");
    for pair in edits.windows(2) {
        let apart = pair[1].at - pair[0].at;
        assert!(apart >= Duration::from_secs(1), "edits {apart:?} apart: {texts:?}");
    }
}
