//! One in-process gateway for the pipeline tests: the dev Cloud on loopback (fast polls, short
//! keep-alives, an echo agent without delay) and a gateway against it, with whatever channel
//! settings a test adds. It can be stopped and started again (same instance id, same Cloud), which
//! is how a test restarts the process between two steps. It can also run the gateway as the
//! binary in a child process, for the CLI channel, whose input is the process's stdin.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use open_cowork_gateway::app::{self, Running};
use open_cowork_gateway::config::{resolve, Env};
use open_cowork_gateway::devcloud::{DevCloud, DevCloudOptions, Seeded};
use open_cowork_gateway::providers::cli::CliOutputMode;
use open_cowork_gateway::providers::ProviderFactory;
use open_cowork_gateway::providers::KINDS;
use serde_json::json;

use super::child_gateway::{ChildGateway, ChildIo};
use super::eventually;

/// The dev Cloud options of the pipeline tests: polls and keep-alives short enough that a test
/// waits milliseconds, an agent that answers at once.
pub fn fast_cloud_options() -> DevCloudOptions {
    DevCloudOptions {
        poll_interval: Duration::from_millis(20),
        keep_alive: Duration::from_millis(200),
        agent_delay: Duration::from_millis(1),
        ..DevCloudOptions::default()
    }
}

/// [`fast_cloud_options`] with the dev Cloud's default keep-alive, as the per-channel tests
/// (Telegram, Slack, webhook, delivery pacing) were written against.
pub fn quick_agent_options() -> DevCloudOptions {
    DevCloudOptions {
        poll_interval: Duration::from_millis(20),
        agent_delay: Duration::from_millis(1),
        ..DevCloudOptions::default()
    }
}

/// The dev Cloud started on loopback with `options`, seeded: it, its seed and its base URL.
pub async fn dev_cloud(options: DevCloudOptions) -> (Rc<DevCloud>, Seeded, String) {
    let cloud = DevCloud::new(options);
    let seeded = cloud.seed();
    let address = cloud.start("127.0.0.1", 0).await.unwrap();
    (cloud, seeded, format!("http://{address}"))
}

/// The setting that turns the fake provider on (its webhook route `/webhooks/fake`).
pub const FAKE_PROVIDER: (&str, &str) = ("OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER", "true");

/// A provider factory whose CLI channel (if configured) reads no stdin and writes nowhere.
pub fn quiet_factory() -> ProviderFactory {
    ProviderFactory::with_cli_output(|| (CliOutputMode::Json, Box::new(std::io::sink())))
}

/// A gateway named `instance` against the dev Cloud at `cloud_url` with `token`, on an
/// ephemeral port, with `extra` settings on top (environment variable names); returned as soon as
/// it started, before it is ready.
pub async fn start_gateway(
    cloud_url: &str,
    token: &str,
    instance: &str,
    extra: &[(&str, &str)],
    factory: ProviderFactory,
) -> Running {
    start_gateway_with_config(&json!({}), cloud_url, token, instance, extra, factory).await
}

/// [`start_gateway`] with the gateway configuration JSON `config` (what `--config` carries) under
/// the settings: providers listed by id, for one.
pub async fn start_gateway_with_config(
    config: &serde_json::Value,
    cloud_url: &str,
    token: &str,
    instance: &str,
    extra: &[(&str, &str)],
    factory: ProviderFactory,
) -> Running {
    let mut env = Env::from_pairs([
        ("OPEN_COWORK_CLOUD_BASE_URL", cloud_url),
        ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", token),
        ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", "admin-token-for-tests"),
        ("OPEN_COWORK_GATEWAY_PORT", "0"),
        ("OPEN_COWORK_GATEWAY_INSTANCE_ID", instance),
    ]);
    for (key, value) in extra {
        env.set(*key, *value);
    }
    app::start(resolve(config, &env, KINDS).unwrap(), factory).await.unwrap()
}

/// The dev Cloud and the gateway settings; [`TestGateway::start`] runs the gateway.
pub struct TestGateway {
    pub cloud: Rc<DevCloud>,
    pub seeded: Seeded,
    pub cloud_url: String,
    settings: Vec<(String, String)>,
    running: Option<Running>,
    /// Set by [`TestGateway::as_child_process`]: the gateway runs as the binary, with these pipes.
    child_io: Option<Rc<ChildIo>>,
    child: Option<ChildGateway>,
}

impl TestGateway {
    /// Starts the dev Cloud with [`fast_cloud_options`]; the gateway is not started yet.
    pub async fn new() -> Self {
        Self::with_cloud(fast_cloud_options()).await
    }

    /// Starts the dev Cloud with `options`, seeded (a gateway token granting every seeded binding).
    pub async fn with_cloud(options: DevCloudOptions) -> Self {
        let (cloud, seeded, cloud_url) = dev_cloud(options).await;
        Self { cloud, seeded, cloud_url, settings: Vec::new(), running: None, child_io: None, child: None }
    }

    /// Adds (or replaces) one gateway setting, as its environment variable, on top of the Cloud
    /// URL, the token, the admin token, an ephemeral port and the instance id.
    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs the gateway as the binary in a child process from now on (the CLI channel's stdin
    /// and stdout are the test's); returns the test's ends of its pipes.
    pub fn as_child_process(&mut self) -> Rc<ChildIo> {
        Rc::clone(self.child_io.get_or_insert_with(Rc::default))
    }

    /// Where the gateway listens.
    pub fn address(&self) -> SocketAddr {
        match &self.child {
            Some(child) => child.address,
            None => self.running().address,
        }
    }

    /// Starts the gateway and waits until `/ready` holds.
    pub async fn start(&mut self) {
        assert!(self.running.is_none() && self.child.is_none(), "the gateway is already running");
        if let Some(io) = &self.child_io {
            let mut settings: Vec<(&str, &str)> = vec![
                ("OPEN_COWORK_CLOUD_BASE_URL", &self.cloud_url),
                ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", &self.seeded.gateway_token),
                ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", "admin-token-for-tests"),
                ("OPEN_COWORK_GATEWAY_PORT", "0"),
                ("OPEN_COWORK_GATEWAY_INSTANCE_ID", "test-gateway"),
            ];
            settings.extend(self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            self.child = Some(ChildGateway::start(&settings, io).await);
            return;
        }
        let settings: Vec<(&str, &str)> = self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let token = self.seeded.gateway_token.clone();
        let running = start_gateway(&self.cloud_url, &token, "test-gateway", &settings, quiet_factory()).await;
        eventually("ready", || running.readiness.is_ready()).await;
        self.running = Some(running);
    }

    /// The running gateway.
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("the gateway is running")
    }

    /// Stops the gateway at once, as a kill would: no drain, work in flight is cut off.
    pub fn kill(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
        self.child = None;
    }

    /// The prompts Cloud received from `chat`, over every session of that chat.
    pub fn prompts(&self, chat: &str) -> Vec<String> {
        prompts_of(&self.cloud, chat)
    }

    /// The session of `chat` (its first), once Cloud bound one.
    pub fn session_of(&self, chat: &str) -> Option<String> {
        sessions_of(&self.cloud, chat).into_iter().next()
    }

    /// The status Cloud holds for delivery `id` of `binding` (`queued`, `sent`, `failed`, `dead`),
    /// empty before it exists.
    pub fn delivery_status(&self, binding: &str, id: &str) -> String {
        let delivery = self.cloud.delivery(binding, id);
        delivery.and_then(|d| d["status"].as_str().map(str::to_owned)).unwrap_or_default()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The sessions Cloud bound for `chat`, in the order they were bound.
pub fn sessions_of(cloud: &DevCloud, chat: &str) -> Vec<String> {
    let store = cloud.store.borrow();
    store.session_bindings.iter().filter(|b| b.external_chat_id == chat).map(|b| b.session_id.clone()).collect()
}

/// The prompts Cloud received from `chat`, over every session of that chat.
pub fn prompts_of(cloud: &DevCloud, chat: &str) -> Vec<String> {
    sessions_of(cloud, chat).iter().flat_map(|s| cloud.prompts(s)).collect()
}

/// The prompts of `chat`'s first session (none before it has one).
pub fn first_session_prompts(cloud: &DevCloud, chat: &str) -> Vec<String> {
    sessions_of(cloud, chat).first().map(|s| cloud.prompts(s)).unwrap_or_default()
}
