//! The generic webhook against a loopback relay (`support::webhook_receiver`) and the dev Cloud:
//! signed ingress, signed deliveries with retries, the circuit, and the URL policy's DNS pinning
//! through a scripted resolver (no lookup or request ever leaves loopback).

#![cfg(all(feature = "devcloud", feature = "webhook"))]

use crate::support;
use crate::support::smtp_sink;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use async_trait::async_trait;
use open_cowork_gateway::app::Running;
use open_cowork_gateway::devcloud::DevCloud;
use open_cowork_gateway::net::url_policy::{ResolveError, Resolver};
use serde_json::{json, Value};
use support::test_gateway::{dev_cloud, first_session_prompts, quick_agent_options, quiet_factory, start_gateway};
use support::webhook_receiver::{self, signature, Answer, Receiver, SharedReceiver, SECRET};
use support::{run, run_paused};

/// Answers `localhost` and any name from a script (then from `fallback`), counting lookups.
#[derive(Default)]
struct ScriptedResolver {
    answers: RefCell<VecDeque<Vec<IpAddr>>>,
    fallback: Vec<IpAddr>,
    lookups: RefCell<Vec<String>>,
}

#[async_trait(?Send)]
impl Resolver for ScriptedResolver {
    async fn resolve(&self, host: &str, _port: u16) -> Result<Vec<IpAddr>, ResolveError> {
        self.lookups.borrow_mut().push(host.to_owned());
        let answer = self.answers.borrow_mut().pop_front().unwrap_or_else(|| self.fallback.clone());
        if answer.is_empty() {
            Err(ResolveError::NotFound)
        } else {
            Ok(answer)
        }
    }
}

struct World {
    cloud: Rc<DevCloud>,
    cloud_url: String,
    token: String,
    receiver: SharedReceiver,
    receiver_port: u16,
}

async fn world_on(address: &str) -> World {
    let (cloud, seeded, cloud_url) = dev_cloud(quick_agent_options()).await;
    let token = seeded.gateway_token;
    let receiver: SharedReceiver = Rc::new(RefCell::new(Receiver::default()));
    let receiver_port = webhook_receiver::start_on(Rc::clone(&receiver), address).await.port();
    World { cloud, cloud_url, token, receiver, receiver_port }
}

async fn world() -> World {
    world_on("127.0.0.1:0").await
}

async fn gateway(world: &World, extra: &[(&str, &str)], resolver: Rc<ScriptedResolver>) -> Running {
    let url = format!("http://localhost:{}/relay?tenant=t1", world.receiver_port);
    let relay = [
        ("OPEN_COWORK_GATEWAY_WEBHOOK_DELIVERY_URL", url.as_str()),
        ("OPEN_COWORK_GATEWAY_WEBHOOK_SHARED_SECRET", SECRET),
    ];
    let settings = [&relay[..], extra].concat();
    let mut factory = quiet_factory();
    factory.webhook_resolver = resolver;
    start_gateway(&world.cloud_url, &world.token, "wh", &settings, factory).await
}

fn loopback_resolver() -> Rc<ScriptedResolver> {
    Rc::new(ScriptedResolver { fallback: vec!["127.0.0.1".parse().unwrap()], ..ScriptedResolver::default() })
}

fn now_seconds() -> u64 {
    open_cowork_gateway::time::now_ms() / 1000
}

/// Posts `body` to `/webhooks/webhook` with the given signature headers; returns the status.
async fn post(running: &Running, body: &str, headers: &[(&str, String)]) -> u16 {
    let http = open_cowork_gateway::net::https::build_client(None).unwrap();
    let mut request = http::Request::post(format!("http://{}/webhooks/webhook", running.address))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let body = http_body_util::Full::new(bytes::Bytes::from(body.to_owned()));
    http.request(request.body(body).unwrap()).await.unwrap().status().as_u16()
}

fn signed(timestamp: u64, body: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-open-cowork-gateway-webhook-timestamp", timestamp.to_string()),
        ("x-open-cowork-gateway-webhook-signature", signature(&timestamp.to_string(), body.as_bytes())),
    ]
}

fn message(id: Option<&str>, chat: &str, text: &str) -> String {
    let mut body = json!({"target": {"chatId": chat}, "sender": {"userId": "alice"}, "text": text});
    if let Some(id) = id {
        body["id"] = Value::from(id);
    }
    body.to_string()
}

#[test]
fn ingress_checks_signature_window_replay_size_and_payload() {
    run(async {
        let world = world().await;
        let running =
            gateway(&world, &[("OPEN_COWORK_GATEWAY_MAX_REQUEST_BODY_BYTES", "2048")], loopback_resolver()).await;
        eventually("healthy", || running.registry.get("webhook").unwrap().is_healthy()).await;

        let body = message(Some("evt-1"), "chat-a", "hello");
        let now = now_seconds();
        assert_eq!(post(&running, &body, &[]).await, 401, "unsigned");
        assert_eq!(post(&running, &body, &signed(now - 1000, &body)).await, 401, "stale");
        let mut wrong = signed(now, &body);
        wrong[1].1 = signature(&now.to_string(), b"another body");
        assert_eq!(post(&running, &body, &wrong).await, 401, "wrong signature");
        let mut other_key = signed(now, &body);
        other_key[0].1 = "not-a-time".into();
        assert_eq!(post(&running, &body, &other_key).await, 401, "invalid timestamp");

        let valid = signed(now, &body);
        assert_eq!(post(&running, &body, &valid).await, 202);
        assert_eq!(post(&running, &body, &valid).await, 401, "the exact request replayed");
        // The same event id, signed again (a relay's retry): accepted, but one prompt.
        assert_eq!(post(&running, &body, &signed(now + 1, &body)).await, 202);
        eventually("the prompt", || first_session_prompts(&world.cloud, "chat-a") == ["hello"]).await;

        let huge = message(Some("evt-big"), "chat-a", &"x".repeat(4000));
        assert_eq!(post(&running, &huge, &signed(now, &huge)).await, 413, "over the body cap");

        let bad = json!({"target": {"chatId": "chat-a"}, "sender": {}, "text": "x"}).to_string();
        assert_eq!(post(&running, &bad, &signed(now, &bad)).await, 400, "a mapping error is the relay's mistake");

        // Without an id every request is a new event: both reach Cloud.
        let anonymous = message(None, "chat-b", "no id");
        assert_eq!(post(&running, &anonymous, &signed(now, &anonymous)).await, 202);
        assert_eq!(post(&running, &anonymous, &signed(now + 2, &anonymous)).await, 202);
        eventually("both prompts", || first_session_prompts(&world.cloud, "chat-b").len() == 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(first_session_prompts(&world.cloud, "chat-a"), ["hello"], "still one prompt for evt-1");
        running.stop();
    });
}

fn delivery_status(cloud: &DevCloud, id: &str) -> Value {
    cloud.delivery("webhook", id).map(|d| d["status"].clone()).unwrap_or(Value::Null)
}

#[test]
fn deliveries_are_signed_chunked_by_the_dispatcher_and_posted_once_per_chunk() {
    run(async {
        let world = world().await;
        let running = gateway(&world, &[], loopback_resolver()).await;
        eventually("healthy", || running.registry.get("webhook").unwrap().is_healthy()).await;
        world.cloud.enqueue_delivery(
            "webhook",
            "d-short",
            json!({"externalChatId": "team-chat"}),
            json!({"text": "hello"}),
        );
        eventually("sent", || delivery_status(&world.cloud, "d-short") == "sent").await;
        {
            let receiver = world.receiver.borrow();
            let first = &receiver.requests[0];
            assert!(first.signature_ok, "the relay verifies our signature over the exact bytes");
            assert_eq!(first.header("x-open-cowork-gateway-delivery-id"), "d-short");
            assert_eq!(first.header("content-type"), "application/json");
            let raw = String::from_utf8(first.raw.to_vec()).unwrap();
            assert_eq!(
                raw,
                r#"{"deliveryId":"d-short","idempotencyKey":"d-short","provider":"webhook","providerInstanceId":"webhook","providerKind":"webhook","type":"text","target":{"provider":"webhook","providerKind":"webhook","chatId":"team-chat","isDirect":false,"threadId":null,"userId":null,"messageId":null},"text":"hello","options":{"deliveryId":"d-short"}}"#
            );
        }
        let long = "word ".repeat(1000);
        world.cloud.enqueue_delivery(
            "webhook",
            "d-long",
            json!({"externalChatId": "team-chat"}),
            json!({"text": long}),
        );
        eventually("sent", || delivery_status(&world.cloud, "d-long") == "sent").await;
        let receiver = world.receiver.borrow();
        let ids: Vec<&str> =
            receiver.requests[1..].iter().map(|r| r.header("x-open-cowork-gateway-delivery-id")).collect();
        assert_eq!(ids, ["d-long:chunk:1", "d-long:chunk:2"], "the dispatcher's chunks, never chunked again");
        for request in &receiver.requests[1..] {
            assert!(request.signature_ok);
            assert_eq!(request.body["deliveryId"], request.header("x-open-cowork-gateway-delivery-id"));
            assert_eq!(request.body["idempotencyKey"], request.body["deliveryId"]);
            assert!(request.body["text"].as_str().unwrap().encode_utf16().count() <= 4096);
        }
        drop(receiver);
        running.stop();
    });
}

#[test]
fn rate_limits_server_errors_and_timeouts_are_retried_and_client_errors_dead_lettered() {
    run_paused(async {
        let world = world().await;
        let running =
            gateway(&world, &[("OPEN_COWORK_GATEWAY_WEBHOOK_DELIVERY_TIMEOUT_MS", "1000")], loopback_resolver()).await;
        eventually("healthy", || running.registry.get("webhook").unwrap().is_healthy()).await;
        let target = json!({"externalChatId": "c"});

        world.receiver.borrow_mut().script.push_back(Answer::status(429).header("retry-after", "2"));
        world.cloud.enqueue_delivery("webhook", "limited", target.clone(), json!({"text": "a"}));
        eventually("sent after 429", || delivery_status(&world.cloud, "limited") == "sent").await;
        {
            let receiver = world.receiver.borrow();
            let [first, second] = &receiver.requests[..] else { panic!("two requests") };
            assert_eq!(second.at - first.at, Duration::from_secs(2), "Retry-After honoured exactly, no jitter");
            assert_eq!(
                first.header("x-open-cowork-gateway-delivery-id"),
                second.header("x-open-cowork-gateway-delivery-id")
            );
            assert!(first.signature_ok && second.signature_ok, "signed per attempt");
        }

        // One attempt per send: a 503 and a timeout come back to the dispatcher, which acks the
        // delivery `failed` for Cloud to serve again after its backoff.
        world.receiver.borrow_mut().script.push_back(Answer::status(503));
        world.cloud.enqueue_delivery("webhook", "flaky", target.clone(), json!({"text": "b"}));
        retried_then_sent(&world, "flaky").await;
        assert_eq!(world.receiver.borrow().requests.len(), 4);

        world.receiver.borrow_mut().script.push_back(Answer::status(200).delayed(Duration::from_secs(30)));
        world.cloud.enqueue_delivery("webhook", "slow", target.clone(), json!({"text": "c"}));
        retried_then_sent(&world, "slow").await;
        assert_eq!(world.receiver.borrow().requests.len(), 6, "the timed-out attempt, then the retry");

        world.receiver.borrow_mut().script.push_back(Answer::status(404));
        world.cloud.enqueue_delivery("webhook", "gone", target.clone(), json!({"text": "d"}));
        eventually("dead after 404", || delivery_status(&world.cloud, "gone") == "dead").await;
        world.receiver.borrow_mut().script.push_back(Answer::status(302).header("location", "http://127.0.0.1:9/x"));
        world.cloud.enqueue_delivery("webhook", "moved", target.clone(), json!({"text": "e"}));
        eventually("dead after a redirect", || delivery_status(&world.cloud, "moved") == "dead").await;
        assert_eq!(
            world.receiver.borrow().requests.len(),
            8,
            "4xx and 3xx: one request each, never retried or followed"
        );
        running.stop();
    });
}

/// Acks of `id` so far, by status.
fn acks(cloud: &DevCloud, id: &str) -> Vec<String> {
    cloud.records.borrow().acks_of(id).map(|a| a.calls.iter().map(|c| c.status.clone()).collect()).unwrap_or_default()
}

/// Waits for `id` to be acked `failed` once, makes it due on the dev Cloud's clock (its backoff
/// is wall-clock time there, which a paused test does not move), and waits for it to be sent.
async fn retried_then_sent(world: &World, id: &str) {
    eventually("acked failed", || acks(&world.cloud, id).first().is_some_and(|s| s == "failed")).await;
    world.cloud.store.borrow().clock.advance(2_000);
    eventually("sent on the retry", || delivery_status(&world.cloud, id) == "sent").await;
}

/// Relay failures feed the dispatcher's one circuit per channel (the relay has none of its own):
/// five failed sends in a row open it, the channel shows degraded and leaves the delivery
/// subscription, and it half-opens by itself 30 s later.
#[test]
fn the_circuit_opens_shows_as_degraded_and_half_opens_by_itself() {
    run_paused(async {
        let world = world().await;
        let running = gateway(&world, &[], loopback_resolver()).await;
        eventually("healthy", || running.registry.get("webhook").unwrap().is_healthy()).await;
        for _ in 0..5 {
            world.receiver.borrow_mut().script.push_back(Answer::status(500));
        }
        for n in 0..5 {
            let id = format!("f{n}");
            world.cloud.enqueue_delivery("webhook", &id, json!({"externalChatId": "c"}), json!({"text": "1"}));
        }
        let registration = running.registry.get("webhook").unwrap();
        eventually("the circuit opens", || !registration.can_send()).await;
        let problem = registration.health().sending.unwrap_or_default();
        assert!(problem.starts_with("Delivery circuit open after 5 consecutive failed sends"), "{problem}");
        assert_eq!(world.receiver.borrow().requests.len(), 5, "one request per failed send, no retry inside");
        for n in 0..5 {
            assert_eq!(acks(&world.cloud, &format!("f{n}")), ["failed"]);
        }
        eventually("half-open by itself", || running.registry.get("webhook").unwrap().can_send()).await;
        world.cloud.enqueue_delivery("webhook", "after", json!({"externalChatId": "c"}), json!({"text": "3"}));
        eventually("sent after the cooldown", || delivery_status(&world.cloud, "after") == "sent").await;
        assert!(running.registry.get("webhook").unwrap().health().sending.is_none());
        running.stop();
    });
}

/// A relay that keeps answering 429 paces the gateway: the channel's circuit never
/// opens, no attempt is used, and everything goes out once it lets up.
#[test]
fn a_relay_rate_limit_storm_paces_without_opening_the_circuit() {
    run_paused(async {
        let world = world().await;
        let running = gateway(&world, &[], loopback_resolver()).await;
        eventually("healthy", || running.registry.get("webhook").unwrap().is_healthy()).await;
        for _ in 0..8 {
            world.receiver.borrow_mut().script.push_back(Answer::status(429).header("retry-after", "1"));
        }
        for n in 0..4 {
            let id = format!("storm-{n}");
            world.cloud.enqueue_delivery(
                "webhook",
                &id,
                json!({"externalChatId": format!("c{n}")}),
                json!({"text": "x"}),
            );
        }
        let ids: Vec<String> = (0..4).map(|n| format!("storm-{n}")).collect();
        eventually("all sent", || ids.iter().all(|id| delivery_status(&world.cloud, id) == "sent")).await;
        assert!(world.receiver.borrow().script.is_empty(), "all eight 429s were answered");
        assert!(running.registry.get("webhook").unwrap().health().sending.is_none(), "no circuit");
        for id in &ids {
            let acks = world.cloud.records.borrow().acks_of(id).map(|a| a.calls.len()).unwrap_or(0);
            assert_eq!(acks, 1, "{id}: acked once, sent; no attempt used by the 429s");
        }
        running.stop();
    });
}

/// The relay listens on 127.0.0.2 only; the URL names `localhost`. A delivery that arrives proves
/// the connection went to the resolver's checked answer (the system would say 127.0.0.1). Then
/// the name rebinds to a public address: refused before any connection, dead-lettered.
#[test]
fn connections_are_pinned_to_the_checked_answer_and_a_rebinding_is_refused() {
    run(async {
        let world = world_on("127.0.0.2:0").await;
        let resolver = Rc::new(ScriptedResolver::default());
        resolver.answers.borrow_mut().extend([
            vec!["127.0.0.2".parse().unwrap()],
            vec!["93.184.216.34".parse().unwrap()],
            vec!["127.0.0.2".parse().unwrap(), "8.8.8.8".parse().unwrap()],
        ]);
        let running = gateway(&world, &[], Rc::clone(&resolver)).await;
        eventually("healthy", || running.registry.get("webhook").unwrap().is_healthy()).await;
        world.cloud.enqueue_delivery("webhook", "pinned", json!({"externalChatId": "c"}), json!({"text": "1"}));
        eventually("sent", || delivery_status(&world.cloud, "pinned") == "sent").await;
        assert_eq!(world.receiver.borrow().requests.len(), 1);
        world.cloud.enqueue_delivery("webhook", "rebound", json!({"externalChatId": "c"}), json!({"text": "2"}));
        eventually("dead", || delivery_status(&world.cloud, "rebound") == "dead").await;
        let record = world.cloud.delivery("webhook", "rebound").unwrap();
        assert!(record.to_string().contains("localhost resolved to a public address"), "{record}");
        world.cloud.enqueue_delivery("webhook", "mixed", json!({"externalChatId": "c"}), json!({"text": "3"}));
        eventually("dead", || delivery_status(&world.cloud, "mixed") == "dead").await;
        assert_eq!(world.receiver.borrow().requests.len(), 1, "no request after the answers turned bad");
        assert_eq!(*resolver.lookups.borrow(), ["localhost", "localhost", "localhost"], "one lookup per attempt");
        running.stop();
    });
}

/// A name (not the development exception) that resolves into a private range is refused without
/// a request and dead-lettered, not retried.
#[test]
fn private_answers_need_the_explicit_switch() {
    run(async {
        let world = world().await;
        let resolver =
            Rc::new(ScriptedResolver { fallback: vec!["127.0.0.1".parse().unwrap()], ..ScriptedResolver::default() });
        let url = format!("https://relay.example.com:{}/in", world.receiver_port);
        let strict = gateway(&world, &[("OPEN_COWORK_GATEWAY_WEBHOOK_DELIVERY_URL", &url)], Rc::clone(&resolver)).await;
        eventually("healthy", || strict.registry.get("webhook").unwrap().is_healthy()).await;
        world.cloud.enqueue_delivery("webhook", "private", json!({"externalChatId": "c"}), json!({"text": "1"}));
        eventually("dead", || delivery_status(&world.cloud, "private") == "dead").await;
        let record = world.cloud.delivery("webhook", "private").unwrap();
        assert!(record.to_string().contains("resolved to a private or reserved address"), "{record}");
        assert!(world.receiver.borrow().requests.is_empty());
        strict.stop();
    });
}

/// Every operation the renderer can call goes out as one signed POST with the delivery envelope and
/// its own fields, in order; operations without options get a fresh delivery id.
#[test]
fn every_operation_has_its_envelope_and_fields() {
    run(async {
        let world = world().await;
        let running = gateway(&world, &[], loopback_resolver()).await;
        eventually("healthy", || running.registry.get("webhook").unwrap().is_healthy()).await;
        let channel = running.registry.get("webhook").unwrap().channel().unwrap();
        let target = open_cowork_gateway::channel::ChannelTarget {
            provider: "webhook".into(),
            provider_kind: "webhook".into(),
            chat_id: "team-chat".into(),
            thread_id: Some("roadmap".into()),
            ..Default::default()
        };
        let button = |label: &str, token: &str, style: &'static str| open_cowork_gateway::channel::Button {
            label: label.into(),
            token: token.into(),
            style,
        };
        let sent = channel
            .send_buttons(
                &target,
                "Approve?",
                &[vec![button("Approve", "apv:p1", "")], vec![button("Deny", "den:p1", "danger")]],
            )
            .await
            .unwrap();
        assert_eq!(sent.message_id, "relay-1", "the relay's messageId");
        channel.edit_text(&target, "relay-1", "edited").await.unwrap();
        channel.send_file(&target, "report.txt", b"payload").await.unwrap();
        channel.answer_interaction("interaction-1", "ok").await.unwrap();
        let foreign = open_cowork_gateway::channel::ChannelTarget { provider: "telegram".into(), ..target.clone() };
        let refused = channel.send_text(&foreign, "x", &Default::default()).await.unwrap_err();
        assert_eq!(refused.message, "Webhook bridge webhook cannot deliver target for provider telegram");

        let receiver = world.receiver.borrow();
        let bodies: Vec<String> =
            receiver.requests.iter().map(|r| String::from_utf8(r.raw.to_vec()).unwrap()).collect();
        assert_eq!(bodies.len(), 4, "the refused target made no request");
        assert!(receiver.requests.iter().all(|r| r.signature_ok));
        let ids: Vec<&str> = receiver.requests.iter().map(|r| r.header("x-open-cowork-gateway-delivery-id")).collect();
        assert!(ids.iter().all(|id| id.len() == 36) && ids[0] != ids[1], "fresh ids: {ids:?}");
        let envelope = |id: &str| {
            format!(
                r#"{{"deliveryId":"{id}","idempotencyKey":"{id}","provider":"webhook","providerInstanceId":"webhook","providerKind":"webhook","#
            )
        };
        let target_json = r#""target":{"provider":"webhook","providerKind":"webhook","chatId":"team-chat","isDirect":false,"threadId":"roadmap","userId":null,"messageId":null}"#;
        // Buttons carry the gateway's short ids, never the Cloud token.
        let sent: Value = serde_json::from_str(&bodies[0]).unwrap();
        let short = |row: usize| sent["buttons"][row][0]["token"].as_str().unwrap().to_owned();
        assert!(short(0).starts_with("b:") && short(1).starts_with("b:") && short(0) != short(1), "{sent}");
        assert_eq!(
            bodies[0],
            format!(
                r#"{}"type":"buttons",{target_json},"text":"Approve?\n\nOr type: /approve p1 · /deny p1","buttons":[[{{"label":"Approve","token":"{}"}}],[{{"label":"Deny","token":"{}","style":"danger"}}]]}}"#,
                envelope(ids[0]),
                short(0),
                short(1)
            )
        );
        assert_eq!(
            bodies[1],
            format!(r#"{}"type":"edit",{target_json},"messageId":"relay-1","text":"edited"}}"#, envelope(ids[1]))
        );
        assert_eq!(
            bodies[2],
            format!(
                r#"{}"type":"file",{target_json},"file":{{"filename":"report.txt","dataBase64":"cGF5bG9hZA=="}}}}"#,
                envelope(ids[2])
            )
        );
        assert_eq!(
            bodies[3],
            format!(r#"{}"type":"answer_interaction","interactionId":"interaction-1","text":"ok"}}"#, envelope(ids[3]))
        );
        drop(receiver);
        running.stop();
    });
}

/// [`support::eventually_within`] 30 seconds: these end-to-end runs include retry schedules.
async fn eventually(what: &str, condition: impl FnMut() -> bool) {
    support::eventually_within(Duration::from_secs(30), what, condition).await;
}

/// A relay gets back only what it gave: no thread when the chat has none (the binding names the
/// chat as its thread), no reply-to id of the gateway's previous message; and a press carrying
/// the full Cloud token is accepted.
#[test]
fn relay_targets_carry_only_what_was_given_and_full_tokens_are_accepted() {
    run(async {
        let world = world().await;
        let running = gateway(&world, &[], loopback_resolver()).await;
        eventually("healthy", || running.registry.get("webhook").unwrap().is_healthy()).await;
        let channel = running.registry.get("webhook").unwrap().channel().unwrap();
        let target = open_cowork_gateway::channel::ChannelTarget {
            provider: "webhook".into(),
            provider_kind: "webhook".into(),
            chat_id: "team-chat".into(),
            thread_id: Some("team-chat".into()),
            message_id: Some("relay-previous".into()),
            ..Default::default()
        };
        channel.send_text(&target, "plain", &Default::default()).await.unwrap();
        let sent: Value = serde_json::from_slice(&world.receiver.borrow().requests[0].raw).unwrap();
        assert_eq!(sent["target"]["threadId"], Value::Null, "{sent}");
        assert_eq!(sent["target"]["messageId"], Value::Null, "{sent}");

        let token = format!("den:occi_{}_{}", "i".repeat(40), "s".repeat(43));
        let mut press: Value = serde_json::from_str(&message(Some("press-1"), "team-chat", "")).unwrap();
        press["interaction"] = json!({"id": "press-1", "token": token});
        let body = press.to_string();
        let status = post(&running, &body, &signed(now_seconds(), &body)).await;
        assert_ne!(status, 400, "a full-length token is not a payload error");
        running.stop();
    });
}

/// The bodies the relay received, parsed.
fn received(world: &World) -> Vec<Value> {
    world.receiver.borrow().requests.iter().map(|r| serde_json::from_slice(&r.raw).unwrap()).collect()
}

/// A bridge shows approvals as buttons (short ids standing for the ~90-byte Cloud token); a press
/// resolves the request, the message then shows the outcome instead of its buttons, and a second
/// press is answered "already answered" without another decision.
#[test]
fn bridges_get_buttons_that_settle_after_a_decision() {
    run(async {
        let world = world().await;
        let running = gateway(&world, &[], loopback_resolver()).await;
        eventually("healthy", || running.registry.get("webhook").unwrap().is_healthy()).await;
        let body = message(Some("ask-1"), "chat-b", "please /approve-me");
        assert_eq!(post(&running, &body, &signed(now_seconds(), &body)).await, 202);
        eventually("the buttons", || received(&world).iter().any(|b| b["type"] == "buttons")).await;
        let buttons = received(&world).into_iter().find(|b| b["type"] == "buttons").unwrap();
        // Buttons, not the text fallback: the commands only stand under them, for when a button
        // has expired (the decided message is edited back to the text without them).
        assert!(!received(&world)
            .iter()
            .any(|b| b["type"] == "text" && b["text"].as_str().is_some_and(|t| t.contains("/approve occi_"))));
        assert!(buttons["text"].as_str().unwrap().contains("\n\nOr type: /approve "), "{buttons}");
        let approve = buttons["buttons"][0][0]["token"].as_str().unwrap().to_owned();
        let deny = buttons["buttons"][0][1]["token"].as_str().unwrap().to_owned();
        assert!(approve.len() <= 64 && approve.starts_with("b:"), "{buttons}");

        let press = |id: &str, token: &str| {
            let mut press: Value = serde_json::from_str(&message(Some(id), "chat-b", "")).unwrap();
            press["interaction"] = json!({"id": id, "token": token});
            press.to_string()
        };
        let first = press("press-1", &approve);
        assert_eq!(post(&running, &first, &signed(now_seconds(), &first)).await, 202);
        eventually("granted", || {
            received(&world).iter().any(|b| b["text"].as_str().is_some_and(|t| t.contains("Permission granted")))
        })
        .await;
        eventually("the outcome edit", || received(&world).iter().any(|b| b["type"] == "edit")).await;
        let edit = received(&world).into_iter().find(|b| b["type"] == "edit").unwrap();
        assert_eq!(edit["messageId"], buttons_message_id(&world));
        assert!(edit["text"].as_str().unwrap().ends_with("\n\n\u{2713} Approved"), "{edit}");
        assert!(!edit["text"].as_str().unwrap().contains("Or type:"), "{edit}");

        let second = press("press-2", &deny);
        assert_eq!(post(&running, &second, &signed(now_seconds(), &second)).await, 202);
        eventually("the notice", || {
            received(&world).iter().any(|b| b["type"] == "answer_interaction" && b["interactionId"] == "press-2")
        })
        .await;
        let notice = received(&world).into_iter().find(|b| b["interactionId"] == "press-2").unwrap();
        assert_eq!(notice["text"], "Already answered: Approved.");
        assert_eq!(running.metrics.get(open_cowork_gateway::metrics::Stat::InteractionsResolved), 1);
        running.stop();
    });
}

/// The relay's message id of the (first) button message: the receiver numbers its answers.
fn buttons_message_id(world: &World) -> Value {
    let index = received(world).iter().position(|b| b["type"] == "buttons").unwrap();
    json!(format!("relay-{}", index + 1))
}

/// A relay behind a private CA: refused as a TLS failure (dead-lettered at once, not retried as a
/// network error) until `OPEN_COWORK_GATEWAY_CA_FILE` names the CA, then reached.
#[test]
fn delivery_urls_trust_the_configured_ca_file_and_tls_failures_say_so() {
    run(async {
        let world = world().await;
        let tls_port =
            webhook_receiver::start_tls(Rc::clone(&world.receiver), smtp_sink::test_tls_config()).await.port();
        let url = format!("https://localhost:{tls_port}/relay");
        let untrusted =
            gateway(&world, &[("OPEN_COWORK_GATEWAY_WEBHOOK_DELIVERY_URL", &url)], loopback_resolver()).await;
        eventually("healthy", || untrusted.registry.get("webhook").unwrap().is_healthy()).await;
        world.cloud.enqueue_delivery("webhook", "untrusted", json!({"externalChatId": "c"}), json!({"text": "1"}));
        eventually("dead", || delivery_status(&world.cloud, "untrusted") == "dead").await;
        let record = world.cloud.delivery("webhook", "untrusted").unwrap();
        assert!(record["lastError"].as_str().unwrap().starts_with("Webhook delivery TLS failure: "), "{record}");
        assert_eq!(record["attemptCount"], 1, "a certificate problem is not retried: {record}");
        assert!(world.receiver.borrow().requests.is_empty());
        untrusted.stop();

        // A fresh dev Cloud and relay: the stopped gateway's delivery stream is not reused.
        let world = self::world().await;
        let tls_port =
            webhook_receiver::start_tls(Rc::clone(&world.receiver), smtp_sink::test_tls_config()).await.port();
        let url = format!("https://localhost:{tls_port}/relay");
        let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/email/ca.pem");
        let trusted = gateway(
            &world,
            &[
                ("OPEN_COWORK_GATEWAY_WEBHOOK_DELIVERY_URL", &url),
                ("OPEN_COWORK_GATEWAY_CA_FILE", ca.to_str().unwrap()),
            ],
            loopback_resolver(),
        )
        .await;
        eventually("healthy", || trusted.registry.get("webhook").unwrap().is_healthy()).await;
        world.cloud.enqueue_delivery("webhook", "trusted", json!({"externalChatId": "c"}), json!({"text": "2"}));
        eventually("sent", || delivery_status(&world.cloud, "trusted") == "sent").await;
        assert_eq!(world.receiver.borrow().requests.len(), 1);
        assert!(world.receiver.borrow().requests[0].signature_ok);
        trusted.stop();
    });
}
