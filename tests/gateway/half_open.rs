//! A half-open Cloud connection: the delivery stream's packets are silently dropped (no FIN, no
//! RST). The gateway must notice the missing keep-alives within seconds, reconnect, turn `/ready`
//! 503 when the reconnect does not succeed within the grace, and recover when the path is back.
//!
//! Runs on paused tokio time: the dev Cloud, the proxy and the gateway share one current_thread
//! runtime and only talk over loopback, so the clock jumps whenever everything waits and the
//! figures below are exact virtual seconds, not wall-clock measurements.

#![cfg(feature = "devcloud")]

use crate::support::blackhole_proxy;

use std::time::Duration;

use blackhole_proxy::BlackholeProxy;
use open_cowork_gateway::app::Running;
use open_cowork_gateway::devcloud::{DevCloud, DevCloudOptions};
use open_cowork_gateway::metrics::{StreamKind, StreamStat};
use serde_json::json;
use tokio::task::LocalSet;
use tokio::time::Instant;

use crate::support::test_gateway::{quiet_factory, start_gateway, FAKE_PROVIDER};

fn run_paused<F: std::future::Future<Output = ()>>(test: F) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    LocalSet::new().block_on(&runtime, test);
}

/// Polls until `condition` holds; `limit` is virtual time.
async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn gateway(base_url: &str, token: &str) -> Running {
    start_gateway(base_url, token, "half-open", &[FAKE_PROVIDER], quiet_factory()).await
}

fn delivery_status(cloud: &DevCloud, id: &str) -> String {
    cloud.delivery("fake-binding", id).map(|d| d["status"].as_str().unwrap_or("").to_owned()).unwrap_or_default()
}

#[test]
fn a_black_holed_delivery_stream_is_declared_dead_and_ready_follows_the_grace() {
    run_paused(async {
        // Cloud's production cadence: a keep-alive (and a claim poll) every second.
        let cloud = DevCloud::new(DevCloudOptions {
            poll_interval: Duration::from_secs(1),
            keep_alive: Duration::from_secs(1),
            agent_delay: Duration::from_millis(1),
            ..DevCloudOptions::default()
        });
        let seeded = cloud.seed();
        let upstream = cloud.start("127.0.0.1", 0).await.unwrap();
        let proxy = BlackholeProxy::start(upstream).await;
        let running = gateway(&format!("http://{}", proxy.address()), &seeded.gateway_token).await;
        let stream = |stat| running.metrics.stream_count(StreamKind::Delivery, stat);
        eventually("ready through the proxy", Duration::from_secs(10), || running.readiness.is_ready()).await;
        // Some keep-alives flow, so the stream is known to be healthy before the black hole.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(running.readiness.is_ready());
        let (errors_before, reconnects_before) = (stream(StreamStat::Errors), stream(StreamStat::Reconnects));

        let black_hole = Instant::now();
        proxy.black_hole();
        eventually("the silent stream declared dead", Duration::from_secs(30), || {
            stream(StreamStat::Errors) > errors_before
        })
        .await;
        let declared_dead = black_hole.elapsed();
        assert!(running.readiness.is_ready(), "a reconnect holds /ready for the grace");

        // Claimed by Cloud on the stream that is now half-open: those bytes never reach the
        // gateway, so Cloud serves the delivery again once its lease ran out.
        cloud.enqueue_delivery(
            "fake-binding",
            "d-meanwhile",
            json!({"externalChatId": "chat-1"}),
            json!({"text": "meanwhile"}),
        );

        eventually("/ready 503 after the grace", Duration::from_secs(30), || !running.readiness.is_ready()).await;
        let not_ready = black_hole.elapsed();
        println!("black hole → stream declared dead: {declared_dead:?}; → /ready 503: {not_ready:?}");
        assert!(
            not_ready < Duration::from_secs(60),
            "readiness must not wait for the 5-minute quiet rotation ({not_ready:?})"
        );

        proxy.resume();
        let resumed = Instant::now();
        eventually("ready again", Duration::from_secs(60), || running.readiness.is_ready()).await;
        println!("resume → ready again: {:?}", resumed.elapsed());
        assert!(stream(StreamStat::Reconnects) > reconnects_before, "the delivery stream reconnected");
        cloud.store.borrow().clock.advance(120_001);
        eventually("the delivery enqueued meanwhile sent", Duration::from_secs(30), || {
            delivery_status(&cloud, "d-meanwhile") == "sent"
        })
        .await;

        running.drain(Duration::from_secs(5)).await;
        running.stop();
    });
}
