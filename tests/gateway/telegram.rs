//! Telegram against a fake Bot API and the dev Cloud, all on loopback.

#![cfg(all(feature = "devcloud", feature = "telegram"))]

use crate::support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use open_cowork_gateway::app::Running;
use open_cowork_gateway::devcloud::DevCloud;
use open_cowork_gateway::metrics::Stat;
use serde_json::{json, Value};
use support::fake_telegram::{self, callback_update, text_update, FakeBot, Shared, TOKEN};
use support::test_gateway::{
    dev_cloud, first_session_prompts, quick_agent_options, quiet_factory, sessions_of, start_gateway,
};
use support::{eventually, run, run_paused};

struct World {
    cloud: Rc<DevCloud>,
    bot: Shared,
    cloud_url: String,
    bot_url: String,
    token: String,
}

async fn world() -> World {
    let (cloud, seeded, cloud_url) = dev_cloud(quick_agent_options()).await;
    let token = seeded.gateway_token;
    let bot: Shared = Rc::new(RefCell::new(FakeBot::default()));
    let bot_url = fake_telegram::start(Rc::clone(&bot)).await;
    World { cloud, bot, cloud_url, bot_url, token }
}

async fn gateway(world: &World, extra: &[(&str, &str)]) -> Running {
    let bot = [
        ("OPEN_COWORK_GATEWAY_TELEGRAM_BOT_TOKEN", TOKEN),
        ("OPEN_COWORK_GATEWAY_TELEGRAM_API_BASE_URL", world.bot_url.as_str()),
    ];
    let settings = [&bot[..], extra].concat();
    start_gateway(&world.cloud_url, &world.token, "tg", &settings, quiet_factory()).await
}

fn health(running: &Running) -> (bool, Option<String>) {
    let registration = running.registry.get("telegram").unwrap();
    (registration.is_healthy(), registration.health().problem().map(str::to_owned))
}

#[test]
fn polling_round_trip_with_offsets_and_html() {
    run(async {
        let world = world().await;
        world.bot.borrow_mut().push_update(text_update(1001, 123, "hello <bot> & co"));
        let running = gateway(&world, &[]).await;
        eventually("the reply", || world.bot.borrow().texts_sent().iter().any(|t| t.starts_with("echo:"))).await;
        assert_eq!(first_session_prompts(&world.cloud, "123"), ["hello <bot> & co"]);
        let reply = world
            .bot
            .borrow()
            .calls("sendMessage")
            .into_iter()
            .find(|b| b["text"].as_str().unwrap().starts_with("echo:"))
            .unwrap();
        assert_eq!(reply["text"], "echo: hello &lt;bot&gt; &amp; co", "escaped for parse_mode HTML");
        assert_eq!(reply["parse_mode"], "HTML");
        assert_eq!(reply["chat_id"], 123);
        assert!(
            reply.get("message_thread_id").is_none(),
            "a private chat has no topics: the reply carries no thread id"
        );
        assert_eq!(
            world.bot.borrow().calls("getUpdates")[0],
            json!({"offset": 0, "timeout": 30, "allowed_updates": ["message", "callback_query"]})
        );
        eventually("the next offset", || {
            world.bot.borrow().calls("getUpdates").iter().skip(1).any(|p| p == &json!({"offset": 1002, "timeout": 30}))
        })
        .await;
        assert!(world.bot.borrow().calls("deleteWebhook").is_empty(), "no webhook was set, so none is deleted");
        assert!(health(&running).0);
        // The fake records a sendMessage before it answers; the counter moves once the answer is in.
        eventually("the send counted", || {
            running.registry.sync_metrics();
            running.metrics.provider_event_count("telegram", "send") >= 1
        })
        .await;
        assert!(running.metrics.provider_event_count("telegram", "update") >= 1);
        let text = running.metrics.render_prometheus();
        assert!(
            text.contains("open_cowork_gateway_provider_events_total{provider_id=\"telegram\",event=\"update\"}"),
            "{text}"
        );
        running.drain(Duration::from_secs(5)).await;
        running.stop();
    });
}

#[test]
fn a_rejected_token_is_an_auth_reason_without_retries() {
    run(async {
        let world = world().await;
        world.bot.borrow_mut().error("getMe", 401, "Unauthorized", None);
        let running = gateway(&world, &[]).await;
        eventually("the auth reason", || health(&running).1.is_some_and(|e| e.starts_with("auth:"))).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(world.bot.borrow().calls("getMe").len(), 1, "no retry storm");
        assert!(!running.readiness.is_ready());
        running.stop();
    });
}

/// The delivery subscription names a bot's binding only once Telegram accepted its token: a
/// delivery must not go out before `getMe`, and a rejected token claims nothing.
#[test]
fn no_delivery_is_claimed_before_telegram_accepts_the_token() {
    run(async {
        let world = world().await;
        world.bot.borrow_mut().delay("getMe", Duration::from_millis(400));
        world.cloud.enqueue_delivery("telegram", "early", json!({"externalChatId": "5"}), json!({"text": "hi"}));
        let running = gateway(&world, &[]).await;
        tokio::time::sleep(Duration::from_millis(200)).await; // ten dev Cloud poll intervals
        let early = world.cloud.delivery("telegram", "early").unwrap();
        assert_eq!(early["status"], "pending", "not claimed while getMe is unanswered: {early}");
        assert!(!running.readiness.is_ready(), "a channel still checking its token is not started");
        eventually("sent once started", || world.cloud.delivery("telegram", "early").unwrap()["status"] == "sent")
            .await;
        let get_me = world.bot.borrow().call_times("getMe")[0];
        let send = world.bot.borrow().call_times("sendMessage")[0];
        assert!(send > get_me, "the send follows getMe");
        running.stop();
    });
}

#[test]
fn a_rejected_token_claims_no_delivery() {
    run(async {
        let world = world().await;
        world.bot.borrow_mut().error("getMe", 401, "Unauthorized", None);
        for id in ["r-1", "r-2", "r-3"] {
            world.cloud.enqueue_delivery("telegram", id, json!({"externalChatId": "5"}), json!({"text": "hi"}));
        }
        let running = gateway(&world, &[]).await;
        eventually("the auth reason", || health(&running).1.is_some_and(|e| e.starts_with("auth:"))).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        for id in ["r-1", "r-2", "r-3"] {
            let record = world.cloud.delivery("telegram", id).unwrap();
            assert_eq!(
                (record["status"].as_str(), record["attemptCount"].as_u64()),
                (Some("pending"), Some(0)),
                "{id}"
            );
        }
        assert!(world.bot.borrow().calls("sendMessage").is_empty());
        running.stop();
    });
}

#[test]
fn a_set_webhook_is_deleted_keeping_pending_updates_then_polling_starts() {
    run(async {
        let world = world().await;
        world.bot.borrow_mut().webhook_url = "https://old.example.com/hook".into();
        let running = gateway(&world, &[]).await;
        eventually("polling", || !world.bot.borrow().calls("getUpdates").is_empty()).await;
        assert_eq!(world.bot.borrow().calls("deleteWebhook"), [json!({"drop_pending_updates": false})]);
        running.stop();
    });
}

#[test]
fn conflict_and_rate_limits_back_off_and_recover() {
    run_paused(async {
        let world = world().await;
        world.bot.borrow_mut().error("getUpdates", 409, "Conflict: terminated by other getUpdates request", None);
        let running = gateway(&world, &[]).await;
        eventually("the conflict reason", || health(&running).1.is_some_and(|e| e.starts_with("conflict:"))).await;
        let status = running.registry.status_json();
        assert!(status[0]["error"].as_str().unwrap().starts_with("conflict:"));
        eventually("recovered", || health(&running).0).await;

        // 7 s: unlike the 3 s fallback or the ≤ 1 s first backoff, so only honouring retry_after fits.
        world.bot.borrow_mut().error(
            "getUpdates",
            429,
            "Too Many Requests: retry after 7",
            Some(json!({"retry_after": 7})),
        );
        // The next getUpdates takes the 429 (nothing awaits between scripting it and counting).
        let limited = world.bot.borrow().calls("getUpdates").len();
        eventually("the poll after the 429", || world.bot.borrow().calls("getUpdates").len() > limited + 1).await;
        let times = world.bot.borrow().call_times("getUpdates");
        let waited = times[limited + 1] - times[limited];
        assert!(
            waited >= Duration::from_secs(7) && waited < Duration::from_millis(7050),
            "polled again {waited:?} after the 429, not retry_after (7 s)"
        );
        running.registry.sync_metrics();
        assert_eq!(running.metrics.provider_event_count("telegram", "rate_limited"), 1);
        running.stop();
    });
}

#[test]
fn a_restart_mid_batch_processes_every_update_once() {
    run(async {
        let world = world().await;
        world.bot.borrow_mut().push_update(text_update(1, 500, "first"));
        let first = gateway(&world, &[]).await;
        eventually("the first prompt", || first_session_prompts(&world.cloud, "500") == ["first"]).await;
        // Then Cloud fails every prompt: the first gateway keeps retrying update 2 and is stopped.
        world.cloud.faults.borrow_mut().fail_next("prompt", 1000, 503, None);
        for (id, text) in [(2, "second"), (3, "third")] {
            world.bot.borrow_mut().push_update(text_update(id, 500, text));
        }
        eventually("update 2 retried", || health(&first).1.is_some_and(|e| e.starts_with("degraded:"))).await;
        first.drain(Duration::from_secs(5)).await;
        first.stop();

        world.cloud.faults.borrow_mut().fail_next("prompt", 0, 503, None);
        let second = gateway(&world, &[]).await;
        eventually("all prompts", || first_session_prompts(&world.cloud, "500").len() == 3).await;
        assert_eq!(first_session_prompts(&world.cloud, "500"), ["first", "second", "third"], "none lost, none twice");
        second.stop();
    });
}

#[test]
fn approval_buttons_use_short_ids_and_answer_the_callback() {
    run(async {
        let world = world().await;
        world.bot.borrow_mut().push_update(text_update(10, 777, "please /approve-me"));
        let running = gateway(&world, &[]).await;
        eventually("the keyboard", || keyboards_sent(&world) >= 1).await;
        let (message_id, ids, _) = keyboard(&world, 0);
        let first_button = world.bot.borrow().calls("sendMessage")[message_id as usize - 1]["reply_markup"]
            ["inline_keyboard"][0][0]["text"]
            .clone();
        assert_eq!(first_button, "Approve");
        let approve = ids[0].clone();
        assert!(approve.len() <= 64 && approve.starts_with("b:"), "{approve}");
        world.bot.borrow_mut().push_update(callback_update(11, 777, message_id, &approve));
        eventually("granted", || world.bot.borrow().texts_sent().iter().any(|t| t.contains("Permission granted")))
            .await;
        assert_eq!(
            world.bot.borrow().calls("answerCallbackQuery"),
            [json!({"callback_query_id": "cbq-11", "text": "Approved"})]
        );

        // A press on an unknown id is answered and not passed on.
        world.bot.borrow_mut().push_update(callback_update(12, 777, message_id, "b:999999"));
        eventually("the expiry notice", || world.bot.borrow().calls("answerCallbackQuery").len() == 2).await;
        assert_eq!(running.metrics.get(Stat::InteractionsResolved), 1);
        running.stop();
    });
}

/// The approval's keyboard meets a 502 once: the retried render shows it with the interaction
/// the first try created, so Cloud holds one interaction and the chat one keyboard.
#[test]
fn an_approval_whose_keyboard_fails_once_has_one_interaction_and_one_keyboard() {
    run_paused(async {
        let world = world().await;
        world.bot.borrow_mut().error_once_if(
            "sendMessage",
            |body| body.get("reply_markup").is_some(),
            502,
            "Bad Gateway",
            None,
        );
        world.bot.borrow_mut().push_update(text_update(70, 707, "please /approve-me"));
        let running = gateway(&world, &[]).await;
        within(Duration::from_secs(30), "the keyboard after the 502", || keyboards_sent(&world) >= 2).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(world.bot.borrow().scripted_if.is_empty(), "the keyboard took the 502");
        assert_eq!(keyboards_sent(&world), 2, "one refused try and one keyboard shown");
        assert_eq!(world.cloud.calls("create-interaction"), 1, "one Cloud interaction");
        running.stop();
    });
}

#[test]
fn webhook_mode_registers_verifies_the_secret_and_deduplicates() {
    run(async {
        let world = world().await;
        let running = gateway(
            &world,
            &[
                ("OPEN_COWORK_GATEWAY_TELEGRAM_MODE", "webhook"),
                ("OPEN_COWORK_GATEWAY_TELEGRAM_WEBHOOK_SECRET", "tg-secret_123"),
                ("OPEN_COWORK_GATEWAY_PUBLIC_URL", "https://bot.example.com/base"),
            ],
        )
        .await;
        eventually("setWebhook", || !world.bot.borrow().calls("setWebhook").is_empty()).await;
        assert_eq!(
            world.bot.borrow().calls("setWebhook")[0],
            json!({"url": "https://bot.example.com/base/webhooks/telegram", "secret_token": "tg-secret_123", "allowed_updates": ["message", "callback_query"]})
        );
        assert!(world.bot.borrow().calls("getUpdates").is_empty(), "never both");
        eventually("healthy", || health(&running).0).await;

        let post = |secret: Option<&'static str>, update: Value| {
            let address = running.address;
            async move {
                let http = open_cowork_gateway::net::https::build_client(None).unwrap();
                let mut request = http::Request::post(format!("http://{address}/webhooks/telegram"))
                    .header("content-type", "application/json");
                if let Some(secret) = secret {
                    request = request.header("x-telegram-bot-api-secret-token", secret);
                }
                http.request(request.body(http_body_util::Full::new(bytes::Bytes::from(update.to_string()))).unwrap())
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(post(None, text_update(1, 88, "no secret")).await, 401);
        assert_eq!(post(Some("wrong"), text_update(1, 88, "wrong secret")).await, 401);
        assert_eq!(post(Some("tg-secret_123"), text_update(2, 88, "via webhook")).await, 202);
        assert_eq!(post(Some("tg-secret_123"), text_update(2, 88, "via webhook")).await, 202);
        // Answered once claimed; the prompt follows the answer.
        eventually("the prompt", || first_session_prompts(&world.cloud, "88") == ["via webhook"]).await;
        running.stop();
    });
}

#[test]
fn a_webhook_that_is_not_ours_is_reported_not_overwritten() {
    run(async {
        let world = world().await;
        world.bot.borrow_mut().webhook_url = "https://someone-else.example.com/hook".into();
        let running = gateway(
            &world,
            &[
                ("OPEN_COWORK_GATEWAY_TELEGRAM_MODE", "webhook"),
                ("OPEN_COWORK_GATEWAY_TELEGRAM_WEBHOOK_SECRET", "s3cr3t"),
                ("OPEN_COWORK_GATEWAY_PUBLIC_URL", "https://bot.example.com"),
            ],
        )
        .await;
        eventually("the webhook reason", || health(&running).1.is_some_and(|e| e.starts_with("webhook:"))).await;
        assert!(world.bot.borrow().calls("setWebhook").is_empty());
        running.stop();
    });
}

fn delivery_status(cloud: &DevCloud, id: &str) -> Value {
    cloud.delivery("telegram", id).map(|d| d["status"].clone()).unwrap_or(Value::Null)
}

#[test]
fn delivery_errors_map_to_dead_retry_or_a_new_chat() {
    run(async {
        let world = world().await;
        let running = gateway(&world, &[]).await;
        eventually("healthy", || health(&running).0).await;
        world.bot.borrow_mut().error("sendMessage", 403, "Forbidden: bot was blocked by the user", None);
        world.cloud.enqueue_delivery("telegram", "blocked", json!({"externalChatId": "1"}), json!({"text": "x"}));
        eventually("dead", || delivery_status(&world.cloud, "blocked") == "dead").await;

        world.bot.borrow_mut().error(
            "sendMessage",
            429,
            "Too Many Requests: retry after 2",
            Some(json!({"retry_after": 2})),
        );
        world.cloud.enqueue_delivery("telegram", "limited", json!({"externalChatId": "2"}), json!({"text": "x"}));
        eventually("sent after the wait", || delivery_status(&world.cloud, "limited") == "sent").await;
        let acks = world.cloud.records.borrow().acks_of("limited").map(|a| a.calls.clone()).unwrap();
        assert_eq!(
            acks.iter().map(|c| c.status.as_str()).collect::<Vec<_>>(),
            ["sent"],
            "a rate limit is waited out in place, not acked failed"
        );
        let dead = world.cloud.records.borrow().acks_of("blocked").map(|a| a.calls.clone()).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].status.as_str(), dead[0].next_attempt_at.clone()),
            ("dead", Some(Value::Null)),
            "a dead ack clears Cloud's retry time with an explicit null"
        );

        world.bot.borrow_mut().error(
            "sendMessage",
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            Some(json!({"migrate_to_chat_id": -1001234})),
        );
        world.cloud.enqueue_delivery(
            "telegram",
            "migrated",
            json!({"externalChatId": "-55"}),
            json!({"text": "moved"}),
        );
        eventually("sent", || delivery_status(&world.cloud, "migrated") == "sent").await;
        let last = world.bot.borrow().calls("sendMessage").last().cloned().unwrap();
        assert_eq!((last["chat_id"].clone(), last["text"].clone()), (json!(-1001234), json!("moved")));

        world.bot.borrow_mut().error("sendMessage", 400, "Bad Request: can't parse entities: unexpected end tag", None);
        world.cloud.enqueue_delivery("telegram", "plain", json!({"externalChatId": "3"}), json!({"text": "a < b"}));
        eventually("sent as plain text", || delivery_status(&world.cloud, "plain") == "sent").await;
        let last = world.bot.borrow().calls("sendMessage").last().cloned().unwrap();
        assert_eq!(last["text"], "a < b");
        assert!(last.get("parse_mode").is_none());
        running.stop();
    });
}

/// A delivery cut in three messages whose second meets a 502 is acked `failed`; when Cloud
/// serves it again, the next attempt sends only the second and the third.
#[test]
fn a_delivery_whose_second_message_fails_resumes_at_that_message() {
    run(async {
        let world = world().await;
        let running = gateway(&world, &[]).await;
        eventually("healthy", || health(&running).0).await;
        // About 9,000 characters: three messages at 4,096; the first starts with `d0000`.
        let text: String = (0..1500).map(|n| format!("d{n:04} ")).collect();
        let text = text.trim().to_owned();
        world.bot.borrow_mut().error_once_if(
            "sendMessage",
            |body| body["text"].as_str().is_some_and(|t| t.starts_with('d') && !t.starts_with("d0000")),
            502,
            "Bad Gateway",
            None,
        );
        world.cloud.enqueue_delivery("telegram", "long", json!({"externalChatId": "7"}), json!({"text": text}));
        eventually("sent", || delivery_status(&world.cloud, "long") == "sent").await;
        assert!(world.bot.borrow().scripted_if.is_empty(), "the second message took the 502");
        let acks = world.cloud.records.borrow().acks_of("long").map(|a| a.calls.clone()).unwrap();
        assert_eq!(acks.iter().map(|c| c.status.as_str()).collect::<Vec<_>>(), ["failed", "sent"]);
        let texts = world.bot.borrow().texts_sent();
        assert_eq!(texts.len(), 4, "three messages and the one refused try");
        assert_eq!(texts[1], texts[2], "the refused message is where the next attempt starts");
        assert_eq!([texts[0].as_str(), &texts[2], &texts[3]].concat(), text, "each message once, in order");
        running.stop();
    });
}

/// Telegram answers an edit that changes nothing "message is not modified": that is success, not
/// a render retry. (Pacing and coalescing of edits are cases of the conformance battery.)
#[test]
fn an_edit_telegram_calls_not_modified_counts_as_done() {
    run_paused(async {
        let world = world().await;
        world.bot.borrow_mut().push_update(text_update(1, 321, "stream please"));
        let running = gateway(&world, &[]).await;
        eventually("the echo", || world.bot.borrow().texts_sent().iter().any(|t| t.starts_with("echo:"))).await;
        let session = sessions_of(&world.cloud, "321").remove(0);
        let stream = |text: &str| {
            let event = json!({"messageId": "stream-1", "content": text});
            world.cloud.append_session_event(&session, "assistant.message", event);
        };
        stream("Hello");
        stream("Hello world");
        eventually("the edit", || {
            world.bot.borrow().calls("editMessageText").iter().any(|b| b["text"] == "Hello world")
        })
        .await;

        world.bot.borrow_mut().error("editMessageText", 400, "Bad Request: message is not modified", None);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        stream("Hello world!");
        eventually("the edit tried", || {
            world.bot.borrow().scripted.get("editMessageText").is_none_or(|q| q.is_empty())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(running.metrics.get(Stat::SessionRenderRetries), 0, "not modified counts as success");
        assert_eq!(running.metrics.get(Stat::SessionRenderDeadLetters), 0, "not modified counts as success");
        running.stop();
    });
}

#[test]
fn buttons_survive_a_restart_with_a_state_directory() {
    run(async {
        let state = support::TempDir::new("tg-state");
        let state_dir = state.0.to_str().unwrap().to_owned();
        let world = world().await;
        world.bot.borrow_mut().push_update(text_update(20, 901, "/approve-me now"));
        let first = gateway(&world, &[("OPEN_COWORK_GATEWAY_STATE_DIR", &state_dir)]).await;
        eventually("the keyboard", || keyboards_sent(&world) >= 1).await;
        let (message_id, ids, _) = keyboard(&world, 0);
        let approve = ids[0].clone();
        first.drain(Duration::from_secs(5)).await;
        first.stop();

        let second = gateway(&world, &[("OPEN_COWORK_GATEWAY_STATE_DIR", &state_dir)]).await;
        world.bot.borrow_mut().push_update(callback_update(21, 901, message_id, &approve));
        eventually("granted after the restart", || {
            world.bot.borrow().texts_sent().iter().any(|t| t.contains("Permission granted"))
        })
        .await;
        second.stop();
    });
}

#[test]
fn artifacts_go_out_as_documents() {
    run(async {
        let world = world().await;
        world.bot.borrow_mut().push_update(text_update(30, 404, "make a report"));
        let running = gateway(&world, &[]).await;
        eventually("the echo", || world.bot.borrow().texts_sent().iter().any(|t| t.starts_with("echo:"))).await;
        let session = sessions_of(&world.cloud, "404").remove(0);
        world.cloud.store.borrow_mut().artifacts.push(open_cowork_gateway::devcloud::store::Artifact {
            artifact_id: "art-7".into(),
            session_id: session.clone(),
            filename: "report.txt".into(),
            content_type: Some("text/plain".into()),
            data: b"quarterly numbers".to_vec(),
        });
        world.cloud.append_session_event(
            &session,
            "artifact.created",
            json!({"artifactId": "art-7", "filename": "report.txt", "contentType": "text/plain", "size": 17}),
        );
        eventually("sendDocument", || !world.bot.borrow().calls("sendDocument").is_empty()).await;
        let upload = world.bot.borrow().calls("sendDocument")[0].clone();
        assert!(upload["contentType"].as_str().unwrap().starts_with("multipart/form-data; boundary="));
        let raw = upload["raw"].as_str().unwrap();
        assert!(raw.contains("name=\"chat_id\"\r\n\r\n404\r\n"), "{raw}");
        assert!(raw.contains("filename=\"report.txt\"") && raw.contains("quarterly numbers"), "{raw}");
        running.stop();
    });
}

#[test]
fn server_errors_back_off_and_recover() {
    run(async {
        let world = world().await;
        world.bot.borrow_mut().error("getMe", 502, "Bad Gateway", None);
        world.bot.borrow_mut().error("getUpdates", 502, "Bad Gateway", None);
        world.bot.borrow_mut().error("getUpdates", 500, "Internal Server Error", None);
        world.bot.borrow_mut().push_update(text_update(40, 606, "after the outage"));
        let running = gateway(&world, &[]).await;
        eventually("the prompt", || first_session_prompts(&world.cloud, "606") == ["after the outage"]).await;
        assert_eq!(world.bot.borrow().calls("getMe").len(), 2, "a 5xx getMe is retried, unlike a 401");
        assert!(world.bot.borrow().calls("getUpdates").len() >= 3);
        eventually("healthy", || health(&running).0).await;
        running.stop();
    });
}

/// Waits on the (paused) tokio clock until `condition` holds or `limit` has passed.
async fn within(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The texts of every `sendMessage`, with when each arrived.
fn sent_texts_with_times(bot: &Shared) -> Vec<(String, tokio::time::Instant)> {
    let bot = bot.borrow();
    let texts = bot.calls("sendMessage").into_iter().map(|b| b["text"].as_str().unwrap_or("").to_owned());
    texts.zip(bot.call_times("sendMessage")).collect()
}

#[test]
fn a_reply_rate_limited_by_telegram_is_delivered_not_skipped() {
    run_paused(async {
        let world = world().await;
        // The agent's reply meets flood control once; 10 s fits neither the 1 s first retry pause
        // nor any other backoff, so only honouring retry_after sends it exactly then.
        world.bot.borrow_mut().error_once_if(
            "sendMessage",
            |body| body["text"].as_str().is_some_and(|t| t.starts_with("echo:")),
            429,
            "Too Many Requests: retry after 10",
            Some(json!({"retry_after": 10})),
        );
        world.bot.borrow_mut().push_update(text_update(50, 808, "hold on"));
        let running = gateway(&world, &[]).await;
        let replies = || -> Vec<tokio::time::Instant> {
            sent_texts_with_times(&world.bot)
                .into_iter()
                .filter(|(t, _)| t == "echo: hold on")
                .map(|(_, at)| at)
                .collect()
        };
        within(Duration::from_secs(30), "the reply after the 429", || replies().len() >= 2).await;
        assert!(world.bot.borrow().scripted_if.is_empty(), "the reply's first sendMessage took the 429");
        let times = replies();
        let waited = times[1] - times[0];
        assert!(
            waited >= Duration::from_secs(10) && waited <= Duration::from_millis(10_100),
            "the reply was sent again {waited:?} after the 429, not after retry_after (10 s)"
        );
        // Nothing more: the retried send was the reply, once.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(replies().len(), 2, "one rate-limited try, one successful send");
        assert!(running.metrics.get(Stat::SessionRenderDelays) >= 1);
        assert_eq!(running.metrics.get(Stat::SessionRenderDeadLetters), 0, "the reply was not skipped");
        assert_eq!(running.metrics.get(Stat::DroppedSessionEvents), 0);
        let text = running.metrics.render_prometheus();
        let delays = text
            .lines()
            .find_map(|l| l.strip_prefix("open_cowork_gateway_session_render_delays_total "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        assert!(delays.is_some_and(|d| d >= 1.0), "the wait is counted as a render delay: {delays:?}");
        running.stop();
    });
}

/// An agent reply too long for one Telegram message goes out in three; the second meets a 502
/// once. The render is retried from that part: the chat shows each part once, in order.
#[test]
fn a_long_reply_whose_second_part_fails_once_arrives_once_per_part() {
    run_paused(async {
        let world = world().await;
        // 1,500 words of six characters: an echo of about 9,000, three messages at 4,096.
        let prompt: String = (0..1500).map(|n| format!("w{n:04} ")).collect();
        let prompt = prompt.trim();
        // The reply's first part starts with the echo; the first other text is its second part.
        world.bot.borrow_mut().error_once_if(
            "sendMessage",
            |body| body["text"].as_str().is_some_and(|t| t.starts_with('w')),
            502,
            "Bad Gateway",
            None,
        );
        world.bot.borrow_mut().push_update(text_update(60, 909, prompt));
        let running = gateway(&world, &[]).await;
        let sent = || world.bot.borrow().texts_sent();
        within(Duration::from_secs(30), "the three parts", || sent().len() >= 4).await;
        // Nothing more comes: a retry that started over would send the first part again.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(world.bot.borrow().scripted_if.is_empty(), "the second part took the 502");
        let texts = sent();
        assert_eq!(
            texts.len(),
            4,
            "three parts and the one refused try: {:?}",
            texts.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(texts[1], texts[2], "the refused part is what was tried again");
        let parts = [&texts[0], &texts[2], &texts[3]];
        assert!(parts.iter().all(|p| p.encode_utf16().count() <= 4096));
        assert_eq!(
            parts.iter().map(|p| p.as_str()).collect::<String>(),
            format!("echo: {prompt}"),
            "each part once, in order"
        );
        assert!(running.metrics.get(Stat::SessionRenderRetries) >= 1);
        assert_eq!(running.metrics.get(Stat::SessionRenderDeadLetters), 0);
        running.stop();
    });
}

#[test]
fn deliveries_are_sent_while_get_updates_is_in_a_409_conflict() {
    run_paused(async {
        let world = world().await;
        let conflict_ends = tokio::time::Instant::now() + Duration::from_secs(60);
        world.bot.borrow_mut().error_until(
            "getUpdates",
            conflict_ends,
            409,
            "Conflict: terminated by other getUpdates request",
        );
        let running = gateway(&world, &[]).await;
        eventually("the conflict reason", || health(&running).1.is_some_and(|e| e.starts_with("conflict:"))).await;
        let ids: Vec<String> = (0..5).map(|n| format!("in-conflict-{n}")).collect();
        for (n, id) in ids.iter().enumerate() {
            world.cloud.enqueue_delivery(
                "telegram",
                id,
                json!({"externalChatId": (900 + n).to_string()}),
                json!({"text": format!("sent despite the conflict {n}")}),
            );
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let all_sent = || ids.iter().all(|id| delivery_status(&world.cloud, id) == "sent");
        // Before the conflict ends: a poller conflict must not hold back sends.
        while !all_sent() {
            assert!(
                tokio::time::Instant::now() < conflict_ends,
                "the deliveries waited for the 409 conflict to end: {:?}",
                ids.iter().map(|id| delivery_status(&world.cloud, id)).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(health(&running).1.is_some_and(|e| e.starts_with("conflict:")), "still in conflict");
        let sent = sent_texts_with_times(&world.bot);
        for n in 0..5 {
            let text = format!("sent despite the conflict {n}");
            let copies: Vec<_> = sent.iter().filter(|(t, _)| *t == text).collect();
            assert_eq!(copies.len(), 1, "{text} sent once");
            assert!(copies[0].1 < conflict_ends);
        }
        let get_updates = world.bot.borrow().call_times("getUpdates");
        assert!(get_updates.len() >= 2 && get_updates.iter().all(|at| *at < conflict_ends), "polling kept conflicting");
        assert_eq!(running.metrics.get(Stat::DeliveryDeadLetters), 0);
        assert_eq!(running.metrics.get(Stat::DeliveryRetries), 0, "none acked failed");
        running.stop();
    });
}

#[test]
fn deliveries_claimed_four_times_before_are_all_sent_by_a_starting_gateway() {
    run_paused(async {
        let world = world().await;
        // A slow getMe keeps the bot "starting" while the deliveries are claimed.
        world.bot.borrow_mut().delay("getMe", Duration::from_secs(5));
        let ids: Vec<String> = (0..20).map(|n| format!("earlier-{n}")).collect();
        for (n, id) in ids.iter().enumerate() {
            world.cloud.enqueue_delivery(
                "telegram",
                id,
                json!({"externalChatId": (700 + n % 4).to_string()}),
                json!({"text": format!("claimed before {n}")}),
            );
        }
        // Four earlier gateways claimed each delivery and crashed; every lease ran out. Cloud's
        // clock stands still meanwhile: a stall of the machine must not expire a 1 s lease early.
        let bindings = vec!["telegram".to_owned()];
        world.cloud.store.borrow().clock.stop();
        for _ in 0..4 {
            let claimed = std::iter::from_fn(|| {
                world.cloud.store.borrow_mut().claim_next_delivery(&bindings, "gateway:crashed", "tok-crashed", 1_000)
            })
            .count();
            assert_eq!(claimed, 20);
            world.cloud.store.borrow().clock.advance(1_001);
        }
        world.cloud.store.borrow().clock.resume();
        assert!(ids.iter().all(|id| world.cloud.delivery("telegram", id).unwrap()["attemptCount"] == 4));

        let running = gateway(&world, &[]).await;
        let all_sent = || ids.iter().all(|id| delivery_status(&world.cloud, id) == "sent");
        within(Duration::from_secs(60), "all 20 sent", || {
            all_sent() || ids.iter().any(|id| delivery_status(&world.cloud, id) == "dead")
        })
        .await;
        let statuses: Vec<Value> = ids.iter().map(|id| delivery_status(&world.cloud, id)).collect();
        assert!(all_sent(), "none dead, none left behind: {statuses:?}");
        let sent = world.bot.borrow().texts_sent();
        for n in 0..20 {
            let text = format!("claimed before {n}");
            assert_eq!(sent.iter().filter(|t| **t == text).count(), 1, "{text} sent exactly once");
        }
        assert_eq!(running.metrics.get(Stat::DeliveryDeadLetters), 0);
        running.stop();
    });
}

#[test]
fn empty_long_polls_are_at_least_a_second_apart() {
    run_paused(async {
        let world = world().await;
        // The fake answers an empty long poll after 100 ms, like an emulator that ignores `timeout`.
        let running = gateway(&world, &[]).await;
        eventually("polling", || world.bot.borrow().calls("getUpdates").len() >= 2).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let times = world.bot.borrow().call_times("getUpdates");
        let gaps: Vec<Duration> = times.windows(2).map(|pair| pair[1] - pair[0]).collect();
        assert!(gaps.iter().all(|gap| *gap >= Duration::from_secs(1)), "getUpdates gaps: {gaps:?}");
        assert!(times.len() <= 13, "{} getUpdates in about 10 s", times.len());
        running.stop();
    });
}

/// How many button messages were sent (refused tries included).
fn keyboards_sent(world: &World) -> usize {
    world.bot.borrow().calls("sendMessage").iter().filter(|b| b.get("reply_markup").is_some()).count()
}

/// The keyboard of the `n`-th button message sent: (its message id, its button ids, its text).
fn keyboard(world: &World, n: usize) -> (i64, Vec<String>, String) {
    let bot = world.bot.borrow();
    let calls = bot.calls("sendMessage");
    let index = calls.iter().enumerate().filter(|(_, b)| b.get("reply_markup").is_some()).nth(n).unwrap().0;
    let ids = calls[index]["reply_markup"]["inline_keyboard"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|b| b["callback_data"].as_str().unwrap().to_owned()))
        .collect();
    (index as i64 + 1, ids, calls[index]["text"].as_str().unwrap().to_owned())
}

#[test]
fn decided_buttons_show_the_outcome_and_a_second_press_is_already_answered() {
    run(async {
        let world = world().await;
        world.bot.borrow_mut().push_update(text_update(40, 808, "please /approve-me"));
        let running = gateway(&world, &[]).await;
        eventually("the keyboard", || keyboards_sent(&world) >= 1).await;
        let (message_id, ids, text) = keyboard(&world, 0);
        assert!(text.contains("Or type: /approve occi_") && text.contains("/deny occi_"), "{text}");
        world.bot.borrow_mut().push_update(callback_update(41, 808, message_id, &ids[0]));
        eventually("the outcome", || !world.bot.borrow().calls("editMessageReplyMarkup").is_empty()).await;
        let edit = world.bot.borrow().calls("editMessageReplyMarkup")[0].clone();
        assert_eq!((edit["chat_id"].clone(), edit["message_id"].clone()), (json!(808), json!(message_id)));
        let outcome = &edit["reply_markup"]["inline_keyboard"];
        assert_eq!(outcome.as_array().unwrap().len(), 1, "the buttons are replaced: {outcome}");
        assert_eq!(outcome[0][0]["text"], "\u{2713} Approved");

        eventually("granted", || world.bot.borrow().texts_sent().iter().any(|t| t.contains("Permission granted")))
            .await;
        // A second press (Deny, or the outcome button) is answered without a Cloud call or a chat message.
        let texts_before = world.bot.borrow().texts_sent().len();
        world.bot.borrow_mut().push_update(callback_update(42, 808, message_id, &ids[1]));
        let outcome_id = outcome[0][0]["callback_data"].as_str().unwrap().to_owned();
        world.bot.borrow_mut().push_update(callback_update(43, 808, message_id, &outcome_id));
        eventually("both answered", || world.bot.borrow().calls("answerCallbackQuery").len() == 3).await;
        let answers = world.bot.borrow().calls("answerCallbackQuery");
        assert_eq!(answers[1], json!({"callback_query_id": "cbq-42", "text": "Already answered: Approved."}));
        assert_eq!(answers[2], json!({"callback_query_id": "cbq-43", "text": "Already answered: Approved."}));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(world.bot.borrow().texts_sent().len(), texts_before, "no chat message");
        assert_eq!(running.metrics.get(Stat::InteractionsResolved), 1);
        running.stop();
    });
}

#[test]
fn without_a_state_directory_an_old_button_never_approves_a_new_request() {
    run(async {
        let world = world().await;
        world.bot.borrow_mut().push_update(text_update(50, 909, "please /approve-me"));
        let first = gateway(&world, &[]).await;
        eventually("the first keyboard", || keyboards_sent(&world) >= 1).await;
        let (old_message, old_ids, old_text) = keyboard(&world, 0);
        first.drain(Duration::from_secs(5)).await;
        first.stop();

        world.bot.borrow_mut().push_update(text_update(51, 909, "again /approve-me"));
        let second = gateway(&world, &[]).await;
        eventually("the second keyboard", || keyboards_sent(&world) == 2).await;
        let (_, new_ids, _) = keyboard(&world, 1);
        assert!(old_ids.iter().all(|id| !new_ids.contains(id)), "{old_ids:?} {new_ids:?}");

        // The old message's Approve, pressed now: expired, with the commands to type.
        let mut press = callback_update(52, 909, old_message, &old_ids[0]);
        press["callback_query"]["message"]["text"] = json!(old_text);
        world.bot.borrow_mut().push_update(press);
        eventually("the expiry notice", || {
            world.bot.borrow().calls("answerCallbackQuery").iter().any(|a| a["callback_query_id"] == "cbq-52")
        })
        .await;
        eventually("the commands", || {
            world
                .bot
                .borrow()
                .texts_sent()
                .iter()
                .any(|t| t.starts_with("This button has expired. Type instead: /approve occi_"))
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(second.metrics.get(Stat::InteractionsResolved), 0, "nothing was approved");
        assert!(!world.bot.borrow().texts_sent().iter().any(|t| t.contains("Permission granted")));
        second.stop();
    });
}

#[test]
fn a_reply_sent_as_plain_text_is_logged_once_a_minute() {
    let captured = support::logs::LogCapture::start();
    run(async {
        let world = world().await;
        let running = gateway(&world, &[]).await;
        eventually("healthy", || health(&running).0).await;
        for n in 0..3 {
            world.bot.borrow_mut().error(
                "sendMessage",
                400,
                "Bad Request: can't parse entities: unexpected end tag",
                None,
            );
            let id = format!("plain-{n}");
            world.cloud.enqueue_delivery("telegram", &id, json!({"externalChatId": "3"}), json!({"text": "a < b"}));
            eventually("sent as plain text", || delivery_status(&world.cloud, &id) == "sent").await;
        }
        running.stop();
    });
    let log = captured.text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("sent as plain text")).collect();
    assert_eq!(lines.len(), 1, "one line for the three fallbacks within a minute:\n{log}");
    assert!(
        lines[0].contains("INFO") && lines[0].contains("provider=telegram") && lines[0].contains("chat=\"3\""),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("reason=Bad Request: can't parse entities"), "{}", lines[0]);
}
