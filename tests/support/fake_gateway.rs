//! The in-process gateway of the pipeline tests: the dev Cloud on loopback (fast polls, short
//! keep-alives, an echo agent without delay) and a gateway with the fake provider in front of it,
//! started and ready.

use std::rc::Rc;
use std::time::Duration;

use open_cowork_gateway::app::{self, Running};
use open_cowork_gateway::config::{resolve, Env};
use open_cowork_gateway::devcloud::{DevCloud, DevCloudOptions, Seeded};
use open_cowork_gateway::providers::ProviderFactory;
use serde_json::{json, Value};

use super::eventually;

/// The dev Cloud, seeded and listening: it, its seed and its base URL.
pub async fn dev_cloud() -> (Rc<DevCloud>, Seeded, String) {
    let cloud = DevCloud::new(DevCloudOptions {
        poll_interval: Duration::from_millis(20),
        keep_alive: Duration::from_millis(200),
        agent_delay: Duration::from_millis(1),
        ..DevCloudOptions::default()
    });
    let seeded = cloud.seed();
    let address = cloud.start("127.0.0.1", 0).await.unwrap();
    (cloud, seeded, format!("http://{address}"))
}

/// A gateway named `instance` with the fake provider against the dev Cloud at `base_url`, with
/// `extra` settings on top; returned once `/ready` holds.
pub async fn start(base_url: &str, seeded: &Seeded, instance: &str, extra: &[(&str, &str)]) -> Running {
    let mut env = Env::from_pairs([
        ("OPEN_COWORK_CLOUD_BASE_URL", base_url),
        ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", seeded.gateway_token.as_str()),
        ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", "admin-token-for-tests"),
        ("OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER", "true"),
        ("OPEN_COWORK_GATEWAY_PORT", "0"),
        ("OPEN_COWORK_GATEWAY_INSTANCE_ID", instance),
    ]);
    for (key, value) in extra {
        env.set(*key, *value);
    }
    let factory = ProviderFactory::with_cli_output(|| {
        (open_cowork_gateway::providers::cli::CliOutputMode::Json, Box::new(std::io::sink()))
    });
    let running = app::start(resolve(&json!({}), &env).unwrap(), factory).await.unwrap();
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
