//! Session streams within Cloud's per-organisation SSE cap (issue 15): streams
//! close a short grace after their session went idle, reopen on the next message from the cursor,
//! stay open while an approval is pending, fit a budget that leaves the delivery stream its slot,
//! and a follow-up message costs fewer Cloud calls than the first. All against the dev Cloud on
//! loopback, with its cap enforced.

#![cfg(feature = "devcloud")]

use crate::support;

use std::rc::Rc;
use std::time::Duration;

use open_cowork_gateway::app::Running;
use open_cowork_gateway::devcloud::{DevCloud, DevCloudOptions, Seeded};
use open_cowork_gateway::metrics::{Stat, StreamKind, StreamStat};
use open_cowork_gateway::providers::fake::{FakeProvider, FakeRecord};
use serde_json::json;
use support::fake_gateway::post;
use support::test_gateway::{dev_cloud, fast_cloud_options, quiet_factory, start_gateway, FAKE_PROVIDER};
use support::{eventually, eventually_within, run};

async fn cloud(max_sse_per_org: usize) -> (Rc<DevCloud>, Seeded, String) {
    dev_cloud(DevCloudOptions { max_sse_per_org, ..fast_cloud_options() }).await
}

async fn gateway(base_url: &str, seeded: &Seeded, extra: &[(&str, &str)]) -> Running {
    let settings = [&[FAKE_PROVIDER][..], extra].concat();
    start_gateway(base_url, &seeded.gateway_token, "budget", &settings, quiet_factory()).await
}

fn fake(running: &Running) -> FakeProvider {
    running.factory.fake("fake").unwrap()
}

fn count_texts(provider: &FakeProvider, text: &str) -> usize {
    provider.texts().iter().filter(|t| *t == text).count()
}

/// Every session's events were handled and its cursor written, and no agent is working.
fn settled(cloud: &DevCloud) -> bool {
    let store = cloud.store.borrow();
    cloud.agent_idle()
        && store
            .session_bindings
            .iter()
            .all(|b| store.sessions.get(&b.session_id).is_some_and(|s| s.next_sequence - 1 == b.last_event_sequence))
}

/// Cloud calls except the delivery stream's (opened once, and not per message).
fn message_calls(cloud: &DevCloud) -> u64 {
    cloud.total_calls() - cloud.calls("delivery-stream")
}

#[test]
fn sixty_chats_under_a_cap_of_twenty_all_get_their_reply() {
    run(async {
        let (cloud, seeded, base) = cloud(20).await;
        let running = gateway(
            &base,
            &seeded,
            &[
                ("OPEN_COWORK_GATEWAY_MAX_SESSION_STREAMS", "19"),
                ("OPEN_COWORK_GATEWAY_SESSION_STREAM_IDLE_CLOSE_MS", "200"),
            ],
        )
        .await;
        eventually("ready", || running.readiness.is_ready()).await;
        let provider = fake(&running);
        for n in 0..60 {
            let body = json!({"id": format!("m-{n}"), "text": format!("hello {n}"), "chatId": format!("chat-{n}"), "userId": format!("user-{n}")});
            assert_eq!(post(&running, body).await, 202);
        }
        eventually_within(Duration::from_secs(60), "all sixty replies", || {
            (0..60).all(|n| count_texts(&provider, &format!("echo: hello {n}")) == 1)
        })
        .await;
        let (_, peak, rejected) = cloud.sse_counts();
        assert!(peak <= 20, "the dev Cloud cap held: {peak}");
        // No hot retry loop: a refused open waits its retry-after and lowers the budget.
        assert!(rejected <= 10, "{rejected} stream opens refused");
        assert!(running.metrics.get(Stat::SessionStreamRateLimits) <= 10);
        // The delivery stream kept its slot: connected once, never refused or reconnected.
        assert_eq!(running.metrics.stream_count(StreamKind::Delivery, StreamStat::Connects), 1);
        assert_eq!(running.metrics.stream_count(StreamKind::Delivery, StreamStat::Errors), 0);
        assert_eq!(running.metrics.stream_count(StreamKind::Delivery, StreamStat::Reconnects), 0);
        assert!(running.readiness.is_ready());
        assert!(cloud.calls("session-events") >= 60, "streams closed to make room and others opened");
        eventually("every stream closed once idle", || running.metrics.get(Stat::SessionStreams) == 0).await;
        assert_eq!(running.metrics.get(Stat::SessionStreamsWaiting), 0);
        running.stop();
    });
}

#[test]
fn a_stream_closed_after_idle_reopens_on_the_next_message_and_renders_only_new_events() {
    run(async {
        let (cloud, seeded, base) = cloud(200).await;
        let running = gateway(&base, &seeded, &[("OPEN_COWORK_GATEWAY_SESSION_STREAM_IDLE_CLOSE_MS", "200")]).await;
        eventually("ready", || running.readiness.is_ready()).await;
        let provider = fake(&running);
        assert_eq!(post(&running, json!({"id": "i-1", "text": "first", "chatId": "chat-i"})).await, 202);
        eventually("the first echo", || count_texts(&provider, "echo: first") == 1).await;
        eventually("the stream closed once idle", || running.metrics.get(Stat::SessionStreams) == 0).await;
        assert_eq!(running.metrics.get(Stat::SessionStreamIdleCloses), 1);
        // Cloud frees the slot once it reads the closed connection, which may be after the
        // gateway's own count went down: wait for it rather than race it.
        eventually("only the delivery stream open at Cloud", || cloud.sse_counts().0 == 1).await;

        assert_eq!(post(&running, json!({"id": "i-2", "text": "second", "chatId": "chat-i"})).await, 202);
        eventually("the second echo", || count_texts(&provider, "echo: second") == 1).await;
        eventually("closed again", || running.metrics.get(Stat::SessionStreams) == 0).await;
        assert_eq!(provider.texts(), ["echo: first", "echo: second"], "nothing rendered twice or skipped");
        assert_eq!(cloud.calls("session-events"), 2, "reopened once for the second message");
        running.stop();
    });
}

#[test]
fn a_pending_approval_keeps_its_stream_open() {
    run(async {
        let (_cloud, seeded, base) = cloud(200).await;
        let running = gateway(&base, &seeded, &[("OPEN_COWORK_GATEWAY_SESSION_STREAM_IDLE_CLOSE_MS", "100")]).await;
        eventually("ready", || running.readiness.is_ready()).await;
        let provider = fake(&running);
        assert_eq!(post(&running, json!({"id": "p-1", "text": "go /approve-me", "chatId": "chat-p"})).await, 202);
        eventually("approval buttons", || provider.records().iter().any(|r| matches!(r, FakeRecord::Buttons { .. })))
            .await;
        // Many idle-close graces later the stream is still open: the answer must be rendered.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(running.metrics.get(Stat::SessionStreams), 1);
        assert_eq!(running.metrics.get(Stat::SessionStreamIdleCloses), 0);
        let approve = provider
            .records()
            .iter()
            .find_map(|r| match r {
                FakeRecord::Buttons { buttons, .. } => Some(buttons[0][0].token.clone()),
                _ => None,
            })
            .unwrap();
        let click = json!({"id": "click-p", "chatId": "chat-p", "interaction": {"id": "cb-p", "token": approve}});
        assert_eq!(post(&running, click).await, 202);
        eventually("granted", || provider.texts().iter().any(|t| t.contains("Permission granted"))).await;
        eventually("closed once nothing is pending", || running.metrics.get(Stat::SessionStreams) == 0).await;
        running.stop();
    });
}

#[test]
fn cloud_calls_per_first_and_follow_up_message() {
    run(async {
        let (cloud, seeded, base) = cloud(200).await;
        let running = gateway(&base, &seeded, &[("OPEN_COWORK_GATEWAY_SESSION_STREAM_IDLE_CLOSE_MS", "300")]).await;
        eventually("ready", || running.readiness.is_ready()).await;
        let provider = fake(&running);
        let before = message_calls(&cloud);
        assert_eq!(post(&running, json!({"id": "c-1", "text": "one", "chatId": "chat-c", "userId": "u"})).await, 202);
        eventually("the first echo", || count_texts(&provider, "echo: one") == 1).await;
        eventually("settled", || settled(&cloud) && running.metrics.get(Stat::SessionStreams) == 0).await;
        let first = message_calls(&cloud) - before;
        eprintln!("{:?}", cloud.calls_by_route());

        // A follow-up while the stream is open.
        let before = message_calls(&cloud);
        assert_eq!(post(&running, json!({"id": "c-2", "text": "two", "chatId": "chat-c", "userId": "u"})).await, 202);
        eventually("the second echo", || count_texts(&provider, "echo: two") == 1).await;
        eventually("settled", || settled(&cloud) && running.metrics.get(Stat::SessionStreams) == 0).await;
        let follow_up = message_calls(&cloud) - before;
        eprintln!("{:?}", cloud.calls_by_route());
        eprintln!("Cloud calls: first message {first}, follow-up {follow_up}");
        assert!(first <= 7, "first message: {first} Cloud calls");
        assert!(follow_up <= 5, "follow-up message: {follow_up} Cloud calls");
        assert_eq!(cloud.calls("identity"), 1, "the identity was reused");
        assert_eq!(cloud.calls("bind"), 1, "the binding was reused");

        // A 4xx on a reused prompt drops the reuse and runs the full path once.
        cloud.faults.borrow_mut().fail_next("prompt", 1, 409, None);
        assert_eq!(post(&running, json!({"id": "c-3", "text": "three", "chatId": "chat-c", "userId": "u"})).await, 202);
        eventually("the third echo", || count_texts(&provider, "echo: three") == 1).await;
        assert_eq!(cloud.calls("identity"), 2);
        assert_eq!(cloud.calls("bind"), 2);
        assert_eq!(provider.texts(), ["echo: one", "echo: two", "echo: three"]);
        running.stop();
    });
}

#[test]
fn a_budget_above_clouds_cap_meets_429s_that_wait_and_lower_it() {
    run(async {
        // Misconfigured: the budget (10) is above what Cloud allows (4, one of them the delivery
        // stream's). The refused streams wait their retry-after; the budget drops to what Cloud holds.
        // Streams stay open once idle (a 10-minute idle close) so that however slowly the machine
        // runs the eight chats, the fourth stream meets Cloud's cap (with a short idle close, a
        // slow machine closed each stream before the next chat opened its own: no refusal).
        let (cloud, seeded, base) = cloud(4).await;
        let running = gateway(
            &base,
            &seeded,
            &[
                ("OPEN_COWORK_GATEWAY_MAX_SESSION_STREAMS", "10"),
                ("OPEN_COWORK_GATEWAY_SESSION_STREAM_IDLE_CLOSE_MS", "600000"),
            ],
        )
        .await;
        eventually("ready", || running.readiness.is_ready()).await;
        let provider = fake(&running);
        for n in 0..8 {
            let body = json!({"id": format!("r-{n}"), "text": format!("hi {n}"), "chatId": format!("chat-r-{n}")});
            assert_eq!(post(&running, body).await, 202);
        }
        eventually_within(Duration::from_secs(60), "all eight replies", || {
            (0..8).all(|n| count_texts(&provider, &format!("echo: hi {n}")) == 1)
        })
        .await;
        let limited = running.metrics.get(Stat::SessionStreamRateLimits);
        assert!(limited >= 1, "Cloud refused some opens");
        assert!(running.metrics.get(Stat::SessionStreamBudget) < 10, "the budget was lowered");
        // Each refused stream waits at least a second: a handful of refusals, not a hot loop.
        let (_, peak, rejected) = cloud.sse_counts();
        assert!(peak <= 4);
        assert!(rejected <= 20, "{rejected} refusals");
        assert_eq!(running.metrics.stream_count(StreamKind::Delivery, StreamStat::Connects), 1);
        running.stop();
    });
}

#[test]
fn a_refused_stream_gets_the_room_an_idle_stream_held() {
    run(async {
        // Cloud holds three streams: the delivery stream and two session streams. Two chats
        // leave their streams open and idle (idle close 10 minutes); a third chat's stream is
        // refused (429) and must not wait those 10 minutes: the least recently used idle stream
        // makes room for its retry.
        let (cloud, seeded, base) = cloud(3).await;
        let running = gateway(
            &base,
            &seeded,
            &[
                ("OPEN_COWORK_GATEWAY_MAX_SESSION_STREAMS", "10"),
                ("OPEN_COWORK_GATEWAY_SESSION_STREAM_IDLE_CLOSE_MS", "600000"),
            ],
        )
        .await;
        eventually("ready", || running.readiness.is_ready()).await;
        let provider = fake(&running);
        for n in 0..2 {
            let body = json!({"id": format!("i-{n}"), "text": format!("idle {n}"), "chatId": format!("chat-i-{n}")});
            assert_eq!(post(&running, body).await, 202);
            eventually("the reply", || count_texts(&provider, &format!("echo: idle {n}")) == 1).await;
        }
        eventually("both sessions idle and their cursors written", || settled(&cloud)).await;
        assert_eq!(cloud.sse_counts().0, 3, "Cloud's cap is full");
        let body = json!({"id": "late", "text": "late", "chatId": "chat-late"});
        assert_eq!(post(&running, body).await, 202);
        eventually("the refused chat's reply", || count_texts(&provider, "echo: late") == 1).await;
        assert!(running.metrics.get(Stat::SessionStreamRateLimits) >= 1, "Cloud refused the third stream first");
        assert_eq!(running.metrics.stream_count(StreamKind::Delivery, StreamStat::Connects), 1);
        running.stop();
    });
}

/// The chat an approval button was rendered in, and the token of its first button.
fn approval_in(provider: &FakeProvider, chat: &str) -> Option<String> {
    provider.records().iter().find_map(|r| match r {
        FakeRecord::Buttons { target, buttons, .. } if target.chat_id == chat => Some(buttons[0][0].token.clone()),
        _ => None,
    })
}

#[test]
fn approvals_waiting_on_users_give_their_stream_slots_up_under_pressure() {
    run(async {
        // Budget 2: two chats wait on an approval. A third chat writes and must get its reply
        // without anyone answering; approving afterwards still works and its reply is rendered.
        let (cloud, seeded, base) = cloud(200).await;
        let running = gateway(
            &base,
            &seeded,
            &[
                ("OPEN_COWORK_GATEWAY_MAX_SESSION_STREAMS", "2"),
                ("OPEN_COWORK_GATEWAY_SESSION_STREAM_IDLE_CLOSE_MS", "100"),
            ],
        )
        .await;
        eventually("ready", || running.readiness.is_ready()).await;
        let provider = fake(&running);
        for chat in ["chat-wa", "chat-wb"] {
            let body = json!({"id": format!("{chat}-1"), "text": "go /approve-me", "chatId": chat});
            assert_eq!(post(&running, body).await, 202);
            eventually("its approval buttons", || approval_in(&provider, chat).is_some()).await;
        }
        eventually("both sessions idle, waiting on their users", || settled(&cloud)).await;
        assert_eq!(running.metrics.get(Stat::SessionStreams), 2, "nothing closes them without pressure");

        assert_eq!(post(&running, json!({"id": "wc-1", "text": "third", "chatId": "chat-wc"})).await, 202);
        eventually("the third chat's reply", || count_texts(&provider, "echo: third") == 1).await;
        assert!(running.metrics.get(Stat::StreamEvictions) >= 1, "a waiting stream was closed to make room");

        let approve = approval_in(&provider, "chat-wa").unwrap();
        let click = json!({"id": "click-wa", "chatId": "chat-wa", "interaction": {"id": "cb-wa", "token": approve}});
        assert_eq!(post(&running, click).await, 202);
        eventually("the approved chat's reply", || count_texts(&provider, "Permission granted: the command ran.") == 1)
            .await;
        assert_eq!(count_texts(&provider, "echo: go /approve-me"), 2, "nothing rendered twice after the reopen");
        running.stop();
    });
}

#[test]
fn an_approval_answered_after_a_restart_reopens_its_stream_from_clouds_binding() {
    run(async {
        // No state directory: the second process knows nothing of the chat. The answer's events
        // are still rendered, because the binding is looked up in Cloud.
        let (cloud, seeded, base) = cloud(200).await;
        let first = gateway(&base, &seeded, &[]).await;
        eventually("ready", || first.readiness.is_ready()).await;
        let body = json!({"id": "rs-1", "text": "go /approve-me", "chatId": "chat-rs"});
        assert_eq!(post(&first, body).await, 202);
        let before = fake(&first);
        eventually("its approval buttons", || approval_in(&before, "chat-rs").is_some()).await;
        let approve = approval_in(&before, "chat-rs").unwrap();
        eventually("settled", || settled(&cloud)).await;
        first.stop();

        let second = gateway(&base, &seeded, &[]).await;
        eventually("ready", || second.readiness.is_ready()).await;
        let provider = fake(&second);
        let click = json!({"id": "click-rs", "chatId": "chat-rs", "interaction": {"id": "cb-rs", "token": approve}});
        assert_eq!(post(&second, click).await, 202);
        eventually("the approved chat's reply", || count_texts(&provider, "Permission granted: the command ran.") == 1)
            .await;
        assert_eq!(count_texts(&provider, "echo: go /approve-me"), 0, "only what came after the cursor");
        second.stop();
    });
}
