//! `GET /status` in a real browser (Debian's `chromium`, headless): the page a gateway serves
//! after a few messages renders its channels, streams and deliveries, shows a planted error and
//! a planted log line as text (escaped, not markup: no element they carry reaches the DOM), and
//! shows none of the configured secrets. A screenshot goes to `target/status-page.png`. Needs the
//! package, so `#[ignore]`d here; `.ci/run` installs it and runs this with `--ignored`.

#![cfg(feature = "devcloud")]

use crate::support;
use support::{eventually, run};

use std::path::{Path, PathBuf};

use open_cowork_gateway::config::LogLevel;
use open_cowork_gateway::logging;
use serde_json::json;
use support::test_gateway::{dev_cloud, quick_agent_options, quiet_factory, start_gateway_with_config};

const RELAY_SECRET: &str = "relay-Secret-Planted-In-The-Config-7731";
const PLANTED_ERROR: &str = "<img src=x onerror=alert(1)> planted send failure & \"quotes\"";
const PLANTED_EVENT: &str = "planted <script>document.title='owned'</script> event";

/// Runs headless Chromium on `url` with `extra` arguments; its stdout.
fn chromium(url: &str, extra: &[String]) -> String {
    let profile = support::TempDir::new("chromium");
    let output = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium (Debian's chromium package)");
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The page's text as a reader sees it: tags dropped, entities decoded.
fn visible_text(dom: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

#[test]
#[ignore = "needs Debian's chromium package; .ci/run installs it and runs this"]
fn chromium_renders_the_status_page_with_escaped_errors_and_no_secret() {
    let _ = logging::init(logging::LogFormat::Stderr, logging::filter(Some(LogLevel::Warn), None, LogLevel::Warn));
    run(async {
        let (cloud, seeded, cloud_url) = dev_cloud(quick_agent_options()).await;
        let fake = json!({"id": "fake", "kind": "fake", "enabled": true, "channelBindingId": "fake-binding"});
        let settings = [
            // A blank setting counts as unset: no admin token, so the browser, which sends none,
            // is the operator from loopback.
            ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", ""),
            ("OPEN_COWORK_GATEWAY_ALLOW_LOOPBACK_OPERATOR_BYPASS", "true"),
            ("OPEN_COWORK_GATEWAY_WEBHOOK_DELIVERY_URL", "http://localhost:9/relay"),
            ("OPEN_COWORK_GATEWAY_WEBHOOK_SHARED_SECRET", RELAY_SECRET),
        ];
        let config = json!({ "providers": [fake] });
        let token = &seeded.gateway_token;
        let running =
            start_gateway_with_config(&config, &cloud_url, token, "pi-kitchen", &settings, quiet_factory()).await;
        let fake = running.factory.fake("fake").unwrap();
        for n in 0..3 {
            cloud.enqueue_delivery(
                "fake-binding",
                &format!("d{n}"),
                json!({"externalChatId": "chat-7"}),
                json!({"text": format!("reply {n}")}),
            );
        }
        eventually("three deliveries sent", || fake.records().len() >= 3).await;

        // The runtime opens a channel's circuit with its reason; plant one with markup, and a log
        // line on the gateway's own target, as a failing send path would write it.
        running.registry.get("fake").unwrap().set_circuit(Some(PLANTED_ERROR.into()));
        tracing::warn!(target: "open_cowork_gateway::runtime::deliveries", provider = "fake", "{PLANTED_EVENT}");

        let url = format!("http://{}/status", running.address);
        let screenshot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/status-page.png");
        let (dom, _) = tokio::task::spawn_blocking({
            let url = url.clone();
            let screenshot = screenshot.clone();
            move || {
                let dom = chromium(&url, &["--dump-dom".into()]);
                let shot = chromium(
                    &url,
                    &[format!("--screenshot={}", screenshot.display()), "--window-size=412,1500".into()],
                );
                (dom, shot)
            }
        })
        .await
        .unwrap();

        let text = visible_text(&dom);
        for expected in [
            "Open Cowork gateway",
            "instance pi-kitchen",
            "fake",
            "webhook",
            "Session streams",
            "open of 190",
            "3 sent · 0 retried · 0 dead",
            "Recent events",
            PLANTED_ERROR,
            PLANTED_EVENT,
        ] {
            assert!(text.contains(expected), "{expected:?} is not on the page:\n{text}");
        }
        assert!(!dom.contains("<img") && !dom.contains("<script"), "planted markup became elements:\n{dom}");
        assert!(dom.contains("<title>Open Cowork gateway status</title>"), "the planted script did not run");
        for secret in [RELAY_SECRET, seeded.gateway_token.as_str()] {
            assert!(!dom.contains(secret), "a secret is on the page");
        }
        let png = std::fs::read(&screenshot).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a screenshot of the page");
        assert!(Path::new(&screenshot).exists());
        running.stop();
    });
}
