//! The gateway of the pipeline tests with the fake provider (a webhook route that takes any JSON
//! message): started against the dev Cloud and ready, and a message posted to it.

use std::rc::Rc;

use open_cowork_gateway::app::Running;
use open_cowork_gateway::devcloud::{DevCloud, Seeded};
use serde_json::Value;

use super::eventually;
use super::test_gateway::{self, fast_cloud_options, quiet_factory, start_gateway, FAKE_PROVIDER};

/// The dev Cloud, seeded and listening, with the pipeline tests' fast options: it, its seed and
/// its base URL.
pub async fn dev_cloud() -> (Rc<DevCloud>, Seeded, String) {
    test_gateway::dev_cloud(fast_cloud_options()).await
}

/// A gateway named `instance` with the fake provider against the dev Cloud at `base_url`, with
/// `extra` settings on top; returned once `/ready` holds.
pub async fn start(base_url: &str, seeded: &Seeded, instance: &str, extra: &[(&str, &str)]) -> Running {
    let settings = [&[FAKE_PROVIDER][..], extra].concat();
    let running = start_gateway(base_url, &seeded.gateway_token, instance, &settings, quiet_factory()).await;
    eventually("ready", || running.readiness.is_ready()).await;
    running
}

/// Posts `body` to the fake provider's webhook; the answer's status.
pub async fn post(running: &Running, body: Value) -> u16 {
    let http = open_cowork_gateway::net::https::build_client(None).unwrap();
    let request = http::Request::post(format!("http://{}/webhooks/fake", running.address))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    http.request(request).await.unwrap().status().as_u16()
}
