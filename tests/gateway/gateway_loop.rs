//! The gateway loop end to end, in process, on loopback: the dev Cloud, the daemon with the fake
//! provider, webhooks in, session events rendered, deliveries sent and acknowledged.

#![cfg(feature = "devcloud")]

use crate::support;
use support::test_gateway::{
    dev_cloud, fast_cloud_options, first_session_prompts, quiet_factory, sessions_of, start_gateway, FAKE_PROVIDER,
};
use support::{eventually, run};

use std::rc::Rc;
use std::time::Duration;

use open_cowork_gateway::app::Running;
use open_cowork_gateway::channel::SendError;
use open_cowork_gateway::devcloud::{DevCloud, DevCloudOptions, Seeded};
use open_cowork_gateway::metrics::Stat;
use open_cowork_gateway::providers::fake::{FakeProvider, FakeRecord};
use serde_json::{json, Value};

async fn gateway(base_url: &str, seeded: &Seeded, extra: &[(&str, &str)]) -> Running {
    let settings = [&[FAKE_PROVIDER][..], extra].concat();
    start_gateway(base_url, &seeded.gateway_token, "loop", &settings, quiet_factory()).await
}

fn fake(running: &Running) -> FakeProvider {
    running.factory.fake("fake").unwrap()
}

fn as_fake(provider: &FakeProvider) -> &FakeProvider {
    provider
}

async fn post(running: &Running, path: &str, body: Value) -> (u16, Value) {
    let request = http::Request::post(format!("http://{}{path}", running.address))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    send(request).await
}

/// Sends `request` over loopback: the status and the JSON body (null when it is not JSON).
async fn send(request: http::Request<http_body_util::Full<bytes::Bytes>>) -> (u16, Value) {
    let http = open_cowork_gateway::net::https::build_client(None).unwrap();
    let response = http.request(request).await.unwrap();
    let status = response.status().as_u16();
    use http_body_util::BodyExt;
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn session_of(cloud: &DevCloud, chat: &str) -> String {
    sessions_of(cloud, chat).into_iter().next().expect("a session binding")
}

/// Waits until the chat's session holds exactly `expected` prompts: a webhook is answered once its
/// event is claimed, and the prompt follows shortly after the answer.
async fn prompts_become(cloud: &DevCloud, chat: &str, expected: &[&str]) {
    let prompts = || first_session_prompts(cloud, chat);
    eventually("the prompts", || prompts() == expected).await;
    // Nothing more arrives once the expected prompts are there.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(prompts(), expected);
}

fn delivery_status(cloud: &DevCloud, id: &str) -> String {
    cloud.delivery("fake-binding", id).map(|d| d["status"].as_str().unwrap_or("").to_owned()).unwrap_or_default()
}

#[test]
fn round_trip_inbound_prompt_render_and_delivery() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[]).await;
        eventually("ready", || running.readiness.is_ready()).await;
        let (status, body) = post(
            &running,
            "/webhooks/fake",
            json!({"id": "m-1", "text": "ship it", "chatId": "chat-1", "userId": "user-1"}),
        )
        .await;
        assert_eq!((status, body), (202, json!({"ok": true})));
        prompts_become(&cloud, "chat-1", &["ship it"]).await;
        let provider = fake(&running);
        eventually("the echo rendered", || as_fake(&provider).texts().contains(&"echo: ship it".to_owned())).await;
        assert_eq!(running.metrics.get(Stat::PromptedMessages), 1);
        assert_eq!(running.metrics.get(Stat::WebhookRequests), 1);

        cloud.enqueue_delivery(
            "fake-binding",
            "d-1",
            json!({"externalChatId": "chat-1"}),
            json!({"text": "workflow done"}),
        );
        eventually("the delivery acked sent", || delivery_status(&cloud, "d-1") == "sent").await;
        let records = as_fake(&provider).records();
        assert!(records.iter().any(
            |r| matches!(r, FakeRecord::Text { text, options, .. } if text == "workflow done" && options.delivery_id.as_deref() == Some("d-1"))
        ));
        assert_eq!(running.metrics.get(Stat::DeliveriesSent), 1);
        running.drain(Duration::from_secs(5)).await;
        running.stop();
    });
}

#[test]
fn a_webhook_is_answered_once_claimed_and_the_prompt_follows() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[]).await;
        cloud.faults.borrow_mut().delay("prompt", Duration::from_secs(1));
        let message = json!({"id": "early-1", "text": "answer me early", "chatId": "chat-early"});
        assert_eq!(post(&running, "/webhooks/fake", message).await.0, 202);
        let claimed = cloud.store.borrow().provider_events.values().any(|e| e.provider_event_id == "early-1");
        assert!(claimed, "the event was claimed before the answer");
        assert!(
            first_session_prompts(&cloud, "chat-early").is_empty(),
            "answered before the (slow) prompt reached Cloud"
        );
        prompts_become(&cloud, "chat-early", &["answer me early"]).await;
        running.stop();
    });
}

#[test]
fn a_chats_messages_keep_their_order_while_other_chats_go_ahead() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = Rc::new(gateway(&base, &seeded, &[]).await);
        // The first prompt of chat A fails once: the gateway retries it itself a second later.
        cloud.faults.borrow_mut().fail_next("prompt", 1, 503, None);
        let first = json!({"id": "a-1", "text": "a one", "chatId": "chat-a"});
        assert_eq!(post(&running, "/webhooks/fake", first).await.0, 202);
        eventually("a-1's failed prompt", || cloud.faults.borrow().pending_failures("prompt") == 0).await;
        let rest_of_a = {
            let running = Rc::clone(&running);
            tokio::task::spawn_local(async move {
                for n in [2, 3] {
                    let message = json!({"id": format!("a-{n}"), "text": format!("a {n}"), "chatId": "chat-a"});
                    assert_eq!(post(&running, "/webhooks/fake", message).await.0, 202);
                }
            })
        };
        let other = json!({"id": "b-1", "text": "b one", "chatId": "chat-b"});
        assert_eq!(post(&running, "/webhooks/fake", other).await.0, 202);
        prompts_become(&cloud, "chat-b", &["b one"]).await;
        let a_prompts = first_session_prompts(&cloud, "chat-a");
        assert!(a_prompts.is_empty(), "chat B goes ahead while chat A waits for its first message's retry, and A's later messages wait too: {a_prompts:?}");
        rest_of_a.await.unwrap();
        prompts_become(&cloud, "chat-a", &["a one", "a 2", "a 3"]).await;
        Rc::try_unwrap(running).ok().unwrap().stop();
    });
}

/// Posts like [`post`] and also returns the `Retry-After` header, in seconds.
async fn post_for_retry_after(running: &Running, path: &str, body: Value) -> (u16, Option<u64>) {
    let http = open_cowork_gateway::net::https::build_client(None).unwrap();
    let request = http::Request::post(format!("http://{}{path}", running.address))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let response = http.request(request).await.unwrap();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
    (response.status().as_u16(), retry_after)
}

#[test]
fn a_crash_between_claim_and_prompt_loses_nothing() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let first = gateway(&base, &seeded, &[]).await;
        // A slow identity lookup holds the message between its claim and its prompt.
        cloud.faults.borrow_mut().delay("identity", Duration::from_secs(2));
        let message = json!({"id": "crash-1", "text": "survive me", "chatId": "chat-crash"});
        assert_eq!(post(&first, "/webhooks/fake", message.clone()).await.0, 202);
        // The process dies (kill -9: no drain, the pipeline is cut where it stands).
        first.stop();
        cloud.faults.borrow_mut().delay("identity", Duration::ZERO);
        let event = cloud.store.borrow().provider_events.values().find(|e| e.provider_event_id == "crash-1").cloned();
        assert_eq!(event.map(|e| e.status), Some("processing".to_owned()), "claimed, never completed");
        // The next process (same instance, same claimant) gets the message again and takes its own
        // live claim over instead of calling it a duplicate.
        let second = gateway(&base, &seeded, &[]).await;
        assert_eq!(post(&second, "/webhooks/fake", message).await.0, 202);
        prompts_become(&cloud, "chat-crash", &["survive me"]).await;
        second.stop();
    });
}

#[test]
fn a_kill_after_the_webhook_answer_loses_nothing() {
    run(async {
        // The webhook is answered 202 at the claim, so its platform never sends it again: the
        // inbound journal in the state directory is what brings it back after a kill.
        let state = support::TempDir::new("loop-journal");
        let state_dir = state.0.to_str().unwrap().to_owned();
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let first = gateway(&base, &seeded, &[("OPEN_COWORK_GATEWAY_STATE_DIR", &state_dir)]).await;
        cloud.faults.borrow_mut().delay("identity", Duration::from_secs(2));
        let message = json!({"id": "journal-1", "text": "do not drop me", "chatId": "chat-journal"});
        assert_eq!(post(&first, "/webhooks/fake", message).await.0, 202);
        // kill -9: no drain, the pipeline is cut between the answer and the prompt.
        first.stop();
        cloud.faults.borrow_mut().delay("identity", Duration::ZERO);
        assert!(first_session_prompts(&cloud, "chat-journal").is_empty(), "never prompted by the killed process");

        // The next process replays it on its own: nobody posts it again.
        let second = gateway(&base, &seeded, &[("OPEN_COWORK_GATEWAY_STATE_DIR", &state_dir)]).await;
        prompts_become(&cloud, "chat-journal", &["do not drop me"]).await;
        let provider = fake(&second);
        eventually("its reply", || as_fake(&provider).texts().contains(&"echo: do not drop me".to_owned())).await;
        eventually("the journal emptied", || {
            std::fs::read_dir(state.0.join("inbound")).map(|d| d.count() == 0).unwrap_or(true)
        })
        .await;
        second.stop();

        // A third start replays nothing and prompts nothing again.
        let third = gateway(&base, &seeded, &[("OPEN_COWORK_GATEWAY_STATE_DIR", &state_dir)]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(first_session_prompts(&cloud, "chat-journal"), vec!["do not drop me".to_owned()]);
        third.stop();
    });
}

#[test]
fn an_answered_webhook_whose_prompt_keeps_failing_is_queued_again() {
    run(async {
        // Cloud refuses the prompt for all three attempts after the answer: the message stays in
        // the inbound journal and is queued again 30 s later, without a restart or a platform retry.
        let state = support::TempDir::new("loop-stranded");
        let state_dir = state.0.to_str().unwrap().to_owned();
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[("OPEN_COWORK_GATEWAY_STATE_DIR", &state_dir)]).await;
        cloud.faults.borrow_mut().fail_next("prompt", 3, 503, None);
        let message = json!({"id": "stranded-1", "text": "try me again", "chatId": "chat-stranded"});
        assert_eq!(post(&running, "/webhooks/fake", message).await.0, 202);
        eventually("three refused prompts", || cloud.faults.borrow().pending_failures("prompt") == 0).await;
        support::eventually_within(Duration::from_secs(60), "the prompt after the journal's retry", || {
            first_session_prompts(&cloud, "chat-stranded") == ["try me again"]
        })
        .await;
        let provider = fake(&running);
        eventually("its reply", || as_fake(&provider).texts().contains(&"echo: try me again".to_owned())).await;
        running.stop();
    });
}

#[test]
fn sigterm_finishes_inbound_work_before_exit() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let first = gateway(&base, &seeded, &[]).await;
        cloud.faults.borrow_mut().delay("identity", Duration::from_millis(500));
        let message = json!({"id": "term-1", "text": "finish me", "chatId": "chat-term"});
        assert_eq!(post(&first, "/webhooks/fake", message.clone()).await.0, 202);
        assert!(first.shutdown.in_flight() >= 1, "the claimed message is work the drain waits for");
        assert!(first.drain(Duration::from_secs(10)).await, "the drain finished the message");
        first.stop();
        prompts_become(&cloud, "chat-term", &["finish me"]).await;
        // Redelivered to the next process: a processed event stays a duplicate.
        let second = gateway(&base, &seeded, &[]).await;
        assert_eq!(post(&second, "/webhooks/fake", message).await.0, 202);
        prompts_become(&cloud, "chat-term", &["finish me"]).await;
        second.stop();
    });
}

#[test]
fn a_claim_held_by_another_gateway_is_retried_after_its_lease() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[]).await;
        // Another gateway (another claimant) holds a live 30 s claim on the same event.
        let claim = json!({
            "provider": "cli",
            "providerInstanceId": "fake",
            "channelBindingId": "fake-binding",
            "externalWorkspaceId": null,
            "providerEventId": "held-1",
            "eventType": "message",
            "claimedBy": "gateway:other",
            "ttlMs": 30_000,
            "metadata": {},
        });
        let request = http::Request::post(format!("{base}/api/channels/provider-events/claim"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", seeded.gateway_token))
            .body(http_body_util::Full::new(bytes::Bytes::from(claim.to_string())))
            .unwrap();
        let (status, held) = send(request).await;
        assert_eq!(status, 200, "{held}");
        assert_eq!(held["claimed"], true);
        let message = json!({"id": "held-1", "text": "wait your turn", "chatId": "chat-held"});
        let (status, retry_after) = post_for_retry_after(&running, "/webhooks/fake", message.clone()).await;
        assert_eq!(status, 503, "not a silent duplicate: the platform is asked to come back");
        assert!(retry_after.is_some_and(|s| (25..=31).contains(&s)), "until the lease ends: {retry_after:?}");
        assert!(first_session_prompts(&cloud, "chat-held").is_empty());
        // The other gateway died; its lease runs out and the platform's retry is processed.
        cloud.store.borrow().clock.advance(30_001);
        assert_eq!(post(&running, "/webhooks/fake", message).await.0, 202);
        prompts_become(&cloud, "chat-held", &["wait your turn"]).await;
        running.stop();
    });
}

#[test]
fn deliveries_claimed_but_unsent_at_sigterm_go_to_the_next_process_at_once() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let first = gateway(&base, &seeded, &[("OPEN_COWORK_GATEWAY_MAX_DELIVERY_CONCURRENCY", "1")]).await;
        let provider = fake(&first);
        as_fake(&provider).set_latency(Duration::from_millis(50));
        for n in 0..40 {
            cloud.enqueue_delivery(
                "fake-binding",
                &format!("r-{n}"),
                json!({"externalChatId": "chat-r"}),
                json!({"text": format!("release {n}")}),
            );
        }
        eventually("one sent", || delivery_status(&cloud, "r-0") == "sent").await;
        assert!(first.drain(Duration::from_secs(5)).await);
        first.stop();
        let released = (0..40).filter(|n| delivery_status(&cloud, &format!("r-{n}")) == "failed").count();
        assert!(released > 0, "the queue held claimed deliveries at the drain");
        let claimed = (0..40).filter(|n| delivery_status(&cloud, &format!("r-{n}")) == "claimed").count();
        assert_eq!(claimed, 0, "nothing is left waiting for its 120 s lease");
        // The next process sends every one of them now, not after the lease.
        let second = gateway(&base, &seeded, &[]).await;
        eventually("all sent", || (0..40).all(|n| delivery_status(&cloud, &format!("r-{n}")) == "sent")).await;
        let mut texts = as_fake(&provider).texts();
        texts.extend(fake(&second).texts());
        for n in 0..40 {
            assert_eq!(texts.iter().filter(|t| **t == format!("release {n}")).count(), 1, "r-{n} sent once");
        }
        second.stop();
    });
}

#[test]
fn clean_stream_closes_keep_the_gateway_ready() {
    run(async {
        // Cloud ends every stream after its lifetime (30 minutes upstream; 300 ms here).
        let options = DevCloudOptions { sse_lifetime: Duration::from_millis(300), ..fast_cloud_options() };
        let (_cloud, seeded, base) = dev_cloud(options).await;
        let running = gateway(&base, &seeded, &[]).await;
        eventually("ready", || running.readiness.is_ready()).await;
        let reconnects = || {
            running.metrics.stream_count(
                open_cowork_gateway::metrics::StreamKind::Delivery,
                open_cowork_gateway::metrics::StreamStat::Reconnects,
            )
        };
        let mut samples = 0;
        // A clean close is reopened after about a second.
        while reconnects() < 3 {
            assert!(running.readiness.is_ready(), "503 while a cleanly closed stream was reopened");
            samples += 1;
            assert!(samples < 10_000, "the stream was not closed and reopened three times");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        running.stop();
    });
}

#[test]
fn one_prompt_per_provider_event_also_after_a_restart() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let first = gateway(&base, &seeded, &[]).await;
        let message = json!({"id": "same-event", "text": "only once", "chatId": "chat-d"});
        assert_eq!(post(&first, "/webhooks/fake", message.clone()).await.0, 202);
        assert_eq!(post(&first, "/webhooks/fake", message.clone()).await.0, 202, "a duplicate is accepted silently");
        first.drain(Duration::from_secs(5)).await;
        first.stop();
        let second = gateway(&base, &seeded, &[]).await;
        assert_eq!(post(&second, "/webhooks/fake", message).await.0, 202);
        prompts_become(&cloud, "chat-d", &["only once"]).await;
        second.stop();
    });
}

#[test]
fn a_pending_identity_gets_the_notice_and_no_prompt() {
    run(async {
        let (cloud, seeded, base) =
            dev_cloud(DevCloudOptions { auto_activate_identities: false, ..fast_cloud_options() }).await;
        let running = gateway(&base, &seeded, &[]).await;
        let (status, _) = post(
            &running,
            "/webhooks/fake",
            json!({"id": "p-1", "text": "hello?", "chatId": "chat-p", "userId": "stranger"}),
        )
        .await;
        assert_eq!(status, 202, "answered once claimed; the refusal comes after the answer");
        let provider = fake(&running);
        let notice = ["Sorry — I could not process that message. Please try again.".to_owned()];
        eventually("the notice", || as_fake(&provider).texts() == notice).await;
        assert!(cloud.store.borrow().session_bindings.is_empty(), "no session, no prompt");
        running.stop();
    });
}

#[test]
fn render_failures_retry_in_order_and_a_poison_event_is_skipped() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[]).await;
        let provider = fake(&running);
        assert_eq!(
            post(&running, "/webhooks/fake", json!({"id": "r-1", "text": "first", "chatId": "chat-r"})).await.0,
            202
        );
        eventually("the first echo", || as_fake(&provider).texts().contains(&"echo: first".to_owned())).await;
        let session = session_of(&cloud, "chat-r");

        as_fake(&provider).fail_next([SendError::transient("503 service unavailable")]);
        cloud.append_session_event(&session, "assistant.message", json!({"messageId": "a", "content": "alpha"}));
        cloud.append_session_event(&session, "assistant.message", json!({"messageId": "b", "content": "beta"}));
        eventually("both rendered", || as_fake(&provider).texts().ends_with(&["alpha".to_owned(), "beta".to_owned()]))
            .await;
        assert_eq!(running.metrics.get(Stat::SessionRenderRetries), 1);

        as_fake(&provider).fail_next([SendError::permanent("Fake channel text exceeds maxTextLength 4096")]);
        cloud.append_session_event(&session, "assistant.message", json!({"messageId": "c", "content": "poison"}));
        cloud.append_session_event(&session, "assistant.message", json!({"messageId": "d", "content": "after"}));
        eventually("the next one rendered", || as_fake(&provider).texts().last() == Some(&"after".to_owned())).await;
        assert!(!as_fake(&provider).texts().contains(&"poison".to_owned()));
        assert_eq!(running.metrics.get(Stat::SessionRenderDeadLetters), 1);
        assert_eq!(running.metrics.get(Stat::DroppedSessionEvents), 1);
        running.stop();
    });
}

#[test]
fn deliveries_retry_then_succeed_die_when_permanent_and_chunk_long_text() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[]).await;
        let provider = fake(&running);
        as_fake(&provider).fail_next([SendError::transient("ECONNRESET")]);
        cloud.enqueue_delivery(
            "fake-binding",
            "retry-me",
            json!({"externalChatId": "c"}),
            json!({"text": "eventually"}),
        );
        eventually("acked failed", || delivery_status(&cloud, "retry-me") == "failed").await;
        let failed = cloud.delivery("fake-binding", "retry-me").unwrap();
        assert_eq!(failed["lastError"], "ECONNRESET");
        cloud.store.borrow().clock.advance(2_000);
        eventually("re-served and sent", || delivery_status(&cloud, "retry-me") == "sent").await;
        assert_eq!(cloud.delivery("fake-binding", "retry-me").unwrap()["attemptCount"], 2);

        as_fake(&provider).fail_next([SendError::permanent("Fake channel text exceeds maxTextLength 4096")]);
        cloud.enqueue_delivery("fake-binding", "doomed", json!({"externalChatId": "c"}), json!({"text": "never"}));
        eventually("dead", || delivery_status(&cloud, "doomed") == "dead").await;

        let long: String = (0..900).map(|n| format!("word{n} ")).collect();
        cloud.enqueue_delivery("fake-binding", "long", json!({"externalChatId": "c"}), json!({"text": long}));
        eventually("sent", || delivery_status(&cloud, "long") == "sent").await;
        let chunk_ids: Vec<String> = as_fake(&provider)
            .records()
            .into_iter()
            .filter_map(|r| match r {
                FakeRecord::Text { options, .. } => options.delivery_id.filter(|id| id.starts_with("long")),
                _ => None,
            })
            .collect();
        assert!(chunk_ids.len() >= 2);
        assert_eq!(chunk_ids[..2], ["long:chunk:1".to_owned(), "long:chunk:2".to_owned()]);
        assert_eq!(running.metrics.get(Stat::DeliveryRetries), 1);
        assert_eq!(running.metrics.get(Stat::DeliveryDeadLetters), 1);
        running.stop();
    });
}

fn buttons(provider: &FakeProvider) -> Vec<Vec<open_cowork_gateway::channel::Button>> {
    provider
        .records()
        .into_iter()
        .rev()
        .find_map(|r| if let FakeRecord::Buttons { buttons, .. } = r { Some(buttons) } else { None })
        .expect("a button prompt")
}

#[test]
fn approvals_and_questions_by_button_and_by_command() {
    run(async {
        let (_cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[]).await;
        let provider = fake(&running);
        let fake_provider = || as_fake(&provider);

        assert_eq!(
            post(&running, "/webhooks/fake", json!({"id": "a-1", "text": "go /approve-me", "chatId": "chat-a"}))
                .await
                .0,
            202
        );
        eventually("approval buttons", || {
            fake_provider().records().iter().any(|r| matches!(r, FakeRecord::Buttons { .. }))
        })
        .await;
        let rows = buttons(fake_provider());
        assert_eq!(rows[0][0].label, "Approve");
        let approve = rows[0][0].token.clone();
        assert!(approve.starts_with("apv:occi_"));
        let (status, _) = post(
            &running,
            "/webhooks/fake",
            json!({"id": "click-1", "chatId": "chat-a", "interaction": {"id": "cb-1", "token": approve}}),
        )
        .await;
        assert_eq!(status, 202);
        eventually("granted", || fake_provider().texts().iter().any(|t| t.contains("Permission granted"))).await;
        assert!(fake_provider()
            .records()
            .contains(&FakeRecord::Answer { interaction_id: "cb-1".into(), text: "Approved".into() }));

        assert_eq!(
            post(&running, "/webhooks/fake", json!({"id": "q-1", "text": "then /ask", "chatId": "chat-a"})).await.0,
            202
        );
        eventually("question buttons", || {
            buttons(fake_provider()).len() == 2 && buttons(fake_provider())[1][0].label == "Reject"
        })
        .await;
        let answer = buttons(fake_provider())[0][0].token.clone();
        assert!(answer.starts_with("ans:WWVz:"), "base64url of Yes: {answer}");
        assert_eq!(
            post(
                &running,
                "/webhooks/fake",
                json!({"id": "click-2", "chatId": "chat-a", "interaction": {"id": "cb-2", "token": answer}})
            )
            .await
            .0,
            202
        );
        eventually("answered", || fake_provider().texts().iter().any(|t| t == "You answered: Yes")).await;

        // By command: deny a new permission with its fallback token.
        assert_eq!(
            post(&running, "/webhooks/fake", json!({"id": "a-2", "text": "again /approve-me", "chatId": "chat-a"}))
                .await
                .0,
            202
        );
        eventually("second approval", || {
            fake_provider()
                .records()
                .iter()
                .filter(|r| matches!(r, FakeRecord::Buttons { buttons, .. } if buttons[0][0].label == "Approve"))
                .count()
                == 2
        })
        .await;
        let token = buttons(fake_provider())[0][1].token.strip_prefix("den:").unwrap().to_owned();
        assert_eq!(
            post(
                &running,
                "/webhooks/fake",
                json!({"id": "cmd-1", "text": format!("/deny {token}"), "chatId": "chat-a"})
            )
            .await
            .0,
            202
        );
        eventually("denied", || fake_provider().texts().iter().any(|t| t.contains("Permission denied"))).await;
        assert_eq!(running.metrics.get(Stat::InteractionsResolved), 3);
        running.stop();
    });
}

#[test]
fn cloud_faults_lose_nothing() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[]).await;
        let provider = fake(&running);
        // A 503 on the prompt after the webhook was answered is retried by the gateway itself
        // (no platform retries after a 202); a redelivered event stays a duplicate: one prompt.
        cloud.faults.borrow_mut().fail_next("prompt", 1, 503, None);
        let message = json!({"id": "f-1", "text": "resilient", "chatId": "chat-f"});
        assert_eq!(post(&running, "/webhooks/fake", message.clone()).await.0, 202);
        prompts_become(&cloud, "chat-f", &["resilient"]).await;
        assert_eq!(post(&running, "/webhooks/fake", message).await.0, 202);
        prompts_become(&cloud, "chat-f", &["resilient"]).await;
        eventually("echo", || as_fake(&provider).texts().contains(&"echo: resilient".to_owned())).await;

        // A cut session stream resumes without losing events.
        let session = session_of(&cloud, "chat-f");
        cloud.faults.borrow_mut().cut_session_stream_after = Some(0);
        cloud.append_session_event(
            &session,
            "assistant.message",
            json!({"messageId": "x", "content": "through the cut"}),
        );
        eventually("rendered after the cut", || as_fake(&provider).texts().contains(&"through the cut".to_owned()))
            .await;

        // A 429 on the sent ack is retried after its hint; the delivery is sent once.
        cloud.faults.borrow_mut().fail_next("ack", 1, 429, Some(50));
        cloud.enqueue_delivery(
            "fake-binding",
            "acked-late",
            json!({"externalChatId": "chat-f"}),
            json!({"text": "ack me"}),
        );
        eventually("sent", || delivery_status(&cloud, "acked-late") == "sent").await;
        let sends = as_fake(&provider).texts().iter().filter(|t| *t == "ack me").count();
        assert_eq!(sends, 1);
        running.stop();
    });
}

#[test]
fn drain_with_200_queued_deliveries_acks_only_what_was_sent() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[("OPEN_COWORK_GATEWAY_MAX_DELIVERY_CONCURRENCY", "4")]).await;
        let provider = fake(&running);
        as_fake(&provider).set_latency(Duration::from_millis(20));
        for n in 0..200 {
            cloud.enqueue_delivery(
                "fake-binding",
                &format!("bulk-{n}"),
                json!({"externalChatId": format!("chat-{}", n % 10)}),
                json!({"text": format!("bulk {n}")}),
            );
        }
        eventually("some sent", || (0..200).any(|n| delivery_status(&cloud, &format!("bulk-{n}")) == "sent")).await;
        running.drain(Duration::from_millis(300)).await;
        running.stop();
        let sent_ids: Vec<String> = as_fake(&provider)
            .records()
            .into_iter()
            .filter_map(|r| if let FakeRecord::Text { options, .. } = r { options.delivery_id } else { None })
            .collect();
        let mut acked_sent = 0;
        for n in 0..200 {
            let id = format!("bulk-{n}");
            match delivery_status(&cloud, &id).as_str() {
                "sent" => {
                    acked_sent += 1;
                    assert!(sent_ids.contains(&id), "{id} acked sent without a send");
                }
                "claimed" | "pending" | "failed" => {}
                other => panic!("{id} is {other}: lost"),
            }
        }
        assert!(acked_sent > 0 && acked_sent < 200, "the drain cut the queue short ({acked_sent} sent)");
        // What was not acked is served again once its lease expires. Cloud's clock stands still
        // while it is claimed: a stall of the machine must not expire a 1 s lease mid-count.
        cloud.store.borrow().clock.stop();
        cloud.store.borrow().clock.advance(120_001);
        let bindings = vec!["fake-binding".to_owned()];
        let reclaimed = std::iter::from_fn(|| {
            cloud.store.borrow_mut().claim_next_delivery(&bindings, "gateway:next", "tok", 1_000)
        })
        .count();
        assert_eq!(reclaimed, 200 - acked_sent);
    });
}

#[test]
fn open_streams_resume_after_a_restart_from_the_state_file() {
    run(async {
        let state = support::TempDir::new("loop-state");
        let state_dir = state.0.to_str().unwrap().to_owned();
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let first = gateway(&base, &seeded, &[("OPEN_COWORK_GATEWAY_STATE_DIR", &state_dir)]).await;
        let first_provider = fake(&first);
        assert_eq!(
            post(&first, "/webhooks/fake", json!({"id": "s-1", "text": "remember me", "chatId": "chat-s"})).await.0,
            202
        );
        eventually("echo", || as_fake(&first_provider).texts().contains(&"echo: remember me".to_owned())).await;
        first.drain(Duration::from_secs(5)).await;
        first.stop();

        // While the gateway is down the agent says more.
        let session = session_of(&cloud, "chat-s");
        cloud.append_session_event(
            &session,
            "assistant.message",
            json!({"messageId": "late", "content": "said while you were away"}),
        );

        let second = gateway(&base, &seeded, &[("OPEN_COWORK_GATEWAY_STATE_DIR", &state_dir)]).await;
        let second_provider = fake(&second);
        eventually("rendered without a new message", || {
            as_fake(&second_provider).texts().contains(&"said while you were away".to_owned())
        })
        .await;
        assert!(
            !as_fake(&second_provider).texts().contains(&"echo: remember me".to_owned()),
            "resumed from the Cloud cursor: nothing rendered twice"
        );
        second.stop();
    });
}

#[test]
fn a_failing_channel_opens_its_delivery_circuit_and_shows_in_ready() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[]).await;
        let provider = fake(&running);
        eventually("ready", || running.readiness.is_ready()).await;
        as_fake(&provider).fail_next((0..5).map(|_| SendError::transient("503 service unavailable")));
        for n in 0..5 {
            cloud.enqueue_delivery(
                "fake-binding",
                &format!("c-{n}"),
                json!({"externalChatId": format!("chat-{n}")}),
                json!({"text": "x"}),
            );
        }
        let circuit_open = || running.readiness.degraded().iter().any(|d| d.reason == "send_circuit_open");
        eventually("circuit open", circuit_open).await;
        let status = running.registry.status_json();
        assert!(status[0]["error"].as_str().unwrap().starts_with("Delivery circuit open"), "{status:?}");
        // While open, the channel cannot send, so its binding leaves the subscription: deliveries
        // are not claimed at all (no attempt is spent on a channel known to be failing). The
        // gateway still serves (its webhooks, its other chats): degraded, not unready.
        let subscription =
            || running.readiness.conditions().into_iter().find(|c| c.name == "delivery_subscription").unwrap();
        eventually("the subscription pauses", || {
            subscription().reason.is_some_and(|reason| reason.starts_with("No channel can send"))
        })
        .await;
        assert!(running.readiness.is_ready(), "{:?}", running.readiness.conditions());
        cloud.enqueue_delivery("fake-binding", "during", json!({"externalChatId": "z"}), json!({"text": "later"}));
        tokio::time::sleep(Duration::from_millis(200)).await; // ten dev Cloud poll intervals
        let during = cloud.delivery("fake-binding", "during").unwrap();
        assert_eq!((during["status"].as_str(), during["attemptCount"].as_u64()), (Some("pending"), Some(0)));
        assert!(!as_fake(&provider).texts().contains(&"later".to_owned()));
        running.stop();
    });
}

#[test]
fn a_circuit_half_opens_and_closes_on_success() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[]).await;
        let provider = fake(&running);
        as_fake(&provider).fail_next((0..5).map(|_| SendError::transient("503 service unavailable")));
        for n in 0..5 {
            cloud.enqueue_delivery(
                "fake-binding",
                &format!("h-{n}"),
                json!({"externalChatId": format!("chat-{n}")}),
                json!({"text": "x"}),
            );
        }
        eventually("circuit open", || !running.registry.any_healthy()).await;
        // Cloud re-serves the failed deliveries after their backoff; the circuit stays open 30 s,
        // so jump the gateway's view forward by expiring it through time travel on both sides.
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(31)).await;
        tokio::time::resume();
        cloud.store.borrow().clock.advance(60_000);
        cloud.enqueue_delivery("fake-binding", "after", json!({"externalChatId": "z"}), json!({"text": "recovered"}));
        eventually("sent after half-open", || delivery_status(&cloud, "after") == "sent").await;
        assert!(running.registry.any_healthy(), "a success closes the circuit");
        running.stop();
    });
}

/// A 403 on one chat's session stream is that chat's binding grant, not the service token: the
/// gateway stays ready (degraded, counted), and the chat's reply is rendered once Cloud opens it.
#[test]
fn a_refused_session_stream_degrades_one_chat_and_never_blames_the_token() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[]).await;
        let provider = fake(&running);
        eventually("ready", || running.readiness.is_ready()).await;
        cloud.faults.borrow_mut().fail_next("session-events", 3, 403, None);
        let message = json!({"id": "r-1", "text": "refused at first", "chatId": "chat-r"});
        assert_eq!(post(&running, "/webhooks/fake", message).await.0, 202);
        let refused = || running.readiness.degraded().iter().any(|d| d.reason == "session_stream_refused");
        eventually("the refusal is a degraded reason", refused).await;
        assert!(running.readiness.is_ready(), "{:?}", running.readiness.conditions());
        let auth = running.readiness.conditions().into_iter().find(|c| c.name == "cloud_auth").unwrap();
        assert!(auth.ok, "one chat's 403 is not the token: {auth:?}");
        eventually("the reply once Cloud opens the stream", || {
            as_fake(&provider).texts().iter().any(|t| t.contains("refused at first"))
        })
        .await;
        eventually("the degraded reason goes", || !refused()).await;
        running.stop();
    });
}

#[test]
fn streamed_text_keeps_its_spaces_new_messages_name_only_the_chat_and_file_names_are_redacted() {
    run(async {
        let (cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[]).await;
        let provider = fake(&running);
        assert_eq!(
            post(&running, "/webhooks/fake", json!({"id": "s-1", "text": "hi", "chatId": "chat-s"})).await.0,
            202
        );
        eventually("the echo", || as_fake(&provider).texts().contains(&"echo: hi".to_owned())).await;
        let session = session_of(&cloud, "chat-s");

        cloud.append_session_event(&session, "assistant.message", json!({"messageId": "m-s", "content": "echo:"}));
        cloud.append_session_event(&session, "assistant.message", json!({"messageId": "m-s", "content": " hello"}));
        eventually("the merged text", || as_fake(&provider).texts().last() == Some(&"echo: hello".to_owned())).await;

        cloud.append_session_event(
            &session,
            "artifact.created",
            json!({"artifactId": "art-s", "filename": "report-token=secret.txt"}),
        );
        eventually("the artifact link", || as_fake(&provider).texts().iter().any(|t| t.contains("art-s"))).await;
        let link = as_fake(&provider).texts().into_iter().find(|t| t.contains("art-s")).unwrap();
        assert!(link.starts_with("report-token=[redacted].txt: "), "{link}");
        assert!(!link.contains("secret"), "{link}");

        for record in as_fake(&provider).records() {
            if let FakeRecord::Text { target, text, .. } = record {
                assert_eq!(target.chat_id, "chat-s");
                assert_eq!(target.thread_id, None, "no thread was given: {text}");
                assert_eq!(target.message_id, None, "a new message replies to nothing: {text}");
            }
        }
        running.stop();
    });
}

/// `open_cowork_channel_messages_total{direction="outbound", outcome}`, summed over the kinds
/// (renders count under the runtime kind, inbound work under the configured one).
fn outbound(running: &Running, outcome: &str) -> u64 {
    let text = running.metrics.render_prometheus();
    let wanted = format!("direction=\"outbound\",outcome=\"{outcome}\"");
    text.lines()
        .filter(|l| l.starts_with("open_cowork_channel_messages_total{") && l.contains(&wanted))
        .filter_map(|l| l.rsplit(' ').next())
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

#[test]
fn acknowledgements_of_interactions_are_counted_as_outbound_messages() {
    run(async {
        let (_cloud, seeded, base) = dev_cloud(fast_cloud_options()).await;
        let running = gateway(&base, &seeded, &[]).await;
        let provider = fake(&running);
        assert_eq!(
            post(&running, "/webhooks/fake", json!({"id": "k-1", "text": "go /approve-me", "chatId": "chat-k"}))
                .await
                .0,
            202
        );
        eventually("approval buttons", || {
            as_fake(&provider).records().iter().any(|r| matches!(r, FakeRecord::Buttons { .. }))
        })
        .await;
        let approve = as_fake(&provider)
            .records()
            .iter()
            .find_map(|r| match r {
                FakeRecord::Buttons { buttons, .. } => Some(buttons[0][0].token.clone()),
                _ => None,
            })
            .unwrap();
        as_fake(&provider).fail_next_answer(SendError::permanent("Bad Request: query is too old"));
        let click = json!({"id": "k-2", "chatId": "chat-k", "interaction": {"id": "cb-k", "token": approve}});
        assert_eq!(post(&running, "/webhooks/fake", click).await.0, 202);
        eventually("granted", || as_fake(&provider).texts().iter().any(|t| t.contains("Permission granted"))).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (attempts, successes, errors) =
            (outbound(&running, "attempt"), outbound(&running, "success"), outbound(&running, "error"));
        assert_eq!(errors, 1, "the refused acknowledgement");
        assert_eq!(successes as usize, as_fake(&provider).records().len(), "one success per message the fake took");
        assert_eq!(attempts, successes + errors, "the acknowledgement was an attempt too");
        running.stop();
    });
}
