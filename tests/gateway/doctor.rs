//! `doctor` against the dev Cloud and the fake Telegram, Slack, SMTP and relay servers: every
//! line passes on a good install, then each failure planted once (wrong bot token, a webhook set
//! elsewhere, a Slack token of another team, SMTP without STARTTLS, a relay resolving to a
//! private address, clock skew, an unwritable state directory) turns exactly its own line into a
//! ✗ and the run fails. The binary's exit codes are checked against a dev Cloud process.

#![cfg(all(feature = "devcloud", feature = "telegram", feature = "slack", feature = "email", feature = "webhook"))]

use crate::support;
use crate::support::smtp_sink;

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::rc::Rc;

use async_trait::async_trait;
use open_cowork_gateway::config::{resolve, Env};
use open_cowork_gateway::devcloud::{DevCloud, DevCloudOptions};
use open_cowork_gateway::net::url_policy::{ResolveError, Resolver};
use open_cowork_gateway::providers::KINDS;
use serde_json::json;
use smtp_sink::Sink;
use support::test_gateway::quiet_factory;
use support::webhook_receiver::{self, Receiver};
use support::{fake_slack, fake_telegram, run};

const SMTP_PASSWORD: &str = "smtp-password-for-the-doctor-test";

/// Answers every name with one address.
struct FixedResolver(IpAddr);

#[async_trait(?Send)]
impl Resolver for FixedResolver {
    async fn resolve(&self, _host: &str, _port: u16) -> Result<Vec<IpAddr>, ResolveError> {
        Ok(vec![self.0])
    }
}

struct World {
    env: Vec<(String, String)>,
    bot: fake_telegram::Shared,
    /// An SMTP sink that offers no STARTTLS.
    plain_smtp: SocketAddr,
    _state: support::TempDir,
}

async fn world() -> World {
    let cloud = DevCloud::new(DevCloudOptions::default());
    let token = cloud.seed().gateway_token;
    let cloud_address = cloud.start("127.0.0.1", 0).await.unwrap();
    std::mem::forget(cloud);
    let bot: fake_telegram::Shared = Rc::default();
    let bot_url = fake_telegram::start(Rc::clone(&bot)).await;
    let slack: fake_slack::Shared = Rc::default();
    let slack_url = fake_slack::start(Rc::clone(&slack)).await;
    let tls_sink = Sink { tls: Some(smtp_sink::test_tls_config()), ..Sink::default() };
    let smtp = smtp_sink::start(Rc::new(RefCell::new(tls_sink))).await;
    let plain_smtp = smtp_sink::start(Rc::new(RefCell::new(Sink::default()))).await;
    let relay = webhook_receiver::start(Rc::new(RefCell::new(Receiver::default()))).await;
    let state = support::TempDir::new("doctor-state");
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/email/ca.pem");
    let env = [
        ("OPEN_COWORK_CLOUD_BASE_URL", format!("http://{cloud_address}")),
        ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", token),
        ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", support::ADMIN_TOKEN.into()),
        ("OPEN_COWORK_GATEWAY_PORT", "0".into()),
        ("OPEN_COWORK_GATEWAY_STATE_DIR", state.0.display().to_string()),
        ("OPEN_COWORK_GATEWAY_CA_FILE", ca.display().to_string()),
        ("OPEN_COWORK_GATEWAY_TELEGRAM_BOT_TOKEN", fake_telegram::TOKEN.into()),
        ("OPEN_COWORK_GATEWAY_TELEGRAM_API_BASE_URL", bot_url),
        ("OPEN_COWORK_GATEWAY_SLACK_BOT_TOKEN", fake_slack::TOKEN.into()),
        ("OPEN_COWORK_GATEWAY_SLACK_SIGNING_SECRET", "slack-signing-secret-for-doctor".into()),
        ("OPEN_COWORK_GATEWAY_SLACK_API_BASE_URL", slack_url),
        ("OPEN_COWORK_GATEWAY_SLACK_TEAM_ID", "T0ACME".into()),
        ("OPEN_COWORK_GATEWAY_EMAIL_INBOUND_SECRET", "email-inbound-secret-for-doctor".into()),
        ("OPEN_COWORK_GATEWAY_EMAIL_FROM", "Agent <agent@example.com>".into()),
        ("OPEN_COWORK_GATEWAY_EMAIL_SMTP_HOST", "127.0.0.1".into()),
        ("OPEN_COWORK_GATEWAY_EMAIL_SMTP_PORT", smtp.port().to_string()),
        ("OPEN_COWORK_GATEWAY_EMAIL_SMTP_USERNAME", "agent".into()),
        ("OPEN_COWORK_GATEWAY_EMAIL_SMTP_PASSWORD", SMTP_PASSWORD.into()),
        ("OPEN_COWORK_GATEWAY_SMTP_TIMEOUT_MS", "5000".into()),
        ("OPEN_COWORK_GATEWAY_WEBHOOK_DELIVERY_URL", format!("http://localhost:{}/relay", relay.port())),
        ("OPEN_COWORK_GATEWAY_WEBHOOK_SHARED_SECRET", webhook_receiver::SECRET.into()),
    ];
    World { env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), bot, plain_smtp, _state: state }
}

/// Runs the doctor with `changes` applied to the world's environment and the relay's host
/// resolving to `relay_address`; returns whether it passed and what it printed.
async fn doctor(world: &World, changes: &[(&str, &str)], relay_address: &str) -> (bool, String) {
    let mut env = Env::from_pairs(world.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (key, value) in changes {
        env.set(*key, *value);
    }
    let config = resolve(&json!({}), &env, KINDS).unwrap();
    let mut factory = quiet_factory();
    factory.webhook_resolver = Rc::new(FixedResolver(relay_address.parse().unwrap()));
    let mut out = Vec::new();
    let passed = open_cowork_gateway::doctor::run(&config, &mut factory, &mut out).await;
    let text = String::from_utf8(out).unwrap();
    for secret in [fake_telegram::TOKEN, fake_slack::TOKEN, SMTP_PASSWORD, world.env[1].1.as_str()] {
        assert!(!text.contains(secret), "a secret was printed:\n{text}");
    }
    (passed, text)
}

/// A planted failure: what, the environment changes, the relay host's address, the ✗ line expected.
type Plant<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);

/// The ✗ lines of a run.
fn failures(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with('✗')).collect()
}

/// A Cloud whose clock is ten minutes behind: it grants everything and says so with a stale `Date`.
async fn skewed_cloud() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::task::spawn_local(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let service = hyper::service::service_fn(|_request| async {
                let stale = open_cowork_gateway::time::iso(open_cowork_gateway::time::now_ms() - 600_000);
                const MONTHS: [&str; 12] =
                    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
                let month = MONTHS[stale[5..7].parse::<usize>().unwrap() - 1];
                let date = format!("Mon, {} {month} {} {} GMT", &stale[8..10], &stale[..4], &stale[11..19]);
                let body = http_body_util::Full::new(bytes::Bytes::from_static(br#"{"deliveries":[]}"#));
                Ok::<_, std::convert::Infallible>(http::Response::builder().header("date", date).body(body).unwrap())
            });
            tokio::task::spawn_local(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    address
}

#[test]
fn every_check_passes_on_a_good_install_and_each_planted_failure_fails_its_own_line() {
    run(async {
        let world = world().await;
        let (passed, text) = doctor(&world, &[], "127.0.0.1").await;
        assert!(passed, "{text}");
        for line in [
            "✓ configuration: valid, providers [telegram, slack, email, webhook]",
            "✓ service token: accepted",
            "✓ channel binding telegram: granted to this token",
            "✓ clock: within",
            "✓ state directory",
            "✓ telegram: bot token (getMe): accepted for @GatewayBot",
            "✓ telegram: webhook (getWebhookInfo): none set",
            "✓ slack: bot token and team (auth.test): accepted for team T0ACME",
            "✓ email: SMTP 127.0.0.1:",
            "✓ webhook: relay localhost:",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }

        let plain_port = world.plain_smtp.port().to_string();
        let proc_dir = "/proc";
        let skewed = format!("http://{}", skewed_cloud().await);
        let plants: [Plant; 6] = [
            ("wrong Slack team", &[("OPEN_COWORK_GATEWAY_SLACK_TEAM_ID", "T0OTHER")], "127.0.0.1", "✗ slack: bot token and team"),
            ("SMTP without STARTTLS", &[("OPEN_COWORK_GATEWAY_EMAIL_SMTP_PORT", &plain_port)], "127.0.0.1", "✗ email: SMTP"),
            (
                "relay on a private address",
                &[("OPEN_COWORK_GATEWAY_WEBHOOK_DELIVERY_URL", "https://relay.example.com/hook")],
                "10.1.2.3",
                "✗ webhook: relay relay.example.com:443: Webhook delivery URL resolved to a private or reserved address",
            ),
            ("clock skew", &[("OPEN_COWORK_CLOUD_BASE_URL", &skewed)], "127.0.0.1", "✗ clock: 600 s ahead of Cloud"),
            ("unwritable state directory", &[("OPEN_COWORK_GATEWAY_STATE_DIR", proc_dir)], "127.0.0.1", "✗ state directory /proc: not writable"),
            ("no plant (control)", &[], "127.0.0.1", ""),
        ];
        for (what, changes, relay, expected) in plants {
            let (passed, text) = doctor(&world, changes, relay).await;
            if expected.is_empty() {
                assert!(passed && failures(&text).is_empty(), "{what}:\n{text}");
                continue;
            }
            assert!(!passed, "{what} passed:\n{text}");
            assert_eq!(failures(&text).len(), 1, "{what}: exactly one ✗ line:\n{text}");
            assert!(failures(&text)[0].starts_with(expected), "{what}: {:?}\n{text}", failures(&text));
        }

        world.bot.borrow_mut().error("getMe", 401, "Unauthorized", None);
        let (passed, text) = doctor(&world, &[], "127.0.0.1").await;
        assert!(!passed && failures(&text).len() == 1, "{text}");
        assert!(
            failures(&text)[0].starts_with("✗ telegram: bot token (getMe): Telegram rejects the bot token"),
            "{text}"
        );

        world.bot.borrow_mut().webhook_url = "https://elsewhere.example.net/secret-path".into();
        let (passed, text) = doctor(&world, &[], "127.0.0.1").await;
        assert!(!passed && failures(&text).len() == 1, "{text}");
        assert!(
            failures(&text)[0]
                .starts_with("✗ telegram: webhook (getWebhookInfo): a webhook to elsewhere.example.net holds this bot"),
            "{text}"
        );
        assert!(!text.contains("secret-path"), "only the host of a webhook URL is shown");
    });
}

#[test]
fn the_binary_exits_0_when_every_check_passes_and_1_otherwise() {
    use std::io::BufRead;
    let dir = support::TempDir::new("doctor-bin");
    let mut cloud = support::command(&dir.0, &[])
        .args(["dev-cloud", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    for line in std::io::BufReader::new(cloud.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let (key, value) = line.split_once('=').unwrap();
        if key.starts_with("OPEN_COWORK_GATEWAY_") && !key.contains("_CHANNEL_BINDING_ID")
            || key == "OPEN_COWORK_CLOUD_BASE_URL"
        {
            env.push((key.into(), value.into()));
        }
        if key == "OPEN_COWORK_DEVCLOUD_ADMIN_TOKEN" {
            break;
        }
    }
    let doctor = |extra: &[(&str, &str)]| {
        let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend([
            ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", support::ADMIN_TOKEN),
            ("OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER", "true"),
            ("OPEN_COWORK_GATEWAY_PORT", "0"),
        ]);
        all.extend_from_slice(extra);
        support::command(&dir.0, &all).arg("doctor").output().unwrap()
    };
    let good = doctor(&[]);
    let text = String::from_utf8_lossy(&good.stdout).into_owned();
    assert_eq!(good.status.code(), Some(0), "{text}");
    assert!(text.contains("✓ channel binding fake-binding: granted to this token"), "{text}");
    let bad = doctor(&[("OPEN_COWORK_GATEWAY_FAKE_CHANNEL_BINDING_ID", "not-granted")]);
    let text = String::from_utf8_lossy(&bad.stdout).into_owned();
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains("✗ channel binding not-granted: not granted"), "{text}");
    let broken = doctor(&[("OPEN_COWORK_CLOUD_BASE_URL", "ftp://cloud.example.com")]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&broken.stdout).starts_with("✗ configuration: "));
    let _ = cloud.kill();
    let _ = cloud.wait();
}
