//! The dev Cloud's control routes over loopback HTTP, as `scripts/soak` uses them from another
//! process: `POST /dev/faults` arms faults that then fire on the Cloud routes (and are counted),
//! `GET /dev/records` reports deliveries with their ack calls and prompts per idempotency key,
//! and both answer only an admin token.

#![cfg(feature = "devcloud")]

use crate::support;

use std::rc::Rc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use open_cowork_gateway::devcloud::{DevCloud, DevCloudOptions, Seeded};
use open_cowork_gateway::net::https::build_client;
use serde_json::{json, Value};
use support::run;
use support::test_gateway::dev_cloud;

async fn start() -> (Rc<DevCloud>, Seeded, String) {
    dev_cloud(DevCloudOptions::default()).await
}

async fn call(method: &str, url: String, token: &str, body: Option<Value>) -> (u16, Value) {
    let http = build_client(None).unwrap();
    let mut request =
        http::Request::builder().method(method).uri(url).header("authorization", format!("Bearer {token}"));
    let bytes = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(&body).unwrap())
        }
        None => Bytes::new(),
    };
    let response = http.request(request.body(Full::new(bytes)).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[test]
fn faults_armed_over_http_fire_and_are_counted() {
    run(async {
        let (cloud, seeded, base) = start().await;
        let admin = seeded.admin_token.as_str();
        let armed = json!({"failNext": [{"route": "enqueue", "count": 2, "status": 429, "retryAfterMs": 750}],
                           "cutDeliveryStreamAfter": 3, "maxDeliveryLeaseMs": 20000});
        let (status, view) = call("POST", format!("{base}/dev/faults"), admin, Some(armed)).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["failNext"][0]["remaining"], 2);
        assert_eq!(view["cutDeliveryStreamAfter"], 3);
        assert_eq!(cloud.faults.borrow().delivery_lease_ms(120_000), 20_000, "the lease cap is set");

        let delivery = json!({"deliveryId": "d1", "channelBindingId": "telegram", "target": {"externalChatId": "1"}, "payload": {"text": "x"}});
        let (status, body) =
            call("POST", format!("{base}/api/channels/deliveries"), admin, Some(delivery.clone())).await;
        assert_eq!((status, body["retryAfterMs"].as_u64()), (429, Some(750)), "the armed 429 fires with its hint");
        assert_eq!(call("POST", format!("{base}/api/channels/deliveries"), admin, Some(delivery.clone())).await.0, 429);
        assert_eq!(call("POST", format!("{base}/api/channels/deliveries"), admin, Some(delivery)).await.0, 201);

        let (_, view) = call("GET", format!("{base}/dev/faults"), admin, None).await;
        assert_eq!(view["injected"]["enqueue"], 2, "{view}");
        assert_eq!(view["failNext"], json!([]), "used up");

        // A bad request arms nothing; clear switches everything off.
        let bad = json!({"failNext": [{"route": "no-such-route", "status": 500}], "cutSessionStreamAfter": 1});
        assert_eq!(call("POST", format!("{base}/dev/faults"), admin, Some(bad)).await.0, 400);
        assert_eq!(cloud.faults.borrow().cut_session_stream_after, None);
        let (status, view) = call("POST", format!("{base}/dev/faults"), admin, Some(json!({"clear": true}))).await;
        assert_eq!(status, 200);
        assert_eq!(
            (view["cutDeliveryStreamAfter"].clone(), view["maxDeliveryLeaseMs"].clone()),
            (Value::Null, Value::Null)
        );
        assert_eq!(view["injected"]["enqueue"], 2, "counts of fired faults survive a clear");
    });
}

#[test]
fn control_routes_need_an_admin_token() {
    run(async {
        let (cloud, seeded, base) = start().await;
        let gateway = seeded.gateway_token.as_str();
        assert_eq!(call("GET", format!("{base}/dev/records"), gateway, None).await.0, 403);
        let arm = json!({"failNext": [{"route": "claim", "status": 500}]});
        assert_eq!(call("POST", format!("{base}/dev/faults"), gateway, Some(arm.clone())).await.0, 403);
        assert_eq!(call("POST", format!("{base}/dev/faults"), "occ_not_a_token", Some(arm)).await.0, 401);
        assert_eq!(cloud.faults.borrow().pending_failures("claim"), 0);
        assert_eq!(cloud.total_calls(), 0, "control requests are not Cloud calls");
    });
}

#[test]
fn records_show_ack_calls_and_prompts_per_key() {
    run(async {
        let (cloud, seeded, base) = start().await;
        let (admin, gateway) = (seeded.admin_token.as_str(), seeded.gateway_token.as_str());
        cloud.enqueue_delivery("telegram", "d1", json!({"externalChatId": "1"}), json!({"text": "hello"})).unwrap();
        let claimed =
            cloud.store.borrow_mut().claim_next_delivery(&["telegram".to_owned()], "gateway:local", "tok", 60_000);
        assert!(claimed.is_some());
        let ack =
            |status: &str| json!({"status": status, "channelBindingId": "telegram", "claimedBy": "gateway:local"});
        assert_eq!(
            call("POST", format!("{base}/api/channels/deliveries/d1/ack"), admin, Some(ack("sent"))).await.0,
            200
        );
        assert_eq!(
            call("POST", format!("{base}/api/channels/deliveries/d1/ack"), admin, Some(ack("sent"))).await.0,
            404
        );

        let (status, page) = call("GET", format!("{base}/dev/records?section=deliveries"), admin, None).await;
        assert_eq!(status, 200);
        assert_eq!(page["total"], 1);
        let d1 = &page["items"][0];
        assert_eq!((d1["deliveryId"].as_str(), d1["status"].as_str()), (Some("d1"), Some("sent")));
        assert_eq!(d1["acks"], json!([["sent", true], ["sent", false]]), "both ack calls, the second refused");

        // Two prompts with one key: one command, the repeat absorbed and counted.
        let identity = json!({"provider": "telegram", "externalUserId": "u1", "channelBindingId": "telegram"});
        assert_eq!(
            call("POST", format!("{base}/api/channels/identities/resolve"), gateway, Some(identity)).await.0,
            200
        );
        let bind = json!({"channelBindingId": "telegram", "provider": "telegram", "externalChatId": "1", "externalThreadId": "1", "externalUserId": "u1"});
        let (status, bound) = call("POST", format!("{base}/api/channels/sessions/bind"), gateway, Some(bind)).await;
        assert_eq!(status, 200, "{bound}");
        let prompt = json!({"bindingId": bound["binding"]["bindingId"], "text": "soak-in-1 hi", "idempotencyKey": "event-1",
                            "provider": "telegram", "externalUserId": "u1", "channelBindingId": "telegram"});
        for _ in 0..2 {
            let (status, body) =
                call("POST", format!("{base}/api/channels/sessions/prompt"), gateway, Some(prompt.clone())).await;
            assert_eq!(status, 202, "{body}");
        }
        let (_, prompts) = call("GET", format!("{base}/dev/records?section=prompts"), admin, None).await;
        assert_eq!(prompts["items"], json!([{"idempotencyKey": "event-1", "calls": 2, "commands": 1}]));
        let (_, commands) = call("GET", format!("{base}/dev/records?section=commands&limit=1"), admin, None).await;
        assert_eq!(
            (commands["total"].clone(), commands["items"][0]["text"].clone()),
            (json!(1), json!("soak-in-1 hi"))
        );
        let (_, summary) = call("GET", format!("{base}/dev/records"), admin, None).await;
        assert_eq!((summary["deliveries"]["sent"].clone(), summary["promptCalls"].clone()), (json!(1), json!(2)));
        assert_eq!(call("GET", format!("{base}/dev/records?section=nope"), admin, None).await.0, 400);
    });
}

#[test]
fn a_quiet_session_stream_gets_its_keep_alives_while_the_cloud_is_busy() {
    run(async {
        let cloud = DevCloud::new(DevCloudOptions {
            keep_alive: std::time::Duration::from_millis(50),
            ..DevCloudOptions::default()
        });
        let seeded = cloud.seed();
        let base = format!("http://{}", cloud.start("127.0.0.1", 0).await.unwrap());
        let gateway = seeded.gateway_token.as_str();
        let identity = json!({"provider": "telegram", "externalUserId": "u1", "channelBindingId": "telegram"});
        assert_eq!(
            call("POST", format!("{base}/api/channels/identities/resolve"), gateway, Some(identity)).await.0,
            200
        );
        let bind = json!({"channelBindingId": "telegram", "provider": "telegram", "externalChatId": "1", "externalThreadId": "1", "externalUserId": "u1"});
        let (_, bound) = call("POST", format!("{base}/api/channels/sessions/bind"), gateway, Some(bind)).await;
        let binding = bound["binding"]["bindingId"].as_str().unwrap().to_owned();

        // Other work wakes every stream far more often than the heartbeat interval.
        let busy = Rc::clone(&cloud);
        let noise = tokio::task::spawn_local(async move {
            loop {
                busy.changed.notify_waiters();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        });
        let http = build_client(None).unwrap();
        let request = http::Request::get(format!("{base}/api/channels/sessions/{binding}/events"))
            .header("authorization", format!("Bearer {gateway}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let mut body = http.request(request).await.unwrap().into_body();
        let mut seen = String::new();
        // Generous against a slow machine; without the fix no keep-alive ever comes.
        let waited = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while !seen.contains(": keep-alive") {
                let frame = body.frame().await.unwrap().unwrap();
                seen.push_str(&String::from_utf8_lossy(frame.data_ref().unwrap()));
            }
        })
        .await;
        noise.abort();
        assert!(waited.is_ok(), "no keep-alive on a quiet stream of a busy Cloud; got {seen:?}");
        assert!(seen.contains("session.created"), "{seen}");
    });
}
