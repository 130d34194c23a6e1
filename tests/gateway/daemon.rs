//! The binary end to end on loopback: operator routes, admin auth, errors, signals, exit codes,
//! and that no configured secret ever shows up in what the gateway prints or serves.

use crate::support;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use support::{base_env, request, Gateway, ADMIN_TOKEN};

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

fn bearer() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

#[test]
fn health_ready_and_not_found() {
    let gateway = Gateway::start(&base_env(), &[]);
    let health = gateway.get("/health", &[]);
    assert_eq!(health.status, 200);
    assert_eq!(health.header("content-type"), Some("application/json; charset=utf-8"));
    let body = health.json();
    assert_eq!(body["ok"], true);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["mode"], "self-host");
    assert_eq!(body["cloudBaseUrl"], "http://127.0.0.1:9");

    // No Cloud delivery subscription exists yet, so the gateway is never ready.
    let ready = gateway.get("/ready", &[]);
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["status"], "not_ready");
    assert!(ready.json().get("providers").is_none());
    let admin_ready = gateway.get("/ready", &[("authorization", &bearer())]).json();
    assert_eq!(admin_ready["providers"][0]["id"], "fake");
    assert_eq!(admin_ready["providers"][0]["provider"], "cli");

    let missing = gateway.get("/nope", &[]);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), serde_json::json!({"ok": false, "error": "Not found."}));
    assert_eq!(gateway.get("/health/", &[]).status, 404);
}

#[test]
fn metrics_and_diagnostics_need_the_admin_token() {
    let gateway = Gateway::start(&base_env(), &[]);
    for path in ["/metrics", "/diagnostics", "/deliveries"] {
        let denied = gateway.get(path, &[]);
        assert_eq!(denied.status, 401, "{path}");
        assert_eq!(denied.json()["error"], "Gateway admin authorization is required.");
        assert_eq!(gateway.get(path, &[("authorization", "Bearer wrong-token")]).status, 401, "{path}");
    }
    let metrics = gateway.get("/metrics", &[("authorization", &bearer())]);
    assert_eq!(metrics.status, 200);
    assert_eq!(metrics.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(metrics.body.contains("open_cowork_gateway_providers 1\n"));
    assert!(metrics.body.contains("open_cowork_gateway_build_info{version=\""));
    let diagnostics = gateway.get("/diagnostics", &[("x-open-cowork-gateway-admin-token", ADMIN_TOKEN)]);
    assert_eq!(diagnostics.status, 200);
    let body = diagnostics.json();
    assert_eq!(body["ok"], true);
    assert_eq!(body["ready"], false);
    assert_eq!(body["config"]["cloud"]["serviceToken"], "[redacted]");
    assert_eq!(body["deliveryOperator"]["scope"], "configured-channel-bindings");
    assert_eq!(body["deliveryOperator"]["channelBindingIds"][0], "fake-binding");

    // The Cloud of this test does not exist: the listing fails as a bad gateway, not a crash.
    let deliveries = gateway.get("/deliveries", &[("authorization", &bearer())]);
    assert_eq!(deliveries.status, 502);
    assert_eq!(deliveries.json()["error"], "Cloud delivery request failed.");
    assert_eq!(body["deliveryOperator"]["disabledReason"], serde_json::Value::Null, "the Cloud client is attached");
}

#[test]
fn disabled_metrics_and_diagnostics_are_404_before_auth() {
    let mut env = base_env();
    env.push(("OPEN_COWORK_GATEWAY_METRICS_ENABLED", "false"));
    env.push(("OPEN_COWORK_GATEWAY_DIAGNOSTICS_ENABLED", "no"));
    let gateway = Gateway::start(&env, &[]);
    assert_eq!(
        gateway.get("/metrics", &[]).json()["error"],
        "Metrics are disabled; set OPEN_COWORK_GATEWAY_METRICS_ENABLED=true and restart to turn them on."
    );
    assert_eq!(
        gateway.get("/diagnostics", &[]).json()["error"],
        "Diagnostics are disabled; set OPEN_COWORK_GATEWAY_DIAGNOSTICS_ENABLED=true and restart to turn them on."
    );
}

#[test]
fn oversized_webhook_body_is_413_and_counted() {
    let mut env = base_env();
    env.push(("OPEN_COWORK_GATEWAY_MAX_REQUEST_BODY_BYTES", "2048"));
    let gateway = Gateway::start(&env, &[]);
    let big = vec![b'x'; 4096];
    let response = request(gateway.address, "POST", "/webhooks/fake", &[("content-type", "application/json")], &big);
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["error"], "Gateway request body exceeds the configured limit.");
    let bad_encoding = request(gateway.address, "POST", "/webhooks/%ZZ", &[], b"{}");
    assert_eq!(bad_encoding.status, 400);
    let metrics = gateway.get("/metrics", &[("authorization", &bearer())]).body;
    // The Cloud of this test is unreachable: its delivery-stream errors count in errors_total too.
    let value = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let stream_errors = value("open_cowork_gateway_cloud_subscription_errors_total");
    assert_eq!(value("open_cowork_gateway_errors_total"), 2 + stream_errors, "{metrics}");
    assert!(metrics.contains("open_cowork_gateway_webhook_requests_total 1\n"));
}

#[test]
fn sigterm_drains_and_exits_zero() {
    for signal in [SIGTERM, SIGINT] {
        let mut gateway = Gateway::start(&base_env(), &[]);
        assert_eq!(gateway.get("/health", &[]).status, 200);
        gateway.signal(signal);
        let status = gateway.wait_exit(Duration::from_secs(20)).expect("exits after the drain");
        assert_eq!(status.code(), Some(0), "signal {signal}: {}", gateway.output());
    }
}

#[test]
fn drain_waits_for_in_flight_requests_and_a_second_signal_exits_at_once() {
    let mut env = base_env();
    env.push(("OPEN_COWORK_GATEWAY_SHUTDOWN_DRAIN_TIMEOUT_MS", "120000"));
    let mut gateway = Gateway::start(&env, &[]);
    // A webhook whose body never completes keeps one request in flight.
    let mut slow = TcpStream::connect(gateway.address).unwrap();
    slow.write_all(b"POST /webhooks/fake HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"te").unwrap();
    std::thread::sleep(Duration::from_millis(200));

    gateway.signal(SIGTERM);
    // While draining, the listener still answers: not ready, and webhook intake is closed.
    let mut saw_draining = false;
    for _ in 0..100 {
        let ready = gateway.get("/ready", &[("authorization", &bearer())]);
        assert_eq!(ready.status, 503);
        if ready.json()["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "not_draining" && c["ok"] == false)
        {
            saw_draining = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(saw_draining, "/ready reports the drain");
    let intake = request(gateway.address, "POST", "/webhooks/fake", &[], b"{}");
    assert_eq!(intake.status, 503);
    assert!(gateway.wait_exit(Duration::from_millis(300)).is_none(), "the in-flight request holds the drain");

    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(10)).expect("a second signal exits at once");
    assert_eq!(status.code(), Some(1), "{}", gateway.output());
    drop(slow);
}

#[test]
fn port_in_use_exits_69_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut env = base_env();
    env.retain(|(k, _)| *k != "OPEN_COWORK_GATEWAY_PORT");
    env.push(("OPEN_COWORK_GATEWAY_PORT", &port));
    let dir = support::TempDir::new("port");
    let output = support::command(&dir.0, &env).output().unwrap();
    assert_eq!(output.status.code(), Some(69));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message: Vec<&str> = stderr.lines().filter(|l| l.starts_with("open-cowork-gateway:")).collect();
    assert_eq!(message.len(), 1, "{stderr}");
    assert!(message[0].contains(&format!("cannot listen on 127.0.0.1:{port}")), "{stderr}");
}

#[test]
fn usage_errors_exit_64() {
    let dir = support::TempDir::new("usage");
    let output = support::command(&dir.0, &[]).arg("--no-such-flag").output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--no-such-flag"));
    let output = support::command(&dir.0, &[]).args(["--log-level", "chatty"]).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--log-level"));
    let version = support::command(&dir.0, &[]).arg("version").output().unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("open-cowork-gateway "));
}

#[test]
fn configured_secrets_never_appear_in_output() {
    const SECRETS: [&str; 5] = [
        "occ_gwtest_Service0Token0Value0123",
        "admin-Token-Value-For-Tests-42",
        "123456789:AAH-telegramBotTokenForTests0000",
        "telegram-Webhook-Secret-0000000042",
        "Webhook-Shared-Secret-0000000042",
    ];
    let mut env = base_env();
    env.retain(|(k, _)| *k != "OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER");
    env.extend([
        ("OPEN_COWORK_GATEWAY_TELEGRAM_BOT_TOKEN", SECRETS[2]),
        // Loopback only: a closed port stands in for the Bot API.
        ("OPEN_COWORK_GATEWAY_TELEGRAM_API_BASE_URL", "http://127.0.0.1:9"),
        ("OPEN_COWORK_GATEWAY_TELEGRAM_WEBHOOK_SECRET", SECRETS[3]),
        ("OPEN_COWORK_GATEWAY_WEBHOOK_DELIVERY_URL", "https://hooks.example.com/in"),
        ("OPEN_COWORK_GATEWAY_WEBHOOK_SHARED_SECRET", SECRETS[4]),
        ("OPEN_COWORK_GATEWAY_LOG_LEVEL", "debug"),
    ]);
    // This build does not implement the webhook kind yet: the entry stays configured (its secret
    // is still read and must still never show) but disabled, so the gateway starts.
    let dir = support::TempDir::new("print");
    let config = dir.0.join("gateway.jsonc");
    std::fs::write(&config, r#"{"providers": [{"kind": "webhook", "enabled": false}]}"#).unwrap();
    let config = config.to_str().unwrap();
    let mut gateway = Gateway::start(&env, &["--log-format", "stderr", "--config", config]);
    let mut seen = String::new();
    for path in ["/diagnostics", "/ready", "/metrics", "/health"] {
        seen.push_str(&gateway.get(path, &[("authorization", &bearer())]).body);
    }
    seen.push_str(&request(gateway.address, "POST", "/webhooks/telegram", &[], b"{}").body);
    gateway.signal(SIGTERM);
    gateway.wait_exit(Duration::from_secs(20)).expect("exits");
    seen.push_str(&gateway.output());

    let printed =
        support::command(&dir.0, &env).args(["check-config", "--print", "--config", config]).output().unwrap();
    assert!(printed.status.success());
    seen.push_str(&String::from_utf8_lossy(&printed.stdout));
    seen.push_str(&String::from_utf8_lossy(&printed.stderr));

    assert!(seen.contains("[redacted]"), "the redaction marker shows where secrets were");
    assert!(seen.contains("listening"), "logs were captured");
    for secret in SECRETS {
        assert!(!seen.contains(secret), "secret {secret} leaked");
    }
}

#[test]
fn check_config_opens_no_socket_and_env_file_completes_the_environment() {
    let dir = support::TempDir::new("envfile");
    let path = dir.0.join("gateway.env");
    let lines: Vec<String> = base_env().iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let path_text = path.to_str().unwrap();
    let insecure = support::command(&dir.0, &[]).args(["check-config", "--env-file", path_text]).output().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(insecure.status.code(), Some(78), "a group/other-readable env file is refused");
        assert!(String::from_utf8_lossy(&insecure.stderr).contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // The port from the file is in use; check-config must not care, because it never binds.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let ok = support::command(&dir.0, &[("OPEN_COWORK_GATEWAY_PORT", &port)])
        .args(["check-config", "--env-file", path_text])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains(&format!("127.0.0.1:{port}")),
        "the real environment wins over the file"
    );
}

#[test]
fn demo_echoes_a_piped_line_and_exits_zero() {
    use std::io::Write as _;
    let dir = support::TempDir::new("demo");
    let mut child = support::command(&dir.0, &[])
        .arg("demo")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["echo: hello"], "replies only on stdout");
}

/// The dev Cloud as a child process, and the env block it printed.
fn dev_cloud() -> (std::process::Child, std::collections::HashMap<String, String>, support::TempDir) {
    use std::io::BufRead as _;
    let dir = support::TempDir::new("devcloud");
    let mut child = support::command(&dir.0, &[])
        .args(["dev-cloud", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut block = std::collections::HashMap::new();
    while !block.contains_key("OPEN_COWORK_DEVCLOUD_ADMIN_TOKEN") {
        let line = lines.next().expect("dev-cloud output").unwrap();
        let (key, value) = line.split_once('=').unwrap();
        block.insert(key.to_owned(), value.to_owned());
    }
    (child, block, dir)
}

/// The text of delivery `id`: large, so that the gateway's CLI output of the whole queue (200 × ~3 KB)
/// is far more than a pipe holds.
fn queued_text(id: &str) -> String {
    format!("{id} {}", "x".repeat(3000))
}

/// A child process killed and reaped on drop, so a failing assertion leaves nothing running.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigterm_with_200_queued_deliveries_exits_zero_and_loses_none() {
    use std::collections::{HashMap, HashSet};
    use std::io::BufRead as _;
    use std::process::Stdio;
    use std::sync::mpsc::{self, RecvTimeoutError};

    let (cloud, block, _dir) = dev_cloud();
    let _cloud = Reaped(cloud);
    let cloud_address: std::net::SocketAddr =
        block["OPEN_COWORK_CLOUD_BASE_URL"].trim_start_matches("http://").parse().unwrap();
    let admin = format!("Bearer {}", block["OPEN_COWORK_DEVCLOUD_ADMIN_TOKEN"]);
    let binding = block["OPEN_COWORK_GATEWAY_CLI_CHANNEL_BINDING_ID"].clone();
    // The CLI provider prints every send as a JSON line carrying its delivery id: the record of what
    // actually went out, kept outside the gateway.
    let mut env = base_env();
    env.retain(|(k, _)| {
        !["OPEN_COWORK_CLOUD_BASE_URL", "OPEN_COWORK_GATEWAY_SERVICE_TOKEN", "OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER"]
            .contains(k)
    });
    env.push(("OPEN_COWORK_CLOUD_BASE_URL", &block["OPEN_COWORK_CLOUD_BASE_URL"]));
    env.push(("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", &block["OPEN_COWORK_GATEWAY_SERVICE_TOKEN"]));
    env.push(("OPEN_COWORK_GATEWAY_CLI_ENABLED", "true"));
    env.push(("OPEN_COWORK_GATEWAY_CLI_CHANNEL_BINDING_ID", &binding));
    env.push(("OPEN_COWORK_GATEWAY_SHUTDOWN_DRAIN_TIMEOUT_MS", "2000"));
    // One send at a time, so claims queue up in the gateway and the drain has queued work to finish.
    env.push(("OPEN_COWORK_GATEWAY_MAX_DELIVERY_CONCURRENCY", "1"));
    let run_dir = support::TempDir::new("drain");
    let mut gateway = Reaped(
        support::command(&run_dir.0, &env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = gateway.0.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    // A rendezvous channel: the reader hands over one line only when the test takes it, so while
    // the test takes none the pipe fills and the gateway's next CLI write blocks in the middle of a send.
    let (tx, stdout) = mpsc::sync_channel::<String>(0);
    let pipe = gateway.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |what: &str| stdout.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("no {what}"));

    let port: u16 = loop {
        let line = next_line("listening line");
        if let Some(url) = line.strip_prefix("Open Cowork gateway listening on http://") {
            break url.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    let gateway_address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while request(gateway_address, "GET", "/ready", &[], b"").status != 200 {
        assert!(std::time::Instant::now() < deadline, "the gateway never got ready (delivery subscription)");
        std::thread::sleep(Duration::from_millis(20));
    }

    // All due at one moment after the last is queued: Cloud then claims them in one burst, which the
    // gateway reads far faster than it sends one at a time, so most of them wait in its queue.
    let due = open_cowork_gateway::time::iso(open_cowork_gateway::time::now_ms() + 1000);
    for n in 0..200 {
        let id = format!("q-{n}");
        let body = serde_json::json!({"deliveryId": id, "channelBindingId": binding, "target": {"externalChatId": format!("c-{}", n % 7)}, "payload": {"text": queued_text(&id)}, "nextAttemptAt": due});
        let response = request(
            cloud_address,
            "POST",
            "/api/channels/deliveries",
            &[("authorization", &admin), ("content-type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert_eq!(response.status, 201);
    }
    // Sending has begun, and since the test holds the rest of the output back, at most a pipe's worth
    // (a few dozen of the 200) can go out before SIGTERM lands: it arrives mid-queue.
    let mut printed = vec![];
    loop {
        let line = next_line("delivery sent");
        let sent = serde_json::from_str::<serde_json::Value>(&line).is_ok_and(|v| v["type"] == "text");
        printed.push(line);
        if sent {
            break;
        }
    }
    let pid = gateway.0.id().to_string();
    assert!(std::process::Command::new("kill").args(["-15", &pid]).status().unwrap().success());
    loop {
        match stdout.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => printed.push(line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("the gateway did not finish within the drain budget"),
        }
    }
    let status = gateway.0.wait().unwrap();
    let stderr = stderr.join().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");

    let mut sends: HashMap<String, usize> = HashMap::new();
    for line in &printed {
        let Ok(line) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if line["type"] != "text" {
            continue;
        }
        let id = line["providerDeliveryId"].as_str().unwrap().to_owned();
        assert_eq!(line["text"].as_str(), Some(queued_text(&id).as_str()));
        *sends.entry(id).or_default() += 1;
    }
    let listed = request(
        cloud_address,
        "GET",
        &format!("/api/channels/deliveries?channelBindingId={binding}&limit=200"),
        &[("authorization", &admin)],
        b"",
    );
    let deliveries = listed.json()["deliveries"].as_array().unwrap().clone();
    assert_eq!(deliveries.len(), 200);
    let ids: HashSet<&str> = deliveries.iter().map(|d| d["deliveryId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 200);
    for (id, count) in &sends {
        assert!(ids.contains(id.as_str()), "sent {id}, which was never queued");
        assert_eq!(*count, 1, "{id} went out {count} times");
    }
    let (mut acked, mut released) = (0, 0);
    for delivery in &deliveries {
        let id = delivery["deliveryId"].as_str().unwrap();
        match delivery["status"].as_str().unwrap() {
            "sent" => {
                assert!(sends.contains_key(id), "{id} was acked sent but never went out: lost\n{stderr}");
                acked += 1;
            }
            // Never attempted, or claimed and left to its lease: Cloud serves it again.
            "pending" => {}
            "claimed" => assert!(delivery["claimExpiresAt"].is_string(), "{id} is claimed without a lease"),
            // Claimed but still queued at the drain: handed back, claimable at once by the next process.
            "failed" => {
                assert_eq!(delivery["lastError"], "Released at gateway shutdown; not sent.", "{id}\n{stderr}");
                assert!(!sends.contains_key(id), "{id} was sent, then released");
                let next = open_cowork_gateway::time::parse_iso(delivery["nextAttemptAt"].as_str().unwrap()).unwrap();
                // Claimable again two seconds after the release, not after the 120 s lease.
                assert!(next <= open_cowork_gateway::time::now_ms() + 2_000, "{id} waits for its lease");
                released += 1;
            }
            other => panic!("{id} is {other} after a drain ({})\n{stderr}", delivery["lastError"]),
        }
    }
    assert!(acked >= 1, "no delivery was sent and acked\n{stderr}");
    assert!(released >= 1, "the queue held claimed deliveries at the drain; none was released\n{stderr}");
}

#[test]
fn oversized_request_heads_are_refused() {
    let gateway = Gateway::start(&base_env(), &[]);
    let huge = "x".repeat(20 * 1024);
    let response = request(gateway.address, "GET", "/health", &[("x-padding", &huge)], b"");
    assert_eq!(response.status, 431, "request head over the 16 KiB cap");
    assert_eq!(gateway.get("/health", &[]).status, 200, "the server carries on");
}

const SIGHUP: i32 = 1;

/// SIGHUP's default action ends a process without a drain; the gateway reloads nothing, so it
/// logs the signal and keeps serving.
#[test]
fn sighup_is_logged_and_ignored() {
    let mut gateway = Gateway::start(&base_env(), &[]);
    gateway.signal(SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert!(gateway.wait_exit(Duration::from_millis(10)).is_none(), "still running after SIGHUP");
    assert_eq!(gateway.get("/health", &[]).status, 200);
    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(20)).expect("exits after the drain");
    assert_eq!(status.code(), Some(0));
    assert!(gateway.output().contains("SIGHUP received and ignored"), "{}", gateway.output());
}

/// A port nothing listens on now (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `open-cowork-gateway | true` or stdout on a full device: the daemon's "listening" line cannot be
/// written, and that must never abort it (a release build aborts on a panic).
#[test]
fn a_closed_or_full_standard_output_never_aborts_the_daemon() {
    for target in ["closed pipe", "/dev/full"] {
        let port = free_port().to_string();
        let mut env = base_env();
        env.retain(|(key, _)| *key != "OPEN_COWORK_GATEWAY_PORT");
        env.push(("OPEN_COWORK_GATEWAY_PORT", &port));
        let dir = support::TempDir::new("closed-stdout");
        let stdout = if target == "/dev/full" {
            std::process::Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
        } else {
            std::process::Stdio::piped()
        };
        let mut child =
            Reaped(support::command(&dir.0, &env).stdout(stdout).stderr(std::process::Stdio::piped()).spawn().unwrap());
        drop(child.0.stdout.take()); // the reading end closes before anything is written
        let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!("{target}: the daemon exited: {status:?}");
            }
            if std::net::TcpStream::connect(address).is_ok()
                && support::request(address, "GET", "/health", &[], b"").status == 200
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{target}: never served /health");
            std::thread::sleep(Duration::from_millis(50));
        }
        let pid = child.0.id().to_string();
        assert!(std::process::Command::new("kill").args(["-15", &pid]).status().unwrap().success());
        let status = child.0.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{target}: {status:?}");
    }
}

/// `setup` with its standard error a closed pipe: the usage error still exits 64, never SIGABRT.
#[test]
fn setup_with_a_closed_standard_error_exits_with_its_code() {
    let dir = support::TempDir::new("closed-stderr");
    let mut child = support::command(&dir.0, &[])
        .args(["setup", "--no-such-flag"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(64), "{status:?}");
}
