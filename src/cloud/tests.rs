//! The Cloud client and its two streams against the in-process dev Cloud, over loopback HTTP:
//! every call and its error statuses, token and grant rejections, both streams with resume,
//! reconnect, cuts, `snapshot.required` and lease expiry.

use std::rc::Rc;
use std::time::Duration;

use crate::cloud::client::*;
use crate::cloud::error::CloudErrorKind;
use crate::cloud::streams::{
    follow_deliveries, follow_session_events, CloudStatus, CloudStatusReporter, DeliveryStreamOptions,
    SessionStreamItem, StreamContext,
};
use crate::cloud::types::{BoundSession, CursorUpdate};
use crate::config::Secret;
use crate::devcloud::store::Artifact;
use crate::devcloud::{DevCloud, DevCloudOptions, Seeded};
use crate::net::https::build_client;
use crate::providers::KINDS;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::LocalSet;

struct Harness {
    cloud: Rc<DevCloud>,
    seeded: Seeded,
    base_url: String,
    client: CloudClient,
}

fn fast_options() -> DevCloudOptions {
    DevCloudOptions {
        poll_interval: Duration::from_millis(20),
        keep_alive: Duration::from_millis(50),
        agent_delay: Duration::from_millis(1),
        ..DevCloudOptions::default()
    }
}

async fn harness(options: DevCloudOptions) -> Harness {
    let cloud = DevCloud::new(options);
    let seeded = cloud.seed();
    let address = cloud.start("127.0.0.1", 0).await.unwrap();
    let base_url = format!("http://{address}");
    let client = client_for(&base_url, &seeded.gateway_token);
    Harness { cloud, seeded, base_url, client }
}

fn client_for(base_url: &str, token: &str) -> CloudClient {
    CloudClient::new(build_client(None).unwrap(), base_url, Secret::new(token), Duration::from_secs(10))
}

fn run<F: std::future::Future<Output = ()>>(test: F) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    LocalSet::new().block_on(&runtime, test);
}

fn identity(user: &str) -> ResolveIdentity {
    ResolveIdentity {
        provider: "cli".into(),
        external_user_id: user.into(),
        channel_binding_id: "fake-binding".into(),
        external_workspace_id: Some(None),
        metadata: json!({"username": user, "displayName": null}),
    }
}

fn bind(chat: &str, user: &str) -> BindSession {
    BindSession {
        channel_binding_id: "fake-binding".into(),
        provider: "cli".into(),
        external_chat_id: chat.into(),
        external_thread_id: chat.into(),
        identity_id: None,
        external_user_id: Some(user.into()),
        external_workspace_id: None,
        title: Some("hello".into()),
    }
}

fn claim(event: &str) -> ClaimProviderEvent {
    ClaimProviderEvent {
        provider: "cli".into(),
        provider_instance_id: "fake".into(),
        channel_binding_id: "fake-binding".into(),
        external_workspace_id: Some(None),
        provider_event_id: event.into(),
        event_type: "message",
        claimed_by: "gateway:test".into(),
        ttl_ms: 300_000,
        metadata: json!({"providerKind": "cli"}),
    }
}

fn prompt(binding: &str, text: &str, key: &str) -> PromptInput {
    PromptInput {
        binding_id: binding.into(),
        text: text.into(),
        agent: None,
        idempotency_key: key.into(),
        identity_id: None,
        provider: "cli".into(),
        external_workspace_id: Some(None),
        external_user_id: "u1".into(),
    }
}

/// What a stream follower reports to, with the drain that stops it.
struct Streams {
    context: StreamContext,
    status: tokio::sync::watch::Receiver<CloudStatus>,
    shutdown: crate::shutdown::Shutdown,
}

fn gateway_for(_base_url: &str, _token: &str) -> Rc<Streams> {
    let config = crate::config::resolve(
        &json!({}),
        &crate::config::Env::from_pairs([
            ("OPEN_COWORK_CLOUD_BASE_URL", "http://127.0.0.1:1"),
            ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", "occ_a_b"),
            ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", "admin-token-for-tests"),
            ("OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER", "true"),
        ]),
        KINDS,
    )
    .unwrap();
    let shutdown = crate::shutdown::Shutdown::new();
    let (status, receiver) = CloudStatusReporter::new("not connected yet");
    let context = StreamContext {
        metrics: Rc::new(crate::metrics::Metrics::new(&config)),
        drain: shutdown.signal(),
        status,
        warnings: Rc::new(crate::logging::WarnLimiter::new(Duration::from_secs(60))),
    };
    Rc::new(Streams { context, status: receiver, shutdown })
}

fn delivery_options() -> DeliveryStreamOptions {
    DeliveryStreamOptions::new("gateway:test".into())
}

/// The bindings the delivery stream claims for: the fake provider's, for the whole test.
fn fake_binding() -> tokio::sync::watch::Receiver<Vec<smol_str::SmolStr>> {
    let (sender, receiver) = tokio::sync::watch::channel(vec![smol_str::SmolStr::new("fake-binding")]);
    std::mem::forget(sender);
    receiver
}

/// Reads session stream items until `done` says so, with a generous timeout.
async fn collect_until(
    rx: &mut mpsc::Receiver<SessionStreamItem>,
    mut done: impl FnMut(&[SessionStreamItem]) -> bool,
) -> Vec<SessionStreamItem> {
    let mut items = Vec::new();
    while !done(&items) {
        let item = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("stream item in time")
            .expect("stream open");
        items.push(item);
    }
    items
}

fn sequences(items: &[SessionStreamItem]) -> Vec<u64> {
    items.iter().filter_map(|i| if let SessionStreamItem::Event(e) = i { Some(e.sequence) } else { None }).collect()
}

#[test]
fn identity_session_prompt_claims_cursor_interactions_and_artifacts() {
    run(async {
        let h = harness(fast_options()).await;
        let bound = identity_and_session(&h.client).await;
        claim_prompt_and_complete(&h, &bound).await;
        session_events_and_cursor(&h.client, &bound).await;
        interactions(&h.client, &bound).await;
        artifacts(&h, &bound).await;
    });
}

/// Identities resolve once; a chat binds to one session, found again by its thread.
async fn identity_and_session(client: &CloudClient) -> BoundSession {
    let identity_record = client.resolve_identity(&identity("u1")).await.unwrap();
    assert!(identity_record.is_active(), "dev mode activates new identities");
    assert_eq!(
        client.resolve_identity(&identity("u1")).await.unwrap().identity_id,
        identity_record.identity_id,
        "idempotent"
    );

    let bound = client.bind_session(&bind("chat-1", "u1")).await.unwrap();
    assert_eq!(
        client.bind_session(&bind("chat-1", "u1")).await.unwrap().binding.binding_id,
        bound.binding.binding_id
    );
    let found = client.find_session_by_thread("cli", None, "chat-1", "chat-1").await.unwrap().unwrap();
    assert_eq!(found.binding.binding_id, bound.binding.binding_id);
    assert!(client.find_session_by_thread("cli", None, "nope", "nope").await.unwrap().is_none());
    assert_eq!(client.get_session(&bound.binding.binding_id).await.unwrap().projection.unwrap().sequence, 1);
    bound
}

/// A provider event is claimed once, prompted once per idempotency key, and stays a duplicate
/// once processed.
async fn claim_prompt_and_complete(h: &Harness, bound: &BoundSession) {
    let client = &h.client;
    let claimed = client.claim_provider_event(&claim("evt-1")).await.unwrap();
    assert!(claimed.claimed && !claimed.duplicate);
    assert!(claimed.event.event_id.starts_with("channel_provider_event_"));
    let duplicate = client.claim_provider_event(&claim("evt-1")).await.unwrap();
    assert!(!duplicate.claimed && duplicate.duplicate, "a live lease is a duplicate");

    let accepted =
        client.prompt(&prompt(&bound.binding.binding_id, "hello", &claimed.event.event_id)).await.unwrap();
    let command_id = accepted.command["commandId"].clone();
    let replay =
        client.prompt(&prompt(&bound.binding.binding_id, "hello", &claimed.event.event_id)).await.unwrap();
    assert_eq!(replay.command["commandId"], command_id, "same idempotency key, same command");
    let changed = client
        .prompt(&prompt(&bound.binding.binding_id, "different", &claimed.event.event_id))
        .await
        .unwrap_err();
    assert_eq!((changed.status, changed.kind), (Some(500), CloudErrorKind::Server));
    assert_eq!(h.cloud.prompts(&bound.binding.session_id), ["hello"]);

    let complete = CompleteProviderEvent {
        claimed_by: "gateway:test".into(),
        status: "processed",
        channel_binding_id: "fake-binding".into(),
        retryable: None,
        last_error: None,
    };
    assert_eq!(
        client.complete_provider_event(&claimed.event.event_id, &complete).await.unwrap().status,
        "processed"
    );
    let again = client.complete_provider_event(&claimed.event.event_id, &complete).await.unwrap_err();
    assert_eq!((again.status, again.message.as_str()), (Some(404), "Provider event claim was not found."));
    assert!(
        client.claim_provider_event(&claim("evt-1")).await.unwrap().duplicate,
        "processed stays a duplicate, also after a restart"
    );
}

/// The session's events stream up to `session.idle`; the cursor only moves forward.
async fn session_events_and_cursor(client: &CloudClient, bound: &BoundSession) {
    let mut stream = client.open_session_events(&bound.binding.binding_id, 0).await.unwrap();
    let mut seen = Vec::new();
    while !seen.iter().any(|(t, _): &(String, Value)| t == "session.idle") {
        let frame =
            tokio::time::timeout(Duration::from_secs(10), stream.next_event()).await.unwrap().unwrap().unwrap();
        let data: Value = serde_json::from_str(&frame.data).unwrap();
        assert_eq!(frame.event.as_deref(), data["type"].as_str());
        seen.push((data["type"].as_str().unwrap().to_owned(), data));
    }
    let echo = seen.iter().find(|(t, _)| t == "assistant.message").unwrap();
    assert_eq!(echo.1["payload"]["content"], "echo: hello");
    let last = seen.last().unwrap().1["sequence"].as_u64().unwrap();

    match client.update_cursor(&bound.binding.binding_id, last, 0, Some("m-5")).await.unwrap() {
        CursorUpdate::Updated(binding) => {
            assert_eq!(
                (binding.last_event_sequence, binding.last_chat_message_id.as_deref()),
                (last, Some("m-5"))
            )
        }
        other => panic!("{other:?}"),
    }
    match client.update_cursor(&bound.binding.binding_id, 1, 0, None).await.unwrap() {
        CursorUpdate::Stale(binding) => assert_eq!(binding.last_event_sequence, last),
        other => panic!("{other:?}"),
    }
}

/// An interaction is created once, resolved once and only from its own chat.
async fn interactions(client: &CloudClient, bound: &BoundSession) {
    let create = CreateInteraction {
        agent_id: "dev-agent".into(),
        session_id: bound.binding.session_id.clone(),
        session_binding_id: bound.binding.binding_id.clone(),
        provider: "cli".into(),
        kind: "permission",
        target_id: "perm-1".into(),
        interaction_id: "gw_permission_test1".into(),
    };
    let issued = client.create_interaction(&create).await.unwrap();
    assert!(issued.plaintext_token.starts_with(&format!("occi_{}_", issued.interaction.interaction_id)));
    let resolve_input = ResolveInteraction {
        token: issued.plaintext_token.clone(),
        provider: "cli".into(),
        external_workspace_id: Some(None),
        external_user_id: "u1".into(),
        external_chat_id: "chat-1".into(),
        external_interaction_id: None,
        response: Some(json!({"allowed": true})),
        answers: None,
        reject: None,
    };
    let wrong_chat = ResolveInteraction { external_chat_id: "other-chat".into(), ..resolve_input.clone() };
    assert_eq!(
        client.resolve_interaction(&wrong_chat).await.unwrap_err().status,
        Some(404),
        "same-chat scoping"
    );
    let resolved = client.resolve_interaction(&resolve_input).await.unwrap();
    assert_eq!(resolved.interaction.status, "used");
    assert_eq!(resolved.command["kind"], "permission.respond");
    let twice = client.resolve_interaction(&resolve_input).await.unwrap_err();
    assert_eq!(twice.message, "Channel interaction was not found or is no longer pending.");
    assert_eq!(
        client.create_interaction(&create).await.unwrap_err().status,
        Some(500),
        "an interaction id is used once"
    );
}

/// An artifact reads back as a data URL; a missing one is named.
async fn artifacts(h: &Harness, bound: &BoundSession) {
    let client = &h.client;
    h.cloud.store.borrow_mut().artifacts.push(Artifact {
        artifact_id: "art-1".into(),
        session_id: bound.binding.session_id.to_string(),
        filename: "report.txt".into(),
        content_type: Some("text/plain".into()),
        data: b"hello".to_vec(),
    });
    let artifact = client.read_artifact(&bound.binding.binding_id, "art-1").await.unwrap();
    assert_eq!(
        (artifact.mime.as_str(), artifact.url.as_str(), artifact.filename.as_str()),
        ("text/plain", "data:text/plain;base64,aGVsbG8=", "report.txt")
    );
    assert_eq!(
        client.read_artifact(&bound.binding.binding_id, "missing").await.unwrap_err().message,
        "Cloud artifact was not found."
    );
    assert_eq!(
        client.artifact_url("b 1", "a/1"),
        format!("{}/api/channels/sessions/b%201/artifacts/a%2F1", h.base_url)
    );
}

#[test]
fn tokens_grants_and_error_statuses() {
    run(async {
        let h = harness(DevCloudOptions { auto_activate_identities: false, ..fast_options() }).await;
        let unknown = client_for(&h.base_url, "occ_tok_nope_nope");
        let error = unknown.resolve_identity(&identity("u1")).await.unwrap_err();
        assert_eq!(
            (error.status, error.kind, error.message.as_str()),
            (Some(401), CloudErrorKind::Unauthorized, "Cloud API token is invalid or expired.")
        );
        assert!(error.is_auth() && !error.is_retryable());

        let narrow = h.cloud.store.borrow_mut().issue_token(vec!["gateway".into()], vec!["slack".into()]);
        let narrow_client = client_for(&h.base_url, &narrow.plaintext);
        let denied = narrow_client.claim_provider_event(&claim("evt-x")).await.unwrap_err();
        assert_eq!(
            (denied.status, denied.policy_code.as_deref()),
            (Some(403), Some("channels.binding_scope_required"))
        );
        let stream_denied =
            narrow_client.open_delivery_stream("gateway:x", 120_000, &["fake-binding".into()]).await.err().unwrap();
        assert_eq!(stream_denied.status, Some(403), "an ungranted binding is refused before the stream opens");

        // A gateway-created identity is pending: binding is refused until an admin promotes it.
        let pending = h.client.resolve_identity(&identity("new-user")).await.unwrap();
        assert_eq!((pending.status.as_str(), pending.role.as_str()), ("pending", "viewer"));
        let refused = h.client.bind_session(&bind("chat-p", "new-user")).await.unwrap_err();
        assert_eq!(
            (refused.status, refused.message.as_str()),
            (Some(403), "Channel actor identity is not authorized for this channel session.")
        );

        let missing_fields = ClaimProviderEvent { provider_event_id: String::new(), ..claim("") };
        assert_eq!(h.client.claim_provider_event(&missing_fields).await.unwrap_err().status, Some(400));

        h.cloud.faults.borrow_mut().fail_next("claim", 1, 429, Some(1_234));
        let limited = h.client.claim_provider_event(&claim("evt-2")).await.unwrap_err();
        assert_eq!(
            (limited.kind, limited.retry_after),
            (CloudErrorKind::RateLimited, Some(Duration::from_millis(1_234)))
        );
        h.cloud.faults.borrow_mut().fail_next("claim", 1, 503, None);
        assert!(h.client.claim_provider_event(&claim("evt-2")).await.unwrap_err().is_retryable());
        assert!(h.client.claim_provider_event(&claim("evt-2")).await.unwrap().claimed, "the fault was used up");

        // Unknown routes and methods are 403, not 404.
        let raw = raw_get(&h.base_url, "/api/nope", &h.seeded.gateway_token).await;
        assert_eq!(raw.0, 403);
        assert_eq!(raw.1["verdict"]["policyCode"], "authorization.action_unknown");
        assert_eq!(
            raw_get(&h.base_url, "/api/channels/provider-events/claim", &h.seeded.gateway_token).await.0,
            403
        );
        assert_eq!(raw_get(&h.base_url, "/api/channels/deliveries", "").await.0, 401);
    });
}

async fn raw_get(base_url: &str, path: &str, token: &str) -> (u16, Value) {
    let http = build_client(None).unwrap();
    let mut request = http::Request::get(format!("{base_url}{path}"));
    if !token.is_empty() {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = http.request(request.body(http_body_util::Full::new(Bytes::new())).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[test]
fn session_stream_resumes_after_clean_close_and_cut_without_gaps_or_duplicates() {
    run(async {
        let h = harness(DevCloudOptions { sse_lifetime: Duration::from_millis(300), ..fast_options() }).await;
        h.client.resolve_identity(&identity("u1")).await.unwrap();
        let bound = h.client.bind_session(&bind("chat-s", "u1")).await.unwrap();
        let gateway = gateway_for(&h.base_url, &h.seeded.gateway_token);
        let (tx, mut rx) = mpsc::channel(8);
        let follower = {
            let gateway = Rc::clone(&gateway);
            let client = client_for(&h.base_url, &h.seeded.gateway_token);
            let binding = bound.binding.binding_id.clone();
            tokio::task::spawn_local(async move {
                follow_session_events(&gateway.context, &client, binding, 0, tx).await
            })
        };
        let session = bound.binding.session_id.to_string();
        for n in 0..5 {
            h.cloud.append_session_event(&session, "assistant.message", json!({"content": format!("part {n}")}));
        }
        let first = collect_until(&mut rx, |items| sequences(items).last() == Some(&6)).await;
        assert_eq!(sequences(&first), [1, 2, 3, 4, 5, 6]);

        // The stream lifetime (300 ms) closes it cleanly; events appended meanwhile still arrive once.
        tokio::time::sleep(Duration::from_millis(400)).await;
        h.cloud.append_session_event(&session, "assistant.message", json!({"content": "after close"}));
        // Then a cut in the middle of the second frame of the next connection.
        h.cloud.faults.borrow_mut().cut_session_stream_after = Some(1);
        for n in 0..4 {
            h.cloud.append_session_event(
                &session,
                "tool.call",
                json!({"id": format!("t{n}"), "status": "running", "name": "x"}),
            );
        }
        let rest = collect_until(&mut rx, |items| sequences(items).last() == Some(&11)).await;
        assert_eq!(sequences(&rest), [7, 8, 9, 10, 11], "no gap, no duplicate");
        assert!(
            gateway
                .context
                .metrics
                .stream_count(crate::metrics::StreamKind::Session, crate::metrics::StreamStat::Reconnects)
                >= 2
        );
        gateway.shutdown.begin_drain();
        tokio::time::timeout(Duration::from_secs(5), follower).await.unwrap().unwrap();
    });
}

#[test]
fn snapshot_required_jumps_the_cursor() {
    run(async {
        let h = harness(fast_options()).await;
        h.client.resolve_identity(&identity("u1")).await.unwrap();
        let bound = h.client.bind_session(&bind("chat-g", "u1")).await.unwrap();
        let session = bound.binding.session_id.to_string();
        for n in 0..6 {
            h.cloud.append_session_event(&session, "assistant.message", json!({"content": n}));
        }
        h.cloud.prune_session_events(&session, 4);
        let gateway = gateway_for(&h.base_url, &h.seeded.gateway_token);
        let (tx, mut rx) = mpsc::channel(8);
        let client = client_for(&h.base_url, &h.seeded.gateway_token);
        let binding = bound.binding.binding_id.clone();
        let follower = {
            let gateway = Rc::clone(&gateway);
            tokio::task::spawn_local(async move {
                follow_session_events(&gateway.context, &client, binding, 2, tx).await
            })
        };
        let items = collect_until(&mut rx, |items| !items.is_empty()).await;
        assert_eq!(
            items[0],
            SessionStreamItem::CursorJump(7),
            "the snapshot's projection is ahead of the retained events"
        );
        assert!(sequences(&items).iter().all(|s| *s > 7), "nothing at or below the jump is forwarded");
        h.cloud.append_session_event(&session, "assistant.message", json!({"content": "next"}));
        let next = collect_until(&mut rx, |items| !sequences(items).is_empty()).await;
        assert_eq!(sequences(&next), [8]);
        gateway.shutdown.begin_drain();
        tokio::time::timeout(Duration::from_secs(5), follower).await.unwrap().unwrap();
    });
}

async fn next(rx: &mut Deliveries) -> crate::cloud::DeliveryRecord {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery in time")
        .expect("stream open")
}

#[test]
fn delivery_stream_reconnects_and_reserves_unacked_leases() {
    run(async {
        let h = harness(fast_options()).await;
        let gateway = gateway_for(&h.base_url, &h.seeded.gateway_token);
        let (tx, mut rx) = mpsc::channel(8);
        let follower = {
            let gateway = Rc::clone(&gateway);
            let client = client_for(&h.base_url, &h.seeded.gateway_token);
            tokio::task::spawn_local(async move {
                follow_deliveries(&gateway.context, &client, delivery_options(), fake_binding(), tx).await
            })
        };
        a_lease_not_acked_is_served_again(&h, &gateway, &mut rx).await;
        cuts_and_in_band_errors_lose_nothing(&h, &gateway, &mut rx).await;
        operator_calls_and_the_drain(&h, &gateway, follower).await;
    });
}

type Deliveries = mpsc::Receiver<crate::cloud::DeliveryRecord>;

/// A delivery not acked is served again when its lease expires; an ack is accepted once.
async fn a_lease_not_acked_is_served_again(h: &Harness, gateway: &Streams, rx: &mut Deliveries) {
    h.cloud.enqueue_delivery(
        "fake-binding",
        "d1",
        json!({"externalChatId": "c"}),
        json!({"text": "one", "token": "secret-ish"}),
    );
    let first = next(rx).await;
    assert_eq!(
        (first.delivery_id.as_str(), first.attempt_count(), first.claimed_by()),
        ("d1", 1, Some("gateway:test"))
    );
    assert_eq!(first.rest["payload"]["token"], "secret-ish", "the stream carries the raw record");
    assert!(gateway.status.borrow().subscription.is_live());

    // Not acked: when the 120 s lease expires Cloud re-serves it.
    h.cloud.store.borrow().clock.advance(120_001);
    let again = next(rx).await;
    assert_eq!((again.delivery_id.as_str(), again.attempt_count()), ("d1", 2));

    let ack = AckDelivery {
        status: "sent",
        channel_binding_id: "fake-binding".into(),
        claimed_by: Some("gateway:test".into()),
        last_error: None,
        next_attempt_at: None,
    };
    let acked = h.client.ack_delivery("d1", &ack).await.unwrap();
    assert_eq!(acked.status(), Some(crate::cloud::DeliveryStatus::Sent));
    assert_eq!(acked.rest["payload"]["token"], "[redacted]", "JSON endpoints sanitise");
    assert_eq!(h.client.ack_delivery("d1", &ack).await.unwrap_err().status, Some(404), "acking twice");
}

/// A cut stream reconnects and re-serves the cut frame's delivery when its lease expires; an
/// in-band error keeps the stream open.
async fn cuts_and_in_band_errors_lose_nothing(h: &Harness, gateway: &Streams, rx: &mut Deliveries) {
    // A cut stream reconnects and the next delivery still arrives.
    h.cloud.faults.borrow_mut().cut_delivery_stream_after = Some(0);
    h.cloud.enqueue_delivery("fake-binding", "d2", json!({"externalChatId": "c"}), json!({"text": "two"}));
    h.cloud.enqueue_delivery("fake-binding", "d3", json!({"externalChatId": "c"}), json!({"text": "three"}));
    let after_cut = next(rx).await;
    assert_eq!(after_cut.delivery_id, "d3", "the cut frame's delivery stays leased");
    h.cloud.store.borrow().clock.advance(120_001);
    let reserved = next(rx).await;
    assert_eq!(
        (reserved.delivery_id.as_str(), reserved.attempt_count()),
        ("d2", 2),
        "and is re-served when its lease expires: nothing lost"
    );

    // In-band errors keep the stream open.
    h.cloud.faults.borrow_mut().delivery_stream_error = Some("Gateway delivery quota exceeded.".into());
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.cloud.faults.borrow_mut().delivery_stream_error = None;
    h.cloud.enqueue_delivery("fake-binding", "d4", json!({}), json!({"text": "four"}));
    loop {
        if next(rx).await.delivery_id == "d4" {
            break;
        }
    }
    use crate::metrics::{StreamKind, StreamStat};
    assert!(gateway.context.metrics.stream_count(StreamKind::Delivery, StreamStat::Reconnects) >= 1);
    assert!(gateway.context.metrics.stream_count(StreamKind::Delivery, StreamStat::Errors) >= 2);
}

/// Listing, retry and dead-letter through the gateway token; the stream closes at the drain.
async fn operator_calls_and_the_drain(
    h: &Harness,
    gateway: &Streams,
    follower: tokio::task::JoinHandle<()>,
) {
    // The gateway token lists only what it claimed; retry and dead-letter change the status.
    let listed = h
        .client
        .list_deliveries(&crate::cloud::DeliveryQuery {
            delivery_id: None,
            status: None,
            channel_binding_id: "fake-binding".into(),
            limit: 50,
        })
        .await
        .unwrap();
    assert!(listed.iter().any(|d| d.delivery_id == "d1"));
    h.cloud.enqueue_delivery("cli", "unclaimed", json!({}), json!({"text": "x"}));
    let retried = h.client.retry_delivery("d1", "fake-binding").await.unwrap().unwrap();
    assert_eq!(retried.status(), Some(crate::cloud::DeliveryStatus::Failed));
    gateway.shutdown.begin_drain();
    tokio::time::timeout(Duration::from_secs(5), follower).await.unwrap().unwrap();
    assert!(!gateway.status.borrow().subscription.is_live(), "closed at drain");
    let dead =
        h.client.dead_letter_delivery("d1", "fake-binding", Some("operator gave up")).await.unwrap().unwrap();
    assert_eq!(
        (dead.status(), dead.field_str("lastError")),
        (Some(crate::cloud::DeliveryStatus::Dead), Some("operator gave up"))
    );
    assert!(
        h.client.retry_delivery("unclaimed", "cli").await.unwrap().is_none(),
        "a gateway token only sees deliveries it claimed"
    );
}
