//! A webhook is answered at its message's receipt, not in its chat's turn: written to the inbound
//! journal (with a state directory) or claimed in Cloud (without one), while the chat's previous
//! message may still be in a slow prompt. The order of the prompts is still the order of arrival.
//! The dev Cloud and the fake provider on loopback, on tokio's paused clock.

#![cfg(feature = "devcloud")]

use crate::support;

use std::rc::Rc;
use std::time::Duration;

use open_cowork_gateway::metrics::Stat;
use serde_json::json;
use support::fake_gateway::{self, dev_cloud};
use support::test_gateway::prompts_of;
use support::{eventually, eventually_within, run_paused};

/// The chat's first message is in a 20 s prompt; its second is answered at once, and prompted
/// after the first.
async fn a_busy_chat_answers_at_once(extra: &[(&str, &str)]) {
    let (cloud, seeded, base) = dev_cloud().await;
    let running = fake_gateway::start(&base, &seeded, "receipt", extra).await;
    cloud.faults.borrow_mut().delay("prompt", Duration::from_secs(20));
    assert_eq!(fake_gateway::post(&running, json!({"id": "b-1", "text": "first", "chatId": "chat-b"})).await, 202);
    eventually("the first message in its prompt", || cloud.calls("prompt") == 1).await;

    let started = tokio::time::Instant::now();
    assert_eq!(fake_gateway::post(&running, json!({"id": "b-2", "text": "second", "chatId": "chat-b"})).await, 202);
    let answered = started.elapsed();
    assert!(answered < Duration::from_millis(500), "answered after {answered:?}, behind the first message's prompt");
    assert_eq!(cloud.calls("prompt"), 1, "the second waits for its turn");

    eventually_within(Duration::from_secs(60), "both prompts", || prompts_of(&cloud, "chat-b").len() == 2).await;
    assert_eq!(prompts_of(&cloud, "chat-b"), ["first", "second"], "prompted in the order they arrived");
    running.stop();
}

#[test]
fn with_a_state_directory_a_busy_chats_next_message_is_journaled_and_answered_at_once() {
    run_paused(async {
        let state = support::TempDir::new("receipt-journal");
        let state_dir = state.0.to_str().unwrap().to_owned();
        a_busy_chat_answers_at_once(&[("OPEN_COWORK_GATEWAY_STATE_DIR", &state_dir)]).await;
    });
}

#[test]
fn without_a_state_directory_a_busy_chats_next_message_is_claimed_and_answered_at_once() {
    run_paused(async {
        a_busy_chat_answers_at_once(&[]).await;
    });
}

/// A platform's redelivery of a message still in the journal is absorbed at its receipt: one
/// claim, one prompt, and the duplicate counted.
#[test]
fn a_redelivery_of_a_journaled_message_is_absorbed() {
    run_paused(async {
        let state = support::TempDir::new("receipt-redelivery");
        let state_dir = state.0.to_str().unwrap().to_owned();
        let (cloud, seeded, base) = dev_cloud().await;
        let running =
            fake_gateway::start(&base, &seeded, "receipt", &[("OPEN_COWORK_GATEWAY_STATE_DIR", &state_dir)]).await;
        cloud.faults.borrow_mut().delay("claim", Duration::from_secs(5));
        let message = json!({"id": "r-1", "text": "only once", "chatId": "chat-r"});
        assert_eq!(fake_gateway::post(&running, message.clone()).await, 202);
        assert_eq!(fake_gateway::post(&running, message.clone()).await, 202);
        eventually_within(Duration::from_secs(30), "the prompt", || prompts_of(&cloud, "chat-r") == ["only once"])
            .await;
        assert_eq!(cloud.calls("claim"), 1, "the redelivery found the journal entry and claimed nothing");
        assert_eq!(running.metrics.get(Stat::IncomingMessages), 2, "both deliveries counted as received");
        assert_eq!(running.metrics.get(Stat::PromptedMessages), 1);
        running.stop();
    });
}

/// A burst of webhooks does not open a Cloud claim each at once: at most 32 receipts are at work,
/// the rest wait for a slot (their answers a little later), and every message is still prompted.
#[test]
fn receipts_at_work_are_bounded() {
    run_paused(async {
        let (cloud, seeded, base) = dev_cloud().await;
        let running = Rc::new(fake_gateway::start(&base, &seeded, "receipt", &[]).await);
        cloud.faults.borrow_mut().delay("claim", Duration::from_secs(5));
        let mut posts = tokio::task::JoinSet::new();
        for n in 0..40 {
            let running = Rc::clone(&running);
            posts.spawn_local(async move {
                fake_gateway::post(
                    &running,
                    json!({"id": format!("burst-{n}"), "text": "burst", "chatId": format!("chat-burst-{n}")}),
                )
                .await
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(cloud.calls("claim"), 32, "32 claims at work, 8 waiting for a slot");
        while let Some(status) = posts.join_next().await {
            assert_eq!(status.unwrap(), 202);
        }
        cloud.faults.borrow_mut().delay("claim", Duration::ZERO);
        eventually_within(Duration::from_secs(60), "every prompt", || {
            (0..40).all(|n| prompts_of(&cloud, &format!("chat-burst-{n}")) == ["burst"])
        })
        .await;
        drop(posts);
        Rc::try_unwrap(running).ok().unwrap().stop();
    });
}

/// A webhook answered before the drain is finished through the drain: the chat's second
/// message, journaled and answered while the first was in its prompt, is still prompted after
/// SIGTERM, in its turn.
#[test]
fn a_webhook_answered_before_the_drain_is_still_prompted_in_its_turn() {
    run_paused(async {
        let state = support::TempDir::new("receipt-drain");
        let state_dir = state.0.to_str().unwrap().to_owned();
        let (cloud, seeded, base) = dev_cloud().await;
        let running =
            fake_gateway::start(&base, &seeded, "receipt", &[("OPEN_COWORK_GATEWAY_STATE_DIR", &state_dir)]).await;
        cloud.faults.borrow_mut().delay("prompt", Duration::from_secs(20));
        assert_eq!(fake_gateway::post(&running, json!({"id": "d-1", "text": "first", "chatId": "chat-d"})).await, 202);
        eventually("the first message in its prompt", || cloud.calls("prompt") == 1).await;
        assert_eq!(fake_gateway::post(&running, json!({"id": "d-2", "text": "second", "chatId": "chat-d"})).await, 202);

        assert!(running.drain(Duration::from_secs(120)).await, "the drain waits for both messages");
        assert_eq!(prompts_of(&cloud, "chat-d"), ["first", "second"], "the answered webhook was not dropped");
        running.stop();
    });
}
